"""MAID vs fixed-accuracy hypergradient descent: per-feature ridge on diabetes (protocol 2).

Salehi et al. (SIMODS, arXiv 2308.10098) report that MAID reaches a given upper-level accuracy
with fewer lower-level iterations than methods that compute hypergradients to a fixed accuracy
with a fixed step (HOAG-like), and than MAID itself with the accuracy held fixed.

Problem: lower ``g(x, theta) = ||A_tr x - b_tr||^2 / (2 n_tr) + sum_j (e^theta_j + lam0) x_j^2 / 2``,
upper ``f(x) = ||A_val x - b_val||^2 / (2 n_val)``, on scikit-learn's diabetes data with its 10
features and their degree-2 products (64 features; sex^2 is dropped, it is affine in sex). The
spec's set-up (the 10 raw features, lam0 = 0) was tried first: its per-feature optimum sends the
hyper-parameters to -infinity on a flat upper objective that any large fixed step reaches in a
few dozen lower-level iterations, so the hypergradient accuracy has nothing to save (the regime
MAID targets is absent). With 64 features the lower problem is ill-conditioned; the floor
lam0 = 0.1 keeps its strong-convexity constant known (mu >= 0.1), which MAID needs.

Lower-level solver: gradient descent with step 1/L(theta) stopped on ||grad g|| / mu(theta) <= eps
(a certificate), counted per gradient evaluation; CG iterations are counted too. Cost = lower-level
gradient evaluations + CG iterations (MAID's error-bound probes included). The reference optimum
F* comes from exact solves and L-BFGS with exact hypergradients (theta clamped to [-20, 10]).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import Selected, tune_arms

LAM0 = 0.1
TARGET = 0.01  # within 1 % of F*
MAX_OUTER = 300  # also stops a MAID run whose steps are all rejected
BUDGET, QUICK_BUDGET = 200_000, 10_000
GRIDS: dict[str, dict[str, list[float]]] = {
    "MAID": {"beta0": [10.0, 100.0, 1000.0]},
    "fixed accuracy, fixed step": {"step": [10.0, 100.0, 1000.0]},
    "MAID fixed eps": {"eps": [1e-4, 1e-5, 1e-6]},
}
D = torch.float64


def _features() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    xs = (x - x.mean(0)) / x.std(0)
    iu = np.triu_indices(10)
    products = (xs[:, :, None] * xs[:, None, :])[:, iu[0], iu[1]]
    return np.concatenate([xs, np.delete(products, 10, axis=1)], 1), y  # column 10: sex^2


class Problem:
    """One seed's split and the exact quantities of the bilevel problem."""

    def __init__(self, seed: int) -> None:
        x, y = _features()
        perm = np.random.default_rng(seed).permutation(len(y))
        n_test = len(y) // 5
        test, rest = perm[:n_test], perm[n_test:]
        n_train = int(0.6 * len(rest))
        train, val = rest[:n_train], rest[n_train:]
        mx, sx, my, sy = x[train].mean(0), x[train].std(0), y[train].mean(), y[train].std()

        def part(i: np.ndarray) -> tuple[Tensor, Tensor]:
            return torch.tensor((x[i] - mx) / sx), torch.tensor((y[i] - my) / sy)

        (self.a_tr, self.b_tr), (self.a_val, self.b_val), (self.a_te, self.b_te) = (
            part(train),
            part(val),
            part(test),
        )
        self.sizes = {"train": len(train), "validation": len(val), "test": len(test)}
        self.dim = self.a_tr.shape[1]
        self.hess = self.a_tr.T @ self.a_tr / len(train)
        self.rhs = self.a_tr.T @ self.b_tr / len(train)
        eig = torch.linalg.eigvalsh(self.hess)
        self.eig_min, self.eig_max = float(eig[0]), float(eig[-1])
        self.lipschitz_upper = float(
            torch.linalg.eigvalsh(self.a_val.T @ self.a_val / len(val))[-1]
        )
        self.f_star = self._reference()

    def lower(self, x: Tensor, theta: Tensor) -> Tensor:
        fit = ((self.a_tr @ x - self.b_tr) ** 2).sum() / (2 * self.sizes["train"])
        return fit + 0.5 * ((theta.exp() + LAM0) * x**2).sum()

    def upper(self, x: Tensor) -> Tensor:
        return ((self.a_val @ x - self.b_val) ** 2).sum() / (2 * self.sizes["validation"])

    def x_hat(self, theta: Tensor) -> Tensor:
        return torch.linalg.solve(self.hess + torch.diag(theta.exp() + LAM0), self.rhs)

    def exact_upper(self, theta: Tensor) -> float:
        return float(self.upper(self.x_hat(theta)))

    def test_mse(self, theta: Tensor) -> float:
        return float(((self.a_te @ self.x_hat(theta) - self.b_te) ** 2).mean())

    def _reference(self) -> float:
        theta = torch.zeros(self.dim, dtype=D, requires_grad=True)
        opt = torch.optim.LBFGS(
            [theta],
            max_iter=1000,
            tolerance_grad=1e-12,
            tolerance_change=1e-14,
            line_search_fn="strong_wolfe",
        )

        def closure() -> Tensor:
            opt.zero_grad()
            value = self.upper(self.x_hat(theta.clamp(-20.0, 10.0)))
            value.backward()
            return value

        opt.step(closure)
        return self.exact_upper(theta.detach().clamp(-20.0, 10.0))


