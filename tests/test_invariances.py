"""Peer-style property tests (issue 18): invariances the peer libraries' suites pin.

* Sinkhorn divergence (geomloss): invariant to a common translation and rotation of both clouds,
  and to a permutation of the points with their weights; symmetric in its two measures.
* distance correlation (dcor): invariant to translations, rotations and positive rescaling of
  either sample; symmetric.
* MI estimators (scikit-learn, NPEET): symmetric in their two arguments (KSG, HSIC, CS-QMI).
* OT values (POT): invariant to permuting the sources (rows of the cost with ``a``) and the
  targets (columns with ``b``), for sinkhorn, smooth_ot and sparse_ot.
"""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inforeg.dependence import cs_quadratic_mi, distance_correlation, hsic
from inforeg.estimators import ksg_mutual_information
from inforeg.ot import sinkhorn, sinkhorn_divergence, smooth_ot, sparse_ot

D64 = torch.float64
SETTINGS = settings(max_examples=5, deadline=None)
seeds = st.integers(0, 2**31 - 1)


def _rotation(d: int, g: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=D64))
    return q * torch.sign(torch.diagonal(r))  # a Haar-random orthogonal matrix


def _weights(n: int, g: torch.Generator) -> torch.Tensor:
    w = torch.rand(n, generator=g, dtype=D64) + 0.1
    return w / w.sum()


@SETTINGS
@given(seed=seeds, shift=st.floats(-50, 50), p=st.sampled_from([1, 2]))
def test_sinkhorn_divergence_rigid_motion_invariant(seed, shift, p):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(7, 3, generator=g, dtype=D64), torch.randn(6, 3, generator=g, dtype=D64)
    a, b = _weights(7, g), _weights(6, g)
    q, t = _rotation(3, g), shift * torch.randn(3, generator=g, dtype=D64)
    kw = {"p": p, "blur": 0.3, "tol": 1e-12, "max_iter": 5000}
    ref = sinkhorn_divergence(x, y, a, b, **kw)
    moved = sinkhorn_divergence(x @ q.T + t, y @ q.T + t, a, b, **kw)
    torch.testing.assert_close(moved, ref, rtol=1e-7, atol=1e-9)


@SETTINGS
@given(seed=seeds)
def test_sinkhorn_divergence_permutation_invariant_and_symmetric(seed):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(7, 2, generator=g, dtype=D64), torch.randn(6, 2, generator=g, dtype=D64)
    a, b = _weights(7, g), _weights(6, g)
    kw = {"blur": 0.5, "tol": 1e-10, "max_iter": 5000}
    ref = sinkhorn_divergence(x, y, a, b, **kw)
    px, py = torch.randperm(7, generator=g), torch.randperm(6, generator=g)
    torch.testing.assert_close(sinkhorn_divergence(x[px], y[py], a[px], b[py], **kw), ref)
    torch.testing.assert_close(sinkhorn_divergence(y, x, b, a, **kw), ref)


@SETTINGS
@given(seed=seeds, shift=st.floats(-100, 100), scale=st.floats(0.01, 100))
def test_distance_correlation_similarity_invariant_and_symmetric(seed, shift, scale):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(20, 3, generator=g, dtype=D64)
    y = x[:, :2] ** 2 + 0.5 * torch.randn(20, 2, generator=g, dtype=D64)
    ref = distance_correlation(x, y)
    q = _rotation(3, g)
    moved = distance_correlation(scale * x @ q.T + shift, y - shift)
    torch.testing.assert_close(moved, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(distance_correlation(y, x), ref, rtol=1e-12, atol=1e-14)


@SETTINGS
@given(seed=seeds, k=st.integers(1, 5))
def test_ksg_mutual_information_symmetric(seed, k):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 2, generator=g, dtype=D64)
    y = x[:, :1] + 0.5 * torch.randn(40, 1, generator=g, dtype=D64)
    for backend in ("brute", "kdtree"):
        for algorithm in (1, 2):
            xy = ksg_mutual_information(x, y, k=k, algorithm=algorithm, backend=backend)
            yx = ksg_mutual_information(y, x, k=k, algorithm=algorithm, backend=backend)
            torch.testing.assert_close(xy, yx, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(seed=seeds)
def test_kernel_dependence_measures_symmetric(seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(15, 3, generator=g, dtype=D64)
    y = torch.tanh(x[:, :2]) + 0.3 * torch.randn(15, 2, generator=g, dtype=D64)
    torch.testing.assert_close(
        hsic(x, y, bandwidth_x=1.0, bandwidth_y=0.7), hsic(y, x, bandwidth_x=0.7, bandwidth_y=1.0)
    )
    torch.testing.assert_close(cs_quadratic_mi(x, y), cs_quadratic_mi(y, x))


@SETTINGS
@given(seed=seeds, solver=st.sampled_from(["sinkhorn", "smooth_l2", "smooth_entropy", "sparse"]))
def test_ot_value_invariant_to_permuting_sources_and_targets(seed, solver):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(6, 2, generator=g, dtype=D64), torch.randn(5, 2, generator=g, dtype=D64)
    a, b = _weights(6, g), _weights(5, g)
    c = torch.cdist(x, y) ** 2

    def value(a_, b_, c_):
        if solver == "sinkhorn":
            return sinkhorn(a_, b_, c_, 0.2, tol=1e-12, max_iter=20000).value
        if solver == "sparse":
            return sparse_ot(a_, b_, c_, k=3, gamma=0.5).value
        reg = "l2" if solver == "smooth_l2" else "entropy"
        return smooth_ot(a_, b_, c_, 0.5, regularizer=reg).value

    pr, pc = torch.randperm(6, generator=g), torch.randperm(5, generator=g)
    ref = value(a, b, c)
    got = value(a[pr], b[pc], c[pr][:, pc])
    assert math.isfinite(float(ref))
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-8)
