"""The reference the entropy backward passes rebuild p from, shared by the PyTorch paths and the
Triton kernels (the C kernel has its own copy, ``lse_ref`` in ``_cpu_entropy.c``).

Example (a row's lse 1000.5 at T = 1: the logit 1000 has log p = (1000 - zr) - lr = -0.5):

    >>> zr, lr = lse_ref(torch.tensor([1000.5], dtype=torch.float64), 1.0, torch.float32)
    >>> print(float((1000.0 - zr) * 1.0 - lr))
    -0.5
"""

from __future__ import annotations

import torch
from torch import Tensor


def lse_ref(lse: Tensor, inv_t: float, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    """``(zr, lr)`` in ``dtype`` with ``log p = (z - zr) / T - lr``, from a float64 ``lse``:
    ``zr = lse T`` (the logit whose p would be 1) and ``lr = lse - zr / T``.

    Near the top of a row ``z - zr`` is small, so ``log p`` carries the rounding of a small
    number; ``z / T - lse`` in float32 loses ``|z / T| * 6e-8`` (1e-4 at logits of 1e3, a
    relative error of p as large). Where ``lse T`` is beyond ``dtype`` (a huge T: then
    ``|z / T|`` is tiny anyway) or lse is not finite, ``zr = 0``.
    """
    zr = (lse / inv_t).to(dtype)
    zr = torch.where(torch.isfinite(zr), zr, 0.0)
    return zr, (lse - zr.to(lse.dtype) * inv_t).to(dtype)
