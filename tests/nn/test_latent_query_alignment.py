"""Latent-query alignment (MDS-S², inforeg's design): pooling against a brute-force attention
loop and closed forms, order and padding invariance, distances, gradient routing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from inforeg.core.checks import checks
from inforeg.nn import LatentQueryAlignmentLoss, LatentQueryPooling, latent_query_alignment
from tests._helpers import assert_close, gradcheck64, module_matches_function


def _pool(dim: int = 6, m: int = 3, heads: int = 1, seed: int = 0) -> LatentQueryPooling:
    torch.manual_seed(seed)
    return LatentQueryPooling(dim, num_queries=m, num_heads=heads).double()


def _brute_pool(pool: LatentQueryPooling, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Explicit loops: per sample, head and query, softmax over the valid positions only."""
    b, length, d = h.shape
    heads = pool.num_heads
    dh = d // heads
    out = torch.zeros(b, pool.num_queries, d, dtype=torch.float64)
    for i in range(b):
        idx = [t for t in range(length) if mask[i, t]]
        if not idx:
            continue
        k = h[i, idx] @ pool.key.weight.T + pool.key.bias
        v = h[i, idx] @ pool.value.weight.T + pool.value.bias
        for hd in range(heads):
            sl = slice(hd * dh, (hd + 1) * dh)
            for q in range(pool.num_queries):
                s = torch.stack([pool.queries[q, sl] @ k[t, sl] for t in range(len(idx))])
                w = torch.exp(s / math.sqrt(dh) - (s / math.sqrt(dh)).max())
                w = w / w.sum()
                out[i, q, sl] = (w[:, None] * v[:, sl]).sum(0)
    return out


@pytest.mark.parametrize("heads", [1, 2, 3])
def test_pooling_matches_brute_force(heads):
    pool = _pool(heads=heads)
    h = torch.randn(4, 5, 6, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 0, 1], [0, 0, 0, 1, 0], [1, 1, 0, 0, 0]]).bool()
    out = pool(h, mask)
    assert out.shape == (4, 3, 6)
    assert_close(out, _brute_pool(pool, h, mask).detach())
    assert_close(pool(h), _brute_pool(pool, h, torch.ones(4, 5, dtype=torch.bool)).detach())


def test_pooling_closed_forms():
    pool = _pool()
    h = torch.randn(2, 4, 6, dtype=torch.float64)
    one = torch.zeros(2, 4, dtype=torch.bool)
    one[:, 2] = True
    v_one = h[:, 2] @ pool.value.weight.T + pool.value.bias
    assert_close(pool(h, one), v_one[:, None, :].expand(2, 3, 6).detach())  # one valid token
    with torch.no_grad():
        pool.queries.zero_()  # equal scores: the mean of V over the valid tokens
    v = h @ pool.value.weight.T + pool.value.bias
    assert_close(pool(h), v.mean(1, keepdim=True).expand(2, 3, 6).detach())


def test_order_and_padding_invariance():
    pool = _pool(heads=2)
    h = torch.randn(3, 5, 6, dtype=torch.float64)
    perm = torch.randperm(5)
    assert_close(pool(h[:, perm]), pool(h))
    pad = torch.cat([h, torch.randn(3, 4, 6, dtype=torch.float64) * 1e4], 1)
    pad[:, -1] = float("nan")  # whatever the padding holds never reaches the result
    mask = torch.zeros(3, 9, dtype=torch.bool)
    mask[:, :5] = True
    assert_close(pool(pad, mask), pool(h))
    loss = LatentQueryAlignmentLoss(6, num_queries=3)
    g = torch.randn(3, 7, 6, dtype=torch.float64)
    loss = loss.double()
    assert_close(loss(pad, g, mask_pred=mask), loss(h, g))


