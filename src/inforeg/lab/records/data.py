"""Registry records: data curricula (family ``data``)."""

from inforeg.lab.registry import Record

RECORDS = [
    Record(
        key="rdtf",
        title="RDTF: Resource-efficient Dual-mask Training Framework for Multi-frame Animated Sticker Generation",
        authors="Zhiqiang Yuan, Ting Zhang, Peixiang Luo, Ying Deng, et al.",
        year=2025,
        venue="arXiv preprint",
        family="data",
        spec="ot_optim_nn.md §12",
        arxiv="2503.17735",
        notes="No code repo located; curriculum formulas UNVERIFIED in spec. Venue beyond arXiv not verified.",
    ),
]
