"""Policy-entropy control for RL fine-tuning (GRPO family), as standalone tensor losses.

- :mod:`~inforeg.rl.entropy`: exact chunked token entropy and selective log-softmax.
- :mod:`~inforeg.rl.fused_linear`: the same from the LM head's input, without the logits.
- :mod:`~inforeg.rl.grpo`: GRPO advantages, clipped surrogate, k3 KL, aggregation.
- :mod:`~inforeg.rl.bonus`: the plain entropy bonus (the baseline of the controls below).
- :mod:`~inforeg.rl.siren`: SIREN (selective, self-anchored entropy).
- :mod:`~inforeg.rl.epo`: EPO (entropy bonus + smoothing band + phase weight).
- :mod:`~inforeg.rl.aepo`: AEPO (temperature-switched REINFORCE regulariser + controller).
- :mod:`~inforeg.rl.lp_reg`: Lp-Reg (min-p proxy + k3 on low-probability negative tokens).

Example (a GRPO step's pieces on one group of four responses):

    >>> import torch
    >>> from inforeg import rl
    >>> rl.grpo_advantages(torch.tensor([1.0, 0.0, 0.0, 0.0]), group_size=4, eps=0.0).tolist()
    [1.5, -0.5, -0.5, -0.5]
    >>> print(f"{float(rl.token_entropy(torch.zeros(2, 3, 8)).mean()):.4f}")  # log 8
    2.0794
"""

from inforeg.rl.aepo import ArbitraryEntropyController, build_reinforce_batch, reinforce_loss
from inforeg.rl.bonus import EntropyBonus
from inforeg.rl.entropy import selective_log_softmax, token_entropy
from inforeg.rl.epo import (
    EntropySmoothingRegularizer,
    TurnEntropyHistory,
    entropy_band_penalty,
    phase_weight_schedule,
)
from inforeg.rl.fused_linear import default_lm_head_chunk, fused_linear_logprobs_entropy
from inforeg.rl.grpo import aggregate, clipped_surrogate, grpo_advantages, kl_k3
from inforeg.rl.lp_reg import LowProbabilityRegularizer, low_probability_loss, min_p_proxy_logprobs
from inforeg.rl.siren import (
    SelectiveEntropyRegularizer,
    anchored_penalty,
    peak_entropy_mask,
    selective_entropy,
    top_p_entropy,
)

__all__ = [
    "ArbitraryEntropyController",
    "EntropyBonus",
    "EntropySmoothingRegularizer",
    "LowProbabilityRegularizer",
    "SelectiveEntropyRegularizer",
    "TurnEntropyHistory",
    "aggregate",
    "anchored_penalty",
    "build_reinforce_batch",
    "clipped_surrogate",
    "default_lm_head_chunk",
    "entropy_band_penalty",
    "fused_linear_logprobs_entropy",
    "grpo_advantages",
    "kl_k3",
    "low_probability_loss",
    "min_p_proxy_logprobs",
    "peak_entropy_mask",
    "phase_weight_schedule",
    "reinforce_loss",
    "selective_entropy",
    "selective_log_softmax",
    "token_entropy",
    "top_p_entropy",
]
