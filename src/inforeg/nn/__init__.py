"""inforeg.nn: modules and parametrisations (see DESIGN.md)."""

from inforeg.nn.latent_quantization import (
    QuantizerOutput,
    ScalarCodebookQuantizer,
    qlae_param_groups,
    scalar_quantize,
)

__all__ = ["QuantizerOutput", "ScalarCodebookQuantizer", "qlae_param_groups", "scalar_quantize"]
