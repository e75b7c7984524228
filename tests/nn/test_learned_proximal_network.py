"""Learned proximal networks: ψ against a hand-written forward, f = ∇ψ by finite differences,
convexity oracles (symmetric PSD Jacobian, monotonicity, tangent planes), the learned prior,
proximal matching loss closed forms and the authors' γ schedule table."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from inforeg.core.checks import checks
from inforeg.nn import (
    ICNNPotential,
    LearnedProximalNet,
    ProximalMatchingLoss,
    prox_matching_gamma,
    proximal_matching_loss,
)
from tests._helpers import assert_close, gradcheck64, module_matches_function


def _net(dim: int = 3, seed: int = 0, alpha: float = 0.0, **kw) -> LearnedProximalNet:
    torch.manual_seed(seed)
    kw.setdefault("hidden", 8)
    kw.setdefault("layers", 2)
    return LearnedProximalNet(dim, alpha=alpha, **kw).double()


def _reference_potential(net: LearnedProximalNet, y: torch.Tensor) -> torch.Tensor:
    """ψ written out from the paper's equations with the module's weights (float64)."""
    icnn = net.icnn
    beta = icnn.beta

    def s(t: torch.Tensor) -> torch.Tensor:
        return torch.log1p(torch.exp(beta * t)) / beta

    z = s(y @ icnn.input_layer.weight.T)
    for core, skip in zip(icnn.hidden_layers, icnn.input_skips):
        z = s(z @ core.weight.T + y @ skip.weight.T + skip.bias)
    out = z @ icnn.output_layer.weight.T + y @ icnn.output_skip.weight.T + icnn.output_skip.bias
    return out.squeeze(1) + icnn.alpha * (y**2).sum(1)


# ----------------------------------------------------------------------------- network


def test_potential_matches_the_equations():
    net = _net(alpha=0.3)
    y = torch.randn(16, 3, dtype=torch.float64)
    assert_close(net.potential(y), _reference_potential(net, y))


def test_forward_is_the_gradient_of_the_potential_by_finite_differences():
    net = _net(alpha=0.1)
    y = torch.randn(10, 3, dtype=torch.float64)
    f = net(y)
    h = 1e-6
    fd = torch.stack(
        [
            (net.potential(y + h * e) - net.potential(y - h * e)) / (2 * h)
            for e in torch.eye(3, dtype=torch.float64)
        ],
        dim=1,
    )
    assert_close(f, fd, rtol=1e-6, atol=1e-7)


def test_jacobian_is_symmetric_psd_and_nonzero():
    net = _net(dim=4, seed=1)
    for y in torch.randn(5, 4, dtype=torch.float64):
        jac = torch.autograd.functional.jacobian(lambda v: net(v[None])[0], y)
        assert_close(jac, jac.T)
        eig = torch.linalg.eigvalsh(jac)
        assert eig.min() > -1e-10
        assert jac.abs().max() > 1e-6


def test_monotone_and_convex_along_segments():
    net = _net(dim=3, seed=2)
    u = torch.randn(200, 3, dtype=torch.float64) * 2
    v = torch.randn(200, 3, dtype=torch.float64) * 2
    assert (((net(u) - net(v)) * (u - v)).sum(1) >= -1e-12).all()
    for t in (0.1, 0.5, 0.9):
        mid = net.potential(t * u + (1 - t) * v)
        chord = t * net.potential(u) + (1 - t) * net.potential(v)
        assert (mid <= chord + 1e-10).all()


def test_prox_property_on_a_point_set():
    """Gribonval-Nikolova: with φ(f(y_i)) = <y_i, f_i> - ½|f_i|² - ψ(y_i), the prox objective
    ½|y_k - f_i|² + φ(f_i) is smallest at i = k (a tangent plane of a convex ψ lies below it)."""
    net = _net(dim=2, seed=3, alpha=0.05)
    ys = torch.randn(60, 2, dtype=torch.float64) * 1.5
    fs = net(ys).detach()
    phi = (ys * fs).sum(1) - 0.5 * (fs**2).sum(1) - net.potential(ys).detach()
    objective = 0.5 * torch.cdist(ys, fs) ** 2 + phi[None, :]  # [k, i]
    assert torch.equal(objective.argmin(1), torch.arange(60))


def test_the_oracles_can_fail_without_the_constraint():
    """A negative constrained weight breaks convexity and the oracle above notices."""
    net = _net(dim=1, seed=4, hidden=6, layers=1)
    with torch.no_grad():
        net.icnn.output_layer.weight.fill_(-3.0)
    ys = torch.linspace(-3, 3, 200, dtype=torch.float64)[:, None]
    fs = net(ys).detach()
    phi = (ys * fs).sum(1) - 0.5 * (fs**2).sum(1) - net.potential(ys).detach()
    objective = 0.5 * torch.cdist(ys, fs) ** 2 + phi[None, :]
    assert not torch.equal(objective.argmin(1), torch.arange(200))
    net.clip_weights()
    assert (net.icnn.output_layer.weight >= 0).all()


def test_clip_and_init_weights():
    torch.manual_seed(0)
    net = LearnedProximalNet(2, hidden=5, layers=3)
    for w in net.icnn.constrained_weights():  # clipped at construction
        assert (w >= 0).all() and (w == 0).any()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    net.clip_weights()
    assert all((w >= 0).all() for w in net.icnn.constrained_weights())
    assert (net.icnn.input_layer.weight < 0).any()  # W_0 stays free
    net.init_weights(-10.0, 0.1, generator=torch.Generator().manual_seed(0))
    for w in net.icnn.constrained_weights():
        assert (w > math.exp(-11)).all() and (w < math.exp(-9)).all()
    assert len(net.icnn.constrained_weights()) == 4


def test_closed_form_quadratic_and_identity():
    """All weights zero: ψ = α|y|² + const, f(y) = 2αy (α = ½ gives the identity)."""
    net = LearnedProximalNet(3, hidden=4, layers=2, alpha=0.5).double()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    y = torch.randn(7, 3, dtype=torch.float64)
    assert_close(net(y), y)
    assert_close(net.potential(y), 0.5 * (y**2).sum(1))


def test_gradients_reach_parameters_and_input():
    net = _net(alpha=0.1)
    y = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    out = net(y)
    assert out.requires_grad and not y.grad
    out.pow(2).sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    # every parameter but the constant c of ψ (it does not move ∇ψ) gets a gradient
    no_grad = [n for n, p in net.named_parameters() if p.grad is None]
    assert no_grad == ["icnn.output_skip.bias"]


def test_gradcheck_in_input_and_double_backward():
    net = _net(dim=2, alpha=0.2, hidden=4, layers=1)
    y = torch.randn(3, 2, dtype=torch.float64)
    gradcheck64(net, y)
    gradcheck64(net.potential, y)
    assert torch.autograd.gradgradcheck(net, (y.clone().requires_grad_(True),))


def test_no_grad_mode_returns_no_graph_and_leaves_input_alone():
    net = _net()
    y = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        out = net(y)
    assert out.grad_fn is None and not out.requires_grad
    assert not y.requires_grad
    assert_close(out, net(y).detach())


def test_learned_prior_inverts_and_matches_the_formula():
    net = _net(dim=2, seed=5, alpha=0.1)
    y0 = torch.randn(8, 2, dtype=torch.float64)
    x = net(y0).detach()
    y_hat = net.invert(x, steps=600, lr=5e-2)
    assert_close(y_hat, y0, rtol=1e-6, atol=1e-8)  # ψ strictly convex (α > 0): unique inverse
    expected = (y0 * x).sum(1) - 0.5 * (x**2).sum(1) - net.potential(y0).detach()
    assert_close(net.prior(x, steps=600, lr=5e-2), expected, rtol=1e-6, atol=1e-8)
    y_mse = net.invert(x, method="mse", steps=600, lr=5e-2)
    assert_close(y_mse, y0, rtol=1e-5, atol=1e-6)
    assert all(p.grad is None for p in net.parameters())  # evaluation leaves no gradients


def test_device_dtype_parity(device, dtype):
    ref_net = _net(alpha=0.1)
    y = torch.randn(9, 3, dtype=torch.float64)
    ref = ref_net(y).detach()
    net = _net(alpha=0.1).to(device=device, dtype=dtype)
    out = net(y.to(device=device, dtype=dtype)).detach()
    assert out.dtype == dtype and out.device.type == device.type
    assert_close(out, ref)


@pytest.mark.parametrize("scale", [1.0, 1e4, -1e4])
def test_no_nan_for_bf16_and_large_inputs(scale):
    torch.manual_seed(0)
    net = LearnedProximalNet(2, hidden=8, layers=2, alpha=0.01)
    y32 = torch.randn(16, 2) * scale
    out32 = net(y32)
    out32.sum().backward()
    assert torch.isfinite(out32).all()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
    out16 = net(y32.to(torch.bfloat16))
    assert out16.dtype == torch.bfloat16 and torch.isfinite(out16.float()).all()
    assert_close(out16.float(), out32.detach(), rtol=3e-2, atol=3e-2 * max(1.0, abs(scale) / 1e2))


def test_bad_input():
    net = LearnedProximalNet(3, hidden=4, layers=1)
    with pytest.raises(ValueError, match="y"):
        net(torch.randn(4, 2))
    with pytest.raises(ValueError, match="y"):
        net(torch.randn(4))
    with pytest.raises(TypeError, match="y"):
        net(torch.ones(4, 3, dtype=torch.long))
    with pytest.raises(TypeError, match="y"):
        net([[0.0, 0.0, 0.0]])  # type: ignore[arg-type]
    bad = torch.randn(4, 3)
    bad[1, 2] = float("nan")
    with checks("full"), pytest.raises(ValueError, match="y"):
        net(bad)
    for kwargs, name in [
        ({"dim": 0}, "dim"),
        ({"hidden": 0}, "hidden"),
        ({"layers": -1}, "layers"),
        ({"beta": 0.0}, "beta"),
        ({"beta": float("nan")}, "beta"),
        ({"alpha": -0.1}, "alpha"),
    ]:
        args = {"dim": 3, **kwargs}
        with pytest.raises(ValueError, match=name):
            LearnedProximalNet(**args)
    with pytest.raises(TypeError, match="hidden"):
        LearnedProximalNet(3, hidden=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        net.invert(torch.randn(2, 3), method="newton")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        net.prior(torch.randn(2, 3), steps=-1)
    with pytest.raises(ValueError, match="x"):
        net.prior(torch.randn(2, 5))
    with pytest.raises(ValueError, match="std"):
        net.init_weights(std=-1.0)


def test_layers_zero_and_icnn_standalone():
    icnn = ICNNPotential(2, hidden=3, layers=0).double()
    y = torch.randn(5, 2, dtype=torch.float64)
    z = F.softplus(y @ icnn.input_layer.weight.T, beta=10.0)
    ref = (z @ icnn.output_layer.weight.T + icnn.output_skip(y)).squeeze(1)
    assert_close(icnn(y), ref)


# ----------------------------------------------------------------------------- loss


def test_loss_closed_forms():
    pred = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    target = torch.zeros(1, 2, dtype=torch.float64)
    assert_close(proximal_matching_loss(pred, target, 5.0), 1 - math.exp(-1))
    assert proximal_matching_loss(target, target, 0.1) == 0
    # per-sample norm over every non-batch dim (not per element)
    x = torch.randn(4, 2, 3, dtype=torch.float64)
    t = torch.randn(4, 2, 3, dtype=torch.float64)
    per = proximal_matching_loss(x, t, 1.3, reduction="none")
    brute = torch.tensor(
        [1 - math.exp(-float(((x[b] - t[b]) ** 2).sum()) / 1.3**2) for b in range(4)],
        dtype=torch.float64,
    )
    assert_close(per, brute)
    assert_close(proximal_matching_loss(x, t, 1.3), brute.mean())
    assert_close(proximal_matching_loss(x, t, 1.3, reduction="sum"), brute.sum())
    assert_close(proximal_matching_loss(x.reshape(4, 6), t.reshape(4, 6), 1.3), brute.mean())
    # 1-D input: each sample is a scalar (the 1-D notebook's elementwise loss)
    v = torch.tensor([0.0, 0.5, 2.0], dtype=torch.float64)
    expected = (1 - torch.exp(-(v**2) / 0.25)).mean()
    assert_close(proximal_matching_loss(v, torch.zeros(3, dtype=torch.float64), 0.5), expected)
    # limits: γ → ∞ gives 0; γ → 0 gives the 0-1 loss
    assert proximal_matching_loss(x, t, 1e8) < 1e-12
    assert_close(proximal_matching_loss(x, t, 1e-6), torch.tensor(1.0, dtype=torch.float64))


def test_loss_gradient_is_finite_at_zero_and_gradcheck():
    p = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    proximal_matching_loss(p, torch.zeros(3, 2, dtype=torch.float64), 0.5).backward()
    assert torch.equal(p.grad, torch.zeros(3, 2, dtype=torch.float64))
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.randn(4, 3, dtype=torch.float64)
    gradcheck64(lambda a, b: proximal_matching_loss(a, b, 1.7), x, t)
    gradcheck64(lambda a, b: proximal_matching_loss(a, b, 0.9, reduction="none"), x, t)


def test_loss_module_matches_function_and_dtype(device, dtype):
    x = torch.randn(5, 4, dtype=torch.float64)
    t = torch.randn(5, 4, dtype=torch.float64)
    ref = proximal_matching_loss(x, t, 2.0)
    out = proximal_matching_loss(x.to(device, dtype), t.to(device, dtype), 2.0)
    assert out.dtype == dtype
    assert_close(out, ref)
    module_matches_function(
        ProximalMatchingLoss, proximal_matching_loss, x, t, settings={"gamma": 2.0}
    )
    loss = ProximalMatchingLoss(2.0, reduction="none")
    loss.gamma = 0.5
    assert_close(loss(x, t), proximal_matching_loss(x, t, 0.5, reduction="none"))


@pytest.mark.parametrize("scale", [1.0, 1e4, -1e4])
def test_loss_no_nan_bf16_and_large(scale):
    x = (torch.randn(8, 3) * scale).requires_grad_(True)
    t = torch.randn(8, 3)
    out = proximal_matching_loss(x, t, 0.5)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(x.grad).all()
    xb = x.detach().to(torch.bfloat16)
    out_b = proximal_matching_loss(xb, t.to(torch.bfloat16), 0.5)
    assert out_b.dtype == torch.bfloat16 and torch.isfinite(out_b.float())
    ref = proximal_matching_loss(xb.float(), t.to(torch.bfloat16).float(), 0.5)
    assert_close(out_b.float(), ref, rtol=1e-2, atol=1e-2)


def test_loss_bad_input():
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match="target"):
        proximal_matching_loss(x, torch.randn(4, 2), 1.0)
    with pytest.raises(ValueError, match="gamma"):
        proximal_matching_loss(x, x, 0.0)
    with pytest.raises(ValueError, match="gamma"):
        proximal_matching_loss(x, x, float("inf"))
    with pytest.raises(TypeError, match="gamma"):
        proximal_matching_loss(x, x, torch.tensor(1.0))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="pred"):
        proximal_matching_loss(x.long(), x, 1.0)
    with pytest.raises(ValueError, match="reduction"):
        proximal_matching_loss(x, x, 1.0, reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction"):
        ProximalMatchingLoss(1.0, reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pred"):
        proximal_matching_loss(torch.tensor(1.0), torch.tensor(1.0), 1.0)
    bad = x.clone()
    bad[0, 0] = float("nan")
    with checks("full"), pytest.raises(ValueError, match="pred"):
        proximal_matching_loss(bad, x, 1.0)


# ----------------------------------------------------------------------------- schedule


def test_gamma_schedule_table():
    table = {19_999: None, 20_000: 17.92, 25_000: 8.96, 30_000: 4.48, 35_000: 2.24, 45_000: 2.24}
    for step, expected in table.items():
        got = prox_matching_gamma(step, 40_000, 20_000, 2.24)
        if expected is None:
            assert got is None
        else:
            assert got == pytest.approx(expected, rel=1e-12)
    assert prox_matching_gamma(0, 40_000, 20_000, 2.24) is None
    assert prox_matching_gamma(24_999, 40_000, 20_000, 2.24) == pytest.approx(17.92)
    # uneven split: floor((T - T0) / S) steps per stage, the remainder stays in the last stage
    assert prox_matching_gamma(9, 10, 0, 1.0, num_stages=3) == 1.0
    assert prox_matching_gamma(3, 10, 0, 1.0, num_stages=3) == 2.0
    assert prox_matching_gamma(0, 5, 0, 0.5, num_stages=1) == 0.5


def test_gamma_schedule_bad_input():
    with pytest.raises(ValueError, match="total_steps"):
        prox_matching_gamma(0, 20_002, 20_000, 1.0)
    with pytest.raises(ValueError, match="gamma_min"):
        prox_matching_gamma(0, 100, 10, 0.0)
    with pytest.raises(ValueError, match="step"):
        prox_matching_gamma(-1, 100, 10, 1.0)
    with pytest.raises(ValueError, match="num_stages"):
        prox_matching_gamma(0, 100, 10, 1.0, num_stages=0)
    with pytest.raises(TypeError, match="step"):
        prox_matching_gamma(1.5, 100, 10, 1.0)  # type: ignore[arg-type]
