"""The sparse-ot-experts routing problem: what holds by construction is tested here, not claimed.

Capacity and sparsity of the sparsity-constrained plan are properties of its formulation (at most
k non-zeros per column), so they are unit tests on the experiment's own routing problems; the
feasibility rounding and the two routers of the tiny MoE are checked against their definitions.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("scipy")

from inforeg.lab.experiments.sparse_ot_experts import (  # noqa: E402
    CAPACITY,
    EXPERTS,
    N_EXPERTS,
    N_TOKENS,
    TOKENS,
    emd_plan,
    round_to_marginals,
    route,
    routing_problem,
)
from inforeg.ot import smooth_ot, sparse_ot  # noqa: E402


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("gamma", [1.0, 10.0, 100.0])
def test_capacity_bounds_tokens_per_expert_unlike_quadratic_ot(seed, gamma):
    a, b, cost = routing_problem(seed)
    k = N_TOKENS // N_EXPERTS
    sparse = sparse_ot(a, b, cost, k=k, gamma=gamma, max_iter=2000).plan
    per_expert = (sparse > 1e-12).sum(0)
    assert int(per_expert.max()) <= k
    assert int((sparse > 1e-12).sum()) <= k * N_EXPERTS
    # Columns hold exactly; the quadratic plan at large gamma exceeds the capacity.
    torch.testing.assert_close(sparse.sum(0), b, atol=1e-9, rtol=0)
    if gamma >= 10.0:
        quad = smooth_ot(a, b, cost, gamma, "l2", "semi_dual", max_iter=2000).plan
        assert int((quad > 1e-12).sum(0).max()) > k


def test_round_to_marginals_is_feasible_and_keeps_feasible_plans():
    g = torch.Generator().manual_seed(0)
    a = torch.softmax(torch.randn(7, generator=g, dtype=torch.float64), 0)
    b = torch.softmax(torch.randn(5, generator=g, dtype=torch.float64), 0)
    plan = torch.rand(7, 5, generator=g, dtype=torch.float64) / 20
    rounded = round_to_marginals(plan, a, b)
    torch.testing.assert_close(rounded.sum(1), a, atol=1e-12, rtol=0)
    torch.testing.assert_close(rounded.sum(0), b, atol=1e-12, rtol=0)
    assert bool((rounded >= 0).all())
    feasible = torch.outer(a, b)
    torch.testing.assert_close(round_to_marginals(feasible, a, b), feasible)


def test_emd_plan_is_an_optimal_assignment():
    a, b, cost = routing_problem(0)
    plan = emd_plan(cost)
    torch.testing.assert_close(plan.sum(1), a)
    torch.testing.assert_close(plan.sum(0), b)
    # No feasible plan from quadratic OT at small gamma (near EMD) is cheaper.
    near = round_to_marginals(
        smooth_ot(a, b, cost, 1e-3, "l2", "semi_dual", max_iter=2000).plan, a, b
    )
    assert float((plan * cost).sum()) <= float((near * cost).sum()) + 1e-9


def test_top1_routing_respects_capacity_in_batch_order():
    probs = torch.zeros(TOKENS, EXPERTS)
    probs[:, 0] = 1.0  # every token prefers expert 0
    assign = route(probs, "top1")
    assert int(assign[:, 0].sum()) == CAPACITY
    assert bool((assign[:CAPACITY, 0] == 1).all()) and int(assign[CAPACITY:].sum()) == 0


def test_sparse_ot_routing_balances_a_collapsed_router():
    g = torch.Generator().manual_seed(0)
    probs = torch.softmax(
        torch.randn(TOKENS, EXPERTS, generator=g) + torch.tensor([3.0, 0, 0, 0]), -1
    )
    assign = route(probs, "ot")
    assert int(assign.sum(0).max()) <= CAPACITY
    # Balanced masses: nearly every token gets an expert although most prefer expert 0.
    assert float((assign.sum(1) == 0).float().mean()) < 0.2
    assert float((route(probs, "top1").sum(1) == 0).float().mean()) > 0.3
