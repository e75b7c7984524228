"""Sparsity-constrained OT for token-to-expert routing: transport cost, and a tiny MoE vs top-1.

(a) Routing cost. Per seed 64 tokens with unbalanced expert preferences, 8 experts of equal
capacity (uniform marginals), costs normalised to [0, 1]. At gamma in {10, 100}, where quadratic
OT is dense, the sparse plan (k = 8 tokens per expert, the tightest feasible capacity) and the
quadratic plan are rounded to exact marginals (Altschuler et al., 2017) and costed against the
exact EMD (Hungarian method on experts duplicated into 8 slots). Nothing is learned or tuned here.

(b) A tiny mixture of experts on 8x8 digits: each image is a token; a batch of 32 tokens is routed
to 4 experts of capacity 8 (capacity factor 1). Arms: top-1 routing with capacity (tokens beyond
an expert's capacity are dropped and pass through the residual only), top-1 with the Switch
load-balancing loss, and sparsity-constrained OT routing (k = capacity, cost = 1 - router
probability, uniform marginals; the plan's support is the assignment). The gate is the router's
softmax probability in every arm, so the router learns through the gates alike.

Protocol 2 for (b): per seed a stratified train/validation/test split of digits; every routed arm
has the same 2-point learning-rate grid and picks the grid point and epoch with the best
validation accuracy.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import minibatches, seed_everything

N_TOKENS, N_EXPERTS = 64, 8
GAMMAS = (10.0, 100.0)
EMD, QUAD, SPARSE = "EMD", "quadratic OT", "sparse OT (k=8)"

TOKENS, EXPERTS = 32, 4
CAPACITY = TOKENS // EXPERTS
EPOCHS, QUICK_EPOCHS = 10, 1
TOP1, TOP1_LB, OT_ROUTE = "MoE top-1", "MoE top-1 + balancing loss", "MoE sparse-OT routing"
GRIDS: dict[str, dict[str, list[Any]]] = {
    TOP1: {"lr": [3e-3, 1e-2]},
    TOP1_LB: {"lr": [3e-3, 1e-2]},
    OT_ROUTE: {"lr": [3e-3, 1e-2]},
}
BALANCE_WEIGHT = 0.01  # the Switch Transformer's alpha


# ---------------------------------------------------------------------------------------------
# (a) routing cost of rounded plans
# ---------------------------------------------------------------------------------------------


def routing_problem(seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """Token and expert masses (uniform) and a [0, 1] cost with unbalanced expert preferences."""
    g = torch.Generator().manual_seed(seed)
    experts = torch.randn(N_EXPERTS, 16, generator=g, dtype=torch.float64)
    popularity = torch.tensor([6.0, 4.0, 2.0, 1.0, 1.0, 0.5, 0.5, 0.5], dtype=torch.float64)
    pref = torch.multinomial(popularity, N_TOKENS, replacement=True, generator=g)
    tokens = experts[pref] + 0.8 * torch.randn(N_TOKENS, 16, generator=g, dtype=torch.float64)
    cost = torch.cdist(tokens, experts) ** 2
    a = torch.full((N_TOKENS,), 1.0 / N_TOKENS, dtype=torch.float64)
    b = torch.full((N_EXPERTS,), 1.0 / N_EXPERTS, dtype=torch.float64)
    return a, b, cost / cost.max()


def round_to_marginals(plan: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """Altschuler, Weed & Rigollet (2017), Alg. 2: the nearest-feasible rounding of a plan.

    Scale rows down to at most ``a``, columns down to at most ``b``, then add the remaining mass
    as an outer product; the result has marginals exactly ``a`` and ``b``.
    """
    p = plan * (a / plan.sum(1).clamp_min(1e-300)).clamp(max=1.0)[:, None]
    p = p * (b / p.sum(0).clamp_min(1e-300)).clamp(max=1.0)[None, :]
    err_a, err_b = a - p.sum(1), b - p.sum(0)
    return p + torch.outer(err_a, err_b) / err_a.sum().clamp_min(1e-300)


def emd_plan(cost: Tensor) -> Tensor:
    """Exact OT between uniform masses: an assignment of tokens to experts duplicated into slots."""
    from scipy.optimize import linear_sum_assignment

    slots = N_TOKENS // N_EXPERTS
    rows, cols = linear_sum_assignment(cost.repeat_interleave(slots, dim=1).numpy())
    plan = torch.zeros_like(cost)
    plan[torch.from_numpy(rows), torch.from_numpy(cols) // slots] = 1.0 / N_TOKENS
    return plan


def _cost_part(seed: int) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    from inforeg.ot import smooth_ot, sparse_ot

    a, b, cost = routing_problem(seed)
    emd_cost = float((emd_plan(cost) * cost).sum())
    metrics: dict[str, dict[str, float]] = {EMD: {}, QUAD: {}, SPARSE: {}}
    regime: dict[str, float] = {}
    for gamma in GAMMAS:
        plans = {
            QUAD: smooth_ot(a, b, cost, gamma, "l2", "semi_dual", max_iter=2000).plan,
            SPARSE: sparse_ot(a, b, cost, k=N_TOKENS // N_EXPERTS, gamma=gamma, max_iter=2000).plan,
        }
        metrics[EMD][f"rounded cost gap to EMD @γ={gamma:g}"] = 0.0
        metrics[EMD][f"nonzeros @γ={gamma:g}"] = float(N_TOKENS)
        for arm, plan in plans.items():
            rounded = round_to_marginals(plan, a, b)
            metrics[arm][f"rounded cost gap to EMD @γ={gamma:g}"] = (
                float((rounded * cost).sum()) - emd_cost
            )
            metrics[arm][f"nonzeros @γ={gamma:g}"] = float((plan > 1e-12).sum())
            metrics[arm][f"row marginal error @γ={gamma:g}"] = float((plan.sum(1) - a).abs().sum())
        metrics[EMD][f"row marginal error @γ={gamma:g}"] = 0.0
        regime[f"quadratic OT nonzeros @γ={gamma:g}"] = metrics[QUAD][f"nonzeros @γ={gamma:g}"]
    return metrics, regime


# ---------------------------------------------------------------------------------------------
# (b) a tiny mixture of experts
# ---------------------------------------------------------------------------------------------


class TinyMoE(nn.Module):
    """Embed 64 -> 32, one MoE layer (4 expert MLPs, residual), linear head to 10 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(64, 32), nn.ReLU())
        self.router = nn.Linear(32, EXPERTS)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 32)) for _ in range(EXPERTS)
        )
        self.head = nn.Linear(32, 10)

    def forward(self, x: Tensor, routing: str) -> tuple[Tensor, Tensor, Tensor]:
        """Logits, the (tokens, experts) 0/1 assignment, and the router probabilities."""
        h = self.embed(x)
        probs = torch.softmax(self.router(h), -1)
        assign = route(probs.detach(), routing)
        out = h
        for j, expert in enumerate(self.experts):
            out = out + (assign[:, j] * probs[:, j])[:, None] * expert(h)
        return self.head(out), assign, probs


