"""inforeg.estimators: entropy and mutual-information estimators (see DESIGN.md)."""

from inforeg.estimators.knn import (
    kl_entropy,
    ksg_mutual_information,
    ksg_mutual_information_classif,
)

__all__ = [
    "kl_entropy",
    "ksg_mutual_information",
    "ksg_mutual_information_classif",
]
