"""AEPO: switching rule, sample selection, the q - p entropy mechanism, the REINFORCE term."""

from __future__ import annotations

import pytest
import torch

from inforeg.rl import (
    ArbitraryEntropyController,
    build_reinforce_batch,
    reinforce_loss,
    token_entropy,
)
from tests._helpers import gradcheck64


def test_switching_rule_and_lagged_entropy():
    c = ArbitraryEntropyController(target_entropy=0.5)
    assert c.sampling_temperature() == 1.2  # the estimate starts at 0
    c.update(torch.full((2, 3), -0.3))
    assert c.sampling_temperature() == 1.2
    c.update(torch.full((2, 3), -0.6), torch.ones(2, 3))
    assert c.sampling_temperature() == 0.8
    assert float(c.entropy) == pytest.approx(0.6)
    assert "entropy" in dict(c.state_dict())


def test_selection_positive_mixed_groups_only_and_halving():
    rewards = torch.tensor([1.0, 0, 1, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0])
    idx, adv = build_reinforce_batch(rewards, 4)
    assert idx.tolist() == [0, 2, 13]  # all-correct group 2 and all-wrong group 3 are skipped
    assert torch.all(adv == 1)
    idx, _ = build_reinforce_batch(rewards, 4, max_samples=2)
    assert idx.tolist() == [0, 2]
    idx, _ = build_reinforce_batch(rewards, 4, halve=True)
    assert idx.tolist() == [0]
    c = ArbitraryEntropyController(target_entropy=0.5)
    c.update(torch.full((1, 2), -0.9))
    assert c.select(rewards, 4)[0].tolist() == [0]


@pytest.mark.parametrize("t, sign", [(1.5, 1.0), (0.6, -1.0)])
def test_tempered_likelihood_step_moves_entropy(t, sign):
    g = torch.Generator().manual_seed(3)
    for _ in range(5):
        z = torch.randn(5, generator=g, dtype=torch.float64)
        q = torch.softmax(z / t, -1)
        p = torch.softmax(z, -1)
        z_new = z + 1e-2 * (q - p)  # expected log-likelihood gradient on samples from q
        assert sign * (token_entropy(z_new) - token_entropy(z)).item() > 0


def test_forward_is_reinforce_on_given_tokens():
    torch.manual_seed(0)
    z = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    tok = torch.randint(0, 6, (3, 4))
    mask = torch.ones(3, 4)
    mask[0, 2:] = 0
    c = ArbitraryEntropyController()
    loss, stats = c(z, tok, mask)
    logp = torch.log_softmax(z, -1).gather(-1, tok.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(loss, -(logp * mask).sum() / mask.sum())
    assert set(stats) >= {"entropy", "controller_entropy", "sampling_temperature", "target"}
    gradcheck64(lambda x: c(x, tok, mask)[0], z)
    adv = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(
        reinforce_loss(logp, mask, adv, "seq-mean-token-mean"),
        (-(adv[:, None] * logp * mask).sum(1) / mask.sum(1)).mean(),
    )


def test_bad_input():
    with pytest.raises(ValueError, match="group_size"):
        build_reinforce_batch(torch.zeros(6), 4)
    with pytest.raises(ValueError, match="t_high"):
        ArbitraryEntropyController(t_high=0.0)
    with pytest.raises(ValueError, match="temperature"):
        ArbitraryEntropyController(temperature=0.0)
    with pytest.raises(ValueError, match="mask"):
        reinforce_loss(torch.zeros(2, 3), torch.ones(2, 2))
    with pytest.raises(ValueError, match="advantages"):
        reinforce_loss(torch.zeros(2, 3), None, torch.ones(3))
