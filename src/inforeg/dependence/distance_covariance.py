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
  checkpointed under autograd so the backward pass stays within that memory too).
- ``"fast"``: O(n log^2 n) time, O(n) memory, for one-dimensional x and y and ``exponent=1``
  only. Row sums of |x_i - x_j| come from one sort and a cumulative sum; the cross term
  :math:`\sum_{ij} |x_i - x_j||y_i - y_j|` is expanded as
  :math:`\sum_{i<j} s_{ij} (x_j y_j - x_j y_i - x_i y_j + x_i y_i)` over x-sorted pairs with
  :math:`s_{ij} = \mathrm{sign}(y_j - y_i)`, and the signed dominance sums are formed by a
  vectorised bottom-up merge over log2(n) levels (the idea of Chaudhuri & Hu 2019; Huo &
  Székely 2016 use an AVL tree). Fully differentiable (sorting only permutes values).
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

from inforeg.core.checks import check_choice, check_number
from inforeg.core.pairwise import (
    BlockFn,
    centered_product_sum,
    centered_sum_from_rows,
    stream_rows,
)
from inforeg.dependence._utils import (
    DIRECT_MAX_FEATURES,
    as_samples,
    check_n_match,
    compute_dtype,
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


def _row_dot(a: Tensor, b: Tensor) -> Tensor:
    """``(a * b).sum(1)`` without a temporary matrix when autograd is off."""
    if torch.is_grad_enabled() and (a.requires_grad or b.requires_grad):
        return (a * b).sum(1)
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).reshape(-1)


def _validate(
    x: object, y: object, exponent: float, method: str, unbiased: bool
) -> tuple[Tensor, Tensor, str]:
    x2 = as_samples(x, "x")
    y2 = as_samples(y, "y")
    check_n_match(x2, y2, "x", "y")
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


def _centred(x: Tensor) -> Tensor:
    """Subtract the (detached) mean: distances are unchanged, rounding in ||x||^2 shrinks."""
    return x - x.detach().mean(0, keepdim=True)


def _center(ab: Tensor, ra: Tensor, rb: Tensor, n: int, unbiased: bool) -> Tensor:
    return centered_sum_from_rows(ab, ra, rb, n, "u" if unbiased else "double")


def _normalise(total: Tensor, n: int, unbiased: bool) -> Tensor:
    return total / (n * (n - 3)) if unbiased else total / (n * n)


def _sum_sq_distances(x: Tensor) -> Tensor:
    """``sum_ij ||x_i - x_j||^2 = 2 n sum_i ||x_i||^2 - 2 ||sum_i x_i||^2`` (on centred x)."""
    xc = x - x.detach().mean(0, keepdim=True)
    return 2.0 * x.shape[0] * (xc * xc).sum() - 2.0 * (xc.sum(0) ** 2).sum()


