"""Tests of inforeg.ot.sinkhorn (log-domain entropic OT on a cost matrix)."""

from __future__ import annotations

import importlib
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inforeg.core.checks import checks
from inforeg.ot import Sinkhorn, sinkhorn
from tests._helpers import assert_close, gradcheck64
from tests.ot._problems import (
    D64,
    check_ot_result,
    dirac_problem,
    gaussian_1d_entropic_ot,
    gaussian_1d_problem,
    permutation_problem,
    random_problem,
)


def _brute_sinkhorn(a, b, c, eps, iters=20000):
    """Plain (non-log) Sinkhorn scaling in float64, a loop reference."""
    k = torch.exp(-c / eps)
    u = torch.ones_like(a)
    v = torch.ones_like(b)
    for _ in range(iters):
        u = a / (k @ v)
        v = b / (k.T @ u)
    return u[:, None] * k * v[None, :]


@pytest.mark.parametrize("grad", ["envelope", "unroll"])
@pytest.mark.parametrize("scaling", [None, 0.5])
def test_every_result_field(grad, scaling):
    a, b, c = random_problem(seed=1, batch=(2,))
    r = sinkhorn(a, b, c, epsilon=0.5, tol=1e-12, max_iter=5000, grad=grad, epsilon_scaling=scaling)
    assert r.converged and r.n_iter < 5000
    check_ot_result(r, a, b, c, 0.5, max_iter=5000, marginal_atol=1e-11)
    # Not converged: the budget is spent and reported; plan and value still those of (f, g).
    r = sinkhorn(a, b, c, epsilon=0.05, tol=1e-14, max_iter=7, grad=grad, epsilon_scaling=scaling)
    assert not r.converged and r.n_iter == 7
    with pytest.raises(AssertionError):
        check_ot_result(r, a, b, c, 0.05, max_iter=7, marginal_atol=1e-3)  # marginals not yet
    check_ot_result(r, a, b, c, 0.05, max_iter=7, marginal_atol=None)


def test_column_marginals_exact_row_marginals_to_tol():
    # The last update is the g update: columns hold to rounding, rows to tol.
    a, b, c = random_problem(30, 20, seed=2)
    r = sinkhorn(a, b, c, epsilon=0.05 * float(c.max()), tol=1e-6)
    assert r.converged
    assert float((r.plan.sum(-2) - b).abs().max()) < 1e-15
    row_err = float((r.plan.sum(-1) - a).abs().sum())
    assert 1e-12 < row_err <= 1e-6


def test_against_plain_scaling_loop():
    a, b, c = random_problem()
    eps = 0.7
    r = sinkhorn(a, b, c, epsilon=eps, tol=1e-13, max_iter=10000)
    ref = _brute_sinkhorn(a, b, c, eps)
    assert_close(r.plan, ref, atol=1e-12, rtol=0)
    # value = <P, C> + eps KL(P | a x b)
    kl = (ref * torch.log(ref / (a[:, None] * b[None, :]))).sum()
    assert_close(r.value, (ref * c).sum() + eps * kl, atol=1e-10, rtol=0)


def test_against_pot_sinkhorn_log():
    ot = pytest.importorskip("ot")
    a, b, c = random_problem(30, 25, seed=3)
    reg = 0.05 * float(c.max())
    kwargs = {"method": "sinkhorn_log", "stopThr": 1e-13, "numItermax": 100000}
    ref = ot.sinkhorn(a.numpy(), b.numpy(), c.numpy(), reg, **kwargs)
    r = sinkhorn(a, b, c, epsilon=reg, tol=1e-13, max_iter=100000)
    assert float((r.plan - torch.from_numpy(ref)).abs().max()) < 1e-12
    lin = ot.sinkhorn2(a.numpy(), b.numpy(), c.numpy(), reg, **kwargs)
    assert math.isclose(float((r.plan * c).sum()), float(lin), rel_tol=1e-10)


