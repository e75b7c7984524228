r"""k-nearest-neighbour estimators of entropy and mutual information.

- :func:`kl_entropy`: Kozachenko-Leonenko differential entropy.
- :func:`ksg_mutual_information`: Kraskov-Stoegbauer-Grassberger MI, algorithms 1 and 2, for
  multivariate ``x`` and ``y``.
- :func:`ksg_mutual_information_classif`: Ross (2014) MI between a continuous ``x`` and a
  discrete label ``y`` (the estimator of ``sklearn.feature_selection.mutual_info_classif``).

Units: **nats** by default (``base=math.e``); pass ``base=2`` for bits (NPEET's default).

These are monitoring estimators, not losses: they are not differentiable (counts and digammas)
and they synchronise with the host once (to validate duplicate points and, on the ``"kdtree"``
back-end, to move data to scipy). Two back-ends give the same numbers:

- ``"brute"``: torch, streamed in row blocks through :func:`inforeg.estimators._neighbors.knn_distances`
  and a blocked radius count, O(n * chunk) memory (no n x n matrix), any device;
- ``"kdtree"``: ``scipy.spatial.cKDTree`` (CPU, float64), O(n log n) for low dimensions.

``backend="auto"`` uses the k-d tree for CPU tensors when scipy is installed and the joint
dimension is at most 16, and the brute-force stream otherwise.

Ties and duplicates: neighbour counts use the strict ``<`` of KSG algorithm 1 (sklearn counts
with ``nextafter(eps, 0)``, the same thing) and ``<=`` for algorithm 2. Algorithm 2 also
depends on *which* neighbours are taken when several tie at the k-th joint distance (the two
back-ends may then pick different ones); algorithm 1 and the entropy only use the distance, so
they are exact under ties. A k-NN distance of exactly zero (at least ``k`` copies of a point)
makes the estimators undefined (``log 0``); it raises a ``ValueError`` naming the argument unless ``jitter > 0`` adds
``jitter * max(1, mean |column|) * N(0, 1)`` noise per column first (sklearn always adds
``1e-10`` of it, with a random state).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from inforeg.core.checks import (
    check_choice,
    check_finite,
    check_int,
    check_number,
    check_same_length,
    check_tensor,
    get_checks,
)
from inforeg.core.pairwise import default_chunk_size
from inforeg.core.threads import run_in_parts
from inforeg.estimators._common import check_log_base
from inforeg.estimators._neighbors import knn_distances

Backend = Literal["auto", "brute", "kdtree"]
Metric = Literal["euclidean", "chebyshev"]

__all__ = [
    "kl_entropy",
    "ksg_mutual_information",
    "ksg_mutual_information_classif",
    "ksg_mutual_information_per_feature",
]


def _points(x: Tensor, name: str) -> Tensor:
    check_tensor(x, name, ndim=(1, 2), floating=True, nonempty=True)
    if get_checks() == "full":
        check_finite(x, name)
    x = x.unsqueeze(1) if x.dim() == 1 else x
    return x.to(torch.float64)


def _jitter(x: Tensor, jitter: float, seed: int | None) -> Tensor:
    if jitter == 0.0:
        return x
    gen = torch.Generator(device="cpu")
    gen.manual_seed(0 if seed is None else seed)
    scale = x.abs().mean(0).clamp_min(1.0)
    noise = torch.randn(x.shape, generator=gen, dtype=x.dtype).to(x.device)
    return x + jitter * scale * noise


def _use_kdtree(backend: str, x: Tensor, dim: int) -> bool:
    check_choice(backend, "backend", ("auto", "brute", "kdtree"))
    if backend == "brute":
        return False
    try:
        import scipy.spatial  # noqa: F401
    except ImportError as exc:
        if backend == "kdtree":
            raise ImportError("backend='kdtree' needs scipy: pip install 'inforeg[ref]'") from exc
        return False
    return backend == "kdtree" or (x.device.type == "cpu" and dim <= 16)


# The private helpers below take points as (n, d) or, for the per-feature screen
# (:func:`ksg_mutual_information_per_feature`), a batch of independent problems (..., n, d).


def _chebyshev_block(a: Tensor, b: Tensor) -> Tensor:
    # One coordinate at a time: no (rows, m, d) intermediate. Each coordinate of b is made
    # contiguous first (a strided inner operand makes the broadcast subtraction ~4x slower).
    bt = b.transpose(-1, -2).contiguous()
    out = (a[..., :, 0, None] - bt[..., 0, None, :]).abs_()
    for j in range(1, a.shape[-1]):
        torch.maximum(out, (a[..., :, j, None] - bt[..., j, None, :]).abs_(), out=out)
    return out


def _knn_chebyshev(x: Tensor, k: int, chunk_size: int | None) -> tuple[Tensor, Tensor]:
    n = x.shape[-2]
    batch = x[..., 0, 0].numel()
    step = chunk_size or max(1, default_chunk_size(n, batch * n, budget=1 << 23))
    dists, idxs = [], []
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = _chebyshev_block(x[..., start:stop, :], x)
        rows = torch.arange(stop - start, device=x.device)
        block[..., rows, rows + start] = float("inf")
        d, i = torch.topk(block, k, dim=-1, largest=False, sorted=True)
        dists.append(d)
        idxs.append(i)
    return torch.cat(dists, dim=-2), torch.cat(idxs, dim=-2)


def _euclidean_block(a: Tensor, b: Tensor) -> Tensor:
    # Exact differences (not the ||a||^2 + ||b||^2 - 2ab expansion) so that radius counts are
    # consistent with the neighbour distances on ties.
    return (a[..., :, None, :] - b[..., None, :, :]).pow(2).sum(-1).sqrt()


def _count_within(
    x: Tensor,
    radius: Tensor,
    strict: bool,
    metric: str,
    chunk_size: int | None,
    exclude_self: bool = True,
) -> Tensor:
    """``#{j (!= i): d(x_i, x_j) < r_i}`` (or ``<=``), streamed in row blocks."""
    n, d = x.shape[-2:]
    per_row = x[..., 0, 0].numel() * n * (1 if metric == "chebyshev" else d)
    step = chunk_size or max(1, default_chunk_size(n, per_row, budget=1 << 23))
    fn = _chebyshev_block if metric == "chebyshev" else _euclidean_block
    counts = []
    for start in range(0, n, step):
        stop = min(start + step, n)
        block = fn(x[..., start:stop, :], x)
        r = radius[..., start:stop, None]
        inside = block < r if strict else block <= r
        c = inside.sum(-1)
        if exclude_self:
            c = c - (0.0 < r[..., 0] if strict else torch.ones_like(c, dtype=torch.bool)).long()
        counts.append(c)
    return torch.cat(counts, dim=-1).to(torch.float64)


