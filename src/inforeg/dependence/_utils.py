"""Shared helpers of the dependence family (input handling, dtypes, kernel blocks)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from inforeg.core.checks import check_positive, check_tensor
from inforeg.core.pairwise import BlockFn, kernel_block_fn, median_bandwidth, safe_root

KernelName = Literal["gaussian", "laplacian", "energy", "linear"]
Bandwidth = float | Sequence[float] | Tensor | None

#: Points used by the median heuristic; above this the median is taken on a fixed subsample.
MEDIAN_MAX_POINTS = 2000


def as_samples(x: object, name: str) -> Tensor:
    """Validate a sample tensor (n,) or (n, d) and return it as (n, d)."""
    t = check_tensor(x, name, ndim=(1, 2), floating=True)
    return t.unsqueeze(1) if t.dim() == 1 else t


def at_origin(*points: Tensor) -> tuple[Tensor, ...]:
    """The point sets minus their pooled (detached) mean.

    Distances do not change, so neither do stationary kernels, energy distances or centred Gram
    matrices, but the rounding of ``||x||^2 - 2 x.y + ||y||^2`` does: data far from the origin
    lost most of its digits there in float32 (an offset of 8000 turned the median bandwidth into
    the eps floor).
    """
    total = sum(p.detach().sum(0) for p in points)
    mean = total / sum(p.shape[0] for p in points)
    return tuple(p - mean for p in points)


def resolve_bandwidths(
    bandwidth: Bandwidth, name: str, *points: Tensor, dtype: torch.dtype
) -> Tensor:
    """Return a 1-D tensor of bandwidths (detached when from the median heuristic).

    ``None``: the median heuristic, median Euclidean distance over distinct pairs of the pooled
    ``points`` (lower median; on a fixed subsample of ``MEDIAN_MAX_POINTS`` points when larger),
    floored at machine epsilon so that constant inputs do not divide by zero.
    """
    device = points[0].device
    if bandwidth is None:
        (pooled,) = at_origin(torch.cat([p.to(dtype) for p in points], dim=0))
        gen = torch.Generator().manual_seed(0)
        med = median_bandwidth(pooled, max_points=MEDIAN_MAX_POINTS, generator=gen)
        return med.clamp_min(torch.finfo(dtype).eps).reshape(1)
    if isinstance(bandwidth, Tensor):
        b = bandwidth.to(device=device, dtype=dtype).reshape(-1)
        if b.numel() == 0:
            raise ValueError(f"{name}: expected at least one bandwidth, got an empty tensor")
        return b
    if isinstance(bandwidth, (int, float)) and not isinstance(bandwidth, bool):
        check_positive(bandwidth, name)
        # a fill, not a host-to-device copy (a copy would wait for the device)
        return torch.full((1,), float(bandwidth), dtype=dtype, device=device)
    if isinstance(bandwidth, Sequence) and not isinstance(bandwidth, str):
        values = list(bandwidth)
        if not values:
            raise ValueError(f"{name}: expected at least one bandwidth, got an empty sequence")
        for v in values:
            check_positive(v, name)
        return torch.cat([torch.full((1,), float(v), dtype=dtype, device=device) for v in values])
    raise TypeError(
        f"{name}: expected None, a positive number, a sequence of them or a tensor, "
        f"got {type(bandwidth).__name__}"
    )


#: Up to this many features, squared distances are summed from coordinate differences (exact
#: zeros for tied points); above it the matmul expansion of inforeg.core.pairwise is used.
DIRECT_MAX_FEATURES = 4


#: Entries per streamed block on the CPU when no chunk_size is given: the few elementwise passes
#: over a block then stay in cache. The generic default of core.pairwise (2^24 entries) was 3x
#: (Cauchy-Schwarz) to 7x (joint dCov) slower at n = 6000; up to n = 1024 both give one block.
CPU_BLOCK = 1 << 20


def cpu_block_rows(chunk_size: int | None, x: Tensor, m: int) -> int | None:
    """Rows per streamed block of an (n, m) matrix built from ``x``: ``chunk_size``, or on the
    CPU about :data:`CPU_BLOCK` entries (elsewhere None: the generic default)."""
    if chunk_size is not None or x.device.type != "cpu":
        return chunk_size
    return max(1, CPU_BLOCK // max(m, 1))


def sq_block_fn(x: Tensor, y: Tensor | None = None) -> BlockFn:
    """``block(start, stop)``: rows of ``||x_i - y_j||^2`` (y defaults to x, diagonal exactly 0).

    For at most ``DIRECT_MAX_FEATURES`` features the squares of coordinate differences are summed
    directly, so tied points get exactly 0 (the matmul expansion leaves ~1e-16 |x|^2 of rounding,
    whose square root, ~1e-8 |x|, would spoil distance-based statistics on tied data).
    """
    if x.shape[1] > DIRECT_MAX_FEATURES:
        return kernel_block_fn(x, y, "sqeuclidean")
    y_ = x if y is None else y

    def block(start: int, stop: int) -> Tensor:
        rows = x[start:stop]
        out = (rows[:, :1] - y_[:, 0]).square()
        for k in range(1, x.shape[1]):  # in place (autograd keeps no copy of out): one pass less
            out.add_((rows[:, k : k + 1] - y_[:, k]).square_())
        return out

    return block


def kernel_blocks(
    x: Tensor,
    y: Tensor | None,
    kernel: str,
    bandwidths: Tensor | None,
    zero_diagonal: bool = False,
) -> BlockFn:
    """``block(start, stop)``: rows of the kernel matrix k(x_i, y_j) (summed over bandwidths).

    Kernels: ``gaussian`` exp(-d^2 / (2 s^2)), ``laplacian`` exp(-d / s), ``energy`` -d,
    ``linear`` <x_i, y_j>. ``zero_diagonal`` (only with ``y`` None) zeroes k(x_i, x_i).
    """
    same = y is None
    y_ = x if y is None else y
    if kernel == "linear":

        def raw(start: int, stop: int) -> Tensor:
            return x[start:stop] @ y_.T

    else:
        sq = sq_block_fn(x, y)
        if kernel == "gaussian":
            assert bandwidths is not None
            inv = 1.0 / (2.0 * bandwidths * bandwidths)

            def raw(start: int, stop: int) -> Tensor:
                d2 = sq(start, stop)
                if inv.numel() == 1:
                    return torch.exp(-d2 * inv[0])
                return torch.exp(-d2.unsqueeze(-1) * inv).sum(-1)

        elif kernel == "laplacian":
            assert bandwidths is not None
            inv_l = 1.0 / bandwidths

            def raw(start: int, stop: int) -> Tensor:
                d = safe_root(sq(start, stop))
                if inv_l.numel() == 1:
                    return torch.exp(-d * inv_l[0])
                return torch.exp(-d.unsqueeze(-1) * inv_l).sum(-1)

        elif kernel == "energy":

            def raw(start: int, stop: int) -> Tensor:
                return -safe_root(sq(start, stop))

        else:
            raise ValueError(
                f"kernel: expected 'gaussian', 'laplacian', 'energy' or 'linear', got {kernel!r}"
            )
    if not (zero_diagonal and same):
        return raw

    def zeroed(start: int, stop: int) -> Tensor:
        block = raw(start, stop)
        rows = torch.arange(stop - start, device=block.device)
        mask = torch.ones_like(block, dtype=torch.bool)
        mask[rows, rows + start] = False
        return block * mask

    return zeroed


def safe_ratio(num: Tensor, den_sqr: Tensor) -> Tensor:
    """``num / sqrt(|den_sqr|)``, and 0 where the denominator is 0 (dcor's convention)."""
    den = den_sqr.abs()
    positive = den > 0
    return torch.where(positive, num / den.clamp_min(torch.finfo(den.dtype).tiny).sqrt(), 0.0 * num)
