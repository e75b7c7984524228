"""GRPO core: the spec's closed-form checks (rl.md §5), clipping cases, k3 properties."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.rl import aggregate, clipped_surrogate, grpo_advantages, kl_k3
from tests._helpers import gradcheck64


def test_advantages_unbiased_std():
    a = grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4, eps=0.0)
    torch.testing.assert_close(a, torch.tensor([1.5, -0.5, -0.5, -0.5]))
    a = grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), 4)  # eps 1e-4 (TRL)
    torch.testing.assert_close(a, torch.tensor([0.75, -0.25, -0.25, -0.25]) / 0.5001)


def test_advantages_groups_scales_and_degenerate():
    r = torch.tensor([1.0, 1.0, 1.0, 0.0, 2.0, 4.0], dtype=torch.float64)
    a = grpo_advantages(r, 3)
    torch.testing.assert_close(a[:3], torch.zeros(3, dtype=torch.float64))  # all-equal group -> 0
    torch.testing.assert_close(
        a[3:], torch.tensor([-1.0, 0.0, 1.0], dtype=torch.float64) * 2 / 2.0001
    )
    none = grpo_advantages(r, 3, "none")
    torch.testing.assert_close(none, torch.tensor([0, 0, 0, -2.0, 0, 2.0], dtype=torch.float64))
    batch = grpo_advantages(r, 3, "batch", eps=0.0)
    torch.testing.assert_close(batch, none / r.std())
    one = grpo_advantages(torch.tensor([0.3, 2.0]), 1, eps=0.0)  # verl: mean 0, std 1
    torch.testing.assert_close(one, torch.tensor([0.3, 2.0]))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("eps", [0.0, 1e-6, 1e-4])
@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_constant_groups_get_exactly_zero(dtype, eps, scale):
    # rewards of 0.7 (partial credit) in groups of 7 and 16: r.mean() is an ulp off 0.7, which
    # TRL's (r - mean) / (std + eps) turned into a same-sign advantage for the whole group
    for g in (7, 16):
        r = torch.full((2 * g,), 0.7, dtype=dtype)
        a = grpo_advantages(r, g, scale, eps=eps)
        assert torch.equal(a, torch.zeros_like(a)), (g, a[:3])
    # one constant group beside a varied one: the varied group is unaffected
    r = torch.tensor([0.7] * 7 + [0.0, 1.0, 0.0, 1.0, 0.5, 0.25, 1.0], dtype=torch.float64)
    a = grpo_advantages(r, 7, scale, eps=eps)
    assert torch.equal(a[:7], torch.zeros(7, dtype=torch.float64))
    centred = r[7:] - r[7:].mean()
    want = {"group": centred / (r[7:].std() + eps), "batch": centred / (r.std() + eps)}
    torch.testing.assert_close(a[7:], want.get(scale, centred))


def test_aggregation_modes_spec_values():
    loss = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    assert aggregate(loss, mask, "token-mean").item() == pytest.approx(0.25)
    assert aggregate(loss, mask, "seq-mean-token-mean").item() == pytest.approx(0.5)
    assert aggregate(loss, mask, "seq-mean-token-sum").item() == pytest.approx(0.5)
    assert aggregate(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx(1 / 6)
    # padding changes nothing
    big = torch.cat([loss, torch.full((2, 2), 99.0)], 1)
    bmask = torch.cat([mask, torch.zeros(2, 2, dtype=torch.long)], 1)
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"):
        assert aggregate(big, bmask, mode).item() == pytest.approx(
            aggregate(loss, mask, mode).item()
        )
    assert aggregate(big, bmask, "seq-mean-token-sum-norm", norm=3).item() == pytest.approx(1 / 6)


def test_clip_cases():
    one = torch.ones(1, 1)
    lp = torch.full((1, 1), math.log(1.5), requires_grad=True)
    loss = clipped_surrogate(lp, torch.zeros(1, 1), torch.tensor([1.0]), mode="none")
    assert loss.item() == pytest.approx(-1.2)
    loss.sum().backward()
    assert lp.grad.item() == 0.0
    loss = clipped_surrogate(
        torch.full((1, 1), math.log(5.0)),
        torch.zeros(1, 1),
        torch.tensor([-1.0]),
        one,
        dual_clip=3.0,
    )
    assert loss.item() == pytest.approx(3.0)
    no_dual = clipped_surrogate(
        torch.full((1, 1), math.log(5.0)), torch.zeros(1, 1), torch.tensor([-1.0])
    )
    assert no_dual.item() == pytest.approx(5.0)
    # clip-higher: ratio 1.25 inside (0.2, 0.28) range is unclipped
    up = clipped_surrogate(
        torch.full((1, 1), math.log(1.25)), torch.zeros(1, 1), torch.tensor([1.0]), eps_high=0.28
    )
    assert up.item() == pytest.approx(-1.25)


def test_ratio_one_is_reinforce():
    logp = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    adv = torch.randn(4, dtype=torch.float64)
    mask = (torch.rand(4, 5) > 0.3).double()
    (g1,) = torch.autograd.grad(clipped_surrogate(logp, logp.detach(), adv, mask), logp)
    (g2,) = torch.autograd.grad(aggregate(-adv[:, None] * logp, mask), logp)
    torch.testing.assert_close(g1, g2)
    gradcheck64(
        lambda x: clipped_surrogate(x, logp.detach() + 0.05, adv, mask, dual_clip=3.0), logp
    )


def test_kl_k3_properties():
    lp = torch.log(torch.tensor([0.1, 0.5, 0.3], dtype=torch.float64))
    assert torch.all(kl_k3(lp, lp) == 0)
    ref = torch.log(torch.tensor([0.2, 0.1, 0.9], dtype=torch.float64))
    k = kl_k3(lp, ref)
    assert torch.all(k > 0)
    d = ref - lp
    torch.testing.assert_close(k, torch.exp(d) - d - 1)
    assert kl_k3(lp[:1], ref[:1]).item() == pytest.approx(2 - math.log(2) - 1)  # 0.30685
    big = kl_k3(torch.tensor([-30.0]), torch.tensor([0.0]), clamp=10.0)
    assert big.item() == 10.0
    # unbiased: E_{x~p}[k3] = KL(p || q)
    p = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    q = torch.tensor([0.4, 0.4, 0.2], dtype=torch.float64)
    assert (p * kl_k3(p.log(), q.log())).sum().item() == pytest.approx(
        (p * (p / q).log()).sum().item()
    )


def test_bad_input():
    with pytest.raises(ValueError, match="group_size"):
        grpo_advantages(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="scale"):
        grpo_advantages(torch.zeros(4), 2, "global")  # type: ignore[arg-type]
    lp = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="mask"):
        clipped_surrogate(lp, lp, torch.zeros(2), torch.ones(2, 4))
    with pytest.raises(ValueError, match="advantages"):
        clipped_surrogate(lp, lp, torch.zeros(3))
    with pytest.raises(ValueError, match="old_logp"):
        clipped_surrogate(lp, torch.zeros(2, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="dual_clip"):
        clipped_surrogate(lp, lp, torch.zeros(2), dual_clip=0.5)
    with pytest.raises(ValueError, match="eps_low"):
        clipped_surrogate(lp, lp, torch.zeros(2), eps_low=-0.1)
    with pytest.raises(ValueError, match="mode"):
        aggregate(lp, None, "sum")
    with pytest.raises(ValueError, match="ref_logp"):
        kl_k3(lp, torch.zeros(3))


def test_kl_k3_masked_tokens_and_overflow_are_never_nan():
    # Regression (issue 18): a -inf log-prob gave inf - inf = NaN, and so did exp overflow
    # beyond ~88.7 (float32). Documented outcome: the limit (+inf where one side is -inf or
    # e^d overflows, 0 outside both supports), finite gradients for the finite entries.
    inf = math.inf
    lp = torch.tensor([-0.5, -inf, -inf, -1.0, -1e6, -1.0], dtype=torch.float64)
    ref = torch.tensor([-1.5, -inf, -0.3, -inf, -2.0, -1e6], dtype=torch.float64)
    lp.requires_grad_(True)
    k = kl_k3(lp, ref)
    # d = -1: e^-1 + 1 - 1; d = -(1e6 - 1): e^d - d - 1 = 1e6 - 2
    assert k.tolist() == pytest.approx([math.exp(-1.0), 0.0, inf, inf, inf, 1e6 - 2.0])
    (g,) = torch.autograd.grad(k[[0, 1, 5]].sum(), lp)  # infinite entries left out
    assert torch.isfinite(g).all()
    assert g.tolist() == pytest.approx([1.0 - math.exp(-1.0), 0.0, 0.0, 0.0, 0.0, 1.0])
    # TRL's plain formula on ordinary entries; float32 overflow (d >= 88) gives +inf
    lp32 = torch.tensor([-0.1, -90.0, -80.0])
    k32 = kl_k3(lp32, torch.zeros(3))
    assert float(k32[1]) == inf and math.isfinite(float(k32[2]))
    torch.testing.assert_close(k32[[0, 2]], (torch.exp(-lp32) + lp32 - 1)[[0, 2]])
    # verl's clamped form: finite everywhere, 0 outside both supports
    kc = kl_k3(lp.detach(), ref, clamp=10.0)
    assert kc.tolist()[1:] == pytest.approx([0.0, 10.0, 10.0, 10.0, 10.0])
    # half precision: computed in float32, returned in the input dtype
    kb = kl_k3(lp32.bfloat16(), torch.zeros(3, dtype=torch.bfloat16))
    assert kb.dtype == torch.bfloat16 and float(kb[1]) == inf


def test_clipped_surrogate_masked_token_in_both_policies_is_finite():
    # Regression: a token with log-prob -inf under both the policy and the old policy (a masked
    # token) gave ratio exp(-inf - -inf) = NaN; equal log-probs now mean ratio 1.
    logp = torch.tensor([[-0.5, -math.inf, -1.0]], requires_grad=True)
    old = torch.tensor([[-0.7, -math.inf, -1.0]])
    adv = torch.tensor([1.0])
    mask = torch.tensor([[1.0, 0.0, 1.0]])
    loss = clipped_surrogate(logp, old, adv, mask=mask, mode="token-mean")
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logp.grad).all()
    want = clipped_surrogate(logp[:, [0, 2]].detach(), old[:, [0, 2]], adv, mode="token-mean")
    torch.testing.assert_close(loss.detach(), want)
