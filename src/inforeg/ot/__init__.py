r"""Optimal transport: log-domain Sinkhorn, Sinkhorn divergence, smooth and sparsity-constrained OT,
1-D / sliced Wasserstein and the SW correspondence loss.

One log-domain Sinkhorn loop (``_sinkhorn_loop.py``) serves :func:`sinkhorn`,
:func:`sinkhorn_divergence` and :func:`log_sinkhorn_correspondence`.

Example:
    Entropic OT between two points and two points, uniform weights: the plan is
    :math:`\tfrac12` on the cheap pairs over :math:`1 + e^{-1/\varepsilon}`.

    >>> import torch
    >>> from inforeg import ot
    >>> c = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    >>> ot.sinkhorn(None, None, c, epsilon=0.5).plan
    tensor([[0.4404, 0.0596],
            [0.0596, 0.4404]], dtype=torch.float64)
"""

from inforeg.ot._common import OTResult
from inforeg.ot._sinkhorn_loop import epsilon_schedule
from inforeg.ot.divergence import SinkhornDivergence, sinkhorn_divergence
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
