"""AEM attention entropy and the ABMIL pooling module."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.core.checks import checks
from inforeg.losses import (
    ABMIL,
    AttentionEntropyMaximization,
    attention_entropy,
    masked_attention_softmax,
)
from tests._helpers import gradcheck64


def test_spec_value_and_bounds():
    a = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    assert float(attention_entropy(a.log())) == pytest.approx(1.2799, abs=1e-4)
    assert float(attention_entropy(a.log())) == pytest.approx(
        -float((a * a.log()).sum()), rel=1e-12
    )
    torch.manual_seed(0)
    s = torch.randn(20, 7, dtype=torch.float64) * 3
    h = attention_entropy(s)
    assert bool((h >= 0).all()) and bool((h <= math.log(7) + 1e-12).all())
    assert float(attention_entropy(torch.zeros(7, dtype=torch.float64))) == pytest.approx(
        math.log(7)
    )
    assert float(attention_entropy(torch.tensor([3.0]))) == 0.0  # N = 1


def test_gradient_formula_and_gradcheck():
    torch.manual_seed(1)
    s = torch.randn(6, dtype=torch.float64, requires_grad=True)
    h = attention_entropy(s)
    h.backward()
    a = torch.softmax(s.detach(), 0)
    assert torch.allclose(s.grad, -a * (a.log() + h.detach()))
    u = torch.zeros(5, dtype=torch.float64, requires_grad=True)
    attention_entropy(u).backward()
    assert torch.allclose(u.grad, torch.zeros(5, dtype=torch.float64))
    gradcheck64(attention_entropy, torch.randn(3, 4, dtype=torch.float64))


def test_mask_equals_unpadded():
    torch.manual_seed(2)
    s = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    h = attention_entropy(s, mask)
    assert float(h[0]) == pytest.approx(float(attention_entropy(s[0, :3])), rel=1e-12)
    h.sum().backward()
    assert torch.isfinite(s.grad).all() and torch.equal(
        s.grad[0, 3:], torch.zeros(2, dtype=torch.float64)
    )
    empty = attention_entropy(s, torch.zeros(2, 5, dtype=torch.bool))
    assert torch.equal(empty, torch.zeros(2, dtype=torch.float64))
    a = masked_attention_softmax(s, mask)
    assert (
        torch.allclose(a.sum(1), torch.ones(2, dtype=torch.float64))
        and float(a[0, 3:].abs().sum()) == 0
    )


def test_module_and_extremes():
    s = torch.tensor([[1e4, -1e4, 0.0], [0.0, 0.0, 0.0]], requires_grad=True)
    loss = AttentionEntropyMaximization(0.1)(s)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()
    assert float(loss) == pytest.approx(-0.1 * math.log(3) / 2, rel=1e-5)
    sb = torch.randn(2, 4).bfloat16()
    assert attention_entropy(sb).dtype == torch.bfloat16


def test_abmil_batched_matches_single_bags():
    torch.manual_seed(3)
    model = ABMIL(6, inner_dim=8, attention_dim=5, num_classes=2).double()
    bags = [torch.randn(4, 6, dtype=torch.float64), torch.randn(2, 6, dtype=torch.float64)]
    x = torch.zeros(2, 4, 6, dtype=torch.float64)
    x[0], x[1, :2] = bags[0], bags[1]
    mask = torch.tensor([[True] * 4, [True, True, False, False]])
    logits, scores = model(x, mask)
    for b, bag in enumerate(bags):
        lg, sc = model(bag)
        assert torch.allclose(logits[b], lg) and torch.allclose(scores[b, : bag.shape[0]], sc)
    # by hand for bag 0
    h = torch.relu(model.reduce(bags[0]))
    s = model.attention_w(
        torch.tanh(model.attention_v(h)) * torch.sigmoid(model.attention_u(h))
    ).squeeze(-1)
    assert torch.allclose(
        model.classifier((torch.softmax(s, 0).unsqueeze(1) * h).sum(0)), logits[0]
    )


def test_bad_input():
    with pytest.raises(ValueError, match="attention_logits"):
        attention_entropy(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="mask"):
        attention_entropy(torch.randn(2, 3), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="weight"):
        AttentionEntropyMaximization(-1.0)
    with pytest.raises(ValueError, match="x"):
        ABMIL(4)(torch.randn(4))
    with checks("full"):
        with pytest.raises(ValueError, match="attention_logits"):
            attention_entropy(torch.tensor([float("nan"), 1.0]))
