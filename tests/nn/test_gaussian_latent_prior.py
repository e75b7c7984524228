"""Gaussian latent prior (IRN convention and exact NLL) and the dual-latent weighted sum."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

import inforeg
from inforeg.nn import DualLatentPrior, gaussian_latent_loss
from tests._helpers import assert_close, gradcheck64


def test_irn_convention_is_sum_of_squares_over_batch(device, dtype):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 3, 4, 4, generator=g, dtype=torch.float64)
    got = gaussian_latent_loss(z.to(device, dtype))
    assert got.dtype == dtype and got.shape == ()
    # IRN: lambda_ce * sum(z ** 2) / B, written out as a loop over elements in float64
    want = sum(v * v for v in z.flatten().tolist()) / 5
    assert_close(got.cpu(), torch.tensor(want, dtype=torch.float64))


def test_nll_is_the_negative_log_density():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 7, generator=g, dtype=torch.float64)
    ref = -torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1)
    assert_close(gaussian_latent_loss(z, "none", "nll"), ref)
    assert_close(gaussian_latent_loss(z, "mean", "nll"), ref.mean())
    d = 7
    assert_close(
        gaussian_latent_loss(torch.zeros(2, d, dtype=torch.float64), convention="nll"),
        torch.tensor(d / 2 * math.log(2 * math.pi), dtype=torch.float64),
    )


def test_reductions_and_zero():
    z = torch.randn(4, 2, 3, dtype=torch.float64)
    per = gaussian_latent_loss(z, "none")
    assert per.shape == (4,)
    assert_close(per, (z**2).sum((1, 2)))
    assert_close(gaussian_latent_loss(z, "sum"), per.sum())
    assert_close(gaussian_latent_loss(z, "mean"), per.mean())
    assert float(gaussian_latent_loss(torch.zeros(3, 5))) == 0.0
    assert_close(gaussian_latent_loss(torch.tensor([1.0, -2.0]), "none"), torch.tensor([1.0, 4.0]))


def test_gradients_closed_form():
    z = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    (g_irn,) = torch.autograd.grad(gaussian_latent_loss(z), z)
    assert_close(g_irn, 2 * z.detach() / 4)
    (g_nll,) = torch.autograd.grad(gaussian_latent_loss(z, convention="nll"), z)
    assert_close(g_nll, z.detach() / 4)
    gradcheck64(lambda t: gaussian_latent_loss(t, "none", "nll"), torch.randn(3, 2, 2))


def test_dual_prior_is_the_weighted_sum(dtype):
    z_up = torch.randn(4, 3, 2, 2, dtype=dtype)
    z_down = torch.randn(4, 1, 2, 2, dtype=dtype)
    for conv in ("irn", "nll"):
        for red in ("mean", "sum", "none"):
            prior = DualLatentPrior(0.7, 2.5, conv, red)
            up = gaussian_latent_loss(z_up, red, conv)
            want = 0.7 * up + 2.5 * gaussian_latent_loss(z_down, red, conv)
            assert_close(prior(z_up, z_down), want)
    assert_close(DualLatentPrior(down_weight=0.0)(z_up, z_down), gaussian_latent_loss(z_up))
    # different batch sizes are fine once reduced
    DualLatentPrior()(torch.randn(4, 3), torch.randn(2, 3))


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_half_precision_accumulates_in_float32(low):
    z = torch.full((2, 4096), 1e-2, dtype=low)  # many tiny squares, against a float64 sum
    got = gaussian_latent_loss(z, "none")
    assert got.dtype == low
    want = (z.double() ** 2).sum(1)
    assert_close(got.double(), want, rtol=1e-2, atol=0)
    big = torch.tensor([[1e4, -1e4]], dtype=torch.bfloat16, requires_grad=True)
    out = gaussian_latent_loss(big)
    out.backward()
    assert torch.isfinite(out.float()) and torch.isfinite(big.grad.float()).all()


def test_bad_input():
    with pytest.raises(TypeError, match="z"):
        gaussian_latent_loss(torch.ones(3, dtype=torch.long))
    with pytest.raises(ValueError, match="z"):
        gaussian_latent_loss(torch.tensor(1.0))
    with pytest.raises(ValueError, match="z"):
        gaussian_latent_loss(torch.empty(0, 3))
    with pytest.raises(ValueError, match="reduction"):
        gaussian_latent_loss(torch.ones(2, 2), "avg")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="convention"):
        gaussian_latent_loss(torch.ones(2, 2), convention="half")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="up_weight"):
        DualLatentPrior(up_weight=-1.0)
    with pytest.raises(ValueError, match="down_weight"):
        DualLatentPrior(down_weight=float("inf"))
    with pytest.raises(TypeError, match="down_weight"):
        DualLatentPrior(down_weight="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="z_down"):
        DualLatentPrior(reduction="none")(torch.ones(3, 2), torch.ones(2, 2))
    with pytest.raises(ValueError, match="z_up"):
        DualLatentPrior()(torch.tensor(2.0), torch.ones(2, 2))
    with inforeg.core.checks.checks("full"):
        with pytest.raises(ValueError, match="z_down"):
            DualLatentPrior()(torch.ones(2, 2), torch.tensor([[1.0, float("inf")]]))


def test_signatures_are_the_spec_contract():
    params = inspect.signature(gaussian_latent_loss).parameters
    assert list(params) == ["z", "reduction", "convention"]
    assert (params["reduction"].default, params["convention"].default) == ("mean", "irn")
    prior = inspect.signature(DualLatentPrior).parameters
    assert list(prior)[:3] == ["up_weight", "down_weight", "convention"]
    assert [prior[k].default for k in list(prior)[:3]] == [1.0, 1.0, "irn"]
    assert list(inspect.signature(DualLatentPrior.forward).parameters) == ["self", "z_up", "z_down"]