def test_all_masked_sample_pools_to_zero_without_nan():
    pool = _pool()
    h = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1] = False
    out = pool(h, mask)
    assert torch.equal(out[1], torch.zeros(3, 6, dtype=torch.float64))
    out.sum().backward()
    assert torch.isfinite(h.grad).all() and torch.equal(h.grad[1], torch.zeros(4, 6).double())


def test_distances_closed_forms():
    g = torch.Generator().manual_seed(1)
    p = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    q = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    for distance in ("mse", "cosine", "kl"):
        assert_close(latent_query_alignment(p, p, distance), 0.0, atol=1e-12)
        assert latent_query_alignment(p, q, distance) > 0
    mse = ((p - q) ** 2).mean(dim=(1, 2))
    assert_close(latent_query_alignment(p, q, reduction="none"), mse)
    cos = torch.stack(
        [
            torch.stack(
                [1 - (p[b, m] @ q[b, m]) / (p[b, m].norm() * q[b, m].norm()) for m in range(3)]
            )
            for b in range(4)
        ]
    ).mean(1)
    assert_close(latent_query_alignment(p, q, "cosine", reduction="none"), cos)
    pg, pp = torch.softmax(q, -1), torch.softmax(p, -1)
    kl = (pg * (pg.log() - pp.log())).sum(-1).mean(1)
    assert_close(latent_query_alignment(p, q, "kl", reduction="sum"), kl.sum())
    for distance in ("mse", "cosine", "kl"):
        gradcheck64(
            lambda a, b, d=distance: latent_query_alignment(a, b, d, detach_target=False), p, q
        )


def test_gradient_routing():
    loss = LatentQueryAlignmentLoss(6, num_queries=3).double()
    hp = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    hg = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    loss(hp, hg).backward()
    assert hp.grad is not None and hp.grad.abs().sum() > 0
    assert hg.grad is None
    assert loss.pool.queries.grad is not None
    # the queries are trained through the predicted side only: same gradient as a frozen gold
    q_grad = loss.pool.queries.grad.clone()
    loss.zero_grad()
    with torch.no_grad():
        gold = loss.pool(hg)
    latent_query_alignment(loss.pool(hp), gold).backward()
    assert_close(loss.pool.queries.grad, q_grad)
    both = LatentQueryAlignmentLoss(6, num_queries=3, detach_target=False).double()
    hg2 = hg.detach().clone().requires_grad_(True)
    both(hp, hg2).backward()
    assert hg2.grad is not None and hg2.grad.abs().sum() > 0
    p = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 3, 6, dtype=torch.float64, requires_grad=True)
    latent_query_alignment(p, t).backward()
    assert t.grad is None and p.grad is not None


def test_module_matches_function_and_gradcheck():
    torch.manual_seed(0)
    loss = LatentQueryAlignmentLoss(4, num_queries=2, distance="kl").double()
    hp = torch.randn(3, 5, 4, dtype=torch.float64)
    hg = torch.randn(3, 6, 4, dtype=torch.float64)

    def fn(a: torch.Tensor, b: torch.Tensor, distance: str = "kl") -> torch.Tensor:
        return latent_query_alignment(loss.pool(a), loss.pool(b), distance)  # type: ignore[arg-type]

    module_matches_function(lambda **_: loss, fn, hp, hg)
    gradcheck64(lambda a: loss(a, hg), hp)
    gradcheck64(lambda a: loss.pool(a), hp)


def test_device_dtype_parity(device, dtype):
    torch.manual_seed(0)
    ref_loss = LatentQueryAlignmentLoss(6, num_queries=3, num_heads=2).double()
    hp = torch.randn(3, 5, 6, dtype=torch.float64)
    hg = torch.randn(3, 4, 6, dtype=torch.float64)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, 3:] = False
    ref = ref_loss(hp, hg, mask_pred=mask)
    torch.manual_seed(0)
    loss = LatentQueryAlignmentLoss(6, num_queries=3, num_heads=2).to(device=device, dtype=dtype)
    out = loss(hp.to(device, dtype), hg.to(device, dtype), mask_pred=mask.to(device))
    assert out.dtype == dtype
    assert_close(out, ref)


