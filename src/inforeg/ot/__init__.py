"""Optimal transport: log-domain Sinkhorn, Sinkhorn divergence, smooth and sparsity-constrained OT,
1-D / sliced Wasserstein and the SW correspondence loss."""

from inforeg.ot._common import OTResult
from inforeg.ot.divergence import SinkhornDivergence, epsilon_schedule, sinkhorn_divergence
from inforeg.ot.sinkhorn import Sinkhorn, sinkhorn
from inforeg.ot.sliced import (
    LogSinkhorn,
    SlicedWassersteinLoss,
    log_sinkhorn_correspondence,
    max_sliced_wasserstein,
    random_projections,
    sliced_wasserstein,
    wasserstein_1d,
)
from inforeg.ot.smooth import SmoothOT, smooth_ot
from inforeg.ot.sparse import SparsityConstrainedOT, delta_k, projection_sparse_simplex, sparse_ot

__all__ = [
    "LogSinkhorn",
    "OTResult",
    "SlicedWassersteinLoss",
    "SmoothOT",
    "SparsityConstrainedOT",
    "delta_k",
    "projection_sparse_simplex",
    "smooth_ot",
    "sparse_ot",
    "log_sinkhorn_correspondence",
    "max_sliced_wasserstein",
    "random_projections",
    "sliced_wasserstein",
    "wasserstein_1d",
    "Sinkhorn",
    "SinkhornDivergence",
    "epsilon_schedule",
    "sinkhorn",
    "sinkhorn_divergence",
]
