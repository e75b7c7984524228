"""Protocol 2 (``shared/REPRODUCTION.md``): selection on validation, equal tuning, paired intervals.

Three pieces an experiment uses inside ``run_seed``, and the statistics the runner applies:

- :class:`BestOnValidation`: keep the test metrics of the step (epoch, iteration) with the best
  validation score, for one arm. Never compare final epochs of an over-fitting baseline.
- :func:`tune`: fit one arm at every point of its own grid and keep the point that is best on
  validation (test metrics are reported at that point only). Every arm gets a grid of the same
  size; the runner checks that and records the grids and the per-seed choices.
- :func:`paired_interval` and :func:`verdict`: the mean of the paired per-seed differences, its
  95% Student-t interval, and one of the four verdicts ``held``, ``did not hold``,
  ``inconclusive``, ``not testable here``.

The Student-t quantile is computed here (regularised incomplete beta by continued fraction and
bisection), so the lab needs no SciPy.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from inforeg.lab.experiments.progress import step

VERDICTS = ("held", "did not hold", "inconclusive", "not testable here")


# --------------------------------------------------------------------------------------------
# Selection on validation
# --------------------------------------------------------------------------------------------


@dataclass
class Selected:
    """What one arm (or one grid point of an arm) produced at its selected point.

    ``score`` is the validation score used for selection, ``metrics`` the test (and any other)
    metrics at that point, ``step`` where it was taken (epoch or iteration; ``-1`` if unused),
    ``extras`` anything else the experiment wants to carry (curves, regime measurements).
    """

    score: float
    metrics: dict[str, float]
    step: int = -1
    extras: dict[str, Any] = field(default_factory=dict)


class BestOnValidation:
    """Track the step with the best validation score and the metrics measured there.

    ``update(step, score, evaluate)`` calls ``evaluate()`` (which measures test metrics) only when
    ``score`` improves on the best so far, so the test split is read only at candidate points.
    Ties keep the earlier step. A NaN score never wins.

    >>> best = BestOnValidation(higher_is_better=True)
    >>> for epoch, (val, test) in enumerate([(0.5, 0.4), (0.8, 0.7), (0.6, 0.9)]):
    ...     _ = best.update(epoch, val, lambda test=test: {"test acc": test})
    >>> best.step, best.score, best.metrics
    (1, 0.8, {'test acc': 0.7})
    """

    def __init__(self, higher_is_better: bool = True) -> None:
        self.higher_is_better = higher_is_better
        self.step = -1
        self.score = -math.inf if higher_is_better else math.inf
        self.metrics: dict[str, float] = {}
        self.history: list[float] = []

    def _better(self, score: float) -> bool:
        if math.isnan(score):
            return False
        return score > self.score if self.higher_is_better else score < self.score

    def update(self, step: int, score: float, evaluate: Callable[[], Mapping[str, float]]) -> bool:
        """Record ``score`` at ``step``; return True (and call ``evaluate``) if it is the best."""
        score = float(score)
        self.history.append(score)
        if not self._better(score):
            return False
        self.step, self.score = step, score
        self.metrics = {k: float(v) for k, v in evaluate().items()}
        return True

    def result(self, **extras: Any) -> Selected:
        """The selected point as a :class:`Selected`."""
        if self.step < 0:
            raise RuntimeError("BestOnValidation: no finite validation score was recorded")
        return Selected(self.score, dict(self.metrics), self.step, dict(extras))


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of a grid ``{name: values}`` (an empty grid has one empty point)."""
    names = list(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def grid_size(grid: Mapping[str, Sequence[Any]]) -> int:
    """Number of points of a grid."""
    return math.prod(len(v) for v in grid.values()) if grid else 1


def tune(
    grid: Mapping[str, Sequence[Any]],
    fit: Callable[[dict[str, Any]], Selected],
    higher_is_better: bool = True,
) -> tuple[dict[str, Any], Selected]:
    """Fit every point of ``grid`` and return ``(best point, its Selected)`` by validation score.

    ``fit(point)`` trains the arm with those hyper-parameters (selecting its own stopping step on
    validation, e.g. with :class:`BestOnValidation`) and returns a :class:`Selected`. Ties keep
    the first point in grid order.

    >>> point, sel = tune({"lr": [0.1, 0.01]}, lambda p: Selected(-abs(p["lr"] - 0.02), {"acc": p["lr"]}))
    >>> point, sel.metrics
    ({'lr': 0.01}, {'acc': 0.01})
    """
    best_point: dict[str, Any] | None = None
    best: Selected | None = None
    for point in grid_points(grid):
        sel = fit(dict(point))
        if math.isnan(sel.score):
            continue
        if best is None or (sel.score > best.score if higher_is_better else sel.score < best.score):
            best_point, best = point, sel
    if best is None or best_point is None:
        raise RuntimeError("tune: every grid point gave a NaN validation score")
    return best_point, best


class TunedArms(dict[str, tuple[dict[str, Any], Selected]]):
    """What :func:`tune_arms` returns: ``{arm: (chosen point, Selected)}``, plus the two tables a
    :class:`~inforeg.lab.experiments.base.SeedResult` wants from it."""

    def metrics(self, step_key: str | None = None) -> dict[str, dict[str, float]]:
        """``metrics[arm]``: each arm's metrics at its selected point, with the selected step as
        the metric ``step_key`` when given (e.g. ``"selected epoch"``)."""
        return {
            arm: {**sel.metrics, **({step_key: float(sel.step)} if step_key else {})}
            for arm, (_, sel) in self.items()
        }

    def points(self, step_key: str | None = None) -> dict[str, dict[str, Any]]:
        """``tuning[arm]``: each arm's chosen grid point, with the selected step under the key
        ``step_key`` when given (e.g. ``"epoch"``)."""
        return {
            arm: {**point, **({step_key: sel.step} if step_key else {})}
            for arm, (point, sel) in self.items()
        }

    def extras(self, key: str) -> dict[str, Any]:
        """``{arm: Selected.extras[key]}``, e.g. a curve per arm."""
        return {arm: sel.extras[key] for arm, (_, sel) in self.items()}


def tune_arms(
    grids: Mapping[str, Mapping[str, Sequence[Any]]],
    fit: Callable[[str, dict[str, Any]], Selected],
    higher_is_better: bool = True,
) -> TunedArms:
    """:func:`tune` for every arm of ``grids`` in order, ``fit(arm, point)`` per grid point, with
    one progress report per point fitted across all arms; returns ``{arm: (point, Selected)}``.

    >>> grids = {"base": {"lr": [0.1, 0.01]}, "method": {"beta": [1, 2]}}
    >>> out = tune_arms(grids, lambda arm, p: Selected(-sum(p.values()), {"acc": 0.5}, step=3))
    >>> {arm: point for arm, (point, _) in out.items()}
    {'base': {'lr': 0.01}, 'method': {'beta': 1}}
    >>> out.points("epoch")["method"], out.metrics("selected epoch")["base"]
    ({'beta': 1, 'epoch': 3}, {'acc': 0.5, 'selected epoch': 3.0})
    """
    total, done = sum(grid_size(g) for g in grids.values()), 0
    out = TunedArms()
    for arm, grid in grids.items():

        def fit_point(point: dict[str, Any], arm: str = arm) -> Selected:
            nonlocal done
            sel = fit(arm, point)
            done += 1
            step(done, total, "grid point")
            return sel

        out[arm] = tune(grid, fit_point, higher_is_better)
    return out


# --------------------------------------------------------------------------------------------
# Statistics
# --------------------------------------------------------------------------------------------


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"df: expected > 0, got {df}")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t (bisection on the CDF, to 1e-12).

    >>> round(student_t_quantile(0.975, 9), 6)
    2.262157
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p: expected in (0, 1), got {p}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if student_t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    n = len(values)
    if n == 0:
        raise ValueError("values: expected at least one value")
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


