"""WaveBlock / AttentiveWaveBlock: the mask's structure, the strip's distribution, train/eval,
gradients, dtypes and bad input (spec remaining.md §1 (6))."""

from __future__ import annotations

import inspect

import pytest
import torch

import inforeg
from inforeg.nn import CBAM, AttentiveWaveBlock, NonLocalBlock2d, WaveBlock, wave_block
from tests._helpers import assert_close, gradcheck64


def _strip_rows(ratio_out: torch.Tensor) -> list[int]:
    """Rows whose multiplier is 1, from an output/input ratio of shape (B, C, H, W)."""
    row = ratio_out[0, 0, :, 0]
    return [h for h in range(row.shape[0]) if float(row[h]) == 1.0]


@pytest.mark.parametrize(("height", "rows"), [(8, 2), (10, 3), (16, 5), (32, 10), (5, 2)])
def test_strip_height_is_round_half_even(height, rows):
    x = torch.ones(2, 3, height, 4)
    out = wave_block(x, start=0)
    assert _strip_rows(out) == list(range(rows))


def test_mask_structure(device, dtype):
    g = torch.Generator().manual_seed(0)
    # even integers up to 64: x and 1.5 x are exact in every dtype, bfloat16 included
    x = (2 * torch.randint(1, 33, (4, 3, 10, 6), generator=g)).to(device, dtype)
    for _ in range(20):
        out = wave_block(x, 0.3, 1.5, generator=g)
        assert out.dtype == dtype and out.shape == x.shape
        ratio = (out.double() / x.double()).cpu()
        # every ratio is exactly 1 or the factor
        assert torch.isin(ratio, torch.tensor([1.0, 1.5], dtype=torch.float64)).all()
        # identical across batch, channels and width
        assert torch.equal(ratio, ratio[:1, :1, :, :1].expand_as(ratio))
        rows = _strip_rows(ratio)
        assert len(rows) == 3 and rows == list(range(rows[0], rows[0] + 3))


def test_start_pins_rows():
    x = torch.randn(2, 2, 8, 3, dtype=torch.float64)
    for s in range(0, 7):
        out = wave_block(x, ratio=0.25, factor=2.0, start=s)
        want = x * 2.0
        want[:, :, s : s + 2] = x[:, :, s : s + 2]
        assert torch.equal(out, want)


def test_strip_start_is_uniform_over_all_positions():
    height, rh = 10, 3
    g = torch.Generator().manual_seed(1)
    x = torch.ones(1, 1, height, 1)
    counts = torch.zeros(height - rh + 1)
    n = 4000
    for _ in range(n):
        counts[_strip_rows(wave_block(x, generator=g))[0]] += 1
    assert (counts > 0).all()  # 0 and H - rh inclusive
    # chi-square against uniform on 8 cells, 7 dof: 99.9% quantile 24.3
    expected = n / counts.numel()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 24.3


def test_generator_and_global_seed_fix_the_strip():
    x = torch.randn(2, 4, 16, 5)
    a = wave_block(x, generator=torch.Generator().manual_seed(7))
    b = wave_block(x, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    torch.manual_seed(3)
    c = WaveBlock()(x)
    torch.manual_seed(3)
    assert torch.equal(c, WaveBlock()(x))


def test_gradient_is_the_mask():
    x = torch.randn(3, 2, 8, 4, dtype=torch.float64, requires_grad=True)
    out = wave_block(x, start=5)
    up = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, x, up)
    mask = torch.full((8,), 1.5, dtype=torch.float64)
    mask[5:7] = 1.0
    assert torch.equal(gx, up * mask[:, None])
    gradcheck64(lambda t: wave_block(t, 0.3, 1.7, start=1), torch.randn(2, 2, 6, 3))


def test_eval_is_identity_train_redraws():
    block = WaveBlock()
    x = torch.randn(2, 3, 16, 4)
    block.eval()
    assert block(x) is x
    block.train()
    outs = {tuple(_strip_rows(block(x.abs() + 1) / (x.abs() + 1))) for _ in range(30)}
    assert len(outs) > 3  # a fresh strip per call


