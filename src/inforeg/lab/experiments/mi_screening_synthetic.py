"""MI screening vs correlation (Pearson) screening on a sparse nonlinear regression."""

from __future__ import annotations

import math

import torch

from inforeg.lab.experiments.base import Claim, Experiment, SeedResult

N, P = 200, 2000


def _problem(seed: int, p: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, p, generator=g, dtype=torch.float64)
    # s = 5 active variables: two linear, two quadratic, one |x| term.
    y = (
        x[:, 0]
        + x[:, 1]
        + x[:, 2] ** 2
        + x[:, 3] ** 2
        + 2.0 * x[:, 4].abs()
        + 0.5 * torch.randn(N, generator=g, dtype=torch.float64)
    )
    return x, y, [0, 1, 2, 3, 4]


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.estimators import mutual_information_screening

    p = 500 if quick else P
    x, y, support = _problem(seed, p)
    d = int(N / math.log(N))
    idx, _ = mutual_information_screening(x, y, top_k=d)
    xc = x - x.mean(0)
    yc = y - y.mean()
    corr = (xc * yc[:, None]).mean(0).abs() / (x.std(0, unbiased=False) * y.std(unbiased=False))
    pearson = torch.topk(corr, d).indices
    metrics = {}
    for method, kept in (("MI screening (KSG)", idx), ("correlation screening", pearson)):
        found = set(kept.tolist()) & set(support)
        metrics[method] = {
            "recall of true variables": len(found) / len(support),
            "recall of nonlinear variables": len(found & {2, 3, 4}) / 3,
            "recall of linear variables": len(found & {0, 1}) / 2,
        }
    return SeedResult(metrics)


EXPERIMENT = Experiment(
    name="mi-screening-synthetic",
    technique="high-dim-thesis",
    summary=(
        "Sure-independence screening that ranks features by a KSG estimate of I(X_j; Y) "
        "(k = 3) instead of |Pearson correlation|, keeping the top floor(n / log n) = 37."
    ),
    setup=(
        "n = 200, p = 2000 (500 with --quick) standard normal features; y = x0 + x1 + x2^2 + "
        "x3^2 + 2|x4| + 0.5 N(0, 1). Recall = fraction of the 5 active variables among the kept "
        "37. A fresh data set per seed."
    ),
    claims=(
        Claim(
            "recall of true variables",
            "MI screening (KSG)",
            "correlation screening",
            True,
            "MI screening recovers more of the true support than correlation screening",
        ),
        Claim(
            "recall of nonlinear variables",
            "MI screening (KSG)",
            "correlation screening",
            True,
            "MI screening detects non-monotone signals that correlation screening misses",
        ),
    ),
    run_seed=run_seed,
)
