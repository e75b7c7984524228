"""SCAD / MCP proximal maps against brute-force minimisation on a grid (float64)."""

from __future__ import annotations

import pytest
import torch

from inforeg.optim import mcp_penalty, mcp_prox, scad_penalty, scad_prox
from tests._helpers import gradcheck64

GRID = torch.linspace(-8, 8, 160001, dtype=torch.float64)


def _brute(z: torch.Tensor, pen: torch.Tensor, step: float) -> torch.Tensor:
    obj = 0.5 * (GRID[None, :] - z[:, None]) ** 2 + step * pen[None, :]
    return GRID[obj.argmin(1)]


@pytest.mark.parametrize("step", [0.5, 1.0])
def test_scad_prox_matches_bruteforce(step):
    z = torch.linspace(-6, 6, 241, dtype=torch.float64)
    got = scad_prox(z, lam=1.0, a=3.7, step=step)
    ref = _brute(z, scad_penalty(GRID, 1.0, 3.7), step)
    assert (got - ref).abs().max() < 2e-4


@pytest.mark.parametrize("step", [0.5, 1.0])
def test_mcp_prox_matches_bruteforce(step):
    z = torch.linspace(-6, 6, 241, dtype=torch.float64)
    got = mcp_prox(z, lam=1.0, gamma=3.0, step=step)
    ref = _brute(z, mcp_penalty(GRID, 1.0, 3.0), step)
    assert (got - ref).abs().max() < 2e-4


def test_penalty_closed_form_values():
    t = torch.tensor([0.5, 2.0, 10.0], dtype=torch.float64)
    assert torch.allclose(
        scad_penalty(t, 1.0, 3.7),
        torch.tensor([0.5, (14.8 - 4 - 1) / 5.4, 4.7 / 2], dtype=torch.float64),
    )
    assert torch.allclose(
        mcp_penalty(t, 1.0, 3.0),
        torch.tensor([0.5 - 0.25 / 6, 2 - 4 / 6, 1.5], dtype=torch.float64),
    )


def test_properties_and_gradcheck():
    z = torch.tensor(
        [-5.0, -2.5, -1.5, -0.3, 0.2, 1.7, 2.9, 6.0], dtype=torch.float64, requires_grad=True
    )
    assert torch.equal(scad_prox(z, 1.0)[z.abs() > 3.7], z[z.abs() > 3.7])  # no bias for large z
    assert torch.equal(mcp_prox(z, 1.0)[z.abs() > 3.0], z[z.abs() > 3.0])
    assert (scad_prox(z, 1.0)[z.abs() <= 1.0] == 0).all()  # sparsity (soft threshold)
    gradcheck64(lambda v: scad_prox(v, 1.0), z)
    gradcheck64(lambda v: mcp_prox(v, 1.0), z)


def test_bad_input():
    z = torch.randn(4, dtype=torch.float64)
    with pytest.raises(ValueError, match="lam"):
        scad_prox(z, 0.0)
    with pytest.raises(ValueError, match="a"):
        scad_prox(z, 1.0, a=1.5, step=1.0)
    with pytest.raises(ValueError, match="gamma"):
        mcp_prox(z, 1.0, gamma=0.5)
    with pytest.raises(TypeError, match="z"):
        mcp_prox(torch.ones(3, dtype=torch.long), 1.0)
