r"""Distance covariance and distance correlation (Székely, Rizzo & Bakirov 2007), dcor semantics.

For samples :math:`x \in \mathbb{R}^{n \times p}`, :math:`y \in \mathbb{R}^{n \times q}` let
:math:`a_{ij} = \|x_i - x_j\|^{\alpha}` and :math:`b_{ij} = \|y_i - y_j\|^{\alpha}` (``exponent``
:math:`\alpha \in (0, 2)`, default 1).

.. math::

    \mathrm{dCov}^2_n(x, y) = \frac{1}{n^2} \sum_{i,j} A_{ij} B_{ij}
    \qquad (A, B \text{ double-centred: the biased V-statistic, } \geq 0)

    \mathrm{dCov}^2_U(x, y) = \frac{1}{n(n-3)} \sum_{i \neq j} \tilde A_{ij} \tilde B_{ij}
    \qquad (\tilde A, \tilde B \text{ U-centred: unbiased, can be negative, } n \geq 4)

    \mathrm{dCor}^2(x, y) = \frac{\mathrm{dCov}^2(x, y)}
    {\sqrt{|\mathrm{dCov}^2(x, x)\, \mathrm{dCov}^2(y, y)|}} \quad (0 \text{ if the denominator is } 0)

The names, defaults and return values follow the ``dcor`` package so that users can switch:
``distance_covariance_sqr`` / ``distance_correlation_sqr`` return the squares,
``distance_covariance`` / ``distance_correlation`` their square roots (V-statistics only, as in
dcor); ``unbiased=True`` gives dcor's ``u_distance_covariance_sqr`` /
``u_distance_correlation_sqr``.

Algorithms (``method``):

- ``"naive"``: the O(n^2) definition, streamed in row blocks through
  :mod:`inforeg.core.pairwise` (O(n * chunk) memory when ``chunk_size`` is set; blocks are
  checkpointed under autograd so the backward pass stays within that memory too). Without
  autograd, one pass over the upper triangle of the symmetric distance matrices builds each
  block in place in reused, cache-sized buffers and reduces it at once (row sums and
  ``sum a_ij b_ij`` by dot products): half the arithmetic and no temporaries.
- ``"fast"``: O(n log n) time, O(n) memory, for one-dimensional x and y and ``exponent=1``
  only. Row sums of |x_i - x_j| come from one sort and a cumulative sum; with x sorted, the
  cross term is :math:`\sum_{i<j} \mathrm{sign}(y_j - y_i)(x_j - x_i)(y_j - y_i)`, and its
  dominance part (pairs with :math:`y_i \le y_j`) comes from a vectorised divide and conquer
  over log2(n / 32) levels, each a stable partition and a segmented cumulative sum in O(n)
  (the merge-sort idea of Chaudhuri & Hu 2019; Huo & Székely 2016 use an AVL tree). Fully
  differentiable (sorting and partitioning only permute values); tied pairs get a zero
  gradient, as in the naive path.
- ``"auto"``: ``"fast"`` when both inputs are 1-D (shape (n,) or (n, 1)), ``exponent == 1`` and
  n >= 4, else ``"naive"`` (the same rule as dcor). The fast path subtracts large partial sums; in
  float32 it agrees with the naive path to about 1e-5 relative, in float64 to about 1e-12.

Shapes: x (n,) or (n, p), y (n,) or (n, q); output a 0-d tensor in the input dtype (float16 and
bfloat16 are computed in float32).

Reference: G. J. Székely, M. L. Rizzo, N. K. Bakirov, "Measuring and testing dependence by
correlation of distances", Annals of Statistics 35(6), 2007; U-statistic: Székely & Rizzo,
"Partial distance correlation with methods for dissimilarities", Annals of Statistics 2014.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_choice, check_int, check_number, check_same_length
from inforeg.core.dtypes import compute_dtype
from inforeg.core.pairwise import (
    BlockFn,
    safe_root,
    stream_rows,
)
from inforeg.dependence._centering import centered_product_sum, centered_sum_from_rows
from inforeg.dependence._kernel_sum import centred_kernel_products
from inforeg.dependence._utils import (
    DIRECT_MAX_FEATURES,
    as_samples,
    at_origin,
    cpu_block_rows,
    safe_ratio,
    sq_block_fn,
)

Method = Literal["auto", "naive", "fast"]

__all__ = [
    "DistanceCorrelationLoss",
    "distance_correlation",
    "distance_correlation_sqr",
    "distance_covariance",
    "distance_covariance_sqr",
    "distance_matrix_blocks",
]


def distance_matrix_blocks(x: Tensor, exponent: float = 1.0) -> BlockFn:
    """``block(start, stop)``: rows of the matrix ``||x_i - x_j||^exponent`` (zero gradient at 0).

    When autograd is off (or x needs no gradient) the block is built in place (one ``addmm`` and
    three in-place passes), which is several times faster than the differentiable path.
    """
    half = exponent / 2.0
    if x.shape[1] > DIRECT_MAX_FEATURES and not (torch.is_grad_enabled() and x.requires_grad):
        sq_norms = (x * x).sum(1)

        def fast_block(start: int, stop: int) -> Tensor:
            rows = x[start:stop]
            d = torch.addmm(sq_norms.unsqueeze(0), rows, x.T, alpha=-2.0)
            d.add_(sq_norms[start:stop].unsqueeze(1)).clamp_(min=0.0)
            d.diagonal(offset=start).zero_()  # exact zeros for the points themselves
            return d.sqrt_() if half == 0.5 else d.pow_(half)

        return fast_block
    sq = sq_block_fn(x)

    def block(start: int, stop: int) -> Tensor:
        d2 = sq(start, stop)
        positive = d2 > 0
        safe = d2.clamp_min(torch.finfo(d2.dtype).tiny)
        powered = safe.sqrt() if half == 0.5 else safe.pow(half)
        return torch.where(positive, powered, 0.0 * d2)

    return block


def _validate(
    x: object, y: object, exponent: float, method: str, unbiased: bool
) -> tuple[Tensor, Tensor, str]:
    x2 = as_samples(x, "x")
    y2 = as_samples(y, "y")
    check_same_length(x2, y2, "x", "y")
    check_number(exponent, "exponent", low=0.0, high=2.0, low_inclusive=False, high_inclusive=False)
    check_choice(method, "method", ("auto", "naive", "fast"))
    n = x2.shape[0]
    if unbiased and n < 4:
        raise ValueError(
            f"x: the unbiased (U-statistic) estimator needs at least 4 samples, got {n}"
        )
    if n < 1:
        raise ValueError("x: expected at least one sample")
    one_d = x2.shape[1] == 1 and y2.shape[1] == 1
    if method == "fast":
        if not one_d:
            raise ValueError(
                "method: 'fast' needs one-dimensional x and y (shape (n,) or (n, 1)), got "
                f"x {tuple(x2.shape)} and y {tuple(y2.shape)}"
            )
        if exponent != 1.0:
            raise ValueError(f"method: 'fast' needs exponent=1, got exponent={exponent}")
        if n < 2:
            raise ValueError(f"x: method 'fast' needs at least 2 samples, got {n}")
    elif method == "auto":
        method = "fast" if one_d and exponent == 1.0 and n >= 4 else "naive"
    return x2, y2, method


# --------------------------------------------------------------------------- naive (streamed)


def _center(ab: Tensor, ra: Tensor, rb: Tensor, n: int, unbiased: bool) -> Tensor:
    return centered_sum_from_rows(ab, ra, rb, n, "u" if unbiased else "double")


def _center_sums(
    ab: Tensor, rarb: Tensor, sa: Tensor, sb: Tensor, n: int, unbiased: bool
) -> Tensor:
    """:func:`inforeg.dependence._centering.centered_sum_from_rows` from ``r^a.r^b`` and the totals."""
    if unbiased:
        return ab - 2.0 / (n - 2) * rarb + sa * sb / ((n - 1) * (n - 2))
    return ab - 2.0 / n * rarb + sa * sb / (n * n)


def _normalise(total: Tensor, n: int, unbiased: bool) -> Tensor:
    return total / (n * (n - 3)) if unbiased else total / (n * n)


def _sum_sq_distances(x: Tensor) -> Tensor:
    """``sum_ij ||x_i - x_j||^2 = 2 n sum_i ||x_i||^2 - 2 ||sum_i x_i||^2`` (on centred x)."""
    # float64: it enters the same cancelling centring sums as the pairwise terms
    xc = (x - x.detach().mean(0, keepdim=True)).to(torch.float64)
    return 2.0 * x.shape[0] * (xc * xc).sum() - 2.0 * (xc.sum(0) ** 2).sum()


def _needs_graph(*ts: Tensor) -> bool:
    return torch.is_grad_enabled() and any(t.requires_grad for t in ts)


#: Entries per distance block of the no-autograd pass on the CPU (two blocks of 2 MiB in
#: float64), so that the blocks are still in the L2 cache when they are reduced.
FUSED_BLOCK_ELEMENTS = 1 << 18
#: The same on GPUs and other devices: large blocks (2 x 128 MiB in float32), since there the
#: cost is kernel launches, not cache misses (at n = 1e5, 8-row blocks took 3.8 s on an H200).
FUSED_BLOCK_ELEMENTS_ACCEL = 1 << 25


def _fused_rows(n: int, chunk_size: int | None, device: torch.device) -> int:
    budget = FUSED_BLOCK_ELEMENTS if device.type == "cpu" else FUSED_BLOCK_ELEMENTS_ACCEL
    rows = max(8, budget // max(n, 1))
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size", low=1)
        rows = min(rows, chunk_size)
    return min(rows, n)


class _TriangleBlocks:
    """Rows ``start:stop`` and columns ``start:n`` of ``||x_i - x_j||^exponent``, built in place.

    More than ``DIRECT_MAX_FEATURES`` features: one matmul of augmented matrices,
    ``[x_i, |x_i|^2, 1] . [-2 x_j, 1, |x_j|^2] = ||x_i - x_j||^2``, then clamp (rounding can make
    it slightly negative), exact zeros on the diagonal, and the power, all in the same buffer.
    Fewer features: the squared coordinate differences are summed directly (tied points get exact
    zeros, as in :func:`inforeg.dependence._utils.sq_block_fn`).
    """

    def __init__(self, x: Tensor, exponent: float, rows: int) -> None:
        n, d = x.shape
        self.half = exponent / 2.0
        self.direct = d <= DIRECT_MAX_FEATURES
        self.buf = x.new_empty(rows * n)
        if self.direct:
            self.x = x
            self.xt = x.T.contiguous()
            self.tmp = x.new_empty(rows * n) if d > 1 else None
        else:
            sq = (x * x).sum(1, keepdim=True)
            ones = torch.ones_like(sq)
            self.x = torch.cat((x, sq, ones), 1)
            self.xt = torch.cat((-2.0 * x, ones, sq), 1).T.contiguous()

    def __call__(self, start: int, stop: int) -> Tensor:
        r, m = stop - start, self.xt.shape[1] - start
        out = self.buf[: r * m].view(r, m)
        cols = self.xt[:, start:]
        if self.direct:
            rows = self.x[start:stop]
            torch.sub(rows[:, :1], cols[0], out=out)
            out.mul_(out)
            if self.tmp is not None:
                tmp = self.tmp[: r * m].view(r, m)
                for k in range(1, cols.shape[0]):
                    torch.sub(rows[:, k : k + 1], cols[k], out=tmp)
                    out.addcmul_(tmp, tmp)
        else:
            torch.mm(self.x[start:stop], cols, out=out)
            out.clamp_(min=0.0)
            out[:, :r].diagonal().zero_()  # exact zeros for the points themselves
        return out.sqrt_() if self.half == 0.5 else out.pow_(self.half)


def _fused_sums(
    x: Tensor, y: Tensor, exponent: float, squares: bool, chunk_size: int | None
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    r"""``sum_ij a_ij b_ij``, row sums ``r^a``, ``r^b`` and (``squares``) ``sum a^2``, ``sum b^2``.

    One pass over the upper triangle (the matrices are symmetric): for each row block I, the
    blocks a[I, I:], b[I, I:] are built in place in reused buffers; their row sums go to rows I,
    the column sums of the part right of the diagonal block to the later rows, and
    ``sum_ij a_ij b_ij = 2 sum_{blocks} <a, b> - sum_{diagonal blocks} <a, b>``. Half the
    arithmetic of the full matrix and no temporaries; no autograd (callers check).
    """
    n = x.shape[0]
    rows = _fused_rows(n, chunk_size, x.device)
    a_blk = _TriangleBlocks(x, exponent, rows)
    b_blk = _TriangleBlocks(y, exponent, rows)
    # The V/U statistics cancel heavily (sum a*b and the centring terms are ~1000x the result
    # at n = 3e4), so sums and row sums accumulate in float64 whatever the input precision
    # (float32 accumulation was off by 3e-3 relative there); float32 blocks are widened into
    # reused float64 buffers before each dot.
    f64 = torch.float64
    wide = x.dtype != f64
    a64 = x.new_empty(rows * n, dtype=f64) if wide else None
    b64 = x.new_empty(rows * n, dtype=f64) if wide else None
    ra, rb = x.new_zeros(n, dtype=f64), x.new_zeros(n, dtype=f64)
    sums = x.new_zeros(3, dtype=f64)  # ab, aa, bb
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        r = stop - start
        a = a_blk(start, stop)
        b = b_blk(start, stop)
        if a64 is not None and b64 is not None:
            a = a64[: a.numel()].view(a.shape).copy_(a)
            b = b64[: b.numel()].view(b.shape).copy_(b)
        ra[start:stop] += a.sum(1)
        rb[start:stop] += b.sum(1)
        if stop < n:
            ra[stop:] += a[:, r:].sum(0)
            rb[stop:] += b[:, r:].sum(0)
        af, bf = a.view(-1), b.view(-1)
        sums[0] += 2.0 * torch.dot(af, bf) - (a[:, :r] * b[:, :r]).sum()
        if squares:
            sums[1] += 2.0 * torch.dot(af, af) - (a[:, :r] * a[:, :r]).sum()
            sums[2] += 2.0 * torch.dot(bf, bf) - (b[:, :r] * b[:, :r]).sum()
    if not squares:
        return sums[0], ra, rb, None, None
    return sums[0], ra, rb, sums[1], sums[2]


def _energy_products(
    x: Tensor, y: Tensor, self_products: bool, unbiased: bool, chunk_size: int | None
) -> Tensor:
    """Centred sums ``<A, B>`` (and ``<A, A>``, ``<B, B>``) of the distance matrices, with a
    closed-form backward: for exponent 1 they are HSIC's centred products with the kernel -d
    (signs cancel in each product), so the tiler of ``_kernel_sum`` serves them (one GEMM per
    tile, exact differences up to 4 features) instead of the streamed, checkpointed autograd
    path (benchmarks/dcor.md: 6x faster at n = 4000, 21x at n = 10000, float32)."""
    kernels = ("energy", "energy")
    return centred_kernel_products(x, y, kernels, (None, None), unbiased, self_products, chunk_size)


def _naive_all(
    x: Tensor, y: Tensor, exponent: float, unbiased: bool, chunk_size: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """dCov^2(x, y), dCov^2(x, x), dCov^2(y, y) in one streamed pass (each matrix formed once)."""
    n = x.shape[0]
    if _needs_graph(x, y) and exponent == 1.0:
        xy, xx, yy = _normalise(_energy_products(x, y, True, unbiased, chunk_size), n, unbiased)
        return xy, xx, yy
    # For exponent 1, sum_ij a_ij^2 = sum_ij ||x_i - x_j||^2 has a closed form: skip two passes.
    closed_squares = exponent == 1.0
    if not _needs_graph(x, y):
        ab, ra, rb, aa_, bb_ = _fused_sums(x, y, exponent, not closed_squares, chunk_size)
        if closed_squares:
            aa, bb = _sum_sq_distances(x), _sum_sq_distances(y)
        else:
            assert aa_ is not None and bb_ is not None
            aa, bb = aa_, bb_
    else:  # autograd with exponent != 1: streamed, checkpointed blocks
        a_block = distance_matrix_blocks(x, exponent)
        b_block = distance_matrix_blocks(y, exponent)

        def rows(start: int, stop: int) -> Tensor:
            a = a_block(start, stop)
            b = b_block(start, stop)
            sums = ((a * b), a, b, (a * a), (b * b))  # in float64: see centered_product_sum
            return torch.stack([t.sum(1, dtype=torch.float64) for t in sums], dim=1)

        r = stream_rows(rows, n, cpu_block_rows(chunk_size, x, n))
        ra, rb = r[:, 1], r[:, 2]
        ab, aa, bb = r[:, 0].sum(), r[:, 3].sum(), r[:, 4].sum()
    xy = _normalise(_center(ab, ra, rb, n, unbiased), n, unbiased)
    xx = _normalise(_center(aa, ra, ra, n, unbiased), n, unbiased)
    yy = _normalise(_center(bb, rb, rb, n, unbiased), n, unbiased)
    return xy, xx, yy


def _naive_cov(
    x: Tensor, y: Tensor, exponent: float, unbiased: bool, chunk_size: int | None
) -> Tensor:
    """dCov^2(x, y) alone (the streamed, checkpointed path when autograd needs it)."""
    n = x.shape[0]
    if not _needs_graph(x, y):
        ab, ra, rb, _, _ = _fused_sums(x, y, exponent, False, chunk_size)
        return _normalise(_center(ab, ra, rb, n, unbiased), n, unbiased)
    if exponent == 1.0:
        return _normalise(_energy_products(x, y, False, unbiased, chunk_size)[0], n, unbiased)
    centering: Literal["double", "u"] = "u" if unbiased else "double"
    total = centered_product_sum(
        distance_matrix_blocks(x, exponent),
        distance_matrix_blocks(y, exponent),
        n,
        centering=centering,
        chunk_size=cpu_block_rows(chunk_size, x, n),
    )
    return _normalise(total, n, unbiased)


# --------------------------------------------------------------------------- fast 1-D


def _run_starts(vs: Tensor) -> Tensor:
    """``new[k]``: sorted ``vs[k]`` starts a run of equal values."""
    new = torch.ones(vs.shape[0], dtype=torch.bool, device=vs.device)
    new[1:] = vs[1:] != vs[:-1]
    return new


def _sorted_abs_row_sums(vs: Tensor, new: Tensor | None = None) -> Tensor:
    """``r_k = sum_j |v_k - v_j|`` for sorted ``vs``: ``v_k (L_k - G_k) + S_G - S_L``.

    L_k, G_k count the values below and above v_k, S_L, S_G sum them. Without ties (``new`` None)
    ``L_k = k``; with ties (``new`` from :func:`_run_starts`) the run of v_k's equal values is
    left out of both sides, so tied pairs get a zero gradient as in the naive path.
    """
    n = vs.shape[0]
    prefix = torch.cumsum(vs, 0)
    total = prefix[-1]
    idx = torch.arange(n, device=vs.device)
    if new is None:
        k = idx.to(vs.dtype)
        return vs * (2.0 * k - n) + (total - 2.0 * (prefix - vs))
    start = torch.cummax(torch.where(new, idx, 0), 0).values
    last = torch.ones_like(new)
    last[:-1] = new[1:]
    end = torch.cummin(torch.where(last, idx + 1, n).flip(0), 0).values.flip(0)
    p0 = torch.cat((prefix.new_zeros(1), prefix))
    below, above = p0[start], total - p0[end]
    return vs * (start - (n - end)).to(vs.dtype) + (above - below)


#: Block size below which the fast 1-D path compares pairs directly instead of partitioning.
BASE = 32


def _dominance_total(xs: Tensor, ys: Tensor, order_y: Tensor) -> Tensor:
    r"""``D = sum_{i<j, y_i <= y_j} (x_j - x_i)(y_j - y_i)`` over positions in x-sorted order.

    ``order_y`` lists the positions sorted by (y, position). The positions are padded at the
    front to ``N = BASE * 2^L`` (padding carries zeros and sorts after every real point, so it
    adds nothing). Pairs inside blocks of ``BASE`` consecutive positions are compared directly
    (one batched masked product). Every other pair meets exactly once, at the level ``s`` where
    both lie in the same aligned group of ``2s`` positions, i in the left half and j in the
    right. Top-down, the order "by group, then by y" at level ``s`` comes from the one at level
    ``2s`` by a stable partition of each group (left half first), which costs O(N) (a cumulative
    count and one scatter) instead of a sort. At each level the right elements j collect, with
    one segmented cumulative sum over the group order, ``sum c_i`` of the left elements i before
    them, for ``c = (1, y, x, x y)``, and ``(x_j - x_i)(y_j - y_i) = x_j y_j - x_j y_i - y_j x_i +
    x_i y_i`` turns those sums into the level's share of D with four dot products.
    O(N log N) time, O(N) memory, differentiable (gathers, cumulative sums and products only).
    """
    n = xs.shape[0]
    levels = 0
    while BASE << levels < n:
        levels += 1
    big_n = BASE << levels
    pad = big_n - n
    zeros = xs.new_zeros(pad)
    xp, yp = torch.cat((zeros, xs)), torch.cat((zeros, ys))
    xyp = xp * yp
    valid = torch.cat((zeros, torch.ones_like(xs)))
    blocks = big_n // BASE
    yb = yp.view(blocks, BASE)
    lower = torch.ones(BASE, BASE, dtype=torch.bool, device=xs.device).tril(-1)
    mask = ((yb.unsqueeze(2) >= yb.unsqueeze(1)) & lower).to(xs.dtype)  # [b, j, i]
    c = torch.stack((valid, yp, xp, xyp), 1).view(blocks, BASE, 4)
    w = torch.stack((xyp, -xp, -yp, valid), 1).view(blocks, BASE, 4)
    total = (torch.bmm(mask, c) * w).sum()
    if levels == 0:
        return total
    src = torch.stack((yp, xp, xyp))
    cur = torch.cat((order_y + pad, torch.arange(pad, device=xs.device)))
    t = torch.arange(big_n, device=xs.device)
    s = BASE << (levels - 1)
    while True:
        groups = big_n // (2 * s)
        left = (cur & s) == 0
        lf = left.to(xs.dtype)
        g = src.index_select(1, cur)  # (y, x, xy) in the current order
        cl = g * lf
        cr = g - cl
        sums = torch.cumsum(cl.view(3, groups, 2 * s), 2).view(3, big_n)
        count = torch.cumsum(left.view(groups, 2 * s), 1).view(big_n)
        total = (
            total
            + torch.dot(cr[2], count.to(xs.dtype))
            - torch.dot(cr[1], sums[0])
            - torch.dot(cr[0], sums[1])
            + torch.dot(1.0 - lf, sums[2])
        )
        if s == BASE:
            return total
        # Stable partition: the k-th left element of a group goes to slot k of the group, the
        # k-th right one to slot s + k.
        before = count - left.to(count.dtype)
        target = torch.where(left, t - (t & (2 * s - 1)) + before, t + s - before)
        cur = torch.empty_like(cur).scatter_(0, target, cur)
        s //= 2


def _run_pair_total(x: Tensor, y: Tensor, new: Tensor) -> Tensor:
    """``sum (x_j - x_i)(y_j - y_i)`` over pairs i < j inside each run (``new`` marks starts).

    Per run of m points: ``m sum x y - sum x sum y``. For runs of tied y (or tied x) it is zero
    in value; it carries the gradient of the tied pairs, which the dominance sum counted with
    sign +1, so that subtracting it gives them a zero gradient as in the naive path.
    """
    ids = torch.cumsum(new, 0) - 1
    vals = torch.stack((torch.ones_like(x), x, y, x * y), 1)
    # n slots (at most n runs; empty slots add 0): the run count is never read on the host
    sums = vals.new_zeros((x.shape[0], 4)).index_add(0, ids, vals)
    return (sums[:, 0] * sums[:, 3] - sums[:, 1] * sums[:, 2]).sum()


def _fast_all(
    x: Tensor, y: Tensor, unbiased: bool, always_ties: bool = False
) -> tuple[Tensor, Tensor, Tensor]:
    r"""dCov^2(x, y), dCov^2(x, x), dCov^2(y, y) for 1-D x, y in O(n log n).

    With x sorted, ``|x_i - x_j| |y_i - y_j| = s_ij (x_j - x_i)(y_j - y_i)`` for i < j and
    ``s_ij = sign(y_j - y_i)``, so ``sum_{i<j} = 2 D - T - E`` with D from
    :func:`_dominance_total` (pairs with y_i <= y_j), the closed form
    ``T = sum_{i<j} (x_j - x_i)(y_j - y_i) = n sum x y - sum x sum y`` and E the pairs tied in x
    or in y (:func:`_run_pair_total`; zero in value, there for the gradient). Row sums of |x_i - x_j| come from the sorted order and a cumulative
    sum; only ``sum r^a``, ``sum r^b`` and ``r^a . r^b`` enter the centring.
    """
    n = x.shape[0]
    # Distances do not change under a shift; centring reduces cancellation in the sums.
    x1 = x.reshape(-1) - x.detach().mean()
    y1 = y.reshape(-1) - y.detach().mean()
    order_x = torch.argsort(x1)
    xs = x1[order_x]
    starts_x = _run_starts(xs)
    # On the CPU a tie-free input skips the tie handling; elsewhere the tie-aware path is always
    # taken, so that nothing is read back from the device (it is exact without ties too).
    host = x.device.type == "cpu" and not always_ties
    new_x = None if host and bool(starts_x.all()) else starts_x
    if new_x is not None:
        # Break ties in x by y, so that tied-x pairs have y_i <= y_j and get sign +1 (removed
        # below by the run total).
        by_y = torch.argsort(y1, stable=True)
        order_x = by_y[torch.argsort(x1[by_y], stable=True)]
        xs = x1[order_x]
    ys = y1[order_x]
    ra = _sorted_abs_row_sums(xs, new_x)  # in x order
    order_y = torch.argsort(ys, stable=True)  # positions by (y, position)
    ysy = ys[order_y]
    starts_y = _run_starts(ysy)
    new_y = None if host and bool(starts_y.all()) else starts_y
    rb = _sorted_abs_row_sums(ysy, new_y)  # in y order
    pairs = 2.0 * _dominance_total(xs, ys, order_y) - (n * (xs * ys).sum() - xs.sum() * ys.sum())
    if new_x is not None:
        pairs = pairs - _run_pair_total(xs, ys, new_x)
    if new_y is not None:
        pairs = pairs - _run_pair_total(xs[order_y], ysy, new_y)
    ab = 2.0 * pairs
    sa, sb = ra.sum(), rb.sum()
    # sum_ij |x_i - x_j|^2 = 2 n sum x^2 - 2 (sum x)^2 (closed form, no pairs needed).
    aa, bb = _sum_sq_distances(x1.unsqueeze(1)), _sum_sq_distances(y1.unsqueeze(1))
    xy = _normalise(_center_sums(ab, (ra[order_y] * rb).sum(), sa, sb, n, unbiased), n, unbiased)
    xx = _normalise(_center_sums(aa, (ra * ra).sum(), sa, sa, n, unbiased), n, unbiased)
    yy = _normalise(_center_sums(bb, (rb * rb).sum(), sb, sb, n, unbiased), n, unbiased)
    return xy, xx, yy


# --------------------------------------------------------------------------- public API


def _statistic(
    x: Tensor, y: Tensor, options: tuple[float, bool, Method, int | None], correlation: bool
) -> Tensor:
    """dCov^2 (``correlation``: dCor^2) for the public functions; ``options`` are their
    exponent, unbiased, method and chunk_size."""
    exponent, unbiased, method, chunk_size = options
    x2, y2, m = _validate(x, y, exponent, method, unbiased)
    dtype = compute_dtype(x2, y2)
    (xc,), (yc,) = at_origin(x2.to(dtype)), at_origin(y2.to(dtype))
    if m == "fast":
        xy, xx, yy = _fast_all(xc, yc, unbiased)
    elif correlation:
        xy, xx, yy = _naive_all(xc, yc, exponent, unbiased, chunk_size)
    else:  # the covariance alone streams only the cross product
        return _naive_cov(xc, yc, exponent, unbiased, chunk_size).to(x2.dtype)
    return (safe_ratio(xy, xx * yy) if correlation else xy).to(x2.dtype)


def distance_covariance_sqr(
    x: Tensor,
    y: Tensor,
    exponent: float = 1.0,
    unbiased: bool = False,
    method: Method = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    """Squared distance covariance (dcor's ``distance_covariance_sqr``).

    Args:
        x: samples, shape (n,) or (n, p).
        y: samples, shape (n,) or (n, q); the same n.
        exponent: power alpha in (0, 2) applied to the Euclidean distances (default 1).
        unbiased: False gives the V-statistic ``(1/n^2) sum A_ij B_ij`` (>= 0); True the
            U-statistic of Székely & Rizzo 2014 (dcor's ``u_distance_covariance_sqr``; needs
            n >= 4 and can be negative).
        method: ``"auto"``, ``"naive"`` (streamed O(n^2)) or ``"fast"`` (O(n log n), 1-D only).
        chunk_size: rows per streamed block for ``"naive"`` (None: chosen from n); without
            autograd it bounds the rows per block, which may be fewer to stay in cache.

    Returns:
        0-d tensor in the input dtype.

    Example:
        >>> a = torch.arange(1.0, 17.0).reshape(4, 4)
        >>> b = torch.tensor([1.0, 0.0, 0.0, 1.0])
        >>> float(distance_covariance_sqr(a, b))
        1.0
    """
    return _statistic(x, y, (exponent, unbiased, method, chunk_size), correlation=False)


def distance_covariance(
    x: Tensor,
    y: Tensor,
    exponent: float = 1.0,
    method: Method = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    """Distance covariance, the square root of the V-statistic (dcor's ``distance_covariance``).

    The V-statistic is non-negative in exact arithmetic; tiny negative rounding is clamped to 0
    (with a zero gradient there). Arguments as :func:`distance_covariance_sqr`.
    """
    return safe_root(distance_covariance_sqr(x, y, exponent, False, method, chunk_size))


def distance_correlation_sqr(
    x: Tensor,
    y: Tensor,
    exponent: float = 1.0,
    unbiased: bool = False,
    method: Method = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    """Squared distance correlation (dcor's ``distance_correlation_sqr``).

    ``dCov^2(x, y) / sqrt(|dCov^2(x, x) dCov^2(y, y)|)``, 0 when the denominator is 0 (a constant
    sample). In [0, 1] for the V-statistic; the U-statistic (``unbiased=True``, dcor's
    ``u_distance_correlation_sqr``) can be negative. Arguments as
    :func:`distance_covariance_sqr`; all three statistics come from one streamed pass.

    Example:
        >>> a = torch.arange(1.0, 17.0).reshape(4, 4)
        >>> b = torch.tensor([1.0, 0.0, 0.0, 1.0])
        >>> round(float(distance_correlation_sqr(a, b, unbiased=True)), 6)
        -0.5
    """
    return _statistic(x, y, (exponent, unbiased, method, chunk_size), correlation=True)


def distance_correlation(
    x: Tensor,
    y: Tensor,
    exponent: float = 1.0,
    method: Method = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    """Distance correlation, the square root of the V-statistic dCor^2 (dcor's ``distance_correlation``).

    Example:
        >>> a = torch.arange(1.0, 17.0).reshape(4, 4).double()
        >>> b = torch.tensor([1.0, 0.0, 0.0, 1.0]).double()
        >>> round(float(distance_correlation(a, b)), 6)
        0.52664
    """
    return safe_root(distance_correlation_sqr(x, y, exponent, False, method, chunk_size))


class DistanceCorrelationLoss(nn.Module):
    """Distance-correlation penalty ``weight * dCor^2(x, y)`` (or dCov^2) as a module.

    Args:
        statistic: ``"correlation"`` (dCor^2, scale-free, default) or ``"covariance"`` (dCov^2).
        exponent, unbiased, method, chunk_size: as in :func:`distance_covariance_sqr`.
        weight: multiplier of the statistic.

    Use ``inforeg.core.distributed.Gathered(DistanceCorrelationLoss())`` under DDP.
    """

    def __init__(
        self,
        statistic: Literal["correlation", "covariance"] = "correlation",
        exponent: float = 1.0,
        unbiased: bool = False,
        method: Method = "auto",
        chunk_size: int | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        check_choice(statistic, "statistic", ("correlation", "covariance"))
        check_number(
            exponent, "exponent", low=0.0, high=2.0, low_inclusive=False, high_inclusive=False
        )
        check_choice(method, "method", ("auto", "naive", "fast"))
        check_number(weight, "weight")
        self.statistic = statistic
        self.exponent = exponent
        self.unbiased = unbiased
        self.method: Method = method
        self.chunk_size = chunk_size
        self.weight = weight

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Return ``weight * statistic(x, y)``."""
        fn = (
            distance_correlation_sqr if self.statistic == "correlation" else distance_covariance_sqr
        )
        return self.weight * fn(x, y, self.exponent, self.unbiased, self.method, self.chunk_size)

    def extra_repr(self) -> str:
        """Hyper-parameters for ``repr``."""
        return (
            f"statistic={self.statistic!r}, exponent={self.exponent}, unbiased={self.unbiased}, "
            f"method={self.method!r}, weight={self.weight}"
        )
