"""DEXML: decoupled softmax and soft top-k losses for dual-encoder extreme multi-label retrieval.

Gupta, Khatri, Rawat, Bhojanapalli, Jain, Dhillon, "Dual-Encoders for Extreme Multi-Label
Classification", ICLR 2024, arXiv:2310.10636. Authors' code: ``nilesh2797/DEXML``
(``losses.py: SimLoss.compute_loss``; ``utils/topk_utils.py: DistLogTopK, _find_ts``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.core.checks import check_int, check_positive, check_same_shape, check_tensor
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import reduce
from inforeg.core.types import Reduction


def _prepare(scores: Tensor, positive_mask: Tensor, temperature: float) -> tuple[Tensor, Tensor]:
    check_tensor(scores, "scores", ndim=2, floating=True)
    check_tensor(positive_mask, "positive_mask", ndim=2, nonempty=False)
    check_same_shape(scores, positive_mask, "scores", "positive_mask")
    t = check_positive(temperature, "temperature")
    return scores.to(compute_dtype(scores)) / t, positive_mask.bool()


def _mean_over_positives(per_label: Tensor, pos: Tensor) -> Tensor:
    """Per query: mean of ``per_label`` over its positives (0 for a query with none)."""
    pos_f = pos.to(per_label.dtype)
    total = torch.where(pos, per_label, torch.zeros_like(per_label)).sum(dim=1)
    return total / pos_f.sum(dim=1).clamp_min(1.0)


def decoupled_softmax_loss(
    scores: Tensor,
    positive_mask: Tensor,
    temperature: float = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""DEXML's decoupled softmax: each positive competes only with the negatives.

    .. math::

        \ell_{bl} = -\log \frac{e^{s_{bl}}}{e^{s_{bl}} + \sum_{j \notin P_b} e^{s_{bj}}}
                  = \mathrm{softplus}\Big(\log\sum_{j\notin P_b} e^{s_{bj}} - s_{bl}\Big),
        \qquad
        \mathcal L = \frac1B \sum_b \frac1{|P_b|}\sum_{l\in P_b} \ell_{bl},

    with :math:`s` = ``scores / temperature`` (the paper: cosine similarities / 0.05). Other
    positives are removed from the denominator (the code sets their scores to -100; here they are
    excluded exactly). With a single positive this is ordinary cross-entropy. A query with no
    positive contributes 0 (still counted in B); one whose labels are all positive gives 0. The
    code's default ``loss_sample=True`` samples one positive per query instead of averaging; pass
    a one-positive mask to reproduce that.

    Args:
        scores: (B, L) query-label scores.
        positive_mask: (B, L) bool, True for relevant labels.
        temperature: divides the scores (default 1: scores already scaled).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per query).

    Example:
        >>> s = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
        >>> m = torch.tensor([[True, True, False, False]])
        >>> round(float(decoupled_softmax_loss(s, m)), 4)
        0.2887
    """
    s, pos = _prepare(scores, positive_mask, temperature)
    very_negative = torch.finfo(s.dtype).min
    neg_lse = torch.logsumexp(s.masked_fill(pos, very_negative), dim=1, keepdim=True)
    per_label = F.softplus(neg_lse - s)
    loss = _mean_over_positives(per_label, pos)
    return reduce(loss, reduction).to(scores.dtype)


