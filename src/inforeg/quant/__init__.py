"""inforeg.quant: post-training quantisation tools (see DESIGN.md).

Q-VLM's (Wang et al., NeurIPS 2024, arXiv 2410.08119) asymmetric fake quantiser, its entropy and
dependency-entropy proxies of quantised activations, the entropy-driven partition of layers into
blocks, and a block-wise range search built on them (:class:`EntropyBlockPTQ`).
"""

from inforeg.quant.block_ptq import EntropyBlockPTQ
from inforeg.quant.entropy_proxy import (
    dependency_entropy,
    entropy_block_partition,
    quantized_activation_entropy,
)
from inforeg.quant.fake_quant import fake_quantize_asymmetric

__all__ = [
    "EntropyBlockPTQ",
    "dependency_entropy",
    "entropy_block_partition",
    "fake_quantize_asymmetric",
    "quantized_activation_entropy",
]
