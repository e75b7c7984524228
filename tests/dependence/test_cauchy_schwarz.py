"""CS divergence, conditional CS divergence, CS-QMI and the CS-IB loss."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inforeg.core.checks import checks
from inforeg.dependence import (
    CSIBLoss,
    cauchy_schwarz_divergence,
    conditional_cs_divergence,
    cs_quadratic_mi,
)
from tests._helpers import gradcheck64


def k(a, b, s):
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    return np.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / (2 * s * s))


def ccs_ref(x, y, yh, s, legacy):
    kx = k(x, x, s)
    w = (kx**2).sum(0) if legacy else kx.sum(0) ** 2

    def a(lm):
        return sum((kx[:, j] * lm[:, j]).sum() / w[j] for j in range(len(x)))

    # L21_ji = kappa(yhat_j, y_i): sum_i K_ji L21_ji over i for each j
    l21 = k(yh, y, s).T
    return math.log(a(k(y, y, s))) + math.log(a(k(yh, yh, s))) - 2 * math.log(a(l21))


def qmi_ref(x, t, s):
    n = len(x)
    a, b = k(x, x, s), k(t, t, s)
    vj = (a * b).sum() / n**2
    vm = a.sum() * b.sum() / n**4
    vc = (a.sum(1) * b.sum(1)).sum() / n**3
    return math.log(vj) + math.log(vm) - 2 * math.log(vc)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3))
    y = x[:, :1] + 0.3 * rng.standard_normal((12, 1))
    yh = y + 0.5 * rng.standard_normal((12, 1))
    return x, y, yh


@pytest.mark.parametrize("legacy", [False, True])
def test_conditional_reference(data, legacy):
    x, y, yh = data
    t = [torch.from_numpy(a) for a in data]
    got = conditional_cs_divergence(*t, sigma=0.8, legacy_denominator=legacy)
    assert float(got) == pytest.approx(ccs_ref(x, y, yh, 0.8, legacy), abs=1e-12)
    assert float(
        conditional_cs_divergence(*t, sigma=0.8, legacy_denominator=legacy, chunk_size=5)
    ) == (pytest.approx(float(got), abs=1e-12))
    assert float(conditional_cs_divergence(t[0], t[1], t[1], legacy_denominator=legacy)) == 0.0
    bits = conditional_cs_divergence(*t, sigma=0.8, legacy_denominator=legacy, bits=True)
    assert float(bits) == pytest.approx(float(got) / math.log(2))


def test_qmi_reference_and_properties(data):
    x, y, _ = data
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    assert float(cs_quadratic_mi(xt, yt, 1.1)) == pytest.approx(qmi_ref(x, y, 1.1), abs=1e-12)
    assert float(cs_quadratic_mi(xt, yt)) >= 0
    torch.testing.assert_close(cs_quadratic_mi(xt, yt), cs_quadratic_mi(yt, xt))
    perm = torch.randperm(12)
    torch.testing.assert_close(cs_quadratic_mi(xt[perm], yt[perm]), cs_quadratic_mi(xt, yt))
    assert float(cs_quadratic_mi(xt, xt, normalized=True)) == pytest.approx(1.0, abs=1e-12)


def test_qmi_spec_ranges():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 2, generator=g, dtype=torch.float64)
    ind = torch.randn(200, 1, generator=g, dtype=torch.float64)
    dep = x[:, :1] + 0.1 * torch.randn(200, 1, generator=g, dtype=torch.float64)
    assert float(cs_quadratic_mi(x, ind, bits=True)) < 0.03
    assert float(cs_quadratic_mi(x, dep, bits=True)) == pytest.approx(0.25, abs=0.03)
    assert float(cs_quadratic_mi(x, dep, normalized=True)) == pytest.approx(0.70, abs=0.05)


def test_cs_divergence():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 2, generator=g, dtype=torch.float64)
    y = torch.randn(25, 2, generator=g, dtype=torch.float64) + 1.0
    xn, yn = x.numpy(), y.numpy()
    ref = (
        math.log(k(xn, xn, 0.7).mean())
        + math.log(k(yn, yn, 0.7).mean())
        - 2 * math.log(k(xn, yn, 0.7).mean())
    )
    assert float(cauchy_schwarz_divergence(x, y, 0.7)) == pytest.approx(ref, abs=1e-12)
    assert float(cauchy_schwarz_divergence(x, y, 0.7, chunk_size=4)) == pytest.approx(
        ref, abs=1e-12
    )
    assert float(cauchy_schwarz_divergence(x, x, 0.7)) == pytest.approx(0.0, abs=1e-12)
    # far apart with a tiny kernel: finite thanks to the log-domain reduction
    far = cauchy_schwarz_divergence(x, y + 1e3, 0.01)
    assert torch.isfinite(far) and float(far) > 0


def test_gradcheck(data):
    t = [torch.from_numpy(a)[:6] for a in data]
    for legacy in (False, True):
        gradcheck64(
            lambda a, b, c, lg=legacy: conditional_cs_divergence(
                a, b, c, legacy_denominator=lg, chunk_size=4
            ),
            *t,
        )
    gradcheck64(lambda a, b: cs_quadratic_mi(a, b, normalized=True), *t[:2])
    gradcheck64(lambda a, b: cauchy_schwarz_divergence(a, b, 0.9), t[1], t[2])


def test_loss_module(data):
    t = [torch.from_numpy(a) for a in data]
    rep = torch.randn(12, 4, dtype=torch.float64)
    loss = CSIBLoss(beta=0.1)
    want = conditional_cs_divergence(*t, bits=True) + 0.1 * cs_quadratic_mi(
        t[0], rep, normalized=True
    )
    torch.testing.assert_close(loss(t[0], t[1], t[2], rep), want)
    legacy = CSIBLoss(beta=0.0, legacy_denominator=True, bits=False)
    torch.testing.assert_close(
        legacy(t[0], t[1], t[2], rep), conditional_cs_divergence(*t, legacy_denominator=True)
    )


def test_bad_input(data):
    t = [torch.from_numpy(a) for a in data]
    with pytest.raises(ValueError, match="y_hat"):
        conditional_cs_divergence(t[0], t[1], t[0])
    with pytest.raises(ValueError, match="y"):
        conditional_cs_divergence(t[0], t[1][:5], t[2][:5])
    with pytest.raises(ValueError, match="sigma"):
        cs_quadratic_mi(t[0], t[1], sigma=0.0)
    with pytest.raises(ValueError, match="y"):
        cauchy_schwarz_divergence(t[0], t[1])
    with pytest.raises(ValueError, match="beta"):
        CSIBLoss(beta=-1.0)
    bad = t[0].clone()
    bad[0, 0] = float("nan")
    with checks("full"), pytest.raises(ValueError, match="x"):
        cs_quadratic_mi(bad, t[1])


def test_conditional_cs_far_predictions_keep_value_and_gradient_in_float32():
    """The cross kernel underflowed when y_hat was far from y: float32, y_hat = y + 30 gave 177.7
    for 643.1 and a gradient of norm 0.07 for 50 (nothing pulled y_hat back)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g, dtype=torch.float64)
    y = torch.randn(64, 1, generator=g, dtype=torch.float64)
    out = {}
    for dt in (torch.float64, torch.float32):
        y_hat = (y + 30.0).to(dt).requires_grad_(True)
        value = conditional_cs_divergence(x.to(dt), y.to(dt), y_hat)
        (grad,) = torch.autograd.grad(value, y_hat)
        out[dt] = (float(value), grad.double())
    assert out[torch.float32][0] == pytest.approx(out[torch.float64][0], rel=1e-5)
    torch.testing.assert_close(out[torch.float32][1], out[torch.float64][1], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("normalized", [False, True])
def test_cs_quadratic_mi_with_a_wide_kernel_in_float32(normalized):
    """At sigma = 100 on unit data I_CS is ~1e-8, a difference of logs that agree to 1/sigma^4:
    float32 kernel sums gave 0 (and a normalised value of -5.5e11 on other data)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 1, generator=g, dtype=torch.float64)
    t = x + 0.5 * torch.randn(500, 1, generator=g, dtype=torch.float64)
    want = float(cs_quadratic_mi(x, t, sigma=100.0, normalized=normalized))
    got = float(cs_quadratic_mi(x.float(), t.float(), sigma=100.0, normalized=normalized))
    assert got == pytest.approx(want, rel=1e-4)
