"""PS-KD: progressive self-knowledge distillation.

Kim, Ji, Yoon, Hwang, "Self-Knowledge Distillation with Progressive Refinement of Targets",
ICCV 2021, arXiv:2006.12000. Authors' code: ``lgcnsai/PS-KD-Pytorch``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.core.checks import (
    check_index_range,
    check_int,
    check_labels,
    check_probabilities,
    check_probability,
    check_same_shape,
    check_tensor,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.core.logspace import p_log_q
from inforeg.core.reduce import reduce
from inforeg.core.types import Reduction


def progressive_self_distillation(
    logits: Tensor,
    targets: Tensor,
    past_probs: Tensor,
    alpha: float,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Cross-entropy against the PS-KD soft target.

    .. math::

        \tilde y = (1-\alpha)\,\mathrm{onehot}(y) + \alpha\,\hat p, \qquad
        \ell = -\sum_k \tilde y_k \log \mathrm{softmax}(z)_k
             = (1-\alpha)\,\mathrm{CE}(y, z) + \alpha\, H(\hat p, \mathrm{softmax}(z)),

    where :math:`\hat p` is the model's own prediction for the sample from its previous visit
    (the previous epoch). No temperature is used. The gradient is
    :math:`\partial\ell/\partial z = \mathrm{softmax}(z) - \tilde y`.

    Args:
        logits: (B, K) unnormalised scores.
        targets: (B,) integer labels in [0, K).
        past_probs: (B, K) past predictions (rows on the simplex); treated as constants.
        alpha: weight of the past prediction, in [0, 1]; 0 gives ordinary cross-entropy.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-sample values, shape (B,)).

    Returns:
        The loss, in the dtype of ``logits`` (computed in float32 for half-precision input).

    Example:
        >>> z = torch.tensor([[2.0, 0.0, 0.0]])
        >>> y = torch.tensor([0])
        >>> p = torch.tensor([[0.5, 0.3, 0.2]])
        >>> round(float(progressive_self_distillation(z, y, p, alpha=0.0)), 4)
        0.2395
    """
    check_tensor(logits, "logits", ndim=2, floating=True)
    a = check_probability(alpha, "alpha")
    batch, num_classes = logits.shape
    check_labels(targets, "targets", num_classes, batch)
    check_tensor(past_probs, "past_probs", ndim=2, floating=True)
    check_same_shape(logits, past_probs, "logits", "past_probs")
    check_probabilities(past_probs, "past_probs", dim=1)
    dtype = compute_dtype(logits)
    log_p = F.log_softmax(logits.to(dtype), dim=1)
    soft = past_probs.detach().to(dtype)
    hard_term = -log_p.gather(1, targets.long().unsqueeze(1)).squeeze(1)
    soft_term = -p_log_q(soft, log_p).sum(dim=1)  # masked (-inf) logits: 0 log 0 = 0
    # A zero weight drops its term (0 * inf would be NaN where a masked class carries mass).
    loss = (
        hard_term if a == 0.0 else soft_term if a == 1.0 else (1.0 - a) * hard_term + a * soft_term
    )
    return reduce(loss, reduction).to(logits.dtype)


def pskd_alpha(epoch: int, total_epochs: int, alpha_T: float = 0.8) -> float:
    """``alpha_e = alpha_T * (epoch + 1) / total_epochs`` for a 0-based ``epoch`` (authors' code).

    The paper writes ``alpha_t = alpha_T * t / T`` with t counting from 1; the two agree once the
    code's 0-based epoch is shifted by one.
    """
    check_int(total_epochs, "total_epochs", low=1)
    check_int(epoch, "epoch", low=0, high=total_epochs - 1)
    check_probability(alpha_T, "alpha_T")
    return alpha_T * (epoch + 1) / total_epochs


