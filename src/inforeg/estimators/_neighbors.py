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
from inforeg.core.pairwise import _pair, _resolve_chunk, _sqeuclidean, safe_sqrt


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
    Chebyshev, with the default chunk sized accordingly). Euclidean distances of the selected
    neighbours are computed from coordinate differences, so they are exact (not affected by the
    cancellation of the ``||x||^2 + ||y||^2 - 2 x.y`` expansion used to rank candidates).
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
    dists: list[Tensor] = []
    idxs: list[Tensor] = []
    for start in range(0, n, step):
        stop = min(start + step, n)
        if metric == "euclidean":
            block = _sqeuclidean(x[start:stop], y_)
        else:
            block = (x[start:stop, None, :] - y_[None, :, :]).abs().amax(dim=-1)
        if same:
            rows = torch.arange(stop - start, device=x.device)
            block = block.index_put(
                (rows, rows + start),
                block.new_full((), float("inf")),  # a fill: no host-to-device copy
            )
        d, i = torch.topk(block, k, dim=1, largest=False, sorted=True)
        if metric == "euclidean":
            # The matmul expansion selects the neighbours; their distances are recomputed from
            # the differences (n * k * d work), so ties and tiny distances come out exact.
            d = safe_sqrt(((x[start:stop, None, :] - y_[i]) ** 2).sum(-1))
            d, order = d.sort(dim=1)
            i = i.gather(1, order)
        dists.append(d)
        idxs.append(i)
    return torch.cat(dists), torch.cat(idxs)
