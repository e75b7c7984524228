"""What an experiment is: arms run per seed, the paper's claims, and protocol 2's bookkeeping.

``run_seed`` may report progress within a seed with
:func:`inforeg.lab.experiments.progress.step` (``train_classifier`` reports its epochs itself), and
an experiment that needs an optional package declares it in ``requires`` (e.g. ``("sklearn",)``
for the digits data) so that a missing extra is reported before any work.

An experiment under protocol 2 (``shared/REPRODUCTION.md``) declares:

- ``claims``: each a :class:`Claim` of kind ``"paper"`` (the paper's own headline direction, in
  its own terms; only these count towards the registry status ``reproduced``) or ``"sanity"``
  (the regulariser moves its own target: it cannot fail unless the code is broken). Every paper
  claim names the regime checks it needs.
- ``regime_checks``: each a :class:`RegimeCheck` over a value that ``run_seed`` measures per seed
  (from the baseline runs): the failure the technique fixes must be present, or the claim is
  ``not testable here``.
- ``tuning``: for every arm, its own grid of hyper-parameters; all grids have the same number of
  points (equal tuning budget; an arm with nothing to tune declares ``{}``). ``run_seed`` tunes each arm on validation and reports the chosen
  point per seed.
- ``selection``: the selection rule, in words. The split sizes are not declared: each
  :class:`SeedResult` reports the sizes it used (``splits``), and the record keeps those.

``run_seed(seed, quick)`` returns a :class:`SeedResult`: test metrics of every arm at its selected
point, the chosen grid point of every arm, the regime measurements and the split sizes. Seeds pair the arms: use
the same data split, initialisation and data order for every arm within a seed.

A worked example (a toy: two arms, each tuned over two learning rates and stopped on validation)::

    from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
    from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune

    GRIDS = {"CE": {"lr": [0.1, 0.03]}, "CE + reg": {"lr": [0.1, 0.03]}}

    def run_seed(seed: int, quick: bool) -> SeedResult:
        data = make_splits(seed)                       # train / validation / test
        metrics, chosen = {}, {}
        for arm, grid in GRIDS.items():
            def fit(point, arm=arm):
                model, best = make_model(seed), BestOnValidation(higher_is_better=True)
                for epoch in range(5 if quick else 60):
                    train_one_epoch(model, data.train, arm, point["lr"])
                    best.update(epoch, val_accuracy(model, data.val),
                                lambda: {"test accuracy": test_accuracy(model, data.test),
                                         "test ECE": test_ece(model, data.test)})
                return best.result()
            chosen[arm], sel = tune(grid, fit)
            metrics[arm] = sel.metrics
        return SeedResult(metrics, tuning=chosen,
                          regime={"CE confidence gap": gap_of(metrics["CE"])},
                          splits=data.sizes)

    EXPERIMENT = Experiment(
        name="toy", summary="...", setup="...",  # the record of each technique names "toy"
        claims=(Claim("test ECE", "CE + reg", "CE", False, "reg lowers ECE vs CE",
                      kind="paper", regime=("CE over-confident",)),),
        regime_checks=(RegimeCheck("CE over-confident", "CE confidence gap",
                                   "mean confidence minus accuracy of CE", 0.0),),
        tuning=GRIDS,
        selection="validation accuracy: best epoch and grid point per arm",
        run_seed=run_seed,
    )

``protocol=2``, ``seeds=10`` and ``quick_seeds=2`` are the defaults: a declaration states only
what differs (e.g. ``quick_seeds=1`` for a slow run, ``seeds=20`` for a noisy claim).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from inforeg.lab.experiments.protocol import grid_size

ClaimKind = Literal["paper", "sanity"]
MIN_SEEDS = 10  # protocol 2, §4: at least 10 seeds for every paper claim in a full run


@dataclass
class SeedResult:
    """What one seed produced.

    Attributes:
        metrics: ``metrics[arm][metric]``, scalar metrics of each arm at its selected point.
        curves: ``curves[curve][arm]``, a sequence (e.g. per epoch) plotted as mean ± std.
        tuning: ``tuning[arm]``, the grid point each arm chose on validation in this seed.
        regime: ``regime[name]``, the measurements the regime checks read (per seed).
        splits: sizes of the train / validation / test splits this seed used (protocol 2's
            record: required, name a unit where it is not one sample, e.g. ``"train (bags)"``).
    """

    metrics: dict[str, dict[str, float]]
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    tuning: dict[str, dict[str, Any]] = field(default_factory=dict)
    regime: dict[str, float] = field(default_factory=dict)
    splits: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """A directional claim: ``method`` beats ``baseline`` on ``metric``.

    ``kind="paper"`` is the paper's own claim (quote the paper's number and setting in
    ``paper``); ``kind="sanity"`` is one the regulariser satisfies by its own objective.
    ``regime`` names the :class:`RegimeCheck` s the claim needs (protocol 2: every paper claim
    names at least one).
    """

    metric: str
    method: str
    baseline: str
    higher_is_better: bool
    text: str
    kind: ClaimKind = "paper"
    regime: tuple[str, ...] = ()
    paper: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("paper", "sanity"):
            raise ValueError(f"Claim kind: expected 'paper' or 'sanity', got {self.kind!r}")


@dataclass(frozen=True)
class RegimeCheck:
    """Is the failure the technique fixes present here? Read from ``SeedResult.regime[measure]``.

    The check's value is the mean of the per-seed measurements; it passes when the value is above
    ``threshold`` (``above=True``) or below it (``above=False``).
    """

    name: str
    measure: str
    description: str
    threshold: float
    above: bool = True

    def passed(self, value: float) -> bool:
        return value > self.threshold if self.above else value < self.threshold


@dataclass(frozen=True)
class Experiment:
    """A small reproduction of one or more techniques' claims on embedded data.

    Which techniques it tests is not stated here: the registry records name their experiment
    (``Record.experiment``), and :attr:`techniques` reads them, so the link is written once.

    ``run_seed(seed, quick)`` trains/evaluates every arm for one seed and returns a
    :class:`SeedResult`; ``quick`` asks for a shortened run (for ``--quick`` and ``demo``).
    ``protocol=2`` experiments (the default) are validated on construction: at least 10 seeds,
    every paper claim names an existing regime check, and every arm's tuning grid has the same
    size.
    """

    name: str
    summary: str
    setup: str
    claims: tuple[Claim, ...]
    run_seed: Callable[[int, bool], SeedResult]
    seeds: int = MIN_SEEDS
    quick_seeds: int = 2
    # Intra-op threads while it runs: the experiments train tiny models, whose steps are far
    # slower with several threads than with one (thread start-up dominates).
    threads: int = 1
    protocol: int = 2
    regime_checks: tuple[RegimeCheck, ...] = ()
    tuning: Mapping[str, Mapping[str, Sequence[Any]]] = field(default_factory=dict)
    selection: str = ""
    # Optional packages the run needs beyond torch (module names, e.g. "sklearn"): the runner
    # checks them before any work and names the pip extra that installs them.
    requires: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.protocol not in (1, 2):
            raise ValueError(f"{self.name}: protocol must be 1 or 2, got {self.protocol}")
        if self.protocol == 2:
            for problem in protocol_problems(self):
                raise ValueError(f"{self.name}: {problem}")

    @property
    def techniques(self) -> list[str]:
        """The keys of the registry records whose ``experiment`` is this one."""
        from inforeg.lab.registry import records

        return [r.key for r in records() if r.experiment == self.name]

    @property
    def arms(self) -> list[str]:
        """Arms named by the claims and the tuning grids, in first-seen order."""
        names: list[str] = []
        for c in self.claims:
            names += [c.method, c.baseline]
        names += list(self.tuning)
        return list(dict.fromkeys(names))


def protocol_problems(exp: Experiment) -> list[str]:
    """What keeps ``exp`` from meeting protocol 2 (empty when it does)."""
    problems: list[str] = []
    if exp.seeds < MIN_SEEDS:
        problems.append(f"seeds: protocol 2 needs at least {MIN_SEEDS}, got {exp.seeds}")
    if not any(c.kind == "paper" for c in exp.claims):
        problems.append("claims: no claim of kind 'paper'")
    checks = {r.name for r in exp.regime_checks}
    for c in exp.claims:
        if c.kind == "paper" and not c.regime:
            problems.append(f"claim {c.text!r}: a paper claim must name a regime check")
        for name in c.regime:
            if name not in checks:
                problems.append(f"claim {c.text!r}: unknown regime check {name!r}")
    missing = [a for a in exp.arms if a not in exp.tuning]
    if missing:
        problems.append(f"tuning: no grid for arm(s) {missing} (give every arm its own grid)")
    # An arm with nothing to tune (a closed-form or fixed baseline) declares an empty grid ``{}``;
    # the others get grids of one size.
    sizes = {arm: grid_size(grid) for arm, grid in exp.tuning.items() if grid}
    if len(set(sizes.values())) > 1:
        problems.append(f"tuning: grids differ in size {sizes} (equal budget for every arm)")
    if not exp.selection:
        problems.append("selection: state the selection rule")
    return problems