class GradientDescent:
    """Lower solver: step 1/L(theta), stop at ||grad g|| / mu(theta) <= eps (numpy inner loop:
    the cost is counted in gradient evaluations, the loop just runs them fast)."""

    def __init__(self, problem: Problem) -> None:
        self.p = problem
        self.hess, self.rhs = problem.hess.numpy(), problem.rhs.numpy()
        self.iterations = 0

    def __call__(self, theta: Tensor, x_init: Tensor, eps: float) -> Tensor:
        reg = theta.exp().numpy() + LAM0
        mu, big_l = self.p.eig_min + reg.min(), self.p.eig_max + reg.max()
        x = x_init.numpy().copy()
        for _ in range(10**6):
            g = self.hess @ x - self.rhs + reg * x
            self.iterations += 1
            if math.sqrt(g @ g) / mu <= eps:
                break
            x -= g / big_l
        return torch.from_numpy(x)


def _summary(
    p: Problem, trace: list[tuple[int, float]], theta: Tensor, budget: int, outer: int
) -> Selected:
    reached = next((c for c, f in trace if f <= (1 + TARGET) * p.f_star), None)
    cost = float(reached if reached is not None else budget)
    final_gap = (trace[-1][1] - p.f_star) / p.f_star if trace else math.inf
    metrics = {
        "cost to 1%": cost,
        "reached 1%": float(reached is not None),
        "final relative gap": final_gap,
        "test MSE": p.test_mse(theta),
    }
    # selection on the upper (validation) objective: cheapest to 1 %, then lowest final gap
    per_step = (trace[-1][0] / outer) if trace else 0.0
    return Selected(cost + min(final_gap, 0.999), metrics, extras={"cost per step": per_step})


def _run_fixed(p: Problem, step: float, budget: int, max_outer: int) -> Selected:
    from inforeg.optim import inexact_hypergradient

    solver, theta = GradientDescent(p), torch.zeros(p.dim, dtype=D)
    x, cg, trace = torch.zeros(p.dim, dtype=D), 0, []
    for _ in range(max_outer * 10):
        if solver.iterations + cg >= budget:
            break
        x = solver(theta, x, 1e-6)
        hg = inexact_hypergradient(p.lower, p.upper, x, theta, tol=1e-6)
        cg += hg.cg_iters
        theta = theta - step * hg.grad
        trace.append((solver.iterations + cg, p.exact_upper(theta)))
    return _summary(p, trace, theta, budget, len(trace))


def _run_maid(
    p: Problem, point: dict[str, Any], fixed_eps: bool, budget: int, max_outer: int, seed: int
) -> Selected:
    from inforeg.optim import MAID

    solver, theta = GradientDescent(p), torch.zeros(p.dim, dtype=D)
    eps = point.get("eps", 0.1)
    x0 = solver(theta, torch.zeros(p.dim, dtype=D), eps)
    maid = MAID(
        p.lower,
        p.upper,
        solver,
        theta,
        x0,
        mu=p.eig_min + LAM0,
        lipschitz_upper=p.lipschitz_upper,
        eps=eps,
        delta=eps,
        beta=point.get("beta0", 0.1),
        fixed_eps=fixed_eps,
        ll_budget=budget,
        generator=torch.Generator().manual_seed(seed),
    )
    trace = []
    for _ in range(max_outer):
        if maid.exhausted or maid.ll_iters + maid.cg_iters >= budget:
            break
        maid.step()
        trace.append((maid.ll_iters + maid.cg_iters, p.exact_upper(maid.theta)))
    return _summary(p, trace, maid.theta, budget, len(trace))


