"""Registry records: optimal transport (family ``ot``)."""

from inforeg.core.registry import Record

RECORDS = [
    Record(
        key="sparse-ot",
        title="Sparsity-Constrained Optimal Transport",
        authors="Tianlin Liu, Joan Puigcerver, Mathieu Blondel",
        year=2022,
        venue="ICLR 2023",
        family="ot",
        spec="ot_optim_nn.md §1",
        arxiv="2209.15466",
        code="PythonOT/POT",
        notes="No dedicated repo; reference implementation contributed by the first author to POT (PR #459, ot/smooth.py).",
    ),
    Record(
        key="eot-shape-correspondence",
        title="Integrating Efficient Optimal Transport and Functional Maps For Unsupervised Shape Correspondence Learning",
        authors="Tung Le, Khai Nguyen, Shanlin Sun, Nhat Ho, et al.",
        year=2024,
        venue="CVPR 2024",
        family="ot",
        spec="ot_optim_nn.md §2",
        arxiv="2403.01781",
        code="Tungthanhlee/EOT-Correspondence",
    ),
]
