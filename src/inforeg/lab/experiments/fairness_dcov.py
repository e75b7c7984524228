"""Distance-covariance fairness (dCov vs JdCov vs CCdCov) on synthetic insurance-style data.

Protocol 2, on the disparity-RMSE frontier. Per seed: fresh data (1500 train / 500 validation /
1000 test); the unpenalised MSE model is stopped at its best validation RMSE, which sets an RMSE
budget of +10 % for the penalised models. Every penalty tunes its weight λ over the same log grid
{0, 1, 3, 10, 30, 100, 300, 1000} and its stopping epoch: among all (λ, epoch) whose validation RMSE
is within the budget, the one with the lowest validation JSD is kept (λ = 0 at its best epoch is
always within it, so every arm has a point). Claims compare test JSD at that matched RMSE budget,
paired per seed. JdCov² is clamped at 0 (``clamp_negative=True``): as a minimised penalty the
unbiased estimate is unbounded below and not scale-invariant, and unclamped it diverged in the
first-generation run (RMSE 6.5 at λ = 100).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.progress import step
from inforeg.lab.experiments.protocol import Selected, tune
from inforeg.lab.experiments.training import make_mlp, minibatches, seed_everything

LAMBDAS = [0.0, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]
BUDGET = 1.10  # validation RMSE allowed, relative to the unpenalised model's best
KINDS = {"dCov (sum of marginals)": "dcov", "JdCov (clamped)": "jdcov", "CCdCov": "ccdcov"}
DCOV, JDCOV, CCDCOV = KINDS
MSE = "MSE (unpenalised)"
GRIDS: dict[str, dict[str, list[Any]]] = {MSE: {}, **{m: {"lam": LAMBDAS} for m in KINDS}}
SPLIT = {"train": (0, 1500), "val": (1500, 2000), "test": (2000, 3000)}


def make_data(seed: int, n: int = 3000) -> dict[str, Tensor]:
    """Claims-severity-like regression; age (continuous) and region (4 levels) are protected.

    The target depends on legitimate risk factors and on an intersectional effect (old drivers in
    odd regions, an XOR that no single attribute shows), and the features contain noisy proxies of
    age, region and the intersection.
    """
    g = torch.Generator().manual_seed(10_000 + seed)
    age = torch.rand(n, generator=g)
    region = torch.randint(0, 4, (n,), generator=g)
    inter = ((age > 0.5).long() ^ (region % 2)).float()
    risk = torch.randn(n, 4, generator=g)
    proxies = torch.stack(
        (
            age + 0.3 * torch.randn(n, generator=g),
            region.float() / 3 + 0.3 * torch.randn(n, generator=g),
            inter + 0.3 * torch.randn(n, generator=g),
        ),
        dim=1,
    )
    x = torch.cat([risk, proxies], dim=1)
    y = risk[:, 0] + 0.5 * risk[:, 1] - 0.5 * risk[:, 2] + 1.0 * inter + 0.5 * age
    y = y + 0.3 * torch.randn(n, generator=g)
    groups = region * 2 + (age > 0.5).long()  # 8 intersectional groups
    return {"x": x, "y": y, "age": age, "region": region, "groups": groups}


def interaction_share(pred: Tensor, groups: Tensor) -> float:
    """Share of the between-group variance of the mean prediction over the 2 age bins x 4 regions
    that an additive (age bin + region) model of the cell means cannot explain.

    0 when the disparity is a sum of marginal effects; 1 when it is a pure interaction (XOR).
    """
    cells = torch.stack([pred[groups == g].mean() for g in range(8)]).reshape(4, 2)
    grand = cells.mean()
    additive = cells.mean(1, keepdim=True) + cells.mean(0, keepdim=True) - grand
    total = float(((cells - grand) ** 2).sum())
    return float(((cells - additive) ** 2).sum()) / total if total > 0 else 0.0


def _metrics(pred: Tensor, data: dict[str, Tensor], rows: Tensor) -> dict[str, float]:
    """RMSE, generalised JSD (bits) over the 8 groups and UF = Var_g E[pred | g] / Var pred."""
    from inforeg.dependence import generalized_jsd

    groups = data["groups"][rows]
    means = torch.stack([pred[groups == g].mean() for g in range(8)])
    return {
        "RMSE": float(F.mse_loss(pred, data["y"][rows]).sqrt()),
        "JSD": float(generalized_jsd(pred, groups)),
        "UF": float(means.var() / pred.var()),
    }


def train_path(
    data: dict[str, Tensor], kind: str, lam: float, seed: int, epochs: int
) -> list[dict[str, float]]:
    """Train MSE + lam * penalty; validation and test metrics after every epoch."""
    from inforeg.dependence import DistanceCovarianceFairness

    penalty = DistanceCovarianceFairness(
        kind,  # type: ignore[arg-type]
        weight=lam,
        num_classes=[None, 4],
        clamp_negative=kind == "jdcov",
    )
    gen = seed_everything(seed)
    model = make_mlp(data["x"].shape[1], 32, 1, depth=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    tr = torch.arange(*SPLIT["train"])
    rows = {part: torch.arange(*SPLIT[part]) for part in ("val", "test")}
    path = []
    for _ in range(epochs):
        model.train()
        for b in minibatches(tr.shape[0], 256, gen):
            r = tr[b]
            if r.shape[0] < 16:
                continue
            pred = model(data["x"][r]).squeeze(1)
            loss = F.mse_loss(pred, data["y"][r])
            if lam > 0:
                loss = loss + penalty(pred, [data["age"][r], data["region"][r]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            point = {}
            for part, idx in rows.items():
                pred = model(data["x"][idx]).squeeze(1)
                point.update({f"{part} {k}": v for k, v in _metrics(pred, data, idx).items()})
                if part == "val":
                    point["val interaction share"] = interaction_share(pred, data["groups"][idx])
        path.append(point)
    return path


def _test(point: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in point.items() if k.startswith("test")}


def select_within_budget(path: list[dict[str, float]], budget: float) -> Selected:
    """The epoch with the lowest validation JSD among those with validation RMSE <= budget
    (score = -JSD; -inf when no epoch is within the budget)."""
    best: Selected = Selected(-math.inf, {}, -1)
    for epoch, point in enumerate(path):
        if point["val RMSE"] <= budget and -point["val JSD"] > best.score:
            best = Selected(-point["val JSD"], _test(point), epoch)
    return best


def run_seed(seed: int, quick: bool) -> SeedResult:
    data = make_data(seed)
    epochs = 4 if quick else 30
    base_path = train_path(data, "ccdcov", 0.0, seed, epochs)  # lam = 0: the penalty is inactive
    base_epoch = min(range(epochs), key=lambda e: base_path[e]["val RMSE"])
    base = base_path[base_epoch]
    budget = BUDGET * base["val RMSE"]
    metrics = {MSE: {**_test(base), "lambda": 0.0}}
    tuning: dict[str, dict[str, Any]] = {MSE: {}}
    curves: dict[str, dict[str, list[float]]] = {
        "test JSD vs λ (0, 1, 3, ..., 1000), last epoch": {},
        "test RMSE vs λ (0, 1, 3, ..., 1000), last epoch": {},
    }
    total, done = len(KINDS) * (len(LAMBDAS) - 1), 0
    for method, kind in KINDS.items():
        paths: dict[float, list[dict[str, float]]] = {0.0: base_path}

        def fit(
            point: dict[str, Any],
            kind: str = kind,
            paths: dict[float, list[dict[str, float]]] = paths,
        ) -> Selected:
            nonlocal done
            lam = point["lam"]
            if lam not in paths:
                paths[lam] = train_path(data, kind, lam, seed, epochs)
                done += 1
                step(done, total, "penalised model")
            return select_within_budget(paths[lam], budget)

        chosen, sel = tune(GRIDS[method], fit)
        metrics[method] = {**sel.metrics, "lambda": chosen["lam"]}
        tuning[method] = chosen
        curves["test JSD vs λ (0, 1, 3, ..., 1000), last epoch"][method] = [
            paths[lam][-1]["test JSD"] for lam in LAMBDAS
        ]
        curves["test RMSE vs λ (0, 1, 3, ..., 1000), last epoch"][method] = [
            paths[lam][-1]["test RMSE"] for lam in LAMBDAS
        ]
    regime = {
        "unpenalised validation JSD": base["val JSD"],
        "unpenalised interaction share": base["val interaction share"],
    }
    sizes = {"train": 1500, "validation": 500, "test": 1000}
    return SeedResult(metrics, curves, tuning=tuning, regime=regime, splits=sizes)


_PAPER = (
    "Lee, Antonio, Avanzi, Marchi et al. 2025 (arXiv 2509.08163): on COMPAS and a motor-insurance "
    "claims data set, CCdCov (and JdCov) penalties reduce intersectional disparity, measured by "
    "the generalised JSD of the prediction densities across intersectional groups, at a small "
    "predictive cost; the sum of marginal dCov penalties misses intersectional (fairness-"
    "gerrymandering) effects (numbers not verified). Analogue: synthetic claims with an "
    "age x region XOR effect, test JSD at a +10% validation-RMSE budget"
)
_UNFAIR, _INTERSECTIONAL = "unpenalised model is unfair", "disparity is intersectional"


EXPERIMENT = Experiment(
    name="fairness-dcov",
    summary=(
        "Regression trained with MSE + λ R(prediction, age, region), R = sum of marginal dCov², "
        "JdCov² (clamped at 0) or CCdCov² (unbiased, per mini-batch); each penalty picks λ in "
        "{0, 1, 3, ..., 1000} and its epoch on validation: the lowest JSD within +10% of the "
        "unpenalised model's validation RMSE. Compared at that matched RMSE budget."
    ),
    setup=(
        "Synthetic claims-severity data (n = 3000: 1500 train / 500 validation / 1000 test, fresh "
        "per seed): 4 risk factors plus noisy proxies of age (continuous, protected), region (4 "
        "levels, protected) and their intersection; the target has an age x region XOR effect. "
        "MLP 7-32-1, Adam lr 1e-2, batch 256, 30 epochs (4 with --quick), metrics after every "
        "epoch. JSD: Gaussian KDE bandwidth 0.15 on a 1000-point grid, bits, 8 intersectional "
        "groups weighted by frequency; UF = Var_g E[pred | g] / Var pred. Selection (every "
        "penalty alike): among all (λ, epoch) whose validation RMSE is at most 1.1 x the "
        "unpenalised model's best validation RMSE, the lowest validation JSD; the unpenalised "
        "model is read at its best validation-RMSE epoch. Curves: test JSD and RMSE at the last "
        "epoch over the λ grid. The first-generation run calibrated λ in {1, 10, 100} to 75% of "
        "the unpenalised JSD; no λ reached it for dCov/JdCov, so λ = 100 was used everywhere, "
        "at a 30% RMSE cost no claim reported, and JdCov diverged unclamped (audit B §6)."
    ),
    claims=(
        Claim(
            "test JSD",
            CCDCOV,
            MSE,
            False,
            "CCdCov lowers intersectional disparity (test JSD) within a +10% RMSE budget",
            regime=(_UNFAIR,),
            paper=_PAPER,
        ),
        Claim(
            "test JSD",
            JDCOV,
            MSE,
            False,
            "JdCov (clamped) lowers intersectional disparity within a +10% RMSE budget",
            regime=(_UNFAIR,),
            paper=_PAPER,
        ),
        Claim(
            "test JSD",
            CCDCOV,
            DCOV,
            False,
            "at the same RMSE budget, CCdCov removes more intersectional disparity than the sum "
            "of marginal dCov penalties",
            regime=(_UNFAIR, _INTERSECTIONAL),
            paper=_PAPER,
        ),
    ),
    regime_checks=(
        RegimeCheck(
            _UNFAIR,
            "unpenalised validation JSD",
            "generalised JSD (bits) of the unpenalised model's validation predictions across the "
            "8 intersectional groups",
            0.05,
        ),
        RegimeCheck(
            _INTERSECTIONAL,
            "unpenalised interaction share",
            "share of the between-group variance of the unpenalised model's mean validation "
            "prediction (2 age bins x 4 regions) not explained by additive age and region effects",
            0.3,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "unpenalised: epoch with the lowest validation RMSE; each penalty: the (λ, epoch) with the "
        "lowest validation JSD among those with validation RMSE <= 1.1 x the unpenalised best"
    ),
    run_seed=run_seed,
)
