"""What an experiment is: a baseline and a technique, run per seed, with the paper's claims."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class SeedResult:
    """What one seed produced.

    ``metrics[method][metric]`` holds final scalar metrics; ``curves[curve][method]`` holds a
    sequence (e.g. per epoch) to be plotted as mean ± std over seeds.
    """

    metrics: dict[str, dict[str, float]]
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    """A directional claim of the paper: ``method`` beats ``baseline`` on ``metric``."""

    metric: str
    method: str
    baseline: str
    higher_is_better: bool
    text: str


@dataclass(frozen=True)
class Experiment:
    """A small reproduction of one technique's claim on embedded data.

    ``run_seed(seed, quick)`` trains/evaluates every method for one seed and returns a
    :class:`SeedResult`; ``quick`` asks for a shortened run (for ``--quick`` and ``demo``).
    """

    name: str
    technique: str
    summary: str
    setup: str
    claims: tuple[Claim, ...]
    run_seed: Callable[[int, bool], SeedResult]
    seeds: int = 5
    quick_seeds: int = 2
    # Intra-op threads while it runs: the experiments train tiny models, whose steps are far
    # slower with several threads than with one (thread start-up dominates).
    threads: int = 1
