"""The asymmetric fake quantiser against an independent nearest-grid-point reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inforeg.quant import fake_quantize_asymmetric


def _reference(x: np.ndarray, lo: np.ndarray, hi: np.ndarray, bits: int) -> np.ndarray:
    """Nearest point of the grid {(k + round(s lo)) / s}, k = 0..2^b - 1, channel by channel."""
    out = np.empty_like(x)
    for c in range(x.shape[-1]):
        s = (2**bits - 1) / (hi[c] - lo[c])
        grid = (np.arange(2**bits) + np.round(s * lo[c])) / s
        idx = np.abs(x[..., c, None] - grid).argmin(-1)
        out[..., c] = grid[idx]
    return out


def test_two_bit_oracle():
    got = fake_quantize_asymmetric(torch.tensor([-0.4, 1.4, 3.7]), 0.0, 3.0, bits=2)
    assert torch.equal(got, torch.tensor([0.0, 1.0, 3.0]))


@pytest.mark.parametrize("bits", [3, 4, 8])
def test_per_channel_matches_reference(bits, dtype):
    g = torch.Generator().manual_seed(bits)
    x = torch.randn(50, 6, generator=g, dtype=torch.float64) * 2
    lo = -torch.rand(6, generator=g, dtype=torch.float64) * 3
    hi = torch.rand(6, generator=g, dtype=torch.float64) * 3 + 0.1
    got = fake_quantize_asymmetric(x.to(dtype), lo.to(dtype), hi.to(dtype), bits)
    assert got.dtype == dtype and got.shape == x.shape
    ref = _reference(
        x.to(dtype).double().numpy(),
        lo.to(dtype).double().numpy(),
        hi.to(dtype).double().numpy(),
        bits,
    )
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    np.testing.assert_allclose(got.double().numpy(), ref, rtol=0, atol=tol)


def test_error_at_most_half_a_step_inside_the_range():
    lo, hi, bits = torch.tensor([-1.3, 0.2]), torch.tensor([2.1, 0.9]), 4
    x = lo + (hi - lo) * torch.rand(10000, 2, generator=torch.Generator().manual_seed(0))
    step = (hi - lo) / (2**bits - 1)
    err = (fake_quantize_asymmetric(x.double(), lo.double(), hi.double(), bits) - x).abs()
    assert (err <= step / 2 + 1e-9).all()
    outside = fake_quantize_asymmetric(torch.tensor([[100.0, -100.0]]), lo, hi, bits)
    assert (outside[0, 0] - hi[0]).abs() <= step[0] / 2 and (outside[0, 1] - lo[1]).abs() <= step[
        1
    ] / 2


def test_constant_channel_and_half_precision_are_finite():
    x = torch.zeros(5, 3)
    out = fake_quantize_asymmetric(x, torch.zeros(3), torch.zeros(3), 4)  # dead ReLU channel
    assert torch.equal(out, x)
    xb = torch.randn(20, 3).to(torch.bfloat16)
    out_b = fake_quantize_asymmetric(xb, -2.0, 2.0, 4)
    assert out_b.dtype == torch.bfloat16
    ref = fake_quantize_asymmetric(xb.float(), -2.0, 2.0, 4)
    torch.testing.assert_close(out_b.float(), ref, rtol=1e-2, atol=1e-2)


def test_bad_input():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="bits"):
        fake_quantize_asymmetric(x, 0.0, 1.0, 0)
    with pytest.raises(ValueError, match="bits"):
        fake_quantize_asymmetric(x, 0.0, 1.0, 17)
    with pytest.raises(TypeError, match="bits"):
        fake_quantize_asymmetric(x, 0.0, 1.0, 4.0)
    with pytest.raises(ValueError, match="x_min"):
        fake_quantize_asymmetric(x, torch.zeros(4), torch.ones(3), 4)
    with pytest.raises(ValueError, match="x_max"):
        fake_quantize_asymmetric(x, torch.zeros(3), torch.ones(3, 1), 4)
    with pytest.raises(TypeError, match="x_min"):
        fake_quantize_asymmetric(x, "0", 1.0, 4)
    with pytest.raises(ValueError, match="x"):
        fake_quantize_asymmetric(torch.zeros(0, 3), 0.0, 1.0, 4)
    with pytest.raises(TypeError, match="x"):
        fake_quantize_asymmetric(torch.ones(3, dtype=torch.long), 0.0, 1.0, 4)
