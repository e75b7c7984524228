"""The verl recipe of docs/rl_integration.md, run against verl's own policy loss.

verl cannot share an environment with the ``trl`` extra (verl 0.9.1 pins ``transformers<5.11``
and imports ``ray``), so CI skips this file; it was run by hand against verl 0.9.1.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

core_algos = pytest.importorskip(
    "verl.trainer.ppo.core_algos",
    reason="verl is not installed (it conflicts with the trl extra's transformers pin)",
)
from omegaconf import OmegaConf  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "rl_integration.md"
MARKER = "# inforeg policy losses for verl"
MODES = ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]


@pytest.fixture(scope="module")
def recipe():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    (code,) = [b for b in blocks if b.startswith(MARKER)]
    namespace: dict = {}
    exec(compile(code, str(DOC), "exec"), namespace)
    return namespace


def config(**global_batch_info):
    return OmegaConf.create(
        {
            "clip_ratio": 0.2,
            "clip_ratio_low": 0.2,
            "clip_ratio_high": 0.28,  # clip-higher
            "clip_ratio_c": 3.0,
            "global_batch_info": global_batch_info,
        }
    )


def batch(seed=0, spread=0.6):
    g = torch.Generator().manual_seed(seed)
    old = -torch.rand(6, 5, generator=g, dtype=torch.float64) * 3
    logp = (old + spread * torch.randn(6, 5, generator=g, dtype=torch.float64)).requires_grad_()
    adv = torch.randn(6, 1, generator=g, dtype=torch.float64).expand(6, 5).contiguous()
    mask = torch.ones(6, 5, dtype=torch.float64)
    mask[0, 3:] = 0
    mask[4, 1:] = 0
    return old, logp, adv, mask


def value_and_grad(fn, old, logp, adv, mask, mode, cfg, weights=None):
    loss, _ = fn(old, logp, adv, mask, loss_agg_mode=mode, config=cfg, rollout_is_weights=weights)
    (grad,) = torch.autograd.grad(loss, logp)
    return loss.detach(), grad


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sharded", [False, True])
def test_inforeg_grpo_equals_verls_vanilla_loss(recipe, mode, sharded):
    info = {"dp_size": 2, "batch_num_tokens": 40, "global_batch_size": 12} if sharded else {}
    cfg = config(**info)
    old, logp, adv, mask = batch()
    weights = torch.rand(6, 5, dtype=torch.float64)
    assert core_algos.get_policy_loss_fn("inforeg_grpo") is recipe["inforeg_grpo"]
    for w in (None, weights):
        ours = value_and_grad(recipe["inforeg_grpo"], old, logp, adv, mask, mode, cfg, w)
        verl = value_and_grad(
            core_algos.compute_policy_loss_vanilla, old, logp, adv, mask, mode, cfg, w
        )
        torch.testing.assert_close(ours, verl, rtol=1e-12, atol=1e-12)


def test_dual_clip_and_clip_higher_are_exercised(recipe):
    old, logp, adv, mask = batch(spread=2.0)
    ratio = (logp - old).exp()
    assert bool(((ratio > 3.0) & (adv < 0)).any()) and bool(((ratio > 1.28) & (adv > 0)).any())
    ours = value_and_grad(recipe["inforeg_grpo"], old, logp, adv, mask, "token-mean", config())
    verl = value_and_grad(
        core_algos.compute_policy_loss_vanilla, old, logp, adv, mask, "token-mean", config()
    )
    torch.testing.assert_close(ours, verl, rtol=1e-12, atol=1e-12)


def test_lp_reg_without_selected_tokens_is_verls_loss(recipe):
    old, logp, adv, mask = batch(spread=0.1)  # ratios near 1: no dual clipping
    proxy = torch.zeros_like(old)  # log 1: every sampled token is below its proxy
    lp_reg = recipe["make_lp_reg_loss"](lambda: proxy, neg_fraction=0.01)  # k = 1: inert
    assert core_algos.get_policy_loss_fn("inforeg_lp_reg") is lp_reg
    ours = value_and_grad(lp_reg, old, logp, adv, mask, "token-mean", config())
    verl = value_and_grad(
        core_algos.compute_policy_loss_vanilla, old, logp, adv, mask, "token-mean", config()
    )
    torch.testing.assert_close(ours, verl, rtol=1e-12, atol=1e-12)
    acting = recipe["make_lp_reg_loss"](lambda: proxy, neg_fraction=1.0)
    changed = value_and_grad(acting, old, logp, adv, mask, "token-mean", config())
    assert not torch.allclose(changed[1], verl[1])
