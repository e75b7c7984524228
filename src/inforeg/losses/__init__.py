"""Prediction-level regularisers: entropy and KL families, distillation, comp-sum, attention entropy."""

from inforeg.losses.comp_sum import (
    AdversarialCompSumLoss,
    CompSumLoss,
    adversarial_comp_sum_loss,
    comp_sum_loss,
    comp_sum_tau,
    generalized_cross_entropy,
    margin_vector_distance,
)
from inforeg.losses.progressive_self_distillation import (
    ProgressiveSelfDistillation,
    progressive_self_distillation,
    pskd_alpha,
)

__all__ = [
    "AdversarialCompSumLoss",
    "CompSumLoss",
    "ProgressiveSelfDistillation",
    "adversarial_comp_sum_loss",
    "comp_sum_loss",
    "comp_sum_tau",
    "generalized_cross_entropy",
    "margin_vector_distance",
    "progressive_self_distillation",
    "pskd_alpha",
]
