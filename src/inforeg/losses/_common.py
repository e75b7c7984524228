"""Small helpers shared by the loss modules (not public API)."""

from __future__ import annotations

import torch
from torch import Tensor

from inforeg.core.dtypes import compute_dtype, upcast

__all__ = ["compute_dtype", "entropy_from_logits", "upcast"]


def entropy_from_logits(logits: Tensor, dim: int = -1) -> Tensor:
    r"""Shannon entropy (nats) of ``softmax(logits)`` along ``dim``: :math:`-\sum p \log p`.

    Computed as ``-(p * log_softmax).sum`` with ``0 log 0 = 0``: finite in value and gradient for
    logits of any magnitude, including ``-inf`` entries (masked positions).
    """
    log_p = torch.log_softmax(logits, dim=dim)
    p = log_p.exp()
    safe = torch.where(p > 0, log_p, torch.zeros_like(log_p))
    return -(p * safe).sum(dim=dim)
