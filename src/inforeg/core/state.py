"""Declared states of accumulating estimators (after torchmetrics' ``add_state``).

An estimator that accumulates over batches (``update()`` ... ``compute()``) declares each state
with its cross-rank reduction. ``"sum"``/``"mean"``: a buffer (follows ``.to()``, saved by
``state_dict()``), reduced by one ``all_reduce``. ``"cat"``: a list of tensors, one per
``update()``, concatenated along dim 0 in rank order by :func:`all_gather_with_grad` (uneven
sizes padded; one extra gather of the sizes, a host sync); it also follows ``.to()`` and is
saved by ``state_dict()`` as one tensor (module extra state). A ``"cat"`` state costs memory
proportional to every row kept, on every rank after the gather: statistics that are not sums
over batches (U-statistics, spectra, k-NN) need it.

>>> acc = Accumulator()
>>> acc.add_state("total", "sum", torch.zeros(())); acc.add_state("rows", "cat")
>>> for x in (torch.tensor([1.0, 2.0]), torch.tensor([6.0])):
...     acc.total += x.sum(); acc.rows.append(x)
>>> acc.synced("total") / acc.synced("rows").shape[0]
tensor(3.)
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn

from inforeg.core.distributed import all_gather_with_grad, world_size

StateReduction = Literal["sum", "mean", "cat"]


class Accumulator(nn.Module):
    """Base for modules with declared states: :meth:`add_state`, :meth:`synced`, :meth:`reset`."""

    def __init__(self) -> None:
        super().__init__()
        self._reductions: dict[str, StateReduction] = {}
        self._defaults: dict[str, Tensor] = {}

    def add_state(self, name: str, reduce: StateReduction, default: Tensor | None = None) -> None:
        """Declare ``name``: a buffer starting at ``default`` (sum/mean) or an empty list (cat)."""
        if reduce not in ("sum", "mean", "cat"):
            raise ValueError(f"reduce: expected 'sum', 'mean' or 'cat', got {reduce!r}")
        self._reductions[name] = reduce
        if reduce == "cat":
            setattr(self, name, [])
            return
        if default is None:
            raise ValueError(f"default: a {reduce!r} state needs a default tensor")
        self._defaults[name] = default.detach().clone()
        self.register_buffer(name, default.detach().clone())

    def reset(self) -> None:
        """Every state back to its default (cat states: empty)."""
        for name, reduce in self._reductions.items():
            if reduce == "cat":
                setattr(self, name, [])
            else:
                getattr(self, name).copy_(self._defaults[name])

    def synced(self, name: str) -> Tensor:
        """State ``name`` reduced over the ranks (the local state outside torch.distributed)."""
        value = getattr(self, name)
        if self._reductions[name] == "cat":
            if not value:
                raise ValueError(f"{type(self).__name__}: compute() called before any update()")
            return all_gather_with_grad(torch.cat(value))
        ranks = world_size()
        if ranks == 1:
            return value
        out = value.clone()
        dist.all_reduce(out)
        return out / ranks if self._reductions[name] == "mean" else out

    def get_extra_state(self) -> dict[str, Tensor | None]:
        return {
            n: torch.cat(getattr(self, n)) if getattr(self, n) else None
            for n, r in self._reductions.items()
            if r == "cat"
        }

    def set_extra_state(self, state: Any) -> None:
        for name, value in state.items():
            setattr(self, name, [] if value is None else [value])

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        super()._apply(fn, *args, **kwargs)
        for name, reduce in self._reductions.items():
            if reduce == "cat":
                setattr(self, name, [fn(t) for t in getattr(self, name)])
        return self
