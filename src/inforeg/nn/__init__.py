"""inforeg.nn: modules and parametrisations (see DESIGN.md).

Example:
    >>> import torch
    >>> from inforeg.nn import ScalarCodebookQuantizer
    >>> quantizer = ScalarCodebookQuantizer(n_latents=2, n_values=5)  # values -0.5 .. 0.5
    >>> quantizer(torch.tensor([[0.3, -0.1]])).quantized.tolist()
    [[0.25, 0.0]]
"""

from inforeg.nn.crrelu import CRReLU, crrelu
from inforeg.nn.feature_attention import CBAM, NonLocalBlock2d
from inforeg.nn.gaussian_latent_prior import DualLatentPrior, gaussian_latent_loss
from inforeg.nn.latent_quantization import (
    QuantizerOutput,
    ScalarCodebookQuantizer,
    qlae_param_groups,
    scalar_quantize,
)
from inforeg.nn.latent_query_alignment import (
    LatentQueryAlignmentLoss,
    LatentQueryPooling,
    latent_query_alignment,
)
from inforeg.nn.learned_proximal_network import (
    ICNNPotential,
    LearnedProximalNet,
    ProximalMatchingLoss,
    prox_matching_gamma,
    proximal_matching_loss,
)
from inforeg.nn.noise_mask_policy import (
    BetaNoiseMaskPolicy,
    beta_mask_log_prob,
    noise_mask_from_cells,
    reinforce_mask_loss,
    sample_mask_cells,
)
from inforeg.nn.wave_block import AttentiveWaveBlock, WaveBlock, wave_block
from inforeg.nn.weight_compander import WeightCompander, apply_weight_compander, compand

__all__ = [
    "QuantizerOutput",
    "ScalarCodebookQuantizer",
    "qlae_param_groups",
    "scalar_quantize",
    # lpn
    "ICNNPotential",
    "LearnedProximalNet",
    "ProximalMatchingLoss",
    "prox_matching_gamma",
    "proximal_matching_loss",
    # mds-s2
    "LatentQueryAlignmentLoss",
    "LatentQueryPooling",
    "latent_query_alignment",
    # pgnm
    "BetaNoiseMaskPolicy",
    "beta_mask_log_prob",
    "noise_mask_from_cells",
    "reinforce_mask_loss",
    "sample_mask_cells",
    # attentive-waveblock, crrelu, dlv-irn, weight-compander
    "CBAM",
    "AttentiveWaveBlock",
    "CRReLU",
    "DualLatentPrior",
    "NonLocalBlock2d",
    "WaveBlock",
    "WeightCompander",
    "apply_weight_compander",
    "compand",
    "crrelu",
    "gaussian_latent_loss",
    "wave_block",
]
