"""inforeg.optim: proximal maps and optimisation helpers (see DESIGN.md).

SCAD/MCP proximal maps, the compositional NLL of unnormalised models (Jiang et al., ICML 2023)
and the MAID adaptively inexact bilevel method (Salehi et al., SIMODS).

Example (firm thresholding with lambda = 1, gamma = 3: ``(|z| - 1) / (1 - 1/3)`` up to 3):

    >>> import torch
    >>> from inforeg.optim import mcp_prox
    >>> z = torch.tensor([0.5, 1.5, 3.0, 6.0], dtype=torch.float64)
    >>> [round(v, 4) for v in mcp_prox(z, 1.0).tolist()]
    [0.0, 0.75, 3.0, 6.0]
"""

from inforeg.optim.bilevel import (
    MAID,
    HypergradientOutput,
    gradient_descent_solver,
    inexact_hypergradient,
)
from inforeg.optim.compositional_nll import (
    CompositionalNLL,
    CompositionalNLLOutput,
    compositional_nll,
)
from inforeg.optim.nonconvex_prox import mcp_penalty, mcp_prox, scad_penalty, scad_prox

__all__ = [
    "MAID",
    "CompositionalNLL",
    "CompositionalNLLOutput",
    "HypergradientOutput",
    "compositional_nll",
    "gradient_descent_solver",
    "inexact_hypergradient",
    "mcp_penalty",
    "mcp_prox",
    "scad_penalty",
    "scad_prox",
]
