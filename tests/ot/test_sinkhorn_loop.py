"""Tests of inforeg.ot._sinkhorn_loop: the one Sinkhorn loop and the one epsilon schedule."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.ot import epsilon_schedule
from inforeg.ot._sinkhorn_loop import MatrixSoftmin, sinkhorn_loop
from tests._helpers import assert_close, bounded
from tests.ot._problems import D64, random_problem


@pytest.mark.parametrize(
    "p, diameter, blur, scaling", [(2, 3.0, 0.05, 0.5), (1, 10.0, 0.01, 0.9), (2, 0.1, 0.1, 0.5)]
)
def test_epsilon_schedule_matches_geomloss(p, diameter, blur, scaling):
    legacy = pytest.importorskip("geomloss._legacy.sinkhorn_divergence")
    ref = [float(e) for e in legacy.epsilon_schedule(p, diameter, blur, scaling)]
    ours = epsilon_schedule(p, diameter, blur, scaling)
    assert len(ours) == len(ref)
    for e, r in zip(ours, ref, strict=True):
        assert math.isclose(e, r, rel_tol=1e-12)


def test_epsilon_schedule_closed_form():
    # diam^p first and again, then divided by scaling^p while above blur^p, then blur^p.
    s = epsilon_schedule(2, 2.0, 0.25, 0.5)
    expected = [4.0, 4.0, 1.0, 0.25, 0.0625]
    assert len(s) == len(expected)
    assert all(math.isclose(e, r, rel_tol=1e-12) for e, r in zip(s, expected, strict=True))


def test_matrix_softmin_sides_and_kernel_cache():
    _, _, c = random_problem(6, 4, seed=1, batch=(2,))
    sm = MatrixSoftmin(c)
    h_y = torch.randn(2, 4, dtype=D64, generator=torch.Generator().manual_seed(0))
    h_x = torch.randn(2, 6, dtype=D64, generator=torch.Generator().manual_seed(1))
    eps = 0.7
    ref_xy = -eps * torch.logsumexp(h_y.unsqueeze(-2) - c / eps, -1)
    ref_yx = -eps * torch.logsumexp(h_x.unsqueeze(-2) - c.transpose(-2, -1) / eps, -1)
    assert_close(sm(eps, "xy", h_y), ref_xy, atol=1e-13, rtol=0)
    assert_close(sm(eps, "yx", h_x), ref_yx, atol=1e-13, rtol=0)
    k = sm.kernel(eps)
    assert sm.kernel(eps) is k and sm.kernel(0.5) is not k  # one kernel per temperature
    assert_close(sm.kernel(0.5), -c / 0.5)


@pytest.mark.parametrize("symmetric", [False, True])
def test_both_update_orders_reach_the_sinkhorn_fixed_point(symmetric):
    # Alternating (POT) and symmetric (geomloss) updates: the same plan, with marginals a and b.
    a, b, c = random_problem(9, 7, seed=2)
    eps = 0.3
    sm = MatrixSoftmin(c)
    la, lb = torch.log(a), torch.log(b)
    r = sinkhorn_loop(sm, la, lb, [], eps, symmetric=symmetric, tol=1e-13, max_iter=20000)
    assert r.converged
    plan = torch.exp(sm.log_plan(eps, la, lb, *r.potentials[:2]))
    assert_close(plan.sum(-1), a, atol=1e-11, rtol=0)
    assert_close(plan.sum(-2), b, atol=1e-11, rtol=0)
    other = sinkhorn_loop(sm, la, lb, [], eps, symmetric=not symmetric, tol=1e-13, max_iter=20000)
    other_plan = torch.exp(sm.log_plan(eps, la, lb, *other.potentials[:2]))
    assert_close(plan, other_plan, atol=1e-11, rtol=0)


def test_debiased_potentials_solve_the_self_transport_problems():
    # f_aa is the (symmetric) optimal potential of OT(a, a): its plan has marginals a and a.
    a, _, _ = random_problem(8, 5, seed=3)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(8, 2, generator=g, dtype=D64)
    y = torch.randn(5, 2, generator=g, dtype=D64)
    costs = {"xy": torch.cdist(x, y) ** 2, "xx": torch.cdist(x, x) ** 2}
    costs["yx"], costs["yy"] = costs["xy"].T.contiguous(), torch.cdist(y, y) ** 2
    b = torch.full((5,), 0.2, dtype=D64)
    eps = 0.5

    def softmin(e, side, h):
        return -e * torch.logsumexp(h.unsqueeze(-2) - costs[side] / e, -1)

    la, lb = torch.log(a), torch.log(b)
    r = sinkhorn_loop(
        softmin, la, lb, [], eps, symmetric=True, debias=True, tol=1e-14, max_iter=9000
    )
    f_aa = r.potentials.f_aa
    assert r.converged and f_aa is not None and r.potentials.g_bb is not None
    plan_aa = torch.exp(
        la[:, None] + la[None, :] + (f_aa[:, None] + f_aa[None, :] - costs["xx"]) / eps
    )
    assert_close(plan_aa.sum(-1), a, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="debias"):
        sinkhorn_loop(softmin, la, lb, [], eps, debias=True, tol=1e-9, max_iter=10)


def test_schedule_counting_and_no_tol_runs_the_schedule_only():
    a, b, c = random_problem(6, 5, seed=4)
    sm = MatrixSoftmin(c)
    la, lb = torch.log(a), torch.log(b)
    r = sinkhorn_loop(sm, la, lb, [2.0, 1.0, 0.5], 0.5)
    assert (r.n_iter, r.converged) == (3, False)
    r = sinkhorn_loop(sm, la, lb, [2.0, 1.0, 0.5], 0.5, max_iter=2)
    assert r.n_iter == 2
    # A constant schedule of n temperatures is n plain updates: the same as n updates at tol=0.
    fixed = sinkhorn_loop(sm, la, lb, [0.5] * 12, 0.5)
    run = sinkhorn_loop(sm, la, lb, [], 0.5, tol=0.0, max_iter=12)
    assert run.n_iter == 12 and not run.converged
    assert torch.equal(fixed.potentials.f, run.potentials.f)
    assert torch.equal(fixed.potentials.g, run.potentials.g)


def test_alternating_stop_keeps_the_g_update_last():
    # At convergence the pending f update is dropped: the column marginals hold to rounding.
    a, b, c = random_problem(20, 15, seed=5)
    sm = MatrixSoftmin(c)
    la, lb = torch.log(a), torch.log(b)
    eps = 0.05 * float(c.max())
    r = sinkhorn_loop(sm, la, lb, [], eps, tol=1e-5, max_iter=5000, check_every=7)
    # Checked within every 7th update, before its g half: converged after 7k - 1 full updates.
    assert r.converged and (r.n_iter + 1) % 7 == 0
    plan = torch.exp(sm.log_plan(eps, la, lb, *r.potentials[:2]))
    assert float((plan.sum(-2) - b).abs().max()) < 1e-15
    assert 1e-12 < float((plan.sum(-1) - a).abs().sum()) <= 1e-5


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((2, math.inf, 0.1, 0.5), "diameter"),
        ((2, math.nan, 0.1, 0.5), "diameter"),
        ((2, 1.0, 0.0, 0.5), "blur"),
        ((2, 1.0, 0.1, 1.0), "scaling"),
        ((2, 1.0, 0.1, math.nan), "scaling"),
        ((2, 1e300, 1e-300, 0.9999), "scaling: the schedule"),
    ],
)
def test_epsilon_schedule_is_bounded(args, match):
    # Regression (issue 18): an infinite diameter (or scaling >= 1) looped without end.
    with bounded(5.0), pytest.raises(ValueError, match=match):
        epsilon_schedule(*args)