@pytest.mark.parametrize(
    "m1, s1, m2, s2", [(0.0, 1.0, 0.0, 1.0), (0.5, 1.0, -1.0, 2.0), (1.0, 0.5, 0.0, 0.8)]
)
@pytest.mark.parametrize("eps", [0.1, 2.0])
def test_gaussians_closed_form(m1, s1, m2, s2, eps):
    # Entropic OT between 1-D Gaussians has a closed form (cost |x-y|^2, eps KL(P | a x b));
    # densities on a grid of 7 sds reproduce it to ~1e-10.
    _, a, _, b, c = gaussian_1d_problem(m1, s1, m2, s2, n=200)
    r = sinkhorn(a, b, c, eps, tol=1e-11, max_iter=20000, epsilon_scaling=0.5)
    assert r.converged
    ref = gaussian_1d_entropic_ot(m1, s1, m2, s2, eps)
    assert math.isclose(float(r.value), ref, rel_tol=1e-8)


def test_epsilon_scaling_same_solution_fewer_iterations():
    a, b, c = random_problem(40, 40, seed=1)
    eps = 1e-3 * float(c.max())
    plain = sinkhorn(a, b, c, eps, tol=1e-9, max_iter=20000)
    scaled = sinkhorn(a, b, c, eps, tol=1e-9, max_iter=20000, epsilon_scaling=0.5)
    assert plain.converged and scaled.converged
    assert scaled.n_iter < plain.n_iter
    assert_close(scaled.plan, plain.plan, atol=1e-7, rtol=0)


def test_epsilon_scaling_counts_one_update_per_temperature():
    # max C = 1, epsilon = 1/16, factor 1/2: temperatures 1, 1/2, 1/4, 1/8 before epsilon, each
    # one counted update; max_iter = 4 stops right at the end of the schedule.
    c = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=D64)
    r = sinkhorn(None, None, c, 1 / 16, max_iter=4, epsilon_scaling=0.5)
    assert r.n_iter == 4 and not r.converged
    r = sinkhorn(None, None, c, 1 / 16, max_iter=3, epsilon_scaling=0.5)
    assert r.n_iter == 3


def test_small_epsilon_no_nan_and_close_to_emd():
    ot = pytest.importorskip("ot")
    a, b, c = random_problem(20, 20, seed=2)
    eps = 1e-4 * float(c.max())
    r = sinkhorn(a, b, c, eps, tol=1e-8, max_iter=20000, epsilon_scaling=0.7)
    assert torch.isfinite(r.plan).all() and torch.isfinite(r.value)
    emd = ot.emd2(a.numpy(), b.numpy(), c.numpy())
    assert abs(float((r.plan * c).sum()) - emd) < 1e-3 * emd + 1e-6


def test_float32_small_epsilon_finite():
    a, b, c = random_problem(20, 20, seed=2)
    r = sinkhorn(a.float(), b.float(), c.float(), 1e-4 * float(c.max()), tol=1e-5, max_iter=300)
    assert torch.isfinite(r.plan).all() and torch.isfinite(r.f).all()
    assert r.plan.dtype == torch.float32


def test_dtype_parity(dtype):
    a, b, c = random_problem(12, 9, seed=4)
    ref = sinkhorn(a, b, c, 0.5, tol=1e-12)
    r = sinkhorn(a.to(dtype), b.to(dtype), c.to(dtype), 0.5, tol=1e-12 if dtype == D64 else 1e-6)
    assert r.plan.dtype == dtype
    assert_close(r.plan, ref.plan, atol=1e-6 if dtype != D64 else 1e-12, rtol=0)
    assert_close(r.value, ref.value)


def test_bfloat16_input():
    a, b, c = random_problem()
    r = sinkhorn(a.bfloat16(), b.bfloat16(), c.bfloat16(), 0.5, tol=1e-4)
    assert r.plan.dtype == torch.bfloat16 and torch.isfinite(r.plan.float()).all()


def test_batch_equals_loop():
    a, b, c = random_problem(6, 4, seed=5, batch=(2, 3))
    r = sinkhorn(a, b, c, epsilon=0.3, tol=1e-13, max_iter=10000)
    assert r.plan.shape == (2, 3, 6, 4) and r.value.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            s = sinkhorn(a[i, j], b[i, j], c[i, j], epsilon=0.3, tol=1e-13, max_iter=10000)
            assert_close(r.plan[i, j], s.plan, atol=1e-12, rtol=0)
            assert_close(r.value[i, j], s.value, atol=1e-12, rtol=0)