def _count_sorted_1d_numpy(x: Tensor, radius: Tensor, strict: bool) -> Tensor | None:
    """CPU version of :func:`_count_sorted_1d` in numpy (faster sort and binary search).

    Returns None when the ambiguous windows are wide (heavy ties): the caller falls back.
    """
    import numpy as np

    xv = x[:, 0].numpy()
    order = np.argsort(xv, kind="stable")
    v = xv[order]
    r = radius.numpy()[order]
    tol = 8.0 * np.finfo(v.dtype).eps * (np.abs(v) + r)
    a_lo = np.searchsorted(v, v - r - tol, "left")
    b_lo = np.searchsorted(v, v - r + tol, "right")
    a_hi = np.searchsorted(v, v + r - tol, "left")
    b_hi = np.searchsorted(v, v + r + tol, "right")
    counts = np.maximum(a_hi - b_lo, 0).astype(np.float64)
    l_end = np.minimum(b_lo, b_hi)
    r_start = np.maximum(a_hi, b_lo)
    width = int(max((l_end - a_lo).max(), (b_hi - r_start).max())) if v.size else 0
    if width > 64:
        return None
    for off in range(width):
        for start, end in ((a_lo, l_end), (r_start, b_hi)):
            pos = start + off
            valid = pos < end
            dist = np.abs(v[np.minimum(pos, v.size - 1)] - v)
            ok = dist < r if strict else dist <= r
            counts += ok & valid
    counts -= (r > 0) if strict else 1.0
    out = np.empty_like(counts)
    out[order] = counts
    return torch.from_numpy(out)


