"""Lp-Reg: min-p proxy values, selection rule (k > 1, sparks only), loss and gradient checks."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.rl import (
    LowProbabilityRegularizer,
    clipped_surrogate,
    low_probability_loss,
    min_p_proxy_logprobs,
    selective_log_softmax,
)
from tests._helpers import gradcheck64


def test_proxy_spec_example():
    p = torch.tensor([[0.5, 0.3, 0.19, 0.01]], dtype=torch.float64).expand(4, 4)
    tok = torch.arange(4)
    prox = min_p_proxy_logprobs(p.log(), tok, 0.1, relative=True)
    torch.testing.assert_close(
        prox[:3].exp(),
        torch.tensor([0.50505, 0.30303, 0.19192], dtype=torch.float64),
        atol=1e-5,
        rtol=0,
    )
    assert prox[3].item() == -math.inf
    fixed = min_p_proxy_logprobs(p.log(), tok, 0.25, relative=False)  # keeps p >= 0.25
    torch.testing.assert_close(fixed[:2].exp(), torch.tensor([0.625, 0.375], dtype=torch.float64))
    assert torch.isinf(fixed[2:]).all()
    chunked = min_p_proxy_logprobs(p.log(), tok, 0.1, chunk_size=1)
    torch.testing.assert_close(chunked, prox)


def _setup(n_tok=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(10, n_tok // 10, 8, generator=g, dtype=torch.float64) * 2
    tok = torch.randint(0, 8, (10, n_tok // 10), generator=g)
    adv = torch.tensor([-1.0, 1.0] * 5, dtype=torch.float64)
    return logits, tok, adv


def test_selection_and_loss_against_reference():
    logits, tok, adv = _setup()
    logp = selective_log_softmax(logits, tok)
    proxy = min_p_proxy_logprobs(logits * 0.5, tok, 0.02)  # a flatter proxy: some sparks qualify
    mask = torch.ones_like(logp)
    loss, stats = low_probability_loss(logp, logp.detach(), adv, proxy, mask, neg_fraction=0.1)
    # reference: flatten, choose the k lowest-logp negative tokens, keep logp < proxy
    a = adv[:, None].expand_as(logp).reshape(-1)
    lp, px = logp.reshape(-1), proxy.reshape(-1)
    neg = (a < 0).nonzero().view(-1)
    k = max(1, int(0.1 * neg.numel()))
    lowest = neg[torch.argsort(lp[neg])[:k]]
    sel = torch.zeros_like(lp, dtype=torch.bool)
    sel[lowest] = True
    sel &= lp < px
    assert int(stats["num_selected"]) == int(sel.sum()) > 0
    surr = clipped_surrogate(logp, logp.detach(), adv, mode="none").reshape(-1)
    d = px - lp
    k3 = torch.clamp(torch.exp(d) - d - 1, max=10.0)  # the code clamps k3 to [-10, 10]
    per = torch.where(sel, -a * 1.0 + k3, surr)
    torch.testing.assert_close(loss, per.mean())
    mask[0, -2:] = 0  # mode="none": the per-token loss, zero on padding
    per_token, _ = low_probability_loss(logp, logp.detach(), adv, proxy, mask, 0.1, mode="none")
    assert per_token.shape == logp.shape and bool((per_token[0, -2:] == 0).all())
    masked, _ = low_probability_loss(logp, logp.detach(), adv, proxy, mask, 0.1)
    torch.testing.assert_close(masked, per_token.sum() / mask.sum())


def test_no_op_when_k_is_one_and_gradient_direction():
    logits, tok, adv = _setup(n_tok=20)  # 10 negative tokens at 10% -> k = 1 -> nothing applied
    logp = selective_log_softmax(logits, tok)
    proxy = torch.zeros_like(logp)  # every token would qualify (logp < 0)
    loss, stats = low_probability_loss(logp, logp.detach(), adv, proxy, neg_fraction=0.1)
    assert int(stats["num_selected"]) == 0
    torch.testing.assert_close(loss, clipped_surrogate(logp, logp.detach(), adv))
    # spec: pi=0.1, proxy=0.2 -> k3 = 0.30685 with slope -1 in log pi
    lp = torch.full((1, 4), math.log(0.1), dtype=torch.float64, requires_grad=True)
    pr = torch.full((1, 4), math.log(0.2), dtype=torch.float64)
    loss, stats = low_probability_loss(
        lp, lp.detach(), torch.tensor([0.0]) - 1e-9, pr, neg_fraction=0.5, kl_coef=1.0
    )
    assert stats["kl"].item() == pytest.approx(0.30685, abs=1e-5)
    (g,) = torch.autograd.grad(loss, lp)
    torch.testing.assert_close(
        g[0, :2], torch.full((2,), -1.0 / 4, dtype=torch.float64), atol=1e-6, rtol=0
    )


def test_module_padding_and_gradcheck():
    logits, tok, adv = _setup(n_tok=60)
    mask = torch.ones(10, 6)
    mask[0, 4:] = 0
    reg = LowProbabilityRegularizer(neg_fraction=0.3, min_p=0.02)
    old = selective_log_softmax(logits, tok).detach() + 0.01
    loss, stats = reg(logits, tok, old, adv, mask)
    assert set(stats) >= {"masked_fraction", "entropy", "coefficient", "kl"}
    gradcheck64(lambda x: reg(x, tok, old, adv, mask, old_logits=logits)[0], logits)
    extreme = torch.full((1, 2, 4), -1e4)
    extreme[..., 0] = 1e4
    loss, _ = reg(
        extreme, torch.ones(1, 2, dtype=torch.long), torch.zeros(1, 2), torch.tensor([-1.0])
    )
    assert torch.isfinite(loss)


def test_bad_input():
    logits, tok, adv = _setup(n_tok=20)
    reg = LowProbabilityRegularizer()
    old = torch.zeros(10, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="mask"):
        reg(logits, tok, old, adv, torch.ones(10, 3))
    with pytest.raises(ValueError, match="advantages"):
        reg(logits, tok, old, adv[:3])
    with pytest.raises(ValueError, match="temperature"):
        LowProbabilityRegularizer(temperature=0.0)
    with pytest.raises(ValueError, match="min_p"):
        min_p_proxy_logprobs(logits, tok, 0.0)
    with pytest.raises(ValueError, match="neg_fraction"):
        low_probability_loss(old, old, adv, old, neg_fraction=2.0)
    with pytest.raises(ValueError, match="old_logits"):
        reg(logits, tok, old, adv, old_logits=logits[:, :1])


def test_minus_inf_proxy_logprobs_accepted_under_full_checks():
    # Regression (issue 18): the proxy's -inf (filtered tokens) was refused as "not finite".
    from inforeg.core.checks import checks
    from inforeg.rl import low_probability_loss

    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(2, 3, generator=g, dtype=torch.float64)
    old = -torch.rand(2, 3, generator=g, dtype=torch.float64)
    adv = torch.randn(2, 3, generator=g, dtype=torch.float64)
    proxy = -torch.rand(2, 3, generator=g, dtype=torch.float64)
    proxy[0, 1] = float("-inf")
    with checks("full"):
        loss, _ = low_probability_loss(logp, old, adv, proxy)
        assert torch.isfinite(loss)
        proxy[1, 2] = float("nan")
        with pytest.raises(ValueError, match="proxy_logp: expected log-probabilities"):
            low_probability_loss(logp, old, adv, proxy)


def test_masked_current_logprob_gives_finite_loss_stats_and_gradient():
    # Regression (issue 18): one -inf current log-prob (a masked token) made k3 NaN through
    # inf - inf, and the NaN reached the "kl" statistic and the gradient.
    from inforeg.rl import low_probability_loss

    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(4, 5, generator=g, dtype=torch.float64)
    logp[1, 2] = -math.inf
    logp.requires_grad_(True)
    old = -torch.rand(4, 5, generator=g, dtype=torch.float64)
    adv = torch.randn(4, 5, generator=g, dtype=torch.float64)
    proxy = -torch.rand(4, 5, generator=g, dtype=torch.float64)
    padding = torch.ones(4, 5)
    padding[1, 2] = 0.0
    for frac in (0.01, 0.5):  # nothing selected (k = 1), and a selection
        for mask in (None, padding):
            loss, stats = low_probability_loss(logp, old, adv, proxy, mask, neg_fraction=frac)
            assert torch.isfinite(loss)
            (grad,) = torch.autograd.grad(loss, logp)
            assert torch.isfinite(grad).all()
            assert not any(bool(v.isnan().any()) for v in stats.values())
            # the sampled-entropy estimate -log pi is +inf on a real -inf token, finite when
            # the token is padding
            assert bool(torch.isfinite(stats["entropy"])) == (mask is not None)
            assert torch.isfinite(stats["kl"])


def test_per_token_mode_keeps_nan_at_masked_positions_out():
    # A padded position's log-probability is NaN when its logits are all -inf; with mode="none"
    # the per-token loss there is 0, as in the aggregated modes, not 0 * NaN.
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(2, 4, generator=g, dtype=torch.float64) - 0.1
    logp[1, 3] = float("nan")
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[1, 3] = False
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    loss, _ = low_probability_loss(logp, logp - 0.05, adv, logp.detach(), mask, mode="none")
    assert torch.isfinite(loss).all() and float(loss[1, 3]) == 0.0