def test_broadcast_shared_marginals():
    _, _, c = random_problem(5, 5, seed=6, batch=(4,))
    r = sinkhorn(None, None, c, epsilon=2.0, tol=1e-12, max_iter=20000)
    assert r.converged
    assert r.plan.shape == (4, 5, 5)
    assert_close(r.plan.sum(-1), torch.full((4, 5), 0.2, dtype=D64))


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 6), st.integers(0, 10_000))
def test_permutation_problem_gives_permutation(n, seed):
    # Cost 0 on a permutation, 1 elsewhere: the plan concentrates on the permutation.
    c, expected = permutation_problem(n, seed)
    r = sinkhorn(None, None, c, epsilon=0.01, tol=1e-12, max_iter=5000)
    assert_close(r.plan, expected, atol=1e-12, rtol=0)


@settings(max_examples=10, deadline=None)
@given(st.integers(1, 5), st.floats(0.01, 2.0), st.integers(0, 1000))
def test_dirac_target(n, eps, seed):
    # A single target point: the plan is a, the value is <a, c> (KL term vanishes).
    a, b, c = dirac_problem(n, seed)
    r = sinkhorn(a, b, c, epsilon=eps, tol=1e-13)
    assert_close(r.plan[:, 0], a)
    assert_close(r.value, (a * c[:, 0]).sum())


def test_envelope_gradient_is_plan_and_potentials():
    a, b, c = random_problem()
    c = c.clone().requires_grad_(True)
    a_ = a.clone().requires_grad_(True)
    r = sinkhorn(a_, b, c, epsilon=0.5, tol=1e-13, max_iter=10000)
    gc, ga = torch.autograd.grad(r.value, (c, a_))
    assert_close(gc, r.plan, atol=1e-12, rtol=0)
    assert_close(ga, r.f, atol=1e-10, rtol=0)
    assert not r.plan.requires_grad


@pytest.mark.parametrize("grad", ["envelope", "unroll"])
def test_gradcheck_value(grad):
    a, b, c = random_problem(4, 3, seed=7)
    gradcheck64(
        lambda cost: sinkhorn(a, b, cost, 0.8, tol=1e-14, max_iter=20000, grad=grad).value,
        c,
        atol=1e-6,
    )


def test_gradcheck_unroll_plan_wrt_marginal():
    a, b, c = random_problem(4, 3, seed=8)

    def fn(a_):
        # Renormalise inside so that perturbations stay on the simplex.
        a_n = a_ / a_.sum()
        return sinkhorn(a_n, b, c, epsilon=0.8, tol=1e-14, max_iter=20000, grad="unroll").plan

    gradcheck64(fn, a, atol=1e-6)


def test_envelope_equals_unroll_gradient():
    a, b, c = random_problem(5, 6, seed=9)
    c1 = c.clone().requires_grad_(True)
    c2 = c.clone().requires_grad_(True)
    g1 = torch.autograd.grad(sinkhorn(a, b, c1, 0.4, tol=1e-13, max_iter=9000).value, c1)[0]
    r2 = sinkhorn(a, b, c2, 0.4, tol=1e-13, max_iter=9000, grad="unroll")
    g2 = torch.autograd.grad(r2.value, c2)[0]
    assert_close(g1, g2, atol=1e-9, rtol=0)


def test_module():
    a, b, c = random_problem()
    settings_ = {"epsilon": 0.3, "tol": 1e-10, "epsilon_scaling": 0.5, "check_every": 3}
    r_m = Sinkhorn(**settings_)(a, b, c)
    r_f = sinkhorn(a, b, c, **settings_)
    for name in ("plan", "value", "f", "g"):
        assert torch.equal(getattr(r_m, name), getattr(r_f, name)), name
    assert (r_m.n_iter, r_m.converged) == (r_f.n_iter, r_f.converged)
    assert r_f.converged and r_f.n_iter != sinkhorn(a, b, c, 0.3, tol=1e-10).n_iter


