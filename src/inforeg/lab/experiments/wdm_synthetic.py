"""WDM/WPC vs InfoNCE (CPC) on multi-factor views: does the gap grow with MI / log N?

Two noisy nonlinear views of ``F`` independent 4-level factors (true MI = F log 4 nats). A
separable critic g(x) h(y)^T is trained on batches of N pairs by InfoNCE, by WPC (InfoNCE with a
Lipschitz critic: gradient penalty, or spectral normalisation) or by the KR-dual Wasserstein
dependency measure (gradient penalty). Metric: mean over factors of a ridge linear probe's accuracy
on g(x) (probe fitted on the training split, chance 0.25).

Conditions (MI / log N): F = 8, N = 16 (11.1 / 2.77 = 4.0); F = 8, N = 256 (11.1 / 5.55 = 2.0);
F = 4, N = 16 (5.5 / 2.77 = 2.0; InfoNCE and WPC (GP) only).

Protocol 2: per seed one data set split into train / validation / test. Every arm has a 2-point
grid of its own sensitive hyper-parameter (learning rate for InfoNCE and WPC (SN), penalty weight
for the gradient-penalty arms) and picks, per condition, the grid point and the checkpoint (every
100 steps) with the best validation probe accuracy; test metrics are read there.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import make_mlp, seed_everything

LEVELS = 4
DIM = 24
N_TRAIN, N_VAL, N_TEST = 2000, 500, 1000
STEPS, QUICK_STEPS, EVAL_EVERY = 800, 100, 100
NCE, GP, SN, KR = "InfoNCE", "WPC (GP)", "WPC (SN)", "WDM (KR + GP)"
GRIDS: dict[str, dict[str, list[Any]]] = {
    NCE: {"lr": [1e-3, 3e-3]},
    GP: {"gp_weight": [1.0, 10.0]},
    SN: {"lr": [1e-3, 3e-3]},
    KR: {"gp_weight": [1.0, 10.0]},
}
DEFAULTS = {"lr": 1e-3, "gp_weight": 10.0}
# (factors, batch) -> arms run there.
CONDITIONS: dict[tuple[int, int], tuple[str, ...]] = {
    (8, 16): (NCE, GP, SN, KR),
    (8, 256): (NCE, GP, SN, KR),
    (4, 16): (NCE, GP),
}
ACC = "probe accuracy"
BOUND = "InfoNCE bound / log N"
GAIN = "probe accuracy gain over InfoNCE"


def cond_name(factors: int, batch: int) -> str:
    return f"F={factors} N={batch}"


HIGH, LOW_N, LOW_MI = (cond_name(f, b) for f, b in CONDITIONS)


def make_views(n: int, factors: int, gen: torch.Generator, proj: Tensor) -> tuple[Tensor, ...]:
    """Two noisy views of ``factors`` independent categorical factors, and the factor codes."""
    codes = torch.randint(0, LEVELS, (n, factors), generator=gen)
    onehot = F.one_hot(codes, LEVELS).float().reshape(n, -1)
    x = torch.tanh(onehot @ proj[0]) + 0.3 * torch.randn(n, DIM, generator=gen)
    y = torch.tanh(onehot @ proj[1]) + 0.3 * torch.randn(n, DIM, generator=gen)
    return x, y, codes


def probe_accuracy(feat_tr: Tensor, codes_tr: Tensor, feat_ev: Tensor, codes_ev: Tensor) -> float:
    """Mean over factors of a ridge-regression linear probe's accuracy on the evaluation set."""

    def design(f: Tensor) -> Tensor:
        return torch.cat([f, torch.ones(f.shape[0], 1)], dim=1)

    a_tr, a_ev = design(feat_tr), design(feat_ev)
    gram = a_tr.T @ a_tr + 1e-2 * torch.eye(a_tr.shape[1])
    w = torch.linalg.solve(gram, a_tr.T @ F.one_hot(codes_tr, LEVELS).float().flatten(1))
    pred = (a_ev @ w).reshape(len(feat_ev), codes_ev.shape[1], LEVELS).argmax(-1)
    return float((pred == codes_ev).float().mean())


