"""inforeg.optim: proximal maps and optimisation helpers (see DESIGN.md).

SCAD/MCP proximal maps, the compositional NLL of unnormalised models (Jiang et al., ICML 2023)
and the MAID adaptively inexact bilevel method (Salehi et al., SIMODS).
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
