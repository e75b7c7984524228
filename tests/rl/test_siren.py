"""SIREN: top-p entropy (crossing token excluded), peak mask, anchored penalty, module."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.core.checks import checks
from inforeg.rl import (
    SelectiveEntropyRegularizer,
    _cpu_entropy,
    anchored_penalty,
    peak_entropy_mask,
    token_entropy,
    top_p_entropy,
)
from inforeg.rl.siren import _top_p_entropy_sorted
from tests._helpers import gradcheck64


def _brute_top_p(p: list[float], top_p: float) -> float:
    """Loop reference from the spec's description (float64)."""
    order = sorted(range(len(p)), key=lambda i: -p[i])
    kept, c = [], 0.0
    for i in order:
        c += p[i]
        if c < top_p:
            kept.append(p[i])
        else:
            break
    s = sum(kept)
    return -sum((q / s) * math.log(q / s) for q in kept) if kept else 0.0


def test_spec_example():
    p = torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=torch.float64)
    assert top_p_entropy(p.log()).item() == pytest.approx(0.6829081047, abs=1e-9)


def test_against_brute_force_and_bounds():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(20, 12, generator=g, dtype=torch.float64) * 2
    for top_p in (0.3, 0.8, 0.95):
        h = top_p_entropy(z, top_p)
        p = torch.softmax(z, -1)
        ref = torch.tensor([_brute_top_p(row.tolist(), top_p) for row in p], dtype=torch.float64)
        torch.testing.assert_close(h, ref)
        assert torch.all(h <= token_entropy(z) + 1e-12)


def test_empty_set_when_top1_dominates_and_top_k_cap():
    z = torch.tensor([[5.0, 0.0, 0.0]], dtype=torch.float64)  # top-1 prob 0.987 >= 0.8
    assert top_p_entropy(z).item() == 0.0
    # p_top -> 1 with K=V: the full entropy except the crossing token is still dropped
    z = torch.randn(3, 6, dtype=torch.float64)
    h = top_p_entropy(z, top_p=1.0 - 1e-9)  # (exactly 1.0 leaves the crossing token to rounding)
    top = torch.sort(z, -1, descending=True).values[:, :-1]  # all but the least likely token
    torch.testing.assert_close(h, token_entropy(top))
    assert torch.all(h < token_entropy(z))
    # top_k = 2 caps the set at 2 tokens
    z = torch.zeros(1, 10, dtype=torch.float64)
    assert top_p_entropy(z, 0.99, top_k=2).item() == pytest.approx(math.log(2))


def test_temperature_and_shift_invariance():
    z = torch.randn(4, 9, dtype=torch.float64)
    torch.testing.assert_close(top_p_entropy(z + 5.0, 0.8), top_p_entropy(z, 0.8))
    torch.testing.assert_close(top_p_entropy(z, 0.8, temperature=2.0), top_p_entropy(z / 2.0, 0.8))


def test_peak_mask_spec_example_and_padding():
    ent = torch.linspace(0.1, 1.0, 10, dtype=torch.float64).unsqueeze(0)
    sel = peak_entropy_mask(ent)
    assert sel[0].nonzero().view(-1).tolist() == [8, 9]  # tau = 0.82
    # padding changes nothing, even with large padded values
    padded = torch.cat([ent, torch.full((1, 5), 9.0, dtype=torch.float64)], 1)
    mask = torch.cat([torch.ones(1, 10), torch.zeros(1, 5)], 1)
    sel2 = peak_entropy_mask(padded, mask)
    assert sel2[0].nonzero().view(-1).tolist() == [8, 9]
    assert not peak_entropy_mask(ent, torch.zeros(1, 10)).any()


def test_anchored_penalty_values_and_gradient_sign():
    h = torch.tensor(1.0, requires_grad=True)
    pen = anchored_penalty(h, 0.8, 0.005)
    assert pen.item() == pytest.approx(2e-4)
    pen.backward()
    assert h.grad.item() == pytest.approx(0.002)
    h2 = torch.tensor(0.6, requires_grad=True)
    anchored_penalty(h2, 0.8, 0.005).backward()
    assert h2.grad.item() < 0
    h3 = torch.tensor(0.8, requires_grad=True)
    anchored_penalty(h3, 0.8, 0.005).backward()
    assert h3.grad.item() == 0.0


