"""Data far from the origin: kernels and distances are shift-invariant, so float32 results must
match float64 (the expansion ||x||^2 - 2 x.y + ||y||^2 lost most digits there: at an offset of
8000 the median bandwidth hit its eps floor and float32 HSIC was 0.0023 instead of 0.0480)."""

from __future__ import annotations

import pytest
import torch

from inforeg.dependence import cka, distance_correlation_sqr, hsic, mmd

D64 = torch.float64


def _pair(offset: float, d: int, n: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(d)
    x = torch.randn(n, d, generator=g, dtype=D64)
    y = x + 0.5 * torch.randn(n, d, generator=g, dtype=D64)
    return offset + x, offset + 0.1 + y


CALLS = {
    "hsic (median bandwidth)": lambda x, y: hsic(x, y),
    "cka (median bandwidth)": lambda x, y: cka(x, y),
    "mmd (median bandwidth)": lambda x, y: mmd(x, y),
    "mmd (bandwidth 1)": lambda x, y: mmd(x, y, bandwidth=1.0),
    "mmd (laplacian)": lambda x, y: mmd(x, y, kernel="laplacian", bandwidth=2.0),
    "dcor": lambda x, y: distance_correlation_sqr(x, y),
}


@pytest.mark.parametrize("d", [1, 8])
@pytest.mark.parametrize("offset", [1e3, 8e3])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_float32_far_from_the_origin_matches_float64(name, offset, d):
    x, y = _pair(offset, d)
    ref = float(CALLS[name](x - offset, y - offset))  # shift-invariant: the same statistic
    assert float(CALLS[name](x, y)) == pytest.approx(ref, rel=1e-9)  # float64 at the offset
    got = float(CALLS[name](x.float(), y.float()))
    # float32 rounds the offset inputs themselves (x + 8000 keeps ~4 decimals), so compare with
    # float64 on those same rounded inputs
    want = float(CALLS[name](x.float().double(), y.float().double()))
    assert got == pytest.approx(want, rel=2e-3, abs=1e-6)


def test_constant_variable_gives_zero_cka_and_a_finite_gradient():
    """A constant x has median distance 0, so the bandwidth is the eps floor: uncentred rounding
    noise of ~1e-16 in its squared distances then made random 0/1 kernel entries (cka -0.014,
    gradient 2.7e15 for d = 8)."""
    g = torch.Generator().manual_seed(0)
    x = torch.full((64, 8), 0.3, dtype=D64, requires_grad=True)
    y = torch.randn(64, 8, generator=g, dtype=D64)
    value = cka(x, y)
    (grad,) = torch.autograd.grad(value, x)
    assert float(value) == 0.0
    assert torch.isfinite(grad).all() and float(grad.abs().max()) == 0.0
