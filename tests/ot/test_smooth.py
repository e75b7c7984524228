"""Tests of inforeg.ot.smooth_ot (quadratically or entropically regularised OT)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inforeg.core.checks import checks
from inforeg.ot import SmoothOT, sinkhorn, smooth_ot, sparse_ot
from tests._helpers import assert_close, gradcheck64
from tests.ot._problems import D64, permutation_problem, uniform_problem, zero_weight_problem


@pytest.mark.parametrize("reg", ["l2", "entropy"])
@pytest.mark.parametrize("form", ["dual", "semi_dual"])
def test_smooth_ot_matches_pot(reg, form):
    ot = pytest.importorskip("ot")
    a, b, c = uniform_problem(15, 12, seed=2)
    gamma = 0.1
    fn = ot.smooth.smooth_ot_dual if form == "dual" else ot.smooth.smooth_ot_semi_dual
    ref = fn(a.numpy(), b.numpy(), c.numpy(), gamma, reg_type="kl" if reg == "entropy" else reg)
    r = smooth_ot(a, b, c, gamma, reg, form, max_iter=2000)
    assert np.abs(r.plan.numpy() - ref).max() < 1e-4
    assert_close(r.plan.sum(-2), b, atol=1e-5, rtol=0)
    assert_close(r.plan.sum(-1), a, atol=1e-5, rtol=0)


def test_entropy_smooth_ot_matches_sinkhorn():
    a, b, c = uniform_problem(10, 8, seed=3)
    gamma = 0.05
    r = smooth_ot(a, b, c, gamma, "entropy", "semi_dual", max_iter=2000)
    # Omega = gamma sum t log t  <=>  entropic OT with KL to a (x) b up to a constant: same plan.
    s = sinkhorn(a, b, c, gamma, tol=1e-12, max_iter=20000)
    assert_close(r.plan, s.plan, atol=1e-6, rtol=0)


@pytest.mark.parametrize("form", ["dual", "semi_dual"])
def test_quadratic_value_is_primal_cost_at_the_plan(form):
    # At the optimum the (semi-)dual value equals the primal <T, C> + gamma/2 ||T||^2.
    a, b, c = uniform_problem(9, 7, seed=4)
    gamma = 0.2
    r = smooth_ot(a, b, c, gamma, "l2", form, max_iter=3000, tol=1e-12)
    primal = (r.plan * c).sum() + 0.5 * gamma * (r.plan * r.plan).sum()
    assert_close(r.value, primal, atol=1e-8, rtol=0)


def test_permutation_small_gamma_recovers_the_permutation():
    c, expected = permutation_problem(6, seed=1)
    r = smooth_ot(None, None, c, 1e-3, "l2", "semi_dual", tol=1e-12)
    assert_close(r.plan, expected, atol=1e-9, rtol=0)


def test_envelope_gradient_and_gradcheck():
    a, b, c = uniform_problem(5, 4, seed=11)
    cr = c.clone().requires_grad_(True)
    r = smooth_ot(a, b, cr, 0.5, "l2", "semi_dual", max_iter=2000, tol=1e-13)
    (gc,) = torch.autograd.grad(r.value, cr)
    assert_close(gc, r.plan, atol=1e-12, rtol=0)
    # Quadratic OT has a smooth value; its envelope gradient is exact at the optimum.
    gradcheck64(
        lambda c_: smooth_ot(a, b, c_, 0.5, "l2", "semi_dual", max_iter=2000, tol=1e-13).value,
        c,
        atol=1e-5,
    )


def test_module_and_dtypes():
    a, b, c = uniform_problem(8, 6, seed=12)
    settings_ = {
        "gamma": 0.1,
        "regularizer": "entropy",
        "formulation": "semi_dual",
        "max_iter": 40,
        "normalize": True,
        "method": "lbfgs",
    }
    r_m = SmoothOT(**settings_)(2 * a, b, c)
    r_f = smooth_ot(2 * a, b, c, **settings_)
    assert torch.equal(r_m.plan, r_f.plan) and r_m.n_iter == r_f.n_iter
    r32 = smooth_ot(a.float(), b.float(), c.float(), 0.1, tol=1e-6)
    assert r32.plan.dtype == torch.float32 and torch.isfinite(r32.plan).all()
    rb = smooth_ot(a.bfloat16(), b.bfloat16(), c.bfloat16(), 0.1, tol=1e-5)
    assert rb.plan.dtype == torch.bfloat16 and torch.isfinite(rb.plan.float()).all()


def test_bad_inputs():
    a, b, c = uniform_problem(6, 5)
    with pytest.raises(ValueError, match="gamma"):
        smooth_ot(a, b, c, gamma=-1.0)
    with pytest.raises(ValueError, match="regularizer"):
        smooth_ot(a, b, c, 0.1, regularizer="kl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="formulation"):
        smooth_ot(a, b, c, 0.1, formulation="primal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="newton"):
        smooth_ot(a, b, c, 0.1, "entropy", "semi_dual", method="newton")
    with pytest.raises(ValueError, match="max_iter"):
        smooth_ot(a, b, c, 0.1, max_iter=0)
    with pytest.raises(ValueError, match="a:"):
        smooth_ot(a[:-1], b, c, 0.1)
    with checks("full"):
        with pytest.raises(ValueError, match="b"):
            smooth_ot(a, 2 * b, c, 0.1)
        bad = c.clone()
        bad[0, 0] = float("nan")
        with pytest.raises(ValueError, match="cost"):
            smooth_ot(a, b, bad, 0.1)


@pytest.mark.parametrize("regularizer", ["l2", "entropy"])
@pytest.mark.parametrize("formulation", ["semi_dual", "dual"])
def test_zero_weights_finite_value_and_alpha_gradient(regularizer, formulation):
    # Regression (issue 18): zeros in a, b gave a NaN value (0/0 and 0 * log 0) in the semi-dual.
    a, b, cost = zero_weight_problem()
    r = smooth_ot(a, b, cost, 0.5, regularizer=regularizer, formulation=formulation)
    r.value.backward()
    assert torch.isfinite(r.value) and torch.isfinite(a.grad).all()
    torch.testing.assert_close(a.grad, r.f)  # the documented envelope gradient
    if regularizer == "entropy" and formulation == "semi_dual":
        # Omega = gamma sum t log t: the potential of an empty column is -inf, and so is dv/db_j.
        assert float(r.g[1]) == float(b.grad[1]) == -math.inf
    else:
        assert torch.isfinite(b.grad).all()


@pytest.mark.parametrize("solver", ["smooth", "sparse"])
def test_bfloat16_cost_matches_float32(solver):
    # Regression (issue 18): default uniform weights were built in bfloat16 (1/3 -> 0.334, mass
    # 1.002), an unbalanced problem whose dual diverged: values ~1e11 away from float32.
    g = torch.Generator().manual_seed(0)
    c = torch.cdist(torch.randn(4, 2, generator=g), torch.randn(3, 2, generator=g)) ** 2
    if solver == "smooth":
        ref, got = smooth_ot(None, None, c, 0.5), smooth_ot(None, None, c.bfloat16(), 0.5)
    else:
        ref, got = sparse_ot(None, None, c, k=2), sparse_ot(None, None, c.bfloat16(), k=2)
    assert got.value.dtype == torch.bfloat16
    assert abs(float(got.value) - float(ref.value)) <= 0.02 * abs(float(ref.value))


_SOLVERS = {
    "l2-dual": lambda a, b, c: smooth_ot(a, b, c, 0.5),
    "l2-semi_dual": lambda a, b, c: smooth_ot(a, b, c, 0.5, formulation="semi_dual"),
    "entropy-dual": lambda a, b, c: smooth_ot(a, b, c, 0.5, "entropy"),
    "entropy-semi_dual": lambda a, b, c: smooth_ot(a, b, c, 0.5, "entropy", "semi_dual"),
    "sparse-semi_dual": lambda a, b, c: sparse_ot(a, b, c, k=3, gamma=0.5),
    "sparse-dual": lambda a, b, c: sparse_ot(a, b, c, k=3, gamma=0.5, formulation="dual"),
    "sinkhorn": lambda a, b, c: sinkhorn(a, b, c, 0.05),
}


def _weights_and_cost(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.rand(12, generator=g, dtype=D64), torch.rand(10, generator=g, dtype=D64)
    return a / a.sum(), b / b.sum(), torch.rand(12, 10, generator=g, dtype=D64)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("solver", sorted(_SOLVERS))
def test_rounded_weights_solve_the_balanced_problem(solver, seed):
    # Regression: weights that summed to one before rounding to bfloat16 differ in mass by ~1e-3,
    # and the balanced problem then has no solution. The duals ran off: a zero plan with a value
    # of 1.4e8 (l2 dual), a value of 2e34 (entropy semi-dual). b now takes a's mass.
    solve = _SOLVERS[solver]
    a, b, c = _weights_and_cost(seed)
    ref = solve(a, b, c)
    got = solve(a.bfloat16(), b.bfloat16(), c.bfloat16())
    assert got.plan.dtype == torch.bfloat16
    assert abs(float(got.plan.double().sum()) - float(a.bfloat16().double().sum())) < 1e-2
    assert abs(float(got.value) - float(ref.value)) <= 0.01 * abs(float(ref.value))
    # A float64 mismatch of 1e-6 was enough: Newton's value went to 12.7 (for 0.19) and Sinkhorn
    # never met its tolerance.
    off = solve(a * (1 + 1e-6), b, c)
    assert abs(float(off.value) - float(ref.value)) <= 1e-4  # sparse stops at kinks: ~1e-5
    assert off.converged == ref.converged


def test_float32_newton_reaches_the_lbfgs_accuracy():
    """The Newton solver counted predicted gains below 1e3 ulps of the objective as rounding
    noise: 1.2e-4 relative in float32, so real steps were rejected and it stalled with a row
    marginal error of 2.6e-3 (L-BFGS: 4e-6)."""
    torch.manual_seed(0)
    a = torch.rand(5, dtype=torch.float64) + 0.1
    b = torch.rand(7, dtype=torch.float64) + 0.1
    a, b = a / a.sum(), b / b.sum()
    c = torch.rand(5, 7, dtype=torch.float64) * 3
    args = (a.float(), b.float(), c.float(), 0.1, "l2", "semi_dual")
    newton = smooth_ot(*args, tol=1e-5, method="newton")
    lbfgs = smooth_ot(*args, tol=1e-5, method="lbfgs")
    err = float((newton.plan.double().sum(-1) - a).abs().max())
    assert newton.converged and err < 1e-5
    assert err <= 10 * float((lbfgs.plan.double().sum(-1) - a).abs().max()) + 1e-6
