"""Registry records: estimators (family ``estimators``)."""

from inforeg.core.registry import Record

RECORDS = [
    Record(
        key="dse",
        title="Assessing Neural Network Representations During Training Using Noise-Resilient Diffusion Spectral Entropy",
        authors="Danqi Liao, Chen Liu, Benjamin W. Christensen, Alexander Tong, et al.",
        year=2023,
        venue="IEEE CISS 2024",
        family="estimators",
        spec="dependence_and_estimators.md §1",
        arxiv="2312.04823",
        code="ChenLiu-1996/DiffusionSpectralEntropy",
        notes="Earlier version at ICML 2023 TAG-ML workshop ('...Using Data Diffusion Spectra'); estimator also on PyPI as dse-dsmi.",
    ),
    Record(
        key="mee",
        title="Combating Mode Collapse in GANs via Manifold Entropy Estimation",
        authors="Haozhe Liu, Bing Li, Haoqian Wu, Hanbang Liang, et al.",
        year=2022,
        venue="AAAI 2023",
        family="estimators",
        spec="dependence_and_estimators.md §2",
        arxiv="2208.12055",
        code="HaozheLiu-ST/MEE",
        notes="AAAI-23 title per spec: '...via Offline Manifold Entropy Estimation'.",
    ),
    Record(
        key="high-dim-thesis",
        title="Contributions to Robust and Efficient Methods for Analysis of High Dimensional Data",
        authors="",
        year=2025,
        venue="thesis",
        family="estimators",
        spec="dependence_and_estimators.md §10",
        notes="unverified: thesis not located (spec and searches); author, institution and URL unknown. Year from techniques.md.",
    ),
    Record(
        key="adaptive-mi",
        title="Adaptive Estimators Show Information Compression in Deep Neural Networks",
        authors="Ivan Chelombiev, Conor Houghton, Cian O'Donnell",
        year=2019,
        venue="ICLR 2019",
        family="estimators",
        spec="dependence_and_estimators.md §8",
        arxiv="1902.09037",
        code="ivansche/adaptive_estimators",
        notes="Repo is a fork of the Shwartz-Ziv/Tishby IDNNs code (spec).",
    ),
]