def route(probs: Tensor, routing: str) -> Tensor:
    """0/1 assignment of tokens to experts with at most ``CAPACITY`` tokens per expert."""
    n = probs.shape[0]
    capacity = max(1, (CAPACITY * n) // TOKENS)
    if routing == "top1":
        # Switch routing: each token goes to its top expert, in batch order, while there is room.
        top = probs.argmax(-1)
        onehot = F.one_hot(top, EXPERTS).to(probs.dtype)
        position = onehot.cumsum(0) * onehot
        return onehot * (position <= capacity).to(probs.dtype)
    from inforeg.ot import sparse_ot

    a = torch.full((n,), 1.0 / n, dtype=probs.dtype)
    b = torch.full((EXPERTS,), 1.0 / EXPERTS, dtype=probs.dtype)
    plan = sparse_ot(a, b, 1.0 - probs, k=capacity, gamma=1.0, max_iter=20).plan
    return (plan > 1e-12).to(probs.dtype)


def _fit(arm: str, point: dict[str, Any], data: Any, seed: int, epochs: int) -> Selected:
    hp = {"balance_weight": BALANCE_WEIGHT if arm == TOP1_LB else 0.0, **point}
    routing = "ot" if arm == OT_ROUTE else "top1"
    g = seed_everything(seed)
    model = TinyMoE()
    opt = torch.optim.Adam(model.parameters(), lr=hp["lr"])
    best = BestOnValidation(higher_is_better=True)

    def evaluate(x: Tensor, y: Tensor) -> tuple[float, float]:
        hits, dropped = 0.0, 0.0
        with torch.no_grad():
            for i in range(0, len(x), TOKENS):
                logits, assign, _ = model(x[i : i + TOKENS], routing)
                hits += float((logits.argmax(-1) == y[i : i + TOKENS]).sum())
                dropped += float((assign.sum(-1) == 0).sum())
        return hits / len(x), dropped / len(x)

    for epoch in range(epochs):
        for idx in minibatches(len(data.x_train), TOKENS, g):
            if len(idx) < TOKENS:
                continue
            logits, assign, probs = model(data.x_train[idx], routing)
            loss = F.cross_entropy(logits, data.y_train[idx])
            if hp["balance_weight"]:
                # Switch Transformer: E * sum_j (fraction of tokens routed to j) (mean prob of j).
                frac = F.one_hot(probs.argmax(-1), EXPERTS).float().mean(0)
                loss = loss + hp["balance_weight"] * EXPERTS * (frac * probs.mean(0)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val_acc, val_drop = evaluate(data.x_val, data.y_val)

        def test_metrics(val_drop: float = val_drop) -> dict[str, float]:
            acc, drop = evaluate(data.x_test, data.y_test)
            return {
                "test accuracy": acc,
                "test tokens dropped": drop,
                "val tokens dropped": val_drop,
            }

        best.update(epoch, val_acc, test_metrics)
    return best.result()


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.lab.datasets import load_digits_split

    metrics, regime = _cost_part(seed)
    data = load_digits_split(test_size=0.3, split_seed=seed, val_size=0.15)
    scale = data.x_train.max()
    data = type(data)(
        data.x_train / scale, data.y_train, data.x_test / scale, data.y_test,
        data.x_val / scale, data.y_val,
    )  # fmt: skip
    # --quick: the first grid point of every arm.
    grids = {arm: {k: v[:1] for k, v in g.items()} for arm, g in GRIDS.items()} if quick else GRIDS
    epochs = QUICK_EPOCHS if quick else EPOCHS
    tuned = tune_arms(grids, functools.partial(_fit, data=data, seed=seed, epochs=epochs))
    metrics.update(tuned.metrics())
    chosen: dict[str, dict[str, Any]] = {EMD: {}, QUAD: {}, SPARSE: {}, **tuned.points("epoch")}
    regime["top-1 tokens dropped (validation)"] = metrics[TOP1]["val tokens dropped"]
    regime["top-1 + balancing tokens dropped (validation)"] = metrics[TOP1_LB]["val tokens dropped"]
    # Every arm carries every metric (the report tabulates them side by side); NaN = not measured.
    names = list(dict.fromkeys(m for arm in metrics.values() for m in arm))
    metrics = {arm: {m: vals.get(m, float("nan")) for m in names} for arm, vals in metrics.items()}
    return SeedResult(metrics, tuning=chosen, regime=regime, splits=data.sizes)


def _cost_claim(gamma: float) -> Claim:
    return Claim(
        f"rounded cost gap to EMD @γ={gamma:g}",
        SPARSE,
        QUAD,
        False,
        f"at γ = {gamma:g} the capacity-constrained plan (rounded to feasibility) costs less, "
        "closer to EMD, than the quadratic-OT plan",
        regime=(f"quadratic OT dense at γ={gamma:g}",),
        paper=(
            "Liu, Puigcerver & Blondel (ICLR 2023), Sec. 3: the sparsity constraint interpolates "
            "between unregularised OT (k = 1) and quadratically regularised OT (k >= n), giving "
            "plans with at most k non-zeros per column; they plot plans and costs, no single "
            "number. Analogue: k = 8 (capacity n/m) vs k = n at equal γ, costs of plans rounded "
            "to exact marginals."
        ),
    )


def _moe_claim(baseline: str, text: str) -> Claim:
    return Claim(
        "test accuracy",
        OT_ROUTE,
        baseline,
        True,
        text,
        regime=("top-1 routing drops tokens",),
        paper=(
            "Liu et al. (ICLR 2023) motivate sparsity-constrained OT by sparse mixtures of "
            "experts (token-to-expert matching with at most k tokens per expert, as in V-MoE) "
            "and apply it to V-MoE routing against top-k routing; the spec records no verified "
            "number. Analogue: a one-layer MoE on digits, 4 experts, capacity factor 1."
        ),
    )


EXPERIMENT = Experiment(
    name="sparse-ot-experts",
    summary=(
        "Sparsity-constrained OT for routing tokens to experts of fixed capacity: (a) the cost "
        "of feasibility-rounded plans vs quadratic OT and EMD where quadratic OT is dense; "
        "(b) a tiny mixture of experts on digits routed by sparse OT vs top-1 routing with "
        "capacity (with and without the Switch balancing loss)."
    ),
    setup=(
        "(a) Per seed: 8 expert embeddings ~ N(0, I_16); 64 token embeddings = a preferred "
        "expert (popularity 6:4:2:1:1:.5:.5:.5) + 0.8 N(0, I); cost = squared distance / max; "
        "uniform masses. Sparse OT (k = 8) and quadratic OT (smooth_ot 'l2'), semi-dual, "
        "max_iter 2000, at γ = 10 and 100; both plans rounded to exact marginals (Altschuler et "
        "al. 2017, Alg. 2) before costing; EMD exact (Hungarian, scipy). The sparse plan's raw "
        "row marginals are approximate (error reported). The capacity bound (at most k tokens "
        "per expert) and the sparsity (at most k m non-zeros) hold by construction and are unit "
        "tests (tests/lab/test_sparse_ot_experts.py), not claims. (b) Digits / 16 "
        "(stratified split per seed: train / validation / test = 55 / 15 / 30 %). Model: Linear "
        "64-32 + ReLU, router Linear 32-4 (softmax), 4 experts 32-64-32 added residually with "
        "gate = router probability, linear head. Batches of 32 tokens, capacity 8 per expert "
        "(factor 1.0) in training and evaluation. Top-1: Switch routing in batch order, "
        "overflow dropped (residual only). Balancing loss: Switch aux loss alpha E sum_j f_j P_j, "
        "alpha = 0.01 (Switch's value). "
        "Sparse-OT routing: sparse_ot(uniform, uniform, 1 - probs, k = 8, γ = 1, max_iter 20), "
        "tokens routed to every expert in the plan's support (at most 32 assignments in all). "
        "Adam, 10 epochs (1 and the first grid point with --quick). Changed after the first full "
        "run: the balancing-loss arm tuned its loss weight {0.01, 0.1} at a fixed lr 3e-3 while "
        "the other arms chose lr 1e-2 in every seed, so its deficit (sparse OT +0.048 [0.035, "
        "0.060]) was mostly the learning rate; it now tunes the same lr grid at alpha 0.01. "
        "Findings (full run, 10 seeds): rounded costs are 0.003 above EMD for sparse OT vs "
        "0.012 (γ 10) and 0.119 (γ 100) for quadratic OT (171 / 479 non-zeros), 10/10 seeds; "
        "the sparse plans' raw row errors are 0.04 / 0.03 (L1). In the MoE, top-1 drops 45% of "
        "test tokens (balancing loss: 32%, sparse OT: 6%), yet test accuracy is 0.934 / 0.931 vs "
        "0.924 for sparse-OT routing (-0.011 [-0.022, +0.001] and -0.007 [-0.020, +0.006], "
        "inconclusive): the residual path carries dropped tokens on digits."
    ),
    claims=(
        _cost_claim(10.0),
        _cost_claim(100.0),
        _moe_claim(TOP1, "an MoE routed by sparse OT is more accurate than top-1 with capacity"),
        _moe_claim(
            TOP1_LB,
            "an MoE routed by sparse OT is more accurate than top-1 with the Switch balancing loss",
        ),
    ),
    regime_checks=(
        *(
            RegimeCheck(
                f"quadratic OT dense at γ={gamma:g}",
                f"quadratic OT nonzeros @γ={gamma:g}",
                "non-zeros of the quadratic plan (EMD has 64; the sparse plan at most 64): "
                "quadratic OT must be dense for the capacity constraint to matter",
                128.0,
            )
            for gamma in GAMMAS
        ),
        RegimeCheck(
            "top-1 routing drops tokens",
            "top-1 tokens dropped (validation)",
            "fraction of validation tokens that top-1 routing with capacity drops at its "
            "selected point (the imbalance balanced routing fixes)",
            0.05,
        ),
    ),
    tuning={EMD: {}, QUAD: {}, SPARSE: {}, **GRIDS},
    selection=(
        "(a) none (fixed γ, nothing learned); (b) per seed and arm: the grid point and epoch "
        "with the best validation accuracy"
    ),
    run_seed=run_seed,
    requires=("sklearn", "scipy"),
)
