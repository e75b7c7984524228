from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inforeg.core import pairwise as P
from inforeg.dependence import _centering as C
from tests._helpers import gradcheck64

torch.set_default_dtype(torch.float32)


def _points(n=23, d=3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=dtype)


def _brute_sq(x, y):
    out = torch.empty(x.shape[0], y.shape[0], dtype=x.dtype)
    for i in range(x.shape[0]):
        for j in range(y.shape[0]):
            out[i, j] = ((x[i] - y[j]) ** 2).sum()
    return out


def test_distances_match_brute_force_and_conventions():
    x, y = _points(7), _points(5, seed=1)
    torch.testing.assert_close(P.sqeuclidean(x, y), _brute_sq(x, y), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(P.euclidean(x, y), _brute_sq(x, y).sqrt(), rtol=1e-12, atol=1e-12)
    d = P.sqeuclidean(x)
    assert torch.all(d.diagonal() == 0)
    # 1-D input is n points on a line.
    assert P.sqeuclidean(torch.tensor([0.0, 3.0]))[0, 1] == 9.0


def test_kernel_conventions_closed_form():
    x = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([[3.0, 4.0]], dtype=torch.float64)  # distance 5
    assert P.gaussian_kernel(x, y, bandwidth=2.0).item() == pytest.approx(math.exp(-25 / 8))
    assert P.laplacian_kernel(x, y, bandwidth=2.0).item() == pytest.approx(math.exp(-5 / 2))
    with pytest.raises(ValueError, match="bandwidth"):
        P.gaussian_kernel(x, y, bandwidth=0.0)
    with pytest.raises(ValueError, match="y: expected 2 features to match x, got 3"):
        P.sqeuclidean(x, torch.zeros(1, 3, dtype=torch.float64))


def test_euclidean_gradient_is_finite_at_coincident_points():
    x = torch.tensor([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    P.euclidean(x).sum().backward()
    assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("kind", ["sqeuclidean", "euclidean", "gaussian", "laplacian"])
@pytest.mark.parametrize("reduction", ["sum", "rows", "cols"])
@pytest.mark.parametrize("with_y", [False, True])
def test_chunked_equals_dense_float64(kind, reduction, with_y):
    x = _points(37, 4)
    y = _points(29, 4, seed=3) if with_y else None
    dense = P.pairwise_sum(x, y, kind, bandwidth=1.3, reduction=reduction, chunk_size=10_000)
    for chunk in (1, 5, 36):
        chunked = P.pairwise_sum(x, y, kind, bandwidth=1.3, reduction=reduction, chunk_size=chunk)
        torch.testing.assert_close(chunked, dense, rtol=1e-12, atol=1e-12)


def test_chunked_gradient_equals_dense_gradient():
    x = _points(31, 3).requires_grad_()
    dense = torch.autograd.grad(P.pairwise_sum(x, kind="gaussian", chunk_size=100), x)[0]
    chunked = torch.autograd.grad(P.pairwise_sum(x, kind="gaussian", chunk_size=4), x)[0]
    torch.testing.assert_close(chunked, dense, rtol=1e-12, atol=1e-12)


def test_gradcheck_chunked_kernel_sum():
    gradcheck64(
        lambda a, b: P.pairwise_sum(a, b, kind="laplacian", reduction="rows", chunk_size=4),
        _points(9, 2),
        _points(6, 2, seed=5),
    )
    gradcheck64(lambda a: P.pairwise_sum(a, kind="euclidean", chunk_size=2), _points(6, 2))


def test_default_chunk_size_bounds_block():
    assert P.default_chunk_size(100_000, 100_000) * 100_000 <= P.DEFAULT_BLOCK_ELEMENTS
    assert P.default_chunk_size(10, 10) == 10
    with pytest.raises(ValueError, match="chunk_size"):
        P.pairwise_sum(_points(4), chunk_size=0)


def test_median_bandwidth():
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)  # distances 1, 3, 2
    assert P.median_bandwidth(x).item() == 2.0
    y = torch.tensor([[10.0]], dtype=torch.float64)  # distances 10, 9, 7
    assert P.median_bandwidth(x, y).item() == 9.0
    with pytest.raises(ValueError, match="at least 2 points"):
        P.median_bandwidth(x[:1])
    big = _points(500, 2)
    sub = P.median_bandwidth(big, max_points=100, generator=torch.Generator().manual_seed(0))
    assert abs(sub.item() - P.median_bandwidth(big).item()) < 0.25


def _brute_double_center(d):
    n = d.shape[0]
    out = torch.empty_like(d)
    for i in range(n):
        for j in range(n):
            out[i, j] = d[i, j] - d[i, :].mean() - d[:, j].mean() + d.mean()
    return out


def _brute_u_center(d):
    n = d.shape[0]
    out = torch.zeros_like(d)
    for i in range(n):
        for j in range(n):
            if i != j:
                out[i, j] = (
                    d[i, j]
                    - d[i, :].sum() / (n - 2)
                    - d[:, j].sum() / (n - 2)
                    + d.sum() / ((n - 1) * (n - 2))
                )
    return out


def test_centring_matches_definitions():
    d = P.euclidean(_points(8))
    torch.testing.assert_close(C.double_center(d), _brute_double_center(d), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(C.u_center(d), _brute_u_center(d), rtol=1e-12, atol=1e-12)
    # U-centred rows sum to zero (the defining property).
    torch.testing.assert_close(
        C.u_center(d).sum(1), torch.zeros(8, dtype=torch.float64), atol=1e-12, rtol=0
    )
    with pytest.raises(ValueError, match="at least 3"):
        C.u_center(d[:2, :2])
    with pytest.raises(ValueError, match="square"):
        C.double_center(d[:3])


@pytest.mark.parametrize("centering", ["double", "u"])
def test_centered_product_sum_streams_exactly(centering):
    x, y = _points(30, 2), _points(30, 1, seed=4)
    a, b = P.euclidean(x), P.euclidean(y)
    center = C.double_center if centering == "double" else C.u_center
    dense = (center(a) * center(b)).sum()
    fa = P.kernel_block_fn(x, None, "euclidean")
    fb = P.kernel_block_fn(y, None, "euclidean")
    for chunk in (1, 7, 30):
        got = C.centered_product_sum(fa, fb, 30, centering, chunk_size=chunk)
        torch.testing.assert_close(got, dense, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="at least 4"):
        C.centered_product_sum(fa, fb, 3, "u")


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(2, 12),
    shift=st.floats(-100, 100),
    seed=st.integers(0, 1000),
)
def test_distances_translation_and_permutation_invariant(n, shift, seed):
    x = _points(n, 2, seed=seed)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    d = P.sqeuclidean(x)
    torch.testing.assert_close(P.sqeuclidean(x + shift), d, rtol=1e-7, atol=1e-7 * (1 + shift**2))
    torch.testing.assert_close(P.sqeuclidean(x[perm]), d[perm][:, perm])
