"""MI screening (KSG) vs correlation (Pearson) screening on a sparse nonlinear regression.

Protocol 2: nothing is fitted, so there is nothing to select on a validation split: each screen
ranks the p features of one sample of size n and keeps the top d = floor(n / log n) (Fan & Lv's
SIS size); the true support is known, so the kept set is scored directly. Both MI screens use
KSG with k = 3 (the spec's setting and sklearn's default) and are given the same standardised
data: the library's :func:`~inforeg.estimators.mutual_information_screening` and scikit-learn's
``mutual_info_regression`` (its own 1e-10 tie-breaking noise and clipping at 0), each timed on
one thread. The three arms have nothing to tune (empty grids).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from torch import Tensor

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.progress import step

SIZES = (200, 500, 1000)
P, QUICK_P = 500, 120
LINEAR, NONLINEAR = (0, 1), (2, 3, 4)
MI, SKLEARN, CORR = (
    "MI screening (inforeg KSG)",
    "MI screening (sklearn KSG)",
    "correlation screening",
)
GRIDS: dict[str, dict[str, list[Any]]] = {MI: {}, SKLEARN: {}, CORR: {}}


def _problem(seed: int, n: int, p: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(1000 * seed + n)
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    # s = 5 active variables: two linear, two quadratic, one |x| term (the last three have zero
    # correlation with y in the population).
    y = (
        x[:, 0]
        + x[:, 1]
        + x[:, 2] ** 2
        + x[:, 3] ** 2
        + 2.0 * x[:, 4].abs()
        + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    )
    return x, y


def _pearson(x: Tensor, y: Tensor) -> Tensor:
    xc, yc = x - x.mean(0), y - y.mean()
    return (xc * yc[:, None]).mean(0).abs() / (x.std(0, unbiased=False) * y.std(unbiased=False))


def _scores(arm: str, x: Tensor, y: Tensor, seed: int) -> tuple[Tensor, float]:
    """The arm's screening statistic of every feature and the CPU seconds it took."""
    t0 = time.process_time()
    if arm == MI:
        from inforeg.estimators import mutual_information_screening

        _, scores = mutual_information_screening(x, y, top_k=1, k=3)
    elif arm == SKLEARN:
        from sklearn.feature_selection import mutual_info_regression

        mi = mutual_info_regression(x.numpy(), y.numpy(), n_neighbors=3, random_state=seed)
        scores = torch.as_tensor(mi)
    else:
        scores = _pearson(x, y)
    return scores, time.process_time() - t0


def _score_kept(scores: Tensor, d: int, tag: str) -> tuple[dict[str, float], set[int]]:
    kept = set(torch.topk(scores, d).indices.tolist())
    # rank 1 = largest score; ties are broken towards the worse rank
    ranks = [int((scores >= scores[j]).sum()) for j in (*LINEAR, *NONLINEAR)]
    out = {
        f"{tag} recall of true variables": len(kept & {*LINEAR, *NONLINEAR}) / 5,
        f"{tag} recall of nonlinear variables": len(kept & set(NONLINEAR)) / 3,
        f"{tag} recall of linear variables": len(kept & set(LINEAR)) / 2,
        f"{tag} mean log2 rank of nonlinear variables": sum(math.log2(r) for r in ranks[2:]) / 3,
        f"{tag} worst rank of true variables": float(max(ranks)),
    }
    return out, kept


