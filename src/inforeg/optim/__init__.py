"""inforeg.optim: proximal maps and optimisation helpers (see DESIGN.md).

Example (firm thresholding with lambda = 1, gamma = 3: ``(|z| - 1) / (1 - 1/3)`` up to 3):

    >>> import torch
    >>> from inforeg.optim import mcp_prox
    >>> z = torch.tensor([0.5, 1.5, 3.0, 6.0], dtype=torch.float64)
    >>> [round(v, 4) for v in mcp_prox(z, 1.0).tolist()]
    [0.0, 0.75, 3.0, 6.0]
"""

from inforeg.optim.nonconvex_prox import mcp_penalty, mcp_prox, scad_penalty, scad_prox

__all__ = ["mcp_penalty", "mcp_prox", "scad_penalty", "scad_prox"]
