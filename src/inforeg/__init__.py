"""inforeg: information-theoretic regularisers, divergences, dependence measures, estimators
and optimal-transport losses for PyTorch.

The library is the technique families (imported on first use) plus ``core`` (shared validation,
reductions, pairwise kernels, distributed gather). ``inforeg.lab`` is the workbench that checks it
(CLI, method registry, experiments, benchmarks); no library module imports it.

Example (the entropy of uniform logits over 4 tokens is ``log 4``):

    >>> import torch, inforeg
    >>> print(f"{float(inforeg.rl.token_entropy(torch.zeros(4))):.4f}")
    1.3863
"""

from __future__ import annotations

import importlib
from typing import Any

from inforeg.core.checks import get_checks, set_checks

__version__ = "0.1.0"

#: The technique families, one subpackage each.
FAMILIES: tuple[str, ...] = (
    "losses",
    "dependence",
    "estimators",
    "ot",
    "rl",
    "nn",
    "optim",
    "robust",
    "diffusion",
    "quant",
    "data",
)

__all__ = ["FAMILIES", "__version__", "get_checks", "set_checks"]

_SUBPACKAGES = frozenset({*FAMILIES, "core", "lab", "integrations"})


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return importlib.import_module(f"inforeg.{name}")
    raise AttributeError(f"module 'inforeg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBPACKAGES})