def _count_sorted_1d(
    x: Tensor, radius: Tensor, strict: bool, chunk_size: int | None, use_numpy: bool = True
) -> Tensor:
    """Exact ``#{j != i: |x_j - x_i| < r_i}`` (or ``<=``) for scalar ``x`` by binary search.

    ``x_i +- r_i`` are rounded, so the search uses bounds widened and narrowed by a few ulps;
    only the few samples between them are tested with the exact distance ``|x_j - x_i|``.
    O(n log n) time, O(n) memory, any device.
    """
    if use_numpy and x.device.type == "cpu" and x.dim() == 2:
        got = _count_sorted_1d_numpy(x, radius, strict)
        return got if got is not None else _count_within(x, radius, strict, "chebyshev", chunk_size)
    # Queries in sorted order (cache-friendly binary searches); counts are scattered back.
    s, order = torch.sort(x[..., 0].contiguous(), dim=-1)
    v = s
    radius_in = radius
    radius = radius.gather(-1, order)
    tol = 8.0 * torch.finfo(v.dtype).eps * (v.abs() + radius)
    a_lo = torch.searchsorted(s, v - radius - tol, side="left")
    b_lo = torch.searchsorted(s, v - radius + tol, side="right")
    a_hi = torch.searchsorted(s, v + radius - tol, side="left")
    b_hi = torch.searchsorted(s, v + radius + tol, side="right")
    inside = (a_hi - b_lo).clamp_min(0)
    l_end = torch.minimum(b_lo, b_hi)
    r_start = torch.maximum(a_hi, b_lo)
    width = int(torch.maximum(l_end - a_lo, b_hi - r_start).max()) if v.numel() else 0
    if width > 64:  # heavy ties at the boundary: exact blocked count instead
        return _count_within(x, radius_in, strict, "chebyshev", chunk_size)
    counts = inside.to(torch.float64)
    if width > 0:
        offs = torch.arange(width, device=v.device)
        last = s.shape[-1] - 1
        for start, end in ((a_lo, l_end), (r_start, b_hi)):
            pos = start[..., None] + offs
            valid = pos < end[..., None]
            vals = s.gather(-1, pos.clamp_max(last).flatten(-2)).view(pos.shape)
            dist = (vals - v[..., None]).abs()
            ok = dist < radius[..., None] if strict else dist <= radius[..., None]
            counts = counts + (ok & valid).sum(-1)
    self_in = (radius > 0) if strict else torch.ones_like(radius, dtype=torch.bool)
    return torch.empty_like(counts).scatter_(-1, order, counts - self_in.to(torch.float64))


def _count_kdtree(x: Tensor, radius: Tensor, strict: bool, p: float) -> Tensor:
    from scipy.spatial import cKDTree

    xn = x.detach().cpu().numpy()
    r = radius.detach().cpu().numpy()
    if strict:
        import numpy as np

        r = np.nextafter(r, 0.0)
    tree = cKDTree(xn)
    counts = tree.query_ball_point(xn, r, p=p, return_length=True, workers=-1) - 1
    return torch.as_tensor(counts, dtype=torch.float64, device=x.device)


