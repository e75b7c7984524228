"""inforeg.dependence: dependence and divergence measures used as batch-statistic losses.

MMD, HSIC/CKA, the distance covariance family (dCov, dCor, JdCov, CCdCov), Cauchy-Schwarz
divergence (CS-IB), von Neumann entropy, InfoNCE/MINE/Wasserstein dependency, VIB (MID) and MCR.

Example (an exact linear relation has distance correlation 1):

    >>> import torch
    >>> from inforeg.dependence import distance_correlation_sqr
    >>> x = torch.tensor([0.0, 1.0, 2.0, 4.0, 7.0], dtype=torch.float64)
    >>> print(f"{float(distance_correlation_sqr(x, 3 * x - 1)):.4f}")
    1.0000
"""

from inforeg.dependence.cauchy_schwarz import (
    CSIBLoss,
    cauchy_schwarz_divergence,
    conditional_cs_divergence,
    cs_quadratic_mi,
)
from inforeg.dependence.contrastive import (
    MINE,
    InfoNCELoss,
    WDMOutput,
    gradient_penalty,
    infonce,
    mine_lower_bound,
    spectral_normalize,
    wasserstein_dependency,
)
from inforeg.dependence.distance_covariance import (
    DistanceCorrelationLoss,
    distance_correlation,
    distance_correlation_sqr,
    distance_covariance,
    distance_covariance_sqr,
)
from inforeg.dependence.fairness import (
    DistanceCovarianceFairness,
    concatenated_distance_covariance,
    encode_attributes,
    generalized_jsd,
    joint_distance_covariance,
    smallest_lambda_reaching,
)
from inforeg.dependence.hsic import HSICLoss, cka, hsic
from inforeg.dependence.mcr import MCRRegularizer, jensen_shannon_logits, permutation_jsd
from inforeg.dependence.mmd import MMDLoss, mmd
from inforeg.dependence.modality_alignment import ModalityAlignmentLoss, modality_alignment_mmd
from inforeg.dependence.vib import MIDLoss, VIBHead, VIBOutput, vib_kl
from inforeg.dependence.von_neumann import VonNeumannEntropy, von_neumann_entropy

__all__ = [
    "ModalityAlignmentLoss",
    "modality_alignment_mmd",
    "MCRRegularizer",
    "jensen_shannon_logits",
    "permutation_jsd",
    "MIDLoss",
    "VIBHead",
    "VIBOutput",
    "vib_kl",
    "MINE",
    "InfoNCELoss",
    "WDMOutput",
    "gradient_penalty",
    "infonce",
    "mine_lower_bound",
    "spectral_normalize",
    "wasserstein_dependency",
    "VonNeumannEntropy",
    "von_neumann_entropy",
    "CSIBLoss",
    "cauchy_schwarz_divergence",
    "conditional_cs_divergence",
    "cs_quadratic_mi",
    "DistanceCovarianceFairness",
    "concatenated_distance_covariance",
    "encode_attributes",
    "generalized_jsd",
    "joint_distance_covariance",
    "smallest_lambda_reaching",
    "HSICLoss",
    "cka",
    "hsic",
    "MMDLoss",
    "mmd",
    "DistanceCorrelationLoss",
    "distance_correlation",
    "distance_correlation_sqr",
    "distance_covariance",
    "distance_covariance_sqr",
]
