"""inforeg.quant: post-training quantisation tools (see DESIGN.md).

Q-VLM's (Wang et al., NeurIPS 2024, arXiv 2410.08119) asymmetric fake quantiser, its entropy and
dependency-entropy proxies of quantised activations, the entropy-driven partition of layers into
blocks, and a block-wise range search built on them (:class:`EntropyBlockPTQ`).

Example (the first release's constant threshold, 37: a layer joins its predecessor's block when
the predecessor's proxy reaches it):

    >>> from inforeg.quant import entropy_block_partition
    >>> entropy_block_partition([40.0, 36.0, 38.0, 39.0], threshold=37.0)
    [0, 0, 1, 1]
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