def run_seed(seed: int, quick: bool) -> SeedResult:
    budget, max_outer = (QUICK_BUDGET, 100) if quick else (BUDGET, MAX_OUTER)
    p = Problem(seed)
    runners = {
        "MAID": lambda pt: _run_maid(p, pt, False, budget, max_outer, seed),
        "fixed accuracy, fixed step": lambda pt: _run_fixed(p, pt["step"], budget, max_outer),
        "MAID fixed eps": lambda pt: _run_maid(p, pt, True, budget, max_outer, seed),
    }
    tuned = tune_arms(GRIDS, lambda arm, pt: runners[arm](pt), higher_is_better=False)
    _, fixed = tuned["fixed accuracy, fixed step"]
    theta0 = torch.zeros(p.dim, dtype=D)
    regime = {
        "initial relative gap": (p.exact_upper(theta0) - p.f_star) / p.f_star,
        "fixed-accuracy cost per hypergradient": fixed.extras["cost per step"],
    }
    return SeedResult(tuned.metrics(), tuning=tuned.points(), regime=regime, splits=p.sizes)


_PAPER = (
    "Salehi et al.: MAID reaches a given upper-level accuracy with fewer lower-level iterations "
    "than fixed-accuracy methods (HOAG-like) and than MAID with the accuracy held fixed (their "
    "quadratic, TV and FoE denoising examples); analogue here: per-feature ridge on diabetes"
)
_REGIME = ("far from the optimum", "accurate solves are expensive")

EXPERIMENT = Experiment(
    name="maid-ridge-diabetes",
    summary="MAID vs fixed-accuracy descent and MAID with fixed accuracy: per-feature ridge.",
    setup=(
        "Diabetes (442 points): 20 % test, the rest split 60/40 into the lower (train) and upper "
        "(validation) sets per seed; 10 features and their degree-2 products (64), standardised "
        f"on train; ridge floor lam0 = {LAM0}. theta_0 = 0. Budget {BUDGET} lower-level "
        f"gradient evaluations + CG iterations ({QUICK_BUDGET} quick), at most {MAX_OUTER} outer "
        "steps for the MAID arms (100 quick). Fixed-accuracy arm: eps = delta = 1e-6, theta <- theta - step p. "
        "MAID: eps_0 = delta_0 = 0.1, the rest at its defaults. MAID fixed eps: beta_0 = 0.1."
    ),
    claims=(
        Claim(
            "cost to 1%",
            "MAID",
            "fixed accuracy, fixed step",
            False,
            "MAID reaches F <= 1.01 F* with fewer lower-level + CG iterations than fixed-accuracy, "
            "fixed-step descent",
            regime=_REGIME,
            paper=_PAPER,
        ),
        Claim(
            "cost to 1%",
            "MAID",
            "MAID fixed eps",
            False,
            "MAID reaches F <= 1.01 F* with fewer lower-level + CG iterations than MAID with a fixed "
            "accuracy",
            regime=_REGIME,
            paper=_PAPER,
        ),
        Claim(
            "final relative gap",
            "MAID",
            "fixed accuracy, fixed step",
            False,
            "MAID ends closer to F* at the same budget than fixed-accuracy, fixed-step descent",
            regime=_REGIME,
            paper=_PAPER,
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "far from the optimum",
            "initial relative gap",
            "(F(theta_0) - F*) / F*: the 1 % target is far from the start",
            0.05,
        ),
        RegimeCheck(
            "accurate solves are expensive",
            "fixed-accuracy cost per hypergradient",
            "lower-level + CG iterations per outer step of the fixed-accuracy arm (eps = delta = "
            "1e-6, warm-started): a fixed high accuracy costs much per hypergradient",
            100.0,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "per arm: the grid point with the lowest cost to reach 1.01 F* on the upper (validation) "
        "objective, ties (budget exhausted) broken by the final relative gap"
    ),
    run_seed=run_seed,
    requires=("sklearn",),
)
