"""Experiments: one small reproduction per technique, found by name.

Every module in this package that defines ``EXPERIMENT`` (an :class:`Experiment`) or
``EXPERIMENTS`` (a sequence of them) is registered automatically; adding an experiment means
adding one module. Modules must not import heavy optional packages at import time.
"""

from __future__ import annotations

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.plugins import discover, lookup

_INFRASTRUCTURE = (
    "base",
    "runner",
    "report",
    "protocol",
    "progress",
    "training",
    "metrics",
    "grpo_toy",
)


def registry() -> dict[str, Experiment]:
    """All experiments by name."""
    return discover(__name__, ("EXPERIMENT", "EXPERIMENTS"), skip=_INFRASTRUCTURE)


def get(name: str) -> Experiment:
    """The experiment called ``name`` (KeyError with close matches otherwise)."""
    exp: Experiment = lookup(registry(), name, "experiment")
    return exp


__all__ = ["Claim", "Experiment", "RegimeCheck", "SeedResult", "get", "registry"]
