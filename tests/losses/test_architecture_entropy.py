"""QuantNAS: architecture entropy, its schedule, quantisation noise and ADQ."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.core.checks import checks
from inforeg.losses import (
    AdaptiveDeviationScale,
    ArchitectureEntropyRegularizer,
    QuantizationNoise,
    architecture_entropy,
    architecture_entropy_weight,
    quantization_noise,
)
from tests._helpers import gradcheck64


def test_entropy_values_and_limits():
    assert float(architecture_entropy(torch.zeros(4, 6))) == pytest.approx(4 * math.log(6))
    saturated = torch.tensor([[1e4, 0.0, 0.0], [0.0, -1e4, 1e4]], requires_grad=True)
    h = architecture_entropy(saturated)
    h.backward()
    assert (
        float(h.detach()) == pytest.approx(0.0, abs=1e-6) and torch.isfinite(saturated.grad).all()
    )
    torch.manual_seed(0)
    a = torch.randn(3, 5, dtype=torch.float64)
    p = torch.softmax(a, 1)
    ref = float(-(p * p.log()).sum())
    assert float(architecture_entropy(a)) == pytest.approx(ref, rel=1e-12)
    assert architecture_entropy(a, reduction="none").shape == (3,)
    gradcheck64(architecture_entropy, a)
    assert architecture_entropy(a.bfloat16()).dtype == torch.bfloat16


def test_schedule_spec_values():
    assert architecture_entropy_weight(5, 20) == pytest.approx(0.0658, abs=1e-4)
    assert architecture_entropy_weight(10, 20) == pytest.approx(0.369, abs=1e-3)
    assert architecture_entropy_weight(19, 20) == pytest.approx(1.0)
    assert architecture_entropy_weight(4, 20) == 0.0 and architecture_entropy_weight(0, 20) == 0.0


def test_regularizer_module():
    reg = ArchitectureEntropyRegularizer(coefficient=1e-3, total_epochs=20)
    a, b = torch.zeros(2, 6), torch.zeros(3, 6)
    assert float(reg([a, b])) == 0.0  # epoch 0: w1 = 0
    reg.set_epoch(19)
    assert float(reg([a, b])) == pytest.approx(1e-3 * 5 * math.log(6), rel=1e-6)
    with pytest.raises(ValueError, match="epoch"):
        reg.set_epoch(20)


def test_minimising_the_term_drives_the_architecture_weights_to_one_hot():
    # The protocol-1 experiment's "one-hot" claim, which is the term's own objective: gradient
    # descent on the regulariser alone (at the last epoch) saturates every edge's softmax on its
    # initially largest entry, and a zero coefficient leaves alpha where it was.
    torch.manual_seed(0)
    start = 0.1 * torch.randn(3, 6)
    for coefficient, expect_one_hot in ((1.0, True), (0.0, False)):
        alpha = start.clone().requires_grad_(True)
        reg = ArchitectureEntropyRegularizer(coefficient=coefficient, total_epochs=20)
        reg.set_epoch(19)
        opt = torch.optim.SGD([alpha], lr=1.0)
        for _ in range(300):
            opt.zero_grad()
            reg(alpha).backward()
            opt.step()
        top = torch.softmax(alpha.detach(), 1).amax(1)
        if expect_one_hot:
            assert bool((top > 0.99).all())
            assert torch.equal(alpha.detach().argmax(1), start.argmax(1))
        else:
            assert torch.equal(alpha.detach(), start)


def test_quantization_noise_statistics():
    g = torch.Generator().manual_seed(0)
    x = torch.linspace(-1.0, 3.0, 200_000, requires_grad=True)
    for bits in (4, 8):
        noisy = quantization_noise(x, bits, generator=g)
        assert not noisy.requires_grad
        d = noisy - x.detach()
        step = 4.0 / (2**bits - 1)
        assert float(d.mean()) == pytest.approx(0.0, abs=3 * step / 2 / math.sqrt(200_000) * 2)
        assert float(d.std()) == pytest.approx(step / 2, rel=0.01)
    u = quantization_noise(x, 4, "uniform", generator=g) - x.detach()
    step = 4.0 / 15
    assert float(u.abs().max()) <= step / 2 + 1e-6
    assert float(u.std()) == pytest.approx(step / math.sqrt(12), rel=0.01)


def test_quantization_noise_mixture_gradients():
    torch.manual_seed(1)
    mod = QuantizationNoise(bits=(8, 4))
    x = torch.randn(10, requires_grad=True)
    w = torch.softmax(torch.randn(2), 0).requires_grad_(True)
    out = mod(x, w)
    out.sum().backward()
    assert torch.allclose(x.grad, torch.full((10,), 1 / 3))  # only the full-precision share
    assert w.grad is not None and torch.isfinite(w.grad).all()
    mod.eval()
    assert torch.equal(mod(x, w), x)
    with pytest.raises(ValueError, match="weights"):
        mod(x, torch.ones(3))


def test_adq():
    adq = AdaptiveDeviationScale()
    skip = torch.randn(2, 3, 4, 4)
    assert torch.equal(adq(torch.zeros_like(skip), skip), skip)
    branch = torch.randn(2, 3, 4, 4)
    std = skip.flatten(1).std(1).view(2, 1, 1, 1)
    assert torch.allclose(adq(branch, skip), branch * 1.5 * std + skip, atol=1e-6)
    with pytest.raises(ValueError, match="skip"):
        adq(branch, skip[:, :2])


def test_bad_input():
    with pytest.raises(ValueError, match="bits"):
        quantization_noise(torch.randn(3), 0)
    with pytest.raises(ValueError, match="distribution"):
        quantization_noise(torch.randn(3), 4, "laplace")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="total_epochs"):
        architecture_entropy_weight(0, 1)
    with pytest.raises(ValueError, match="coefficient"):
        ArchitectureEntropyRegularizer(coefficient=-1.0)
    with pytest.raises(TypeError, match="alpha_logits"):
        architecture_entropy(torch.zeros(2, 3, dtype=torch.long))
    with checks("full"):
        with pytest.raises(ValueError, match="alpha_logits"):
            architecture_entropy(torch.tensor([[float("nan"), 0.0]]))
