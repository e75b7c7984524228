"""Reductions: ``reduce(x, reduction)`` for per-sample losses and masked aggregation for token losses.

Token aggregation modes (``L_i = sum_t mask_it * loss_it``, ``n_i = sum_t mask_it``, N sequences):

- ``token-mean``:               ``sum_i L_i / sum_i n_i``  (verl default; TRL "bnpo")
- ``seq-mean-token-mean``:      ``mean_i L_i / n_i``       (original GRPO; TRL "grpo")
- ``seq-mean-token-sum``:       ``mean_i L_i``
- ``seq-mean-token-sum-norm``:  ``sum_i L_i / (N * norm)`` with ``norm`` the padded length by
  default (Dr. GRPO; TRL "dr_grpo", verl "seq-mean-token-sum-norm").

Sequences with no unmasked token contribute 0 (their ``n_i`` is clamped to 1), an all-masked
batch returns 0 rather than NaN, and values where the mask is 0 are ignored, NaN included.

Example (``L = (6, 4)``, ``n = (3, 1)``, ``N = 2``, ``T = 3``):

    >>> v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    >>> m = torch.tensor([[1, 1, 1], [1, 0, 0]])
    >>> [round(float(masked_aggregate(v, m, mode)), 4) for mode in AGGREGATION_MODES]
    [2.5, 3.0, 5.0, 1.6667]
    >>> float(masked_aggregate(v, torch.zeros_like(m)))  # all masked: 0, not NaN
    0.0
    >>> reduce(torch.tensor([1.0, 2.0, 6.0]), "mean").item()
    3.0
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from inforeg.core.checks import check_choice, check_same_shape, check_tensor
from inforeg.core.dtypes import compute_dtype

AggregationMode = Literal[
    "token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"
]
REDUCTIONS: tuple[str, ...] = ("mean", "sum", "none")
AGGREGATION_MODES: tuple[str, ...] = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)


def reduce(x: Tensor, reduction: str = "mean") -> Tensor:
    """Apply ``"mean"``, ``"sum"`` or ``"none"`` to a tensor of per-sample values."""
    check_choice(reduction, "reduction", REDUCTIONS)
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    return x


def masked_aggregate(
    values: Tensor,
    mask: Tensor | None = None,
    mode: str = "token-mean",
    norm: float | None = None,
) -> Tensor:
    """Aggregate per-token values of shape (N, T) under a 0/1 ``mask`` of the same shape.

    Args:
        values: per-token values, shape (N, T).
        mask: 0/1 (bool or float) of shape (N, T); None means every token counts.
        mode: one of ``token-mean``, ``seq-mean-token-mean``, ``seq-mean-token-sum``,
            ``seq-mean-token-sum-norm``.
        norm: the constant of ``seq-mean-token-sum-norm`` (default: T, the padded length).

    Returns:
        A scalar tensor in the dtype of ``values`` (float32 accumulation for half types).
    """
    check_tensor(values, "values", ndim=2, nonempty=False)
    check_choice(mode, "mode", AGGREGATION_MODES)
    acc_dtype = compute_dtype(values)
    v = values.to(acc_dtype)
    if mask is None:
        m = torch.ones_like(v)
    else:
        check_tensor(mask, "mask", ndim=2, nonempty=False)
        check_same_shape(values, mask, "values", "mask")
        m = mask.to(acc_dtype)
    # where, not v * m alone: a NaN at an excluded position (the entropy of a padded position
    # whose logits are all -inf) must not reach the sum as 0 * NaN
    per_seq = torch.where(m != 0, v * m, 0.0).sum(dim=1)  # L_i
    counts = m.sum(dim=1)  # n_i
    n_seq = v.shape[0]
    if mode == "token-mean":
        out = per_seq.sum() / counts.sum().clamp_min(1.0)
    elif mode == "seq-mean-token-mean":
        out = (per_seq / counts.clamp_min(1.0)).sum() / max(n_seq, 1)
    elif mode == "seq-mean-token-sum":
        out = per_seq.sum() / max(n_seq, 1)
    else:
        denom = float(v.shape[1]) if norm is None else float(norm)
        if denom <= 0:
            raise ValueError(f"norm: expected a positive constant, got {norm}")
        out = per_seq.sum() / (max(n_seq, 1) * denom)
    return out.to(values.dtype)
