"""fused_linear_logprobs_entropy equals the unfused path (matmul, then the fused kernels) in
value and gradient, never materialises the logits, and rejects bad input by name."""

from __future__ import annotations

import pytest
import torch

from inforeg.rl import (
    default_lm_head_chunk,
    fused_linear_logprobs_entropy,
    selective_log_softmax,
    token_entropy,
)
from tests._helpers import assert_close, gradcheck64


def _problem(dtype=torch.float32, lead=(3, 7), vocab=97, dim=12, seed=0, bias=True):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(*lead, dim, generator=g).to(dtype)
    weight = (torch.randn(vocab, dim, generator=g) / dim**0.5).to(dtype)
    b = torch.randn(vocab, generator=g).to(dtype) if bias else None
    tokens = torch.randint(0, vocab, lead, generator=g)
    return hidden, weight, b, tokens


def _unfused(hidden, weight, bias, tokens, temperature):
    z = hidden @ weight.T if bias is None else hidden @ weight.T + bias
    return selective_log_softmax(z, tokens, temperature), token_entropy(z, temperature)


def _assert_matches_unfused(got, problem, leaves, w_logp, w_ent):
    """Values and the gradients of sum(w_logp logp + w_ent H) equal the unfused path's."""
    ref = _unfused(*problem)
    for x, y in zip(got, ref):
        assert_close(x, y)
    grads = torch.autograd.grad((got[0] * w_logp).sum() + (got[1] * w_ent).sum(), leaves)
    refs = torch.autograd.grad((ref[0] * w_logp).sum() + (ref[1] * w_ent).sum(), leaves)
    for x, y in zip(grads, refs):
        assert_close(x, y)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("chunk_size", [1, 4, None])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_values_and_gradients_equal_the_unfused_path(bias, chunk_size, temperature):
    hidden, weight, b, tokens = _problem(bias=bias)
    leaves = [t.requires_grad_(True) for t in (hidden, weight, b) if t is not None]
    g = torch.Generator().manual_seed(1)
    w_logp, w_ent = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    got = fused_linear_logprobs_entropy(
        hidden, weight, tokens, bias=b, temperature=temperature, chunk_size=chunk_size
    )
    _assert_matches_unfused(got, (hidden, weight, b, tokens, temperature), leaves, w_logp, w_ent)


def test_against_float64_definition():
    hidden, weight, b, tokens = _problem(torch.float64, lead=(5,), vocab=11, dim=4)
    z = (hidden @ weight.T + b) / 0.5
    logq = torch.log_softmax(z, -1)
    logp, ent = fused_linear_logprobs_entropy(hidden, weight, tokens, bias=b, temperature=0.5)
    assert_close(logp, logq.gather(-1, tokens[:, None])[:, 0])
    assert_close(ent, -(logq.exp() * logq).sum(-1))


def test_gradcheck_float64():
    hidden, weight, b, tokens = _problem(torch.float64, lead=(4,), vocab=6, dim=3)

    def fn(h, w, bb):
        logp, ent = fused_linear_logprobs_entropy(h, w, tokens, bias=bb, chunk_size=3)
        return logp + 0.5 * ent

    gradcheck64(fn, hidden, weight, b)


def test_bfloat16_close_to_float32():
    hidden, weight, b, tokens = _problem(lead=(2, 33), vocab=300, dim=16)
    ref = fused_linear_logprobs_entropy(hidden, weight, tokens, bias=b)
    got = fused_linear_logprobs_entropy(
        hidden.bfloat16(), weight.bfloat16(), tokens, bias=b.bfloat16()
    )
    for x, y in zip(got, ref):
        assert x.dtype == torch.bfloat16 and torch.isfinite(x).all()
        torch.testing.assert_close(x.float(), y, rtol=0.05, atol=0.1)
    weight_bf = weight.bfloat16().requires_grad_(True)
    logp, ent = fused_linear_logprobs_entropy(hidden.bfloat16(), weight_bf, tokens)
    (logp.float().sum() + ent.float().sum()).backward()
    assert weight_bf.grad is not None and weight_bf.grad.dtype == torch.bfloat16
    assert torch.isfinite(weight_bf.grad.float()).all()


def _spy_tiles(monkeypatch, tile_bytes):
    """Shrink the tile budget of the fused head to ``tile_bytes`` and record every tile's shape."""
    import inforeg.rl.fused_linear as fl

    monkeypatch.setattr(fl, "_TILE_BYTES", tile_bytes)
    seen: list[tuple[int, int]] = []
    real = fl._logits_into

    def spy(buf, h, weight, bias, v0, v1):
        seen.append((h.shape[0], v1 - v0))
        return real(buf, h, weight, bias, v0, v1)

    monkeypatch.setattr(fl, "_logits_into", spy)
    return seen


