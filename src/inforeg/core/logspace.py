"""Log-space products that keep the convention 0 * log 0 = 0 for masked (``-inf``) logits.

A masked class has ``log p = -inf`` and ``p = 0``; the naive ``p * log q`` or
``p * (log p - log q)`` is then ``0 * -inf = NaN`` (and so is its gradient). These helpers give
0 and a zero gradient there, and the ordinary value everywhere else (``p > 0`` with
``log q = -inf`` stays ``-inf``: a target with mass on an impossible class has infinite loss).

Example:
    >>> p_log_q(torch.tensor([0.5, 0.0]), torch.tensor([-1.0, float("-inf")]))
    tensor([-0.5000, 0.0000])
    >>> log_p = torch.log_softmax(torch.tensor([0.0, float("-inf")]), 0)
    >>> kl_terms(log_p, log_p)  # NaN for the masked class without the convention
    tensor([0., 0.])
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kl_terms", "p_log_q"]


def p_log_q(p: Tensor, log_q: Tensor) -> Tensor:
    """``p * log_q`` elementwise, 0 (with zero gradients) where ``p == 0`` and ``log_q == -inf``."""
    masked = (p == 0) & (log_q == float("-inf"))
    return p * torch.where(masked, 0.0, log_q)


def kl_terms(log_p: Tensor, log_q: Tensor) -> Tensor:
    """``p * (log_p - log_q)`` with ``p = exp(log_p)``, 0 (zero gradients) where ``log_p = -inf``."""
    masked = log_p == float("-inf")
    return log_p.exp() * torch.where(masked, 0.0, log_p - log_q)