def _naive_all(
    x: Tensor, y: Tensor, exponent: float, unbiased: bool, chunk_size: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """dCov^2(x, y), dCov^2(x, x), dCov^2(y, y) in one streamed pass (each matrix formed once)."""
    n = x.shape[0]
    a_block = distance_matrix_blocks(x, exponent)
    b_block = distance_matrix_blocks(y, exponent)
    # For exponent 1, sum_ij a_ij^2 = sum_ij ||x_i - x_j||^2 has a closed form: skip two passes.
    closed_squares = exponent == 1.0

    def rows(start: int, stop: int) -> Tensor:
        a = a_block(start, stop)
        b = b_block(start, stop)
        ones = a.new_ones(n)
        if closed_squares:
            return torch.stack((_row_dot(a, b), a @ ones, b @ ones), dim=1)
        return torch.stack(
            (_row_dot(a, b), a @ ones, b @ ones, _row_dot(a, a), _row_dot(b, b)), dim=1
        )

    r = stream_rows(rows, n, chunk_size)
    ra, rb = r[:, 1], r[:, 2]
    if closed_squares:
        aa, bb = _sum_sq_distances(x), _sum_sq_distances(y)
    else:
        aa, bb = r[:, 3].sum(), r[:, 4].sum()
    xy = _normalise(_center(r[:, 0].sum(), ra, rb, n, unbiased), n, unbiased)
    xx = _normalise(_center(aa, ra, ra, n, unbiased), n, unbiased)
    yy = _normalise(_center(bb, rb, rb, n, unbiased), n, unbiased)
    return xy, xx, yy


# --------------------------------------------------------------------------- fast 1-D


def _abs_row_sums(v: Tensor) -> Tensor:
    """``r_i = sum_j |v_i - v_j|`` for a 1-D tensor, O(n log n)."""
    n = v.shape[0]
    order = torch.argsort(v, stable=True)
    vs = v[order]
    prefix = torch.cumsum(vs, 0) - vs  # exclusive prefix sums
    k = torch.arange(n, device=v.device, dtype=v.dtype)
    sorted_sums = vs * (2.0 * k - n) + vs.sum() - 2.0 * prefix
    return torch.zeros_like(sorted_sums).scatter(0, order, sorted_sums)


#: Block size below which the fast 1-D path compares pairs directly instead of merging.
BASE = 32


def _dominance_sums(ranks: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """For each position j: ``sum_{i<j, r_i<r_j} c_i`` and ``sum_{i<j, r_i<=r_j} c_i``.

    ``ranks`` (n,) non-negative int64 below n; ``c`` (n, k) values (differentiable).
    Bottom-up merge: at the level with block size s, every element of an odd block collects the
    elements of the even block just before it that have a smaller rank; each pair i < j meets at
    exactly one level. Per level, one sort of composite keys (group, rank, side) and one
    cumulative sum replace the merge: groups are contiguous in the sorted order and start at
    index ``group * 2s``, so no search is needed.
    """
    n, k = c.shape
    pos = torch.arange(n, device=c.device)
    zero_row = c.new_zeros((1, k))
    # Pairs inside blocks of BASE consecutive positions: one batched masked product.
    blocks = -(-n // BASE)
    pad = blocks * BASE - n
    cb = torch.cat([c, c.new_zeros((pad, k))]).reshape(blocks, BASE, k)
    rb = torch.cat([ranks, ranks.new_zeros(pad)]).reshape(blocks, BASE)
    lower = torch.ones(BASE, BASE, dtype=torch.bool, device=c.device).tril(-1)
    mask = (rb.unsqueeze(2) > rb.unsqueeze(1)) & lower  # [b, j, i]: i < j and r_i < r_j
    less = torch.bmm(mask.to(c.dtype), cb).reshape(blocks * BASE, k)[:n]
    stride = 2 * (n + 1)
    s = BASE
    while s < n:
        right = (pos // s) % 2 == 1
        group = pos // (2 * s)
        # Right elements sort before left ones of equal rank, so equal ranks are excluded.
        key = group * stride + 2 * ranks + (~right).long()
        perm = torch.argsort(key)
        contrib = (c * (~right).unsqueeze(1).to(c.dtype))[perm]
        prefix = torch.cat([zero_row, torch.cumsum(contrib, 0)], dim=0)
        sorted_group = group[perm]
        gathered = prefix[:-1] - prefix[sorted_group * (2 * s)]
        keep = right[perm].unsqueeze(1).to(c.dtype)
        less = less.index_add(0, perm, gathered * keep)
        s *= 2
    # Ties: sum_{i<j, r_i = r_j} c_i by a segmented prefix sum over the rank-sorted order.
    order = torch.argsort(ranks, stable=True)
    sorted_ranks = ranks[order]
    csorted = c[order]
    prefix = torch.cat([zero_row, torch.cumsum(csorted, 0)], dim=0)
    _, counts = torch.unique_consecutive(sorted_ranks, return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    equal_sorted = prefix[:-1] - prefix[starts]
    equal = torch.zeros_like(c).index_add(0, order, equal_sorted)
    return less, less + equal


def _abs_product_sum(x: Tensor, y: Tensor) -> Tensor:
    """``sum_{i,j} |x_i - x_j| |y_i - y_j|`` for 1-D x, y in O(n log^2 n)."""
    order = torch.argsort(x, stable=True)
    xs = x[order]
    ys = y[order]
    ranks = torch.unique(ys, return_inverse=True)[1]
    c = torch.stack((torch.ones_like(xs), ys, xs, xs * ys), dim=1)
    less, less_eq = _dominance_sums(ranks, c)
    prefix = torch.cumsum(c, 0) - c
    greater = prefix - less_eq
    signed = less - greater  # sum_{i<j} sign(y_j - y_i) c_i
    per_j = xs * ys * signed[:, 0] - xs * signed[:, 1] - ys * signed[:, 2] + signed[:, 3]
    return 2.0 * per_j.sum()


def _fast_all(x: Tensor, y: Tensor, unbiased: bool) -> tuple[Tensor, Tensor, Tensor]:
    n = x.shape[0]
    # Distances do not change under a shift; centring reduces cancellation in the sums.
    x1 = x.reshape(-1) - x.detach().mean()
    y1 = y.reshape(-1) - y.detach().mean()
    ra, rb = _abs_row_sums(x1), _abs_row_sums(y1)
    ab = _abs_product_sum(x1, y1)
    # sum_ij |x_i - x_j|^2 = 2 n sum x^2 - 2 (sum x)^2 (closed form, no pairs needed).
    aa, bb = _sum_sq_distances(x1.unsqueeze(1)), _sum_sq_distances(y1.unsqueeze(1))
    xy = _normalise(_center(ab, ra, rb, n, unbiased), n, unbiased)
    xx = _normalise(_center(aa, ra, ra, n, unbiased), n, unbiased)
    yy = _normalise(_center(bb, rb, rb, n, unbiased), n, unbiased)
    return xy, xx, yy


# --------------------------------------------------------------------------- public API


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
        method: ``"auto"``, ``"naive"`` (streamed O(n^2)) or ``"fast"`` (O(n log^2 n), 1-D only).
        chunk_size: rows per streamed block for ``"naive"`` (None: chosen from n).

    Returns:
        0-d tensor in the input dtype.

    Example:
        >>> a = torch.arange(1.0, 17.0).reshape(4, 4)
        >>> b = torch.tensor([1.0, 0.0, 0.0, 1.0])
        >>> float(distance_covariance_sqr(a, b))
        1.0
    """
    x2, y2, m = _validate(x, y, exponent, method, unbiased)
    dtype = compute_dtype(x2, y2)
    xc, yc = _centred(x2.to(dtype)), _centred(y2.to(dtype))
    n = xc.shape[0]
    if m == "fast":
        out = _fast_all(xc, yc, unbiased)[0]
    else:
        centering: Literal["double", "u"] = "u" if unbiased else "double"
        total = centered_product_sum(
            distance_matrix_blocks(xc, exponent),
            distance_matrix_blocks(yc, exponent),
            n,
            centering=centering,
            chunk_size=chunk_size,
        )
        out = _normalise(total, n, unbiased)
    return out.to(x2.dtype)


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
    from inforeg.core.pairwise import safe_sqrt

    return safe_sqrt(distance_covariance_sqr(x, y, exponent, False, method, chunk_size))


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
    x2, y2, m = _validate(x, y, exponent, method, unbiased)
    dtype = compute_dtype(x2, y2)
    xc, yc = _centred(x2.to(dtype)), _centred(y2.to(dtype))
    if m == "fast":
        xy, xx, yy = _fast_all(xc, yc, unbiased)
    else:
        xy, xx, yy = _naive_all(xc, yc, exponent, unbiased, chunk_size)
    return safe_ratio(xy, xx * yy).to(x2.dtype)


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
    from inforeg.core.pairwise import safe_sqrt

    return safe_sqrt(distance_correlation_sqr(x, y, exponent, False, method, chunk_size))


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
