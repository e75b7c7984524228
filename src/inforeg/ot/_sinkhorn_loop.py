r"""The one log-domain Sinkhorn loop and the one epsilon schedule of :mod:`inforeg.ot`.

After geomloss's design (``ot/_abstract_solvers/sinkhorn_ot.py::sinkhorn_loop(softmin, ...)`` and
``annealing.py``; J. Feydy, "Geometric data analysis, beyond convolutions", PhD thesis, 2020,
Sec. 3.3): the loop only sees dual potentials and a *softmin*, the soft c-transform of one
geometry,

.. math::
    \mathrm{softmin}(\varepsilon, \text{side}, h)_i
        = -\varepsilon \log \sum_j \exp\big(h_j - C_{ij}/\varepsilon\big),
    \qquad h_j = \log b_j + g_j / \varepsilon,

where ``side`` names the cost block: ``"xy"`` (:math:`C(x_i, y_j)`, gives a potential on
:math:`x` from one on :math:`y`), ``"yx"``, and the self-transport blocks ``"xx"``, ``"yy"``.
Potentials are in cost units, so they carry over unchanged from one temperature to the next.
Three callers supply the geometry:

* :func:`inforeg.ot.sinkhorn`: a dense cost matrix (:class:`MatrixSoftmin`), alternating updates,
  the row-marginal error as stopping rule, and absorbed-kernel blocks near convergence;
* :func:`inforeg.ot.sinkhorn_divergence`: point clouds (its row-blocked ``_softmin``), geomloss's
  symmetric (averaged) updates of :math:`\mathrm{OT}(a, b)` and, with ``debias``, of the
  self-transport problems :math:`\mathrm{OT}(a, a)`, :math:`\mathrm{OT}(b, b)`;
* :func:`inforeg.ot.log_sinkhorn_correspondence`: a dense matrix, a fixed number of alternating
  updates (a constant schedule) with unit marginals.

The loop never differentiates by itself: callers run it under ``torch.no_grad`` (envelope
gradients) or with autograd on (unrolled gradients).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from inforeg.core.checks import check_number, check_positive

Softmin = Callable[[float, str, Tensor], Tensor]
"""``softmin(eps, side, h)``: the soft c-transform above, for ``side`` in xy, yx, xx, yy."""

Block = Callable[[float, Tensor, Tensor, int, float], tuple[bool, Tensor, Tensor, float]]
"""``block(eps, f, g, steps, tol) -> (converged, f, g, error)``: ``steps`` alternating updates by a
faster method with the same fixed point; a non-finite error means the block failed."""


# The most temperatures a schedule may hold: a ratio diameter / blur of 1e300 at scaling 0.5
# needs ~1000; more means a scaling too close to 1 (or a non-finite diameter upstream).
MAX_SCHEDULE_STEPS = 10_000


def epsilon_schedule(p: float, diameter: float, blur: float, scaling: float) -> list[float]:
    r"""geomloss's annealing schedule of temperatures (epsilon-scaling).

    :math:`[\mathrm{diam}^p] + [e^t : t = p\log\mathrm{diam},\ p\log\mathrm{diam} + p\log s,
    \dots > p \log \mathrm{blur}] + [\mathrm{blur}^p]`: the first entry is the temperature of
    the initial step, the middle ones decrease geometrically (in log space) while they exceed
    the target, the last is the target :math:`\mathrm{blur}^p`.
    :func:`inforeg.ot.sinkhorn` uses the middle part with ``p = 1``, ``diameter = max C``,
    ``blur = epsilon`` and ``scaling = epsilon_scaling``.

    Raises:
        ValueError: ``p``, ``diameter`` or ``blur`` not finite and positive, ``scaling`` outside
            (0, 1), or a schedule longer than ``MAX_SCHEDULE_STEPS`` (10 000) temperatures.

    Example:
        >>> [round(e, 6) for e in epsilon_schedule(2, 1.0, 0.25, 0.5)]
        [1.0, 1.0, 0.25, 0.0625]
        >>> [round(e, 6) for e in epsilon_schedule(1, 4.0, 1.0, 0.5)]
        [4.0, 4.0, 2.0, 1.0]
    """
    p = check_positive(p, "p")
    diameter = check_positive(diameter, "diameter")
    blur = check_positive(blur, "blur")
    scaling = check_number(
        scaling, "scaling", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    t, stop, step = p * math.log(diameter), p * math.log(blur), p * math.log(scaling)
    steps = max(0, math.ceil((stop - t) / step))
    if steps > MAX_SCHEDULE_STEPS:
        raise ValueError(
            f"scaling: the schedule from diameter {diameter:g} to blur {blur:g} at scaling "
            f"{scaling:g} would take {steps} temperatures (at most {MAX_SCHEDULE_STEPS})"
        )
    out = [diameter**p]
    while t > stop:
        out.append(math.exp(t))
        t += step
    out.append(blur**p)
    return out


def finite_diameter(diameter: float, fallback: float) -> float:
    """``diameter`` if finite, else ``fallback`` (no annealing).

    A NaN or inf coordinate or cost makes the measured diameter non-finite; under ``"full"``
    checks the inputs were rejected before, otherwise the solver runs (bounded, one temperature)
    and the NaN/inf propagates to the result instead of an unbounded schedule.
    """
    return diameter if math.isfinite(diameter) else fallback


class MatrixSoftmin:
    r"""The softmin of a dense cost matrix ``cost (*batch, n, m)``.

    ``"xy"`` reduces each row of ``cost`` (a potential on its ``n`` rows), ``"yx"`` each column
    (on its ``m`` columns), without transposing the matrix. The kernel :math:`-C/\varepsilon` is
    computed once per temperature and reused by both sides.

    Example:
        >>> sm = MatrixSoftmin(torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64))
        >>> h = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
        >>> round(float(sm(1.0, "xy", h)[0]), 6)  # -log((1 + 1/e) / 2)
        0.379885
    """

    def __init__(self, cost: Tensor) -> None:
        self.cost = cost
        self._eps: float | None = None
        self._kernel = cost

    def kernel(self, eps: float) -> Tensor:
        """``-cost / eps``, cached for the last temperature asked."""
        if eps != self._eps:
            self._kernel = self.cost / (-eps)
            self._eps = eps
        return self._kernel

    def __call__(self, eps: float, side: str, h: Tensor) -> Tensor:
        k = self.kernel(eps)
        if side == "xy":
            return -eps * torch.logsumexp(k + h.unsqueeze(-2), dim=-1)
        return -eps * torch.logsumexp(k + h.unsqueeze(-1), dim=-2)

    def log_plan(self, eps: float, log_a: Tensor, log_b: Tensor, f: Tensor, g: Tensor) -> Tensor:
        """``log P_ij = log a_i + log b_j + (f_i + g_j - C_ij) / eps``."""
        return self.kernel(eps) + (log_a + f / eps).unsqueeze(-1) + (log_b + g / eps).unsqueeze(-2)


class Potentials(NamedTuple):
    r"""Dual potentials in cost units: of :math:`\mathrm{OT}(a, b)` on ``x`` (``f``) and ``y``
    (``g``), and, when debiasing, of :math:`\mathrm{OT}(a, a)` (``f_aa``) and
    :math:`\mathrm{OT}(b, b)` (``g_bb``)."""

    f: Tensor
    g: Tensor
    f_aa: Tensor | None = None
    g_bb: Tensor | None = None


@dataclass
class LoopResult:
    """What :func:`sinkhorn_loop` returns: the potentials, the updates run, and convergence."""

    potentials: Potentials
    n_iter: int
    converged: bool


def _h(log_w: Tensor, pot: Tensor, eps: float) -> Tensor:
    """The softmin's argument ``log w + pot / eps``, in one fused operation (the loop's hot path
    on small problems is the number of tensor operations per update, not their size)."""
    return torch.add(log_w, pot, alpha=1.0 / eps)


def _c_transforms(
    softmin: Softmin, eps: float, log_a: Tensor, log_b: Tensor, pots: Potentials
) -> Potentials:
    """Every potential's c-transform from the current values (one Jacobi step)."""
    f, g, f_aa, g_bb = pots
    return Potentials(
        softmin(eps, "xy", _h(log_b, g, eps)),
        softmin(eps, "yx", _h(log_a, f, eps)),
        None if f_aa is None else softmin(eps, "xx", _h(log_a, f_aa, eps)),
        None if g_bb is None else softmin(eps, "yy", _h(log_b, g_bb, eps)),
    )


