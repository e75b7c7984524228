"""inforeg.nn: modules and parametrisations (see DESIGN.md).

Example:
    >>> import torch
    >>> from inforeg.nn import ScalarCodebookQuantizer
    >>> quantizer = ScalarCodebookQuantizer(n_latents=2, n_values=5)  # values -0.5 .. 0.5
    >>> quantizer(torch.tensor([[0.3, -0.1]])).quantized.tolist()
    [[0.25, 0.0]]
"""

from inforeg.nn.latent_quantization import (
    QuantizerOutput,
    ScalarCodebookQuantizer,
    qlae_param_groups,
    scalar_quantize,
)

__all__ = ["QuantizerOutput", "ScalarCodebookQuantizer", "qlae_param_groups", "scalar_quantize"]
