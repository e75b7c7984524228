"""L-BFGS over a batch of independent problems, each with its own history and line search.

``torch.optim.LBFGS`` sees a batch as one problem in all of its variables: one curvature history,
one step length and one stopping test for the sum of the objectives. A problem's answer then
depends on which other problems share its batch. That matters little where each objective has
one smooth optimum, but the sparse OT objectives have kinks (the top-k set changes), and there
the coupled run stopped elsewhere: 63 of 64 batched 20 x 15 plans at k = 2 differed from their
one-at-a-time solves by up to 0.034. Here every problem keeps its own pairs ``(s, y)``, step,
line search, restarts and stopping tests.

The algorithm is the one torch's L-BFGS runs (its constants, safeguards and stopping tests), so
that a batch of one takes torch's steps: the two-loop product (here in its compact form), a
first step of ``min(1, 1/|g|_1)``, and a strong Wolfe line search with cubic interpolation
(Nocedal and Wright, "Numerical Optimization", 2nd ed., algorithms 3.5 and 3.6). The product's
rounding differs from torch's, so at a kink a long run may later take the other side of a tie.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

_ARMIJO = 1e-4  # sufficient decrease: f(x + t d) <= f(x) + _ARMIJO * t * g'd
_WOLFE = 0.9  # curvature: |g(x + t d)'d| <= _WOLFE * |g'd|
_TRIALS = 25  # evaluations per line search after the first (torch's max_ls)
_CURVATURE_MIN = 1e-10  # a pair (s, y) enters the history only if s'y exceeds this

Objective = Callable[[Tensor], tuple[Tensor, Tensor]]


def batched_lbfgs(
    fun: Objective,
    x0: Tensor,
    max_iter: int,
    tol: float,
    change_tol: Tensor | float,
    history_size: int = 10,
    restarts: int = 0,
) -> tuple[Tensor, int]:
    """Minimise each row of ``fun`` from ``x0`` (``(B, d)``) independently.

    ``fun(x)`` returns the objectives ``(B,)`` and their gradients ``(B, d)``. A problem stops at
    ``max|grad| <= tol``; after ``max_iter`` iterations in all; or, once its ``restarts`` fresh
    starts (a cleared history, from where it stands) are used up, when an iteration changes its
    objective or its variables by less than ``change_tol`` (a scalar or one value per problem) or
    a run spends ``2 * (the iterations left)`` evaluations. A problem whose start is not finite
    stops at once. Returns the minimisers and the most iterations any problem took.
    """
    batch, size = x0.shape
    hist = max(int(history_size), 1)
    dev = x0.device
    x = x0.clone()
    f, g = fun(x)
    change = torch.as_tensor(change_tol, dtype=x.dtype, device=dev).expand(batch)
    s_hist = x.new_zeros(batch, hist, size)
    y_hist = x.new_zeros(batch, hist, size)
    count = torch.zeros(batch, dtype=torch.long, device=dev)  # pairs stored (ring position)
    scale = x.new_ones(batch)  # s'y / y'y of the newest pair
    first = torch.ones(batch, dtype=torch.bool, device=dev)  # first iteration of a run
    # Evaluations in this run (its start counts one) and its budget: twice the iterations left
    # when it began.
    evals = torch.ones(batch, dtype=torch.long, device=dev)
    budget = torch.full((batch,), 2 * max_iter, dtype=torch.long, device=dev)
    restarts_left = torch.full((batch,), int(restarts), dtype=torch.long, device=dev)
    done = ~(torch.isfinite(f) & torch.isfinite(g).all(-1)) | (g.abs().amax(-1) <= tol)
    iters = torch.zeros(batch, dtype=torch.long, device=dev)
    rows = torch.arange(batch, device=dev)
    unit = torch.ones_like(f)
    any_first = True
    for it in range(max_iter):
        all_done, any_first = torch.stack([done.all(), first.any()]).tolist()  # host sync
        if all_done:  # once per iteration, as torch's L-BFGS syncs at least
            break
        active = ~done
        d = _direction(g, s_hist, y_hist, count, scale)
        t0 = unit
        if any_first:  # a run's first step: steepest descent, at most 1/|g|_1 long
            d = torch.where(first.unsqueeze(-1), -g, d)
            t0 = torch.where(first, (1.0 / g.abs().sum(-1)).clamp(max=1.0), unit)
        gtd = (g * d).sum(-1)
        descends = gtd <= -change  # torch's L-BFGS stops where g'd > -change_tol
        step = _line_search(fun, x, f, g, d, gtd, t0, active & descends, change)
        iters = iters + active.long()
        evals = evals + step.evals
        moved = step.t.unsqueeze(-1) * d  # 0 where the line search did not run (t = 0)
        y = step.g - g
        sy = (moved * y).sum(-1)
        store = active & (sy > _CURVATURE_MIN)
        slot = count % hist
        keep = store.unsqueeze(-1)
        s_hist[rows, slot] = torch.where(keep, moved, s_hist[rows, slot])
        y_hist[rows, slot] = torch.where(keep, y, y_hist[rows, slot])
        count = count + store.long()
        scale = torch.where(store, sy / (y * y).sum(-1).where(store, 1.0), scale)
        stalled = (
            ~descends
            | (evals >= budget)
            | (moved.abs().amax(-1) <= change)
            | ((step.f - f).abs() < change)
        )
        converged = step.g.abs().amax(-1) <= tol
        x, f, g = x + moved, step.f, step.g
        if restarts:
            restart = active & stalled & ~converged & (restarts_left > 0)
            stalled = stalled & ~restart
            restarts_left = restarts_left - restart.long()
            count = count.where(~restart, 0)
            scale = scale.where(~restart, 1.0)
            evals = evals.where(~restart, 1)
            budget = budget.where(~restart, 2 * (max_iter - it - 1))
            first = restart
        else:
            first = torch.zeros_like(first)
        done = done | (active & (converged | stalled))
    return x, int(iters.max()) if batch else 0


def _direction(g: Tensor, s_hist: Tensor, y_hist: Tensor, count: Tensor, scale: Tensor) -> Tensor:
    """``-H g`` for each problem's L-BFGS matrix ``H`` over its stored pairs.

    ``H`` in the compact form of Byrd, Nocedal and Schnabel (1994), with the pairs oldest first,
    ``R`` the upper triangle of ``S'Y``, ``D`` its diagonal, ``c`` the scale and
    ``w = R^{-1} S'g``: ``H g = c g + S R^{-T}((D + c Y'Y) w - c Y'g) - c Y w``, the two-loop
    recursion's product in a fixed number of batched operations. An empty slot has
    ``s = y = 0`` and a unit diagonal in ``R``, so it contributes nothing."""
    hist = s_hist.shape[1]
    pos = torch.arange(hist, device=g.device)
    kept = count.clamp(max=hist).unsqueeze(-1)
    order = (count.unsqueeze(-1) - kept + pos) % hist  # oldest first; empty slots at the end
    present = pos < kept
    mask = present.unsqueeze(-1).to(g.dtype)
    s_mat = torch.gather(s_hist, 1, order.unsqueeze(-1).expand_as(s_hist)) * mask
    y_mat = torch.gather(y_hist, 1, order.unsqueeze(-1).expand_as(y_hist)) * mask
    sy = s_mat @ y_mat.transpose(-2, -1)
    r = torch.triu(sy) + torch.diag_embed((~present).to(g.dtype))
    c = scale.unsqueeze(-1)
    sg = s_mat @ g.unsqueeze(-1)
    yg = y_mat @ g.unsqueeze(-1)
    w = torch.linalg.solve_triangular(r, sg, upper=True)
    inner = torch.diagonal(sy, dim1=-2, dim2=-1).unsqueeze(-1) * w
    inner = inner + c.unsqueeze(-1) * (y_mat @ (y_mat.transpose(-2, -1) @ w) - yg)
    top = torch.linalg.solve_triangular(r.transpose(-2, -1), inner, upper=False)
    hg = c * g + (s_mat.transpose(-2, -1) @ top).squeeze(-1)
    return -(hg - c * (y_mat.transpose(-2, -1) @ w).squeeze(-1))


class _Step(NamedTuple):
    t: Tensor  # the step length taken (0: none)
    f: Tensor  # the objective there
    g: Tensor  # the gradient there
    evals: Tensor  # evaluations the search spent on this problem


def _cubic_min(
    t1: Tensor, f1: Tensor, d1: Tensor, t2: Tensor, f2: Tensor, d2: Tensor, lo: Tensor, hi: Tensor
) -> Tensor:
    """The minimiser of the cubic through ``(t, f, slope)`` at ``t1`` and ``t2`` (Nocedal and
    Wright, eq. 3.59) clamped to ``[lo, hi]``; the middle of ``[lo, hi]`` where it has none."""
    e1 = d1 + d2 - 3.0 * (f1 - f2) / (t1 - t2)
    disc = e1 * e1 - d1 * d2
    e2 = disc.clamp_min(0.0).sqrt()
    t = torch.where(
        t1 <= t2,
        t2 - (t2 - t1) * ((d2 + e2 - e1) / (d2 - d1 + 2.0 * e2)),
        t1 - (t1 - t2) * ((d1 + e2 - e1) / (d1 - d2 + 2.0 * e2)),
    )
    ok = (disc >= 0) & torch.isfinite(t)
    return torch.where(ok, torch.minimum(torch.maximum(t, lo), hi), 0.5 * (lo + hi))


def _pick(cond: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``a`` where ``cond`` (one flag per problem), else ``b``."""
    return torch.where(cond.view(-1, *([1] * (a.dim() - 1))), a, b)


