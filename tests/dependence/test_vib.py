"""VIB head, KL penalty and the MID loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from inforeg.core.checks import checks
from inforeg.dependence import MIDLoss, VIBHead, vib_kl
from tests._helpers import gradcheck64


def test_kl_closed_forms():
    zeros = torch.zeros(4, 3, dtype=torch.float64)
    assert float(vib_kl(zeros, zeros)) == 0.0
    assert float(
        vib_kl(torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
    ) == (pytest.approx(1.5))
    mu = torch.randn(5, 4, dtype=torch.float64)
    lv = torch.randn(5, 4, dtype=torch.float64)
    p = torch.distributions.Normal(mu, (0.5 * lv).exp())
    q = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    want = torch.distributions.kl_divergence(p, q).sum(-1)
    torch.testing.assert_close(vib_kl(mu, lv, "none"), want)
    torch.testing.assert_close(vib_kl(mu, lv, "sum"), want.sum())


def test_kl_gradient_and_gradcheck():
    mu = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    lv = torch.zeros(6, 3, dtype=torch.float64)
    (g,) = torch.autograd.grad(vib_kl(mu, lv), mu)
    torch.testing.assert_close(g, mu.detach() / 6)  # dKL/dmu = mu / B under the batch mean
    lv2 = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    gradcheck64(vib_kl, mu, lv2)


def test_head_and_loss():
    torch.manual_seed(0)
    head = VIBHead(8, 5)
    assert head.k == 4
    feats = torch.randn(10, 8)
    out = head(feats)
    assert out.logits.shape == (10, 5) and out.mu.shape == (10, 4)
    std = (0.5 * out.logvar).exp()
    assert float(std.detach().mean()) < 0.02  # softplus(raw - 5) starts near 0.0067
    head.eval()
    a, b = head(feats), head(feats)
    torch.testing.assert_close(a.logits, b.logits)  # deterministic in eval
    torch.testing.assert_close(a.logits, head.classifier(a.mu))
    y = torch.randint(0, 5, (10,))
    head.train()
    torch.manual_seed(1)
    o = head(feats)
    torch.testing.assert_close(MIDLoss(0.0)(o, y), F.cross_entropy(o.logits, y))
    torch.testing.assert_close(
        MIDLoss(0.1)(o, y), F.cross_entropy(o.logits, y) + 0.1 * vib_kl(o.mu, o.logvar)
    )
    # extreme features: finite log-variance thanks to the clamp
    big = head(torch.full((2, 8), -1e4))
    assert torch.isfinite(big.logvar).all()
    bf = vib_kl(o.mu.to(torch.bfloat16), o.logvar.to(torch.bfloat16))
    assert bf.dtype == torch.bfloat16


def test_bad_input():
    with pytest.raises(ValueError, match="logvar"):
        vib_kl(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="beta"):
        MIDLoss(-1.0)
    with pytest.raises(ValueError, match="in_features"):
        VIBHead(0, 3)
    bad = torch.zeros(2, 3)
    bad[0, 0] = float("nan")
    with checks("full"), pytest.raises(ValueError, match="mu"):
        vib_kl(bad, torch.zeros(2, 3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kl_log_variance_clamp(dtype):
    """Above half the log of the dtype's largest value the log-variance is clamped: finite value
    (the bound's), zero gradient; just below it value and gradient are the exact formula's."""
    bound = 0.5 * math.log(torch.finfo(dtype).max)
    mu = torch.zeros(1, 1, dtype=dtype)
    below = torch.tensor([[bound - 1.0]], dtype=dtype, requires_grad=True)
    value = vib_kl(mu, below)
    (grad,) = torch.autograd.grad(value, below)
    lv = float(below)
    assert float(value) == pytest.approx(0.5 * (math.exp(lv) - 1.0 - lv), rel=1e-5)
    assert float(grad) == pytest.approx(0.5 * (math.exp(lv) - 1.0), rel=1e-5)
    above = torch.tensor([[1e4]], dtype=dtype, requires_grad=True)
    value = vib_kl(mu, above)
    (grad,) = torch.autograd.grad(value, above)
    assert torch.isfinite(value) and float(grad) == 0.0


def test_mid_loss_and_head_name_their_arguments():
    out = VIBHead(4, 3)(torch.randn(5, 4))
    with pytest.raises(ValueError, match="output.logvar"):
        MIDLoss()(out._replace(logvar=out.logvar[:1]), torch.zeros(5, dtype=torch.long))
    with checks("full"), pytest.raises(ValueError, match="target"):
        MIDLoss()(out, torch.full((5,), 3))
    with pytest.raises(TypeError, match="features"):
        VIBHead(4, 3)(torch.randn(5, 4, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="features"):
        VIBHead(4, 3)(torch.randn(5, 3))