def test_module_anchor_first_call_and_restoring_force():
    torch.manual_seed(0)
    z = torch.randn(4, 6, 11, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(4, 6)
    mask[1, 4:] = 0
    reg = SelectiveEntropyRegularizer(coef=1.0, top_p=0.9)
    loss, stats = reg(z, mask)
    assert loss.item() == 0.0  # H_sel == anchor at step 1: zero loss, zero gradient
    loss.backward()
    assert torch.all(z.grad == 0)
    anchor = float(stats["anchor"])
    assert anchor == pytest.approx(float(stats["selected_entropy"]))
    assert set(stats) >= {
        "entropy",
        "top_p_entropy",
        "selected_entropy",
        "masked_fraction",
        "anchor",
        "coefficient",
    }
    # a sharper policy (lower entropy) is pushed back up: gradient descent raises H_sel
    sharp = (z.detach() * 3).requires_grad_()
    loss, stats = reg(sharp, mask)
    assert float(stats["anchor"]) == anchor  # fixed after the first call
    loss.backward()
    with torch.no_grad():
        stepped = sharp - 0.05 * sharp.grad
    _, after = reg(stepped, mask)
    assert float(after["selected_entropy"]) > float(stats["selected_entropy"])
    assert "anchor" in dict(reg.state_dict())
    reg.reset_anchor()
    assert math.isnan(float(reg.anchor))


def test_module_masks_respected_and_gradcheck():
    torch.manual_seed(1)
    z = torch.randn(3, 5, 7, dtype=torch.float64)
    mask = torch.ones(3, 5)
    mask[0, 3:] = 0
    reg = SelectiveEntropyRegularizer(coef=1.0, top_p=0.9)
    reg.set_anchor(0.3)
    base, _ = reg(z, mask)
    z2 = z.clone()
    z2[0, 3:] = torch.randn(2, 7, dtype=torch.float64) * 10  # change padded positions only
    other, _ = reg(z2, mask)
    assert base.item() == pytest.approx(other.item())
    gradcheck64(lambda x: reg(x, mask)[0], z)


def test_extreme_and_bfloat16():
    z = torch.tensor([[[1e4, -1e4, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]], requires_grad=True)
    reg = SelectiveEntropyRegularizer(coef=1.0)
    reg.set_anchor(1.0)
    loss, _ = reg(z)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    zb = torch.randn(2, 3, 50).to(torch.bfloat16)
    h = top_p_entropy(zb)
    assert h.dtype == torch.bfloat16 and torch.isfinite(h).all()


def test_bad_input():
    with pytest.raises(ValueError, match="top_p"):
        top_p_entropy(torch.zeros(2, 3), top_p=0.0)
    with pytest.raises(ValueError, match="temperature"):
        top_p_entropy(torch.zeros(2, 3), temperature=0.0)
    with pytest.raises(ValueError, match="temperature"):
        SelectiveEntropyRegularizer(temperature=-1.0)
    with pytest.raises(ValueError, match="mode"):
        SelectiveEntropyRegularizer(mode="mean")
    with pytest.raises(ValueError, match="mask"):
        SelectiveEntropyRegularizer()(torch.zeros(2, 3, 4), torch.ones(2, 4))
    with pytest.raises(ValueError, match="logits"):
        SelectiveEntropyRegularizer()(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="quantile"):
        peak_entropy_mask(torch.zeros(2, 3), quantile=1.5)
    with checks("full"), pytest.raises(ValueError, match="logits"):
        top_p_entropy(torch.tensor([[0.0, float("nan")]]))


# ---- the sort-free C kernel (CPU float32/bfloat16) against the sorted path in float64 ----

needs_kernel = pytest.mark.skipif(
    not _cpu_entropy.usable(torch.zeros(1, 64)), reason="no C compiler: sorted path only"
)


def _margin(z64: torch.Tensor, top_p: float, top_k: int) -> torch.Tensor:
    """Per row, how close a cumulative probability of the sorted float64 row comes to top_p
    (rows closer than float32 rounding may keep one token more or less)."""
    p = torch.softmax(z64, -1).sort(-1, descending=True).values[..., :top_k]
    return (p.cumsum(-1) - top_p).abs().amin(-1)


def _tie_blind(grad: torch.Tensor) -> torch.Tensor:
    """Each gradient row sorted: where a tie at the threshold is split, the kernel keeps the
    lowest indices and topk an order of its own; the tokens are interchangeable (equal logits),
    so the gradient rows agree up to that permutation."""
    return grad.sort(-1).values


def _kernel_vs_float64(
    z: torch.Tensor, top_p: float = 0.8, top_k: int = 10000, t: float = 1.0, tol: float = 1.0
):
    k = min(top_k, z.shape[-1])
    x = z.detach().clone().requires_grad_()
    h = top_p_entropy(x, top_p, top_k, t)
    h.sum().backward()
    x64 = z.detach().double().requires_grad_()
    ref = _top_p_entropy_sorted(x64, top_p, k, t)
    ref.sum().backward()
    ok = _margin(z.detach().double() / t, top_p, k) > 2e-6
    assert ok.float().mean() > 0.75  # the comparison covers most rows
    torch.testing.assert_close(h.double()[ok], ref.detach()[ok], atol=2e-5 * tol, rtol=1e-5 * tol)
    torch.testing.assert_close(
        _tie_blind(x.grad.double()[ok]), _tie_blind(x64.grad[ok]), atol=2e-6 * tol, rtol=1e-4 * tol
    )
    return h, x.grad


@needs_kernel
@pytest.mark.parametrize(
    "case",
    [
        "normal",
        "peaked",
        "flat",
        "top_k",
        "top1",
        "masked",
        "temperature",
        "top_p=0.999",
        "top_p~1",
        "masked, top_p~1",
        "binades",
        "large logits",
    ],
)
def test_kernel_matches_sorted_float64(case):
    g = torch.Generator().manual_seed(3)
    z = torch.randn(48, 5000, generator=g)
    top_p, top_k, t = 0.8, 10000, 1.0
    if case == "normal":
        z = z * 2
    elif case == "peaked":
        z = z * 6
    elif case == "flat":
        z = z * 0.05
    elif case == "top_k":
        z, top_k = z * 0.3, 100
    elif case == "top1":
        z = z * 2
        z[:, 7] = 40.0  # top-1 probability ~1 >= top_p: entropy 0, gradient 0
    elif case == "masked":
        z = z * 2
        z[:, ::3] = float("-inf")
    elif case == "temperature":
        z, top_p, t = z * 2, 0.95, 0.7
    elif case == "binades":  # |z| from 1e-37 to 1: the value midpoints give way to the keys'
        u = torch.rand(z.shape, generator=g)
        z = z.sign() * torch.pow(10.0, -37.0 * u)
    elif case == "large logits":  # p rebuilt near z = 1e4: relative to the kept set's lse
        z = z * 2 + 1e4
    elif case == "top_p=0.999":  # all but a sliver of the mass
        top_p = 0.999
    else:  # every value is a candidate (no lower bound); exactly 1.0 is left to rounding
        z, top_p = z * 0.3, 0.99995  # (a flat row: the last cumulative sums step by ~1e-4)
        if case.startswith("masked"):
            z[:, ::3] = float("-inf")
    h, grad = _kernel_vs_float64(z, top_p, top_k, t)
    assert torch.isfinite(h).all() and torch.isfinite(grad).all()
    if case == "top1":
        assert torch.all(h == 0) and torch.all(grad == 0)
    if case.startswith("masked"):
        assert torch.all(grad[:, ::3] == 0)


@needs_kernel
def test_kernel_equals_topk_path_float32_and_ties():
    """Same float32 input: the kernel and the topk path keep the same tokens (values and
    gradients agree); a tie at the threshold is split by index order (topk: its own order)."""
    g = torch.Generator().manual_seed(4)
    z = torch.randn(4, 2, 3000, generator=g) * 2
    # (97 tied tokens: no cumulative sum lands exactly on top_p, where rounding decides)
    for x in (z, torch.zeros(3, 97), torch.randn(5, 200, generator=g).round()):
        for top_p, top_k in ((0.8, 10000), (0.99, 7), (0.5, 3)):
            a = x.clone().requires_grad_()
            b = x.clone().requires_grad_()
            ha = top_p_entropy(a, top_p, top_k)
            hb = _top_p_entropy_sorted(b, top_p, min(top_k, x.shape[-1]), 1.0)
            (ha * torch.arange(1.0, ha.numel() + 1).view(ha.shape)).sum().backward()
            (hb * torch.arange(1.0, hb.numel() + 1).view(hb.shape)).sum().backward()
            torch.testing.assert_close(ha, hb, atol=2e-5, rtol=1e-5)
            torch.testing.assert_close(_tie_blind(a.grad), _tie_blind(b.grad), atol=2e-5, rtol=1e-4)
    # one top token, then 99 tied ones, top_k = 3: the tie is split by index order
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.zeros(1, 100, dtype=dtype)
        x[0, 99] = 1.0
        x.requires_grad_()
        top_p_entropy(x, 0.99, top_k=3).float().sum().backward()
        assert (x.grad[0] != 0).nonzero().view(-1).tolist() == [0, 1, 99]


@needs_kernel
def test_kernel_bfloat16_and_bad_rows():
    g = torch.Generator().manual_seed(5)
    z = (torch.randn(16, 3000, generator=g) * 2).to(torch.bfloat16)
    h, grad = _kernel_vs_float64(z, tol=500.0)  # many ties, split by index order
    assert h.dtype == grad.dtype == torch.bfloat16
    bad = torch.zeros(3, 100)
    bad[0, 5] = float("nan")
    bad[1] = float("-inf")
    bad[2, 0] = float("inf")
    assert torch.isnan(top_p_entropy(bad)).all()


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_full_entropy_output(dtype):
    """The kernel's second output, the full-row entropy from its first pass: token_entropy's
    value (the same code: bit for bit) and the float64 entropy; NaN for rows with no
    distribution; the top-p outputs do not depend on whether it is asked for."""
    g = torch.Generator().manual_seed(6)
    z = torch.randn(40, 3001, generator=g) * torch.linspace(0.05, 8.0, 40).view(-1, 1)
    z[5, ::4] = float("-inf")  # masked vocabulary
    z[6, 100:] = float("-inf")
    z = z.to(dtype)
    for t in (1.0, 0.7):
        full = _cpu_entropy.top_p_forward(z, 1.0 / t, 0.8, 10000, want_full=True)[4]
        assert full is not None and full.dtype == torch.float32
        assert torch.equal(full, _cpu_entropy.entropy_forward(z, 1.0 / t)[0])
        logp = torch.log_softmax(z.double() / t, -1)
        ref = -(logp.exp() * logp.masked_fill(torch.isinf(logp), 0.0)).sum(-1)
        torch.testing.assert_close(full.double(), ref, atol=2e-6, rtol=2e-6)
    without = _cpu_entropy.top_p_forward(z, 1.0, 0.8, 10000)
    with_full = _cpu_entropy.top_p_forward(z, 1.0, 0.8, 10000, want_full=True)
    assert without[4] is None
    for a, b in zip(without[:4], with_full[:4], strict=True):
        assert torch.equal(a, b)
    bad = torch.zeros(3, 100, dtype=dtype)
    bad[0, 5] = float("nan")
    bad[1] = float("-inf")
    bad[2, 0] = float("inf")
    assert torch.isnan(_cpu_entropy.top_p_forward(bad, 1.0, 0.8, 10000, True)[4]).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_module_entropy_stat_is_token_entropy(dtype):
    """stats['entropy'] (from the kernel's first pass on CPU float32, from token_entropy on the
    other paths) is the token-mean of token_entropy over the mask, in float64 too."""
    g = torch.Generator().manual_seed(7)
    z = (torch.randn(3, 9, 700, generator=g) * 3).to(dtype)
    mask = torch.ones(3, 9)
    mask[1, 5:] = 0
    reg = SelectiveEntropyRegularizer(top_p=0.8, temperature=0.9)
    _, stats = reg(z, mask)
    h64 = token_entropy(z.double(), 0.9)
    expected = (h64 * mask.double()).sum() / mask.sum()
    torch.testing.assert_close(stats["entropy"].double(), expected, atol=1e-5, rtol=1e-5)
    assert not stats["entropy"].requires_grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_top_p_one_with_masked_logits_is_finite(dtype):
    """top_p = 1: the finite tokens' cumulative mass can round below 1, and the masked (-inf)
    tokens after them were kept too: 0 * log 0 made value and gradient NaN."""
    inf = float("-inf")
    z = torch.tensor([[2.0, 1.0, 0.5, inf, inf, inf], [0.3] * 5 + [inf]], dtype=dtype)
    z.requires_grad_(True)
    value = top_p_entropy(z, 1.0)
    (grad,) = torch.autograd.grad(value.sum(), z)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    assert (grad[z.detach() == inf] == 0).all()
    # the kept set is 2 or 3 of the finite tokens (c_3 = 1 exactly, or rounded below 1)
    two, three = torch.tensor([2.0, 1.0]), torch.tensor([2.0, 1.0, 0.5])
    ent = [float(-(p * p.log()).sum()) for p in (two.softmax(0), three.softmax(0))]
    assert min(abs(float(value[0]) - e) for e in ent) < 1e-6
