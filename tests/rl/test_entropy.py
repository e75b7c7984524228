"""token_entropy and selective_log_softmax: closed forms, float64 references, chunking, grads."""

from __future__ import annotations

import math

import pytest
import torch

import inforeg
from inforeg.core.checks import checks
from inforeg.rl import _cpu_entropy, selective_log_softmax, token_entropy
from tests._helpers import gradcheck64


@pytest.fixture(autouse=True, params=["c-kernel", "pytorch"])
def cpu_backend(request, monkeypatch):
    """Every test runs on both CPU back ends for float32/bfloat16: the fused C kernel (built at
    first use) and the chunked PyTorch path."""
    monkeypatch.setenv("INFOREG_DISABLE_CPU_KERNEL", "1" if request.param == "pytorch" else "0")
    monkeypatch.setattr(_cpu_entropy, "_MIN_VOCAB", 1)  # the small test vocabularies too
    return request.param


def _ref_entropy(z: torch.Tensor, t: float = 1.0) -> torch.Tensor:
    z = z.double() / t
    return -(torch.softmax(z, -1) * torch.log_softmax(z, -1)).sum(-1)


def test_closed_forms():
    assert token_entropy(torch.zeros(2)).item() == pytest.approx(math.log(2), abs=1e-7)
    z = torch.tensor([0.0, math.log(3.0)])
    assert token_entropy(z).item() == pytest.approx(0.5623351446, abs=1e-6)
    # uniform over V: ln V, whatever the temperature
    assert token_entropy(torch.full((7,), 3.0), temperature=0.3).item() == pytest.approx(
        math.log(7), abs=1e-6
    )


@pytest.mark.parametrize("chunk", [1, 2, 3, 100, None])
@pytest.mark.parametrize("temperature", [1.0, 0.6, 1.7])
def test_matches_float64_reference(chunk, temperature, device):
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(4, 5, 33, generator=g, dtype=torch.float64) * 3).to(device)
    out = token_entropy(z, temperature, chunk)
    assert out.shape == (4, 5) and out.device == z.device
    torch.testing.assert_close(out, _ref_entropy(z, temperature), rtol=1e-12, atol=1e-12)
    tok = torch.randint(0, 33, (4, 5), generator=g).to(device)
    ref = torch.log_softmax(z / temperature, -1).gather(-1, tok.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(
        selective_log_softmax(z, tok, temperature, chunk), ref, rtol=1e-12, atol=1e-12
    )


def test_chunked_equals_unchunked_float32():
    z = torch.randn(37, 1000) * 4
    a = token_entropy(z, chunk_size=1)
    b = token_entropy(z, chunk_size=37)
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(a.double(), _ref_entropy(z), rtol=1e-5, atol=1e-6)


def test_invariant_to_constant_shift():
    z = torch.randn(6, 50, dtype=torch.float64)
    tok = torch.randint(0, 50, (6,))
    torch.testing.assert_close(token_entropy(z + 123.0), token_entropy(z))
    torch.testing.assert_close(selective_log_softmax(z - 77.0, tok), selective_log_softmax(z, tok))


@pytest.mark.parametrize("chunk", [1, 4])
def test_gradcheck_float64(chunk):
    z = torch.randn(3, 4, 6, dtype=torch.float64)
    tok = torch.randint(0, 6, (3, 4))
    gradcheck64(lambda x: token_entropy(x, 0.7, chunk), z)
    gradcheck64(lambda x: selective_log_softmax(x, tok, 1.3, chunk), z)


def test_grad_matches_autograd_of_reference():
    z = torch.randn(5, 40, dtype=torch.float64, requires_grad=True)
    w = torch.randn(5, dtype=torch.float64)
    (g1,) = torch.autograd.grad((token_entropy(z, 0.8, 2) * w).sum(), z)
    (g2,) = torch.autograd.grad((_ref_entropy(z, 0.8) * w).sum(), z)
    torch.testing.assert_close(g1, g2)


def test_extreme_logits_and_bfloat16():
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4]], requires_grad=True)
    h = token_entropy(z)
    assert torch.isfinite(h).all()
    assert h[0].item() == pytest.approx(0.0, abs=1e-6)
    assert h[1].item() == pytest.approx(math.log(3), abs=1e-5)
    h.sum().backward()
    assert torch.isfinite(z.grad).all()
    lp = selective_log_softmax(z.detach(), torch.tensor([1, 0]))
    assert torch.isfinite(lp).all() and lp[0].item() == pytest.approx(-2e4)
    zb = (torch.randn(8, 3000) * 5).to(torch.bfloat16)
    hb = token_entropy(zb)
    assert hb.dtype == torch.bfloat16
    ref = _ref_entropy(zb.float())
    torch.testing.assert_close(hb.double(), ref, rtol=1e-2, atol=1e-2)
    # float32 accumulation: the internal value before the final cast is accurate
    tok = torch.randint(0, 3000, (8,))
    lpb = selective_log_softmax(zb, tok)
    ref_lp = torch.log_softmax(zb.double(), -1).gather(1, tok[:, None]).squeeze(1)
    torch.testing.assert_close(lpb.double(), ref_lp, rtol=1e-2, atol=5e-2)


