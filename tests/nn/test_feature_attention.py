"""CBAM and the non-local block against re-implementations written the way the authors' code
computes them (pooling layers, the (N x N) affinity matrix), their constants, and bad input."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F

import inforeg
from inforeg.nn import CBAM, NonLocalBlock2d
from tests._helpers import assert_close, gradcheck64


def _cbam_reference(m: CBAM, x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[2:]

    def mlp(v: torch.Tensor) -> torch.Tensor:
        lin1, _, lin2 = m.mlp
        return F.linear(F.relu(F.linear(v, lin1.weight, lin1.bias)), lin2.weight, lin2.bias)

    avg = F.avg_pool2d(x, (h, w)).flatten(1)
    mx = F.max_pool2d(x, (h, w)).flatten(1)
    x = x * torch.sigmoid(mlp(avg) + mlp(mx))[:, :, None, None]
    pooled = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)
    bn = m.spatial_bn
    s = F.batch_norm(
        F.conv2d(pooled, m.spatial_conv.weight, padding=m.spatial_conv.padding),
        bn.running_mean.clone(),
        bn.running_var.clone(),
        bn.weight,
        bn.bias,
        training=m.training,
        eps=1e-5,
    )
    return x * torch.sigmoid(s)


def _nonlocal_reference(m: NonLocalBlock2d, x: torch.Tensor) -> torch.Tensor:
    b = x.shape[0]
    g_x = m.g(x).view(b, m.inter_channels, -1).permute(0, 2, 1)
    theta_x = m.theta(x).view(b, m.inter_channels, -1).permute(0, 2, 1)
    phi_x = m.phi(x).view(b, m.inter_channels, -1)
    f = torch.matmul(theta_x, phi_x)
    y = torch.matmul(f / f.size(-1), g_x).permute(0, 2, 1).contiguous()
    y = y.view(b, m.inter_channels, *x.shape[2:])
    return m.out_bn(m.out_conv(y)) + x


def test_cbam_constants():
    m = CBAM(64)
    assert m.mlp[0].out_features == 4 and m.mlp[2].out_features == 64
    assert m.spatial_conv.kernel_size == (7, 7) and m.spatial_conv.padding == (3, 3)
    assert m.spatial_conv.bias is None and m.spatial_conv.in_channels == 2
    assert m.spatial_bn.eps == 1e-5 and m.spatial_bn.momentum == 0.01


@pytest.mark.parametrize("train", [True, False])
def test_cbam_matches_reference(train, dtype):
    torch.manual_seed(0)
    m = CBAM(32, reduction=8, spatial_kernel=3).to(dtype).train(train)
    with torch.no_grad():
        m.spatial_bn.running_mean.fill_(0.2)
        m.spatial_bn.running_var.fill_(1.7)
    x = torch.randn(3, 32, 6, 5, dtype=dtype)
    want = _cbam_reference(m, x)
    got = m(x)
    assert got.shape == x.shape and got.dtype == dtype
    assert_close(got, want)


def test_cbam_gates_are_in_unit_interval():
    m = CBAM(16, reduction=4)
    x = torch.randn(4, 16, 5, 5, dtype=torch.float32).abs() + 0.1  # positive: ratios are gates
    ratio = m(x) / x
    assert (ratio > 0).all() and (ratio < 1).all()


def test_nonlocal_identity_at_init_and_matches_reference(dtype):
    torch.manual_seed(1)
    m = NonLocalBlock2d(8).to(dtype)
    assert m.inter_channels == 4
    x = torch.randn(2, 8, 5, 4, dtype=dtype)
    assert torch.equal(m(x), x)
    assert torch.equal(m.eval()(x), x)
    m.train()
    with torch.no_grad():
        m.out_bn.weight.uniform_(0.5, 1.5)
        m.out_bn.bias.uniform_(-0.5, 0.5)
    got = m(x)
    assert not torch.equal(got, x)
    assert_close(got, _nonlocal_reference(m, x))
    assert NonLocalBlock2d(1).inter_channels == 1
    assert NonLocalBlock2d(6, inter_channels=5).inter_channels == 5


def test_gradcheck():
    torch.manual_seed(2)
    cbam = CBAM(4, reduction=2, spatial_kernel=3).double().eval()
    gradcheck64(cbam, torch.randn(2, 4, 3, 3))
    nl = NonLocalBlock2d(4).double().eval()
    with torch.no_grad():
        nl.out_bn.weight.fill_(1.0)
    gradcheck64(nl, torch.randn(2, 4, 3, 2))


def test_state_follows_to_and_state_dict():
    m = NonLocalBlock2d(4)
    keys = set(m.state_dict())
    assert {"out_bn.running_mean", "out_bn.weight", "theta.weight"} <= keys
    assert m.double().out_bn.running_var.dtype == torch.float64


def test_bad_input():
    with pytest.raises(ValueError, match="x"):
        CBAM(16)(torch.randn(2, 8, 4, 4))
    with pytest.raises(ValueError, match="x"):
        NonLocalBlock2d(8)(torch.randn(8, 4, 4))
    with pytest.raises(TypeError, match="x"):
        NonLocalBlock2d(8)(torch.ones(1, 8, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="reduction"):
        CBAM(8, reduction=16)
    with pytest.raises(ValueError, match="spatial_kernel"):
        CBAM(32, spatial_kernel=4)
    with pytest.raises(ValueError, match="channels"):
        CBAM(0)
    with pytest.raises(ValueError, match="inter_channels"):
        NonLocalBlock2d(8, inter_channels=0)
    with inforeg.core.checks.checks("full"):
        with pytest.raises(ValueError, match="x"):
            CBAM(16)(torch.full((2, 16, 3, 3), float("nan")))


def test_no_nan_from_large_finite_input():
    torch.manual_seed(3)
    x = torch.tensor([-1e4, 1e4, 0.5, -3.0]).repeat(2, 16, 4, 1)
    for low, scale in ((torch.bfloat16, 1.0), (torch.float16, 1e-3)):  # fp16: +-10 (max 65504)
        cbam = CBAM(16).to(low)
        nl = NonLocalBlock2d(16).to(low)
        with torch.no_grad():
            nl.out_bn.weight.fill_(1.0)
        for module in (cbam, nl):
            out = module((x * scale).to(low))
            assert out.dtype == low and torch.isfinite(out).all(), (low, type(module).__name__)


def test_signatures_are_the_spec_contract():
    cbam = inspect.signature(CBAM).parameters
    assert [(k, p.default) for k, p in cbam.items()] == [
        ("channels", inspect.Parameter.empty),
        ("reduction", 16),
        ("spatial_kernel", 7),
    ]
    nl = inspect.signature(NonLocalBlock2d).parameters
    assert [(k, p.default) for k, p in nl.items()] == [
        ("channels", inspect.Parameter.empty),
        ("inter_channels", None),
    ]


@pytest.mark.parametrize("make", [lambda: CBAM(16), lambda: NonLocalBlock2d(16)])
def test_input_in_another_dtype_than_the_parameters_names_x(make):
    # Regression (issue 18): a bf16 input to a float32 module failed inside torch's conv/linear
    # with an error naming no argument.
    module = make()
    x = torch.randn(2, 16, 3, 3)
    with pytest.raises(TypeError, match=r"x: expected dtype torch.float32.*\.to\(torch.bfloat16\)"):
        module(x.bfloat16())
    assert module.to(torch.bfloat16)(x.bfloat16()).dtype == torch.bfloat16