class ProgressiveSelfDistillation(nn.Module):
    """PS-KD with a per-sample prediction memory.

    The memory ``M`` (``num_samples x num_classes``, float32 buffer) holds, for each dataset index,
    the softmax prediction made the last time that sample was seen in training (from the same
    forward pass that computed the loss, as in the authors' code: "prediction at visit").
    A sample never seen before uses its one-hot label, so epoch 0 is plain cross-entropy, as in
    the code, which sets ``M[idx] <- onehot(y)`` during the first epoch.

    ``alpha`` follows the authors' code, ``alpha_e = alpha_T * (e + 1) / total_epochs`` for
    the 0-based epoch ``e`` set with :meth:`set_epoch`; the paper states ``alpha_T * t / T``.
    The epoch is saved in ``state_dict()`` (extra state) together with the memory, so resuming
    restores both.

    Under DDP, all-gather ``logits``, ``targets`` and ``indices`` (e.g. with
    :func:`inforeg.core.distributed.all_gather_with_grad`) before calling, as the authors do, so
    that every rank's memory sees every update.

    Args:
        num_samples: dataset size N (indices are in [0, N)).
        num_classes: K.
        alpha_T: final weight of the past prediction (paper default 0.8).
        total_epochs: number of training epochs T.
        reduction: reduction of the per-sample loss.
    """

    memory: Tensor
    seen: Tensor

    def __init__(
        self,
        num_samples: int,
        num_classes: int,
        alpha_T: float = 0.8,
        total_epochs: int = 300,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        check_int(num_samples, "num_samples", low=1)
        check_int(num_classes, "num_classes", low=2)
        check_int(total_epochs, "total_epochs", low=1)
        self.alpha_T = check_probability(alpha_T, "alpha_T")
        self.total_epochs = total_epochs
        self.num_classes = num_classes
        self.reduction: Reduction = reduction
        self.epoch = 0
        self.register_buffer("memory", torch.zeros(num_samples, num_classes))
        self.register_buffer("seen", torch.zeros(num_samples, dtype=torch.bool))

    @property
    def alpha(self) -> float:
        """The current ``alpha_e``."""
        return pskd_alpha(self.epoch, self.total_epochs, self.alpha_T)

    def set_epoch(self, epoch: int) -> None:
        """Set the 0-based epoch that determines ``alpha``."""
        check_int(epoch, "epoch", low=0, high=self.total_epochs - 1)
        self.epoch = epoch

    def get_extra_state(self) -> Any:
        return {"epoch": self.epoch}

    def set_extra_state(self, state: Any) -> None:
        self.set_epoch(int(state["epoch"]))

    def soft_targets(self, targets: Tensor, indices: Tensor) -> Tensor:
        """The stored predictions for ``indices``, one-hot labels where none is stored yet."""
        onehot = F.one_hot(targets.long(), self.num_classes).to(self.memory.dtype)
        past = self.memory[indices]
        return torch.where(self.seen[indices].unsqueeze(1), past, onehot)

    def forward(
        self, logits: Tensor, targets: Tensor, indices: Tensor, update_memory: bool = True
    ) -> Tensor:
        """Loss for a batch; then store ``softmax(logits)`` for ``indices`` when ``update_memory``."""
        check_tensor(indices, "indices", ndim=1, integer=True)
        if indices.shape[0] != logits.shape[0]:
            raise ValueError(
                f"indices: expected {logits.shape[0]} indices to match logits, got {indices.shape[0]}"
            )
        check_index_range(indices, "indices", self.memory.shape[0])
        check_labels(targets, "targets", self.num_classes, logits.shape[0])
        past = self.soft_targets(targets, indices).to(logits.device)
        loss = progressive_self_distillation(logits, targets, past, self.alpha, self.reduction)
        if update_memory and self.training:
            with torch.no_grad():
                probs = torch.softmax(logits.detach().float(), dim=1).to(self.memory.dtype)
                self.memory[indices] = probs
                self.seen[indices] = True
        return loss
