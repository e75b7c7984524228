"""EPO: entropy-regularised policy optimisation for multi-turn agents (Xu et al., 2025,
arXiv 2509.22576). Official code: ``WujiangXu/EPO`` (a verl-agent fork; ``dp_actor.py``:
``generate_entropy_penalty``, ``_calculate_epoch_based_entropy_weight``).
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from inforeg.core.checks import (
    check_choice,
    check_int,
    check_number,
    check_same_shape,
    check_tensor,
)
from inforeg.core.reduce import masked_aggregate
from inforeg.rl.entropy import token_entropy

__all__ = [
    "EntropySmoothingRegularizer",
    "TurnEntropyHistory",
    "entropy_band_penalty",
    "phase_weight_schedule",
]


def phase_weight_schedule(epoch: float, total_epochs: int = 150) -> float:
    r"""EPO's scheduled ("adaptive" in the paper) phase weight :math:`w(e)`, with :math:`E/2 = h`:

    .. math::

        w(e) = \begin{cases} 1 - 0.2\,(1 - e^{-2e/h}) & e \le h \\
                              0.8\, e^{-3(e-h)/h} & e > h \end{cases}

    Non-increasing; ``w(0) = 1``, ``w(75) = 0.82707``, ``w(76) = 0.76863`` (a small jump at the
    midpoint, as in the code), ``w(150) = 0.03983`` for ``E = 150``:

        >>> [round(phase_weight_schedule(e), 5) for e in (0, 75, 76, 150)]
        [1.0, 0.82707, 0.76863, 0.03983]
    """
    e = check_number(epoch, "epoch", low=0.0)
    total = check_int(total_epochs, "total_epochs", low=1)
    half = total / 2.0
    if e <= half:
        return 1.0 - 0.2 * (1.0 - math.exp(-2.0 * e / half))
    return 0.8 * math.exp(-3.0 * (e - half) / half)


def entropy_band_penalty(
    entropy: Tensor, reference: Tensor, kappa_low: float = 0.0, kappa_high: float = 2.0
) -> Tensor:
    r"""The paper's hinge band around the historical entropy (as corrected in the rebuttal):

    .. math::

        P_t = [\kappa_l \bar H - H_t]_+ + [H_t - \kappa_r \bar H]_+ .

    Zero inside the band, slope -1 below and +1 above. ``kappa_low = 0`` disables the floor
    (the reported runs use ``kappa_low=0, kappa_high=2``). Shapes broadcast.

    Example (band [0.8, 2] around a historical entropy of 1):

        >>> h = torch.tensor([0.5, 1.0, 2.5], dtype=torch.float64)
        >>> [round(v, 4) for v in entropy_band_penalty(h, torch.tensor(1.0), 0.8, 2.0).tolist()]
        [0.3, 0.0, 0.5]
    """
    check_tensor(entropy, "entropy", floating=True)
    check_tensor(reference, "reference", floating=True)
    kl = check_number(kappa_low, "kappa_low", low=0.0)
    kr = check_number(kappa_high, "kappa_high", low=0.0)
    if kr < kl:
        raise ValueError(f"kappa_high: expected a value >= kappa_low ({kl}), got {kr}")
    return torch.relu(kl * reference - entropy) + torch.relu(entropy - kr * reference)


class TurnEntropyHistory(nn.Module):
    r"""Per-turn history of mean rollout entropies: :math:`\bar H_k` = mean over past
    iterations of :math:`h_k` (the mean token entropy of turn ``k`` in one iteration's rollout).

    Stored per turn as a running sum and a count (buffers ``sums``, ``counts`` of length
    ``max_turns``), so turn indices never shift. (The released code left-pads short histories
    with zeros, which shifts turn indices; that is not reproduced.) Turns ``>= max_turns`` are
    ignored. Updating is sync-free.
    """

    sums: Tensor
    counts: Tensor

    def __init__(self, max_turns: int = 50) -> None:
        super().__init__()
        self.max_turns = check_int(max_turns, "max_turns", low=1)
        self.register_buffer("sums", torch.zeros(self.max_turns, dtype=torch.float64))
        self.register_buffer("counts", torch.zeros(self.max_turns, dtype=torch.float64))

    def update(
        self, entropy: Tensor, mask: Tensor | None = None, turn: Tensor | None = None
    ) -> None:
        """Record one iteration: ``entropy (N, T)``, ``mask (N, T)``, ``turn (N,)`` (default 0)."""
        check_tensor(entropy, "entropy", ndim=2, floating=True)
        n = entropy.shape[0]
        m = torch.ones_like(entropy) if mask is None else mask.to(entropy.dtype)
        if mask is not None:
            check_same_shape(entropy, mask, "entropy", "mask")
        tr = _turns(turn, n, entropy.device)
        with torch.no_grad():
            valid = (tr < self.max_turns).to(torch.float64)
            idx = tr.clamp_max(self.max_turns - 1)
            tok_sum = torch.zeros(self.max_turns, dtype=torch.float64, device=entropy.device)
            tok_cnt = torch.zeros_like(tok_sum)
            # where, not a product alone: a NaN entropy at a masked position (all -inf logits
            # there) would otherwise stay in the history for good
            kept = torch.where(m != 0, entropy.detach() * m, 0.0)
            tok_sum.index_add_(0, idx, kept.sum(1).double() * valid)
            tok_cnt.index_add_(0, idx, m.sum(1).double() * valid)
            present = tok_cnt > 0
            self.sums += torch.where(present, tok_sum / tok_cnt.clamp_min(1.0), 0.0)
            self.counts += present.double()

    def reference(self) -> Tensor:
        """``(max_turns,)`` historical means :math:`\\bar H_k` (NaN where no history)."""
        return torch.where(self.counts > 0, self.sums / self.counts.clamp_min(1.0), float("nan"))

    def reset(self) -> None:
        """Forget the history."""
        self.sums.zero_()
        self.counts.zero_()


def _turns(turn: Tensor | None, n: int, device: torch.device) -> Tensor:
    if turn is None:
        return torch.zeros(n, dtype=torch.long, device=device)
    check_tensor(turn, "turn", ndim=1, integer=True)
    if turn.shape[0] != n:
        raise ValueError(f"turn: expected {n} turn indices (one per sample), got {turn.shape[0]}")
    return turn.long().clamp_min(0)


class EntropySmoothingRegularizer(nn.Module):
    r"""EPO's entropy term: a trajectory entropy bonus minus a smoothing penalty that keeps each
    token's entropy inside a band around the turn's historical mean.

    .. math::

        L_\text{EPO} = -\lambda\Big(\operatorname{agg}(H) -
            c_s\operatorname{agg}\big(w(e)\,\alpha P\big)\Big),\qquad
        P_t = [\kappa_l \bar H_{k} - H_t]_+ + [H_t - \kappa_r \bar H_{k}]_+ ,

    added to the PG loss. :math:`H_t` is the exact token entropy, :math:`\bar H_k` the history of
    the sample's turn ``k`` (:class:`TurnEntropyHistory`; samples whose turn has no history get
    no penalty), :math:`w(e)` :func:`phase_weight_schedule` (``phase_weighting=False`` for 1).

    ``penalty="hinge"`` (default) is the paper's differentiable hinge (the authors' intent as
    stated in their rebuttal). ``penalty="indicator"`` reproduces the **released code**, where
    :math:`P` is the constant :math:`\alpha\,\mathbb 1[H_t \notin [\kappa_l\bar H, \kappa_r\bar
    H]]` built from a comparison: it carries no gradient, so the update is plain PG plus
    :math:`\lambda` times the entropy bonus; this mode warns. (The code also applies the term
    only when some sample has turn index ``>= 25``; that gate is not reproduced.)

    Defaults: ``coef`` :math:`\lambda` = 0.001 (``entropy_coeff``), ``smooth_coef`` :math:`c_s`
    = 1.0, :math:`\kappa_l = 0`, :math:`\kappa_r = 2` (the reported runs; config defaults are
    0.8/1.2, the launcher 0.5/1.5), ``out_of_range_penalty`` :math:`\alpha` = 0.05
    (ScienceWorld; 0.1 for ALFWorld), ``max_turns = 50``, ``total_epochs = 150``.

    Call :meth:`record` once per iteration with the rollout's entropies to grow the history
    (the code records the rollout entropies); ``forward`` does not change the history.

    Forward:
        ``logits (N, T, V)``, ``mask (N, T)``, ``turn (N,)`` (default all 0), ``epoch`` ->
        ``(loss, stats)`` with detached ``entropy``, ``masked_fraction`` (share of real tokens
        outside the band), ``anchor`` (mean reference over the batch's samples), ``penalty``,
        ``phase_weight``, ``coefficient``.
    """

    def __init__(
        self,
        coef: float = 0.001,
        smooth_coef: float = 1.0,
        kappa_low: float = 0.0,
        kappa_high: float = 2.0,
        out_of_range_penalty: float = 0.05,
        penalty: str = "hinge",
        phase_weighting: bool = True,
        total_epochs: int = 150,
        max_turns: int = 50,
        mode: str = "token-mean",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.coef = check_number(coef, "coef", low=0.0)
        self.smooth_coef = check_number(smooth_coef, "smooth_coef", low=0.0)
        self.kappa_low = check_number(kappa_low, "kappa_low", low=0.0)
        self.kappa_high = check_number(kappa_high, "kappa_high", low=self.kappa_low)
        self.alpha = check_number(out_of_range_penalty, "out_of_range_penalty", low=0.0)
        check_choice(penalty, "penalty", ("hinge", "indicator"))
        self.penalty = penalty
        if penalty == "indicator":
            warnings.warn(
                "EntropySmoothingRegularizer(penalty='indicator') reproduces the released EPO "
                "code: the smoothing term is a constant without gradient, so the update equals "
                "an entropy bonus alone",
                UserWarning,
                stacklevel=2,
            )
        self.phase_weighting = bool(phase_weighting)
        self.total_epochs = check_int(total_epochs, "total_epochs", low=1)
        masked_aggregate(torch.zeros(1, 1), None, mode)  # validates the mode
        self.mode = mode
        self.temperature = check_number(temperature, "temperature", low=0.0, low_inclusive=False)
        self.history = TurnEntropyHistory(max_turns)

    def record(
        self, logits: Tensor, mask: Tensor | None = None, turn: Tensor | None = None
    ) -> None:
        """Add one iteration's rollout entropies (from ``logits (N, T, V)``) to the history."""
        check_tensor(logits, "logits", ndim=3, floating=True)
        with torch.no_grad():
            self.history.update(token_entropy(logits.detach(), self.temperature), mask, turn)

    def forward(
        self,
        logits: Tensor,
        mask: Tensor | None = None,
        turn: Tensor | None = None,
        epoch: float = 0,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        check_tensor(logits, "logits", ndim=3, floating=True)
        ent = token_entropy(logits, self.temperature)
        n = ent.shape[0]
        if mask is not None:
            check_tensor(mask, "mask", ndim=2, nonempty=False)
            check_same_shape(ent, mask, "logits[..., 0]", "mask")
        m = torch.ones_like(ent) if mask is None else mask.to(ent.dtype)
        tr = _turns(turn, n, ent.device)
        ref_all = self.history.reference().to(ent.dtype)
        ref = ref_all[tr.clamp_max(self.history.max_turns - 1)]
        has_ref = ~torch.isnan(ref) & (tr < self.history.max_turns)
        ref = torch.where(has_ref, ref, 0.0).unsqueeze(1)
        outside = (
            (ent < self.kappa_low * ref) | (ent > self.kappa_high * ref)
        ) & has_ref.unsqueeze(1)
        if self.penalty == "hinge":
            pen = entropy_band_penalty(ent, ref, self.kappa_low, self.kappa_high)
            pen = self.alpha * pen * has_ref.unsqueeze(1).to(ent.dtype)
        else:
            pen = self.alpha * outside.to(ent.dtype)
        w = phase_weight_schedule(epoch, self.total_epochs) if self.phase_weighting else 1.0
        bonus = masked_aggregate(ent, m, self.mode)
        smooth = masked_aggregate(w * pen, m, self.mode)
        loss = -self.coef * (bonus - self.smooth_coef * smooth)
        with torch.no_grad():
            stats = {
                "entropy": masked_aggregate(ent.detach(), m, "token-mean"),
                "masked_fraction": (outside.to(m.dtype) * m).sum() / m.sum().clamp_min(1.0),
                "anchor": ref.squeeze(1).mean(),
                "penalty": smooth.detach(),
                "phase_weight": ent.new_full((), w),
                "coefficient": ent.new_full((), self.coef),
            }
        return loss, stats