@pytest.mark.parametrize("scale", [1.0, 1e4, -1e4])
@pytest.mark.parametrize("distance", ["mse", "cosine", "kl"])
def test_no_nan_bf16_and_large(scale, distance):
    torch.manual_seed(0)
    loss = LatentQueryAlignmentLoss(8, num_queries=4, distance=distance)
    hp = (torch.randn(3, 5, 8) * scale).requires_grad_(True)
    hg = torch.randn(3, 6, 8) * scale
    out = loss(hp, hg)
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(hp.grad).all()
    out_b = loss(hp.detach().bfloat16(), hg.bfloat16())
    assert out_b.dtype == torch.bfloat16 and torch.isfinite(out_b.float())
    if scale == 1.0:
        ref = loss(hp.detach().bfloat16().float(), hg.bfloat16().float())
        assert_close(out_b.float(), ref, rtol=2e-2, atol=2e-2)


def test_bad_input():
    loss = LatentQueryAlignmentLoss(4, num_queries=2)
    hp, hg = torch.randn(2, 5, 4), torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="h"):
        loss(torch.randn(2, 5, 3), hg)
    with pytest.raises(ValueError, match="h"):
        loss(torch.randn(5, 4), hg)
    with pytest.raises(ValueError, match="h_gold"):
        loss(hp, torch.randn(3, 3, 4))
    with pytest.raises(TypeError, match="mask"):
        loss(hp, hg, mask_pred=torch.ones(2, 5))
    with pytest.raises(ValueError, match="mask"):
        loss(hp, hg, mask_pred=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="h"):
        loss(hp.long(), hg)
    with pytest.raises(ValueError, match="distance"):
        LatentQueryAlignmentLoss(4, distance="l1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="detach_target"):
        LatentQueryAlignmentLoss(4, detach_target="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_heads"):
        LatentQueryAlignmentLoss(4, num_heads=3)
    with pytest.raises(ValueError, match="num_queries"):
        LatentQueryPooling(4, num_queries=0)
    with pytest.raises(ValueError, match="pooled_gold"):
        latent_query_alignment(torch.randn(2, 3, 4), torch.randn(2, 2, 4))
    with pytest.raises(ValueError, match="reduction"):
        latent_query_alignment(torch.randn(2, 3, 4), torch.randn(2, 3, 4), reduction="max")  # type: ignore[arg-type]
    bad = hp.clone()
    bad[0, 0, 0] = float("nan")
    with checks("full"), pytest.raises(ValueError, match="h"):
        loss(bad, hg)


def test_training_moves_pred_side_towards_gold():
    """A sanity check of the regulariser's target: minimising it pulls the predicted pools
    onto the (fixed) gold pools."""
    torch.manual_seed(0)
    loss = LatentQueryAlignmentLoss(6, num_queries=3)
    hp = torch.randn(4, 5, 6, requires_grad=True)
    hg = torch.randn(4, 5, 6)
    opt = torch.optim.Adam([hp], lr=5e-2)
    start = float(loss(hp, hg).detach())
    for _ in range(200):
        opt.zero_grad()
        loss(hp, hg).backward()
        opt.step()
    assert float(loss(hp, hg).detach()) < 0.05 * start
    assert F.mse_loss(loss.pool(hp), loss.pool(hg)) < 0.05 * start


def test_pooling_with_padding_under_bf16_autocast():
    # Regression: under autocast the scores are bfloat16, and the padding fill was float32's
    # minimum, which bfloat16 cannot hold: "value cannot be converted ... without overflow".
    torch.manual_seed(0)
    pool = LatentQueryPooling(dim=8, num_queries=3, num_heads=2)
    h = torch.randn(2, 5, 8)
    mask = torch.tensor([[True, True, True, False, False], [True, True, True, True, True]])
    ref = pool(h, mask)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = pool(h, mask)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), ref, rtol=0.05, atol=0.05)
