"""inforeg: information-theoretic regularisers, divergences, dependence measures, estimators
and optimal-transport losses for PyTorch.

Subpackages (imported on first use): ``losses``, ``dependence``, ``estimators``, ``ot``, ``rl``,
``nn``, ``optim``, ``data``, ``experiments``, ``bench``, ``core``.
"""

from __future__ import annotations

import importlib
from typing import Any

from inforeg.core.checks import get_checks, set_checks
from inforeg.core.registry import FAMILIES

__version__ = "0.1.0"
__all__ = ["__version__", "get_checks", "set_checks"]

_SUBPACKAGES = {*FAMILIES, "core", "experiments", "bench"}


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"inforeg.{name}")
    raise AttributeError(f"module 'inforeg' has no attribute {name!r}")
