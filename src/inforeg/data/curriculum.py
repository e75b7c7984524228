r"""Difficulty-adaptive entropy curriculum (after RDTF), as a ``torch.utils.data`` batch sampler.

Yuan et al., "RDTF: Resource-efficient Dual-mask Training Framework for Multi-frame Animated
Sticker Generation", arXiv 2503.17735 (2025). The paper's abstract describes a sample "entropy"
(difficulty) made of a static part and an adaptive part, and training that moves from easy to
difficult samples. No code was released and the method section could not be read. What could be
read (v1's figure captions and tables, as rendered by ``deep-diver/ai-paper-reviewer``) shows that
the paper's curriculum is not the one below: its difficulty is set by the task (interpolation,
prediction, generation) and the masked-frame length (Fig. 4), and its "difficulty-adaptive
curriculum" has gains named :math:`K_p = 5, K_i = 3, K_d = 1.3` (Table 6), apparently a PID-style
controller. **This module is inforeg's per-sample curriculum after RDTF's idea**, chosen to be
simple and exactly testable:

.. math::

    d_i = (1-\lambda)\,\mathrm{rank}(s)_i + \lambda\,\mathrm{rank}(a)_i, \qquad
    c(t) = \min\Bigl(1, \sqrt{c_0^2 + (1 - c_0^2)\,t/T}\Bigr),

with :math:`s_i` a given static difficulty (e.g. :func:`static_entropy`), :math:`a_i` an EMA of
sample i's training loss, ranks scaled to [0, 1] (ties share their average rank), and at step t
the :math:`\lceil c(t) N\rceil` samples of smallest :math:`d` eligible for the batch. The root
pacing :math:`c(t)` is Platanios et al.'s competence function (NAACL 2019, arXiv 1903.09848), not
RDTF's; :math:`c_0`, :math:`\lambda` and the EMA weight are inforeg's choices.

>>> curriculum_competence(0, 100), round(curriculum_competence(50, 100) ** 2, 12), curriculum_competence(150, 100)
(0.2, 0.52, 1.0)
>>> static_entropy(torch.tensor([[0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 1.0]]), bins=4).tolist()
[1.0, 0.0]
>>> sampler = EntropyCurriculumSampler(torch.arange(10.0), batch_size=2, warmup_steps=10, lam=0.0)
>>> sampler.eligible(0).tolist(), sampler.eligible(10).shape[0]
([0, 1], 10)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

from inforeg.core.checks import (
    check_finite,
    check_int,
    check_number,
    check_same_length,
    check_tensor,
)
from inforeg.core.dtypes import compute_dtype

__all__ = ["EntropyCurriculumSampler", "curriculum_competence", "static_entropy"]


def curriculum_competence(step: float, warmup_steps: float, c0: float = 0.2) -> float:
    r"""Root competence schedule: the fraction of the data (easiest first) available at ``step``.

    .. math::

        c(t) = \min\Bigl(1, \sqrt{c_0^2 + (1 - c_0^2)\,t / T}\Bigr), \qquad c(0) = c_0,\quad
        c(t \ge T) = 1.

    Args:
        step: t >= 0. warmup_steps: T > 0, the step at which everything is available (default in
            the experiments: half of training). c0: the initial fraction in (0, 1] (default 0.2).
    """
    t = check_number(step, "step", low=0.0)
    horizon = check_number(warmup_steps, "warmup_steps", low=0.0, low_inclusive=False)
    c0 = check_number(c0, "c0", low=0.0, high=1.0, low_inclusive=False)
    if math.isinf(t) or t >= horizon:
        return 1.0
    if t == 0.0:
        return c0
    return min(1.0, math.sqrt(c0 * c0 + (1.0 - c0 * c0) * t / horizon))


def static_entropy(
    x: Tensor, bins: int = 16, value_range: tuple[float, float] | None = None
) -> Tensor:
    r"""Normalised histogram entropy of each sample's values, in [0, 1].

    .. math::

        s_i = -\frac{1}{\log B}\sum_{b=1}^{B} p_{ib}\log p_{ib},\qquad
        p_{ib} = \frac{\#\{j : x_{ij} \in \text{bin } b\}}{D},

    with B equal-width bins over ``value_range`` (default: the global min and max of ``x``). The
    top edge belongs to the last bin, and values outside ``value_range`` count in the nearest end
    bin. A constant sample has entropy 0; one value per bin gives 1. No host synchronisation.

    Args:
        x: (N, ...) samples (any numeric dtype); each sample's D values are histogrammed.
        bins: B >= 2 (default 16).
        value_range: ``(low, high)`` with low < high, or None for the data's range.

    Returns:
        (N,) tensor, float (``x``'s compute dtype; the default dtype for integer ``x``).
    """
    check_tensor(x, "x", min_ndim=1)
    bins = check_int(bins, "bins", low=2)
    dtype = compute_dtype(x) if x.is_floating_point() else torch.get_default_dtype()
    values = x.reshape(x.shape[0], -1).to(dtype)
    if values.shape[1] == 0:
        raise ValueError(f"x: expected at least one value per sample, got shape {tuple(x.shape)}")
    if value_range is None:
        low, high = values.min(), values.max()
    else:
        if not isinstance(value_range, (tuple, list)) or len(value_range) != 2:
            raise TypeError(f"value_range: expected a pair (low, high), got {value_range!r}")
        lo = check_number(value_range[0], "value_range[0]")
        hi = check_number(value_range[1], "value_range[1]")
        if not hi > lo:
            raise ValueError(f"value_range: expected low < high, got ({lo}, {hi})")
        low = torch.tensor(lo, dtype=dtype, device=x.device)
        high = torch.tensor(hi, dtype=dtype, device=x.device)
    width = high - low
    scale = torch.where(width > 0, bins / torch.where(width > 0, width, 1.0), 0.0)
    index = ((values - low) * scale).floor().clamp(0, bins - 1).long()
    counts = torch.zeros(values.shape[0], bins, dtype=dtype, device=x.device)
    counts.scatter_add_(1, index, torch.ones_like(values))
    p = counts / values.shape[1]
    return torch.special.xlogy(p, p.reciprocal()).sum(1) / math.log(bins)  # 0, not -0, at p = 1


def _average_ranks(v: Tensor) -> Tensor:
    """Ranks of ``v`` scaled to [0, 1] (rank / (N - 1)); tied values share their average rank."""
    n = v.shape[0]
    _, inverse, counts = torch.unique(v, sorted=True, return_inverse=True, return_counts=True)
    start = torch.cumsum(counts, 0) - counts
    average = start.to(torch.float64) + (counts.to(torch.float64) - 1.0) / 2.0
    return average[inverse] / max(n - 1, 1)


def _step_seed(seed: int, step: int) -> int:
    """A well-mixed torch seed from (seed, step), so batch ``step`` does not depend on history."""
    state = np.random.SeedSequence([seed, step]).generate_state(1, np.uint64)[0]
    return int(state) & (2**63 - 1)


class EntropyCurriculumSampler(Sampler[list[int]]):
    r"""Easy-to-difficult batch sampler with a static and an adaptive (loss-based) difficulty.

    Difficulty :math:`d_i = (1-\lambda)\,\mathrm{rank}(s)_i + \lambda\,\mathrm{rank}(a)_i`; the
    adaptive part is an EMA of each sample's loss, :math:`a_i \leftarrow \mathrm{ema}\cdot a_i +
    (1-\mathrm{ema})\,\ell`, with :math:`a_i = \ell` at the first observation and 0 before. At step
    t the eligible set is the :math:`\lceil c(t) N\rceil` samples of smallest :math:`d` (ties by
    index; :func:`curriculum_competence` with T = ``warmup_steps``), and the batch is drawn
    uniformly from it without replacement (with replacement when it holds fewer samples than the
    batch). The formulas are inforeg's design (see the module docstring; UNVERIFIED).

    Use it as a DataLoader **batch sampler**: ``DataLoader(dataset, batch_sampler=sampler)``. Each
    pass yields ``steps_per_epoch`` batches (default :math:`\lceil N / \text{batch\_size}\rceil`)
    and advances :attr:`step`; after the forward pass call ``sampler.update(indices, losses)``
    with the batch's per-sample losses. Batch ``t`` is drawn from a generator seeded by
    ``(seed, t)``, so it depends only on the seed, the step and the difficulty state: two samplers
    with one seed and the same updates give identical batches, and resuming from
    :meth:`state_dict` continues the same sequence. With worker processes the loader asks for
    batches a few steps ahead (``num_workers * prefetch_factor``), so updates reach the sampler
    that many steps late.

    Distributed training (``DistributedSampler``-style sharding): give every rank the same
    ``seed``, the **global** ``batch_size`` (a multiple of ``num_replicas``) and its ``rank``; all
    ranks draw the same global batch and rank r keeps ``batch[r::num_replicas]``. To keep the
    adaptive part identical on every rank, all-gather the (indices, losses) of the step and call
    :meth:`update` with the gathered tensors on every rank (with ``lam=0`` no communication is
    needed). Use :meth:`set_epoch` as with ``DistributedSampler`` when the epoch is known.

    Defaults: c0 = 0.2, lam = 0.5, ema = 0.9 (T = half of training in the experiments).

    Args:
        static_difficulty: (N,) static difficulty :math:`s` (higher = harder).
        batch_size: global batch size >= 1.
        warmup_steps: T >= 1, the step at which every sample is eligible.
        c0: initial competence in (0, 1]. lam: weight of the adaptive part in [0, 1].
        ema: EMA factor in [0, 1). seed: base seed of the batch generators.
        steps_per_epoch: batches per pass (default ceil(N / batch_size)).
        num_replicas, rank: sharding for distributed training (default one process).
    """

    def __init__(
        self,
        static_difficulty: Tensor | Sequence[float],
        batch_size: int,
        warmup_steps: int,
        c0: float = 0.2,
        lam: float = 0.5,
        ema: float = 0.9,
        seed: int = 0,
        *,
        steps_per_epoch: int | None = None,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if not isinstance(static_difficulty, Tensor):
            static_difficulty = torch.as_tensor(static_difficulty, dtype=torch.float64)
        check_tensor(static_difficulty, "static_difficulty", ndim=1)
        static = static_difficulty.detach().to("cpu", torch.float64)
        check_finite(static, "static_difficulty")
        self.num_samples = static.shape[0]
        self.batch_size = check_int(batch_size, "batch_size", low=1)
        self.warmup_steps = check_int(warmup_steps, "warmup_steps", low=1)
        self.c0 = check_number(c0, "c0", low=0.0, high=1.0, low_inclusive=False)
        self.lam = check_number(lam, "lam", low=0.0, high=1.0)
        self.ema = check_number(ema, "ema", low=0.0, high=1.0, high_inclusive=False)
        self.seed = check_int(seed, "seed", low=0)
        self.num_replicas = check_int(num_replicas, "num_replicas", low=1)
        self.rank = check_int(rank, "rank", low=0, high=self.num_replicas - 1)
        if self.batch_size % self.num_replicas:
            raise ValueError(
                f"batch_size: expected a multiple of num_replicas = {self.num_replicas} "
                f"(the global batch is split evenly), got {self.batch_size}"
            )
        if steps_per_epoch is None:
            steps_per_epoch = -(-self.num_samples // self.batch_size)
        self.steps_per_epoch = check_int(steps_per_epoch, "steps_per_epoch", low=1)
        self._static_rank = _average_ranks(static)
        self._adaptive = torch.zeros(self.num_samples, dtype=torch.float64)
        self._seen = torch.zeros(self.num_samples, dtype=torch.bool)
        self.step = 0

    # -- difficulty and pacing -------------------------------------------------------------
    def difficulty(self) -> Tensor:
        """Current difficulty :math:`d` (float64, (N,)), in [0, 1]."""
        if self.lam == 0.0:
            return self._static_rank.clone()
        adaptive_rank = _average_ranks(self._adaptive)
        return (1.0 - self.lam) * self._static_rank + self.lam * adaptive_rank

    def competence(self, step: int) -> float:
        """:func:`curriculum_competence` at ``step`` with this sampler's T and c0."""
        return curriculum_competence(step, self.warmup_steps, self.c0)

    def eligible(self, step: int) -> Tensor:
        """Indices of the :math:`\\lceil c(t) N\\rceil` easiest samples, easiest first (long, CPU).

        The product :math:`c(t)N` is rounded up after removing 1e-9 of float rounding.
        """
        step = check_int(step, "step", low=0)
        k = math.ceil(self.competence(step) * self.num_samples - 1e-9)
        k = min(self.num_samples, max(1, k))
        order = torch.sort(self.difficulty(), stable=True).indices
        return order[:k]

    def sample(self, step: int) -> Tensor:
        """The global batch of step ``step`` (long, (batch_size,), CPU), the same on every rank."""
        pool = self.eligible(step)
        g = torch.Generator().manual_seed(_step_seed(self.seed, step))
        if pool.shape[0] >= self.batch_size:
            pick = torch.randperm(pool.shape[0], generator=g)[: self.batch_size]
        else:
            pick = torch.randint(pool.shape[0], (self.batch_size,), generator=g)
        return pool[pick]

    # -- adaptive part ---------------------------------------------------------------------
    def update(self, indices: Tensor, losses: Tensor) -> None:
        """Fold per-sample losses into the EMA (one device-to-host copy per call).

        Args:
            indices: (B,) dataset indices in [0, N) (repeats are applied in order).
            losses: (B,) per-sample losses, finite.
        """
        check_tensor(indices, "indices", ndim=1, integer=True)
        check_tensor(losses, "losses", ndim=1, floating=True)
        check_same_length(indices, losses, "indices", "losses")
        idx = indices.detach().to("cpu", torch.long)
        loss = losses.detach().to("cpu", torch.float64)
        check_finite(loss, "losses")
        if bool((idx < 0).any()) or bool((idx >= self.num_samples).any()):
            raise ValueError(
                f"indices: expected values in [0, {self.num_samples}), got "
                f"[{int(idx.min())}, {int(idx.max())}]"
            )
        if torch.unique(idx).shape[0] == idx.shape[0]:
            self._update_unique(idx, loss)
        else:
            for i, value in zip(idx.tolist(), loss.tolist()):
                self._update_unique(torch.tensor([i]), torch.tensor([value], dtype=torch.float64))

    def _update_unique(self, idx: Tensor, loss: Tensor) -> None:
        seen = self._seen[idx]
        old = self._adaptive[idx]
        self._adaptive[idx] = torch.where(seen, self.ema * old + (1.0 - self.ema) * loss, loss)
        self._seen[idx] = True

    # -- Sampler protocol ------------------------------------------------------------------
    def __len__(self) -> int:
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps_per_epoch):
            batch = self.sample(self.step)
            self.step += 1
            yield batch[self.rank :: self.num_replicas].tolist()

    def set_epoch(self, epoch: int) -> None:
        """Start the next pass at step ``epoch * steps_per_epoch`` (as ``DistributedSampler``)."""
        self.step = check_int(epoch, "epoch", low=0) * self.steps_per_epoch

    def state_dict(self) -> dict[str, Any]:
        """The mutable state (step, EMA of losses, seen flags) for checkpointing."""
        return {"step": self.step, "adaptive": self._adaptive.clone(), "seen": self._seen.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (sizes must match)."""
        for key in ("adaptive", "seen"):
            if tuple(state[key].shape) != (self.num_samples,):
                raise ValueError(
                    f"state: expected {key} of shape ({self.num_samples},), "
                    f"got {tuple(state[key].shape)}"
                )
        self.step = check_int(state["step"], "state['step']", low=0)
        self._adaptive = state["adaptive"].to("cpu", torch.float64).clone()
        self._seen = state["seen"].to("cpu", torch.bool).clone()
