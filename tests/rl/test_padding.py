"""Padded positions whose logits are all -inf (``logits.masked_fill(pad[..., None], -inf)``)
and that the mask excludes change nothing: every RL Module gives the loss and statistics it
gives on the unpadded logits, and the gradient reaching the raw logits is finite (zero at the
padding). Such a position's entropy and log-probability are NaN (no distribution), and a
product with the mask (0 * NaN) used to carry that NaN into the loss and into EPO's history."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from inforeg import rl

B, T, V = 4, 6, 11
_G = torch.Generator().manual_seed(0)
RAW = torch.randn(B, T, V, generator=_G, dtype=torch.float64)
TOKENS = torch.randint(0, V, (B, T), generator=_G)
OLD_LOGP = torch.log_softmax(
    RAW + 0.1 * torch.randn(B, T, V, generator=_G, dtype=torch.float64), -1
)
OLD_LOGP = OLD_LOGP.gather(-1, TOKENS[..., None]).squeeze(-1)
ADV = torch.tensor([1.0, -1.0, 0.5, -0.5], dtype=torch.float64)
PAD = torch.zeros(B, T, dtype=torch.bool)
PAD[1, 4:] = True
PAD[3, 5] = True

Call = Callable[[torch.Tensor, torch.Tensor], Any]
MODULES: dict[str, Call] = {
    "EntropyBonus": lambda z, m: rl.EntropyBonus(0.5)(z, m),
    "SelectiveEntropyRegularizer": lambda z, m: rl.SelectiveEntropyRegularizer(0.01)(z, m),
    "EntropySmoothingRegularizer": lambda z, m: rl.EntropySmoothingRegularizer()(z, m),
    "LowProbabilityRegularizer": lambda z, m: rl.LowProbabilityRegularizer()(
        z, TOKENS, OLD_LOGP, ADV, m
    ),
    "ArbitraryEntropyController": lambda z, m: rl.ArbitraryEntropyController(max_samples=4)(
        z, TOKENS, m, ADV
    ),
}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_padding_with_all_masked_logits_changes_nothing(name: str) -> None:
    raw = RAW.clone().requires_grad_(True)
    padded = raw.masked_fill(PAD[..., None], float("-inf"))
    torch.manual_seed(0)
    loss, stats = MODULES[name](padded, ~PAD)
    loss.backward()
    torch.manual_seed(0)
    ref_loss, ref_stats = MODULES[name](RAW, ~PAD)
    torch.testing.assert_close(loss.detach(), ref_loss.detach())
    for key, value in ref_stats.items():
        torch.testing.assert_close(stats[key], value, msg=f"stats[{key!r}]")
    assert raw.grad is not None and torch.isfinite(raw.grad).all()
    assert not raw.grad[PAD].any()
