"""Small helpers shared by the loss modules (not public API)."""

from __future__ import annotations

import torch
from torch import Tensor

_HALF = (torch.float16, torch.bfloat16)


def compute_dtype(x: Tensor) -> torch.dtype:
    """float32 for half-precision input, else the input's own floating dtype."""
    return torch.float32 if x.dtype in _HALF else x.dtype


def upcast(x: Tensor) -> Tensor:
    """``x`` in :func:`compute_dtype` (a no-op for float32/float64)."""
    return x.to(compute_dtype(x))


def entropy_from_logits(logits: Tensor, dim: int = -1) -> Tensor:
    r"""Shannon entropy (nats) of ``softmax(logits)`` along ``dim``: :math:`-\sum p \log p`.

    Computed as ``-(p * log_softmax).sum`` with ``0 log 0 = 0``: finite in value and gradient for
    logits of any magnitude, including ``-inf`` entries (masked positions).
    """
    log_p = torch.log_softmax(logits, dim=dim)
    p = log_p.exp()
    safe = torch.where(p > 0, log_p, torch.zeros_like(log_p))
    return -(p * safe).sum(dim=dim)