def paired_interval(diffs: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, lo, hi)``: the mean paired difference and its Student-t interval.

    One seed gives an unbounded interval (nothing can be concluded from it).

    >>> m, lo, hi = paired_interval([0.02, 0.03, 0.01, 0.02])
    >>> f"{m:.3f} [{lo:.4f}, {hi:.4f}]"
    '0.020 [0.0070, 0.0330]'
    """
    mean, std = mean_std(diffs)
    n = len(diffs)
    if n < 2:
        return mean, -math.inf, math.inf
    half = student_t_quantile(0.5 + level / 2.0, n - 1) * std / math.sqrt(n)
    return mean, mean - half, mean + half


def verdict(lo: float, hi: float, regime_passed: bool = True) -> str:
    """The protocol's verdict from an interval of *improvements* (positive = paper's direction).

    ``held`` when the interval excludes zero on the paper's side, ``did not hold`` when it excludes
    zero on the other side, ``inconclusive`` when it contains zero, and ``not testable here`` when
    a regime check of the claim failed (whatever the interval says).
    """
    if not regime_passed:
        return "not testable here"
    if lo > 0:
        return "held"
    if hi < 0:
        return "did not hold"
    return "inconclusive"


def describe(mean: float, lo: float, hi: float, wins: int, n: int, verdict_: str) -> str:
    """One sentence that says what happened, e.g. ``better in 10/10 seeds, +0.021 [0.012, 0.030]``."""
    interval = f"{mean:+.4g} [{lo:+.4g}, {hi:+.4g}]" if n > 1 else f"{mean:+.4g} (one seed)"
    if verdict_ == "not testable here":
        return f"not testable here (regime check failed); improvement {interval}"
    return f"better in {wins}/{n} seeds, {interval}"
