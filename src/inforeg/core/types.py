"""Shared type aliases."""

from __future__ import annotations

from typing import Literal

Reduction = Literal["mean", "sum", "none"]
Family = Literal[
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
]
Status = Literal["planned", "implemented", "verified", "reproduced"]
