"""Registry records: diffusion sampling (family ``diffusion``)."""

from inforeg.lab.registry import Record

RECORDS = [
    Record(
        key="evodiff",
        title="EVODiff: Entropy-aware Variance Optimized Diffusion Inference",
        authors="Shigui Li, Wei Chen, Delu Zeng",
        year=2025,
        venue="NeurIPS 2025",
        family="diffusion",
        spec="ot_optim_nn.md §10",
        arxiv="2509.26096",
        code="ShiguiLi/EVODiff",
    ),
]
