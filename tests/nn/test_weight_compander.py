"""Weight compander (mu-law default): values, the slope at exactly zero, inverse, the
parametrisation on real layers, dtypes and bad input (spec remaining.md §7 (6))."""

from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import inforeg
from inforeg.nn import WeightCompander, apply_weight_compander, compand
from tests._helpers import assert_close, gradcheck64, module_matches_function


def _reference(v: float, s: float, mu: float) -> float:
    return s * math.copysign(math.log(1 + mu * abs(v)) / math.log(1 + mu), v) if v else 0.0


@pytest.mark.parametrize(("s", "mu"), [(1.0, 10.0), (0.5, 3.0), (-2.0, 0.1)])
def test_values_on_a_grid(s, mu, device, dtype):
    grid = torch.linspace(-3, 3, 61, dtype=torch.float64)
    got = compand(grid.to(device, dtype), s, mu)
    assert got.dtype == dtype
    want = torch.tensor([_reference(v, s, mu) for v in grid.tolist()], dtype=torch.float64)
    assert_close(got.cpu(), want)


def test_spec_value_and_slope_at_exactly_zero():
    assert_close(
        compand(torch.tensor(0.5, dtype=torch.float64)),
        torch.tensor(math.log(6) / math.log(11), dtype=torch.float64),
    )
    assert abs(math.log(6) / math.log(11) - 0.7472217) < 1e-7
    for s, mu in ((1.0, 10.0), (0.5, 3.0), (2.0, 1e3)):
        v = torch.zeros(3, dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(compand(v, s, mu).sum(), v)
        assert_close(g, torch.full((3,), s * mu / math.log1p(mu), dtype=torch.float64))
    v = torch.zeros(1, requires_grad=True)
    (g,) = torch.autograd.grad(compand(v).sum(), v)
    assert abs(float(g) - 4.1703) < 1e-4  # 10 / ln 11, not the 0 of autograd through |v|


def test_slope_elsewhere_closed_form():
    v = torch.tensor([-2.0, -0.3, 1e-9, 0.4, 5.0], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(compand(v, 1.5, 4.0).sum(), v)
    want = 1.5 * 4.0 / ((1 + 4.0 * v.detach().abs()) * math.log(5.0))
    assert_close(g, want)


def test_shape_properties():
    v = torch.linspace(-20, 20, 4001, dtype=torch.float64)
    f = compand(v)
    assert_close(compand(-v), -f)  # odd
    assert (f.diff() > 0).all()  # strictly increasing
    inside = (v.abs() > 0) & (v.abs() < 1)
    outside = v.abs() > 1
    assert (f[inside].abs() > v[inside].abs()).all()  # pushed away from zero
    assert (f[outside].abs() < v[outside].abs()).all()  # compressed beyond the fixed point
    one = torch.tensor([1.0, -1.0], dtype=torch.float64)
    assert_close(compand(one), one)
    # mu -> 0: f(v) = s v
    assert_close(compand(v, 0.7, 1e-14), 0.7 * v, rtol=1e-9, atol=1e-12)


def test_gradcheck_including_scale_and_mu():
    v = torch.tensor([-1.3, -0.2, 0.0, 0.05, 0.9, 2.2])
    gradcheck64(compand, v, torch.tensor(0.8), torch.tensor(6.0))
    gradcheck64(lambda t: compand(t, 1.0, 10.0), torch.randn(4, 3))


def test_module_equals_function_and_gradients_reach_scale_and_mu():
    wc = WeightCompander(0.8, 6.0).double()
    assert_close(wc.mu, torch.tensor(6.0, dtype=torch.float64))
    v = torch.randn(5, 4, dtype=torch.float64)
    assert_close(wc(v), compand(v, 0.8, 6.0))
    ds, dmu = torch.autograd.grad(wc(v).sum(), (wc.scale, wc.raw_mu))
    assert float(ds) != 0.0 and float(dmu) != 0.0
    # closed forms: df/ds = f/s; with L = log1p(mu) and dL/dmu = 1/(1+mu),
    # df/dmu = s sign(v) [|v| / ((1 + mu|v|) L) - log1p(mu|v|) / ((1 + mu) L^2)]
    f = compand(v, 0.8, 6.0)
    assert_close(ds, (f / 0.8).sum())
    lv, a = math.log1p(6.0), v.abs()
    dfdmu = 0.8 * v.sign() * (a / (1 + 6.0 * a) / lv - torch.log1p(6.0 * a) / (7.0 * lv**2))
    assert_close(dmu, dfdmu.sum() * torch.sigmoid(wc.raw_mu.detach()))  # softplus' = sigmoid
    module_matches_function(
        WeightCompander, compand, torch.randn(3, 3), settings={"scale": 1.0, "mu": 10.0}
    )


def test_right_inverse_roundtrip():
    for s, mu in ((1.0, 10.0), (0.5, 3.0), (-1.5, 0.2)):
        wc = WeightCompander(s, mu).double()
        v = torch.linspace(-4, 4, 81, dtype=torch.float64)
        assert_close(wc.right_inverse(wc(v).detach()), v)
        w = torch.linspace(-2, 2, 41, dtype=torch.float64)
        assert_close(wc(wc.right_inverse(w)).detach(), w)


def test_registration_keeps_effective_weights_and_trains_latents():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    w0 = layer.weight.detach().clone()
    parametrize.register_parametrization(layer, "weight", WeightCompander())
    assert_close(layer.weight.detach(), w0)
    latent = layer.parametrizations.weight.original
    assert_close(layer.weight.detach(), compand(latent.detach(), 1.0, 10.0))
    x = torch.randn(7, 5)
    layer(x).pow(2).sum().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    comp = layer.parametrizations.weight[0]
    assert comp.scale.grad is not None and comp.raw_mu.grad is not None
    # an exactly-zero latent weight still gets a gradient (the slope trap)
    with torch.no_grad():
        latent[0, 0] = 0.0
    layer.zero_grad()
    layer(x).sum().backward()
    assert float(latent.grad[0, 0]) != 0.0


def test_apply_to_model_state_dict_and_to():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2), nn.Linear(2, 2))
    before = [m.weight.detach().clone() for m in net if hasattr(m, "weight")]
    apply_weight_compander(net, mu=5.0, learnable=False)
    after = [m.weight.detach() for m in net if hasattr(m, "weight")]
    for b, a in zip(before, after, strict=True):
        assert_close(a, b)
    comps = [m for m in net.modules() if isinstance(m, WeightCompander)]
    assert len(comps) == 3 and all(not list(c.parameters()) for c in comps)
    sd = net.state_dict()
    assert "0.parametrizations.weight.0.raw_mu" in sd
    assert "0.parametrizations.weight.original" in sd
    net.double()
    assert comps[0].raw_mu.dtype == torch.float64
    apply_weight_compander(net)  # already parametrised layers are skipped
    assert sum(isinstance(m, WeightCompander) for m in net.modules()) == 3


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_no_nan_from_large_finite_input(low):
    v = torch.tensor([-1e4, -1.0, 0.0, 1e-3, 1e4], dtype=low, requires_grad=True)
    wc = WeightCompander()
    out = wc(v)
    assert out.dtype == low and torch.isfinite(out).all()
    out.float().sum().backward()
    assert torch.isfinite(v.grad.float()).all() and float(v.grad[2]) != 0.0
    want = torch.tensor([_reference(x, 1.0, 10.0) for x in v.detach().double().tolist()])
    assert_close(out.double(), want, dtype=low)


