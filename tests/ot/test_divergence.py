"""Tests of inforeg.ot.sinkhorn_divergence (geomloss's conventions and gradient rule)."""

from __future__ import annotations

import importlib
import math

import pytest
import torch

from inforeg.core.checks import checks
from inforeg.ot import SinkhornDivergence, sinkhorn, sinkhorn_divergence
from tests._helpers import assert_close, bounded, gradcheck64, module_matches_function
from tests.ot._problems import D64, gaussian_1d_entropic_ot, gaussian_1d_problem


def test_divergence_cost_is_half_squared_distance():
    # One point each: S = 0 (debiased) and OT_eps = 1/2 ||x - y||^2 (debias=False).
    x = torch.tensor([[0.0, 0.0]], dtype=D64)
    y = torch.tensor([[3.0, 4.0]], dtype=D64)
    assert math.isclose(float(sinkhorn_divergence(x, y, debias=False)), 12.5, rel_tol=1e-12)
    assert math.isclose(float(sinkhorn_divergence(x, y, p=1, debias=False)), 5.0, rel_tol=1e-12)
    # Debiased: OT(a,b) - OT(a,a)/2 - OT(b,b)/2 = 12.5 - 0 - 0.
    assert math.isclose(float(sinkhorn_divergence(x, y)), 12.5, rel_tol=1e-12)


def test_divergence_identical_clouds_zero():
    x = torch.randn(20, 3, dtype=D64, generator=torch.Generator().manual_seed(0))
    assert abs(float(sinkhorn_divergence(x, x.clone()))) < 1e-12


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("debias", [True, False])
def test_divergence_matches_geomloss(p, debias):
    geomloss = pytest.importorskip("geomloss")
    g = torch.Generator().manual_seed(p + 2 * debias)
    x = torch.rand(40, 3, generator=g, dtype=D64)
    y = torch.rand(50, 3, generator=g, dtype=D64) + 0.3
    a = torch.rand(40, generator=g, dtype=D64) + 0.2
    a = a / a.sum()
    b = torch.full((50,), 1 / 50, dtype=D64)
    loss = geomloss.SamplesLoss(
        "sinkhorn", p=p, blur=0.05, scaling=0.5, debias=debias, backend="tensorized"
    )
    ref = loss(a, x, b, y)
    ours = sinkhorn_divergence(x, y, a, b, p=p, blur=0.05, scaling=0.5, debias=debias)
    assert math.isclose(float(ours), float(ref), rel_tol=1e-3)


def test_divergence_matches_geomloss_batched():
    geomloss = pytest.importorskip("geomloss")
    g = torch.Generator().manual_seed(11)
    x = torch.rand(3, 20, 2, generator=g, dtype=D64)
    y = torch.rand(3, 25, 2, generator=g, dtype=D64)
    ref = geomloss.SamplesLoss("sinkhorn", p=2, blur=0.05, scaling=0.5, backend="tensorized")(x, y)
    assert_close(sinkhorn_divergence(x, y), ref, atol=1e-10, rtol=1e-8)


def test_divergence_converged_equals_sinkhorn_solver():
    g = torch.Generator().manual_seed(12)
    x = torch.rand(15, 2, generator=g, dtype=D64)
    y = torch.rand(12, 2, generator=g, dtype=D64)
    blur = 0.3
    eps = blur**2
    s = sinkhorn_divergence(x, y, blur=blur, tol=1e-14, max_iter=10000)

    def ot(u, v):
        c = torch.cdist(u, v) ** 2 / 2
        return sinkhorn(None, None, c, eps, tol=1e-14, max_iter=10000).value

    ref = ot(x, y) - 0.5 * ot(x, x) - 0.5 * ot(y, y)
    assert_close(s, ref, atol=1e-11, rtol=0)


@pytest.mark.parametrize("p", [1, 2])
def test_divergence_gradcheck_points(p):
    # At convergence the closed-form gradient is the exact one, w.r.t. both point clouds.
    g = torch.Generator().manual_seed(13)
    x = torch.rand(5, 2, generator=g, dtype=D64)
    y = torch.rand(6, 2, generator=g, dtype=D64)

    def fn(x_, y_):
        return sinkhorn_divergence(x_, y_, p=p, blur=0.3, tol=1e-14, max_iter=20000)

    gradcheck64(fn, x, y, atol=1e-7)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("debias", [True, False])
