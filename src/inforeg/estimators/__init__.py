"""inforeg.estimators: entropy and mutual-information estimators (see DESIGN.md).

Example (Tsallis entropy of a fair coin: ``(1 - 2 / 4) / (2 - 1)`` at q = 2, ``log 2`` at q = 1):

    >>> import torch
    >>> from inforeg.estimators import tsallis_entropy
    >>> p = torch.tensor([0.5, 0.5], dtype=torch.float64)
    >>> [round(float(tsallis_entropy(p, q)), 4) for q in (2.0, 1.0)]
    [0.5, 0.6931]
"""

from inforeg.estimators.diffusion_spectral import (
    DiffusionSpectralEntropy,
    diffusion_eigenvalues,
    diffusion_spectral_entropy,
    diffusion_spectral_entropy_with_bound,
    diffusion_spectral_mutual_information,
)
from inforeg.estimators.infomec import InfoMEC, infomec, normalized_mutual_information_matrix
from inforeg.estimators.knn import (
    kl_entropy,
    ksg_mutual_information,
    ksg_mutual_information_classif,
    ksg_mutual_information_per_feature,
)
from inforeg.estimators.manifold_entropy import (
    EmbeddingMemory,
    ManifoldEntropyLoss,
    disomap_loss,
    dlle_loss,
    isometric_mix,
    nearest_neighbor_entropy,
)
from inforeg.estimators.mi_screening import mutual_information_screening
from inforeg.estimators.tsallis import QGaussian, tsallis_entropy

__all__ = [
    "EmbeddingMemory",
    "ManifoldEntropyLoss",
    "disomap_loss",
    "dlle_loss",
    "isometric_mix",
    "nearest_neighbor_entropy",
    "InfoMEC",
    "infomec",
    "normalized_mutual_information_matrix",
    "QGaussian",
    "ksg_mutual_information_per_feature",
    "mutual_information_screening",
    "tsallis_entropy",
    "DiffusionSpectralEntropy",
    "diffusion_eigenvalues",
    "diffusion_spectral_entropy",
    "diffusion_spectral_entropy_with_bound",
    "diffusion_spectral_mutual_information",
    "kl_entropy",
    "ksg_mutual_information",
    "ksg_mutual_information_classif",
]

from inforeg.estimators.adaptive_binning import (  # noqa: E402
    InformationPlane,
    KDEInformation,
    adaptive_bin_edges,
    adaptive_binning_mutual_information,
    information_plane,
    kde_mutual_information,
)

__all__ += [
    "InformationPlane",
    "KDEInformation",
    "adaptive_bin_edges",
    "adaptive_binning_mutual_information",
    "information_plane",
    "kde_mutual_information",
]