def _knn(
    x: Tensor, k: int, metric: str, kdtree: bool, chunk_size: int | None
) -> tuple[Tensor, Tensor]:
    """Distances and indices of the k nearest neighbours (self excluded), each (n, k)."""
    if kdtree:
        from scipy.spatial import cKDTree

        xn = x.detach().cpu().numpy()
        p = math.inf if metric == "chebyshev" else 2.0
        dist, idx = cKDTree(xn).query(xn, k=k + 1, p=p, workers=-1)
        # Column 0 is the point itself (distance 0) unless duplicates tie with it; drop one
        # entry per row that equals the row index, or the last column if none does.
        import numpy as np

        rows = np.arange(xn.shape[0])[:, None]
        is_self = idx == rows
        has_self = is_self.any(1, keepdims=True)
        drop = np.where(has_self, is_self.argmax(1)[:, None], k)
        keep = np.ones_like(idx, dtype=bool)
        np.put_along_axis(keep, drop, False, axis=1)
        dist = dist[keep].reshape(-1, k)
        idx = idx[keep].reshape(-1, k)
        return (
            torch.as_tensor(dist, dtype=torch.float64, device=x.device),
            torch.as_tensor(idx, dtype=torch.long, device=x.device),
        )
    if metric == "euclidean":
        # knn_distances recomputes the selected distances from differences: exact, so they
        # agree with the radius counts.
        return knn_distances(x, k=k, chunk_size=chunk_size, metric="euclidean")
    if x.shape[-1] > 8:
        return knn_distances(x, k=k, chunk_size=chunk_size, metric="chebyshev")
    return _knn_chebyshev(x, k, chunk_size)


def _check_k(k: int, n: int, name: str = "k") -> int:
    check_int(k, name, low=1)
    if k >= n:
        raise ValueError(f"{name}: expected k < n = {n} (number of samples), got {k}")
    return k


def _log_unit_ball(d: int, metric: str) -> float:
    if metric == "chebyshev":
        return d * math.log(2.0)
    return (d / 2.0) * math.log(math.pi) - math.lgamma(d / 2.0 + 1.0)


def _no_zero_radius(r: Tensor, name: str) -> None:
    if bool((r <= 0).any()):
        zeros = int((r <= 0).sum())
        raise ValueError(
            f"{name}: {zeros} sample(s) have a k-th neighbour at distance 0 (duplicate points); "
            "the k-NN estimator is undefined there. Remove duplicates, raise k, or pass jitter > 0"
        )


