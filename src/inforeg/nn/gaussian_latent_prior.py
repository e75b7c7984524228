r"""Standard-normal latent prior losses for invertible rescaling, on one latent or two (DLV-IRN).

Zhang, Pan, Zhou, Kuo, "Enhancing Image Rescaling using Dual Latent Variables in Invertible
Neural Network", ACM MM 2022, arXiv 2207.11844. No DLV-IRN code was found; the latent-loss
convention follows the code of the base method it extends, IRN (Xiao et al., "Invertible Image
Rescaling", ECCV 2020, arXiv 2005.05650; ``pkuxmq/Invertible-Image-Rescaling``,
``codes/models/IRN_model.py``): ``l_forw_ce = lambda_ce * sum(z ** 2) / B``.

**UNVERIFIED** (abstract only): how DLV-IRN uses its second, downscaling latent. inforeg's
reading, used by the ``dlv-rescaling-digits`` experiment: the invertible network maps
``(HR, z_down) <-> (LR, z_up)``; ``z_down ~ N(0, I)`` is fed on the HR side when downscaling, the
inverse pass returns an estimate of ``z_down``, and that estimate gets the same Gaussian prior
loss as ``z_up``. The weight of the downscaling term (default 1) is likewise unverified.
"""

from __future__ import annotations

import math
from typing import Literal

import torch  # noqa: F401  (the doctests' namespace)
from torch import Tensor, nn

from inforeg.core.checks import check_choice, check_number, check_tensor
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import REDUCTIONS, reduce
from inforeg.core.types import Reduction

__all__ = ["DualLatentPrior", "gaussian_latent_loss"]

Convention = Literal["irn", "nll"]
_CONVENTIONS = ("irn", "nll")


def gaussian_latent_loss(
    z: Tensor, reduction: Reduction = "mean", convention: Convention = "irn"
) -> Tensor:
    r"""Standard-normal prior loss of a latent, per sample, in IRN's or the exact NLL convention.

    .. math::

        \texttt{irn}:\ \ \ell_b = \sum_{i} z_{b,i}^2, \qquad
        \texttt{nll}:\ \ \ell_b = \tfrac12 \sum_{i} z_{b,i}^2 + \tfrac d2 \log 2\pi,

    summed over every non-batch element :math:`i` (:math:`d` of them). ``irn`` is IRN's
    ``sum(z**2) / B`` once ``reduction="mean"`` takes the batch mean (no 1/2, no mean over
    elements); ``nll`` is the negative log-density of :math:`\mathcal N(0, I_d)` in nats. The
    gradients of the batch mean are :math:`2z/B` (``irn``) and :math:`z/B` (``nll``).

    Args:
        z: latent, shape (B, ...); dim 0 is the batch.
        reduction: ``"mean"`` (default) or ``"sum"`` over the batch, or ``"none"`` for (B,).
        convention: ``"irn"`` (default) or ``"nll"``.

    Returns:
        The loss in ``z``'s dtype (accumulated in float32 for half-precision input).

    Example:
        >>> z = torch.tensor([[1.0, 2.0], [0.0, 3.0]])
        >>> gaussian_latent_loss(z, reduction="none")
        tensor([5., 9.])
        >>> round(float(gaussian_latent_loss(z, convention="nll")), 4)
        5.3379
    """
    check_tensor(z, "z", min_ndim=1, floating=True)
    check_choice(reduction, "reduction", REDUCTIONS)
    check_choice(convention, "convention", _CONVENTIONS)
    zc = z.to(compute_dtype(z)).reshape(z.shape[0], -1)
    sq = zc.square().sum(dim=1)
    if convention == "nll":
        sq = 0.5 * sq + 0.5 * zc.shape[1] * math.log(2 * math.pi)
    return reduce(sq, reduction).to(z.dtype)


class DualLatentPrior(nn.Module):
    r"""Weighted Gaussian prior on the upscaling and the downscaling latent of DLV-IRN.

    .. math::

        \mathcal L = w_{\text{up}}\, L(z_{\text{up}}) + w_{\text{down}}\, L(z_{\text{down}}),

    with :math:`L` = :func:`gaussian_latent_loss` in the chosen convention and reduction. The
    weights (default 1 and 1) and the role of :math:`z_{\text{down}}` are UNVERIFIED (see the
    module docstring): the paper's code is not available.

    Args:
        up_weight: weight of the upscaling latent's loss, >= 0 (IRN's ``lambda_ce`` = 1).
        down_weight: weight of the downscaling latent's loss, >= 0 (UNVERIFIED default 1).
        convention: ``"irn"`` (default) or ``"nll"``.
        reduction: over the batch; with ``"none"`` both latents need the same batch size.

    Example:
        >>> prior = DualLatentPrior(down_weight=0.5)
        >>> prior(torch.ones(2, 3), torch.ones(2, 4))
        tensor(5.)
    """

    def __init__(
        self,
        up_weight: float = 1.0,
        down_weight: float = 1.0,
        convention: Convention = "irn",
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.up_weight = check_number(up_weight, "up_weight", low=0.0)
        self.down_weight = check_number(down_weight, "down_weight", low=0.0)
        check_choice(convention, "convention", _CONVENTIONS)
        check_choice(reduction, "reduction", REDUCTIONS)
        self.convention: Convention = convention
        self.reduction: Reduction = reduction

    def forward(self, z_up: Tensor, z_down: Tensor) -> Tensor:
        check_tensor(z_up, "z_up", min_ndim=1, floating=True)
        check_tensor(z_down, "z_down", min_ndim=1, floating=True)
        if self.reduction == "none" and z_up.shape[0] != z_down.shape[0]:
            raise ValueError(
                f"z_down: expected {z_up.shape[0]} samples to match z_up with reduction='none', "
                f"got {z_down.shape[0]}"
            )
        up = gaussian_latent_loss(z_up, self.reduction, self.convention)
        down = gaussian_latent_loss(z_down, self.reduction, self.convention)
        return self.up_weight * up + self.down_weight * down

    def extra_repr(self) -> str:
        return (
            f"up_weight={self.up_weight}, down_weight={self.down_weight}, "
            f"convention={self.convention!r}, reduction={self.reduction!r}"
        )
