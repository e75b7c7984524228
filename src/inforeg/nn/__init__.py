"""inforeg.nn: modules and parametrisations (see DESIGN.md)."""

from inforeg.nn.crrelu import CRReLU, crrelu
from inforeg.nn.feature_attention import CBAM, NonLocalBlock2d
from inforeg.nn.gaussian_latent_prior import DualLatentPrior, gaussian_latent_loss
from inforeg.nn.latent_quantization import (
    QuantizerOutput,
    ScalarCodebookQuantizer,
    qlae_param_groups,
    scalar_quantize,
)
from inforeg.nn.wave_block import AttentiveWaveBlock, WaveBlock, wave_block
from inforeg.nn.weight_compander import WeightCompander, apply_weight_compander, compand

__all__ = [
    "CBAM",
    "AttentiveWaveBlock",
    "CRReLU",
    "DualLatentPrior",
    "NonLocalBlock2d",
    "QuantizerOutput",
    "ScalarCodebookQuantizer",
    "WaveBlock",
    "WeightCompander",
    "apply_weight_compander",
    "compand",
    "crrelu",
    "gaussian_latent_loss",
    "qlae_param_groups",
    "scalar_quantize",
    "wave_block",
]
