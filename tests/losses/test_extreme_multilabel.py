"""DEXML decoupled softmax and soft top-k: spec values, brute force, implicit gradient."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from inforeg.core.checks import checks
from inforeg.losses import (
    DecoupledSoftmaxLoss,
    SoftTopKLoss,
    decoupled_softmax_loss,
    multilabel_softmax_loss,
    soft_top_k,
    soft_top_k_loss,
)
from tests._helpers import gradcheck64, module_matches_function

S = torch.tensor([[2.0, 1.0, 0.0, -1.0]], dtype=torch.float64)
M = torch.tensor([[True, True, False, False]])


def test_spec_values():
    assert float(decoupled_softmax_loss(S, M)) == pytest.approx(0.2887, abs=1e-4)
    assert float(multilabel_softmax_loss(S, M)) == pytest.approx(0.9402, abs=1e-4)
    p = soft_top_k(
        torch.tensor([[3.0, 1.0, 0.0, -1.0]], dtype=torch.float64), k=2, alpha=1.0, iters=60
    )
    assert torch.allclose(
        p, torch.tensor([[0.9125, 0.5853, 0.3418, 0.1604]], dtype=torch.float64), atol=1e-4
    )
    assert float(p.sum()) == pytest.approx(2.0, abs=1e-9)
    t = math.log(0.9125 / (1 - 0.9125)) - 3.0
    assert t == pytest.approx(-0.6553, abs=2e-3)
    hard = soft_top_k(
        torch.tensor([[3.0, 1.0, 0.0, -1.0]], dtype=torch.float64), k=2, alpha=20.0, iters=60
    )
    assert torch.allclose(
        hard, torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64), atol=1e-4
    )


def test_brute_force_and_single_positive_is_ce():
    torch.manual_seed(0)
    s = torch.randn(4, 6, dtype=torch.float64)
    m = torch.rand(4, 6) < 0.4
    m[:, 0] = True
    ref = []
    for b in range(4):
        negs = [math.exp(float(s[b, j])) for j in range(6) if not m[b, j]]
        ls = [
            -float(s[b, l]) + math.log(math.exp(float(s[b, l])) + sum(negs))
            for l in range(6)
            if m[b, l]
        ]
        ref.append(sum(ls) / len(ls))
    assert torch.allclose(
        decoupled_softmax_loss(s, m, reduction="none"), torch.tensor(ref, dtype=torch.float64)
    )
    one = torch.zeros(4, 6, dtype=torch.bool)
    y = torch.tensor([0, 3, 5, 2])
    one[torch.arange(4), y] = True
    assert torch.allclose(
        decoupled_softmax_loss(s, one, temperature=0.5), F.cross_entropy(s / 0.5, y)
    )
    assert torch.allclose(multilabel_softmax_loss(s, one), F.cross_entropy(s, y))


def test_edge_rows_and_gradcheck():
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    m = torch.tensor([[True] * 4, [False] * 4, [True, False, False, False]])
    out = decoupled_softmax_loss(s, m, reduction="none")
    assert float(out[0]) == 0.0 and float(out[1]) == 0.0
    out.sum().backward()
    assert torch.isfinite(s.grad).all()
    x = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    mm = torch.rand(3, 5) < 0.5
    gradcheck64(lambda t: decoupled_softmax_loss(t, mm, 0.7), x)
    gradcheck64(lambda t: multilabel_softmax_loss(t, mm), x)


def test_soft_top_k_gradient():
    torch.manual_seed(1)
    s = torch.randn(2, 6, dtype=torch.float64, requires_grad=True)
    gradcheck64(lambda t: soft_top_k(t, 2, alpha=1.5, iters=80), s)
    gradcheck64(lambda t: soft_top_k(t, 3, alpha=1.0, iters=80, log=True), s)
    g = torch.randn(2, 6, dtype=torch.float64)
    (soft_top_k(s, 2, iters=80) * g).sum().backward()
    assert torch.allclose(s.grad.sum(dim=1), torch.zeros(2, dtype=torch.float64), atol=1e-12)
    shifted = soft_top_k(s.detach() + 5.0, 2, iters=80)
    assert torch.allclose(shifted, soft_top_k(s.detach(), 2, iters=80), atol=1e-9)


def test_soft_top_k_loss_module_extremes():
    torch.manual_seed(2)
    s = torch.randn(3, 8, dtype=torch.float64)
    m = torch.rand(3, 8) < 0.3
    m[:, 1] = True
    p = soft_top_k(s, 3)
    ref = torch.stack([-(p[b][m[b]].log()).mean() for b in range(3)]).mean()
    assert torch.allclose(soft_top_k_loss(s, m, k=3), ref)
    assert torch.allclose(SoftTopKLoss(k=3)(s, m), ref)
    module_matches_function(SoftTopKLoss, soft_top_k_loss, s, m, settings={"k": 3, "alpha": 1.5})
    module_matches_function(
        DecoupledSoftmaxLoss, decoupled_softmax_loss, s, m, settings={"temperature": 0.5}
    )
    z = torch.tensor([[1e4, -1e4, 0.0, 5.0]], requires_grad=True)
    mk = torch.tensor([[False, True, True, False]])
    loss = (
        decoupled_softmax_loss(z, mk) + soft_top_k_loss(z, mk, k=2) + multilabel_softmax_loss(z, mk)
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    zb = torch.randn(2, 6).bfloat16()
    mb = torch.rand(2, 6) < 0.5
    assert decoupled_softmax_loss(zb, mb).dtype == torch.bfloat16
    assert torch.isfinite(soft_top_k_loss(zb, mb, k=2).float())


def test_bad_input():
    with pytest.raises(ValueError, match="positive_mask"):
        decoupled_softmax_loss(S, torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="temperature"):
        decoupled_softmax_loss(S, M, temperature=0.0)
    with pytest.raises(ValueError, match="k"):
        soft_top_k(S, k=4)
    with pytest.raises(ValueError, match="alpha"):
        soft_top_k(S, k=2, alpha=-1.0)
    with pytest.raises(ValueError, match="scores"):
        soft_top_k_loss(S[0], M[0])
    with checks("full"):
        with pytest.raises(ValueError, match="scores"):
            decoupled_softmax_loss(
                torch.tensor([[float("nan"), 0.0]]), torch.tensor([[True, False]])
            )


def test_soft_top_k_many_close_scores_keep_sum_k():
    # Regression: the authors' bracket [-max s - 10/alpha, -min s + 10/alpha] misses the root
    # once L sigmoid(-10) >= k; with 3e5 near-equal scores p summed to ~14 instead of 5.
    g = torch.Generator().manual_seed(0)
    s = 0.01 * torch.randn(2, 300_000, generator=g, dtype=torch.float64)
    p = soft_top_k(s, 5, alpha=2.0)
    torch.testing.assert_close(
        p.sum(1), torch.full((2,), 5.0, dtype=torch.float64), atol=1e-6, rtol=0
    )
    # the same root on a short row with spread scores, where both brackets hold it
    x = torch.tensor([[3.0, 1.0, 0.0, -1.0]], dtype=torch.float64)
    assert float(soft_top_k(x, 2, alpha=1.0).sum()) == pytest.approx(2.0, abs=1e-8)
