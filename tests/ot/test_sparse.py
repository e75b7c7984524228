"""Tests of inforeg.ot.sparse_ot (sparsity-constrained OT); smooth_ot is in test_smooth.py."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from inforeg.core.checks import checks
from inforeg.ot import (
    SparsityConstrainedOT,
    delta_k,
    projection_sparse_simplex,
    smooth_ot,
    sparse_ot,
)
from tests._helpers import bounded, gradcheck64
from tests.ot._problems import D64, uniform_problem, zero_weight_problem

# ----------------------------------------------------------------------------- closed forms


def test_delta_k_spec_value():
    s = torch.tensor([3.0, 1.0, 2.0], dtype=D64)
    val, grad = delta_k(s, k=2, gamma=1.0)
    assert float(val) == pytest.approx(6.5)
    torch.testing.assert_close(grad, torch.tensor([3.0, 0.0, 2.0], dtype=D64))
    assert torch.equal(s, torch.tensor([3.0, 1.0, 2.0], dtype=D64))  # input untouched
    val2, grad2 = delta_k(s, k=2, gamma=2.0)
    assert float(val2) == pytest.approx(3.25)
    torch.testing.assert_close(grad2, grad / 2)


def test_projection_sparse_simplex_spec_values():
    v = torch.tensor([0.6, 0.3, 0.1], dtype=D64)
    torch.testing.assert_close(
        projection_sparse_simplex(v, 2), torch.tensor([0.65, 0.35, 0.0], dtype=D64)
    )
    torch.testing.assert_close(
        projection_sparse_simplex(v, 1), torch.tensor([1.0, 0.0, 0.0], dtype=D64)
    )


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(2, 7), st.integers(0, 10**6))
def test_projection_is_best_k_sparse_simplex_point(k, n, seed):
    # Brute force: for each support of size <= k, project onto that face; keep the closest.
    from itertools import combinations

    rng = np.random.default_rng(seed)
    v = rng.normal(size=n)
    best, best_d = None, np.inf
    for size in range(1, min(k, n) + 1):
        for supp in combinations(range(n), size):
            sub = v[list(supp)]
            # simplex projection of sub (sort-based)
            u = np.sort(sub)[::-1]
            css = np.cumsum(u) - 1
            rho = np.nonzero(u - css / np.arange(1, size + 1) > 0)[0][-1]
            w = np.maximum(sub - css[rho] / (rho + 1), 0)
            y = np.zeros(n)
            y[list(supp)] = w
            d = np.sum((y - v) ** 2)
            if d < best_d - 1e-12:
                best, best_d = y, d
    ours = projection_sparse_simplex(torch.from_numpy(v), k).numpy()
    assert np.sum((ours - v) ** 2) == pytest.approx(best_d, abs=1e-10)
    assert np.count_nonzero(ours) <= k and ours.sum() == pytest.approx(1.0)
    del best


def test_delta_k_matches_pot():
    ot = pytest.importorskip("ot")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(6, 4))
    reg = ot.smooth.SparsityConstrained(max_nz=2, gamma=0.5)
    val, grad = reg.delta_Omega(x.copy())
    ours_v, ours_g = delta_k(torch.from_numpy(x.T), 2, 0.5)
    np.testing.assert_allclose(ours_v.numpy(), val)
    np.testing.assert_allclose(ours_g.numpy().T, grad)


# ----------------------------------------------------------------------------- solvers vs POT


def _pot_quiet(fn, *args, **kwargs):
    with contextlib.redirect_stdout(io.StringIO()):  # POT prints from projection_sparse_simplex
        return fn(*args, **kwargs)


@pytest.mark.parametrize("form", ["semi_dual", "dual"])
def test_sparse_ot_matches_pot(form):
    ot = pytest.importorskip("ot")
    a, b, c = uniform_problem(15, 12, seed=4)
    fn = ot.smooth.smooth_ot_dual if form == "dual" else ot.smooth.smooth_ot_semi_dual
    ref = _pot_quiet(
        fn, a.numpy(), b.numpy(), c.numpy(), 0.1, reg_type="sparsity_constrained", max_nz=4
    )
    r = sparse_ot(a, b, c, k=4, gamma=0.1, formulation=form, max_iter=2000)
    assert np.abs(r.plan.numpy() - ref).max() < 1e-3
    assert int((r.plan > 0).sum(-2).max()) <= 4


def test_sparse_columns_have_at_most_k_nonzeros_and_marginals():
    a, b, c = uniform_problem(12, 8, seed=5)  # k * m >= n, so the row marginals are attainable
    for k in (2, 3, 5):
        r = sparse_ot(a, b, c, k=k, gamma=0.05, max_iter=3000)
        assert int((r.plan > 0).sum(-2).max()) <= k
        torch.testing.assert_close(r.plan.sum(-2), b, atol=1e-10, rtol=0)  # exact (semi-dual)
        assert float((r.plan.sum(-1) - a).abs().sum()) < 2e-3


def test_sparse_k_ge_n_equals_quadratic_ot():
    a, b, c = uniform_problem(8, 6, seed=6)
    r = sparse_ot(a, b, c, k=8, gamma=0.2, max_iter=2000)
    q = smooth_ot(a, b, c, 0.2, "l2", "semi_dual", max_iter=2000)
    torch.testing.assert_close(r.plan, q.plan, atol=1e-7, rtol=0)
    torch.testing.assert_close(r.value, q.value, atol=1e-9, rtol=0)
    r2 = sparse_ot(a, b, c, k=50, gamma=0.2, max_iter=2000)
    torch.testing.assert_close(r2.plan, q.plan, atol=1e-7, rtol=0)


def test_sparse_small_gamma_large_k_close_to_emd():
    ot = pytest.importorskip("ot")
    a, b, c = uniform_problem(12, 12, seed=7)
    emd = ot.emd2(a.numpy(), b.numpy(), c.numpy())
    r = sparse_ot(a, b, c, k=6, gamma=1e-3, max_iter=3000)
    assert abs(float((r.plan * c).sum()) - emd) < 2e-3 * max(emd, 1e-3) + 1e-4


def test_sparse_k1_semi_dual_is_unregularised_ot_cost():
    # k = 1: value = max_alpha a.alpha - sum_j b_j (max_i (alpha_i - c_ij) - gamma b_j / 2), i.e.
    # the OT dual + gamma/2 sum_j b_j^2. Check at a known optimum: a permutation problem.
    n = 5
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    c = torch.ones(n, n, dtype=D64)
    c[torch.arange(n), perm] = 0.0
    a = b = torch.full((n,), 1.0 / n, dtype=D64)
    gamma = 0.3
    r = sparse_ot(a, b, c, k=1, gamma=gamma, max_iter=500)
    assert float(r.value) == pytest.approx(0.0 + gamma / 2 * float((b * b).sum()), abs=1e-6)
    expected = torch.zeros(n, n, dtype=D64)
    expected[torch.arange(n), perm] = 1.0 / n
    torch.testing.assert_close(r.plan, expected, atol=1e-6, rtol=0)


def test_sparsity_decreases_with_k_smoothness():
    a, b, c = uniform_problem(30, 6, seed=8)
    nnz = [
        int((sparse_ot(a, b, c, k=k, gamma=1.0, max_iter=2000).plan > 0).sum()) for k in (1, 3, 10)
    ]
    assert nnz[0] <= nnz[1] <= nnz[2]


def test_batch_equals_loop():
    a, b, c = uniform_problem(8, 5, seed=9, batch=(3,))
    r = sparse_ot(a, b, c, k=3, gamma=0.1, max_iter=3000)
    assert r.plan.shape == (3, 8, 5) and r.value.shape == (3,)
    for i in range(3):
        s = sparse_ot(a[i], b[i], c[i], k=3, gamma=0.1, max_iter=3000)
        torch.testing.assert_close(r.plan[i], s.plan, atol=1e-5, rtol=0)
        torch.testing.assert_close(r.value[i], s.value, atol=1e-8, rtol=0)


@pytest.mark.parametrize(
    ("k", "kw"), [(2, {}), (2, {"method": "lbfgs"}), (3, {"formulation": "dual"})]
)
def test_batch_equals_loop_where_the_solver_stops_at_a_kink(k, kw):
    """Where k binds, Newton stalls at a kink and L-BFGS finishes (or L-BFGS runs alone): the
    problems of a batch must not share its history or line search. With one L-BFGS over the
    batch, all 8 plans of each case differed from their one-at-a-time solves (by up to 0.033,
    0.034 and 0.022; values by up to 1.7e-5, 2.0e-5 and 2.2e-6)."""
    a, b, c = uniform_problem(20, 15, seed=21, batch=(8,))
    r = sparse_ot(a, b, c, k=k, gamma=0.1, **kw)
    assert not r.converged  # the regime this test is about
    for i in range(8):
        s = sparse_ot(a[i], b[i], c[i], k=k, gamma=0.1, **kw)
        torch.testing.assert_close(r.value[i], s.value, atol=1e-12, rtol=0)
        if "formulation" not in kw:  # the dual's plan at a tie may follow rounding
            torch.testing.assert_close(r.plan[i], s.plan, atol=1e-9, rtol=0)


def test_envelope_gradient_is_plan():
    a, b, c = uniform_problem(8, 6, seed=10)
    c = c.clone().requires_grad_(True)
    for form in ("semi_dual", "dual"):
        r = sparse_ot(a, b, c, k=3, gamma=0.1, formulation=form, max_iter=3000)  # type: ignore[arg-type]
        (gc,) = torch.autograd.grad(r.value, c)
        torch.testing.assert_close(gc, r.plan, atol=1e-12, rtol=0)


def test_gradcheck_value_wrt_cost():
    a, b, c = uniform_problem(5, 4, seed=11)
    # k = 4 >= n: quadratic OT, whose value is smooth; the envelope gradient is exact there.
    gradcheck64(
        lambda c_: sparse_ot(a, b, c_, k=4, gamma=0.5, max_iter=2000, tol=1e-13).value,
        c,
        atol=1e-5,
    )


def test_modules_and_dtypes():
    a, b, c = uniform_problem(8, 6, seed=12)
    settings_ = {"k": 3, "gamma": 0.1, "formulation": "dual", "max_iter": 50, "normalize": True}
    r_m = SparsityConstrainedOT(**settings_)(3 * a, b, c)
    r_f = sparse_ot(3 * a, b, c, **settings_)
    assert torch.equal(r_m.plan, r_f.plan) and r_m.n_iter == r_f.n_iter
    r = sparse_ot(a.float(), b.float(), c.float(), 3, 0.1, tol=1e-6)
    assert r.plan.dtype == torch.float32 and torch.isfinite(r.plan).all()
    rb = sparse_ot(a.bfloat16(), b.bfloat16(), c.bfloat16(), 3, 0.1, tol=1e-5)
    assert rb.plan.dtype == torch.bfloat16 and torch.isfinite(rb.plan.float()).all()


def test_bad_inputs():
    a, b, c = uniform_problem(6, 5)
    with pytest.raises(ValueError, match="k"):
        sparse_ot(a, b, c, k=0)
    with pytest.raises(TypeError, match="k"):
        sparse_ot(a, b, c, k=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="gamma"):
        sparse_ot(a, b, c, k=2, gamma=0.0)
    with pytest.raises(ValueError, match="formulation"):
        sparse_ot(a, b, c, 2, formulation="primal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a:"):
        sparse_ot(a[:-1], b, c, 2)
    with pytest.raises(ValueError, match="cost"):
        sparse_ot(a, b, c[0], 2)
    with checks("full"):
        bad = c.clone()
        bad[1, 1] = float("nan")
        with pytest.raises(ValueError, match="cost"):
            sparse_ot(a, b, bad, 2)
        with pytest.raises(ValueError, match="b"):
            sparse_ot(a, 2 * b, c, 2)
        neg = a.clone()
        neg[0] = -1.0
        with pytest.raises(ValueError, match="a"):
            sparse_ot(neg, b, c, 2)
        r = sparse_ot(3 * a, b, c, 2, normalize=True, max_iter=1000)
        torch.testing.assert_close(r.plan.sum(-2), b)


# ----------------------------------------------------------------------------- Newton solver


def _uniform_cloud(n, m, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g, dtype=D64)
    y = torch.randn(m, 2, generator=g, dtype=D64) + 1.0
    c = torch.cdist(x, y) ** 2
    return torch.full((n,), 1.0 / n, dtype=D64), torch.full((m,), 1.0 / m, dtype=D64), c / c.max()


@pytest.mark.parametrize("k", [6, 12])
def test_newton_matches_lbfgs(k):
    # k = 12 >= n: quadratic OT; k = 6 does not bind at the optimum (at most 5 non-zeros per
    # column), so the objective is smooth there and both solvers reach the same plan.
    a, b, c = uniform_problem(12, 10, seed=13)
    rn = sparse_ot(a, b, c, k=k, gamma=0.5, tol=1e-11, method="newton")
    rl = sparse_ot(a, b, c, k=k, gamma=0.5, max_iter=3000, method="lbfgs")
    assert rn.converged and int((rn.plan > 0).sum(-2).max()) < 6
    assert float((rn.plan.sum(-1) - a).abs().max()) <= 1e-11
    # L-BFGS stops at about 1e-7 marginal error here; Newton at 1e-11.
    torch.testing.assert_close(rn.plan, rl.plan, atol=1e-6, rtol=0)
    torch.testing.assert_close(rn.value, rl.value, atol=1e-10, rtol=0)
    torch.testing.assert_close(rn.f - rn.f.mean(), rl.f - rl.f.mean(), atol=1e-5, rtol=0)
    q = smooth_ot(a, b, c, 0.5, "l2", "semi_dual", tol=1e-11, method="newton")
    ql = smooth_ot(a, b, c, 0.5, "l2", "semi_dual", max_iter=3000, method="lbfgs")
    torch.testing.assert_close(q.plan, ql.plan, atol=1e-6, rtol=0)
    torch.testing.assert_close(q.plan, rn.plan, atol=1e-10, rtol=0)


def test_newton_is_default_and_fewer_iterations():
    a, b, c = _uniform_cloud(200, 200, seed=14)
    rn = sparse_ot(a, b, c, k=10, gamma=0.1)
    rl = sparse_ot(a, b, c, k=10, gamma=0.1, method="lbfgs")
    assert rn.converged
    assert float((rn.plan.sum(-1) - a).abs().sum()) < 1e-6
    assert rn.n_iter < rl.n_iter
    assert float((rn.plan - rl.plan).abs().max()) < 1e-4


def test_newton_large_problem_solved():
    # n > 512: the conjugate-gradient path; near-assignment regime (b_j gamma = 8e-5).
    a, b, c = _uniform_cloud(1200, 1200, seed=15)
    r = sparse_ot(a, b, c, k=10, gamma=0.1)
    assert r.converged and r.n_iter < 200
    assert float((r.plan.sum(-1) - a).abs().sum()) < 1e-6
    assert float((r.plan.sum(-2) - b).abs().sum()) < 1e-10
    assert int((r.plan > 0).sum(-2).max()) <= 10


@pytest.mark.parametrize("dense_max", [512, 0])  # dense Cholesky, and CG forced
def test_newton_batch_equals_loop(dense_max, monkeypatch):
    import inforeg.ot._smooth_core as core

    monkeypatch.setattr(core, "_NEWTON_DENSE_MAX_N", dense_max)
    a, b, c = uniform_problem(30, 25, seed=16, batch=(3,))
    r = sparse_ot(a, b, c, k=6, gamma=0.1, tol=1e-11)
    assert r.plan.shape == (3, 30, 25) and r.converged
    for i in range(3):
        s = sparse_ot(a[i], b[i], c[i], k=6, gamma=0.1, tol=1e-11)
        assert s.converged
        torch.testing.assert_close(r.plan[i], s.plan, atol=1e-9, rtol=0)
        torch.testing.assert_close(r.value[i], s.value, atol=1e-12, rtol=0)


def test_newton_envelope_gradient_and_float32():
    a, b, c = uniform_problem(10, 9, seed=17)
    c = c.clone().requires_grad_(True)
    r = sparse_ot(a, b, c, k=5, gamma=0.1, method="newton", tol=1e-12)
    assert r.converged
    (gc,) = torch.autograd.grad(r.value, c)
    torch.testing.assert_close(gc, r.plan, atol=1e-12, rtol=0)
    r32 = sparse_ot(a.float(), b.float(), c.detach().float(), k=5, gamma=0.1, tol=1e-6)
    assert r32.plan.dtype == torch.float32
    torch.testing.assert_close(r32.plan, r.plan.float(), atol=1e-4, rtol=0)


def test_newton_method_checks():
    a, b, c = uniform_problem(6, 5)
    with pytest.raises(ValueError, match="newton"):
        sparse_ot(a, b, c, 2, formulation="dual", method="newton")
    with pytest.raises(ValueError, match="method"):
        sparse_ot(a, b, c, 2, method="bfgs")  # type: ignore[arg-type]


def test_newton_kink_stall_hands_over_quickly():
    # k = 5 binds here and the semi-dual has top-k kinks at the optimum (no zero gradient):
    # Newton stops after a few steps that lose objective against its model, and L-BFGS
    # finishes from Newton's best point in a few iterations, at least as high as L-BFGS alone.
    a, b, c = _uniform_cloud(300, 300, seed=18)
    r = sparse_ot(a, b, c, k=5, gamma=0.1)
    rl = sparse_ot(a, b, c, k=5, gamma=0.1, method="lbfgs")
    assert not r.converged and int((r.plan > 0).sum(-2).max()) == 5
    assert r.n_iter < 60
    assert float(r.value) >= float(rl.value) - 1e-9
    assert float((r.plan.sum(-1) - a).abs().sum()) < 1e-3
    torch.testing.assert_close(r.plan.sum(-2), b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("width", [3, 40])  # the top-width selection falls back to a sort; fits
def test_alternating_start_is_exact_block_ascent(width):
    # Each half-round maximises the quadratic dual exactly in one block: after the row step,
    # sum_j (alpha_i + beta_j - c_ij)_+ = gamma a_i for every row, and the dual never decreases.
    import inforeg.ot._smooth_core as core

    a, b, c = uniform_problem(40, 30, seed=19)
    ct, gamma = c.T.contiguous(), 0.5

    def dual(alpha):
        beta = -core._threshold(alpha.unsqueeze(-2) - ct, gamma * b, -1, 40)
        s = (alpha.unsqueeze(-2) + beta.unsqueeze(-1) - ct).clamp_min(0.0)
        return float(a @ alpha + b @ beta - (s * s).sum() / (2 * gamma)), beta

    alpha = ct.amin(-2)
    values = [dual(alpha)[0]]
    for _ in range(3):
        alpha = core._alternate(alpha, a, b, ct, gamma, 1, width)
        values.append(dual(alpha)[0])
    assert all(v1 >= v0 - 1e-15 for v0, v1 in zip(values, values[1:], strict=False))
    assert values[-1] > values[0]
    # Row marginals of the dual plan after a full round hold (up to rounding) at its beta.
    beta_prev = -core._threshold(ct.amin(-2).unsqueeze(-2) - ct, gamma * b, -1, 40)
    alpha1 = -core._threshold(beta_prev.unsqueeze(-1) - ct, gamma * a, -2, width)
    rows = (alpha1.unsqueeze(-2) + beta_prev.unsqueeze(-1) - ct).clamp_min(0.0).sum(-2) / gamma
    torch.testing.assert_close(rows, a, atol=1e-13, rtol=0)
    torch.testing.assert_close(alpha1, core._alternate(ct.amin(-2), a, b, ct, gamma, 1, width))


@pytest.mark.parametrize("formulation", ["semi_dual", "dual"])
def test_zero_weights_finite_value_and_gradient(formulation):
    # Regression (issue 18): a zero in b divided by b_j gamma (0/0 in the semi-dual): NaN value.
    a, b, cost = zero_weight_problem()
    r = sparse_ot(a, b, cost, k=2, formulation=formulation)
    r.value.backward()
    assert torch.isfinite(r.value) and torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all()
    torch.testing.assert_close(a.grad, r.f)  # the documented envelope gradient
    assert float(r.plan[:, 1].abs().sum()) == 0.0


@pytest.mark.parametrize("bad", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("where", ["cost", "a", "b"])
def test_non_finite_input_is_bounded_and_rejected_under_full_checks(bad, where):
    # Regression (issue 18): an infinite cost gave an infinite cost range and a gamma
    # continuation schedule that grew until memory ran out.
    a, b, c = uniform_problem(5, 4, seed=0)
    args = {"a": a.clone(), "b": b.clone(), "cost": c.clone()}
    args[where].view(-1)[0] = bad
    for mode in ("shapes", "off"):
        with checks(mode), bounded(10.0, 1 << 30):
            sparse_ot(args["a"], args["b"], args["cost"], k=2)
            SparsityConstrainedOT(k=2)(args["a"], args["b"], args["cost"])
    with checks("full"), pytest.raises(ValueError, match=f"^{where}: expected finite"):
        sparse_ot(args["a"], args["b"], args["cost"], k=2)


def test_small_cpu_problems_solve_on_one_thread(monkeypatch):
    # Newton (like L-BFGS) runs with one intra-op thread on small CPU problems and restores the
    # caller's setting: on a loaded 2-core machine two threads made it 10-20x slower.
    import inforeg.ot._smooth_core as core

    seen: list[int] = []
    newton = core._newton_semi_dual

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return newton(*args, **kwargs)

    monkeypatch.setattr(core, "_newton_semi_dual", spy)
    a, b, c = uniform_problem(12, 10, seed=20)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        sparse_ot(a, b, c, k=3, gamma=0.1)
        assert seen == [1] and torch.get_num_threads() == 2
        monkeypatch.setattr(core, "_SINGLE_THREAD_ELEMENTS", 0)  # "large": the caller's threads
        sparse_ot(a, b, c, k=3, gamma=0.1)
        assert seen == [1, 2]
    finally:
        torch.set_num_threads(before)