def test_never_materialises_the_logits(monkeypatch):
    """Every tile of logits has at most chunk_size rows and the tile budget's size, and the
    tiles cover the logits once forward and once backward (the recompute)."""
    seen = _spy_tiles(monkeypatch, 4 * 6 * 40)
    hidden, weight, b, tokens = _problem(lead=(4, 10), vocab=97)
    hidden.requires_grad_(True)
    logp, ent = fused_linear_logprobs_entropy(hidden, weight, tokens, chunk_size=6)
    (logp.sum() + ent.sum()).backward()
    assert seen and max(r for r, _ in seen) <= 6 and max(r * c for r, c in seen) <= 6 * 40
    assert len({c for _, c in seen}) > 1  # several vocabulary blocks (40, 40, 17)
    assert sum(r * c for r, c in seen) == 2 * 40 * 97


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("block", [70, 30])  # C kernel tiles (float32, >= 64 wide) / PyTorch
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_vocabulary_blocks_equal_the_unfused_path(monkeypatch, dtype, block, temperature):
    """With the vocabulary split into blocks, the merged log-sum-exp and entropy and all three
    gradients equal the unfused path on the whole rows."""
    _spy_tiles(monkeypatch, 8 * block * 4)  # 8-token chunks below: blocks of `block` entries
    hidden, weight, b, tokens = _problem(dtype, lead=(2, 9), vocab=300, dim=16)
    leaves = [t.requires_grad_(True) for t in (hidden, weight, b)]
    g = torch.Generator().manual_seed(1)
    w_logp, w_ent = (torch.randn(2, 9, generator=g).to(dtype) for _ in range(2))
    got = fused_linear_logprobs_entropy(
        hidden, weight, tokens, bias=b, temperature=temperature, chunk_size=8
    )
    _assert_matches_unfused(got, (hidden, weight, b, tokens, temperature), leaves, w_logp, w_ent)


