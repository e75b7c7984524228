"""Optimal transport: log-domain Sinkhorn, Sinkhorn divergence, smooth and sparsity-constrained OT,
1-D / sliced Wasserstein and the SW correspondence loss."""

from inforeg.ot._common import OTResult
from inforeg.ot.divergence import SinkhornDivergence, epsilon_schedule, sinkhorn_divergence
from inforeg.ot.sinkhorn import Sinkhorn, sinkhorn

__all__ = [
    "OTResult",
    "Sinkhorn",
    "SinkhornDivergence",
    "epsilon_schedule",
    "sinkhorn",
    "sinkhorn_divergence",
]