def test_divergence_gradients_match_geomloss(p, debias):
    # Default schedule, far from convergence in 16-D: geomloss differentiates its last step with
    # the potentials held fixed; ours must give the same gradients w.r.t. points and weights.
    geomloss = pytest.importorskip("geomloss")
    g = torch.Generator().manual_seed(20 + p + 2 * debias)
    x = torch.randn(60, 16, generator=g, dtype=D64)
    y = torch.randn(45, 16, generator=g, dtype=D64) + 0.5
    a = torch.rand(60, generator=g, dtype=D64) + 0.2
    b = torch.rand(45, generator=g, dtype=D64) + 0.2
    a, b = a / a.sum(), b / b.sum()
    loss = geomloss.SamplesLoss(
        "sinkhorn", p=p, blur=0.05, scaling=0.5, debias=debias, backend="tensorized"
    )
    ref_in = [t.clone().requires_grad_(True) for t in (x, y, a, b)]
    ours_in = [t.clone().requires_grad_(True) for t in (x, y, a, b)]
    loss(ref_in[2], ref_in[0], ref_in[3], ref_in[1]).backward()
    sinkhorn_divergence(*ours_in, p=p, blur=0.05, scaling=0.5, debias=debias).backward()
    # p=1 debiased: geomloss clamps distances at 1e-4 (C(x_i, x_i) = 1e-4, ours 0).
    rtol = 1e-4 if (p == 1 and debias) else 1e-9
    for r, o in zip(ref_in, ours_in):
        assert_close(o.grad, r.grad, rtol=rtol, atol=rtol * float(r.grad.abs().max()))


