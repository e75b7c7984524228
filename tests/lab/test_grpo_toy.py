"""The CPU toy task: split, reward, unbiased pass@k, sampling, a few GRPO steps."""

from __future__ import annotations

import itertools
from math import comb

import pytest
import torch

from inforeg.lab.experiments.grpo_toy import (
    AdditionTask,
    ToyPolicy,
    grpo_train,
    pass_at_k,
    pass_at_k_estimate,
    sample,
)
from inforeg.rl import clipped_surrogate, selective_log_softmax


def test_split_and_reward():
    task = AdditionTask.make(0)
    assert task.train.shape == (70, 2) and task.heldout.shape == (30, 2)
    both = {tuple(p) for p in torch.cat([task.train, task.heldout]).tolist()}
    assert len(both) == 100
    prompts = torch.tensor([[7, 8], [7, 8], [1, 2]])
    resp = torch.tensor([[3, 1, 5], [9, 1, 4], [0, 0, 3]])
    torch.testing.assert_close(AdditionTask.reward(prompts, resp), torch.tensor([1.0, 0.0, 1.0]))


def test_pass_at_k_unbiased():
    assert pass_at_k_estimate(4, 1, 2) == pytest.approx(0.5)
    # brute force over all k-subsets
    n, c, k = 6, 2, 3
    hits = [any(i < c for i in s) for s in itertools.combinations(range(n), k)]
    assert pass_at_k_estimate(n, c, k) == pytest.approx(sum(hits) / comb(n, k))
    assert pass_at_k_estimate(5, 0, 5) == 0.0 and pass_at_k_estimate(5, 5, 1) == 1.0
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k_estimate(3, 4, 1)


def test_policy_sampling_and_teacher_forcing_agree():
    torch.manual_seed(0)
    policy = ToyPolicy()
    prompts = AdditionTask.make(0).train[:5]
    resp = sample(policy, prompts)
    assert resp.shape == (5, 3) and resp.min() >= 0 and resp.max() < 10
    logits = policy(prompts, resp)
    step = policy.step_logits(prompts, resp[:, 0], torch.full((5,), 1))
    torch.testing.assert_close(logits[:, 1], step)
    res = pass_at_k(policy, prompts, ks=(1, 4), n=8)
    assert 0.0 <= res[1] <= res[4] <= 1.0


def test_units_input_shares_the_answer_feature():
    torch.manual_seed(0)
    policy = ToyPolicy(units_input=True)
    with torch.no_grad():  # leave only the (a + b) mod 10 route from the prompt
        policy.emb_a.weight.zero_()
        policy.emb_b.weight.zero_()
    prompts = torch.tensor([[3, 4], [9, 8], [0, 7], [5, 5]])  # residues 7, 7, 7, 0
    logits = policy(prompts, torch.zeros(4, 3, dtype=torch.long))
    torch.testing.assert_close(logits[0], logits[1])
    torch.testing.assert_close(logits[0], logits[2])
    assert not torch.allclose(logits[0], logits[3])
    assert ToyPolicy().emb_units is None


def test_short_grpo_run_raises_reward():
    torch.manual_seed(0)
    task = AdditionTask.make(0)
    policy = ToyPolicy()
    seen: list[int] = []

    def loss_fn(pol, batch):  # type: ignore[no-untyped-def]
        logp = selective_log_softmax(pol(batch.prompts, batch.responses), batch.responses)
        return clipped_surrogate(logp, logp.detach(), batch.advantages, batch.mask)

    curves = grpo_train(
        policy,
        task,
        loss_fn,
        steps=30,
        prompts_per_step=16,
        group_size=8,
        log_every=1,
        on_step=seen.append,
    )
    assert set(curves) == {
        "entropy",
        "free-slot entropy",
        "answer entropy",
        "reward",
        "zero-std fraction",
    }
    assert len(curves["entropy"]) == 30 and seen == list(range(1, 31))
    assert curves["entropy"][-1] < curves["entropy"][0]