class Critic(nn.Module):
    """Separable critic S = g(x) h(y)^T."""

    def __init__(self) -> None:
        super().__init__()
        self.g = make_mlp(DIM, 64, 16, depth=1)
        self.h = make_mlp(DIM, 64, 16, depth=1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.g(x) @ self.h(y).T


def _loss(arm: str, critic: Critic, xb: Tensor, yb: Tensor, gp_weight: float) -> Tensor:
    from inforeg.dependence import wasserstein_dependency

    if arm == NCE:
        return F.cross_entropy(critic(xb, yb), torch.arange(len(xb)))
    if arm == SN:
        return wasserstein_dependency(critic, xb, yb, "spectral_norm", "infonce").loss
    objective = "infonce" if arm == GP else "kr"
    return wasserstein_dependency(critic, xb, yb, "gradient_penalty", objective, gp_weight).loss  # type: ignore[arg-type]


def _bound_ratio(critic: Critic, x: Tensor, y: Tensor, batch: int) -> float:
    """InfoNCE bound log N - L_NCE on test batches of size N, as a fraction of log N."""
    from inforeg.dependence import infonce

    vals = [
        math.log(batch)
        - float(
            infonce(critic.g(x[i : i + batch]), critic.h(y[i : i + batch]), 1.0, normalize=False)
        )
        for i in range(0, len(x) - batch + 1, batch)
    ]
    return sum(vals) / len(vals) / math.log(batch)


def _fit(
    arm: str, point: dict[str, Any], data: dict[str, Tensor], batch: int, seed: int, steps: int
) -> Selected:
    from inforeg.dependence import spectral_normalize

    hp = {**DEFAULTS, **point}
    g = seed_everything(seed)
    critic = Critic()
    if arm == SN:
        spectral_normalize(critic)
    opt = torch.optim.Adam(critic.parameters(), lr=hp["lr"])
    best = BestOnValidation(higher_is_better=True)
    for step in range(1, steps + 1):
        idx = torch.randint(0, N_TRAIN, (batch,), generator=g)
        loss = _loss(arm, critic, data["x_tr"][idx], data["y_tr"][idx], hp["gp_weight"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % EVAL_EVERY == 0 or step == steps:
            critic.eval()
            with torch.no_grad():
                f_tr = critic.g(data["x_tr"])

                def test_metrics(f_tr: Tensor = f_tr) -> dict[str, float]:
                    acc = probe_accuracy(f_tr, data["c_tr"], critic.g(data["x_te"]), data["c_te"])
                    return {
                        ACC: acc,
                        BOUND: _bound_ratio(critic, data["x_te"], data["y_te"], batch),
                    }

                val = probe_accuracy(f_tr, data["c_tr"], critic.g(data["x_va"]), data["c_va"])
                best.update(step, val, test_metrics)
            critic.train()
    return best.result()


def arm_name(arm: str, cond: str) -> str:
    return f"{arm} [{cond}]"


def run_seed(seed: int, quick: bool) -> SeedResult:
    steps = QUICK_STEPS if quick else STEPS
    metrics: dict[str, dict[str, float]] = {}
    chosen: dict[str, dict[str, Any]] = {}
    regime: dict[str, float] = {}
    for (factors, batch), arms in CONDITIONS.items():
        gen = torch.Generator().manual_seed(700 + 31 * seed + factors)
        proj = torch.randn(2, factors * LEVELS, DIM, generator=gen)
        data: dict[str, Tensor] = {}
        for split, n in (("tr", N_TRAIN), ("va", N_VAL), ("te", N_TEST)):
            data[f"x_{split}"], data[f"y_{split}"], data[f"c_{split}"] = make_views(
                n, factors, gen, proj
            )
        cond = cond_name(factors, batch)
        # --quick: the first grid point only (the full run searches the whole grid).
        grids = {arm: {k: v[:1] if quick else v for k, v in GRIDS[arm].items()} for arm in arms}
        fit = functools.partial(_fit, data=data, batch=batch, seed=seed, steps=steps)
        tuned = tune_arms(grids, fit)
        metrics.update({arm_name(arm, cond): m for arm, m in tuned.metrics().items()})
        chosen.update({arm_name(arm, cond): p for arm, p in tuned.points("step").items()})
        base = metrics[arm_name(NCE, cond)][ACC]
        for arm in arms:
            metrics[arm_name(arm, cond)][GAIN] = metrics[arm_name(arm, cond)][ACC] - base
        regime[f"InfoNCE probe accuracy [{cond}]"] = base
        regime[f"InfoNCE bound / log N [{cond}]"] = metrics[arm_name(NCE, cond)][BOUND]
    return SeedResult(
        metrics,
        tuning=chosen,
        regime=regime,
        splits={"train": N_TRAIN, "validation": N_VAL, "test": N_TEST},
    )


def _vs_infonce(arm: str, text: str) -> Claim:
    return Claim(
        ACC,
        arm_name(arm, HIGH),
        arm_name(NCE, HIGH),
        True,
        text,
        regime=("InfoNCE saturates at N=16", "InfoNCE probe below ceiling"),
        paper=(
            "Ozair et al. (NeurIPS 2019), abstract: 'a tight lower bound on mutual information "
            "requires sample size exponential in the mutual information'; CPC representations "
            "'capture only a few of the relevant factors of variation', and WPC 'achieves "
            "substantially improved results on tasks where incomplete representations are a major "
            "challenge' (SpatialMultiOmniglot, Shapes3D: WPC's linear-probe accuracy above CPC's; "
            "reported in figures, no single number). Analogue: 8 factors (MI 11.1 nats) with "
            "batch 16 (log N 2.77)."
        ),
    )


EXPERIMENT = Experiment(
    name="wdm-synthetic",
    summary=(
        "Representation learning by maximising a dependence estimate between two views: InfoNCE "
        "(CPC) vs WPC (InfoNCE with a Lipschitz critic: gradient penalty or spectral "
        "normalisation) vs the KR-dual Wasserstein dependency measure, as MI / log N varies."
    ),
    setup=(
        "Per seed and condition: two views x, y = tanh(onehot(codes) P) + N(0, 0.3^2) (24-D, P "
        "Gaussian per seed) of F independent 4-level factors (MI = F log 4). Separable critic "
        "g(x) h(y)^T, one-hidden-layer MLP encoders (64 units, 16-D), Adam, 800 steps on batches "
        f"of N pairs (100 steps and the first grid point with --quick). Splits {N_TRAIN} / {N_VAL} "
        f"/ {N_TEST}. Metric: mean over factors of a ridge linear probe's test accuracy on g(x) "
        "(chance 0.25; probe fitted on the training split). Conditions: F = 8, N = 16 (MI/log N "
        "= 4.0, all four arms); F = 8, N = 256 (2.0, all four); F = 4, N = 16 (2.0, InfoNCE and "
        "WPC (GP)). Gradient penalty two-sided at positive and shifted pairs; spectral "
        "normalisation on every Linear layer (torch parametrisation). Arms are named 'method "
        "[condition]'; 'probe accuracy gain over InfoNCE' is the paired gain over InfoNCE in the "
        "same condition and seed. Design fixed from the audit "
        "(batch 32: gap 0.027, batch 256: 0.017) and a 2-seed pilot of the four arms at "
        "(F, N) = (8, 16), (8, 128), (4, 64), (2, 64), (12, 16) before the full run: F <= 4 "
        "puts the probe near its ceiling (0.98-1.00), which the ceiling check reports. Findings "
        "(full run, 10 seeds): at F = 8, N = 16 InfoNCE's test bound is 0.72 log N and its probe "
        "0.705; WPC (GP), WPC (SN) and KR-WDM reach 0.729-0.730 (+0.023 to +0.025, 10/10 "
        "seeds). At N = 256 the GP gain is +0.018, so the growth with smaller batches, +0.006 "
        "[-0.001, +0.013], is inconclusive; with 4 factors InfoNCE's probe is 0.965, above the "
        "0.95 ceiling check, so the growth with MI is not testable here (its gap +0.013 [+0.009, "
        "+0.018] is bounded by the ceiling). Most arms select a late checkpoint (600-800 steps)."
    ),
    claims=(
        _vs_infonce(
            GP, "WPC (gradient penalty) recovers more factors than InfoNCE at MI/log N = 4"
        ),
        _vs_infonce(SN, "WPC (spectral norm) recovers more factors than InfoNCE at MI/log N = 4"),
        _vs_infonce(KR, "the KR-dual WDM recovers more factors than InfoNCE at MI/log N = 4"),
        Claim(
            GAIN,
            arm_name(GP, HIGH),
            arm_name(GP, LOW_N),
            True,
            "WPC's advantage over InfoNCE is larger with batch 16 than with batch 256 (8 factors)",
            regime=("InfoNCE saturates at N=16", "InfoNCE probe below ceiling"),
            paper=(
                "Ozair et al. (2019) study the minibatch size: InfoNCE's bound is at most log N, "
                "so CPC needs batches exponential in the MI, while the Wasserstein measure has no "
                "such limit; WPC's advantage is largest at small minibatches (figure, no single "
                "number). Analogue: the paired gap at N = 16 vs N = 256, F = 8."
            ),
        ),
        Claim(
            GAIN,
            arm_name(GP, HIGH),
            arm_name(GP, LOW_MI),
            True,
            "WPC's advantage over InfoNCE is larger with 8 factors than with 4 (batch 16)",
            regime=("InfoNCE saturates at N=16", "InfoNCE probe below ceiling with 4 factors"),
            paper=(
                "Ozair et al. (2019), SpatialMultiOmniglot: as the number of characters (and so "
                "the MI) grows, CPC's linear-probe accuracy falls faster than WPC's (figure, no "
                "single number). Analogue: the paired gap with 8 vs 4 factors at N = 16."
            ),
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "InfoNCE saturates at N=16",
            f"InfoNCE bound / log N [{HIGH}]",
            "InfoNCE's bound log N − L_NCE on test batches as a fraction of log N (F = 8, N = 16): "
            "the bound is pressed against its log N cap while the true MI is 4 log N",
            0.5,
        ),
        RegimeCheck(
            "InfoNCE probe below ceiling",
            f"InfoNCE probe accuracy [{HIGH}]",
            "InfoNCE's test probe accuracy (F = 8, N = 16) leaves room to improve",
            0.95,
            above=False,
        ),
        RegimeCheck(
            "InfoNCE probe below ceiling with 4 factors",
            f"InfoNCE probe accuracy [{LOW_MI}]",
            "InfoNCE's test probe accuracy (F = 4, N = 16) is not at its ceiling, so a smaller gap "
            "there is not just the ceiling",
            0.95,
            above=False,
        ),
    ),
    tuning={arm_name(a, cond_name(*fb)): GRIDS[a] for fb, arms in CONDITIONS.items() for a in arms},
    selection=(
        "per seed, condition and arm: the grid point and checkpoint (every 100 steps) with the "
        "best validation probe accuracy"
    ),
    run_seed=run_seed,
)