def test_bad_input():
    with pytest.raises(TypeError, match="v"):
        compand(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="mu"):
        compand(torch.ones(2), mu=0.0)
    with pytest.raises(ValueError, match="mu"):
        compand(torch.ones(2), mu=-1.0)
    with pytest.raises(ValueError, match="scale"):
        compand(torch.ones(2), scale=float("nan"))
    with pytest.raises(ValueError, match="scale"):
        compand(torch.ones(2, 3), scale=torch.ones(2))
    with pytest.raises(ValueError, match="scale"):
        WeightCompander(scale=0.0)
    with pytest.raises(ValueError, match="mu"):
        WeightCompander(mu=float("inf"))
    with pytest.raises(TypeError, match="learnable"):
        WeightCompander(learnable="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model"):
        apply_weight_compander(nn.Sequential(nn.ReLU()))
    with pytest.raises(TypeError, match="layer_types"):
        apply_weight_compander(nn.Linear(2, 2), layer_types=[nn.Linear])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="model"):
        apply_weight_compander("net")  # type: ignore[arg-type]
    with inforeg.core.checks.checks("full"):
        with pytest.raises(ValueError, match="v"):
            compand(torch.tensor([float("nan")]))
        with pytest.raises(ValueError, match="mu"):
            compand(torch.ones(2), mu=torch.tensor(-1.0))


def test_signatures_are_the_spec_contract():
    params = inspect.signature(compand).parameters
    assert list(params) == ["v", "scale", "mu"]
    assert (params["scale"].default, params["mu"].default) == (1.0, 10.0)
    module = inspect.signature(WeightCompander).parameters
    assert [(k, p.default) for k, p in module.items()] == [
        ("scale", 1.0),
        ("mu", 10.0),
        ("learnable", True),
    ]
    apply = inspect.signature(apply_weight_compander).parameters
    assert list(apply)[:2] == ["model", "layer_types"]
    assert apply["layer_types"].default == (nn.Linear, nn.Conv2d)
