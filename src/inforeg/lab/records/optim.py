"""Registry records: optimisation (family ``optim``)."""

from inforeg.lab.registry import Record

RECORDS = [
    Record(
        key="maid",
        title="An adaptively inexact first-order method for bilevel optimization with application to hyperparameter learning",
        authors="Mohammad Sadegh Salehi, Subhadip Mukherjee, Lindon Roberts, Matthias J. Ehrhardt",
        year=2023,
        venue="SIAM Journal on Mathematics of Data Science (SIMODS)",
        family="optim",
        spec="ot_optim_nn.md §5",
        arxiv="2308.10098",
        code="MohammadSadeghSalehi/MAID",
        notes="Journal venue taken from spec (SIMODS).",
    ),
    Record(
        key="compositional-nll",
        title="Learning Unnormalized Statistical Models via Compositional Optimization",
        authors="Wei Jiang, Jiayu Qin, Lingyu Wu, Changyou Chen, et al.",
        year=2023,
        venue="ICML 2023",
        family="optim",
        spec="ot_optim_nn.md §4",
        arxiv="2306.07485",
        notes="No official code found.",
    ),
]
