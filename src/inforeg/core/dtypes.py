"""Precision policy: half-precision inputs are computed in float32, others in their own dtype.

Example:
    >>> compute_dtype(torch.zeros(1, dtype=torch.bfloat16))
    torch.float32
    >>> compute_dtype(torch.zeros(1), torch.zeros(1, dtype=torch.float64))
    torch.float64
    >>> upcast(torch.ones(2, dtype=torch.float16)).dtype
    torch.float32
"""

from __future__ import annotations

import torch
from torch import Tensor

HALF_DTYPES = (torch.float16, torch.bfloat16)


def compute_dtype(*xs: Tensor) -> torch.dtype:
    """float32 when the promoted dtype of ``xs`` is float16/bfloat16, else that promoted dtype."""
    dtype = xs[0].dtype
    for t in xs[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return torch.float32 if dtype in HALF_DTYPES else dtype


def upcast(x: Tensor) -> Tensor:
    """``x`` in :func:`compute_dtype` (a no-op for float32/float64)."""
    return x.to(compute_dtype(x))
