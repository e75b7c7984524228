"""DEPICT: KL clustering with a cluster-frequency-normalised target.

Ghasedi Dizaji, Herandi, Deng, Cai, Huang, "Deep Clustering via Joint Convolutional Autoencoder
Embedding and Relative Entropy Minimization", ICCV 2017, arXiv:1704.06327. Authors' code:
``herandy/DEPICT`` (Theano/Lasagne; ``functions.py: train_depict``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from inforeg.core.checks import (
    check_choice,
    check_number,
    check_probabilities,
    check_same_shape,
    check_tensor,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.core.logspace import p_log_q
from inforeg.core.reduce import reduce
from inforeg.core.types import Reduction

TargetMode = Literal["paper", "code"]
_POWERS = {"paper": (1.0, 0.5), "code": (2.0, 1.0)}


def depict_target_distribution(
    probs: Tensor,
    mode: TargetMode = "code",
    power: tuple[float, float] | None = None,
) -> Tensor:
    r"""DEPICT's auxiliary target :math:`Q` from soft assignments :math:`P` (N, K).

    .. math::

        q_{ik} = \frac{p_{ik}^a / f_k^b}{\sum_{k'} p_{ik'}^a / f_{k'}^b}, \qquad
        f_k = \sum_i p_{ik},

    with :math:`(a, b) = (2, 1)` in the authors' code (default, ``mode="code"``: the DEC-style
    :math:`p^2/f`, which sharpens confident rows as well as rebalancing; the published numbers
    were produced with it) and :math:`(1, \tfrac12)` in the paper (``mode="paper"``: the
    closed-form minimiser of :math:`KL(Q\|P) + KL(f\|u)`, :math:`q \propto p / f^{1/2}`, a
    commented-out line in the code). The paper's target only moves rows toward under-populated
    clusters and never sharpens, so trained on it the predictions drift toward uniform.
    ``power=(a, b)`` overrides ``mode``. Computed in log space (``log_softmax``) and returned
    without gradient (the target is held fixed for an epoch).

    Args:
        probs: (N, K) soft assignments (rows on the simplex), computed on the whole data set
            from the clean path.
        mode: ``"code"`` (default) or ``"paper"``.
        power: optional (a, b), a > 0, b >= 0.

    Returns:
        (N, K) target rows on the simplex, in the dtype of ``probs``.

    Example:
        >>> p = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]])
        >>> depict_target_distribution(p).round(decimals=3)
        tensor([[0.9610, 0.0390],
                [0.8300, 0.1700],
                [0.4060, 0.5940]])
        >>> depict_target_distribution(p, "paper").round(decimals=3)
        tensor([[0.8320, 0.1680],
                [0.6880, 0.3120],
                [0.4530, 0.5470]])
    """
    check_tensor(probs, "probs", ndim=2, floating=True)
    check_probabilities(probs, "probs", dim=1)
    if power is None:
        check_choice(mode, "mode", tuple(_POWERS))
        a, b = _POWERS[mode]
    else:
        a = check_number(power[0], "power", low=0.0, low_inclusive=False)
        b = check_number(power[1], "power", low=0.0)
    p = probs.detach().to(compute_dtype(probs))
    tiny = torch.finfo(p.dtype).tiny
    log_p = torch.log(p.clamp_min(tiny))
    log_f = torch.log(p.sum(dim=0).clamp_min(tiny))
    q = torch.softmax(a * log_p - b * log_f, dim=1)
    return q.to(probs.dtype)


def depict_clustering_loss(logits: Tensor, target: Tensor, reduction: Reduction = "mean") -> Tensor:
    r"""Cross-entropy of the (noisy-path) predictions against the fixed target :math:`Q`.

    .. math::

        \mathcal L = -\frac1N \sum_i \sum_k q_{ik} \log \tilde p_{ik}, \qquad
        \tilde p = \mathrm{softmax}(z),

    which equals :math:`KL(Q \| \tilde P)` up to the constant :math:`-H(Q)`. ``target`` is
    detached. The paper adds the autoencoder's reconstruction loss (weight 1); that is left to
    the caller.

    Args:
        logits: (N, K) scores of the corrupted path.
        target: (N, K) target rows from :func:`depict_target_distribution`.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
    """
    check_tensor(logits, "logits", ndim=2, floating=True)
    check_tensor(target, "target", ndim=2, floating=True)
    check_same_shape(logits, target, "logits", "target")
    check_probabilities(target, "target", dim=1)
    log_p = torch.log_softmax(logits.to(compute_dtype(logits)), dim=1)
    # p_log_q: a zero target on a masked (-inf) logit contributes 0 log 0 = 0, not NaN
    loss = -p_log_q(target.detach().to(log_p.dtype), log_p).sum(dim=1)
    return reduce(loss, reduction).to(logits.dtype)


class DEPICTClusteringLoss(nn.Module):
    """DEPICT clustering objective with a stored target mode.

    Call :meth:`target` once per epoch on the clean-path probabilities of the whole data set,
    then :meth:`forward` on mini-batches of noisy-path logits with the matching target rows.

    Args:
        mode: ``"code"`` (p² / f, default: what the authors ran) or ``"paper"`` (p / f^½).
        power: optional explicit (a, b).
        reduction: reduction of the per-sample loss.
    """

    def __init__(
        self,
        mode: TargetMode = "code",
        power: tuple[float, float] | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_choice(mode, "mode", tuple(_POWERS))
        self.mode: TargetMode = mode
        self.power = power
        self.reduction: Reduction = reduction

    def target(self, probs: Tensor) -> Tensor:
        """The fixed target Q for soft assignments ``probs``."""
        return depict_target_distribution(probs, self.mode, self.power)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return depict_clustering_loss(logits, target, self.reduction)
