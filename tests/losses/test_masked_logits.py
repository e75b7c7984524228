"""Masked (-inf) logits: finite values and gradients, 0 log 0 = 0 (issue 18 regressions)."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg import losses
from inforeg.core.logspace import kl_terms, p_log_q
from inforeg.dependence import jensen_shannon_logits

D64 = torch.float64
NEG = float("-inf")


def _logits(rows=4, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(rows, classes, generator=g, dtype=D64)
    z[:, 3] = NEG  # one masked class in every row
    return z.requires_grad_(True)


def _unmasked(z):
    # The same problem without the masked class: the reference value.
    keep = [c for c in range(z.shape[1]) if c != 3]
    return z.detach()[:, keep].clone().requires_grad_(True), keep


def _past(rows, classes, seed=1):
    g = torch.Generator().manual_seed(seed)
    p = torch.softmax(torch.randn(rows, classes, generator=g, dtype=D64), 1)
    p[:, 3] = 0.0
    return p / p.sum(1, keepdim=True)


def _check(fn_masked, fn_ref, z):
    v = fn_masked(z)
    v.sum().backward()
    assert torch.isfinite(v).all(), v
    assert torch.isfinite(z.grad).all(), z.grad
    zr, keep = _unmasked(z)
    ref = fn_ref(zr)
    ref.sum().backward()
    if v.shape == z.shape:  # per-class output: the masked class gets exactly 0
        assert float(v.detach()[:, 3].abs().sum()) == 0.0
        v = v[:, keep]
    torch.testing.assert_close(v.detach(), ref.detach())
    torch.testing.assert_close(z.grad[:, keep], zr.grad)
    assert float(z.grad[:, 3].abs().sum()) == 0.0


def test_helpers_follow_zero_log_zero():
    log_p = torch.log_softmax(torch.tensor([0.0, NEG], dtype=D64, requires_grad=True), 0)
    assert p_log_q(log_p.exp(), log_p).tolist() == [-math.log(1.0), 0.0]
    assert kl_terms(log_p, log_p).tolist() == [0.0, 0.0]
    # p > 0 on an impossible class stays infinite (the loss is)
    assert p_log_q(torch.tensor([0.5]), torch.tensor([NEG])).tolist() == [NEG]


def test_progressive_self_distillation():
    z, y = _logits(), torch.tensor([0, 1, 2, 4])
    past = _past(4, 5)
    keep = [0, 1, 2, 4]
    y_ref = torch.tensor([0, 1, 2, 3])
    _check(
        lambda t: losses.progressive_self_distillation(t, y, past, 0.5, reduction="none"),
        lambda t: losses.progressive_self_distillation(t, y_ref, past[:, keep], 0.5, "none"),
        z,
    )


def test_progressive_self_distillation_module():
    z = _logits()
    m = losses.ProgressiveSelfDistillation(num_samples=4, num_classes=5, total_epochs=3)
    v = m(z, torch.tensor([0, 1, 2, 4]), torch.arange(4))
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(z.grad).all()


def test_local_entropy_regularizer():
    z = _logits()
    mask = torch.tensor([True, False, False, False])
    prior = torch.full((5,), 0.2, dtype=D64)
    _check(
        lambda t: losses.local_entropy_regularizer(t, mask, 3, prior, 0.0, reduction="none"),
        lambda t: losses.local_entropy_regularizer(
            t, mask, 3, torch.full((4,), 0.25, dtype=D64), 0.0, reduction="none"
        ),
        z,
    )


@pytest.mark.parametrize("cls", ["LegoGCDLoss", "SimGCDLoss"])
def test_gcd_losses(cls):
    z = _logits(8)
    kwargs = {"num_classes": 5, "num_known": 3} if cls == "LegoGCDLoss" else {}
    v = getattr(losses, cls)(**kwargs)(
        z, torch.tensor([0, 1, 2, 0]), torch.tensor([1, 1, 0, 0]).bool()
    )
    v.backward()
    assert torch.isfinite(v) and torch.isfinite(z.grad).all()


def test_soft_top_k():
    z = _logits()
    _check(lambda t: losses.soft_top_k(t, 2), lambda t: losses.soft_top_k(t, 2), z)


def test_jensen_shannon_logits():
    z = _logits()
    other = _logits(seed=5).detach()
    zr_other = other[:, [0, 1, 2, 4]]
    _check(
        lambda t: jensen_shannon_logits(t, other), lambda t: jensen_shannon_logits(t, zr_other), z
    )


def test_depict_clustering_loss_with_a_zero_target_on_a_masked_logit():
    """-(target * log_p) was 0 * (-inf) = NaN; the term is 0 log 0 = 0."""
    z = torch.tensor([[1.0, 0.0, NEG]], dtype=D64, requires_grad=True)
    target = torch.tensor([[0.8, 0.2, 0.0]], dtype=D64)
    loss = losses.depict_clustering_loss(z, target)
    want = -(0.8 * (1.0 - math.log(math.e + 1.0)) + 0.2 * (0.0 - math.log(math.e + 1.0)))
    assert float(loss) == pytest.approx(want, rel=1e-14)  # 0.51326...
    (g,) = torch.autograd.grad(loss, z)
    assert torch.isfinite(g).all()
