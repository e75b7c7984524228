"""inforeg.optim: proximal maps and optimisation helpers (see DESIGN.md)."""

from inforeg.optim.nonconvex_prox import mcp_penalty, mcp_prox, scad_penalty, scad_prox

__all__ = ["mcp_penalty", "mcp_prox", "scad_penalty", "scad_prox"]
