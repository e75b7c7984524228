"""CRReLU: closed-form values, derivatives in x and eps, the ReLU limit, dtypes, bad input."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

import inforeg
from inforeg.nn import CRReLU, crrelu
from tests._helpers import assert_close, gradcheck64, module_matches_function


def _reference(x: torch.Tensor, eps: float) -> torch.Tensor:
    """The formula elementwise in Python floats (float64 math)."""
    return torch.tensor(
        [max(0.0, v) + eps * v * math.exp(-v * v / 2) for v in x.double().tolist()],
        dtype=torch.float64,
    )


def test_spec_values():
    x = torch.tensor([1.0, -1.0, 2.0, 0.0], dtype=torch.float64)
    got = crrelu(x)
    want = torch.tensor([1.0060653066, -0.0060653066, 2.0027067057, 0.0], dtype=torch.float64)
    assert_close(got, want, rtol=0, atol=1e-10)


def test_matches_pointwise_reference(device, dtype):
    x = torch.linspace(-5, 5, 101, dtype=torch.float64)
    for eps in (0.01, -0.3, 2.0):
        got = crrelu(x.to(device=device, dtype=dtype), eps)
        assert got.dtype == dtype and got.device.type == device.type
        assert_close(got.cpu(), _reference(x, eps))


def test_eps_zero_is_relu_exactly():
    x = torch.randn(1000, dtype=torch.float64) * 3
    assert torch.equal(crrelu(x, 0.0), torch.relu(x))


def test_correction_is_odd_and_peaks_at_one():
    x = torch.linspace(0.01, 4, 400, dtype=torch.float64)
    corr = crrelu(x, 1.0) - torch.relu(x)
    corr_neg = crrelu(-x, 1.0) - torch.relu(-x)
    assert_close(corr_neg, -corr)
    peak = x[corr.argmax()]
    assert abs(float(peak) - 1.0) < 0.011
    assert_close(corr.max(), torch.tensor(math.exp(-0.5), dtype=torch.float64), atol=1e-4)


def test_derivatives_closed_form():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.0, 3.0], dtype=torch.float64, requires_grad=True)
    eps = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    gx, ge = torch.autograd.grad(crrelu(x, eps).sum(), (x, eps))
    xd = x.detach()
    g = torch.exp(-xd * xd / 2)
    # relu's derivative at 0 is 0 (PyTorch's convention, pinned by the spec)
    assert_close(gx, (xd > 0).double() + 0.2 * (1 - xd * xd) * g)
    assert_close(ge, (xd * g).sum())


def test_gradcheck():
    x = torch.tensor([-2.1, -0.7, 0.4, 1.3, 2.6])
    gradcheck64(crrelu, x, torch.tensor(0.05))
    gradcheck64(lambda t: crrelu(t, 0.01), torch.randn(3, 4))


def test_module_one_learnable_scalar():
    act = CRReLU()
    params = list(act.parameters())
    assert len(params) == 1 and params[0] is act.eps and act.eps.shape == ()
    assert act.eps.item() == pytest.approx(0.01)
    assert "eps" in act.state_dict()
    x = torch.randn(50, dtype=torch.float64)
    act = act.double()
    out = act(x).sum()
    (ge,) = torch.autograd.grad(out, act.eps)
    assert_close(ge, (x * torch.exp(-x * x / 2)).sum())
    fixed = CRReLU(0.3, learnable=False)
    assert list(fixed.parameters()) == [] and "eps" in dict(fixed.named_buffers())
    module_matches_function(CRReLU, crrelu, torch.randn(4, 5), settings={"eps": 0.3})


def test_tensor_eps_broadcasts_per_channel():
    x = torch.randn(2, 3, dtype=torch.float64)
    eps = torch.tensor([0.0, 0.5, -1.0], dtype=torch.float64)
    got = crrelu(x, eps)
    for j, e in enumerate(eps.tolist()):
        assert_close(got[:, j], _reference(x[:, j], e))


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16, torch.float32])
def test_no_nan_from_large_finite_input(low):
    dtype = low
    x = torch.tensor([-1e4, -30.0, -1.0, 0.0, 1.0, 30.0, 1e4], dtype=dtype, requires_grad=True)
    act = CRReLU()
    y = act(x)
    assert y.dtype == dtype and torch.isfinite(y).all()
    y.float().sum().backward()
    assert torch.isfinite(x.grad.float()).all() and torch.isfinite(act.eps.grad).all()
    assert_close(y.float(), _reference(x.detach(), 0.01).float(), dtype=dtype)


def test_bad_input():
    with pytest.raises(TypeError, match="x"):
        crrelu(torch.tensor([1, 2]))
    with pytest.raises(TypeError, match="x"):
        crrelu([1.0, 2.0])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        crrelu(torch.randn(3), float("nan"))
    with pytest.raises(ValueError, match="eps"):
        crrelu(torch.randn(3), float("inf"))
    with pytest.raises(ValueError, match="eps"):
        crrelu(torch.randn(3), torch.ones(2))
    with pytest.raises(TypeError, match="eps"):
        crrelu(torch.randn(3), "0.1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        CRReLU(float("inf"))
    with pytest.raises(TypeError, match="learnable"):
        CRReLU(learnable=1)  # type: ignore[arg-type]
    with inforeg.core.checks.checks("full"):
        with pytest.raises(ValueError, match="x"):
            crrelu(torch.tensor([1.0, float("nan")]))
    crrelu(torch.tensor([1.0, float("nan")]))  # default mode: no sync, no check


def test_signatures_are_the_spec_contract():
    params = inspect.signature(crrelu).parameters
    assert list(params) == ["x", "eps"] and params["eps"].default == 0.01
    module = inspect.signature(CRReLU).parameters
    assert [(k, p.default) for k, p in module.items()] == [("eps", 0.01), ("learnable", True)]
