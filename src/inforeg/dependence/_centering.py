"""Double and U-centred products of distance or kernel matrices, streamed block by block
(distance covariance and HSIC; the row-sum identity avoids a second pass)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from inforeg.core.checks import check_tensor
from inforeg.core.pairwise import BlockFn, stream_rows


def double_center(d: Tensor) -> Tensor:
    """Double centring ``A_ij = d_ij - mean_i. - mean_.j + mean_..`` of a square matrix."""
    check_tensor(d, "d", ndim=2)
    if d.shape[0] != d.shape[1]:
        raise ValueError(f"d: expected a square matrix, got shape {tuple(d.shape)}")
    return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()


def u_center(d: Tensor) -> Tensor:
    """U-centring (Székely & Rizzo 2014) of a square matrix; needs n > 2; zero diagonal.

    ``A_ij = d_ij - r_i/(n-2) - c_j/(n-2) + S/((n-1)(n-2))`` for i != j, 0 on the diagonal, where
    ``r``/``c`` are row/column sums and ``S`` the total.
    """
    check_tensor(d, "d", ndim=2)
    n = d.shape[0]
    if d.shape[1] != n:
        raise ValueError(f"d: expected a square matrix, got shape {tuple(d.shape)}")
    if n < 3:
        raise ValueError(f"d: U-centring needs at least 3 points, got {n}")
    out = (
        d
        - d.sum(0, keepdim=True) / (n - 2)
        - d.sum(1, keepdim=True) / (n - 2)
        + d.sum() / ((n - 1) * (n - 2))
    )
    return out * (1.0 - torch.eye(n, dtype=d.dtype, device=d.device))


def centered_product_sum(
    a_block: BlockFn,
    b_block: BlockFn,
    n: int,
    centering: Literal["double", "u"] = "double",
    chunk_size: int | None = None,
) -> Tensor:
    """``sum_ij A_ij B_ij`` for double- or U-centred symmetric matrices given block by block.

    Uses the row-sum identity, so only blocks are ever formed (two streamed passes would be needed
    otherwise). For symmetric a, b with row sums ``r^a, r^b`` and totals ``S_a, S_b``:

    - double: ``sum a*b - (2/n) r^a.r^b + S_a S_b / n^2``
    - U (zero diagonals, n > 3): ``sum a*b - (2/(n-2)) r^a.r^b + S_a S_b / ((n-1)(n-2))``

    Divide by ``n^2`` (double) or ``n(n-3)`` (U) to get the V- or U-statistic of distance covariance.
    """
    if centering not in ("double", "u"):
        raise ValueError(f"centering: expected 'double' or 'u', got {centering!r}")
    if centering == "u" and n < 4:
        raise ValueError(f"n: U-centred statistics need at least 4 samples, got {n}")

    def stacked(start: int, stop: int) -> Tensor:
        a = a_block(start, stop)
        b = b_block(start, stop)
        # Per row: sum_j a_ij b_ij, r^a_i, r^b_i, in float64: the centring below cancels the
        # three terms to a total far smaller than each, which magnifies float32 rounding.
        wide = torch.float64
        return torch.stack(
            ((a * b).sum(1, dtype=wide), a.sum(1, dtype=wide), b.sum(1, dtype=wide)), 1
        )

    rows = stream_rows(stacked, n, chunk_size)
    return centered_sum_from_rows(rows[:, 0].sum(), rows[:, 1], rows[:, 2], n, centering)


def centered_sum_from_rows(
    ab: Tensor, ra: Tensor, rb: Tensor, n: int, centering: Literal["double", "u"] = "double"
) -> Tensor:
    """``sum_ij A_ij B_ij`` from ``ab = sum_ij a_ij b_ij`` and the row sums ``ra``, ``rb`` of two
    symmetric matrices (zero diagonals for U-centring); see :func:`centered_product_sum`."""
    sa, sb = ra.sum(), rb.sum()
    if centering == "double":
        return ab - 2.0 / n * (ra * rb).sum() + sa * sb / (n * n)
    return ab - 2.0 / (n - 2) * (ra * rb).sum() + sa * sb / ((n - 1) * (n - 2))