def test_backward_bfloat16_finite():
    zb = (torch.randn(4, 500) * 5).to(torch.bfloat16).requires_grad_()
    token_entropy(zb).sum().backward()
    assert zb.grad is not None and zb.grad.dtype == torch.bfloat16 and torch.isfinite(zb.grad).all()


def test_empty_rows():
    assert token_entropy(torch.zeros(0, 5)).shape == (0,)


def test_bad_input():
    with pytest.raises(ValueError, match="temperature"):
        token_entropy(torch.zeros(2, 3), temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        selective_log_softmax(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), temperature=-1.0)
    with pytest.raises(TypeError, match="logits"):
        token_entropy(torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens"):
        selective_log_softmax(torch.zeros(2, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="tokens"):
        selective_log_softmax(torch.zeros(2, 3), torch.zeros(2))
    with pytest.raises(ValueError, match="chunk_size"):
        token_entropy(torch.zeros(2, 3), chunk_size=0)
    with checks("full"), pytest.raises(ValueError, match="logits"):
        token_entropy(torch.tensor([[0.0, float("nan")]]))
    assert inforeg is not None


def test_threaded_row_split_matches_reference():
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # forces the CPU path that splits rows over worker threads
    try:
        z = torch.randn(9, 31, dtype=torch.float64, requires_grad=True)
        tok = torch.randint(0, 31, (9,))
        w = torch.randn(9, dtype=torch.float64)
        h = token_entropy(z, 0.9, chunk_size=2)
        lp = selective_log_softmax(z, tok, 0.9, chunk_size=2)
        (gh,) = torch.autograd.grad((h * w).sum(), z)
        (gl,) = torch.autograd.grad((lp * w).sum(), z)
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    zr = z.detach().clone().requires_grad_()
    ref_lp = torch.log_softmax(zr / 0.9, -1).gather(1, tok[:, None]).squeeze(1)
    torch.testing.assert_close(h, _ref_entropy(z.detach(), 0.9))
    torch.testing.assert_close(lp, ref_lp)
    (rh,) = torch.autograd.grad((_ref_entropy(zr, 0.9) * w).sum(), zr)
    (rl,) = torch.autograd.grad((ref_lp * w).sum(), zr)
    torch.testing.assert_close(gh, rh)
    torch.testing.assert_close(gl, rl)


@pytest.mark.parametrize("chunk", [1, 3, None])
def test_selective_shift_free_path_and_fallback(chunk):
    # rows whose sum(exp(z/T)) leaves [1e-10, 1e30] (max logit ~ +-120) must take the exact
    # max-shifted path; moderate rows take the shift-free one; both must match float64
    g = torch.Generator().manual_seed(3)
    z = torch.randn(7, 257, generator=g) * 3
    z[1] += 120.0
    z[4] -= 120.0
    z[5, 17] = 80.0  # one huge logit: exp(80) overflows float32 without a shift
    tok = torch.randint(0, 257, (7,), generator=g)
    for t in (1.0, 0.5):
        out = selective_log_softmax(z, tok, t, chunk)
        assert torch.isfinite(out).all()
        ref = torch.log_softmax(z.double() / t, -1).gather(1, tok[:, None]).squeeze(1)
        torch.testing.assert_close(out.double(), ref, rtol=1e-6, atol=2e-5)
        h = token_entropy(z, t, chunk)
        torch.testing.assert_close(h.double(), _ref_entropy(z, t), rtol=1e-5, atol=1e-6)


def test_single_row_path_large_vocab_float32_and_bfloat16():
    # one-row chunks (the default for a 150k vocabulary) use 1-D ops and torch.dot
    g = torch.Generator().manual_seed(4)
    z = torch.randn(3, 151936, generator=g) * 2
    z[2] *= 10  # a peaked row: low entropy
    tok = torch.randint(0, 151936, (3,), generator=g)
    h = token_entropy(z, 0.8)
    torch.testing.assert_close(h.double(), _ref_entropy(z, 0.8), rtol=1e-5, atol=0)
    lp = selective_log_softmax(z, tok, 0.8)
    ref = torch.log_softmax(z.double() / 0.8, -1).gather(1, tok[:, None]).squeeze(1)
    torch.testing.assert_close(lp.double(), ref, rtol=1e-6, atol=1e-5)
    zb = z.bfloat16()
    hb = token_entropy(zb)
    torch.testing.assert_close(hb.double(), _ref_entropy(zb.float()), rtol=8e-3, atol=0)


@pytest.mark.parametrize("chunk", [1, 2])
def test_bfloat16_backward_matches_float32_computation(chunk):
    # half input: the gradient is computed in float32 and rounded once, including the
    # one-hot entry of selective_log_softmax (1 - p stays accurate when p is close to 1)
    g = torch.Generator().manual_seed(5)
    zb = (torch.randn(4, 300, generator=g) * 3).bfloat16()
    zb[0, 7] = 40.0  # p[0, 7] ~ 1
    tok = torch.tensor([7, 1, 2, 3])
    w = torch.randn(4, generator=g).bfloat16().float()  # the output's gradient is bf16
    for fn in (
        lambda x: token_entropy(x, 0.9, chunk),
        lambda x: selective_log_softmax(x, tok, 0.9, chunk),
    ):
        xb = zb.clone().requires_grad_()
        (gb,) = torch.autograd.grad((fn(xb).float() * w).sum(), xb)
        x32 = zb.float().requires_grad_()
        (g32,) = torch.autograd.grad((fn(x32) * w).sum(), x32)
        assert gb.dtype == torch.bfloat16
        torch.testing.assert_close(gb.float(), g32.bfloat16().float(), rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("chunk_size", [None, 1, 3])
def test_minus_inf_logits_give_finite_entropy_and_zero_gradient(
    dtype: torch.dtype, chunk_size: int | None, device: torch.device
) -> None:
    """Masked vocabulary entries (-inf logits) carry no probability: finite entropy, exact
    values on the rest, zero gradient on them (0 * -inf must not turn into NaN)."""
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 40, generator=g, dtype=torch.float64) * 2
    z[0, ::2] = float("-inf")
    z[3, 5:] = float("-inf")
    z[4, 1] = float("-inf")
    z = z.to(dtype).double().to(device)  # the reference sees the same (rounded) logits
    ref_in = z.clone().requires_grad_(True)
    logp = torch.log_softmax(ref_in / 0.7, -1)
    # reference: -sum p log p over the finite entries only
    ref = -(logp.exp() * logp.masked_fill(torch.isinf(z), 0.0)).sum(-1)
    ref.sum().backward()
    assert ref_in.grad is not None
    x = z.to(dtype).requires_grad_(True)
    h = token_entropy(x, temperature=0.7, chunk_size=chunk_size)
    h.float().sum().backward()
    assert x.grad is not None
    assert torch.isfinite(h.float()).all() and torch.isfinite(x.grad.float()).all()
    assert (x.grad[torch.isinf(z)] == 0).all()
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    if dtype == torch.bfloat16:  # float32 inside; the entropy and gradient are rounded to bf16
        tol = 1e-2
    torch.testing.assert_close(h.double(), ref.detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(x.grad.double(), ref_in.grad, rtol=tol, atol=tol)


@pytest.mark.parametrize(("scale", "temperature"), [(1e3, 1.0), (1e5, 1.0), (1.0, 1e-3)])
def test_large_logits_keep_float32_accuracy(scale: float, temperature: float) -> None:
    """At logits of 1e3 (or a small temperature) z / T - lse in float32 loses |z / T| * 6e-8,
    which becomes the relative error of p: the backward shifts by the row's lse first, and the
    log-prob of a token near the top keeps its digits (errors were 5e-4 at 1e3, 5e-2 at 1e5)."""
    g = torch.Generator().manual_seed(11)
    z = torch.randn(16, 500, generator=g) * scale
    top = z.max(-1).values
    z[:, 1], z[:, 2] = top - 0.5 * temperature, top - temperature  # p of order 1 below the top
    tok = torch.tensor([1, 2] * 8)
    w = torch.randn(16, generator=g)

    def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
        return float((a.detach().double() - b.detach()).norm() / b.detach().norm())

    x64 = z.double().requires_grad_()
    lp = torch.log_softmax(x64 / temperature, -1)
    h_ref, lp_ref = -(lp.exp() * lp).sum(-1), lp.gather(1, tok[:, None]).squeeze(1)
    for fn, ref in ((lambda x: token_entropy(x, temperature), h_ref),
                    (lambda x: selective_log_softmax(x, tok, temperature), lp_ref)):  # fmt: skip
        x = z.clone().requires_grad_()
        out = fn(x)
        (grad,) = torch.autograd.grad((out * w).sum(), x)
        (grad_ref,) = torch.autograd.grad((ref * w.double()).sum(), x64, retain_graph=True)
        assert rel_err(out, ref) < 1e-6
        assert rel_err(grad, grad_ref) < 2e-6


def test_huge_temperature_gives_finite_gradients() -> None:
    """lse * T beyond float32 (T = 1e38): the backward's shift falls back to 0, no NaN."""
    z = torch.randn(3, 100, generator=torch.Generator().manual_seed(1))
    for fn in (
        lambda x: token_entropy(x, 1e38),
        lambda x: selective_log_softmax(x, torch.tensor([1, 2, 3]), 1e38),
    ):
        x = z.clone().requires_grad_()
        out = fn(x)
        (grad,) = torch.autograd.grad(out.sum(), x)
        assert torch.isfinite(out).all() and torch.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_inference_mode_with_rows_split_over_threads(dtype):
    # Regression: the CPU worker threads did not inherit inference mode (thread-local), so
    # writing into the caller's inference tensors raised "Inplace update to inference tensor
    # outside InferenceMode" once the rows were split over threads.
    from inforeg.core.threads import intra_op_threads

    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 7, 50, generator=g, dtype=dtype)
    tok = torch.randint(0, 50, (6, 7), generator=g)
    with intra_op_threads(2):
        ref = (token_entropy(z, 0.7, chunk_size=3), selective_log_softmax(z, tok, chunk_size=5))
        with torch.inference_mode():
            zi, ti = z.clone(), tok.clone()
            got = (
                token_entropy(zi, 0.7, chunk_size=3),
                selective_log_softmax(zi, ti, chunk_size=5),
            )
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
