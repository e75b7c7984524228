"""Dual and semi-dual of regularised OT (quadratic, entropic, sparsity-constrained) in torch.

Shared by :mod:`inforeg.ot.smooth` and :mod:`inforeg.ot.sparse`. Layout: problems are handled in
the transposed layout ``(*batch, m, n)`` so that each *column* ``j`` of the plan (one target) is a
contiguous last-axis vector over the ``n`` sources. Solvers: a semismooth Newton method for the
quadratic (optionally top-k) semi-dual (:func:`_newton_semi_dual`), L-BFGS otherwise (entropy,
the dual) and as the fallback: :func:`inforeg.ot._lbfgs.batched_lbfgs`, torch's algorithm with a
history and line search per problem, so that no problem's result depends on its batch.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from inforeg.core.threads import intra_op_threads
from inforeg.ot._common import OTResult
from inforeg.ot._lbfgs import batched_lbfgs

Reg = Literal["l2", "entropy", "sparse"]
Formulation = Literal["dual", "semi_dual"]


class _Problem(NamedTuple):
    """One (batched) regularised OT problem in the transposed layout: weights ``a``
    ``(*batch, n)`` and ``b`` ``(*batch, m)``, cost ``ct`` ``(*batch, m, n)``, regulariser
    ``reg`` with strength ``gamma`` and at most ``k`` non-zeros per column (``k >= n``: none),
    and the formulation maximised."""

    a: Tensor
    b: Tensor
    ct: Tensor
    gamma: float
    reg: Reg
    k: int
    formulation: Formulation


def sparse_simplex_projection(z: Tensor, k: int) -> Tensor:
    """Project each last-axis vector of ``z`` onto the simplex with at most ``k`` non-zeros.

    Keep the ``k`` largest entries, project them onto the simplex (sort, cumulative sums,
    threshold), zero the rest (Kyrillidis et al., ICML 2013). ``k >= z.shape[-1]`` is the plain
    simplex projection. Ties among the k-th largest are broken by ``torch.topk``.

    Example:
        The top two entries 0.9 and 0.5 are shifted by the same 0.2 to sum to one.

        >>> sparse_simplex_projection(torch.tensor([0.5, 0.2, 0.9, 0.1]), 2)
        tensor([0.3000, 0.0000, 0.7000, 0.0000])
    """
    n = z.shape[-1]
    kk = min(k, n)
    if kk == n:
        u, idx = torch.sort(z, dim=-1, descending=True)
    else:
        u, idx = torch.topk(z, kk, dim=-1, largest=True, sorted=True)
    css = torch.cumsum(u, -1) - 1.0
    ind = torch.arange(1, kk + 1, dtype=z.dtype, device=z.device)
    cond = (u - css / ind) > 0
    rho = cond.sum(-1, keepdim=True).clamp_min(1)
    theta = torch.gather(css, -1, rho - 1) / rho.to(z.dtype)
    w = (u - theta).clamp_min(0.0)
    return torch.zeros_like(z).scatter(-1, idx, w)


def _topk_mask_values(s: Tensor, k: int) -> tuple[Tensor, Tensor | None]:
    """Top-k values of the last axis (and their indices); all of them when ``k >= n``."""
    n = s.shape[-1]
    if k >= n:
        return s, None
    vals, idx = torch.topk(s, k, dim=-1, largest=True, sorted=False)
    return vals, idx


def delta_and_grad(s: Tensor, gamma: float, reg: Reg, k: int) -> tuple[Tensor, Tensor]:
    r"""Conjugate ``delta(s)`` summed over the last axis, and its gradient (the plan column).

    Example:
        Quadratic conjugate :math:`\|[s]_+\|^2 / (2\gamma)` at ``gamma = 0.5``: ``(1 + 0.25) / 1``.

        >>> delta_and_grad(torch.tensor([1.0, -2.0, 0.5]), 0.5, "l2", 3)
        (tensor(1.2500), tensor([2., 0., 1.]))
    """
    if reg == "entropy":
        grad = torch.exp(s / gamma - 1.0)
        return gamma * grad.sum(-1), grad
    vals, idx = _topk_mask_values(s, k)
    pos = vals.clamp_min(0.0)
    val = (pos * pos).sum(-1) / (2.0 * gamma)
    g = pos / gamma
    if idx is not None:
        g = torch.zeros_like(s).scatter(-1, idx, g)
    return val, g


def _nonzero(b: Tensor) -> Tensor:
    """``b`` with zeros replaced by 1: a finite scale for columns whose plan is 0 anyway."""
    return torch.where(b == 0, 1.0, b)


class _XLogX(torch.autograd.Function):
    """``x log x`` (0 at 0) with the derivative ``log x + 1`` (-inf at 0; xlogy's is 0 there)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return torch.special.xlogy(x, x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (torch.log(x) + 1.0)


def max_omega_and_grad(
    x: Tensor, bj: Tensor, gamma: float, reg: Reg, k: int
) -> tuple[Tensor, Tensor]:
    """``max_Omega_j(x_j)`` over the last axis (``bj`` shape ``(*batch, m)``) and ``G_j``."""
    if reg == "entropy":
        lse = torch.logsumexp(x / gamma, dim=-1)
        val = gamma * (lse - torch.log(bj))
        return val, torch.softmax(x / gamma, dim=-1)
    # A zero-weight column has no plan (t_j = b_j G_j = 0): any finite scale keeps G_j finite.
    g = sparse_simplex_projection(x / (_nonzero(bj) * gamma).unsqueeze(-1), k)
    val = (x * g).sum(-1) - 0.5 * gamma * bj * (g * g).sum(-1)
    return val, g


def _semi_dual_l2(
    alpha: Tensor,
    a: Tensor,
    b: Tensor,
    ct: Tensor,
    gamma: float,
    k: int,
    cand: tuple[Tensor, Tensor] | None = None,
    top: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    r"""Semi-dual of quadratic OT with at most ``k`` non-zeros per column (``k >= n``: none).

    Returns the objective :math:`a\cdot\alpha - \sum_j b_j \max\Omega_j(\alpha - c_j)`, its
    gradient :math:`a - \sum_j b_j G_j`, each column's ``min(k, n)`` largest entries of
    :math:`x_j = \alpha - c_j` as indices ``idx`` (sorted by decreasing value) with the values of
    :math:`G_j = P_k(x_j / (b_j\gamma))` there, shape ``(*batch, m, min(k, n))`` (``G_j`` is
    non-increasing along the last axis, so its support is a prefix of ``idx``), and per column
    the level ``max(k-th largest x, support threshold)`` below which an entry does not matter.
    With ``cand = (cidx, ccost)`` only the candidate sources ``cidx`` (``(*batch, m, K)``, cost
    ``ccost``) of each column are looked at: exact as long as every other entry is below
    that level (the caller checks). ``top = (values, indices)``: the candidates' entries of
    :math:`x_j` already sorted by decreasing value (as the screening's selection leaves them),
    so no gather and no selection are needed.
    """
    n = alpha.shape[-1]
    if top is not None:
        kk = min(k, top[0].shape[-1])
        xs, idx = top[0][..., :kk], top[1][..., :kk]
    else:
        if cand is None:
            x = alpha.unsqueeze(-2) - ct
        else:
            cidx, ccost = cand
            x = torch.gather(alpha.unsqueeze(-2).expand(*cidx.shape[:-1], n), -1, cidx) - ccost
        kk = min(k, x.shape[-1])
        if kk == x.shape[-1]:
            xs, idx = torch.sort(x, dim=-1, descending=True)
        else:
            xs, idx = torch.topk(x, kk, dim=-1, largest=True, sorted=True)
        if cand is not None:
            idx = torch.gather(cand[0], -1, idx)
    scale = (_nonzero(b) * gamma).unsqueeze(-1)  # zero-weight columns: see max_omega_and_grad
    u = xs / scale
    css = torch.cumsum(u, -1) - 1.0
    ind = torch.arange(1, kk + 1, dtype=xs.dtype, device=xs.device)
    rho = ((u - css / ind) > 0).sum(-1, keepdim=True).clamp_min(1)
    theta = torch.gather(css, -1, rho - 1) / rho.to(xs.dtype)
    w = (u - theta).clamp_min(0.0)
    val = (xs * w).sum(-1) - 0.5 * gamma * b * (w * w).sum(-1)
    obj = (a * alpha).sum(-1) - (b * val).sum(-1)
    row = torch.zeros_like(alpha).scatter_add_(
        -1, idx.flatten(-2), (w * b.unsqueeze(-1)).flatten(-2)
    )
    level = (theta * scale).squeeze(-1)
    if kk == min(k, n):  # else the candidates cut the selection short: only the threshold counts
        level = torch.maximum(xs[..., -1], level)
    return obj, a - row, idx, w, level


def _objective(
    params: Tensor, problem: _Problem, want_plan: bool = False
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Dual objective (to maximise) per problem, its gradient, and (optionally) the plan
    (transposed). With ``k < n`` only the top-k entries of each column are touched after the
    selection, so an evaluation costs one pass over the cost plus the selection."""
    a, b, ct, gamma, reg, k, formulation = problem
    n = a.shape[-1]
    alpha = params[..., :n]
    sparse = reg != "entropy" and k < n
    if formulation == "dual":
        beta = params[..., n:]
        s = alpha.unsqueeze(-2) + beta.unsqueeze(-1) - ct  # (*batch, m, n)
        if sparse:
            vals, idx = torch.topk(s, k, dim=-1, largest=True, sorted=False)
            pos = vals.clamp_min(0.0)
            tv = pos / gamma
            obj = (a * alpha).sum(-1) + (b * beta).sum(-1) - (pos * pos).sum((-2, -1)) / (2 * gamma)
            row = torch.zeros_like(alpha).scatter_add_(-1, idx.flatten(-2), tv.flatten(-2))
            grad = torch.cat([a - row, b - tv.sum(-1)], -1)
            plan_t = torch.zeros_like(s).scatter(-1, idx, tv) if want_plan else None
            return obj, grad, plan_t
        val, plan_t = delta_and_grad(s, gamma, reg, k)
        obj = (a * alpha).sum(-1) + (b * beta).sum(-1) - val.sum(-1)
        grad = torch.cat([a - plan_t.sum(-2), b - plan_t.sum(-1)], -1)
        return obj, grad, plan_t
    if reg != "entropy":
        obj, grad, idx, tv, _ = _semi_dual_l2(alpha, a, b, ct, gamma, k)
        plan_t = torch.zeros_like(ct).scatter(-1, idx, tv * b.unsqueeze(-1)) if want_plan else None
        return obj, grad, plan_t
    x = alpha.unsqueeze(-2) - ct
    val, g = max_omega_and_grad(x, b, gamma, reg, k)
    plan_t = g * b.unsqueeze(-1)
    # b_j max_Omega_j -> 0 as b_j -> 0 (max_Omega_j = +inf there: the -gamma log b_j term).
    obj = (a * alpha).sum(-1) - torch.where(b == 0, 0.0, b * val).sum(-1)
    grad = a - plan_t.sum(-2)
    return obj, grad, plan_t


# Semismooth Newton on the quadratic semi-dual (see ``_newton_semi_dual``).
_NEWTON_DENSE_MAX_N = 512  # dense Cholesky up to this many sources, conjugate gradients above
_STAGE_FACTOR = 4.0  # continuation: gamma divided by this between stages
_STAGE_WIDTH = 1.0 / 32  # first stage: b_j * gamma ~ this fraction of the cost range
_STAGE_TOL = 0.3  # intermediate stages stop at max |grad| <= this * max(a)
_NU_START = 1.0
_NU_GRAD = 1.0
_NU_STAGE = 1.0  # damping floor at the start of a stage (the pattern changes a lot there)
_NU_STALL = 1e5  # damping at which a problem counts as stalled (a kink of the top-k selection)
_STALL_WINDOW = 5  # stalled: over this many iterations, the objective gained <= _STALL_FTOL *
_STALL_FTOL = 1e-9  # max(|obj|, max|C| sum(a)) and max|grad| fell by less than half
_STALL_MISFITS = 3  # or after this many steps in a row whose gain had the model's wrong sign
_STAGE_MAX_ITER = 20  # iteration cap of an intermediate stage
_HESS_SCATTER_MAX_WIDTH = 16  # dense Hessian: scatter m |S|^2 entries up to here, else P'P
_CG_MAX_ITER = 300
# A predicted gain below this many ulps of the objective cannot be measured (the achieved gain
# is a difference of two rounded objectives). It was 1e3: in float32 that is 1.2e-4 relative,
# so real progress counted as noise, every step was rejected and the Newton solver stalled
# (row-marginal error 2.6e-3 where L-BFGS reaches 4e-6).
_ROUNDOFF = 10.0
_SCREEN_ROWS = 16
_POLISH_RESTARTS = 0
# The polish after a stall stops when an iteration changes the objective by less than this
# times max|C| sum(a) (POT's L-BFGS-B stops at a relative change of 1e-9, ftol = stopThr): at
# a kink the gains are tiny. At n = 300, k = 5 (4 problems) the polish took 6, 4, 5, 1 instead of 10, 5, 9, 17
# iterations with 1e-12, for objective losses of at most 6.3e-10.
_POLISH_FTOL = 1e-10
_CG_RTOL = 1e-3
_ALTERNATING_STEPS = 2  # block-coordinate rounds before the first stage (see ``_alternate``)


def _hess_support(idx: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Active entries of each column (``G_j > 0``, a prefix of ``idx``), truncated to the longest
    support; returns ``(idx, act, cnt)`` with ``act`` the 0/1 mask and ``cnt = |S_j|``."""
    act = w > 0
    width = max(int(act.sum(-1).amax()), 1)  # host sync
    act_f = act[..., :width].to(w.dtype)
    return idx[..., :width], act_f, act_f.sum(-1, keepdim=True).clamp_min(1.0)


def _hess_mv(v: Tensor, idx: Tensor, act: Tensor, cnt: Tensor) -> Tensor:
    r""":math:`L v` with :math:`L = \sum_j (I_{S_j} - 1_{S_j}1_{S_j}^\top/|S_j|)`: one gather and one
    scatter over the ``m * |S|`` active entries."""
    m, n = idx.shape[-2], v.shape[-1]
    vg = torch.gather(v.unsqueeze(-2).expand(*v.shape[:-1], m, n), -1, idx)
    t = act * (vg - (vg * act).sum(-1, keepdim=True) / cnt)
    return torch.zeros_like(v).scatter_add_(-1, idx.flatten(-2), t.flatten(-2))


def _hess_dense(idx: Tensor, act: Tensor, cnt: Tensor, n: int) -> Tensor:
    """Dense ``L`` (``(*batch, n, n)``): per column the ``|S|^2`` entries of its rank-one term."""
    batch, (m, s) = idx.shape[:-2], idx.shape[-2:]
    nb = int(torch.tensor(batch).prod()) if batch else 1
    if s <= _HESS_SCATTER_MAX_WIDTH:
        i2 = idx.reshape(nb, m, s)
        off = (torch.arange(nb, device=idx.device) * (n * n)).view(nb, 1, 1, 1)
        flat = off + i2.unsqueeze(-1) * n + i2.unsqueeze(-2)
        vals = (act.unsqueeze(-1) * act.unsqueeze(-2) / cnt.unsqueeze(-1)).reshape(-1)
        mat = torch.zeros(nb * n * n, dtype=act.dtype, device=act.device)
        mat.scatter_add_(0, flat.reshape(-1), -vals)
        mat = mat.view(*batch, n, n)
    else:
        p = torch.zeros(*batch, m, n, dtype=act.dtype, device=act.device)
        p.scatter_(-1, idx, act / cnt.sqrt())
        mat = -(p.transpose(-2, -1) @ p)
    count = torch.zeros(*batch, n, dtype=act.dtype, device=act.device)
    count.scatter_add_(-1, idx.flatten(-2), act.flatten(-2))
    mat.diagonal(dim1=-2, dim2=-1).add_(count)
    return mat


def _cg(
    mv: Callable[[Tensor], Tensor], rhs: Tensor, diag: Tensor, max_iter: int, rtol: float
) -> Tensor:
    """Jacobi-preconditioned conjugate gradients for a batch of SPD systems (last axis); checks
    the residuals on the host every 10 iterations."""
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = r / diag
    p = z.clone()
    rz = (r * z).sum(-1, keepdim=True)
    stop = rtol * rhs.norm(dim=-1, keepdim=True)
    for i in range(max_iter):
        ap = mv(p)
        pap = (p * ap).sum(-1, keepdim=True)
        step = torch.where(pap > 0, rz / pap.clamp_min(torch.finfo(rhs.dtype).tiny), 0.0)
        x = x + step * p
        r = r - step * ap
        if i % 10 == 9 and bool((r.norm(dim=-1, keepdim=True) <= stop).all()):
            break
        z = r / diag
        rz_new = (r * z).sum(-1, keepdim=True)
        p = z + torch.where(rz > 0, rz_new / rz.clamp_min(torch.finfo(rhs.dtype).tiny), 0.0) * p
        rz = rz_new
    return x


def _newton_direction(idx: Tensor, act: Tensor, cnt: Tensor, rhs: Tensor, nu: Tensor) -> Tensor:
    """Solve ``(L + nu I) d = rhs``: dense Cholesky for small ``n``, CG above."""
    n = rhs.shape[-1]
    nu_ = nu.unsqueeze(-1)
    if n <= _NEWTON_DENSE_MAX_N:
        mat = _hess_dense(idx, act, cnt, n)
        mat.diagonal(dim1=-2, dim2=-1).add_(nu_)
        chol, info = torch.linalg.cholesky_ex(mat)
        d = torch.cholesky_solve(rhs.unsqueeze(-1), chol).squeeze(-1)
        # Where rounding made a factorisation fail: a scaled gradient step (no host sync).
        bad = (info != 0) | ~torch.isfinite(d).all(-1)
        return torch.where(bad.unsqueeze(-1), rhs / mat.diagonal(dim1=-2, dim2=-1), d)
    count = torch.zeros_like(rhs).scatter_add_(-1, idx.flatten(-2), act.flatten(-2))
    own = torch.zeros_like(rhs).scatter_add_(-1, idx.flatten(-2), (act / cnt).flatten(-2))
    diag = count - own + nu_
    return _cg(lambda v: _hess_mv(v, idx, act, cnt) + nu_ * v, rhs, diag, _CG_MAX_ITER, _CG_RTOL)


def _gamma_schedule(b: Tensor, ct: Tensor, gamma: float) -> list[float]:
    """Continuation: ``gamma * 4**s`` down to ``gamma``, starting where the support width
    ``mean(b) * gamma`` is about 1/32 of the cost range."""
    width = float((ct.amax((-2, -1)) - ct.amin((-2, -1))).amax()) * _STAGE_WIDTH
    bmean = float(b.mean())
    out = [gamma]
    if not (math.isfinite(width) and math.isfinite(bmean) and bmean > 0):
        return out  # NaN/inf costs or weights (unchecked below "full"): no continuation
    while out[-1] * _STAGE_FACTOR * bmean <= width:
        out.append(out[-1] * _STAGE_FACTOR)
    return out[::-1]


class _Screen:
    """Candidate screening for the semi-dual evaluations: per column, the ``K`` largest entries
    of ``alpha0 - c_j`` at a reference ``alpha0`` and the largest value left out (``bound``).

    At ``alpha`` a left-out entry of row ``i`` is at most ``bound + alpha_i - alpha0_i``. The
    evaluation on the candidates is exact when every left-out entry is below the column's level
    (k-th largest entry or support threshold, from :func:`_semi_dual_l2`): checked exactly for
    the ``_SCREEN_ROWS`` rows that moved most (their entries against all columns), and through
    ``bound`` plus the next largest move for the others. An evaluation then costs ``O(m K)``
    instead of ``O(m n)``. Otherwise the candidates are recomputed at ``alpha`` (``K`` doubled
    when fresh ones already fail); right after a recomputation the evaluation reuses its sorted
    selection, and exactness is just ``bound <= level``."""

    def __init__(self, ct: Tensor, kk: int) -> None:
        self.ct = ct
        self.size = max(4 * kk, 32)
        self.cand: tuple[Tensor, Tensor] | None = None
        self.member = ct.new_zeros((), dtype=torch.bool)
        self.bound = ct.new_zeros(())
        self.alpha0 = ct.new_zeros(())
        self.rebuilds = 0
        self.stale = False
        self.top: tuple[Tensor, Tensor] | None = None

    def _rebuild(self, alpha: Tensor) -> None:
        self.rebuilds += 1
        n = alpha.shape[-1]
        if self.size >= n:
            self.cand = None
            return
        x = alpha.unsqueeze(-2) - self.ct
        vals, cidx = torch.topk(x, self.size + 1, dim=-1, largest=True, sorted=True)
        self.bound = vals[..., -1]
        self.top = (vals[..., :-1], cidx[..., :-1])
        cidx = cidx[..., :-1].contiguous()
        self.cand = (cidx, torch.gather(self.ct, -1, cidx))
        self.member = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
        self.member.scatter_(-1, cidx, True)
        self.alpha0 = alpha

    def _valid(self, alpha: Tensor, level: Tensor) -> bool:
        shift = alpha - self.alpha0
        r = min(_SCREEN_ROWS, shift.shape[-1] - 1)
        top, rows = torch.topk(shift, r + 1, dim=-1, sorted=True)
        ok = self.bound + top[..., -1:] <= level  # rows other than the r that moved most
        m = level.shape[-1]
        rows_r = rows[..., :r].unsqueeze(-2).expand(*rows.shape[:-1], m, r)
        x_r = torch.gather(alpha, -1, rows[..., :r]).unsqueeze(-2) - torch.gather(
            self.ct, -1, rows_r
        )
        out = (x_r <= level.unsqueeze(-1)) | torch.gather(self.member, -1, rows_r)
        return bool((ok & out.all(-1)).all())  # host sync

    def evaluate(
        self, alpha: Tensor, a: Tensor, b: Tensor, gamma: float, k: int
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        fresh = False
        if self.stale and self.cand is not None:
            # The previous evaluation needed new candidates (the potentials move a lot, as early
            # in a stage): the old ones would most likely fail again, so skip that try.
            self._rebuild(alpha)
            fresh = True
        self.stale = False
        while True:
            if self.cand is None and self.rebuilds > 0:
                return _semi_dual_l2(alpha, a, b, self.ct, gamma, k)[:4]
            if self.cand is not None and fresh:
                # Just rebuilt at this alpha: the selection is already sorted, and every
                # left-out entry is at most ``bound``.
                obj, g, idx, w, level = _semi_dual_l2(
                    alpha, a, b, self.ct, gamma, k, self.cand, self.top
                )
                if bool((self.bound <= level).all()):  # host sync
                    return obj, g, idx, w
                self.size *= 2
            elif self.cand is not None:
                obj, g, idx, w, level = _semi_dual_l2(alpha, a, b, self.ct, gamma, k, self.cand)
                if self._valid(alpha, level):
                    return obj, g, idx, w
            self._rebuild(alpha)
            fresh = self.stale = True


def _threshold(y: Tensor, total: Tensor, dim: int, width: int) -> Tensor:
    """``tau`` with ``sum((y - tau)_+) = total`` along ``dim`` (``total > 0``), from the
    ``width`` largest entries when the support fits in them (else ``width`` doubles)."""
    size = y.shape[dim]
    while True:
        if width < size:
            ys = torch.topk(y, width + 1, dim=dim, largest=True, sorted=True).values
        else:
            ys = torch.sort(y, dim=dim, descending=True).values
        ys = ys.movedim(dim, -1)
        css = torch.cumsum(ys, -1) - total.unsqueeze(-1)
        ind = torch.arange(1, ys.shape[-1] + 1, dtype=y.dtype, device=y.device)
        rho = ((ys - css / ind) > 0).sum(-1, keepdim=True).clamp_min(1)
        if width >= size or not bool((rho > width).any()):  # host sync
            return (torch.gather(css, -1, rho - 1) / rho.to(y.dtype)).squeeze(-1)
        width *= 2  # the support may be wider than the selection


def _alternate(
    alpha: Tensor, a: Tensor, b: Tensor, ct: Tensor, gamma: float, steps: int, width: int
) -> Tensor:
    r"""Block-coordinate ascent on the quadratic OT dual (no top-k), ``steps`` rounds.

    The dual :math:`a\cdot\alpha + b\cdot\beta - \sum_{ij}(\alpha_i + \beta_j - c_{ij})_+^2/(2\gamma)`
    is maximised exactly in :math:`\beta` for fixed :math:`\alpha`
    (:math:`\sum_i(\alpha_i + \beta_j - c_{ij})_+ = \gamma b_j`, a simplex-projection
    threshold per column) and then in :math:`\alpha` for fixed :math:`\beta` (the same per
    row): the quadratic analogue of a Sinkhorn iteration, two thresholds per round. A cheap
    start for the first continuation stage, which otherwise spends many (partly rejected) Newton
    steps far from its optimum. ``width``: support size the top-``width`` selection assumes.
    """
    for _ in range(steps):
        beta = -_threshold(alpha.unsqueeze(-2) - ct, gamma * b, -1, width)
        alpha = -_threshold(beta.unsqueeze(-1) - ct, gamma * a, -2, width)
    return alpha


def _pad_last(t: Tensor, width: int) -> Tensor:
    """Zero-pad the last axis to ``width`` (zero weights are inactive entries)."""
    return torch.nn.functional.pad(t, (0, width - t.shape[-1]))


def _newton_semi_dual(
    a: Tensor, b: Tensor, ct: Tensor, gamma: float, k: int, max_iter: int, tol: float
) -> tuple[Tensor, int, Tensor, _Screen]:
    r"""Maximise the quadratic (top-k) semi-dual by a damped semismooth Newton method.

    :math:`F(\alpha) = a\cdot\alpha - \sum_j b_j\max\Omega_j(\alpha - c_j)` is concave and
    piecewise quadratic, with :math:`\nabla F = a - \sum_j b_j G_j`. On the support
    :math:`S_j` of :math:`G_j` (fixed top-k set), :math:`\partial G_j/\partial x =
    (I_{S_j} - 1_{S_j}1_{S_j}^\top/|S_j|)/(b_j\gamma)`, so a generalised Hessian is
    :math:`-L/\gamma` with the graph-Laplacian-like
    :math:`L = \mathrm{diag}(\#\{j: i\in S_j\}) - \sum_j 1_{S_j}1_{S_j}^\top/|S_j|`
    (PSD, :math:`1` in its null space: :math:`F` is invariant to :math:`\alpha + c1` when
    :math:`\sum a = \sum b`).

    Step: :math:`(L + \nu I)\,d = \gamma\nabla F` (dense Cholesky for ``n <= 512``, else
    Jacobi-preconditioned conjugate gradients with :math:`O(m|S|)` products, relative residual
    1e-3). Levenberg-Marquardt damping: the step is taken when the gain is more than 1e-4 of the
    model's :math:`\nabla F\cdot d - d^\top L d/(2\gamma)` (near the optimum, where gains drown
    in rounding, when it shrinks the largest gradient entry); :math:`\nu` is divided by 4 when
    the ratio exceeds 0.75, multiplied by 4 below 0.25, and after a very successful step capped
    by :math:`\max|\nabla F|/\max a`. Stop when :math:`\max|\nabla F| \le` ``tol``.

    Globalisation: continuation in ``gamma`` (``gamma * 4**s``, from where
    :math:`\bar b\gamma` is 1/32 of the cost range, down to ``gamma``); earlier stages solve
    plain quadratic OT (k = n, smooth) to :math:`\max|\nabla F| \le 0.3\max a` (at most 20
    iterations each) and warm-start the next; the first starts from
    :math:`\alpha_i = \min_j c_{ij}`, for ``n <= 512`` improved by two rounds of
    block-coordinate ascent on the first stage's full dual (:func:`_alternate`; about 10% fewer
    Newton iterations and 20% fewer candidate rebuilds over 8 random n = 300 problems).
    Evaluations only look at screened candidates (:class:`_Screen`). With ``k`` active the objective has kinks (top-k ties) where no gradient
    vanishes: a problem is "stalled" when, while some column has ``k`` non-zeros, its objective
    gained less than 1e-9 (relative) over 5 iterations without halving its gradient, or 3 steps
    in a row lost objective although the model predicted a gain (:math:`\rho < 0`: the quadratic
    model fails even as the damping grows), or when its damping exceeds 1e5. Its best point is
    returned and the caller runs L-BFGS from there (a few iterations, stopping at a relative
    objective change of 1e-10).

    Returns ``(alpha, iterations, stalled, screen)``; batches are solved together (per-problem damping,
    acceptance and stopping).
    """
    n = a.shape[-1]
    batch = a.shape[:-1]
    eps = torch.finfo(a.dtype).eps
    nu_min = 1e3 * eps
    schedule = _gamma_schedule(b, ct, gamma)
    screen = _Screen(ct, min(k, n))
    # Start from alpha_i = min_j c_ij (every source then has value 0 in its cheapest column),
    # improved by a few block-coordinate rounds on the first stage's plain quadratic dual where
    # the dense path runs. At n = 5000 (CG path, first-stage supports wider than 40 sources)
    # the rounds cost more than they saved: 11.3 s and 104 iterations vs 10.7 s and 94.
    alpha = ct.amin(-2)
    if n <= _NEWTON_DENSE_MAX_N:
        alpha = _alternate(alpha, a, b, ct, schedule[0], _ALTERNATING_STEPS, screen.size)
    nu = torch.full(batch, _NU_START, dtype=a.dtype, device=a.device)
    stalled = torch.zeros(batch, dtype=torch.bool, device=a.device)
    n_iter = 0
    scale = ct.abs().amax((-2, -1)) * a.sum(-1)
    amax = a.amax(-1)
    for stage, gs in enumerate(schedule):
        last = stage == len(schedule) - 1
        stop_at = torch.full_like(nu, tol) if last else _STAGE_TOL * a.amax(-1)
        # Earlier stages solve plain quadratic OT (k = n): smooth, so Newton converges there.
        ks = k if last else n
        obj, g, idx, w = screen.evaluate(alpha, a, b, gs, ks)
        nu = nu.clamp_min(_NU_STAGE)
        live = torch.ones(batch, dtype=torch.bool, device=a.device)
        stalled = torch.zeros_like(live)
        hist: list[tuple[Tensor, Tensor]] = []
        good = torch.zeros_like(live)
        misfits = torch.zeros(batch, dtype=torch.int64, device=a.device)
        stage_iter = 0
        while n_iter < max_iter and (last or stage_iter < _STAGE_MAX_ITER):
            gmax = g.abs().amax(-1)
            live = live & (gmax > stop_at)
            hist.append((obj, gmax))
            if len(hist) > _STALL_WINDOW:
                obj_w, gmax_w = hist.pop(0)
                newly = live & (obj - obj_w <= _STALL_FTOL * torch.maximum(obj.abs(), scale))
                newly = newly & (gmax > 0.5 * gmax_w)
                if ks < n:  # only a column with k non-zeros can sit at a kink of the top-k
                    newly = newly & (w[..., ks - 1] > 0).any(-1)
                else:
                    newly = newly & False
                stalled = stalled | newly
                live = live & ~newly
            if not bool(live.any()):  # host sync
                break
            n_iter += 1
            stage_iter += 1
            idx_s, act, cnt = _hess_support(idx, w)
            rhs = torch.where(live.unsqueeze(-1), gs * g, 0.0)
            # After a very successful step the damping is also capped by the gradient (relative
            # to the marginal): Levenberg's choice, which makes the local convergence fast.
            nu_eff = torch.where(good, torch.minimum(nu, _NU_GRAD * gmax / amax), nu)
            nu_eff = nu_eff.clamp_min(nu_min)
            d = _newton_direction(idx_s, act, cnt, rhs, nu_eff)
            o2, g2, i2, w2 = screen.evaluate(alpha + d, a, b, gs, ks)
            # Model increase of the concave quadratic on the current pattern. The Cholesky solve
            # gives L d = gs g - nu d to rounding, so d'Ld costs no Hessian product; CG's
            # residual is too large for that.
            if n <= _NEWTON_DENSE_MAX_N:
                dld = (d * (rhs - nu_eff.unsqueeze(-1) * d)).sum(-1)
            else:
                dld = (d * _hess_mv(d, idx_s, act, cnt)).sum(-1)
            pred = (g * d).sum(-1) - dld / (2.0 * gs)
            gain = o2 - obj
            ok = live & torch.isfinite(o2) & (pred > 0)
            rho = torch.where(ok, gain / pred.clamp_min(torch.finfo(a.dtype).tiny), -1.0)
            # Near the optimum the gains drown in the rounding of the objective: there a step
            # counts as good when it shrinks the gradient.
            noisy = ok & (pred <= _ROUNDOFF * eps * obj.abs())
            better = g2.abs().amax(-1) < g.abs().amax(-1)
            rho = torch.where(noisy, torch.where(better, 1.0, -1.0), rho)
            accept = ok & (rho > 1e-4)
            factor = torch.where(rho > 0.75, 0.25, torch.where(rho < 0.25, 4.0, 1.0))
            nu = torch.where(live, (nu_eff * factor).clamp_min(nu_min), nu)
            good = rho > 0.75
            # A step whose gain has the wrong sign (rho < 0) while the damping grows means the
            # quadratic model fails even for short steps: a kink. Several in a row where some
            # column has k non-zeros: stalled at a kink of the top-k selection.
            misfits = torch.where(live & (rho < 0), misfits + 1, torch.zeros_like(misfits))
            newly = live & (nu > _NU_STALL)
            if ks < n:
                binding = (w[..., ks - 1] > 0).any(-1)
                newly = newly | (live & binding & (misfits >= _STALL_MISFITS))
            stalled = stalled | newly
            live = live & ~newly
            alpha = torch.where(accept.unsqueeze(-1), alpha + d, alpha)
            obj = torch.where(accept, o2, obj)
            g = torch.where(accept.unsqueeze(-1), g2, g)
            if i2.shape != idx.shape:  # the screening widened: pad with inactive entries
                width = max(i2.shape[-1], idx.shape[-1])
                i2, w2, idx, w = (_pad_last(t, width) for t in (i2, w2, idx, w))
            idx = torch.where(accept.unsqueeze(-1).unsqueeze(-1), i2, idx)
            w = torch.where(accept.unsqueeze(-1).unsqueeze(-1), w2, w)
    # A stalled problem returns its best point: L-BFGS finishes from there. (Restarting L-BFGS
    # from the final stage's warm start took ~50 iterations instead of ~5 at n = 300 and ended
    # with no better plans: which side of a top-k tie a solver stops on is chaotic either way.)
    return alpha, n_iter, stalled, screen


_SINGLE_THREAD_ELEMENTS = 1 << 18

Method = Literal["auto", "newton", "lbfgs"]


def _lbfgs(
    problem: _Problem,
    max_iter: int,
    tol: float,
    history_size: int,
    restarts: int,
    init: Tensor | None = None,
    screen: _Screen | None = None,
    change_tol: Tensor | None = None,
) -> tuple[Tensor, int]:
    """Maximise each problem's (semi-)dual from ``init`` (default zero) by L-BFGS, every problem
    of the batch on its own (:func:`batched_lbfgs`). A problem stops at ``max|grad| <= tol`` or
    when an iteration changes its objective or parameters by less than ``change_tol`` (one value
    per problem; default ``tol * 1e-3``). L-BFGS stalls at the kinks of the sparse objectives
    (the top-k set changes): a problem that stops that way short of ``tol`` starts again from
    where it stands with an empty history, up to ``restarts`` times."""
    a, b, gamma, k = problem.a, problem.b, problem.gamma, problem.k
    batch = a.shape[:-1]
    size = a.shape[-1] + (b.shape[-1] if problem.formulation == "dual" else 0)
    if init is None:
        init = torch.zeros(*batch, size, dtype=a.dtype, device=a.device)

    def negated(flat: Tensor) -> tuple[Tensor, Tensor]:
        params = flat.reshape(*batch, size)
        if screen is not None:  # the semi-dual on Newton's screened candidates
            obj, grad = screen.evaluate(params, a, b, gamma, k)[:2]
        else:
            obj, grad, _ = _objective(params, problem)
        return -obj.reshape(-1), -grad.reshape(-1, size)

    change = tol * 1e-3 if change_tol is None else change_tol.reshape(-1)
    with torch.no_grad():
        flat, n_iter = batched_lbfgs(
            negated, init.reshape(-1, size), max_iter, tol, change, history_size, restarts
        )
    return flat.reshape(*batch, size), n_iter


def _maximise(
    problem: _Problem, max_iter: int, tol: float, history_size: int, restarts: int, method: Method
) -> tuple[Tensor, int]:
    """Optimal (semi-)dual parameters and the iterations: Newton for the quadratic semi-dual
    (L-BFGS from its best point if it stalls at a top-k kink), else L-BFGS."""
    a, b, ct, gamma, reg, k, formulation = problem
    if method != "lbfgs" and reg != "entropy" and formulation == "semi_dual":
        alpha, n_iter, stalled, screen = _newton_semi_dual(
            a, b, ct.contiguous(), gamma, k, max_iter, tol
        )
        if bool(torch.isfinite(alpha).all()):  # host sync
            if not bool(stalled.any()) or n_iter >= max_iter:
                return alpha, n_iter
            # Newton stalled at a kink of the top-k selection: L-BFGS from its best point within
            # the remaining budget, without restarts (they rarely help at kinks).
            change_tol = _POLISH_FTOL * ct.abs().amax((-2, -1)) * a.sum(-1)
            budget = max_iter - n_iter
            args = (budget, tol, history_size, _POLISH_RESTARTS, alpha, screen, change_tol)
            polished, more = _lbfgs(problem, *args)
            return polished, n_iter + more
    else:
        n_iter = 0
    # Entropy, the dual, or a non-finite Newton result: L-BFGS from zero with the budget left.
    alpha, more = _lbfgs(problem, max_iter - n_iter, tol, history_size, restarts)
    return alpha, n_iter + more


def solve(
    a: Tensor,
    b: Tensor,
    cost: Tensor,
    gamma: float,
    reg: Reg,
    k: int,
    formulation: Formulation,
    max_iter: int,
    tol: float,
    history_size: int = 10,
    restarts: int = 5,
    method: Method = "auto",
) -> OTResult:
    """Maximise the (semi-)dual (semismooth Newton for the quadratic semi-dual, else L-BFGS);
    return the plan recovered from the potentials and the envelope-differentiable value."""
    ct = cost.transpose(-2, -1)
    problem = _Problem(a.detach(), b.detach(), ct.detach(), gamma, reg, k, formulation)
    n = a.shape[-1]
    if method == "newton" and (reg == "entropy" or formulation != "semi_dual"):
        raise ValueError("method='newton' needs the quadratic regulariser and the semi-dual")
    # Small CPU problems: one intra-op thread for the solvers (restored afterwards). Their
    # iterations are many tiny tensor operations (plus, for Newton, an n x n factorisation), for
    # which thread hand-offs cost more than they save; on a loaded machine each op also waits for
    # a descheduled thread (n = 300, k = 3 at load ~6 on 2 cores: Newton 2.1-2.8 s on two
    # threads, 0.12-0.19 s on one).
    small = cost.device.type == "cpu" and cost.numel() <= _SINGLE_THREAD_ELEMENTS
    with intra_op_threads(1) if small else contextlib.nullcontext():
        alpha_beta, n_iter = _maximise(problem, max_iter, tol, history_size, restarts, method)
    with torch.no_grad():
        _, grad, plan_opt = _objective(alpha_beta, problem, want_plan=True)
    assert plan_opt is not None
    plan_t = plan_opt
    converged = bool(grad.abs().amax() <= max(tol, 1e-12))
    # Envelope value: objective at the detached optimum with (a, b, cost) attached.
    alpha = alpha_beta[..., :n]
    if formulation == "dual":
        beta = alpha_beta[..., n:]
        s = alpha.unsqueeze(-2) + beta.unsqueeze(-1) - ct
        if reg == "entropy":
            dval = gamma * torch.exp(s / gamma - 1.0).sum(-1)
        else:
            # Selection (top-k indices) at the optimum, values differentiable in s.
            idx = None if k >= n else torch.topk(s.detach(), k, dim=-1, sorted=False).indices
            sel = s if idx is None else torch.gather(s, -1, idx)
            dval = (sel.clamp_min(0.0) ** 2).sum(-1) / (2.0 * gamma)
        value = (a * alpha).sum(-1) + (b * beta).sum(-1) - dval.sum(-1)
        g = beta
    else:
        x = alpha.unsqueeze(-2) - ct
        if reg == "entropy":
            # b_j max_Omega_j = gamma (b_j LSE_j - b_j log b_j) is 0 at b_j = 0, where the
            # potential -max_Omega_j is -inf. b log b is written so that its value is exact and
            # its derivative is log b + 1 (-inf at 0, not the 0/0 NaN of xlogy's backward).
            lse = torch.logsumexp(x / gamma, dim=-1)
            bm = gamma * (b * lse - _XLogX.apply(b))
            mval = gamma * (lse - torch.log(b))
        else:
            gj = (plan_t / _nonzero(problem.b).unsqueeze(-1)).detach()
            mval = (x * gj).sum(-1) - 0.5 * gamma * b * (gj * gj).sum(-1)
            bm = b * mval
        value = (a * alpha).sum(-1) - bm.sum(-1)
        g = -mval.detach()
    return OTResult(
        plan=plan_t.transpose(-2, -1),
        value=value,
        f=alpha,
        g=g,
        n_iter=n_iter,
        converged=converged,
    )
