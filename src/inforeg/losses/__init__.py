"""Prediction-level regularisers: entropy and KL families, distillation, comp-sum, attention entropy.

Example (uniform predictions over 4 classes have entropy ``log 4``):

    >>> import torch
    >>> from inforeg.losses import entropy_minimization
    >>> print(f"{float(entropy_minimization(torch.zeros(2, 4))):.4f}")
    1.3863
"""

from inforeg.losses.architecture_entropy import (
    AdaptiveDeviationScale,
    ArchitectureEntropyRegularizer,
    QuantizationNoise,
    architecture_entropy,
    architecture_entropy_weight,
    quantization_noise,
)
from inforeg.losses.attention_entropy import (
    ABMIL,
    AttentionEntropyMaximization,
    attention_entropy,
    masked_attention_softmax,
)
from inforeg.losses.comp_sum import (
    AdversarialCompSumLoss,
    CompSumLoss,
    adversarial_comp_sum_loss,
    comp_sum_loss,
    comp_sum_tau,
    generalized_cross_entropy,
    margin_vector_distance,
)
from inforeg.losses.depict_clustering import (
    DEPICTClusteringLoss,
    depict_clustering_loss,
    depict_target_distribution,
)
from inforeg.losses.extreme_multilabel import (
    DecoupledSoftmaxLoss,
    SoftTopKLoss,
    decoupled_softmax_loss,
    multilabel_softmax_loss,
    soft_top_k,
    soft_top_k_loss,
)
from inforeg.losses.generalized_category_discovery import (
    LegoGCDLoss,
    SimGCDLoss,
    cross_view_self_distillation,
    dual_view_kl,
    local_entropy_regularizer,
    mean_entropy_regularizer,
    simgcd_teacher_temperature,
)
from inforeg.losses.head_attention_entropy import (
    HeadwiseAttentionEntropyRegularizer,
    attention_row_entropy,
    head_attention_entropy_penalty,
)
from inforeg.losses.partial_ranking_distillation import (
    ContrastivePartialRankingDistillation,
    partial_ranking_distillation,
)
from inforeg.losses.progressive_self_distillation import (
    ProgressiveSelfDistillation,
    progressive_self_distillation,
    pskd_alpha,
)
from inforeg.losses.source_free_adaptation import (
    SourceFreeAdaptationLoss,
    class_ratio_prior_kl,
    entropy_minimization,
    predicted_class_ratio,
)

__all__ = [
    "ABMIL",
    "AttentionEntropyMaximization",
    "architecture_entropy",
    "architecture_entropy_weight",
    "attention_entropy",
    "attention_row_entropy",
    "masked_attention_softmax",
    "AdaptiveDeviationScale",
    "AdversarialCompSumLoss",
    "ArchitectureEntropyRegularizer",
    "CompSumLoss",
    "ContrastivePartialRankingDistillation",
    "DEPICTClusteringLoss",
    "DecoupledSoftmaxLoss",
    "SoftTopKLoss",
    "decoupled_softmax_loss",
    "multilabel_softmax_loss",
    "soft_top_k",
    "soft_top_k_loss",
    "HeadwiseAttentionEntropyRegularizer",
    "LegoGCDLoss",
    "ProgressiveSelfDistillation",
    "QuantizationNoise",
    "SimGCDLoss",
    "cross_view_self_distillation",
    "depict_clustering_loss",
    "depict_target_distribution",
    "dual_view_kl",
    "local_entropy_regularizer",
    "mean_entropy_regularizer",
    "simgcd_teacher_temperature",
    "SourceFreeAdaptationLoss",
    "class_ratio_prior_kl",
    "entropy_minimization",
    "predicted_class_ratio",
    "adversarial_comp_sum_loss",
    "comp_sum_loss",
    "comp_sum_tau",
    "generalized_cross_entropy",
    "head_attention_entropy_penalty",
    "margin_vector_distance",
    "partial_ranking_distillation",
    "progressive_self_distillation",
    "pskd_alpha",
    "quantization_noise",
]