def test_factor_one_and_ratio_one_are_identity():
    x = torch.randn(2, 3, 7, 4, dtype=torch.float64)
    assert torch.equal(wave_block(x, factor=1.0), x)
    assert torch.equal(wave_block(x, ratio=1.0, factor=3.0), x)
    assert torch.equal(wave_block(x, ratio=0.0, factor=3.0), 3.0 * x)


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_no_nan_from_large_finite_input(low):
    x = torch.tensor([-1e4, 1e4, 0.0, 3.0], dtype=low).reshape(1, 1, 4, 1).repeat(2, 2, 1, 3)
    out = wave_block(x, ratio=0.5, start=1)
    assert out.dtype == low and torch.isfinite(out).all()
    assert_close(out.float(), x.float() * torch.tensor([1.5, 1, 1, 1.5])[:, None], dtype=low)


def test_attentive_orders_match_the_code():
    torch.manual_seed(0)
    x = torch.randn(2, 32, 8, 8)
    pre = AttentiveWaveBlock(32, "cbam", generator=torch.Generator().manual_seed(4))
    cbam = pre.attention
    assert isinstance(cbam, CBAM)
    want = wave_block(cbam(x) + x, generator=torch.Generator().manual_seed(4))
    assert_close(pre(x), want)
    post = AttentiveWaveBlock(32, "nonlocal", generator=torch.Generator().manual_seed(4))
    assert isinstance(post.attention, NonLocalBlock2d)
    with torch.no_grad():  # make the non-local branch non-trivial
        post.attention.out_bn.weight.fill_(0.5)
    want = post.attention(wave_block(x, generator=torch.Generator().manual_seed(4)))
    assert_close(post(x), want)
    pre.eval()
    assert_close(pre(x), cbam(x) + x)


def test_bad_input():
    x = torch.randn(2, 3, 8, 4)
    with pytest.raises(ValueError, match="x"):
        wave_block(torch.randn(3, 8, 4))
    with pytest.raises(TypeError, match="x"):
        wave_block(torch.ones(2, 3, 8, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="ratio"):
        wave_block(x, ratio=1.5)
    with pytest.raises(ValueError, match="ratio"):
        WaveBlock(ratio=-0.1)
    with pytest.raises(ValueError, match="factor"):
        wave_block(x, factor=0.0)
    with pytest.raises(ValueError, match="factor"):
        WaveBlock(factor=float("inf"))
    with pytest.raises(ValueError, match="start"):
        wave_block(x, start=7)  # rh = 2, so start <= 6
    with pytest.raises(TypeError, match="start"):
        wave_block(x, start=1.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="generator"):
        wave_block(x, generator=0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="attention"):
        AttentiveWaveBlock(8, attention="se")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="channels"):
        AttentiveWaveBlock(0)
    with inforeg.core.checks.checks("full"):
        bad = x.clone()
        bad[0, 0, 0, 0] = float("nan")
        with pytest.raises(ValueError, match="x"):
            wave_block(bad)
        with pytest.raises(ValueError, match="x"):
            WaveBlock().eval()(bad)


def test_signatures_are_the_spec_contract():
    params = inspect.signature(wave_block).parameters
    assert list(params) == ["x", "ratio", "factor", "start", "generator"]
    assert [params[k].default for k in ("ratio", "factor", "start", "generator")] == [
        0.3,
        1.5,
        None,
        None,
    ]
    block = inspect.signature(WaveBlock).parameters
    assert (block["ratio"].default, block["factor"].default) == (0.3, 1.5)
    awb = inspect.signature(AttentiveWaveBlock).parameters
    assert list(awb)[:4] == ["channels", "attention", "ratio", "factor"]
    assert (awb["attention"].default, awb["ratio"].default, awb["factor"].default) == (
        "cbam",
        0.3,
        1.5,
    )


@pytest.mark.parametrize("attention", ["cbam", "nonlocal"])
def test_attentive_block_input_dtype_is_checked(attention):
    # Regression (issue 18): bf16 input to a float32 block failed inside torch, naming nothing.
    block = AttentiveWaveBlock(16, attention=attention)
    x = torch.randn(2, 16, 4, 4)
    msg = r"x: expected dtype torch.float32, the dtype of the AttentiveWaveBlock's parameters"
    with pytest.raises(TypeError, match=msg):
        block(x.bfloat16())
    assert block.to(torch.bfloat16)(x.bfloat16()).dtype == torch.bfloat16
