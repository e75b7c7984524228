"""The fast kernel sums (dependence/_kernel_sum.py) against a float64 brute force."""

from __future__ import annotations

import pytest
import torch

import inforeg.dependence._kernel_sum as ks
from inforeg.dependence import mmd
from tests._helpers import gradcheck64

CASES = [
    ("gaussian", [1.5]),
    ("gaussian", [0.7, 3.0]),
    ("laplacian", [2.0]),
    ("laplacian", [1.0, 4.0]),
    ("energy", None),
]


def _brute(x: torch.Tensor, y: torch.Tensor, kernel: str, bw: list[float] | None) -> torch.Tensor:
    d2 = (x[:, None, :] - y[None, :, :]).square().sum(-1)
    d = torch.where(d2 > 0, d2.clamp_min(1e-300).sqrt(), 0.0 * d2)
    if kernel == "energy":
        return -d.sum()
    assert bw is not None
    if kernel == "gaussian":
        return sum(torch.exp(-d2 / (2 * s * s)).sum() for s in bw)  # type: ignore[return-value]
    return sum(torch.exp(-d / s).sum() for s in bw)  # type: ignore[return-value]


@pytest.mark.parametrize(("kernel", "bw"), CASES)
@pytest.mark.parametrize("same", [True, False])
@pytest.mark.parametrize("chunk", [1, 5, 100])
@pytest.mark.parametrize("features", [6, 3])  # GEMM of augmented rows / direct differences
def test_values_and_grads_match_brute_force(monkeypatch, kernel, bw, same, chunk, features):
    monkeypatch.setattr(ks, "TILE_COLS", 7)  # several column tiles per row block
    g = torch.Generator().manual_seed(3)
    x = torch.randn(23, features, generator=g, dtype=torch.float64)
    x[5] = x[3]  # a tied pair: zero distance off the diagonal
    y = torch.randn(19, features, generator=g, dtype=torch.float64)
    x.requires_grad_(True)
    y.requires_grad_(True)
    bws = None if bw is None else torch.tensor(bw, dtype=torch.float64)
    out = ks.kernel_sum(x, None if same else y, kernel, bws, chunk)
    ref = _brute(x, x if same else y, kernel, bw)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-10)
    inputs = (x,) if same else (x, y)
    got = torch.autograd.grad(out, inputs)
    want = torch.autograd.grad(ref, inputs)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("kernel", "bw"), CASES)
def test_gradcheck(monkeypatch, kernel, bw):
    monkeypatch.setattr(ks, "TILE_COLS", 4)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(9, 5, generator=g, dtype=torch.float64)
    y = torch.randn(7, 5, generator=g, dtype=torch.float64) + 0.3
    bws = None if bw is None else torch.tensor(bw, dtype=torch.float64)
    gradcheck64(lambda a: ks.kernel_sum(a, None, kernel, bws, 4), x)
    gradcheck64(lambda a, b: ks.kernel_sum(a, b, kernel, bws, 3), x, y)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_mmd_fast_path_matches_generic_path(estimator):
    # A bandwidth that requires grad keeps mmd on the generic path: the two must agree.
    g = torch.Generator().manual_seed(5)
    x = torch.randn(30, 8, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(25, 8, generator=g, dtype=torch.float64) + 0.2
    fast = mmd(x, y, "gaussian", torch.tensor([1.0, 2.5], dtype=torch.float64), estimator, 7)
    bw = torch.tensor([1.0, 2.5], dtype=torch.float64, requires_grad=True)
    slow = mmd(x, y, "gaussian", bw, estimator, 7)
    torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
    (gf,) = torch.autograd.grad(fast, x)
    (gs,) = torch.autograd.grad(slow, x)
    torch.testing.assert_close(gf, gs, rtol=1e-10, atol=1e-12)


def test_float32_large_norms_stay_finite():
    # Far from the origin the expansion cancels; the clamp keeps kernels <= 1 and sums finite.
    g = torch.Generator().manual_seed(6)
    x = torch.randn(40, 16, generator=g) + 1000.0
    out = ks.kernel_sum(x, None, "gaussian", torch.tensor([1.0]), 8)
    assert torch.isfinite(out) and float(out) <= 40 * 40 + 1e-3


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "energy"])
def test_half_inputs_compute_in_float32(kernel):
    # bfloat16 in, float32 inside (compute_dtype): same value as the float32 call on the same
    # (rounded) numbers, returned in bfloat16; the gradient reaches the bfloat16 input.
    g = torch.Generator().manual_seed(7)
    x = torch.randn(40, 8, generator=g).to(torch.bfloat16).requires_grad_(True)
    y = (torch.randn(30, 8, generator=g) + 0.5).to(torch.bfloat16)
    bw = None if kernel == "energy" else 2.0
    out = mmd(x, y, kernel, bw, "unbiased", chunk_size=16)
    ref = mmd(x.detach().float(), y.float(), kernel, bw, "unbiased", chunk_size=16)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.to(torch.bfloat16).float())
    (gx,) = torch.autograd.grad(out, x)
    assert gx.dtype == torch.bfloat16 and bool(torch.isfinite(gx).all())
