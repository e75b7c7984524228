"""Exact k-NN search (``estimators._neighbors.knn_distances``)."""

from __future__ import annotations

import pytest
import torch

from inforeg.estimators._neighbors import knn_distances


def _points(n=23, d=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype)


def _brute_sq(x, y):
    # float64 squared distances by the definition, one pair at a time
    out = torch.empty(x.shape[0], y.shape[0], dtype=x.dtype)
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            out[i, j] = ((x[i] - y[j]) ** 2).sum()
    return out


def test_knn_matches_brute_force_and_streams():
    x = _points(40, 3)
    d, i = knn_distances(x, k=3, chunk_size=7)
    full = _brute_sq(x, x).sqrt()
    full.fill_diagonal_(float("inf"))
    ref_d, ref_i = torch.topk(full, 3, dim=1, largest=False)
    torch.testing.assert_close(d, ref_d, rtol=1e-12, atol=1e-12)
    assert torch.equal(i, ref_i)
    y = _points(11, 3, seed=9)
    d2, _ = knn_distances(x, y, k=11, chunk_size=3, metric="chebyshev")
    cheb = (x[:, None] - y[None]).abs().amax(-1).sort(dim=1).values
    torch.testing.assert_close(d2, cheb)
    with pytest.raises(ValueError, match="k: expected at most 39"):
        knn_distances(x, k=40)


def test_knn_distances_exact_on_ties_and_far_from_origin():
    # Far from the origin the expansion ||x||^2 + ||y||^2 - 2 x.y loses all digits of 1e-3.
    x = torch.tensor([[1e6, 0.0], [1e6 + 1e-3, 0.0], [1e6, 2e-3]], dtype=torch.float64)
    d, i = knn_distances(x, k=1)
    torch.testing.assert_close(
        d[:, 0], torch.tensor([1e-3, 1e-3, 2e-3], dtype=torch.float64), rtol=1e-6, atol=0
    )
    assert i[:, 0].tolist() == [1, 0, 0]


def _near_duplicates(seed=0):
    # Clusters of points 1e-9 apart near 1000: the matmul expansion's rounding error (~1e-10 in
    # squared distance) is far larger than the squared gaps (~1e-18) it would have to rank.
    g = torch.Generator().manual_seed(seed)
    centres = 1000.0 + torch.randn(6, 2, generator=g, dtype=torch.float64)
    return centres.repeat_interleave(12, 0) + 1e-9 * torch.randn(
        72, 2, generator=g, dtype=torch.float64
    )


@pytest.mark.parametrize("k", [1, 3, 8])
@pytest.mark.parametrize("chunk_size", [None, 5])
def test_knn_exact_ranking_on_near_duplicates(k, chunk_size):
    # Clusters of 12 exceed the candidate margin for every k here, so rows are re-searched.
    x = _near_duplicates()
    d, i = knn_distances(x, k=k, chunk_size=chunk_size)
    full = _brute_sq(x, x)
    full.fill_diagonal_(float("inf"))
    ref_d, ref_i = torch.topk(full, k, dim=1, largest=False)
    torch.testing.assert_close(d, ref_d.sqrt(), rtol=1e-12, atol=0)
    assert torch.equal(i, ref_i)
    y = _near_duplicates(seed=1)[:30]
    d, i = knn_distances(y, x, k=k, chunk_size=chunk_size)
    ref_d, ref_i = torch.topk(_brute_sq(y, x), k, dim=1, largest=False)
    torch.testing.assert_close(d, ref_d.sqrt(), rtol=1e-12, atol=0)
