"""Prediction-level regularisers: entropy and KL families, distillation, comp-sum, attention entropy."""

from inforeg.losses.progressive_self_distillation import (
    ProgressiveSelfDistillation,
    progressive_self_distillation,
    pskd_alpha,
)

__all__ = ["ProgressiveSelfDistillation", "progressive_self_distillation", "pskd_alpha"]
