"""The streamed centred kernel products of HSIC/CKA (dependence/_kernel_sum.py) against dense
float64 definitions: tr(K H L H) and Song et al.'s unbiased bracket, values and gradients."""

from __future__ import annotations

import pytest
import torch

import inforeg.dependence._kernel_sum as ks
from inforeg.dependence import cka, hsic
from tests._helpers import gradcheck64


def _gram(z: torch.Tensor, kernel: str, bw: list[float] | None) -> torch.Tensor:
    if kernel == "linear":
        return z @ z.T
    assert bw is not None
    d2 = (z[:, None, :] - z[None, :, :]).square().sum(-1)
    if kernel == "gaussian":
        return sum(torch.exp(-d2 / (2 * s * s)) for s in bw)  # type: ignore[return-value]
    d = torch.where(d2 > 0, d2.clamp_min(1e-300).sqrt(), 0.0 * d2)
    return sum(torch.exp(-d / s) for s in bw)  # type: ignore[return-value]


def _centred(k: torch.Tensor, l_: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """tr(K H L H) (biased), or Song et al. 2012's bracket n (n - 3) HSIC_u (unbiased)."""
    n = k.shape[0]
    if not unbiased:
        h = torch.eye(n, dtype=k.dtype) - 1.0 / n
        return torch.trace(k @ h @ l_ @ h)
    off = 1.0 - torch.eye(n, dtype=k.dtype)
    kt, lt = k * off, l_ * off
    one = torch.ones(n, dtype=k.dtype)
    return (
        torch.trace(kt @ lt)
        + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
        - 2.0 / (n - 2) * (one @ kt @ lt @ one)
    )


SPECS = [
    ("gaussian", [1.5], "gaussian", [2.0]),
    ("gaussian", [0.7, 3.0], "laplacian", [2.0]),
    ("laplacian", [1.0, 4.0], "linear", None),
    ("linear", None, "gaussian", [1.0]),
]


def _inputs(
    n: int, dx: int, dy: int, seed: int, tie: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dx, generator=g, dtype=torch.float64)
    if tie:
        x[5] = x[3]  # a tied pair: zero distance off the diagonal
    y = torch.tanh(x[:, :1]) + 0.5 * torch.randn(n, dy, generator=g, dtype=torch.float64)
    return x, y


@pytest.mark.parametrize(("kx", "bx", "ky", "by"), SPECS)
@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize(("dx", "dy"), [(6, 2), (3, 7)])  # GEMM / direct distances on each side
@pytest.mark.parametrize("chunk", [1, 5, 100])
def test_products_and_grads_match_dense(monkeypatch, kx, bx, ky, by, unbiased, dx, dy, chunk):
    monkeypatch.setattr(ks, "TILE_COLS", 7)  # several column tiles per row block
    x, y = _inputs(23, dx, dy, seed=dx + 10 * chunk)
    x.requires_grad_(True)
    y.requires_grad_(True)
    bws = tuple(None if b is None else torch.tensor(b, dtype=torch.float64) for b in (bx, by))
    out = ks.centred_kernel_products(x, y, (kx, ky), bws, unbiased, True, chunk)
    k, l_ = _gram(x, kx, bx), _gram(y, ky, by)
    ref = torch.stack([_centred(a, b, unbiased) for a, b in ((k, l_), (k, k), (l_, l_))])
    torch.testing.assert_close(out, ref, rtol=1e-11, atol=1e-11)
    # one product alone (HSIC's path: weights formed in place), and the three mixed (CKA's)
    only = ks.centred_kernel_products(x, y, (kx, ky), bws, unbiased, False, chunk)
    torch.testing.assert_close(only, ref[:1], rtol=1e-11, atol=1e-11)
    w = torch.tensor([0.7, -1.3, 0.4], dtype=torch.float64)
    for got, want in ((only.sum(), ref[0]), ((out * w).sum(), (ref * w).sum())):
        ga = torch.autograd.grad(got, (x, y))
        gb = torch.autograd.grad(want, (x, y), retain_graph=True)
        for a, b in zip(ga, gb, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("unbiased", [False, True])
@pytest.mark.parametrize("which", ["x", "y"])
def test_grad_of_one_input(monkeypatch, unbiased, which):
    # only one input needs a gradient (the usual HSIC-bottleneck case): the other is skipped
    monkeypatch.setattr(ks, "TILE_COLS", 5)
    x, y = _inputs(17, 6, 5, seed=8)
    target = x if which == "x" else y
    target.requires_grad_(True)
    bws = (torch.tensor([1.2], dtype=torch.float64), torch.tensor([0.9], dtype=torch.float64))
    out = ks.centred_kernel_products(x, y, ("gaussian", "gaussian"), bws, unbiased, False, 4)
    ref = _centred(_gram(x, "gaussian", [1.2]), _gram(y, "gaussian", [0.9]), unbiased)
    (got,) = torch.autograd.grad(out.sum(), target)
    (want,) = torch.autograd.grad(ref, target)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("kx", "bx", "ky", "by"), SPECS)
@pytest.mark.parametrize("unbiased", [False, True])
def test_gradcheck(monkeypatch, kx, bx, ky, by, unbiased):
    monkeypatch.setattr(ks, "TILE_COLS", 4)
    x, y = _inputs(9, 5, 2, seed=9, tie=False)  # the Laplacian has a kink at d = 0
    bws = tuple(None if b is None else torch.tensor(b, dtype=torch.float64) for b in (bx, by))
    gradcheck64(
        lambda a, b: ks.centred_kernel_products(a, b, (kx, ky), bws, unbiased, True, 3), x, y
    )


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_fast_path_matches_generic_path(estimator):
    # A bandwidth that requires grad keeps hsic/cka on the generic (checkpointed) path.
    x, y = _inputs(30, 8, 3, seed=10)
    x.requires_grad_(True)
    for fn in (hsic, cka):
        fast = fn(x, y, "gaussian", "laplacian", 1.5, [0.5, 2.0], estimator, 7)
        bw = torch.tensor([1.5], dtype=torch.float64, requires_grad=True)
        slow = fn(x, y, "gaussian", "laplacian", bw, [0.5, 2.0], estimator, 7)
        torch.testing.assert_close(fast, slow, rtol=1e-12, atol=1e-12)
        (gf,) = torch.autograd.grad(fast, x)
        (gs,) = torch.autograd.grad(slow, x)
        torch.testing.assert_close(gf, gs, rtol=1e-10, atol=1e-12)


def test_float32_matches_float64():
    # float32 inputs: row sums and totals are accumulated in float64, so the centring's
    # cancellation costs little; at n = 600 (several tiles) HSIC stays within 1e-4 relative.
    x, y = _inputs(600, 16, 16, seed=11)
    want = hsic(x, y, bandwidth_x=4.0, bandwidth_y=4.0, chunk_size=128)
    got = hsic(x.float(), y.float(), bandwidth_x=4.0, bandwidth_y=4.0, chunk_size=128)
    assert got.dtype == torch.float32
    assert abs(float(got) - float(want)) <= 1e-4 * abs(float(want))