class _Point(NamedTuple):
    """A trial along the search line: step, objective, gradient, slope ``g'd``."""

    t: Tensor
    f: Tensor
    g: Tensor
    s: Tensor

    def where(self, cond: Tensor, other: _Point) -> _Point:
        return _Point(*(_pick(cond, u, v) for u, v in zip(self, other)))


def _line_search(
    fun: Objective,
    x: Tensor,
    f: Tensor,
    g: Tensor,
    d: Tensor,
    gtd: Tensor,
    t0: Tensor,
    search: Tensor,
    change_tol: Tensor,
) -> _Step:
    """A strong Wolfe step along ``d`` from ``t0`` for each problem where ``search``.

    Bracketing (algorithm 3.5): a trial that breaks Armijo's decrease, or (from the third trial)
    is no lower than the previous one, or whose slope is no longer negative, brackets a step with
    the previous trial; one that meets both conditions is the step; otherwise the next trial is
    the cubic's minimiser within ``[t + (t - t_prev) / 100, 10 t]``. Zoom (algorithm 3.6): the
    bracket keeps a low end (Armijo's decrease, the lowest objective) and a high end; the next
    trial is the cubic through both, moved a tenth of the bracket inside when two trials in a row
    fall that close to an end. It ends at a Wolfe step, after ``_TRIALS`` more evaluations, or
    when the bracket is narrower than ``change_tol`` in the largest variable; the step is then the
    low end (possibly ``t = 0``)."""
    start = _Point(torch.zeros_like(t0), f, g, gtd)
    t = t0.where(search, 0.0)
    ft, gt = fun(x + t.unsqueeze(-1) * d)
    cur = _Point(t, ft, gt, (gt * d).sum(-1))
    evals = search.long()
    first_ok = (cur.f <= f + _ARMIJO * t * gtd) & (cur.s.abs() <= -_WOLFE * gtd)
    if bool((first_ok | ~search).all()):  # host sync; the usual case: the first trial is a step
        return _Step(t, cur.f.where(search, f), _pick(search, cur.g, g), evals)
    bracketing, zooming, found = search.clone(), torch.zeros_like(search), torch.zeros_like(search)
    prev, low, high = start, start, start
    insufficient = torch.zeros_like(search)
    d_max = d.abs().amax(-1)
    any_bracketing, any_zooming = True, False  # which phases have problems (host copies)
    for trial in range(_TRIALS + 1):
        finite = torch.isfinite(cur.f) & torch.isfinite(cur.s)
        cur = cur._replace(f=cur.f.where(finite, torch.inf), s=cur.s.where(finite, torch.inf))
        armijo = cur.f <= f + _ARMIJO * cur.t * gtd
        wolfe = cur.s.abs() <= -_WOLFE * gtd
        bracketed = torch.zeros_like(search)
        if any_zooming:
            # Zoom: the trial becomes the high end, or the low end (the old low end first becomes
            # the high end where the trial's slope points back past it).
            z_high = zooming & (~armijo | (cur.f >= low.f))
            z_low = zooming & ~z_high
            z_found = z_low & wolfe
            flip = z_low & ~z_found & (cur.s * (high.t - low.t) >= 0)
            high = low.where(flip, cur.where(z_high, high))
            low = cur.where(z_low, low)
            swap = z_high & (high.f < low.f)
            low, high = high.where(swap, low), low.where(swap, high)
            found = found | z_found
        if any_bracketing:
            over = bracketing & (~armijo | ((trial > 1) & (cur.f >= prev.f)))
            b_found = bracketing & ~over & wolfe
            rising = bracketing & ~over & ~b_found & (cur.s >= 0)
            bracketed = over | rising
            prev_low = prev.f <= cur.f  # ties keep the earlier trial low, as torch does
            low = prev.where(bracketed & prev_low, cur.where(bracketed | b_found, low))
            high = cur.where(bracketed & prev_low, prev.where(bracketed, high))
            found = found | b_found
            bracketing = bracketing & ~bracketed & ~b_found
        zooming = (zooming | bracketed) & ~found
        zooming = zooming & ((high.t - low.t).abs() * d_max >= change_tol)
        any_bracketing, any_zooming = torch.stack([bracketing.any(), zooming.any()]).tolist()
        if trial == _TRIALS or not (any_bracketing or any_zooming):  # host sync above
            break
        # Next trials: extrapolation while bracketing, the safeguarded cubic while zooming.
        t = cur.t
        if any_zooming:
            small, large = torch.minimum(low.t, high.t), torch.maximum(low.t, high.t)
            inner = _cubic_min(low.t, low.f, low.s, high.t, high.f, high.s, small, large)
            margin = 0.1 * (large - small)
            near = torch.minimum(large - inner, inner - small) < margin
            push = near & (insufficient | (inner >= large) | (inner <= small))
            to_large = (inner - large).abs() < (inner - small).abs()
            inner = torch.where(push, torch.where(to_large, large - margin, small + margin), inner)
            insufficient = torch.where(zooming, near & ~push, insufficient)
            t = torch.where(zooming, inner, t)
        if any_bracketing:
            lo_bound, hi_bound = cur.t + 0.01 * (cur.t - prev.t), 10 * cur.t
            grow = _cubic_min(prev.t, prev.f, prev.s, cur.t, cur.f, cur.s, lo_bound, hi_bound)
            t = torch.where(bracketing, grow, t)
            prev = cur.where(bracketing, prev)
        live = bracketing | zooming
        evals = evals + live.long()
        ft, gt = fun(x + t.unsqueeze(-1) * d)
        cur = cur.where(~live, _Point(t, ft, gt, (gt * d).sum(-1)))
    # Out of trials while bracketing: the bracket is (0, the last trial).
    last = start.where(start.f <= cur.f, cur)
    low = last.where(bracketing, low)
    return _Step(low.t.where(search, 0.0), low.f.where(search, f), _pick(search, low.g, g), evals)