def test_gradcheck_float64_vocabulary_blocks(monkeypatch):
    _spy_tiles(monkeypatch, 3 * 4 * 8)  # chunks of 3 tokens by blocks of 4 of the 10 entries
    hidden, weight, b, tokens = _problem(torch.float64, lead=(5,), vocab=10, dim=3)

    def fn(h, w, bb):
        logp, ent = fused_linear_logprobs_entropy(h, w, tokens, bias=bb, chunk_size=3)
        return logp + 0.5 * ent

    gradcheck64(fn, hidden, weight, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_masked_vocabulary_blocks(monkeypatch, dtype):
    """A -inf bias over a whole vocabulary block (and part of another) leaves finite values and
    gradients equal to the unfused path; every logit -inf gives NaN, never a number."""
    _spy_tiles(monkeypatch, 8 * 70 * 4)  # blocks of 70: [0, 70) masked below, [70, 140) half
    hidden, weight, b, tokens = _problem(dtype, lead=(8,), vocab=300, dim=16)
    b[:105] = -torch.inf
    tokens = tokens.clamp(min=105)
    leaves = [t.requires_grad_(True) for t in (hidden, weight)]
    got = fused_linear_logprobs_entropy(hidden, weight, tokens, bias=b, chunk_size=8)
    ref = _unfused(hidden, weight, b, tokens, 1.0)
    for x, y in zip(got, ref):
        assert torch.isfinite(x).all()
        assert_close(x, y)
    grads = torch.autograd.grad(got[0].sum() + got[1].sum(), leaves)
    refs = torch.autograd.grad(ref[0].sum() + ref[1].sum(), leaves)
    for x, y in zip(grads, refs):
        assert torch.isfinite(x).all()
        assert_close(x, y)
    logp, ent = fused_linear_logprobs_entropy(
        hidden.detach(), weight.detach(), tokens, bias=torch.full_like(b, -torch.inf)
    )
    assert logp.isnan().all() and ent.isnan().all()


def test_nan_logits_give_nan_rows(monkeypatch):
    _spy_tiles(monkeypatch, 8 * 70 * 4)
    hidden, weight, b, tokens = _problem(lead=(8,), vocab=300, dim=16)
    b[200] = torch.nan  # in the third block
    logp, ent = fused_linear_logprobs_entropy(hidden, weight, tokens, bias=b, chunk_size=8)
    assert logp.isnan().all() and ent.isnan().all()


def test_c_kernel_and_pytorch_tiles_agree(monkeypatch):
    """The C kernel's tiles and the PyTorch path's (INFOREG_DISABLE_CPU_KERNEL) give the same
    values and gradients, bias and temperature included."""
    _spy_tiles(monkeypatch, 16 * 100 * 4)
    hidden, weight, b, tokens = _problem(lead=(40,), vocab=333, dim=16)
    leaves = [t.requires_grad_(True) for t in (hidden, weight, b)]
    out = {}
    for disable in ("0", "1"):
        monkeypatch.setenv("INFOREG_DISABLE_CPU_KERNEL", disable)
        logp, ent = fused_linear_logprobs_entropy(
            hidden, weight, tokens, bias=b, temperature=0.8, chunk_size=16
        )
        grads = torch.autograd.grad(logp.sum() - 0.3 * ent.sum(), leaves)
        out[disable] = (logp, ent, *grads)
    for x, y in zip(out["0"], out["1"]):
        assert_close(x, y)


@pytest.mark.parametrize("disable", ["0", "1"])  # the C kernel's tiles, the PyTorch path's
def test_large_logits_keep_float32_accuracy(monkeypatch, disable):
    """Logits up to ~4e3, exact in float32 (small integers): log-probs, entropies and gradients
    equal the float64 definition to float32 rounding. Rebuilding p as exp(z / T - lse) in
    float32 lost |z / T| * 6e-8 (gradient errors of 2.5e-4 here before the shift by the lse)."""
    monkeypatch.setenv("INFOREG_DISABLE_CPU_KERNEL", disable)
    g = torch.Generator().manual_seed(2)
    hidden = torch.randint(-3, 4, (32, 16), generator=g).float()
    weight = torch.randint(-3, 4, (300, 16), generator=g).float() * 64
    weight[1] = weight[(hidden @ weight.T).argmax(-1)[0]]  # a tie at the top of row 0
    tokens = torch.randint(0, 300, (32,), generator=g)
    tokens[:4] = 1
    w_logp, w_ent = torch.randn(32, generator=g), torch.randn(32, generator=g)
    h = hidden.clone().requires_grad_()
    logp, ent = fused_linear_logprobs_entropy(h, weight, tokens, temperature=0.7)
    (grad,) = torch.autograd.grad((logp * w_logp + ent * w_ent).sum(), h)
    h64 = hidden.double().requires_grad_()
    lp = torch.log_softmax(h64 @ weight.double().T / 0.7, -1)
    logp_ref, ent_ref = lp.gather(1, tokens[:, None]).squeeze(1), -(lp.exp() * lp).sum(-1)
    loss = (logp_ref * w_logp.double() + ent_ref * w_ent.double()).sum()
    (grad_ref,) = torch.autograd.grad(loss, h64)
    for got, ref in ((logp, logp_ref), (ent, ent_ref), (grad, grad_ref)):
        assert float((got.detach().double() - ref.detach()).norm() / ref.norm()) < 1e-6


def test_empty_batch_and_default_chunk():
    hidden, weight, b, tokens = _problem(lead=(0,))
    logp, ent = fused_linear_logprobs_entropy(hidden, weight, tokens)
    assert logp.shape == ent.shape == (0,)
    assert default_lm_head_chunk(151_936) == 4096 and default_lm_head_chunk(100) > 4096


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda h, w, t, b: (h[..., :-1], w, t, b), "hidden"),
        (lambda h, w, t, b: (h, w[0], t, b), "weight"),
        (lambda h, w, t, b: (h, w.double(), t, b), "weight"),
        (lambda h, w, t, b: (h, w, t[:, :-1], b), "tokens"),
        (lambda h, w, t, b: (h, w, t.float(), b), "tokens"),
        (lambda h, w, t, b: (h, w, t, b[:-1]), "bias"),
        (lambda h, w, t, b: (h.long(), w, t, b), "hidden"),
    ],
)
def test_bad_input_names_the_argument(mutate, match):
    h, w, t, b = mutate(*_problem()[:2], _problem()[3], _problem()[2])
    with pytest.raises((ValueError, TypeError), match=match):
        fused_linear_logprobs_entropy(h, w, t, bias=b)


@pytest.mark.parametrize(
    "kw, match", [({"temperature": 0.0}, "temperature"), ({"chunk_size": 0}, "chunk_size")]
)
def test_bad_options(kw, match):
    h, w, b, t = _problem()
    with pytest.raises(ValueError, match=match):
        fused_linear_logprobs_entropy(h, w, t, bias=b, **kw)


def test_bfloat16_vocabulary_blocks_match_the_unfused_bfloat16_path(monkeypatch):
    """bfloat16 tiles (C kernel, gradient written in place over the bfloat16 logits) against
    the unfused path on the same bfloat16 logits."""
    _spy_tiles(monkeypatch, 8 * 100 * 4)
    hidden, weight, b, tokens = (
        t.bfloat16() if t.is_floating_point() else t
        for t in _problem(lead=(16,), vocab=300, dim=16)
    )
    leaves = [t.requires_grad_(True) for t in (hidden, weight, b)]
    got = fused_linear_logprobs_entropy(hidden, weight, tokens, bias=b, chunk_size=8)
    ref = _unfused(hidden, weight, b, tokens, 1.0)
    for x, y in zip(got, ref):
        assert x.dtype == torch.bfloat16
        torch.testing.assert_close(x.float(), y.float(), rtol=0.02, atol=0.02)
    grads = torch.autograd.grad(got[0].float().sum() + got[1].float().sum(), leaves)
    refs = torch.autograd.grad(ref[0].float().sum() + ref[1].float().sum(), leaves)
    for x, y in zip(grads, refs):
        assert x.dtype == torch.bfloat16
        torch.testing.assert_close(x.float(), y.float(), rtol=0.05, atol=0.05)
