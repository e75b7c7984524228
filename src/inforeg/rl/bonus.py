"""The plain entropy bonus of policy-gradient fine-tuning, as a module beside SIREN and EPO.

The bonus is the baseline every entropy control in this family is compared with (A3C, Mnih et
al., 2016, arXiv 1602.01783, used the same term; TRL calls it ``entropy_coef``, verl
``entropy_coeff``).
"""

from __future__ import annotations

from torch import Tensor, nn

from inforeg.core.checks import check_choice, check_number, check_same_shape, check_tensor
from inforeg.core.reduce import AGGREGATION_MODES, masked_aggregate
from inforeg.rl.entropy import token_entropy

__all__ = ["EntropyBonus"]


class EntropyBonus(nn.Module):
    r"""Entropy bonus :math:`-\lambda\,\operatorname{agg}(H)`, added to the policy loss.

    .. math::

        L = -\lambda\,\operatorname{agg}_{t:\,m_t = 1} H_t,\qquad
        H_t = -\sum_v \pi(v \mid s_t)\log\pi(v \mid s_t),\quad
        \pi = \operatorname{softmax}(z_t / T),

    with :math:`H_t` the exact token entropy (:func:`~inforeg.rl.token_entropy`, nats) and
    ``agg`` one of the aggregation modes of :func:`~inforeg.rl.aggregate`. With
    ``mode="token-mean"`` it is TRL's ``entropy_coef`` term (the mean over the active tokens of
    the micro-batch) and verl's ``entropy_coeff`` term under ``loss_agg_mode="token-mean"``.

    Unbounded: a large :math:`\lambda` lets the entropy grow without limit (verl issue #514);
    SIREN and EPO bound it.

    Args:
        coef: :math:`\lambda \ge 0` (0.01).
        mode: aggregation of :math:`H` over the real tokens (``token-mean``).
        temperature: the logits are divided by it (use the sampling temperature).

    Forward:
        ``logits (N, T, V)``, ``mask (N, T)`` -> ``(loss, stats)``; ``stats`` holds detached
        ``entropy`` (token-mean over ``mask``) and ``coefficient``.

    Example (uniform logits over 4 tokens: :math:`H = \log 4`):

        >>> import torch
        >>> loss, stats = EntropyBonus(coef=0.5)(torch.zeros(2, 3, 4))
        >>> print(f"{float(loss):.4f} {float(stats['entropy']):.4f}")
        -0.6931 1.3863
    """

    def __init__(
        self, coef: float = 0.01, mode: str = "token-mean", temperature: float = 1.0
    ) -> None:
        super().__init__()
        self.coef = check_number(coef, "coef", low=0.0)
        check_choice(mode, "mode", AGGREGATION_MODES)
        self.mode = mode
        self.temperature = check_number(temperature, "temperature", low=0.0, low_inclusive=False)

    def forward(
        self, logits: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        check_tensor(logits, "logits", ndim=3, floating=True)
        ent = token_entropy(logits, self.temperature)
        if mask is not None:
            check_tensor(mask, "mask", ndim=2, nonempty=False)
            check_same_shape(ent, mask, "logits[..., 0]", "mask")
        loss = -self.coef * masked_aggregate(ent, mask, self.mode)
        stats = {
            "entropy": masked_aggregate(ent.detach(), mask, "token-mean"),
            "coefficient": ent.new_full((), self.coef),
        }
        return loss, stats
