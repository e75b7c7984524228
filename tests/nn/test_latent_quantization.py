"""QLAE scalar-codebook quantiser: membership, straight-through, gradient routing of the losses."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.nn import ScalarCodebookQuantizer, qlae_param_groups, scalar_quantize


def test_outputs_are_codebook_members_and_nearest():
    q = ScalarCodebookQuantizer(4)
    assert torch.allclose(q.codebook[0], torch.linspace(-0.5, 0.5, 10))
    z = torch.randn(32, 4, dtype=torch.float64)
    out = q(z)
    cb = q.codebook.detach().double()
    for j in range(4):
        members = (out.quantized[:, j, None] == cb[j][None, :]).any(1)
        assert members.all()
        brute = cb[j][(z[:, j, None] - cb[j][None, :]).abs().argmin(1)]
        assert torch.equal(out.quantized[:, j], brute)
    assert torch.equal(out.z_hat.detach(), out.quantized.detach())


def test_straight_through_and_loss_routing():
    cb = torch.nn.Parameter(torch.linspace(-1, 1, 5, dtype=torch.float64).repeat(3, 1))
    z = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    out = scalar_quantize(z, cb)
    (g,) = torch.autograd.grad(out.z_hat.sum(), z, retain_graph=True)
    assert torch.equal(g, torch.ones_like(z))  # identity Jacobian
    gz, gc = torch.autograd.grad(out.commitment_loss, (z, cb), retain_graph=True, allow_unused=True)
    assert gz is not None and gc is None  # commitment: encoder only
    gz, gc = torch.autograd.grad(out.quantization_loss, (z, cb), allow_unused=True)
    assert gz is None and gc is not None  # quantisation: codebook only
    # closed form of the value: mean over dims of (z - q)^2, mean over the batch
    ref = ((z - out.quantized) ** 2).mean(1).mean()
    assert torch.allclose(out.commitment_loss, ref) and torch.allclose(out.quantization_loss, ref)


def test_reduction_and_param_groups():
    q = ScalarCodebookQuantizer(2, n_values=3)
    z = torch.randn(5, 2)
    assert q(z, reduction="none").commitment_loss.shape == (5,)
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), q)
    groups = qlae_param_groups(model, 0.1)
    assert len(groups[0]["params"]) == 1 and len(groups[1]["params"]) == 2
    torch.optim.AdamW(groups, lr=1e-3)


def test_bad_input():
    q = ScalarCodebookQuantizer(3)
    with pytest.raises(ValueError, match="codebook"):
        q(torch.randn(4, 2))
    with pytest.raises(ValueError, match="z"):
        q(torch.randn(4))
    with pytest.raises(ValueError, match="n_values"):
        ScalarCodebookQuantizer(3, n_values=1)
    with pytest.raises(ValueError, match="high"):
        ScalarCodebookQuantizer(3, low=1.0, high=0.0)


def test_qlae_param_groups_bad_input():
    for bad in (math.nan, math.inf, -0.1):
        with pytest.raises(ValueError, match="weight_decay"):
            qlae_param_groups(torch.nn.Linear(2, 2), bad)
    with pytest.raises(TypeError, match="model"):
        qlae_param_groups([torch.nn.Linear(2, 2)])  # type: ignore[arg-type]


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("scale", [0.3, 3.0, 100.0])
def test_half_precision_matches_float32_on_the_same_values(low, scale):
    # Regression (issue 18): in bf16, |z - v| rounded near-ties to the wrong code (quantized
    # values off by up to 0.5 of a code step and more); in fp16 the squared errors overflowed
    # to inf. Now computed in float32: the same codes, losses within the output's rounding.
    g = torch.Generator().manual_seed(0)
    z = (torch.randn(2000, 4, generator=g) * scale).to(low)
    for codebook in (
        torch.linspace(-0.5, 0.5, 10).repeat(4, 1).to(low),
        (torch.randn(4, 10, generator=g) * scale).to(low),
    ):
        got = scalar_quantize(z, codebook)
        want = scalar_quantize(z.float(), codebook.float())
        assert torch.equal(got.indices, want.indices)
        assert got.quantized.dtype == low and torch.equal(got.quantized.float(), want.quantized)
        for name in ("quantization_loss", "commitment_loss"):
            value = getattr(got, name)
            assert value.dtype == low and torch.isfinite(value)
            ref = getattr(want, name).to(low).float()  # float32 result rounded to the output
            torch.testing.assert_close(value.float(), ref, rtol=0.0, atol=0.0)
