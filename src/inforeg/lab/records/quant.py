"""Registry records: quantisation (family ``quant``)."""

from inforeg.lab.registry import Record

RECORDS = [
    Record(
        key="q-vlm",
        title="Q-VLM: Post-training Quantization for Large Vision-Language Models",
        authors="Changyuan Wang, Ziwei Wang, Xiuwei Xu, Yansong Tang, et al.",
        year=2024,
        venue="NeurIPS 2024",
        family="quant",
        spec="remaining.md §12",
        arxiv="2410.08119",
        code="ChangyuanWang17/QVLM",
        api=(
            "inforeg.quant.entropy_block_partition",
            "inforeg.quant.fake_quantize_asymmetric",
            "inforeg.quant.quantized_activation_entropy",
            "inforeg.quant.dependency_entropy",
            "inforeg.quant.EntropyBlockPTQ",
        ),
        experiment="entropy-block-ptq-digits",
        status="implemented",
        notes=(
            "Quantiser, entropy and dependency-entropy proxies and the partition rule follow the "
            "authors' quant_modules.py; the Dec-2024 running-mean threshold is the default, the "
            "first release's constant (37) and the all-layer mean are options. The block-wise "
            "search objective is inforeg's design (the paper's was not read: UNVERIFIED), so the "
            "record stays implemented. Experiment (protocol 2, 10 seeds, 2-bit activations: 4 bits "
            "lacks the regime): entropy partition beats the uniform partition (+0.4 pt, held) and "
            "per-layer search (+1.1 pt, held); vs whole-network search inconclusive (close)."
        ),
    ),
]
