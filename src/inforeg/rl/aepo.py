"""AEPO: arbitrary-entropy policy optimisation (Wang et al., 2025, arXiv 2510.08141; later
retitled "... Breaks The Exploration Bottleneck of Reinforcement Learning"). Official code:
``597358816/AEPO`` (an EasyR1 fork; the ``AEPO`` branch of ``ray_trainer.fit``,
``_select_by_advantage``).

AEPO adds no entropy term. It adds a REINFORCE term on correct responses sampled from a
temperature-scaled policy and switches that temperature with an entropy controller:
:math:`T = T_\text{high}` when the entropy estimate :math:`H \\le H^*`, else :math:`T_\text{low}`.
For a categorical policy :math:`p = \\operatorname{softmax}(z)` and :math:`q =
\\operatorname{softmax}(z/T)`, the expected log-likelihood gradient on samples from :math:`q` is
:math:`q - p`, which raises the entropy for :math:`T > 1` and lowers it for :math:`T < 1`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_int, check_number, check_same_shape, check_tensor
from inforeg.core.reduce import masked_aggregate
from inforeg.rl.entropy import selective_log_softmax
from inforeg.rl.grpo import grpo_advantages

__all__ = ["ArbitraryEntropyController", "build_reinforce_batch", "reinforce_loss"]


def reinforce_loss(
    logp: Tensor,
    mask: Tensor | None = None,
    advantages: Tensor | None = None,
    mode: str = "token-mean",
) -> Tensor:
    r"""REINFORCE loss :math:`-\operatorname{agg}(A\,\log\pi_\theta(o_t))` (``A = 1`` by default,
    as AEPO's regulariser samples). With one update per rollout it equals the clipped surrogate
    on those samples (ratio 1), which is how the code applies it.

    Args:
        logp: ``(N, T)`` sampled-token log-probs (with grad).
        mask: ``(N, T)`` 0/1 or None.
        advantages: ``(N,)`` or ``(N, T)``, or None for all ones.
        mode: aggregation mode.

    Example (two tokens of probabilities 1/2 and 1/4: ``(log 2 + log 4) / 2``):

        >>> logp = torch.tensor([[0.5, 0.25]], dtype=torch.float64).log()
        >>> print(f"{float(reinforce_loss(logp)):.4f}")
        1.0397
    """
    check_tensor(logp, "logp", ndim=2, floating=True)
    if advantages is None:
        adv = torch.ones_like(logp)
    else:
        check_tensor(advantages, "advantages", ndim=(1, 2), floating=True)
        adv = advantages.unsqueeze(1) if advantages.dim() == 1 else advantages
        if adv.shape[0] != logp.shape[0] or (advantages.dim() == 2 and adv.shape != logp.shape):
            raise ValueError(
                f"advantages: expected ({logp.shape[0]},) or {tuple(logp.shape)}, got {tuple(advantages.shape)}"
            )
    if mask is not None:
        check_tensor(mask, "mask", ndim=2, nonempty=False)
        check_same_shape(logp, mask, "logp", "mask")
    return masked_aggregate(-adv.detach() * logp, mask, mode)


def build_reinforce_batch(
    rewards: Tensor,
    group_size: int,
    max_samples: int = 60,
    halve: bool = False,
    threshold: float = 0.05,
    eps: float = 1e-6,
) -> tuple[Tensor, Tensor]:
    r"""Choose AEPO's regulariser samples from responses drawn at the controller's temperature.

    Computes GRPO advantages inside the groups (``eps = 1e-6`` as EasyR1/verl), keeps the
    responses with advantage ``> threshold`` (correct answers from groups that are not all
    correct), and returns the first :math:`m = \min(N_\max, \#\text{kept})` of them, or
    :math:`\lfloor m/2 \rfloor` when ``halve`` (the entropy is above target). Their advantage is
    set to exactly +1. The caller **replaces** the first ``m`` responses of its GRPO batch with
    them (batch size unchanged) and trains as usual (log-probs recomputed at ``T = 1``, so no
    importance correction for the tempered sampling, as in the code).

    This helper returns a data-dependent number of samples, so it synchronises with the host
    once; it runs between rollout and update, not inside a loss.

    Args:
        rewards: ``(N,)`` rewards of the tempered responses (groups contiguous).
        group_size: responses per prompt.
        max_samples: :math:`N_\max` (``reinforce_sample_num`` = 60).
        halve: halve the count (entropy above target).
        threshold: advantage threshold (0.05).
        eps: std offset of the advantages.

    Returns:
        ``(indices (m,) long, advantages (m,) all ones)``.

    Example (the one correct answer of the first group; the all-correct group has advantage 0):

        >>> idx, adv = build_reinforce_batch(torch.tensor([1.0, 0, 0, 0, 1, 1, 1, 1]), 4)
        >>> idx.tolist(), adv.tolist()
        ([0], [1.0])
    """
    n_max = check_int(max_samples, "max_samples", low=0)
    thr = check_number(threshold, "threshold")
    adv = grpo_advantages(rewards, group_size, "group", eps)
    kept = torch.nonzero(adv > thr).view(-1)
    m = min(n_max, int(kept.numel()))
    if halve:
        m //= 2
    idx = kept[:m]
    return idx, torch.ones(idx.shape[0], dtype=rewards.dtype, device=rewards.device)


class ArbitraryEntropyController(nn.Module):
    r"""AEPO's entropy controller and REINFORCE regulariser.

    Per step (code semantics): (1) ``sampling_temperature()`` gives :math:`T_\text{high}` if the
    last entropy estimate :math:`H \le H^*` else :math:`T_\text{low}`; the estimate starts at 0,
    so the first step uses :math:`T_\text{high}`. (2) Re-sample a share of the prompts
    (``resample_fraction``, ¼ in the code) at that temperature and call
    :meth:`select` (:func:`build_reinforce_batch`, halved above target). (3) Replace the first
    ``m`` responses of the GRPO batch by those samples with advantage +1, or add
    ``forward(...)`` (a REINFORCE loss on them) to the PG loss. (4) After the update call
    :meth:`update` with the update batch's sampled-token log-probs: :math:`H` = token-mean of
    :math:`-\log\pi(o_t)`, a Monte-Carlo estimate, not the exact entropy.

    Paper vs code: the README formula weights all tempered samples by their reward; the code
    uses only positives from non-saturated groups, caps and halves their count, and uses the
    lagged sampled-token estimate. The code is followed. The weight :math:`\alpha` of the paper
    is implicit (about the share of tokens from regulariser samples).

    Defaults: ``target_entropy`` :math:`H^*` = 0.5 (``entropy_base``; 0.75 in the best README
    row), :math:`T_\text{high}` = 1.2, :math:`T_\text{low}` = 0.8, ``max_samples`` = 60,
    ``threshold`` = 0.05, ``resample_fraction`` = 0.25.

    ``temperature`` is the temperature at which the regulariser's log-probs are **scored** in
    ``forward`` (1.0 as in the code); the sampling temperature is the controller's output.

    Forward:
        ``logits (N, T, V)``, ``tokens (N, T)``, ``mask (N, T)``, optional ``advantages (N,)``
        (default +1) -> ``(loss, stats)``; ``stats``: ``entropy`` (sampled-token estimate on
        these samples), ``controller_entropy`` (:math:`H`), ``sampling_temperature``,
        ``target``, ``masked_fraction`` (share of positions that are real tokens).
    """

    entropy: Tensor

    def __init__(
        self,
        target_entropy: float = 0.5,
        t_high: float = 1.2,
        t_low: float = 0.8,
        max_samples: int = 60,
        threshold: float = 0.05,
        resample_fraction: float = 0.25,
        mode: str = "token-mean",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.target = check_number(target_entropy, "target_entropy", low=0.0)
        self.t_high = check_number(t_high, "t_high", low=0.0, low_inclusive=False)
        self.t_low = check_number(t_low, "t_low", low=0.0, low_inclusive=False)
        self.max_samples = check_int(max_samples, "max_samples", low=0)
        self.threshold = check_number(threshold, "threshold")
        self.resample_fraction = check_number(
            resample_fraction, "resample_fraction", low=0.0, high=1.0, low_inclusive=False
        )
        masked_aggregate(torch.zeros(1, 1), None, mode)  # validates the mode
        self.mode = mode
        self.temperature = check_number(temperature, "temperature", low=0.0, low_inclusive=False)
        self.register_buffer("entropy", torch.zeros((), dtype=torch.float64))

    def above_target(self) -> bool:
        """Whether the last entropy estimate exceeds the target (one host sync)."""
        return bool(self.entropy > self.target)

    def sampling_temperature(self) -> float:
        """:math:`T_\\text{high}` if :math:`H \\le H^*` else :math:`T_\\text{low}` (one host sync)."""
        return self.t_low if self.above_target() else self.t_high

    def select(self, rewards: Tensor, group_size: int) -> tuple[Tensor, Tensor]:
        """:func:`build_reinforce_batch` with this controller's cap, threshold and halving."""
        return build_reinforce_batch(
            rewards, group_size, self.max_samples, self.above_target(), self.threshold
        )

    def update(self, logp: Tensor, mask: Tensor | None = None) -> Tensor:
        """Set :math:`H` to the token-mean of ``-logp`` over ``mask`` (the update batch)."""
        check_tensor(logp, "logp", ndim=2, floating=True)
        with torch.no_grad():
            h = masked_aggregate(-logp.detach(), mask, "token-mean")
            self.entropy.copy_(h.double())
        return h

    def forward(
        self,
        logits: Tensor,
        tokens: Tensor,
        mask: Tensor | None = None,
        advantages: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        check_tensor(logits, "logits", ndim=3, floating=True)
        logp = selective_log_softmax(logits, tokens, self.temperature)
        loss = reinforce_loss(logp, mask, advantages, self.mode)
        with torch.no_grad():
            m = torch.ones_like(logp) if mask is None else mask.to(logp.dtype)
            stats = {
                "entropy": masked_aggregate(-logp.detach(), m, "token-mean"),
                "controller_entropy": self.entropy.clone(),
                "sampling_temperature": torch.where(
                    self.entropy > self.target, self.t_low, self.t_high
                ).float(),
                "target": logp.new_full((), self.target),
                "masked_fraction": m.mean() if m.numel() else torch.zeros(()),
            }
        return loss, stats
