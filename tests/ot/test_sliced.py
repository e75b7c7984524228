"""Tests of inforeg.ot.sliced: 1-D Wasserstein, sliced / max-sliced, SW loss and refinement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inforeg.core.checks import checks
from inforeg.ot import (
    LogSinkhorn,
    SlicedWassersteinLoss,
    log_sinkhorn_correspondence,
    max_sliced_wasserstein,
    random_projections,
    sliced_wasserstein,
    wasserstein_1d,
)
from tests._helpers import assert_close, gradcheck64, module_matches_function

D64 = torch.float64


def _brute_w1d_pp(u, v, uw, vw, p):
    """W_p^p by the exact LP (scipy linprog) in float64: an independent reference."""
    from scipy.optimize import linprog

    n, m = len(u), len(v)
    c = (np.abs(u[:, None] - v[None, :]) ** p).ravel()
    a_eq = np.zeros((n + m, n * m))
    for i in range(n):
        a_eq[i, i * m : (i + 1) * m] = 1
    for j in range(m):
        a_eq[n + j, j::m] = 1
    res = linprog(c, A_eq=a_eq, b_eq=np.concatenate([uw, vw]), bounds=(0, None), method="highs")
    return res.fun


@settings(max_examples=15, deadline=None)
@given(
    st.integers(1, 6), st.integers(1, 6), st.sampled_from([1.0, 2.0, 3.0]), st.integers(0, 10**6)
)
def test_w1d_matches_lp(n, m, p, seed):
    pytest.importorskip("scipy")
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=n), rng.normal(size=m) + 0.3
    uw, vw = rng.random(n) + 0.1, rng.random(m) + 0.1
    uw, vw = uw / uw.sum(), vw / vw.sum()
    ours = wasserstein_1d(
        torch.from_numpy(u), torch.from_numpy(v), torch.from_numpy(uw), torch.from_numpy(vw), p=p
    )
    assert math.isclose(float(ours), _brute_w1d_pp(u, v, uw, vw, p), rel_tol=1e-7, abs_tol=1e-9)


def test_w1d_equal_size_closed_form_and_pot():
    ot = pytest.importorskip("ot")
    g = torch.Generator().manual_seed(0)
    u = torch.randn(3, 50, generator=g, dtype=D64)
    v = torch.randn(3, 50, generator=g, dtype=D64)
    ours = wasserstein_1d(u, v, p=2)
    ref = ((u.sort(-1).values - v.sort(-1).values) ** 2).mean(-1)
    torch.testing.assert_close(ours, ref)
    pot = ot.wasserstein_1d(u.T.numpy(), v.T.numpy(), p=2)
    np.testing.assert_allclose(ours.numpy(), pot, rtol=1e-12)
    # general path agrees with the fast path
    w = torch.full((50,), 1 / 50, dtype=D64)
    torch.testing.assert_close(wasserstein_1d(u, v, w, w, p=2), ours)


def test_w1d_unequal_weighted_matches_pot():
    ot = pytest.importorskip("ot")
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=(7, 2)), rng.normal(size=(5, 2))
    uw, vw = rng.random(7), rng.random(5)
    uw, vw = uw / uw.sum(), vw / vw.sum()
    for p in (1, 2):
        pot = ot.wasserstein_1d(u, v, uw, vw, p=p)
        ours = wasserstein_1d(
            torch.from_numpy(u.T),
            torch.from_numpy(v.T),
            torch.from_numpy(uw),
            torch.from_numpy(vw),
            p=p,
        )
        np.testing.assert_allclose(ours.numpy(), pot, rtol=1e-12)


def test_w1d_dirac_and_translation():
    u = torch.tensor([0.0, 1.0, 2.0], dtype=D64)
    assert float(wasserstein_1d(u, u + 0.5, p=2)) == pytest.approx(0.25)
    assert float(wasserstein_1d(u, torch.tensor([1.0], dtype=D64), p=1)) == pytest.approx(2 / 3)


@pytest.mark.parametrize("weighted", [False, True])
def test_sliced_matches_pot_same_projections(weighted):
    ot = pytest.importorskip("ot")
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(30 if weighted else 40, 5)) + 0.2
    a = b = None
    if weighted:
        a = rng.random(40)
        a /= a.sum()
        b = rng.random(30)
        b /= b.sum()
    proj = random_projections(5, 20, seed=0, dtype=D64).numpy()
    for p in (1, 2):
        pot = ot.sliced_wasserstein_distance(x, y, a, b, p=p, projections=proj)
        ours = sliced_wasserstein(
            torch.from_numpy(x),
            torch.from_numpy(y),
            None if a is None else torch.from_numpy(a),
            None if b is None else torch.from_numpy(b),
            p=p,
            projections=torch.from_numpy(proj),
        )
        assert math.isclose(float(ours), float(pot), rel_tol=1e-10)
        pot_max = ot.max_sliced_wasserstein_distance(x, y, a, b, p=p, projections=proj)
        ours_max = max_sliced_wasserstein(
            torch.from_numpy(x),
            torch.from_numpy(y),
            None if a is None else torch.from_numpy(a),
            None if b is None else torch.from_numpy(b),
            p=p,
            projections=torch.from_numpy(proj),
        )
        assert math.isclose(float(ours_max), float(pot_max), rel_tol=1e-10)


@pytest.mark.parametrize("fn", [sliced_wasserstein, max_sliced_wasserstein])
@pytest.mark.parametrize("p", [1.0, 2.0, 3.0])
def test_zero_distance_has_zero_gradient(fn, p):
    # At y = x the p-th root sits at 0: POT's (mean W_p^p) ** (1/p) has an infinite derivative
    # there, times a zero inner gradient, i.e. NaN. An EMA teacher starts as a copy of its
    # student, so this is the loss of a training run's first step.
    x = torch.randn(6, 3, dtype=D64, generator=torch.Generator().manual_seed(0))
    proj = random_projections(3, 8, seed=0, dtype=D64)
    xs, ys = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    value = fn(xs, ys, p=p, projections=proj)
    gx, gy = torch.autograd.grad(value, (xs, ys))
    assert float(value) == 0.0
    assert torch.equal(gx, torch.zeros_like(gx)) and torch.equal(gy, torch.zeros_like(gy))
    # away from 0 it is the plain root of the mean (or max) of the per-direction W_p^p
    y = x + torch.linspace(0.1, 0.6, 6, dtype=D64)[:, None]
    wpp = wasserstein_1d((xs @ proj).T, (y @ proj).T, p=p)
    plain = (wpp.mean() if fn is sliced_wasserstein else wpp.amax()) ** (1.0 / p)
    assert_close(
        torch.autograd.grad(fn(xs, y, p=p, projections=proj), xs)[0],
        torch.autograd.grad(plain, xs)[0],
    )


def test_sliced_identity_zero_and_translation_expectation():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(100, 4, generator=g, dtype=D64)
    assert float(sliced_wasserstein(x, x.clone(), seed=0)) == 0.0
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0], dtype=D64)
    # For a translation, W_2^2 along theta is (theta . v)^2 exactly; its mean over the sphere is
    # |v|^2 / d, so with many directions SW_2^2 is close to |v|^2 / d.
    sw2 = float(sliced_wasserstein(x, x + shift, n_projections=20000, seed=1)) ** 2
    assert sw2 == pytest.approx(float(shift @ shift) / 4, rel=0.03)
    proj = random_projections(4, 7, seed=2, dtype=D64)
    exact = ((shift @ proj) ** 2).mean()
    torch.testing.assert_close(sliced_wasserstein(x, x + shift, projections=proj) ** 2, exact)


def test_sliced_batched_equals_loop_and_seed():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 20, 2, generator=g, dtype=D64)
    y = torch.randn(3, 25, 2, generator=g, dtype=D64)
    proj = random_projections(2, 10, seed=0, dtype=D64)
    batched = sliced_wasserstein(x, y, projections=proj)
    assert batched.shape == (3,)
    for i in range(3):
        torch.testing.assert_close(batched[i], sliced_wasserstein(x[i], y[i], projections=proj))
    torch.testing.assert_close(
        sliced_wasserstein(x[0], y[0], seed=5), sliced_wasserstein(x[0], y[0], seed=5)
    )


def test_sliced_gradcheck():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 3, generator=g, dtype=D64)
    y = torch.randn(4, 3, generator=g, dtype=D64)
    a = torch.rand(6, generator=g, dtype=D64) + 0.1
    a = a / a.sum()
    proj = random_projections(3, 5, seed=0, dtype=D64)
    gradcheck64(lambda x_, a_: sliced_wasserstein(x_, y, a_ / a_.sum(), projections=proj), x, a)
    gradcheck64(lambda x_: max_sliced_wasserstein(x_, y, projections=proj, p=1), x[:4])


def test_sliced_float32_and_bfloat16():
    x = torch.randn(30, 3)
    y = torch.randn(30, 3)
    assert sliced_wasserstein(x, y, seed=0).dtype == torch.float32
    v = sliced_wasserstein(x.bfloat16(), y.bfloat16(), seed=0)
    assert torch.isfinite(v.float()).all()


def test_sliced_bad_input():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="y"):
        sliced_wasserstein(x, torch.randn(5, 2))
    with pytest.raises(ValueError, match="projections"):
        sliced_wasserstein(x, x, projections=torch.randn(2, 4))
    with pytest.raises(ValueError, match="p"):
        sliced_wasserstein(x, x, p=0.5)
    with pytest.raises(ValueError, match="n_projections"):
        sliced_wasserstein(x, x, n_projections=0)
    with pytest.raises(ValueError, match="u_weights"):
        wasserstein_1d(torch.randn(4), torch.randn(3), u_weights=torch.ones(3) / 3)
    with checks("full"):
        bad = x.clone()
        bad[0, 0] = float("nan")
        with pytest.raises(ValueError, match="x"):
            sliced_wasserstein(bad, x)


# ----------------------------------------------------------------------------- SW loss


def test_sw_loss_identity_permutation_zero_and_matches_functional():
    g = torch.Generator().manual_seed(6)
    x = torch.randn(2, 15, 4, generator=g, dtype=D64)
    eye = torch.eye(15, dtype=D64).expand(2, 15, 15)
    loss = SlicedWassersteinLoss(n_projections=50, bidirectional=True)
    assert float(loss(x, x, eye, eye)) == pytest.approx(0.0, abs=1e-12)
    perm = torch.randperm(15, generator=g)
    y = x[:, perm]
    pmat = torch.eye(15, dtype=D64)[perm]  # P y_perm ordering: (P Y)_i = Y_{perm^-1 ...}
    # With y = x[:, perm], the hard permutation P with P[i, perm^-1(i)] = 1 maps Y back to X.
    inv = torch.argsort(perm)
    p_xy = torch.eye(15, dtype=D64)[inv].expand(2, 15, 15)
    assert float(loss(x, y, p_xy, p_xy.transpose(1, 2))) == pytest.approx(0.0, abs=1e-12)
    del pmat
    # Against the functional form with the same directions.
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 12, 4, generator=g, dtype=D64)
    soft = torch.softmax(torch.randn(2, 15, 12, generator=g, dtype=D64), -1)
    val = SlicedWassersteinLoss(n_projections=30, reduction="none")(x, z, soft, generator=gen)
    gen = torch.Generator().manual_seed(0)
    theta = torch.randn(2, 30, 4, generator=gen, dtype=D64)
    theta = (theta / theta.norm(dim=-1, keepdim=True)).transpose(-2, -1)
    ref = torch.stack(
        [
            (
                (
                    (
                        (x[b] @ theta[b]).sort(0).values
                        - ((soft[b] @ z[b]) @ theta[b]).sort(0).values
                    )
                    ** 2
                )
                .mean(0)
                .mean()
            )
            ** 0.5
            for b in range(2)
        ]
    )
    torch.testing.assert_close(val, ref)


def test_sw_loss_gradient_and_bad_input():
    x = torch.randn(2, 8, 3, dtype=D64, requires_grad=True)
    y = torch.randn(2, 8, 3, dtype=D64)
    p = torch.softmax(torch.randn(2, 8, 8, dtype=D64), -1)
    loss = SlicedWassersteinLoss(n_projections=20, weight=100.0)
    loss(x, y, p).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="p_xy"):
        loss(x, y, p[:, :7])
    with pytest.raises(ValueError, match="p_yx"):
        SlicedWassersteinLoss(bidirectional=True)(x, y, p)
    with pytest.raises(ValueError, match="y"):
        loss(x, y[..., :2], p)
    with pytest.raises(ValueError, match="reduction"):
        SlicedWassersteinLoss(reduction="avg")(x, y, p)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- refinement


def _brute_refinement(fx, fy, sigma, n_iter):
    d = ((fx[:, None, :] - fy[None, :, :]) ** 2).sum(-1)
    d = d / d.mean()
    k = torch.exp(-d / (2 * sigma**2))
    for _ in range(n_iter):
        k = k / k.sum(1, keepdim=True)
        k = k / k.sum(0, keepdim=True)
    k = k / k.sum(1, keepdim=True)
    return k, (k / k.sum(0, keepdim=True)).T


def test_refinement_matches_brute_force_and_marginals():
    g = torch.Generator().manual_seed(7)
    fx = torch.randn(10, 3, generator=g, dtype=D64)
    fy = torch.randn(12, 3, generator=g, dtype=D64)
    p_xy, p_yx = log_sinkhorn_correspondence(fx, fy, sigma=0.5, n_iter=10)
    r_xy, r_yx = _brute_refinement(fx, fy, 0.5, 10)
    assert_close(p_xy, r_xy)
    assert_close(p_yx, r_yx)
    assert_close(p_xy.sum(-1), torch.ones(10, dtype=D64))
    assert_close(p_yx.sum(-1), torch.ones(12, dtype=D64))
    # Batched and module forms agree.
    bx, by = torch.stack([fx, fx]), torch.stack([fy, fy])
    m_xy, _ = LogSinkhorn(sigma=0.5)(bx, by)
    assert_close(m_xy[1], p_xy)
    module_matches_function(
        LogSinkhorn, log_sinkhorn_correspondence, bx, by, settings={"sigma": 0.3, "n_iter": 4}
    )


@pytest.mark.parametrize("n_iter", [0, 3])
def test_refinement_gradcheck(n_iter):
    # The plans stay differentiable (autograd through the Sinkhorn loop).
    g = torch.Generator().manual_seed(9)
    fx = torch.randn(2, 5, 3, generator=g, dtype=D64)
    fy = torch.randn(2, 4, 3, generator=g, dtype=D64)
    gradcheck64(lambda u, v: log_sinkhorn_correspondence(u, v, 0.7, n_iter), fx, fy)


def test_refinement_small_sigma_no_nan_and_recovers_permutation():
    g = torch.Generator().manual_seed(8)
    fx = torch.randn(20, 4, generator=g)
    perm = torch.randperm(20, generator=g)
    p_xy, _ = log_sinkhorn_correspondence(fx, fx[perm] + 0.01, sigma=0.01)
    assert torch.isfinite(p_xy).all()
    assert torch.equal(p_xy.argmax(-1), torch.argsort(perm))
    with pytest.raises(ValueError, match="sigma"):
        log_sinkhorn_correspondence(fx, fx, sigma=0.0)
    with pytest.raises(ValueError, match="feat_y"):
        log_sinkhorn_correspondence(fx, fx[:, :2])


@settings(max_examples=10, deadline=None)
@given(st.floats(-2, 2), st.floats(0.2, 3), st.floats(-2, 2), st.floats(0.2, 3), st.integers(0, 99))
def test_w1d_gaussians_closed_form(m1, s1, m2, s2, seed):
    # Quantile-grid samples of two Gaussians (shuffled): W_2^2 = (m1 - m2)^2 + (s1 - s2)^2 up to
    # the discretisation of the standard normal's second moment.
    n = 2000
    z = torch.special.ndtri((torch.arange(n, dtype=D64) + 0.5) / n)
    g = torch.Generator().manual_seed(seed)
    u = (m1 + s1 * z)[torch.randperm(n, generator=g)]
    v = (m2 + s2 * z)[torch.randperm(n, generator=g)]
    expected = (m1 - m2) ** 2 + (s1 - s2) ** 2 * float((z * z).mean())
    assert float(wasserstein_1d(u, v, p=2)) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_refinement_batch_dimensions_broadcast_or_raise():
    # Regression (issue 18): a 3-D feature tensor beside a 2-D one went to vmap, which failed
    # naming an internal argument. The batch dimensions now broadcast, as in torch.cdist.
    g = torch.Generator().manual_seed(5)
    fx = torch.randn(4, 3, generator=g, dtype=D64)
    fy = torch.randn(5, 3, generator=g, dtype=D64)
    p_xy, p_yx = log_sinkhorn_correspondence(fx, fy, sigma=0.5)
    for bx, by in ((fx[None], fy), (fx, fy[None]), (fx.expand(2, 1, 4, 3), fy.expand(3, 5, 3))):
        b_xy, b_yx = log_sinkhorn_correspondence(bx, by, sigma=0.5)
        batch = torch.broadcast_shapes(bx.shape[:-2], by.shape[:-2])
        assert b_xy.shape == (*batch, 4, 5) and b_yx.shape == (*batch, 5, 4)
        assert_close(b_xy, p_xy.expand_as(b_xy))
        assert_close(b_yx, p_yx.expand_as(b_yx))
    with pytest.raises(ValueError, match=r"feat_y: expected batch dimensions broadcastable"):
        log_sinkhorn_correspondence(fx.expand(2, 4, 3), fy.expand(3, 5, 3))
    with pytest.raises(ValueError, match=r"feat_y: expected batch dimensions broadcastable"):
        LogSinkhorn()(fx.expand(2, 4, 3), fy.expand(3, 5, 3))