def kl_entropy(
    x: Tensor,
    k: int = 3,
    base: float = math.e,
    metric: Metric = "euclidean",
    *,
    jitter: float = 0.0,
    seed: int | None = 0,
    backend: Backend = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    r"""Kozachenko-Leonenko k-NN estimate of the differential entropy of ``x``.

    .. math::

        \hat H = \psi(N) - \psi(k) + \log c_d + \frac{d}{N}\sum_{i=1}^N \log r_i

    with :math:`r_i` the distance from :math:`x_i` to its k-th nearest neighbour and
    :math:`c_d` the volume of the unit ball of the metric: :math:`\log c_d = \tfrac d2\log\pi -
    \log\Gamma(\tfrac d2 + 1)` (Euclidean) or :math:`c_d = 2^d` (Chebyshev / max-norm, NPEET's
    choice). Kozachenko & Leonenko (1987); Kraskov et al. (2004) eq. (20).

    Args:
        x: samples, shape (N,) or (N, d).
        k: neighbour order, ``1 <= k < N``. Default 3.
        base: logarithm base of the result; ``math.e`` (nats, default) or 2 (bits).
        metric: ``"euclidean"`` (default) or ``"chebyshev"``.
        jitter: relative Gaussian noise added before the search (see module docstring); 0 off.
        seed: seed of the jitter noise.
        backend: ``"auto"``, ``"brute"`` (torch, streamed) or ``"kdtree"`` (scipy).
        chunk_size: rows per block of the brute-force search.

    Returns:
        0-d tensor in the dtype of ``x`` (computed in float64).

    Raises:
        ValueError: ``k >= N``, duplicate points (a zero k-NN distance), NaN under "full" checks.

    Example (unit spacing, k = 1: every r_i = 1, so ``psi(4) - psi(1) + log 2 = 11/6 + log 2``):

        >>> x = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
        >>> print(f"{float(kl_entropy(x, k=1)):.4f}")
        2.5265
        >>> print(f"{float(kl_entropy(x, k=1, base=2)):.4f}")
        3.6449
    """
    dtype = x.dtype
    xs = _points(x, "x")
    n, d = xs.shape
    _check_k(k, n)
    check_choice(metric, "metric", ("euclidean", "chebyshev"))
    check_number(jitter, "jitter", low=0.0)
    check_log_base(base)
    xs = _jitter(xs, jitter, seed)
    dist, _ = _knn(xs, k, metric, _use_kdtree(backend, xs, d), chunk_size)
    r = dist[:, -1]
    _no_zero_radius(r, "x")
    h = (
        torch.special.digamma(torch.tensor(float(n), dtype=torch.float64))
        - torch.special.digamma(torch.tensor(float(k), dtype=torch.float64))
        + _log_unit_ball(d, metric)
        + d * r.log().mean()
    )
    return (h / math.log(base)).to(dtype)


def ksg_mutual_information(
    x: Tensor,
    y: Tensor,
    k: int = 3,
    algorithm: Literal[1, 2] = 1,
    base: float = math.e,
    *,
    jitter: float = 0.0,
    seed: int | None = 0,
    backend: Backend = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    r"""Kraskov-Stoegbauer-Grassberger k-NN estimate of :math:`I(X;Y)`.

    Joint space with the max-norm :math:`\|(x, y)\| = \max(\|x\|_\infty, \|y\|_\infty)`.

    Algorithm 1 (:math:`\varepsilon_i` = distance to the k-th joint neighbour, strict counts
    :math:`n_x(i) = \#\{j \ne i: \|x_j - x_i\|_\infty < \varepsilon_i\}`):

    .. math::

        \hat I^{(1)} = \psi(k) + \psi(N) - \langle \psi(n_x + 1) + \psi(n_y + 1) \rangle

    Algorithm 2 (:math:`\varepsilon_{x,i}` = largest x-distance among the k joint neighbours,
    counts with :math:`\le`):

    .. math::

        \hat I^{(2)} = \psi(k) - 1/k + \psi(N) - \langle \psi(n_x) + \psi(n_y) \rangle

    Kraskov, Stoegbauer & Grassberger, "Estimating mutual information", Phys. Rev. E 69 (2004),
    arXiv cond-mat/0305641. The estimate can be slightly negative for independent variables; it
    is returned as is (``sklearn.feature_selection.mutual_info_regression`` returns
    ``max(0, I)`` and first divides each variable by its standard deviation: pass
    ``x / x.std(unbiased=False)`` to reproduce it; the max-norm makes the estimate depend on the
    relative scale of the coordinates).

    Args:
        x: shape (N,) or (N, d_x).
        y: shape (N,) or (N, d_y).
        k: neighbour order, ``1 <= k < N``. Default 3.
        algorithm: 1 (default) or 2.
        base: logarithm base (``math.e`` nats by default, 2 for bits).
        jitter, seed, backend, chunk_size: see :func:`kl_entropy`.

    Returns:
        0-d tensor in the dtype of ``x``, without gradient (a function of neighbour counts).
    """
    dtype = x.dtype
    xs = _points(x, "x")
    ys = _points(y, "y")
    check_same_length(xs, ys, "x", "y")
    n = xs.shape[0]
    _check_k(k, n)
    if algorithm not in (1, 2):
        raise ValueError(f"algorithm: expected 1 or 2, got {algorithm!r}")
    check_number(jitter, "jitter", low=0.0)
    check_log_base(base)
    xs = _jitter(xs, jitter, seed)
    # y's noise must differ from x's, also for seed=None (both were seed 0: the same noise
    # ordered ties in x and y alike, 3.1 nats of spurious MI for independent discrete data)
    ys = _jitter(ys, jitter, (0 if seed is None else seed) + 1)
    tree = _use_kdtree(backend, xs, xs.shape[1] + ys.shape[1])
    return (_ksg(xs, ys, k, algorithm, tree, chunk_size) / math.log(base)).to(dtype)


def _ksg(
    xs: Tensor,
    ys: Tensor,
    k: int,
    algorithm: int,
    tree: bool,
    chunk_size: int | None,
    check_radius: bool = True,
) -> Tensor:
    """KSG estimate in nats of each problem: ``xs`` (..., N, d_x), ``ys`` (..., N, d_y) -> (...).

    Leading batch dimensions (independent problems, as in the per-feature screen) need the torch
    back-end (``tree=False``).
    """
    xs, ys = xs.detach(), ys.detach()  # a function of neighbour counts: no gradient to keep
    joint = torch.cat((xs, ys), dim=-1)
    dist, idx = _knn(joint, k, "chebyshev", tree, chunk_size)
    psi = torch.special.digamma
    n_t = torch.tensor(float(xs.shape[-2]), dtype=torch.float64, device=xs.device)
    k_t = torch.tensor(float(k), dtype=torch.float64, device=xs.device)
    if check_radius:
        _no_zero_radius(dist[..., -1], "x, y")

    def count(z: Tensor, r: Tensor, strict: bool) -> Tensor:
        if z.shape[-1] == 1:
            return _count_sorted_1d(z, r, strict, chunk_size)
        if tree:
            return _count_kdtree(z, r, strict, math.inf)
        return _count_within(z, r, strict, "chebyshev", chunk_size)

    if algorithm == 1:
        eps = dist[..., -1]
        nx = count(xs, eps, strict=True)
        ny = count(ys, eps, strict=True)
        return psi(k_t) + psi(n_t) - (psi(nx + 1) + psi(ny + 1)).mean(-1)
    # the largest x- (y-) distance among the k joint neighbours of each sample
    ex = torch.take_along_dim(xs[..., None, :, :], idx[..., None], dim=-2) - xs[..., None, :]
    ey = torch.take_along_dim(ys[..., None, :, :], idx[..., None], dim=-2) - ys[..., None, :]
    nx = count(xs, ex.abs().amax(-1).amax(-1), strict=False)
    ny = count(ys, ey.abs().amax(-1).amax(-1), strict=False)
    return psi(k_t) - 1.0 / k + psi(n_t) - (psi(nx) + psi(ny)).mean(-1)


def ksg_mutual_information_per_feature(
    x: Tensor, y: Tensor, k: int = 3, feature_chunk: int | None = None
) -> Tensor:
    r"""KSG (algorithm 1) estimate of :math:`I(X_j; Y)` for every column ``j`` of ``x``, in nats.

    Scalar features, scalar ``y``; each variable is divided by its (population) standard
    deviation first, as ``sklearn.feature_selection.mutual_info_regression`` does (no jitter,
    no clipping at 0). One batched call of the estimator of :func:`ksg_mutual_information`
    (torch back-end) per block of ``feature_chunk`` features: time O(p n^2), memory
    O(feature_chunk * n^2), so meant for n up to a few thousand. On CPU the blocks are shared
    among the intra-op threads, each thread taking a contiguous range of features. Duplicate points are not
    rejected here (the estimate stays finite; sklearn breaks such ties with 1e-10 noise).

    Args:
        x: (n, p) features. y: (n,) target. k: neighbour order (1 <= k < n).
        feature_chunk: features per block (default: about 2^18 / n^2, so that one block's
            n x n distances stay in the CPU cache).

    Returns:
        (p,) float64 tensor.
    """
    check_tensor(x, "x", ndim=2, floating=True, nonempty=True)
    check_tensor(y, "y", ndim=1, floating=True)
    check_same_length(x, y, "x", "y")
    n, p = x.shape
    _check_k(k, n)
    if feature_chunk is not None:
        check_int(feature_chunk, "feature_chunk", low=1)
    if get_checks() == "full":
        check_finite(x, "x")
        check_finite(y, "y")
    x = x.detach().to(torch.float64)
    y = y.detach().to(torch.float64)
    xs = (x / x.std(0, unbiased=False).clamp_min(1e-300)).T.contiguous().unsqueeze(-1)  # (p, n, 1)
    ys = (y / y.std(unbiased=False).clamp_min(1e-300)).view(1, n, 1)
    step = feature_chunk or max(1, (1 << 18) // (n * n))
    out = torch.empty(p, dtype=torch.float64, device=x.device)

    def blocks(lo: int, hi: int) -> None:
        for s in range(lo, hi, step):
            xb = xs[s : min(s + step, hi)]
            out[s : s + xb.shape[0]] = _ksg(
                xb, ys.expand(xb.shape[0], n, 1), k, 1, False, None, False
            )

    cpu_parts = min(torch.get_num_threads(), -(-p // step)) if x.device.type == "cpu" else 1
    run_in_parts(p, cpu_parts, blocks)
    return out


def ksg_mutual_information_classif(
    x: Tensor,
    y: Tensor,
    k: int = 3,
    base: float = math.e,
    metric: Metric = "euclidean",
    *,
    jitter: float = 0.0,
    seed: int | None = 0,
    backend: Backend = "auto",
    chunk_size: int | None = None,
) -> Tensor:
    r"""Ross (2014) k-NN estimate of :math:`I(X;Y)` for continuous ``x`` and discrete ``y``.

    For each sample, :math:`k_i = \min(k, N_{y_i} - 1)`, :math:`d_i` = distance to its
    :math:`k_i`-th neighbour among samples of the same class, and :math:`m_i` = number of samples
    of any class (itself included) strictly closer than :math:`d_i`. Then

    .. math::

        \hat I = \psi(N) + \langle\psi(k_i)\rangle - \langle\psi(N_{y_i})\rangle
                 - \langle\psi(m_i)\rangle

    averaged over the samples whose class has at least two members (the others are dropped, and
    ``N`` counts only the kept samples), as in ``sklearn.feature_selection.mutual_info_classif``
    (which returns ``max(0, I)``). B. C. Ross, "Mutual Information between Discrete and
    Continuous Data Sets", PLoS ONE 9(2) 2014.

    Args:
        x: continuous samples, shape (N,) or (N, d).
        y: integer labels, shape (N,).
        k: neighbour order (>= 1). Default 3.
        base: logarithm base (nats by default).
        metric: ``"euclidean"`` (sklearn's) or ``"chebyshev"``.
        jitter, seed, backend, chunk_size: see :func:`kl_entropy`.

    Returns:
        0-d tensor in the dtype of ``x``.
    """
    dtype = x.dtype
    xs = _points(x, "x")
    check_tensor(y, "y", ndim=1, integer=True)
    check_same_length(xs, y, "x", "y")
    check_int(k, "k", low=1)
    check_choice(metric, "metric", ("euclidean", "chebyshev"))
    check_number(jitter, "jitter", low=0.0)
    check_log_base(base)
    xs = _jitter(xs, jitter, seed)
    n, d = xs.shape
    tree = _use_kdtree(backend, xs, d)
    y = y.to(xs.device)
    labels, inverse, counts = torch.unique(y, return_inverse=True, return_counts=True)
    label_count = counts[inverse].to(torch.float64)
    radius = torch.zeros(n, dtype=torch.float64, device=xs.device)
    k_all = torch.zeros(n, dtype=torch.float64, device=xs.device)
    for c in range(labels.shape[0]):
        n_c = int(counts[c])
        if n_c < 2:
            continue
        mask = inverse == c
        k_c = min(k, n_c - 1)
        dist, _ = _knn(xs[mask], k_c, metric, tree, chunk_size)
        radius[mask] = dist[:, -1]
        k_all[mask] = k_c
    keep = label_count > 1
    if not bool(keep.any()):
        raise ValueError("y: every class has a single sample; the estimator needs a class with 2+")
    xs, radius, k_all, label_count = xs[keep], radius[keep], k_all[keep], label_count[keep]
    _no_zero_radius(radius, "x")
    if tree:
        m_all = _count_kdtree(xs, radius, True, math.inf if metric == "chebyshev" else 2.0) + 1
    else:
        m_all = _count_within(xs, radius, True, metric, chunk_size, exclude_self=False)
    psi = torch.special.digamma
    n_kept = torch.tensor(float(xs.shape[0]), dtype=torch.float64, device=xs.device)
    mi = psi(n_kept) + psi(k_all).mean() - psi(label_count).mean() - psi(m_all).mean()
    return (mi / math.log(base)).to(dtype)