def run_seed(seed: int, quick: bool) -> SeedResult:
    p = QUICK_P if quick else P
    metrics: dict[str, dict[str, float]] = {arm: {} for arm in GRIDS}
    regime: dict[str, float] = {}
    for i, n in enumerate(SIZES):
        x, y = _problem(seed, n, p)
        d = min(int(n / math.log(n)), p // 2)  # the cap only binds in the quick run
        tag = f"n={n}"
        kept_by: dict[str, set[int]] = {}
        for arm in GRIDS:
            scores, cpu = _scores(arm, x, y, seed)
            out, kept_by[arm] = _score_kept(scores, d, tag)
            metrics[arm].update(out)
            metrics[arm][f"{tag} CPU s for the scores"] = cpu
        for arm in GRIDS:  # sklearn's own overlap is 1 by definition; reported for every arm
            overlap = len(kept_by[arm] & kept_by[SKLEARN]) / d
            metrics[arm][f"{tag} kept-set overlap with sklearn"] = overlap
        regime[f"correlation nonlinear recall {tag}"] = metrics[CORR][
            f"{tag} recall of nonlinear variables"
        ]
        step(i + 1, len(SIZES), "sample size")
    splits = {f"sample (n={n})": n for n in SIZES}
    return SeedResult(metrics, tuning={arm: {} for arm in GRIDS}, regime=regime, splits=splits)


_PAPER = (
    "thesis (not located; spec dependence_and_estimators.md §10): 'screening recovers the true "
    "support in a sparse linear model with n = 200, p = 2000 and s = 5, and it detects nonlinear "
    "(e.g. quadratic) signals that Pearson-based SIS misses' (spec's stated test; no number given)"
)


def _claims(n: int) -> tuple[Claim, ...]:
    regime = (f"correlation misses nonlinear signals at n={n}",)
    return (
        Claim(
            f"n={n} recall of nonlinear variables",
            MI,
            CORR,
            True,
            f"MI screening keeps more of the nonlinear signals than correlation screening (n={n})",
            regime=regime,
            paper=_PAPER,
        ),
        Claim(
            f"n={n} recall of true variables",
            MI,
            CORR,
            True,
            f"MI screening keeps more of the true support than correlation screening (n={n})",
            regime=regime,
            paper=_PAPER,
        ),
    )


def _regime(n: int) -> tuple[RegimeCheck, ...]:
    return (
        RegimeCheck(
            f"correlation misses nonlinear signals at n={n}",
            f"correlation nonlinear recall n={n}",
            "mean share of the 3 nonlinear variables (zero population correlation) that Pearson "
            "screening keeps: the failure MI screening fixes must be present (< 0.5; this also "
            "keeps the two arms off a shared ceiling)",
            0.5,
            above=False,
        ),
    )


EXPERIMENT = Experiment(
    name="mi-screening-synthetic",
    summary=(
        "Sure-independence screening that ranks features by a KSG estimate of I(X_j; Y) "
        "(k = 3) instead of |Pearson correlation|, keeping the top floor(n / log n), at "
        "n = 200, 500, 1000; the library's KSG beside scikit-learn's mutual_info_regression."
    ),
    setup=(
        "Per seed and n in {200, 500, 1000} a fresh sample: p = 500 (120 with --quick, keeping at most p / 2) standard "
        "normal features; y = x0 + x1 + x2^2 + x3^2 + 2|x4| + 0.5 N(0, 1). Each screen keeps "
        "d = floor(n / log n) = 37 / 80 / 144 features. Metrics: recall of the 5 true variables "
        "(and of the 3 nonlinear and 2 linear ones), the mean log2 rank of the nonlinear "
        "variables and the worst rank of a true variable (rank 1 = largest statistic), CPU "
        "seconds of each MI screen's scores (one thread), and the overlap of the library's and "
        "sklearn's kept sets. Deviation from the spec: p = 500 instead of 2000, because KSG "
        "costs O(p n^2) and 20 seeds at three sample sizes with both MI estimators must fit the "
        "15-minute budget on a shared machine (a first full run at p = 1000 was stopped before "
        "its first seeds were summarised, for time); 20 seeds because recall moves in steps of 1/5 (the protocol-1 run "
        "had 5 seeds at n = 200 and could not separate the arms)."
    ),
    claims=_claims(200) + _claims(500) + _claims(1000),
    regime_checks=_regime(200) + _regime(500) + _regime(1000),
    tuning=GRIDS,
    selection=(
        "none needed: no arm fits or tunes anything (KSG k = 3 for both MI arms, the spec's "
        "setting); each keeps the top floor(n / log n) features of one sample, scored against "
        "the known support"
    ),
    run_seed=run_seed,
    seeds=20,
    requires=("sklearn",),  # the peer estimator
)
