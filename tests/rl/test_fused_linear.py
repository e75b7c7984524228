"""fused_linear_logprobs_entropy equals the unfused path (matmul, then the fused kernels) in
value and gradient, never materialises the logits, and rejects bad input by name."""

from __future__ import annotations

import pytest
import torch

from inforeg.rl import fused_linear_logprobs_entropy, selective_log_softmax, token_entropy
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
    ref = _unfused(hidden, weight, b, tokens, temperature)
    for x, y in zip(got, ref):
        assert_close(x, y)
    grads = torch.autograd.grad((got[0] * w_logp).sum() + (got[1] * w_ent).sum(), leaves)
    refs = torch.autograd.grad((ref[0] * w_logp).sum() + (ref[1] * w_ent).sum(), leaves)
    for x, y in zip(grads, refs):
        assert_close(x, y)


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


def test_never_materialises_the_logits(monkeypatch):
    """Every logit block the kernels see has at most chunk_size rows."""
    import inforeg.rl.fused_linear as fl

    seen: list[int] = []
    real = fl.token_entropy

    def spy(z, temperature=1.0, chunk_size=None):
        seen.append(z.shape[0])
        return real(z, temperature)

    monkeypatch.setattr(fl, "token_entropy", spy)
    hidden, weight, b, tokens = _problem(lead=(4, 10))
    hidden.requires_grad_(True)
    logp, ent = fl.fused_linear_logprobs_entropy(hidden, weight, tokens, chunk_size=6)
    (logp.sum() + ent.sum()).backward()
    assert seen and max(seen) <= 6 and sum(seen) == 2 * 40  # forward + backward recompute


def test_empty_batch_and_default_chunk():
    hidden, weight, b, tokens = _problem(lead=(0,))
    logp, ent = fused_linear_logprobs_entropy(hidden, weight, tokens)
    assert logp.shape == ent.shape == (0,)


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
