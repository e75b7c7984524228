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
        spec="ot_optim_nn.md §11",
        arxiv="2410.08119",
        code="ChangyuanWang17/QVLM",
    ),
]
