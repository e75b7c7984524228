"""Pairwise distances, kernels, centring and streamed reductions over pairs.

Conventions (pinned by tests):

- ``sqeuclidean(x, y)[i, j] = ||x_i - y_j||^2``; ``euclidean`` is its square root with a zero
  (not NaN) gradient where two points coincide.
- ``gaussian_kernel(x, y, s) = exp(-||x - y||^2 / (2 s^2))`` (``s`` is the standard deviation, not
  ``gamma``); ``laplacian_kernel(x, y, s) = exp(-||x - y|| / s)``.
- ``median_bandwidth`` is the median Euclidean distance over distinct pairs (i < j within x, or all
  pairs between x and y).

Memory: every function that reduces over pairs takes ``chunk_size``. With it set, only blocks of
``chunk_size`` rows are formed (O(n * chunk) memory), and under autograd each block is
checkpointed, so the backward pass also stays within O(n * chunk). ``chunk_size=None`` picks a
chunk from the sizes (dense when n * m is at most ``DEFAULT_BLOCK_ELEMENTS``).

Example (three points on a line, 5 apart):

    >>> x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]])
    >>> euclidean(x)[0].tolist()
    [0.0, 5.0, 10.0]
    >>> float(pairwise_sum(x, kind="euclidean", chunk_size=1))  # 2 * (5 + 10 + 5)
    40.0
    >>> float(median_bandwidth(x))  # median of 5, 10, 5
    5.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from inforeg.core.checks import check_int, check_positive, check_tensor

DEFAULT_BLOCK_ELEMENTS = 1 << 24  # 16M entries: 128 MB in float64 per block
BlockFn = Callable[[int, int], Tensor]


def _as_points(x: Tensor, name: str) -> Tensor:
    check_tensor(x, name, ndim=(1, 2), floating=True)
    return x.unsqueeze(1) if x.dim() == 1 else x


def _pair(x: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor]:
    x = _as_points(x, "x")
    if y is None:
        return x, x
    y = _as_points(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"y: expected {x.shape[1]} features to match x, got {y.shape[1]}")
    return x, y


def sqeuclidean(x: Tensor, y: Tensor | None = None) -> Tensor:
    """Squared Euclidean distances, shape (n, m); exact zeros on the diagonal when ``y`` is None."""
    x, y_ = _pair(x, y)
    return _sqeuclidean(x, y_, same=y is None)


def _sqeuclidean(x: Tensor, y: Tensor, same: bool = False, offset: int = 0) -> Tensor:
    # ||x||^2 + ||y||^2 - 2 x.y, clamped at 0: one matmul, the dominant cost.
    xx = (x * x).sum(1, keepdim=True)
    yy = (y * y).sum(1).unsqueeze(0)
    d2 = (xx + yy - 2.0 * (x @ y.T)).clamp_min(0.0)
    if same:
        # Rows of this block are points offset..offset+len(x) of y: their self-distance is 0.
        idx = torch.arange(x.shape[0], device=x.device)
        d2 = d2.index_put((idx, idx + offset), torch.zeros((), dtype=d2.dtype, device=d2.device))
    return d2


def safe_root(v: Tensor, n: float = 2.0) -> Tensor:
    """``v ** (1 / n)`` of ``v >= 0`` with a zero gradient at 0 (instead of inf/NaN)."""
    safe = v.clamp_min(torch.finfo(v.dtype).tiny)
    return torch.where(v > 0, safe.sqrt() if n == 2 else safe.pow(1.0 / n), 0.0 * v)


def euclidean(x: Tensor, y: Tensor | None = None) -> Tensor:
    """Euclidean distances, shape (n, m), differentiable with a zero gradient at coincident points."""
    return safe_root(sqeuclidean(x, y))


def gaussian_kernel(x: Tensor, y: Tensor | None = None, bandwidth: float | Tensor = 1.0) -> Tensor:
    """``exp(-||x_i - y_j||^2 / (2 bandwidth^2))``, shape (n, m)."""
    if not isinstance(bandwidth, Tensor):
        check_positive(bandwidth, "bandwidth")
    return torch.exp(-sqeuclidean(x, y) / (2.0 * bandwidth * bandwidth))


def laplacian_kernel(x: Tensor, y: Tensor | None = None, bandwidth: float | Tensor = 1.0) -> Tensor:
    """``exp(-||x_i - y_j|| / bandwidth)``, shape (n, m)."""
    if not isinstance(bandwidth, Tensor):
        check_positive(bandwidth, "bandwidth")
    return torch.exp(-euclidean(x, y) / bandwidth)


def default_chunk_size(n: int, m: int, budget: int = DEFAULT_BLOCK_ELEMENTS) -> int:
    """Rows per block so that a (rows, m) block holds at most ``budget`` entries (at least 1)."""
    return max(1, min(n, budget // max(m, 1)))


def _resolve_chunk(chunk_size: int | None, n: int, m: int) -> int:
    if chunk_size is None:
        return default_chunk_size(n, m)
    check_int(chunk_size, "chunk_size", low=1)
    return min(chunk_size, max(n, 1))


def pairwise_reduce(
    block_fn: BlockFn,
    n: int,
    reduction: Literal["sum", "rows", "cols"] = "sum",
    chunk_size: int | None = None,
    m: int | None = None,
) -> Tensor:
    """Stream a reduction over an (n, m) matrix given block by block.

    Args:
        block_fn: ``block_fn(start, stop)`` returns rows ``start:stop`` of the matrix, shape
            (stop - start, m) (any trailing shape works for ``"sum"``).
        n: number of rows.
        reduction: ``"sum"`` (scalar), ``"rows"`` (row sums, shape (n,)) or ``"cols"`` (column
            sums, shape (m,)).
        chunk_size: rows per block (None: chosen from n and m).
        m: number of columns, only used to choose the default chunk (defaults to n).

    Each block is checkpointed when autograd is recording, so memory stays O(chunk * m) in the
    backward pass too (at the price of recomputing each block once).
    """
    if reduction not in ("sum", "rows", "cols"):
        raise ValueError(f"reduction: expected 'sum', 'rows' or 'cols', got {reduction!r}")

    def reduced(start: int, stop: int) -> Tensor:
        block = block_fn(start, stop)
        if reduction == "rows":
            return block.sum(dim=1)
        return (block.sum() if reduction == "sum" else block.sum(dim=0)).unsqueeze(0)

    out = stream_rows(reduced, n, chunk_size, m=m)
    return out if reduction == "rows" else out.sum(dim=0)


def stream_rows(
    row_fn: BlockFn, n: int, chunk_size: int | None = None, m: int | None = None
) -> Tensor:
    """Concatenate ``row_fn(start, stop)`` over row blocks of ``range(n)`` along dim 0.

    ``row_fn`` returns per-row (or per-block) summaries of rows ``start:stop`` of an implicit
    (n, m) matrix; only one block of that matrix exists at a time. Under autograd each block
    is checkpointed (recomputed in the backward pass), so the backward pass also stays within
    O(chunk * m) memory. ``chunk_size=None`` chooses the rows per block from n and m (m
    defaults to n).
    """
    step = _resolve_chunk(chunk_size, n, n if m is None else m)
    if step >= n:
        return row_fn(0, n)
    use_ckpt = torch.is_grad_enabled()
    parts = [
        checkpoint(row_fn, s, min(s + step, n), use_reentrant=False)
        if use_ckpt
        else row_fn(s, min(s + step, n))
        for s in range(0, n, step)
    ]
    return torch.cat(parts)


def kernel_block_fn(
    x: Tensor,
    y: Tensor | None,
    kind: Literal["sqeuclidean", "euclidean", "gaussian", "laplacian"],
    bandwidth: float | Tensor = 1.0,
) -> BlockFn:
    """Return ``block_fn(start, stop)`` giving rows of a distance or kernel matrix."""
    x, y_ = _pair(x, y)
    same = y is None

    def block(start: int, stop: int) -> Tensor:
        d2 = _sqeuclidean(x[start:stop], y_, same=same, offset=start)
        if kind == "sqeuclidean":
            return d2
        if kind == "euclidean":
            return safe_root(d2)
        if kind == "gaussian":
            return torch.exp(-d2 / (2.0 * bandwidth * bandwidth))
        if kind == "laplacian":
            return torch.exp(-safe_root(d2) / bandwidth)
        raise ValueError(
            f"kind: expected 'sqeuclidean', 'euclidean', 'gaussian' or 'laplacian', got {kind!r}"
        )

    return block


def pairwise_sum(
    x: Tensor,
    y: Tensor | None = None,
    kind: Literal["sqeuclidean", "euclidean", "gaussian", "laplacian"] = "gaussian",
    bandwidth: float | Tensor = 1.0,
    reduction: Literal["sum", "rows", "cols"] = "sum",
    chunk_size: int | None = None,
) -> Tensor:
    """Sum (or row/column sums) of a distance or kernel matrix without forming it whole."""
    n = x.shape[0]
    m = n if y is None else y.shape[0]
    fn = kernel_block_fn(x, y, kind, bandwidth)
    return pairwise_reduce(fn, n, reduction, chunk_size, m=m)


def median_bandwidth(
    x: Tensor,
    y: Tensor | None = None,
    max_points: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Median Euclidean distance over distinct pairs (the median heuristic), as a 0-d tensor.

    The exact median needs every pairwise distance (O(n^2) memory). ``max_points`` subsamples that
    many points (without replacement) from x (and y) first, which bounds memory for large n.
    The result is detached: a bandwidth is a hyper-parameter, not something to differentiate.
    """
    x, y_ = _pair(x, y)
    with torch.no_grad():
        if max_points is not None:
            check_int(max_points, "max_points", low=2)
            if x.shape[0] > max_points:
                perm = torch.randperm(x.shape[0], generator=generator, device="cpu")[:max_points]
                x = x[perm.to(x.device)]
            if y is not None and y_.shape[0] > max_points:
                perm = torch.randperm(y_.shape[0], generator=generator, device="cpu")[:max_points]
                y_ = y_[perm.to(y_.device)]
        if y is None:
            if x.shape[0] < 2:
                raise ValueError(
                    f"x: the median heuristic needs at least 2 points, got {x.shape[0]}"
                )
            d = euclidean(x)
            iu = torch.triu_indices(x.shape[0], x.shape[0], offset=1, device=x.device)
            values = d[iu[0], iu[1]]
        else:
            values = euclidean(x, y_).reshape(-1)
        return values.median()
