"""Registry records: robustness certification (family ``robust``)."""

from inforeg.lab.registry import Record

RECORDS = [
    Record(
        key="dual-randomized-smoothing",
        title="Mitigating the Curse of Dimensionality for Certified Robustness via Dual Randomized Smoothing",
        authors="Song Xia, Yi Yu, Xudong Jiang, Henghui Ding",
        year=2024,
        venue="ICLR 2024",
        family="robust",
        spec="ot_optim_nn.md §9",
        arxiv="2404.09586",
        code="xiasong0501/DRS",
    ),
]