def multilabel_softmax_loss(
    scores: Tensor,
    positive_mask: Tensor,
    temperature: float = 1.0,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Plain multi-label softmax (InfoNCE-style baseline): every label in the denominator.

    .. math::

        \mathcal L = \frac1B \sum_b \frac1{|P_b|} \sum_{l \in P_b}
            \Big(\log \sum_j e^{s_{bj}} - s_{bl}\Big).

    Unlike :func:`decoupled_softmax_loss`, positives compete with each other, so the loss cannot
    reach 0 when a query has several positives (its minimum is :math:`\log|P_b|`).

    Example:
        >>> s = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
        >>> m = torch.tensor([[True, True, False, False]])
        >>> round(float(multilabel_softmax_loss(s, m)), 4)
        0.9402
    """
    s, pos = _prepare(scores, positive_mask, temperature)
    per_label = torch.logsumexp(s, dim=1, keepdim=True) - s
    return reduce(_mean_over_positives(per_label, pos), reduction).to(scores.dtype)


def _offset_bracket(s: Tensor, k: int, alpha: float) -> tuple[Tensor, Tensor]:
    """A bracket ``[lo, hi]`` of the offset t with ``f(t) = sum_j sigmoid(alpha (s_j + t)) = k``.

    With ``s_(k)`` the k-th largest score of a row of length L: at ``-s_(k) - log(L - k)/alpha``
    the L - k + 1 scores from the k-th down each give at most ``1/(L - k + 1)`` and the k - 1
    above them less than 1 each, so ``f < k``; at ``-s_(k+1) + log(k)/alpha`` the top k + 1 each
    give at least ``k/(k + 1)``, so ``f >= k``. The authors' bracket ``[-max s - 10/alpha,
    -min s + 10/alpha]`` assumes ``L sigmoid(-10) < k``: with L = 1e6 near-equal scores
    (k = 5, alpha = 2) the root lies below it and p summed to 41. Rows with fewer than k + 1
    finite scores (masked with -inf) have no root; they keep the authors' bounds, over the
    finite scores.
    """
    top = torch.topk(s, k + 1, dim=1).values  # sorted: top[:, :1] is the row's maximum
    finite_min = torch.where(s == float("-inf"), torch.finfo(s.dtype).max, s).amin(1, keepdim=True)
    lo = -top[:, k - 1 : k] - math.log(s.shape[1] - k) / alpha
    hi = -top[:, k:] + math.log(k) / alpha
    lo = torch.where(torch.isfinite(lo), lo, -top[:, :1] - 10.0 / alpha)
    hi = torch.where(torch.isfinite(hi), hi, -finite_min + 10.0 / alpha)
    return lo, hi


def _find_offsets(s: Tensor, k: int, alpha: float, iters: int) -> Tensor:
    """Bisection for t with sum_j sigmoid(alpha (s_j + t)) = k, per row (no gradient)."""
    lo, hi = _offset_bracket(s, k, alpha)
    scaled = s * alpha
    work = torch.empty_like(s)  # reused: a fresh (B, L) tensor per step cost 7x at B x L = 1e7
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        torch.add(scaled, mid * alpha, out=work)
        too_many = torch.sigmoid(work, out=work).sum(dim=1, keepdim=True) > k
        hi = torch.where(too_many, mid, hi)
        lo = torch.where(too_many, lo, mid)
    return 0.5 * (lo + hi)


class _SoftTopKLog(torch.autograd.Function):
    """log p with p = sigmoid(alpha (s + t(s))), t implicit; gradient by the implicit function theorem."""

    @staticmethod
    def forward(ctx: Any, s: Tensor, k: int, alpha: float, iters: int) -> Tensor:
        with torch.no_grad():
            t = _find_offsets(s, k, alpha, iters)
            x = alpha * (s + t)
            sig = torch.sigmoid(x)
        ctx.save_for_backward(sig)
        ctx.alpha = alpha
        return F.logsigmoid(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:
        (sig,) = ctx.saved_tensors
        alpha = ctx.alpha
        v = alpha * sig * (1 - sig)
        denom = v.sum(dim=1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)
        direct = grad * alpha * (1 - sig)
        return direct - v * direct.sum(dim=1, keepdim=True) / denom, None, None, None


def soft_top_k(
    scores: Tensor, k: int, alpha: float = 2.0, iters: int = 32, log: bool = False
) -> Tensor:
    r"""Sigmoid soft top-k: :math:`p_j = \sigma(\alpha(s_j + t))` with :math:`\sum_j p_j = k`.

    The offset t of each row is found by bisection (``iters`` halvings, 32 as in the code, of
    the bracket :math:`[-s_{(k)} - \log(L-k)/\alpha,\ -s_{(k+1)} + \log(k)/\alpha]` with
    :math:`s_{(k)}` the k-th largest score) and treated as an
    implicit function of s: with :math:`v_j = \alpha\sigma_j(1-\sigma_j)` and
    :math:`S = \sum_j v_j`, :math:`\partial t/\partial s_i = -v_i/S`, so the gradient of any
    upstream :math:`g` sums to zero over the row (adding a constant to every score leaves p
    unchanged). As :math:`\alpha \to \infty`, p tends to the hard top-k indicator.

    The authors' code (``utils/topk_utils.py``, ``_find_ts``) bisects
    :math:`[-\max s - 10/\alpha, -\min s + 10/\alpha]`, which misses the root once
    :math:`L\,\sigma(-10) \ge k` and the scores are close (L = 1e6, k = 5: p summed to 41).
    The bracket above always holds the root and is narrower, so 32 halvings also end closer
    to it.

    Args:
        scores: (B, L) scores.
        k: 0 < k < L.
        alpha: sharpness > 0 (code default 2, on scores already divided by the temperature).
        iters: bisection steps (>= 1).
        log: return :math:`\log p` (computed as ``logsigmoid``; finite where p underflows).
    """
    check_tensor(scores, "scores", ndim=2, floating=True)
    check_int(k, "k", low=1, high=scores.shape[1] - 1)
    a = check_positive(alpha, "alpha")
    check_int(iters, "iters", low=1)
    s = scores.to(compute_dtype(scores))
    log_p = _SoftTopKLog.apply(s, k, a, iters)
    out = log_p if log else log_p.exp()
    return out.to(scores.dtype)


def soft_top_k_loss(
    scores: Tensor,
    positive_mask: Tensor,
    k: int = 5,
    alpha: float = 2.0,
    temperature: float = 1.0,
    iters: int = 32,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""DEXML's soft top-k loss: positives should be inside the (soft) top k.

    .. math::

        \mathcal L = -\frac1B \sum_b \frac1{|P_b|} \sum_{l \in P_b} \log p_{bl},
        \qquad p = \mathrm{soft\_top\_k}(s / \tau, k, \alpha).

    The code samples k positives per query; pass such a mask to reproduce it. Defaults: k = 5,
    :math:`\alpha = 2`.
    """
    s, pos = _prepare(scores, positive_mask, temperature)
    log_p = soft_top_k(s, k, alpha, iters, log=True)
    return reduce(_mean_over_positives(-log_p, pos), reduction).to(scores.dtype)


class DecoupledSoftmaxLoss(nn.Module):
    """Module form of :func:`decoupled_softmax_loss`."""

    def __init__(self, temperature: float = 1.0, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.reduction: Reduction = reduction

    def forward(self, scores: Tensor, positive_mask: Tensor) -> Tensor:
        return decoupled_softmax_loss(scores, positive_mask, self.temperature, self.reduction)


class SoftTopKLoss(nn.Module):
    """Module form of :func:`soft_top_k_loss`."""

    def __init__(
        self,
        k: int = 5,
        alpha: float = 2.0,
        temperature: float = 1.0,
        iters: int = 32,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.k = check_int(k, "k", low=1)
        self.alpha = check_positive(alpha, "alpha")
        self.temperature = check_positive(temperature, "temperature")
        self.iters = check_int(iters, "iters", low=1)
        self.reduction: Reduction = reduction

    def forward(self, scores: Tensor, positive_mask: Tensor) -> Tensor:
        return soft_top_k_loss(
            scores, positive_mask, self.k, self.alpha, self.temperature, self.iters, self.reduction
        )
