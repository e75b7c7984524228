"""Exact k-nearest-neighbour search, streamed in row blocks (the k-NN estimators' primitive).

>>> x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
>>> d, i = knn_distances(x, k=2)
>>> d.tolist(), i[0].tolist()
([[1.0, 3.0], [1.0, 2.0], [2.0, 3.0], [4.0, 6.0]], [1, 2])
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from inforeg.core.checks import check_int
from inforeg.core.pairwise import _pair, _resolve_chunk, safe_root


def knn_distances(
    x: Tensor,
    y: Tensor | None = None,
    k: int = 1,
    chunk_size: int | None = None,
    metric: Literal["euclidean", "chebyshev"] = "euclidean",
) -> tuple[Tensor, Tensor]:
    """Distances and indices of the ``k`` nearest points of ``y`` (default ``x``) to each ``x_i``.

    With ``y`` None the point itself is excluded. Returns ``(dist, idx)``, both (n, k), sorted by
    increasing distance. Streams in row blocks: memory O(chunk * m) (O(chunk * m * d) for
    Chebyshev, with the default chunk sized accordingly).

    The Euclidean search is exact, also on near-duplicates far from the origin: the
    ``||x||^2 + ||y||^2 - 2 x.y`` expansion (one matmul, on data centred at the mean of ``y``)
    only proposes ``k + margin`` candidates per row; their distances are recomputed from
    coordinate differences and ranked. A row whose ranking the expansion's rounding-error bound
    cannot certify (more than the margin of points within that bound of the k-th distance) is
    searched again by differences over all of ``y``. That check costs one host sync per block.
    """
    x, y_ = _pair(x, y)
    same = y is None
    m = y_.shape[0] - (1 if same else 0)
    check_int(k, "k", low=1)
    if k > m:
        raise ValueError(f"k: expected at most {m} (the number of candidate neighbours), got {k}")
    if metric not in ("euclidean", "chebyshev"):
        raise ValueError(f"metric: expected 'euclidean' or 'chebyshev', got {metric!r}")
    n = x.shape[0]
    # The Chebyshev block is formed as (rows, m, d) differences: size the chunk for that.
    width = y_.shape[0] * (x.shape[1] if metric == "chebyshev" else 1)
    step = _resolve_chunk(chunk_size, n, width)
    if metric == "euclidean":
        # Centring keeps the expansion's cancellation error relative to the spread of the data,
        # not to its distance from the origin.
        centre = y_.detach().mean(0) if y_.shape[0] else y_.new_zeros(y_.shape[1])
        xc, yc = x.detach() - centre, y_.detach() - centre
        yy = (yc * yc).sum(1)
        yy_max = yy.amax() if yy.numel() else yy.new_zeros(())
    dists: list[Tensor] = []
    idxs: list[Tensor] = []
    for start in range(0, n, step):
        stop = min(start + step, n)
        if metric == "euclidean":
            d, i = _euclidean_block_knn(x, y_, xc, yc, yy, yy_max, start, stop, k, same)
        else:
            block = (x[start:stop, None, :] - y_[None, :, :]).abs().amax(dim=-1)
            if same:
                block = _exclude_self(block, start)
            d, i = torch.topk(block, k, dim=1, largest=False, sorted=True)
        dists.append(d)
        idxs.append(i)
    return torch.cat(dists), torch.cat(idxs)


# Candidates beyond k that the expansion proposes for exact re-ranking (at least this many).
_MARGIN = 3


def _exclude_self(block: Tensor, start: int) -> Tensor:
    rows = torch.arange(block.shape[0], device=block.device)
    return block.index_put(
        (rows, rows + start),
        block.new_full((), float("inf")),  # a fill: no host-to-device copy
    )


def _exact_sq(xr: Tensor, y: Tensor, idx: Tensor) -> Tensor:
    """``||x_r - y_idx||^2`` from differences, for rows ``xr`` (r, d) and indices ``idx`` (r, c)."""
    return ((xr[:, None, :] - y[idx]) ** 2).sum(-1)


def _euclidean_block_knn(
    x: Tensor,
    y: Tensor,
    xc: Tensor,
    yc: Tensor,
    yy: Tensor,
    yy_max: Tensor,
    start: int,
    stop: int,
    k: int,
    same: bool,
) -> tuple[Tensor, Tensor]:
    """Exact k nearest neighbours of rows ``start:stop`` of ``x`` among ``y`` (Euclidean)."""
    xr, xcr = x[start:stop], xc[start:stop]
    xx = (xcr * xcr).sum(1, keepdim=True)
    approx = (xx + yy - 2.0 * (xcr @ yc.T)).clamp_min(0.0)
    if same:
        approx = _exclude_self(approx, start)
    m = y.shape[0] - (1 if same else 0)
    c = min(m, k + max(k, _MARGIN))
    e, cand = torch.topk(approx, c, dim=1, largest=False, sorted=True)
    d2 = _exact_sq(xr.detach(), y.detach(), cand)
    d2, order = d2.sort(dim=1)
    cand = cand.gather(1, order)
    if c < m:
        # |expansion - exact| <= tau (a generous bound on the rounding error of the expansion);
        # every non-candidate has an expansion >= e[:, -1], so an exact distance >=
        # e[:, -1] - tau. If that does not exceed the k-th candidate, the row may be wrong.
        tau = 4.0 * (xcr.shape[1] + 4) * torch.finfo(approx.dtype).eps * (xx[:, 0] + yy_max)
        unsure = e[:, -1] - tau <= d2[:, k - 1]
        if bool(unsure.any()):  # host sync: rare rows (clusters of near-duplicates)
            rows = unsure.nonzero()[:, 0]
            every = torch.arange(y.shape[0], device=x.device).expand(rows.shape[0], -1)
            full = _exact_sq(xr[rows].detach(), y.detach(), every)
            if same:
                full[torch.arange(rows.shape[0], device=x.device), rows + start] = float("inf")
            cand = cand[:, :k].index_put((rows,), torch.topk(full, k, dim=1, largest=False)[1])
    i = cand[:, :k]
    # Differentiable distances of the selected neighbours (zero gradient at coincident points).
    return safe_root(_exact_sq(xr, y, i)), i
