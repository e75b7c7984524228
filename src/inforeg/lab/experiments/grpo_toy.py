"""A CPU verifiable-reward task that shows entropy collapse under GRPO in seconds.

Task ("addition with a free slot", spec rl.md §6): the prompt is ``(a, b)`` with ``a, b`` in
``0..9``; the response is 3 tokens over the digits ``0..9``: ``y1`` is free (any digit is
right), ``y2`` the tens and ``y3`` the units digit of ``a + b``. Reward 1 iff ``y2`` and ``y3``
are right. 70 prompts train, 30 are held out (a fixed permutation). The free slot has 10 correct
fillers, so there are many correct answers and collapse shows as lost diversity.

Policy: an MLP on one-hot(a) + one-hot(b) + one-hot(position) + one-hot(previous token or BOS)
(34 inputs; the first layer is written as a sum of embeddings, which is the same linear map),
64 ReLU units, 10 logits, sampled autoregressively. With ``units_input=True`` it also sees
one-hot((a + b) mod 10) (10 more inputs): the units digit is then a function of a feature shared
by seen and unseen prompts, and the tens digit (the carry, a + b >= 10) a threshold that the sum
of the a and b embeddings can learn, so held-out prompts measure what RL taught. Without it the
MLP does not generalise addition to unseen pairs, and held-out pass@k measures only leftover
randomness.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import comb

import torch
from torch import Tensor, nn

__all__ = [
    "AdditionTask",
    "ToyPolicy",
    "grpo_train",
    "pass_at_k",
    "pass_at_k_estimate",
    "sample",
    "sft_base_policy",
]

VOCAB = 10
LENGTH = 3
BOS = VOCAB


@dataclass(frozen=True)
class AdditionTask:
    """Prompts ``(a, b)``: ``train`` (70, 2) and ``heldout`` (30, 2), a fixed permutation."""

    train: Tensor
    heldout: Tensor

    @staticmethod
    def make(seed: int = 0) -> AdditionTask:
        """The fixed split (``seed`` picks the permutation; the experiment uses 0)."""
        g = torch.Generator().manual_seed(seed)
        a, b = torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij")
        prompts = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)[
            torch.randperm(100, generator=g)
        ]
        return AdditionTask(prompts[:70], prompts[70:])

    @staticmethod
    def reward(prompts: Tensor, responses: Tensor) -> Tensor:
        """1.0 iff tokens 2 and 3 spell ``a + b`` (tens, units); the first token is free."""
        s = prompts[:, 0] + prompts[:, 1]
        return ((responses[:, 1] == s // 10) & (responses[:, 2] == s % 10)).float()


class ToyPolicy(nn.Module):
    """MLP policy ``(prompts (N, 2), prev tokens, positions) -> logits (.., 10)``."""

    def __init__(self, hidden: int = 64, units_input: bool = False) -> None:
        super().__init__()
        self.emb_units = nn.Embedding(10, hidden) if units_input else None
        self.emb_a = nn.Embedding(10, hidden)
        self.emb_b = nn.Embedding(10, hidden)
        self.emb_pos = nn.Embedding(LENGTH, hidden)
        self.emb_prev = nn.Embedding(VOCAB + 1, hidden)
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.head = nn.Linear(hidden, VOCAB)
        fan_in = 34 if self.emb_units is None else 44
        for emb in (self.emb_a, self.emb_b, self.emb_pos, self.emb_prev, self.emb_units):
            if emb is not None:  # as nn.Linear(fan_in, hidden)
                nn.init.uniform_(emb.weight, -(fan_in**-0.5), fan_in**-0.5)

    def step_logits(self, prompts: Tensor, prev: Tensor, pos: Tensor) -> Tensor:
        """Logits for one position; ``prompts (..., 2)``, ``prev``/``pos`` of shape ``(...)``."""
        h = self.emb_a(prompts[..., 0]) + self.emb_b(prompts[..., 1])
        if self.emb_units is not None:
            h = h + self.emb_units((prompts[..., 0] + prompts[..., 1]) % 10)
        h = torch.relu(h + self.emb_pos(pos) + self.emb_prev(prev) + self.bias)
        return self.head(h)

    def forward(self, prompts: Tensor, responses: Tensor) -> Tensor:
        """Teacher-forced logits ``(N, 3, 10)`` for ``responses (N, 3)``."""
        n = prompts.shape[0]
        prev = torch.cat([torch.full((n, 1), BOS, dtype=torch.long), responses[:, :-1]], dim=1)
        pos = torch.arange(LENGTH).expand(n, LENGTH)
        return self.step_logits(prompts.unsqueeze(1).expand(n, LENGTH, 2), prev, pos)


@torch.no_grad()
def sample(policy: ToyPolicy, prompts: Tensor, temperature: float = 1.0) -> Tensor:
    """Sample responses ``(N, 3)`` autoregressively at ``temperature``."""
    n = prompts.shape[0]
    prev = torch.full((n,), BOS, dtype=torch.long)
    out = []
    for t in range(LENGTH):
        logits = policy.step_logits(prompts, prev, torch.full((n,), t, dtype=torch.long))
        prev = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1).squeeze(1)
        out.append(prev)
    return torch.stack(out, dim=1)


def pass_at_k_estimate(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``.

    Example: ``n=4, c=1, k=2`` gives 0.5.
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(
            f"pass_at_k_estimate: expected 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}"
        )
    return 1.0 - comb(n - c, k) / comb(n, k)


@torch.no_grad()
def pass_at_k(
    policy: ToyPolicy, prompts: Tensor, ks: tuple[int, ...] = (1, 4, 16, 64), n: int = 64
) -> dict[int, float]:
    """Mean unbiased pass@k over ``prompts`` from ``n`` samples each."""
    rep = prompts.repeat_interleave(n, dim=0)
    correct = AdditionTask.reward(rep, sample(policy, rep)).view(-1, n).sum(1).long().tolist()
    return {k: sum(pass_at_k_estimate(n, c, k) for c in correct) / len(correct) for k in ks}


def sft_base_policy(
    task: AdditionTask,
    steps: int = 300,
    noise: float = 0.6,
    seed: int = 0,
    units_input: bool = False,
) -> ToyPolicy:
    """Weak base model: SFT (Adam 3e-3, batch 256) on noisy answers (each answer token replaced by
    a uniform digit with probability ``noise``; the free token always uniform)."""
    torch.manual_seed(seed)
    policy = ToyPolicy(units_input=units_input)
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(steps):
        prompts = task.train[torch.randint(0, task.train.shape[0], (256,))]
        s = prompts[:, 0] + prompts[:, 1]
        target = torch.stack([torch.randint(0, 10, (256,)), s // 10, s % 10], dim=1)
        noisy = torch.rand(256, LENGTH) < noise
        target = torch.where(noisy, torch.randint(0, 10, (256, LENGTH)), target)
        logits = policy(prompts, target)
        loss = nn.functional.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return policy


@dataclass
class Batch:
    """One rollout as the loss sees it (all responses have length 3, so the mask is all ones)."""

    prompts: Tensor  # (N, 2)
    responses: Tensor  # (N, 3)
    rewards: Tensor  # (N,)
    advantages: Tensor  # (N,)
    mask: Tensor  # (N, 3)
    step: int


LossFn = Callable[[ToyPolicy, Batch], Tensor]
HookFn = Callable[[ToyPolicy, Batch], Batch]


def grpo_train(
    policy: ToyPolicy,
    task: AdditionTask,
    loss_fn: LossFn,
    steps: int = 400,
    prompts_per_step: int = 64,
    group_size: int = 8,
    lr: float = 3e-3,
    before_update: HookFn | None = None,
    log_every: int = 10,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, list[float]]:
    """Minimal GRPO loop: sample ``G`` responses per prompt at T=1, group advantages, one update.

    ``loss_fn(policy, batch)`` returns the loss to minimise; ``before_update(policy, batch)`` may
    rebuild the batch (AEPO). Returns curves logged every ``log_every`` steps: ``entropy`` (exact
    mean token entropy at visited states), ``free-slot entropy``, ``answer entropy`` (the two
    answer tokens), ``reward`` and ``zero-std fraction`` (share of groups with identical rewards).
    ``on_step(n)`` is called after the ``n``-th update (e.g. to evaluate on validation).
    """
    from inforeg.rl.entropy import token_entropy
    from inforeg.rl.grpo import grpo_advantages

    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    curves: dict[str, list[float]] = {
        "entropy": [],
        "free-slot entropy": [],
        "answer entropy": [],
        "reward": [],
        "zero-std fraction": [],
    }
    for step in range(steps):
        idx = torch.randint(0, task.train.shape[0], (prompts_per_step,))
        prompts = task.train[idx].repeat_interleave(group_size, dim=0)
        responses = sample(policy, prompts)
        rewards = AdditionTask.reward(prompts, responses)
        adv = grpo_advantages(rewards, group_size)
        batch = Batch(prompts, responses, rewards, adv, torch.ones(responses.shape), step)
        if step % log_every == 0:
            with torch.no_grad():
                ent = token_entropy(policy(prompts, responses))
                r = rewards.view(-1, group_size)
                curves["entropy"].append(float(ent.mean()))
                curves["free-slot entropy"].append(float(ent[:, 0].mean()))
                curves["answer entropy"].append(float(ent[:, 1:].mean()))
                curves["reward"].append(float(rewards.mean()))
                curves["zero-std fraction"].append(float((r.amax(1) == r.amin(1)).float().mean()))
        if before_update is not None:
            batch = before_update(policy, batch)
        loss = loss_fn(policy, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if on_step is not None:
            on_step(step + 1)
    return curves
