r"""MambaRec modality alignment: Gaussian MMD between L2-normalised modality features (+ InfoNCE).

From Ren, Ju & Lee, "Modality Alignment with Multi-scale Bilateral Attention for Multimodal
Recommendation", CIKM 2025 (arXiv 2509.09114); code rkl71/MambaRec (``mmd_loss``, ``InfoNCE``
in ``src/models/mambarec.py``). For image and text features of the same items,
:math:`x = \mathrm{normalize}(x_{img})`, :math:`y = \mathrm{normalize}(x_{txt})` (rows, L2):

.. math::

    \mathrm{MMD}^2_b(x, y) = \overline{k(x, x')} + \overline{k(y, y')} - 2\,\overline{k(x, y)},
    \qquad k = \exp(-\|a - b\|^2 / (2\sigma^2))

(biased V-statistic with diagonals, one bandwidth; the code grid-searches σ in {1, 1.5, 2} and the
weight in {0.1, 0.15, 0.2}, so there is no single default: σ = 1 and weight 0.1 here). Unit-norm
features have squared distances in [0, 4], so σ >= 1 gives a flat kernel and small values.

The total MambaRec loss adds ``0.01 * (InfoNCE(side_items, content_items) + InfoNCE(side_users,
content_users))`` with cosine scores and τ = 0.2 (one direction, the positive in the denominator;
the code's unused ``self.tau = 0.5`` is ignored). Duplicate positives in a batch become false
negatives there, as in the code.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.core.checks import check_number, check_positive, check_tensor
from inforeg.dependence.contrastive import infonce
from inforeg.dependence.mmd import mmd

__all__ = ["ModalityAlignmentLoss", "modality_alignment_mmd"]


def modality_alignment_mmd(
    x: Tensor, y: Tensor, bandwidth: float = 1.0, chunk_size: int | None = None
) -> Tensor:
    """Biased Gaussian MMD² between row-L2-normalised x (n, d) and y (m, d).

    Example (orthogonal unit rows: ``2 - 2 exp(-2 / 2)``; rows are normalised first, so the
    scale of ``x`` does not matter):

        >>> import torch
        >>> x, y = torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 1.0]])
        >>> print(f"{float(modality_alignment_mmd(x, y)):.4f}")
        1.2642
    """
    check_tensor(x, "x", ndim=2, floating=True)
    check_tensor(y, "y", ndim=2, floating=True)
    check_positive(bandwidth, "bandwidth")
    return mmd(
        F.normalize(x, dim=1), F.normalize(y, dim=1), "gaussian", bandwidth, "biased", chunk_size
    )


class ModalityAlignmentLoss(nn.Module):
    """``mmd_weight * MMD²(img, txt) + contrastive_weight * sum of InfoNCE(view pairs)``.

    Args:
        bandwidth: σ of the Gaussian kernel (default 1).
        mmd_weight: weight of the MMD term (default 0.1).
        contrastive_weight: weight of the InfoNCE terms (code: 0.01).
        temperature: InfoNCE τ (code: 0.2).

    ``forward(img, txt, pairs=())`` with ``pairs`` a sequence of (side, content) view pairs.
    """

    def __init__(
        self,
        bandwidth: float = 1.0,
        mmd_weight: float = 0.1,
        contrastive_weight: float = 0.01,
        temperature: float = 0.2,
    ) -> None:
        super().__init__()
        self.bandwidth = check_positive(bandwidth, "bandwidth")
        self.mmd_weight = check_number(mmd_weight, "mmd_weight", low=0.0)
        self.contrastive_weight = check_number(contrastive_weight, "contrastive_weight", low=0.0)
        self.temperature = check_positive(temperature, "temperature")

    def forward(
        self, img: Tensor, txt: Tensor, pairs: tuple[tuple[Tensor, Tensor], ...] = ()
    ) -> Tensor:
        """Return the alignment loss (with ``mmd_weight = 0`` the MMD is not computed at all, so
        an InfoNCE-only ablation does not pay for the B x B kernel)."""
        check_tensor(img, "img", ndim=2, floating=True)
        check_tensor(txt, "txt", ndim=2, floating=True)
        if self.mmd_weight > 0:
            loss = self.mmd_weight * modality_alignment_mmd(img, txt, self.bandwidth)
        else:
            loss = img.new_zeros(())
        for side, content in pairs:
            loss = loss + self.contrastive_weight * infonce(side, content, self.temperature)
        return loss
