"""Weight compander (the paper's Eq. 1, w = a arctan(v / b)): values, slope, bounds, the Eq. 4
inverse, the parametrisation on real layers, dtypes and bad input."""

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

# (a, b): the paper's Fig. 2 curve and three of its Table I choices
AB = [(1.0, 1.0), (1.0, 0.6), (0.8, 0.5), (0.5, 0.7)]


def _reference(v: float, a: float, b: float) -> float:
    return a * math.atan(v / b)


@pytest.mark.parametrize(("a", "b"), AB)
def test_values_on_a_grid(a, b, device, dtype):
    grid = torch.linspace(-3, 3, 61, dtype=torch.float64)
    got = compand(grid.to(device, dtype), a, b)
    assert got.dtype == dtype
    want = torch.tensor([_reference(v, a, b) for v in grid.tolist()], dtype=torch.float64)
    assert_close(got.cpu(), want)


def test_paper_values():
    # Fig. 2 (a = b = 1) is arctan itself; a = 0.5 halves it
    v = torch.tensor([-1.0, 0.0, 0.5, 2.0], dtype=torch.float64)
    assert_close(
        compand(v),
        torch.tensor(
            [-math.pi / 4, 0.0, 0.4636476090008061, 1.1071487177940904], dtype=torch.float64
        ),
    )
    assert_close(compand(v, 0.5, 1.0), 0.5 * torch.atan(v))
    assert_close(compand(v, 1.0, 0.5), torch.atan(2 * v))


