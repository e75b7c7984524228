"""SFDA: weighted entropy and the class-ratio KL prior against the spec's worked example."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.core.checks import checks
from inforeg.losses import (
    SourceFreeAdaptationLoss,
    class_ratio_prior_kl,
    entropy_minimization,
    predicted_class_ratio,
)
from tests._helpers import gradcheck64

P0 = torch.tensor([[0.9, 0.8], [0.3, 0.6]], dtype=torch.float64)


def spec_logits() -> torch.Tensor:
    probs = torch.stack([P0, 1 - P0]).unsqueeze(0)  # (1, 2, 2, 2)
    return probs.log()


def test_spec_entropy_value():
    w = torch.tensor([0.1, 0.9], dtype=torch.float64)
    assert float(entropy_minimization(spec_logits(), weights=w)) == pytest.approx(0.2864, abs=1e-4)
    # brute force: -sum nu p log p / (B W H)
    p = torch.stack([P0, 1 - P0])
    ref = (
        -sum(
            float(w[c] * p[c, i, j] * math.log(p[c, i, j]))
            for c in range(2)
            for i in range(2)
            for j in range(2)
        )
        / 4
    )
    assert float(entropy_minimization(spec_logits(), weights=w)) == pytest.approx(ref, rel=1e-12)


def test_spec_proportions_and_kl():
    z = spec_logits()
    paper = predicted_class_ratio(z, normalization="paper")
    code = predicted_class_ratio(z, normalization="code")
    assert torch.allclose(paper, torch.tensor([[0.65, 0.35]], dtype=torch.float64))
    assert torch.allclose(code, torch.tensor([[0.6284, 0.3716]], dtype=torch.float64), atol=1e-4)
    prior = torch.tensor([0.75, 0.25], dtype=torch.float64)
    kl = class_ratio_prior_kl(z, prior, normalization="code")
    assert float(kl) == pytest.approx(0.0361, abs=1e-4)
    t = code[0]
    ref = float((t * (t / prior).log()).sum())
    assert float(kl) == pytest.approx(ref, abs=1e-8)


def test_kl_zero_iff_match_and_entropy_zero_for_one_hot():
    z = torch.log(torch.tensor([[0.7, 0.3], [0.5, 0.5], [0.9, 0.1]], dtype=torch.float64))
    tau = predicted_class_ratio(z)[0]
    assert float(class_ratio_prior_kl(z, tau)) == pytest.approx(0.0, abs=1e-9)
    assert float(class_ratio_prior_kl(z, torch.tensor([0.2, 0.8], dtype=torch.float64))) > 0.1
    one_hot = torch.tensor([[1e4, -1e4], [-1e4, 1e4]], requires_grad=True)
    ent = entropy_minimization(one_hot)
    ent.backward()
    assert float(ent.detach()) == 0.0 and torch.isfinite(one_hot.grad).all()


def test_per_image_prior_and_reduction():
    torch.manual_seed(0)
    z = torch.randn(3, 4, 5, 5, dtype=torch.float64)
    prior = torch.softmax(torch.randn(3, 4, dtype=torch.float64), 1)
    per = class_ratio_prior_kl(z, prior, reduction="none")
    assert per.shape == (3,)
    for b in range(3):
        t = torch.softmax(z[b], 0).mean(dim=(1, 2))
        assert float(per[b]) == pytest.approx(float((t * (t / prior[b]).log()).sum()), abs=1e-8)
    assert entropy_minimization(z, reduction="none").shape == (3, 5, 5)


def test_gradcheck():
    torch.manual_seed(1)
    z = torch.randn(2, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    prior = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    gradcheck64(lambda t: entropy_minimization(t, weights=w), z)
    gradcheck64(lambda t: class_ratio_prior_kl(t, prior), z)
    gradcheck64(lambda t: class_ratio_prior_kl(t, prior, normalization="code"), z)


def test_module_bfloat16_and_prior_with_zeros():
    torch.manual_seed(2)
    z = torch.randn(8, 3).bfloat16()
    loss = SourceFreeAdaptationLoss(torch.tensor([1.0, 0.0, 0.0]))(z)
    assert loss.dtype == torch.bfloat16 and torch.isfinite(loss)
    zf = torch.randn(8, 3, dtype=torch.float64)
    mod = SourceFreeAdaptationLoss(
        weights=torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64), kl_weight=0.5
    )
    prior = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    ref = entropy_minimization(zf, weights=mod.weights) + 0.5 * class_ratio_prior_kl(zf, prior)
    assert torch.allclose(mod(zf, prior), ref)
    with pytest.raises(ValueError, match="prior"):
        mod(zf)


def test_entropy_alone_collapses_kl_keeps_proportion():
    """Shared learnable class bias and scale: entropy alone pushes every sample to the majority
    class; with the KL prior the predicted minority proportion stays close to the prior."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # 600 tiny steps: thread overhead dominates on a shared machine
    torch.manual_seed(3)
    init = torch.randn(200, 2) + torch.tensor([0.5, 0.0])
    prior = torch.tensor([0.7, 0.3])
    results = {}
    for kl_weight in (0.0, 1.0):
        bias = torch.zeros(2, requires_grad=True)
        scale = torch.ones((), requires_grad=True)
        opt = torch.optim.SGD([bias, scale], lr=0.5)
        for _ in range(300):
            z = scale * init + bias
            loss = entropy_minimization(z) + kl_weight * class_ratio_prior_kl(z, prior)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            results[kl_weight] = float(predicted_class_ratio(scale * init + bias)[0, 1])
    torch.set_num_threads(threads)
    assert results[0.0] < 0.02  # collapsed onto the majority class
    assert results[1.0] > 0.15  # held near the prior's 0.3


def test_bad_input():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="prior"):
        class_ratio_prior_kl(z, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="normalization"):
        class_ratio_prior_kl(z, torch.ones(3) / 3, normalization="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weights"):
        entropy_minimization(z, weights=torch.ones(2))
    with pytest.raises(ValueError, match="dim"):
        entropy_minimization(z, dim=3)
    with pytest.raises(ValueError, match="entropy_weight"):
        SourceFreeAdaptationLoss(entropy_weight=-1.0)
    with checks("full"):
        with pytest.raises(ValueError, match="prior"):
            class_ratio_prior_kl(z, torch.tensor([0.5, 0.6, 0.1]))
        with pytest.raises(ValueError, match="logits"):
            entropy_minimization(torch.tensor([[float("nan"), 1.0]]))
