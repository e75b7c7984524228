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
            "first release's constant (37) and the all-layer mean are options. The paper (Sec. 3.2, "
            "4.1, read in a full-text copy) searches each block's rounding functions jointly on "
            "the squared L2 error of the block output (Eq. 3; p=2 here), caps blocks at 3 layers "
            "(max_block=3), uses percentile clipping (1.0 to 0.98) and states its partition as "
            "summed conditional entropy above (k_s - k_r) h_0 (Eq. 7, h_0 not given); inforeg "
            "keeps the code's partition and range factors and approximates the joint search by "
            "coordinate descent, so the record stays implemented. Experiment (protocol 2, 10 seeds, 2-bit activations: 4 bits "
            "lacks the regime): entropy partition beats the uniform partition (+0.4 pt, held) and "
            "per-layer search (+1.1 pt, held); vs whole-network search inconclusive (close)."
        ),
    ),
]