@pytest.mark.parametrize(("a", "b"), AB)
def test_slope_is_eq_3(a, b):
    v = torch.tensor([-2.0, -0.3, 0.0, 1e-9, 0.4, 5.0], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(compand(v, a, b).sum(), v)
    x = v.detach()
    assert_close(g, a / (b * (1 + x**2 / b**2)))
    assert float(g[2]) == pytest.approx(a / b, rel=1e-15)  # largest at 0: small weights move most


def test_shape_properties():
    v = torch.linspace(-50, 50, 10001, dtype=torch.float64)
    for a, b in AB:
        f = compand(v, a, b)
        assert_close(compand(-v, a, b), -f)  # odd
        assert (f.diff() > 0).all()  # strictly increasing
        assert (f.abs() < a * math.pi / 2).all()  # bounded by a pi / 2
        assert float(f[-1]) > 0.98 * a * math.pi / 2  # and the bound is approached
    # b -> infinity with a / b fixed: the identity
    assert_close(compand(v, 1e9, 1e9), v, rtol=1e-9, atol=1e-12)


def test_gradcheck_including_a_and_b():
    v = torch.tensor([-1.3, -0.2, 0.0, 0.05, 0.9, 2.2])
    gradcheck64(compand, v, torch.tensor(0.8), torch.tensor(0.6))
    gradcheck64(lambda t: compand(t, 1.0, 0.5), torch.randn(4, 3))


def test_module_equals_function_and_learnable_gradients_reach_a_and_b():
    wc = WeightCompander(0.8, 0.6, learnable=True).double()
    v = torch.randn(5, 4, dtype=torch.float64)
    assert_close(wc(v), compand(v, 0.8, 0.6))
    da, db = torch.autograd.grad(wc(v).sum(), (wc.a, wc.b))
    # d psi / d a = arctan(v / b); d psi / d b = -a v / (b^2 + v^2)
    assert_close(da, torch.atan(v / 0.6).sum())
    assert_close(db, (-0.8 * v / (0.36 + v**2)).sum())
    module_matches_function(
        WeightCompander, compand, torch.randn(3, 3), settings={"a": 0.7, "b": 0.8}
    )


def test_fixed_by_default_as_in_the_paper():
    wc = WeightCompander()
    assert not list(wc.parameters())
    assert {k for k, _ in wc.named_buffers()} == {"a", "b"}
    assert "learnable=False" in repr(wc)


@pytest.mark.parametrize(("a", "b"), AB)
def test_right_inverse_is_eq_4(a, b):
    wc = WeightCompander(a, b).double()
    v = torch.linspace(-4, 4, 81, dtype=torch.float64)
    assert_close(wc.right_inverse(wc(v).detach()), v)
    w = torch.linspace(-0.99, 0.99, 41, dtype=torch.float64) * a * math.pi / 2
    assert_close(wc(wc.right_inverse(w)).detach(), w)
    assert_close(wc.right_inverse(w), wc.b * torch.tan(w / wc.a))  # the stored (float32) a, b


def test_inverse_rejects_weights_outside_the_bound():
    with pytest.raises(ValueError, match=r"w: .*a pi/2"):
        WeightCompander(0.5, 1.0).right_inverse(torch.tensor([0.1, 0.8]))  # 0.8 > 0.785
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.fill_(2.0)
    with pytest.raises(ValueError, match="w:"):
        parametrize.register_parametrization(layer, "weight", WeightCompander())  # 2 > pi / 2


def test_registration_keeps_effective_weights_and_trains_latents():
    torch.manual_seed(0)
    layer = nn.Linear(5, 3)
    w0 = layer.weight.detach().clone()
    parametrize.register_parametrization(layer, "weight", WeightCompander(1.0, 0.6, learnable=True))
    assert_close(layer.weight.detach(), w0)
    latent = layer.parametrizations.weight.original
    assert_close(latent.detach(), 0.6 * torch.tan(w0))
    assert_close(layer.weight.detach(), compand(latent.detach(), 1.0, 0.6))
    x = torch.randn(7, 5)
    layer(x).pow(2).sum().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    comp = layer.parametrizations.weight[0]
    assert comp.a.grad is not None and comp.b.grad is not None
    # an exactly-zero latent weight gets the largest slope, a / b
    with torch.no_grad():
        latent[0, 0] = 0.0
    layer.zero_grad()
    layer(x).sum().backward()
    assert float(latent.grad[0, 0]) != 0.0


def test_apply_to_model_state_dict_and_to():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2), nn.Linear(2, 2))
    before = [m.weight.detach().clone() for m in net if hasattr(m, "weight")]
    apply_weight_compander(net, a=0.8, b=0.5)
    after = [m.weight.detach() for m in net if hasattr(m, "weight")]
    for b, a in zip(before, after, strict=True):
        assert_close(a, b)
    comps = [m for m in net.modules() if isinstance(m, WeightCompander)]
    assert len(comps) == 3 and all(not list(c.parameters()) for c in comps)
    sd = net.state_dict()
    assert "0.parametrizations.weight.0.a" in sd and "0.parametrizations.weight.0.b" in sd
    assert "0.parametrizations.weight.original" in sd
    net.double()
    assert comps[0].a.dtype == torch.float64
    apply_weight_compander(net)  # already parametrised layers are skipped
    assert sum(isinstance(m, WeightCompander) for m in net.modules()) == 3


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_no_nan_from_large_finite_input(low):
    v = torch.tensor([-1e4, -1.0, 0.0, 1e-3, 1e4], dtype=low, requires_grad=True)
    out = WeightCompander()(v)
    assert out.dtype == low and torch.isfinite(out).all()
    out.float().sum().backward()
    assert torch.isfinite(v.grad.float()).all() and float(v.grad[2]) == 1.0
    want = torch.tensor([_reference(x, 1.0, 1.0) for x in v.detach().double().tolist()])
    assert_close(out.double(), want, dtype=low)


def test_bad_input():
    with pytest.raises(TypeError, match="v"):
        compand(torch.tensor([1, 2]))
    for name in ("a", "b"):
        for bad in (0.0, -1.0, float("nan"), float("inf")):
            with pytest.raises(ValueError, match=name):
                compand(torch.ones(2), **{name: bad})
            with pytest.raises(ValueError, match=name):
                WeightCompander(**{name: bad})
        with pytest.raises(ValueError, match=name):
            compand(torch.ones(2, 3), **{name: torch.ones(2)})
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
        with pytest.raises(ValueError, match="a"):
            compand(torch.ones(2), a=torch.tensor(-1.0))
        with pytest.raises(ValueError, match="b"):
            compand(torch.ones(2), b=torch.tensor(0.0))


def test_signatures():
    params = inspect.signature(compand).parameters
    assert list(params) == ["v", "a", "b"]
    assert (params["a"].default, params["b"].default) == (1.0, 1.0)
    module = inspect.signature(WeightCompander).parameters
    assert [(k, p.default) for k, p in module.items()] == [
        ("a", 1.0),
        ("b", 1.0),
        ("learnable", False),
    ]
    apply = inspect.signature(apply_weight_compander).parameters
    assert list(apply)[:2] == ["model", "layer_types"]
    assert apply["layer_types"].default == (nn.Linear, nn.Conv2d)