def _symmetric_update(
    softmin: Softmin, eps: float, log_a: Tensor, log_b: Tensor, pots: Potentials
) -> Potentials:
    """geomloss's averaged update: each potential moves half-way to its c-transform."""
    new = _c_transforms(softmin, eps, log_a, log_b, pots)
    f, g = 0.5 * (pots.f + new.f), 0.5 * (pots.g + new.g)
    return Potentials(f, g, _halfway(pots.f_aa, new.f_aa), _halfway(pots.g_bb, new.g_bb))


def _halfway(old: Tensor | None, new: Tensor | None) -> Tensor | None:
    return None if old is None or new is None else 0.5 * (old + new)


def _alternating_update(
    softmin: Softmin, eps: float, log_a: Tensor, log_b: Tensor, pots: Potentials
) -> Potentials:
    """POT's ``sinkhorn_log`` order: ``f`` from ``g``, then ``g`` from the new ``f``."""
    f = softmin(eps, "xy", _h(log_b, pots.g, eps))
    return Potentials(f, softmin(eps, "yx", _h(log_a, f, eps)))


def _max_move(old: Potentials, new: Potentials) -> Tensor:
    """Largest change of any potential (sup norm over all entries and the batch)."""
    moves = [(n - o).abs().amax() for n, o in zip(new, old) if n is not None and o is not None]
    return torch.stack(moves).amax()


