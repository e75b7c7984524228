"""Tests of inforeg.ot.sinkhorn and inforeg.ot.sinkhorn_divergence."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import inforeg
from inforeg.core.checks import checks
from inforeg.ot import OTResult, Sinkhorn, SinkhornDivergence, sinkhorn, sinkhorn_divergence

D64 = torch.float64


def _problem(n: int = 7, m: int = 5, seed: int = 0, batch: tuple[int, ...] = ()):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*batch, n, 2, generator=g, dtype=D64)
    y = torch.randn(*batch, m, 2, generator=g, dtype=D64) + 0.5
    c = torch.cdist(x, y) ** 2
    a = torch.rand(*batch, n, generator=g, dtype=D64) + 0.1
    b = torch.rand(*batch, m, generator=g, dtype=D64) + 0.1
    return a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True), c


def _brute_sinkhorn(a, b, c, eps, iters=20000):
    """Plain (non-log) Sinkhorn scaling in float64, a loop reference."""
    k = torch.exp(-c / eps)
    u = torch.ones_like(a)
    v = torch.ones_like(b)
    for _ in range(iters):
        u = a / (k @ v)
        v = b / (k.T @ u)
    return u[:, None] * k * v[None, :]


def test_result_type_and_marginals():
    a, b, c = _problem()
    r = sinkhorn(a, b, c, epsilon=0.5, tol=1e-12, max_iter=5000)
    assert isinstance(r, OTResult)
    assert r.converged and r.n_iter < 5000
    torch.testing.assert_close(r.plan.sum(-1), a, atol=1e-11, rtol=0)
    torch.testing.assert_close(r.plan.sum(-2), b, atol=1e-12, rtol=0)
    assert r.f.shape == a.shape and r.g.shape == b.shape and r.value.shape == ()


def test_against_plain_scaling_loop():
    a, b, c = _problem()
    eps = 0.7
    r = sinkhorn(a, b, c, epsilon=eps, tol=1e-13, max_iter=10000)
    ref = _brute_sinkhorn(a, b, c, eps)
    torch.testing.assert_close(r.plan, ref, atol=1e-12, rtol=0)
    # value = <P, C> + eps KL(P | a x b)
    kl = (ref * torch.log(ref / (a[:, None] * b[None, :]))).sum()
    torch.testing.assert_close(r.value, (ref * c).sum() + eps * kl, atol=1e-10, rtol=0)


def test_against_pot_sinkhorn_log():
    ot = pytest.importorskip("ot")
    a, b, c = _problem(30, 25, seed=3)
    reg = 0.05 * float(c.max())
    ref = ot.sinkhorn(
        a.numpy(),
        b.numpy(),
        c.numpy(),
        reg,
        method="sinkhorn_log",
        stopThr=1e-13,
        numItermax=100000,
    )
    r = sinkhorn(a, b, c, epsilon=reg, tol=1e-13, max_iter=100000)
    assert float((r.plan - torch.from_numpy(ref)).abs().max()) < 1e-12
    lin = ot.sinkhorn2(
        a.numpy(),
        b.numpy(),
        c.numpy(),
        reg,
        method="sinkhorn_log",
        stopThr=1e-13,
        numItermax=100000,
    )
    assert math.isclose(float((r.plan * c).sum()), float(lin), rel_tol=1e-10)


def test_epsilon_scaling_same_solution_fewer_iterations():
    a, b, c = _problem(40, 40, seed=1)
    eps = 1e-3 * float(c.max())
    plain = sinkhorn(a, b, c, eps, tol=1e-9, max_iter=20000)
    scaled = sinkhorn(a, b, c, eps, tol=1e-9, max_iter=20000, epsilon_scaling=0.5)
    assert plain.converged and scaled.converged
    assert scaled.n_iter < plain.n_iter
    torch.testing.assert_close(scaled.plan, plain.plan, atol=1e-7, rtol=0)


def test_small_epsilon_no_nan_and_close_to_emd():
    ot = pytest.importorskip("ot")
    a, b, c = _problem(20, 20, seed=2)
    eps = 1e-4 * float(c.max())
    r = sinkhorn(a, b, c, eps, tol=1e-8, max_iter=20000, epsilon_scaling=0.7)
    assert torch.isfinite(r.plan).all() and torch.isfinite(r.value)
    emd = ot.emd2(a.numpy(), b.numpy(), c.numpy())
    assert abs(float((r.plan * c).sum()) - emd) < 1e-3 * emd + 1e-6


def test_float32_small_epsilon_finite():
    a, b, c = _problem(20, 20, seed=2)
    r = sinkhorn(a.float(), b.float(), c.float(), 1e-4 * float(c.max()), tol=1e-5, max_iter=300)
    assert torch.isfinite(r.plan).all() and torch.isfinite(r.f).all()
    assert r.plan.dtype == torch.float32


def test_bfloat16_input():
    a, b, c = _problem()
    r = sinkhorn(a.bfloat16(), b.bfloat16(), c.bfloat16(), 0.5, tol=1e-4)
    assert r.plan.dtype == torch.bfloat16 and torch.isfinite(r.plan.float()).all()


def test_batch_equals_loop():
    a, b, c = _problem(6, 4, seed=5, batch=(2, 3))
    r = sinkhorn(a, b, c, epsilon=0.3, tol=1e-13, max_iter=10000)
    assert r.plan.shape == (2, 3, 6, 4) and r.value.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            s = sinkhorn(a[i, j], b[i, j], c[i, j], epsilon=0.3, tol=1e-13, max_iter=10000)
            torch.testing.assert_close(r.plan[i, j], s.plan, atol=1e-12, rtol=0)
            torch.testing.assert_close(r.value[i, j], s.value, atol=1e-12, rtol=0)


def test_broadcast_shared_marginals():
    _, _, c = _problem(5, 5, seed=6, batch=(4,))
    r = sinkhorn(None, None, c, epsilon=2.0, tol=1e-12, max_iter=20000)
    assert r.converged
    assert r.plan.shape == (4, 5, 5)
    torch.testing.assert_close(r.plan.sum(-1), torch.full((4, 5), 0.2, dtype=D64))


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 6), st.integers(0, 10_000))
def test_permutation_problem_gives_permutation(n, seed):
    # Cost 0 on a permutation, 1 elsewhere: the plan concentrates on the permutation.
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    c = torch.ones(n, n, dtype=D64)
    c[torch.arange(n), perm] = 0.0
    r = sinkhorn(None, None, c, epsilon=0.01, tol=1e-12, max_iter=5000)
    expected = torch.zeros(n, n, dtype=D64)
    expected[torch.arange(n), perm] = 1.0 / n
    torch.testing.assert_close(r.plan, expected, atol=1e-12, rtol=0)


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 5), st.floats(0.01, 2.0), st.integers(0, 1000))
def test_dirac_target(n, eps, seed):
    # A single target point: the plan is a, the value is <a, c> (KL term vanishes).
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g, dtype=D64) + 0.1
    a = a / a.sum()
    c = torch.rand(n, 1, generator=g, dtype=D64)
    r = sinkhorn(a, torch.ones(1, dtype=D64), c, epsilon=eps, tol=1e-13)
    torch.testing.assert_close(r.plan[:, 0], a)
    torch.testing.assert_close(r.value, (a * c[:, 0]).sum())


def test_envelope_gradient_is_plan_and_potentials():
    a, b, c = _problem()
    c = c.clone().requires_grad_(True)
    a_ = a.clone().requires_grad_(True)
    r = sinkhorn(a_, b, c, epsilon=0.5, tol=1e-13, max_iter=10000)
    gc, ga = torch.autograd.grad(r.value, (c, a_))
    torch.testing.assert_close(gc, r.plan, atol=1e-12, rtol=0)
    torch.testing.assert_close(ga, r.f, atol=1e-10, rtol=0)
    assert not r.plan.requires_grad


@pytest.mark.parametrize("grad", ["envelope", "unroll"])
def test_gradcheck_value(grad):
    a, b, c = _problem(4, 3, seed=7)
    c = c.clone().requires_grad_(True)

    def fn(cost):
        return sinkhorn(a, b, cost, epsilon=0.8, tol=1e-14, max_iter=20000, grad=grad).value

    assert torch.autograd.gradcheck(fn, (c,), atol=1e-6)


def test_gradcheck_unroll_plan_wrt_marginal():
    a, b, c = _problem(4, 3, seed=8)
    a = a.clone().requires_grad_(True)

    def fn(a_):
        # Renormalise inside so that perturbations stay on the simplex.
        a_n = a_ / a_.sum()
        return sinkhorn(a_n, b, c, epsilon=0.8, tol=1e-14, max_iter=20000, grad="unroll").plan

    assert torch.autograd.gradcheck(fn, (a,), atol=1e-6)


def test_envelope_equals_unroll_gradient():
    a, b, c = _problem(5, 6, seed=9)
    c1 = c.clone().requires_grad_(True)
    c2 = c.clone().requires_grad_(True)
    g1 = torch.autograd.grad(sinkhorn(a, b, c1, 0.4, tol=1e-13, max_iter=9000).value, c1)[0]
    r2 = sinkhorn(a, b, c2, 0.4, tol=1e-13, max_iter=9000, grad="unroll")
    g2 = torch.autograd.grad(r2.value, c2)[0]
    torch.testing.assert_close(g1, g2, atol=1e-9, rtol=0)


def test_module():
    a, b, c = _problem()
    m = Sinkhorn(epsilon=0.5, tol=1e-12)
    torch.testing.assert_close(m(a, b, c).plan, sinkhorn(a, b, c, 0.5, tol=1e-12).plan)


def test_bad_inputs():
    a, b, c = _problem()
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn(a, b, c, epsilon=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        sinkhorn(a, b, c, epsilon=-1.0)
    with pytest.raises(ValueError, match="a:"):
        sinkhorn(a[:-1], b, c, epsilon=1.0)
    with pytest.raises(ValueError, match="b:"):
        sinkhorn(a, b[:-1], c, epsilon=1.0)
    with pytest.raises(ValueError, match="cost"):
        sinkhorn(a, b, torch.ones(3, dtype=D64), epsilon=1.0)
    with pytest.raises(ValueError, match="grad"):
        sinkhorn(a, b, c, epsilon=1.0, grad="implicit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="epsilon_scaling"):
        sinkhorn(a, b, c, epsilon=1.0, epsilon_scaling=1.5)
    with pytest.raises(ValueError, match="max_iter"):
        sinkhorn(a, b, c, epsilon=1.0, max_iter=0)
    with checks("full"):
        bad = c.clone()
        bad[0, 0] = float("nan")
        with pytest.raises(ValueError, match="cost"):
            sinkhorn(a, b, bad, epsilon=1.0)
        with pytest.raises(ValueError, match="a"):
            sinkhorn(2 * a, b, c, epsilon=1.0)
        neg = a.clone()
        neg[0] = -neg[0]
        with pytest.raises(ValueError, match="a"):
            sinkhorn(neg, b, c, epsilon=1.0)
        r = sinkhorn(3 * a, b, c, epsilon=1.0, normalize=True, tol=1e-12)
        torch.testing.assert_close(r.plan.sum(-1), a)


# ----------------------------------------------------------------------------- divergence


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
    torch.testing.assert_close(sinkhorn_divergence(x, y), ref, atol=1e-10, rtol=1e-8)


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
    torch.testing.assert_close(s, ref, atol=1e-11, rtol=0)


@pytest.mark.parametrize("p", [1, 2])
def test_divergence_gradcheck_points(p):
    # At convergence the closed-form gradient is the exact one, w.r.t. both point clouds.
    g = torch.Generator().manual_seed(13)
    x = torch.rand(5, 2, generator=g, dtype=D64).requires_grad_(True)
    y = torch.rand(6, 2, generator=g, dtype=D64).requires_grad_(True)

    def fn(x_, y_):
        return sinkhorn_divergence(x_, y_, p=p, blur=0.3, tol=1e-14, max_iter=20000)

    assert torch.autograd.gradcheck(fn, (x, y), atol=1e-7)


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
        torch.testing.assert_close(o.grad, r.grad, rtol=rtol, atol=rtol * float(r.grad.abs().max()))


def test_divergence_gradients_batch_equals_loop():
    g = torch.Generator().manual_seed(14)
    x = torch.randn(3, 12, 4, generator=g, dtype=D64).requires_grad_(True)
    y = torch.randn(3, 9, 4, generator=g, dtype=D64).requires_grad_(True)
    # The default diameter spans the whole batch: fix it so the schedules are the same.
    sinkhorn_divergence(x, y, diameter=8.0).sum().backward()
    for i in range(3):
        xi, yi = x[i].detach().requires_grad_(True), y[i].detach().requires_grad_(True)
        sinkhorn_divergence(xi, yi, diameter=8.0).backward()
        torch.testing.assert_close(x.grad[i], xi.grad, rtol=1e-10, atol=1e-13)
        torch.testing.assert_close(y.grad[i], yi.grad, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, D64])
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
        f, s, gg = mod._softmin(eps, c.to(dtype), h.to(dtype), (x.to(dtype), y.to(dtype), p))
        tol = 1e-12 if dtype == D64 else 1e-5
        torch.testing.assert_close(f.double(), ref, rtol=tol, atol=tol * eps)
        grad = s.unsqueeze(-1) * x.to(dtype) - gg
        torch.testing.assert_close(grad.double(), ref_grad, rtol=tol, atol=tol)


def test_divergence_module_and_bad_input():
    x = torch.rand(5, 2, dtype=D64)
    y = torch.rand(6, 2, dtype=D64)
    torch.testing.assert_close(
        SinkhornDivergence(blur=0.1)(x, y), sinkhorn_divergence(x, y, blur=0.1)
    )
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
    with inforeg.core.checks.checks("full"):
        bad = x.clone()
        bad[0, 0] = float("nan")
        with pytest.raises(ValueError, match="x"):
            sinkhorn_divergence(bad, y)


@pytest.mark.parametrize("eps_rel", [0.05, 1e-3, 1e-4])
def test_kernel_blocks_match_pure_log_domain(monkeypatch, eps_rel):
    mod = importlib.import_module("inforeg.ot.sinkhorn")

    a, b, c = _problem(30, 20, seed=21)
    eps = eps_rel * float(c.max())
    fast = sinkhorn(a, b, c, eps, tol=1e-10, max_iter=3000)
    monkeypatch.setattr(mod, "_SWITCH_TOL", -1.0)  # never leave the log domain
    slow = sinkhorn(a, b, c, eps, tol=1e-10, max_iter=3000)
    assert torch.isfinite(fast.plan).all()
    assert fast.converged == slow.converged
    torch.testing.assert_close(fast.plan, slow.plan, atol=1e-9, rtol=0)


def test_not_converged_is_reported():
    a, b, c = _problem(20, 20, seed=30)
    r = sinkhorn(a, b, c, 1e-3 * float(c.max()), tol=1e-12, max_iter=15)
    assert not r.converged and r.n_iter == 15
