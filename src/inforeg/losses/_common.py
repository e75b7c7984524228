"""Shannon entropy of categorical distributions, shared by the loss modules (not public API).

``0 log 0 = 0`` is taken with ``torch.where`` on the probabilities, never as ``p * log p`` with
``log 0 = -inf`` (0 * -inf = NaN, in the value or in the gradient): a zero probability, and in
particular a ``-inf`` (masked) logit, contributes exactly 0 to the value and to the gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["entropy_from_logits", "entropy_from_probs", "entropy_terms_from_logits"]


def _neg_p_log_p(p: Tensor, log_p: Tensor) -> Tensor:
    # where p == 0 the log is replaced by 0 *before* the product: both the value and the gradient
    # of the zeroed term are 0 (d/dp gets 0, d/dlog_p gets p = 0).
    return -p * torch.where(p > 0, log_p, torch.zeros_like(log_p))


def entropy_terms_from_logits(logits: Tensor, dim: int = -1) -> Tensor:
    r"""The terms :math:`-p_i \log p_i` of :math:`p = \mathrm{softmax}(\text{logits})` along ``dim``.

    Same shape as ``logits``; 0 where :math:`p_i = 0` (a ``-inf`` logit, or underflow), in value
    and gradient. A slice whose logits are all ``-inf`` has no distribution (NaN): callers mask
    such slices out first.
    """
    log_p = torch.log_softmax(logits, dim=dim)
    return _neg_p_log_p(log_p.exp(), log_p)


def entropy_from_logits(logits: Tensor, dim: int = -1) -> Tensor:
    r"""Shannon entropy (nats) of ``softmax(logits)`` along ``dim``: :math:`-\sum_i p_i \log p_i`.

    Finite in value and gradient for logits of any magnitude, ``-inf`` entries (masked
    positions) included, as long as one logit of the slice is finite.
    """
    return entropy_terms_from_logits(logits, dim).sum(dim=dim)


def entropy_from_probs(p: Tensor, dim: int = -1) -> Tensor:
    r"""Shannon entropy (nats) :math:`-\sum_i p_i \log p_i` of probabilities along ``dim``.

    Zero probabilities (causal or padding masks) contribute exactly 0, in value and gradient.
    """
    # log(1) = 0 stands in for log(0): the term p * log(p if p > 0 else 1) is 0 at p = 0 and so is
    # its derivative (log 1 + p * 0), with one select instead of two (this runs on every attention
    # map of a transformer in the entropy-guided attention penalty).
    return (p * torch.log(torch.where(p > 0, p, 1.0))).sum(dim=dim).neg()