def test_bad_inputs():
    a, b, c = random_problem()
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
    with pytest.raises(ValueError, match="check_every"):
        sinkhorn(a, b, c, epsilon=1.0, check_every=0)
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
        assert_close(r.plan.sum(-1), a)


@pytest.mark.parametrize("eps_rel", [0.05, 1e-3, 1e-4])
def test_kernel_blocks_match_pure_log_domain(monkeypatch, eps_rel):
    mod = importlib.import_module("inforeg.ot.sinkhorn")
    a, b, c = random_problem(30, 20, seed=21)
    eps = eps_rel * float(c.max())
    fast = sinkhorn(a, b, c, eps, tol=1e-10, max_iter=3000)
    monkeypatch.setattr(mod, "_SWITCH_TOL", -1.0)  # never leave the log domain
    slow = sinkhorn(a, b, c, eps, tol=1e-10, max_iter=3000)
    assert torch.isfinite(fast.plan).all()
    assert fast.converged == slow.converged
    assert_close(fast.plan, slow.plan, atol=1e-9, rtol=0)


def test_kernel_block_failure_falls_back_to_log_domain(monkeypatch):
    # A block that under/overflows is discarded and the loop stays in the log domain: same
    # solution as never using blocks.
    mod = importlib.import_module("inforeg.ot.sinkhorn")
    calls = []

    def failing_block(*args):
        calls.append(1)
        f, g = args[4], args[5]
        return False, f * math.nan, g, math.inf

    a, b, c = random_problem(30, 20, seed=22)
    eps = 0.05 * float(c.max())
    ref = sinkhorn(a, b, c, eps, tol=1e-10, max_iter=3000)
    monkeypatch.setattr(mod, "_kernel_block", failing_block)
    r = sinkhorn(a, b, c, eps, tol=1e-10, max_iter=3000)
    assert len(calls) == 1 and r.converged
    assert_close(r.plan, ref.plan, atol=1e-9, rtol=0)


def test_not_converged_is_reported():
    a, b, c = random_problem(20, 20, seed=30)
    r = sinkhorn(a, b, c, 1e-3 * float(c.max()), tol=1e-12, max_iter=15)
    assert not r.converged and r.n_iter == 15


def _zero_weight_problem():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(5, 2, generator=g, dtype=D64), torch.randn(4, 2, generator=g, dtype=D64)
    a = torch.tensor([0.3, 0.0, 0.2, 0.25, 0.25], dtype=D64, requires_grad=True)
    b = torch.tensor([0.5, 0.0, 0.25, 0.25], dtype=D64, requires_grad=True)
    return a, b, torch.cdist(x, y) ** 2


@pytest.mark.parametrize("grad", ["envelope", "unroll"])
@pytest.mark.parametrize("scaling", [None, 0.5])
def test_zero_weights_give_the_potentials_as_gradient(grad, scaling):
    # Regression (issue 18): the plan was built from log(a), so autograd computed 0 * inf = NaN
    # at a zero weight; the documented gradient is the potential f (g for b), zeros included.
    a, b, c = _zero_weight_problem()
    r = sinkhorn(a, b, c, 0.1, grad=grad, epsilon_scaling=scaling, tol=1e-12)
    r.value.backward()
    assert torch.isfinite(r.value)
    assert_close(a.grad, r.f.detach(), atol=1e-8, rtol=0)
    assert_close(b.grad, r.g.detach(), atol=1e-8, rtol=0)
    # and the plan's zero rows / columns are exact zeros
    plan = r.plan.detach()
    assert float(plan[1].abs().sum()) == 0.0 and float(plan[:, 1].abs().sum()) == 0.0


def test_zero_weight_potential_is_the_c_transform():
    # f_i at a zero weight is the soft c-transform of g (the potential the plan would extend with)
    a, b, c = _zero_weight_problem()
    r = sinkhorn(a.detach(), b.detach(), c, 0.1, tol=1e-12)
    f1 = -0.1 * torch.logsumexp(
        torch.log(b.detach()[[0, 2, 3]]) + (r.g[[0, 2, 3]] - c[1, [0, 2, 3]]) / 0.1, 0
    )
    assert_close(r.f[1], f1, atol=1e-9, rtol=0)
