"""Experiments: one small reproduction per technique, found by name.

Every module in this package that defines ``EXPERIMENT`` (an :class:`Experiment`) or
``EXPERIMENTS`` (a sequence of them) is registered automatically; adding an experiment means
adding one module. Modules must not import heavy optional packages at import time.
"""

from __future__ import annotations

import importlib
import pkgutil

from inforeg.experiments.base import Claim, Experiment, SeedResult

_INFRASTRUCTURE = {"base", "runner", "training", "metrics"}


def registry() -> dict[str, Experiment]:
    """All experiments by name."""
    found: dict[str, Experiment] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in _INFRASTRUCTURE or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        exps = list(getattr(module, "EXPERIMENTS", ()))
        if hasattr(module, "EXPERIMENT"):
            exps.append(module.EXPERIMENT)
        for exp in exps:
            if exp.name in found:
                raise ValueError(f"duplicate experiment name {exp.name!r} in {module.__name__}")
            found[exp.name] = exp
    return found


def get(name: str) -> Experiment:
    """The experiment called ``name`` (KeyError with close matches otherwise)."""
    exps = registry()
    if name not in exps:
        import difflib

        close = difflib.get_close_matches(name, exps, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise KeyError(f"no experiment {name!r}{hint}; `inforeg run --list` shows them")
    return exps[name]


__all__ = ["Claim", "Experiment", "SeedResult", "get", "registry"]
