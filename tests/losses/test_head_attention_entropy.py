"""Entropy-guided attention penalty: spec value, both reductions by brute force, dead zone."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.core.checks import checks
from inforeg.losses import HeadwiseAttentionEntropyRegularizer, head_attention_entropy_penalty
from tests._helpers import gradcheck64


def causal_probs(b, h, t, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, h, t, t, generator=g, dtype=dtype) * 2
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    return torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)


def brute(a, theta, gamma, mode, causal=False):
    """The penalty by loops; ``causal``: query q of T_q sees q + 1 + T_k - T_q keys."""
    b, h, tq, tk = a.shape
    e_maxes = [math.log(q + 1 + tk - tq) if causal else math.log(tk) for q in range(tq)]
    total = 0.0
    for hh in range(h):
        ents, maxes = [], []
        for bb in range(b):
            for q in range(tq):
                ents.append(-sum(float(p) * math.log(float(p)) for p in a[bb, hh, q] if p > 0))
                maxes.append(e_maxes[q])
        if mode == "paper_mean":
            e_bar = sum(maxes) / len(maxes)
            d = sum(ents) / len(ents) - theta[hh] * e_bar
            total += d * d if abs(d) > gamma * e_bar else 0.0
        else:
            for e, e_max in zip(ents, maxes, strict=True):
                d = e - theta[hh] * e_max
                total += d * d if abs(d) > gamma * e_max else 0.0
    return total / h


def test_spec_value():
    a = torch.full((1, 1, 1, 4), 0.25, dtype=torch.float64)
    assert float(head_attention_entropy_penalty(a, 0.5, 0.2)) == pytest.approx(0.4805, abs=1e-4)
    assert float(head_attention_entropy_penalty(a, 0.5, 0.2, "code_sum")) == pytest.approx(
        0.4805, abs=1e-4
    )


@pytest.mark.parametrize("mode", ["paper_mean", "code_sum"])
def test_brute_force_with_causal_mask(mode):
    a = causal_probs(2, 3, 5)
    theta = [0.2, 0.5, 0.9]
    got = head_attention_entropy_penalty(a, torch.tensor(theta, dtype=torch.float64), 0.05, mode)
    assert float(got) == pytest.approx(brute(a, theta, 0.05, mode), rel=1e-10)


@pytest.mark.parametrize("mode", ["paper_mean", "code_sum"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (1, 2, 3, 6)])  # a key cache: 3 queries, 6 keys
def test_causal_max_entropy_brute_force(mode, shape):
    b, h, tq, tk = shape
    g = torch.Generator().manual_seed(3)
    s = torch.randn(b, h, tq, tk, generator=g, dtype=torch.float64) * 2
    mask = torch.ones(tq, tk, dtype=torch.bool).tril(diagonal=tk - tq)
    a = torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1)
    theta = [0.2, 0.5, 0.9][:h]
    got = head_attention_entropy_penalty(
        a, torch.tensor(theta, dtype=torch.float64), 0.05, mode, max_entropy="causal"
    )
    assert float(got) == pytest.approx(brute(a, theta, 0.05, mode, causal=True), rel=1e-10)
    # differs from the log T_k maximum (the test would not notice a silently ignored option)
    plain = head_attention_entropy_penalty(a, torch.tensor(theta, dtype=torch.float64), 0.05, mode)
    assert abs(float(plain) - float(got)) > 1e-3


def test_causal_max_entropy_uniform_causal_attention():
    # Query i uniform over its i + 1 keys: entropy log(i + 1), its own maximum. theta = 1: zero
    # penalty in both reductions; theta = 0.5 (code_sum): each query i >= 1 is 0.5 log(i + 1)
    # away, outside the 0.2 log(i + 1) band.
    t = 6
    a = torch.ones(t, t, dtype=torch.float64).tril()
    a = (a / a.sum(-1, keepdim=True)).view(1, 1, t, t)
    for mode in ("paper_mean", "code_sum"):
        assert float(head_attention_entropy_penalty(a, 1.0, 0.2, mode, "causal")) == 0.0
    expected = sum((0.5 * math.log(i + 1)) ** 2 for i in range(t))
    got = head_attention_entropy_penalty(a, 0.5, 0.2, "code_sum", "causal")
    assert float(got) == pytest.approx(expected, rel=1e-12)
    reg = HeadwiseAttentionEntropyRegularizer(1, 1, init_threshold=0.5, max_entropy="causal")
    reg = reg.double()
    assert float(reg([a])) == pytest.approx(
        float(head_attention_entropy_penalty(a, 0.5, 0.2, max_entropy="causal")), rel=1e-12
    )


def test_dead_zone_zero_value_and_gradient():
    a = torch.full((1, 1, 2, 4), 0.25, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([0.95], dtype=torch.float64, requires_grad=True)  # |delta| = 0.05 log 4
    out = head_attention_entropy_penalty(a, theta, 0.2)
    out.backward()
    assert float(out) == 0.0
    assert torch.equal(a.grad, torch.zeros_like(a)) and torch.equal(
        theta.grad, torch.zeros_like(theta)
    )
    # outside the band theta gets -2 E_max delta
    theta2 = torch.tensor([0.2], dtype=torch.float64, requires_grad=True)
    head_attention_entropy_penalty(a.detach(), theta2, 0.2).backward()
    delta = math.log(4) - 0.2 * math.log(4)
    assert float(theta2.grad) == pytest.approx(-2 * math.log(4) * delta)


def test_gradcheck_and_zero_probabilities():
    a = causal_probs(1, 2, 4).requires_grad_(True)
    theta = torch.tensor([0.1, 0.3], dtype=torch.float64, requires_grad=True)
    for mode in ("paper_mean", "code_sum"):
        out = head_attention_entropy_penalty(a, theta, 0.0, mode)
        out.backward()
        assert torch.isfinite(a.grad).all()
        a.grad = None
    gradcheck64(
        lambda x, t: head_attention_entropy_penalty(torch.softmax(x, -1), t, 0.0),
        torch.randn(1, 2, 3, 4, dtype=torch.float64),
        theta,
    )
    onehot = torch.zeros(1, 1, 1, 4)
    onehot[..., 0] = 1.0
    assert float(head_attention_entropy_penalty(onehot, 0.5, 0.2)) == pytest.approx(
        (0.5 * math.log(4)) ** 2, rel=1e-6
    )
    assert head_attention_entropy_penalty(onehot.bfloat16(), 0.5, 0.2).dtype == torch.bfloat16


def test_module_layers_and_learnable_thresholds():
    reg = HeadwiseAttentionEntropyRegularizer(2, 3, init_threshold=0.3, tolerance=0.1)
    a1, a2 = (
        causal_probs(2, 3, 6, seed=1, dtype=torch.float32),
        causal_probs(2, 3, 6, seed=2, dtype=torch.float32),
    )
    out = reg([a1, a2])
    ref = (
        head_attention_entropy_penalty(a1, 0.3, 0.1) + head_attention_entropy_penalty(a2, 0.3, 0.1)
    ) / 2
    assert torch.allclose(out, ref)
    out.backward()
    assert reg.threshold.grad is not None and reg.threshold.grad.shape == (2, 3)
    with pytest.raises(ValueError, match="attentions"):
        reg([a1])


def test_bad_input():
    a = causal_probs(1, 2, 4)
    with pytest.raises(ValueError, match="attn_probs"):
        head_attention_entropy_penalty(a[0])
    with pytest.raises(ValueError, match="threshold"):
        head_attention_entropy_penalty(a, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="tolerance"):
        head_attention_entropy_penalty(a, 0.5, -0.1)
    with pytest.raises(ValueError, match="reduction"):
        head_attention_entropy_penalty(a, 0.5, 0.2, "mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_entropy"):
        head_attention_entropy_penalty(a, 0.5, 0.2, max_entropy="acausal")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_entropy"):
        head_attention_entropy_penalty(a, 0.5, 0.2, max_entropy=-1.0)
    with pytest.raises(ValueError, match="attn_probs"):  # more queries than keys
        head_attention_entropy_penalty(a.transpose(-1, -2)[..., :2], max_entropy="causal")
    with pytest.raises(ValueError, match="max_entropy"):
        HeadwiseAttentionEntropyRegularizer(1, 2, max_entropy="acausal")  # type: ignore[arg-type]
    with checks("full"):
        with pytest.raises(ValueError, match="attn_probs"):
            head_attention_entropy_penalty(torch.full((1, 1, 1, 2), float("nan")))


def test_module_errors_name_the_layer():
    reg = HeadwiseAttentionEntropyRegularizer(num_layers=2, num_heads=2)
    good = torch.full((1, 2, 3, 3), 1 / 3)
    with pytest.raises(ValueError, match=r"attentions\[1\]: expected a 4-D"):
        reg([good, good[0]])
    with pytest.raises(ValueError, match=r"attentions\[0\]: expected 2 heads"):
        reg([good[:, :1], good])
    with pytest.raises(TypeError, match=r"attentions\[1\]"):
        reg([good, good.long()])
    with checks("full"), pytest.raises(ValueError, match=r"attentions\[0\]: expected finite"):
        reg([good.masked_fill(good > 0, math.nan), good])