def test_divergence_gradients_batch_equals_loop():
    g = torch.Generator().manual_seed(14)
    x = torch.randn(3, 12, 4, generator=g, dtype=D64).requires_grad_(True)
    y = torch.randn(3, 9, 4, generator=g, dtype=D64).requires_grad_(True)
    # The default diameter spans the whole batch: fix it so the schedules are the same.
    sinkhorn_divergence(x, y, diameter=8.0).sum().backward()
    for i in range(3):
        xi, yi = x[i].detach().requires_grad_(True), y[i].detach().requires_grad_(True)
        sinkhorn_divergence(xi, yi, diameter=8.0).backward()
        assert_close(x.grad[i], xi.grad, rtol=1e-10, atol=1e-13)
        assert_close(y.grad[i], yi.grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("p", [1, 2])
def test_divergence_softmin_blocks_and_exp_floor(monkeypatch, dtype, p):
    # The row-blocked softmin with clamped exp arguments equals the plain logsumexp formula,
    # including arguments far below exp's underflow and zero weights (h_j = -inf); its gradient
    # pieces equal the explicit softmax average of the cost gradients.
    mod = importlib.import_module("inforeg.ot.divergence")
    monkeypatch.setattr(mod, "_BLOCK", 50)  # several row blocks of a (2, 23, 17) problem
    g = torch.Generator().manual_seed(15)
    x = torch.randn(2, 23, 3, generator=g, dtype=D64)
    y = torch.randn(2, 17, 3, generator=g, dtype=D64)
    y[:, 0] = x[:, 0]  # a zero distance (p=1: zero gradient there)
    d = torch.cdist(x, y)
    c = d**2 / 2 if p == 2 else d
    h = torch.randn(2, 17, generator=g, dtype=D64)
    h[:, 3] = -math.inf
    for eps in (10.0, 1e-3):  # 1e-3: most arguments of exp are below -1000
        ref = -eps * torch.logsumexp(h.unsqueeze(-2) - c / eps, -1)
        pi = torch.softmax(h.unsqueeze(-2) - c / eps, -1)
        grad_c = x.unsqueeze(-2) - y.unsqueeze(-3)
        if p == 1:
            grad_c = grad_c / torch.where(d > 0, d, 1.0).unsqueeze(-1)
        ref_grad = (pi.unsqueeze(-1) * grad_c).sum(-2)
        cost = mod._Cost(x.to(dtype), y.to(dtype), p, False, online=False)
        cost.dense = c.to(dtype)  # exact zeros where the points coincide
        f, s, gg = mod._softmin(eps, cost, h.to(dtype), (x.to(dtype), y.to(dtype), p))
        tol = 1e-12 if dtype == D64 else 1e-5
        assert_close(f.double(), ref, rtol=tol, atol=tol * eps)
        grad = s.unsqueeze(-1) * x.to(dtype) - gg
        assert_close(grad.double(), ref_grad, rtol=tol, atol=tol)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("debias", [True, False])
@pytest.mark.parametrize("batched", [False, True])
def test_online_backend_matches_tensorized(monkeypatch, p, debias, batched):
    # rows recomputed block by block (here 3 to 4 rows a block, and a last short block) give
    # the dense matrices' values and gradients, up to the rounding of the GEMM per block
    mod = importlib.import_module("inforeg.ot.divergence")
    monkeypatch.setattr(mod, "_BLOCK", 50)
    g = torch.Generator().manual_seed(3)
    shape = (2,) if batched else ()
    x = torch.randn(*shape, 14, 3, generator=g, dtype=D64, requires_grad=True)
    y = torch.randn(*shape, 11, 3, generator=g, dtype=D64, requires_grad=True)
    a = torch.softmax(torch.randn(*shape, 14, generator=g, dtype=D64), -1).requires_grad_(True)
    kw = {"p": p, "debias": debias, "blur": 0.3}
    dense = sinkhorn_divergence(x, y, a, None, backend="tensorized", **kw)
    online = sinkhorn_divergence(x, y, a, None, backend="online", **kw)
    assert_close(online, dense, rtol=1e-12, atol=1e-12)
    for g_on, g_dense in zip(
        torch.autograd.grad(online.sum(), (x, y, a)), torch.autograd.grad(dense.sum(), (x, y, a))
    ):
        assert_close(g_on, g_dense, rtol=1e-10, atol=1e-12)
    # "auto" goes online above the threshold (here: any problem)
    monkeypatch.setattr(mod, "ONLINE_ABOVE", 0)
    seen, costs = [], mod._costs
    monkeypatch.setattr(mod, "_costs", lambda *args: seen.append(args[-1]) or costs(*args))
    assert_close(sinkhorn_divergence(x, y, a, **kw), online, rtol=0, atol=0)
    assert seen == [True]


def test_divergence_module_and_bad_input():
    x = torch.rand(5, 2, dtype=D64)
    y = torch.rand(6, 2, dtype=D64)
    module_matches_function(
        SinkhornDivergence, sinkhorn_divergence, x, y, settings={"blur": 0.1, "p": 1}
    )
    settings = {"blur": 0.1, "tol": 1e-9, "check_every": 4, "max_iter": 3, "scaling": 0.7}
    module_matches_function(SinkhornDivergence, sinkhorn_divergence, x, y, settings=settings)
    with pytest.raises(ValueError, match="blur"):
        sinkhorn_divergence(x, y, blur=0.0)
    with pytest.raises(ValueError, match="p"):
        sinkhorn_divergence(x, y, p=3)
    with pytest.raises(ValueError, match="y"):
        sinkhorn_divergence(x, torch.rand(6, 3, dtype=D64))
    with pytest.raises(ValueError, match="a"):
        sinkhorn_divergence(x, y, a=torch.ones(4, dtype=D64) / 4)
    with pytest.raises(ValueError, match="scaling"):
        sinkhorn_divergence(x, y, scaling=1.0)
    with checks("full"):
        bad = x.clone()
        bad[0, 0] = float("nan")
        with pytest.raises(ValueError, match="x"):
            sinkhorn_divergence(bad, y)


@pytest.mark.parametrize("m1, s1, m2, s2", [(0.0, 1.0, 0.5, 1.5), (1.0, 0.5, -0.5, 0.8)])
def test_divergence_gaussians_closed_form(m1, s1, m2, s2):
    # Cost |x-y|^2 / 2 at eps = blur^2 is half the entropic OT of |x-y|^2 at 2 eps, whose value
    # between 1-D Gaussians is known in closed form; debiasing subtracts the self terms.
    x, a, y, b, _ = gaussian_1d_problem(m1, s1, m2, s2, n=200)
    blur = 0.6
    eps = blur**2
    kw = {"blur": blur, "tol": 1e-13, "max_iter": 5000}
    ot_xy = 0.5 * gaussian_1d_entropic_ot(m1, s1, m2, s2, 2 * eps)
    ot_xx = 0.5 * gaussian_1d_entropic_ot(m1, s1, m1, s1, 2 * eps)
    ot_yy = 0.5 * gaussian_1d_entropic_ot(m2, s2, m2, s2, 2 * eps)
    biased = sinkhorn_divergence(x[:, None], y[:, None], a, b, debias=False, **kw)
    assert math.isclose(float(biased), ot_xy, rel_tol=1e-8)
    debiased = sinkhorn_divergence(x[:, None], y[:, None], a, b, **kw)
    assert math.isclose(float(debiased), ot_xy - 0.5 * (ot_xx + ot_yy), rel_tol=1e-7)


@pytest.mark.parametrize("debias", [True, False])
def test_divergence_check_every_and_max_iter_count_updates(monkeypatch, debias):
    # Each symmetric update calls the softmin once per potential (2, or 4 when debiasing): the
    # initial step, one update per temperature, the extra updates, the final extrapolation.
    mod = importlib.import_module("inforeg.ot.divergence")
    calls = []
    real = mod._cost_softmin

    def counting(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(mod, "_cost_softmin", counting)
    g = torch.Generator().manual_seed(16)
    x = torch.rand(9, 2, generator=g, dtype=D64)
    y = torch.rand(7, 2, generator=g, dtype=D64)
    per = 4 if debias else 2
    n_sched = len(mod.epsilon_schedule(2, 2.0, 0.05, 0.5))
    kw = {"debias": debias, "diameter": 2.0}

    def updates(**extra):
        calls.clear()
        sinkhorn_divergence(x, y, **kw, **extra)
        return len(calls) // per  # the final extrapolation is not a loop softmin call

    assert updates() == 1 + n_sched
    assert updates(tol=1e-300, max_iter=7) == 1 + n_sched + 7  # never met: the budget
    assert updates(tol=1e10, check_every=3) == 1 + n_sched + 3  # met at the first check
    assert updates(tol=1e10, check_every=5) == 1 + n_sched + 5


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("where", ["x", "y", "a"])
def test_non_finite_input_is_bounded_and_rejected_under_full_checks(bad, where):
    # Regression (issue 18): an infinite coordinate gave an infinite diameter and an epsilon
    # schedule that grew until memory ran out.
    g = torch.Generator().manual_seed(0)
    args = {
        "x": torch.randn(6, 2, generator=g, dtype=D64),
        "y": torch.randn(5, 2, generator=g, dtype=D64),
        "a": torch.full((6,), 1 / 6, dtype=D64),
    }
    args[where] = args[where].clone()
    args[where].view(-1)[0] = bad
    for mode in ("shapes", "off"):
        with checks(mode), bounded(10.0, 1 << 30):
            out = sinkhorn_divergence(args["x"], args["y"], args["a"])
            SinkhornDivergence()(args["x"], args["y"], args["a"])
        assert not torch.isfinite(out)  # the bad value propagates (unchecked modes)
    with checks("full"), pytest.raises(ValueError, match=f"^{where}: expected finite"):
        sinkhorn_divergence(args["x"], args["y"], args["a"])


@pytest.mark.parametrize("backend", ["tensorized", "online"])
@pytest.mark.parametrize("d", [3, 64])
@pytest.mark.parametrize("offset", [0.0, 10.0, 100.0])
def test_p1_divergence_of_a_cloud_with_itself_is_zero_and_offsets_cost_no_digits(
    offset, d, backend
):
    """p = 1 zeroed rounding noise on the self-costs' diagonals only, so S(a, a) was 9e-4 for
    float32 points near 10 (0.0155 near 100, against S = 0.44 for a real 0.3 perturbation)."""
    g = torch.Generator().manual_seed(d)
    x = offset + torch.randn(50, d, generator=g)
    y = x + 0.3 * torch.randn(50, d, generator=g)
    kw = {"p": 1, "backend": backend}
    assert float(sinkhorn_divergence(x, x.clone(), **kw)) == 0.0
    want = float(sinkhorn_divergence(x.double(), y.double(), **kw))
    assert float(sinkhorn_divergence(x, y, **kw)) == pytest.approx(want, rel=1e-5)
