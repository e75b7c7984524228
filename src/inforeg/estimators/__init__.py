"""inforeg.estimators: entropy and mutual-information estimators (see DESIGN.md)."""

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
)
from inforeg.estimators.mi_screening import (
    ksg_mutual_information_per_feature,
    mutual_information_screening,
)
from inforeg.estimators.tsallis import QGaussian, tsallis_entropy

__all__ = [
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