def sinkhorn_loop(
    softmin: Softmin,
    log_a: Tensor,
    log_b: Tensor,
    eps_list: Sequence[float],
    eps: float,
    *,
    symmetric: bool = False,
    debias: bool = False,
    tol: float | None = None,
    max_iter: int | None = None,
    check_every: int = 10,
    block: Block | None = None,
    block_below: float = 0.0,
) -> LoopResult:
    r"""Log-domain Sinkhorn iterations on the potentials of one or three OT problems.

    Updates:
        * alternating (``symmetric=False``, Gauss-Seidel; POT's ``sinkhorn_log``): from zero
          potentials, :math:`f \leftarrow \mathrm{softmin}_{xy}(\log b + g/\varepsilon)`, then
          :math:`g \leftarrow \mathrm{softmin}_{yx}(\log a + f/\varepsilon)` with the new ``f``;
        * symmetric (``symmetric=True``, geomloss): first one plain Jacobi step at
          ``eps_list[0]`` from zero potentials (the solution at large temperature), then every
          update replaces each potential by the average of its old value and its c-transform of
          the old values; with ``debias`` also for the self-transport potentials ``f_aa``,
          ``g_bb`` (blocks ``"xx"``, ``"yy"``).

    Schedule: one update per temperature of ``eps_list`` (annealing, or a constant list for a
    fixed number of updates), then, only when ``tol`` is set, updates at ``eps`` until the
    stopping rule holds or ``max_iter`` updates have run in all (annealing included; default
    ``len(eps_list)``). The rule is checked every ``check_every`` updates of that phase, one host
    sync per check:

        * alternating: the L1 row-marginal error of the current plan,
          :math:`\max_{\text{batch}} \sum_i a_i |e^{(f_i - f^{\text{new}}_i)/\varepsilon} - 1|`,
          free from the next ``f`` update; at convergence that update is dropped, so the last
          update is a ``g`` update and the column marginals hold to rounding;
        * symmetric: the sup norm of the change of all potentials in one update.

    ``block`` (alternating only): once a check finds the error at most ``block_below``, runs
    of ``check_every`` updates go to ``block`` (e.g. absorbed-kernel scaling iterations), which
    checks ``tol`` itself; the first failed block (non-finite error) turns blocks off.

    Returns:
        :class:`LoopResult` with the final :class:`Potentials`, the number of updates run (the
        initial Jacobi step of the symmetric mode is not counted) and whether ``tol`` was met.

    Example:
        >>> c = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        >>> log_w = torch.log(torch.tensor([0.5, 0.5], dtype=torch.float64))
        >>> sm = MatrixSoftmin(c)
        >>> r = sinkhorn_loop(sm, log_w, log_w, [], 0.5, tol=1e-12, max_iter=100)
        >>> r.converged, r.n_iter  # met at the first check, within the 10th update
        (True, 9)
        >>> plan = sm.log_plan(0.5, log_w, log_w, r.potentials.f, r.potentials.g).exp()
        >>> plan.diagonal()  # 0.5 / (1 + exp(-1 / 0.5))
        tensor([0.4404, 0.4404], dtype=torch.float64)
    """
    if debias and not symmetric:
        raise ValueError("debias: needs symmetric=True (the self-transport updates are averaged)")
    total = len(eps_list) if max_iter is None else max_iter
    zero_a, zero_b = torch.zeros_like(log_a), torch.zeros_like(log_b)
    pots = Potentials(zero_a, zero_b, zero_a if debias else None, zero_b if debias else None)
    if symmetric:
        pots = _c_transforms(softmin, eps_list[0] if eps_list else eps, log_a, log_b, pots)
    update = _symmetric_update if symmetric else _alternating_update

    n_iter = 0
    for e in eps_list:
        if n_iter >= total:
            break
        pots = update(softmin, e, log_a, log_b, pots)
        n_iter += 1
    if tol is None:
        return LoopResult(pots, n_iter, False)

    a = torch.exp(log_a)
    use_block = False
    since_check = 0
    while n_iter < total:
        if use_block and block is not None:
            steps = min(check_every, total - n_iter)
            done, f_blk, g_blk, err_val = block(eps, pots.f, pots.g, steps, tol)
            if math.isfinite(err_val):
                pots = Potentials(f_blk, g_blk)
                n_iter += steps
                if done:
                    return LoopResult(pots, n_iter, True)
                continue
            use_block, block = False, None  # under/overflow: stay in the log domain
        since_check += 1
        check = since_check >= check_every and n_iter > 0
        if symmetric:
            new = _symmetric_update(softmin, eps, log_a, log_b, pots)
            err = _max_move(pots, new) if check else None
            pots = new
            n_iter += 1
        else:
            f_new = softmin(eps, "xy", _h(log_b, pots.g, eps))
            # Row marginal of the current plan: a_i exp((f_i - f_new_i) / eps).
            err = (a * torch.expm1((pots.f - f_new) / eps)).abs().sum(-1).amax() if check else None
        if err is not None:
            since_check = 0
            err_val = float(err.detach())  # host sync, every check_every updates
            if err_val <= tol:
                return LoopResult(pots, n_iter, True)
            use_block = block is not None and err_val <= block_below
        if not symmetric:
            pots = Potentials(f_new, softmin(eps, "yx", _h(log_a, f_new, eps)))
            n_iter += 1
    return LoopResult(pots, n_iter, False)
