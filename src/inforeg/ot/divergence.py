"""Debiased Sinkhorn divergence between point clouds, with geomloss's conventions.

References: A. Genevay, G. Peyre, M. Cuturi, "Learning Generative Models with Sinkhorn
Divergences", AISTATS 2018 (arXiv:1706.00292); J. Feydy, T. Sejourne, F.-X. Vialard, S. Amari,
A. Trouve, G. Peyre, "Interpolating between Optimal Transport and MMD using Sinkhorn
Divergences", AISTATS 2019 (arXiv:1810.08278) -- the algorithm of geomloss's ``SamplesLoss``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import torch
from torch import Tensor

from inforeg.core.checks import (
    check_choice,
    check_int,
    check_number,
    check_positive,
    check_tensor,
    get_checks,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.core.pairwise import safe_root
from inforeg.ot._sinkhorn_loop import (
    Potentials,
    epsilon_schedule,
    finite_diameter,
    sinkhorn_loop,
)

__all__ = ["SinkhornDivergence", "sinkhorn_divergence"]

Backend = Literal["auto", "tensorized", "online"]


def _cost_rows(
    u: Tensor, v: Tensor, p: int, same: bool, i0: int, i1: int, vv: Tensor | None = None
) -> Tensor:
    """Rows ``i0:i1`` of the cost ``C(u_i, v_j) = |u_i - v_j|^p / p``, shape ``(..., i1 - i0, m)``
    (``vv``: the squared norms of the rows of v, if already computed).

    For p=1, squared distances within the expansion's rounding of ||u||^2 + ||v||^2 - 2 u.v
    (``(d + 2) eps (||u||^2 + ||v||^2)``) are exact zeros, in every block alike, and so is the
    diagonal when ``same`` (v is u): sqrt of that noise is not differentiable (it broke
    gradchecks), and zeroing it only on the diagonals of the self-costs made S(a, a) nonzero
    (9e-4 for float32 points near 10; geomloss gives 0). For p=2 the noise is kept, as in
    geomloss, whose values we match to float32 rounding.
    """
    ub = u[..., i0:i1, :]
    vv = (v * v).sum(-1) if vv is None else vv
    norms = (ub * ub).sum(-1, keepdim=True) + vv.unsqueeze(-2)
    d2 = (norms - 2.0 * (ub @ v.transpose(-2, -1))).clamp_min_(0.0)
    if p == 2:
        return d2.div_(2.0)
    rounding = (u.shape[-1] + 2) * torch.finfo(u.dtype).eps
    d2.masked_fill_(d2 <= norms.mul_(rounding), 0.0)
    if same:
        idx = torch.arange(ub.shape[-2], device=u.device)
        d2[..., idx, idx + i0] = 0.0
    return safe_root(d2)


class _Cost:
    """The cost of one side of the loop, ``C(u_i, v_j)``: a dense matrix (geomloss's
    "tensorized" backend) or rows recomputed from the points at each use ("online": memory
    O(block * m) instead of O(n * m), at the price of a GEMM per block and use)."""

    def __init__(
        self, u: Tensor, v: Tensor, p: int, same: bool, online: bool, dense: Tensor | None = None
    ) -> None:
        self.u, self.v, self.p, self.same, self.online = u, v, p, same, online
        self.shape = u.shape[:-1] + (v.shape[-2],)
        if dense is None and not online:
            dense = _cost_rows(u, v, p, same, 0, u.shape[-2])
        self.dense = dense
        self.vv = (v * v).sum(-1) if online else None

    def transposed(self) -> _Cost:
        """``C(v_j, u_i)``, stored contiguous when dense: a softmin along the rows of a
        transposed view is 3-5x slower (strided reductions) than along contiguous rows."""
        dense = None if self.dense is None else self.dense.transpose(-2, -1).contiguous()
        return _Cost(self.v, self.u, self.p, self.same, self.online, dense)

    def rows(self, i0: int, i1: int) -> Tensor:
        if self.dense is not None:
            return self.dense[..., i0:i1, :]
        return _cost_rows(self.u, self.v, self.p, self.same, i0, i1, self.vv)

    def exponent(self, i0: int, i1: int, eps: float, h3: Tensor, out: Tensor) -> Tensor | None:
        """``out <- h_j - C_ij / eps`` for rows ``i0:i1`` (``(nb, rows, m)``, ``h3``
        ``(nb, 1, m)``), up to a per-row shift that is returned (``(nb, rows)``; None: 0).

        Online with p=2 this is one batched GEMM: ``-C_ij / eps = (u_i . v_j - |v_j|^2 / 2) / eps
        - |u_i|^2 / (2 eps)``, whose last term shifts row i, which a softmin over j ignores until
        its log-sum-exp.
        """
        if not (self.online and self.p == 2):
            c = self.rows(i0, i1).reshape(out.shape)
            torch.add(h3, c, alpha=-1.0 / eps, out=out)
            return None
        assert self.vv is not None
        nb, m = out.shape[0], out.shape[-1]
        u3 = self.u.reshape(nb, -1, self.u.shape[-1])[:, i0:i1]
        v3 = self.v.reshape(nb, m, -1)
        bias = h3 - self.vv.reshape(nb, 1, m) / (2.0 * eps)
        torch.baddbmm(bias, u3, v3.transpose(-2, -1), alpha=1.0 / eps, out=out)
        return (u3 * u3).sum(-1).div_(-2.0 * eps)


# Row blocks of about this many entries on CPU: the passes of one softmin over a block (add,
# max, subtract, exp, sum) then run in cache (2 MiB of L2 per core here) instead of streaming
# the whole (n, m) matrix five times. Other devices take a dense matrix in one block, and
# online costs in blocks of _ONLINE_BLOCK entries.
_BLOCK = 1 << 18
_ONLINE_BLOCK = 1 << 26

#: backend="auto" turns online when the dense cost matrices would hold more entries than this
#: (1 GiB of float32); see benchmarks/sinkhorn.md for the time each backend takes.
ONLINE_ABOVE = 1 << 28


def _exp_floor(dtype: torch.dtype) -> float:
    # Arguments of exp are clamped just above the underflow threshold (-87.3 in float32, -708 in
    # float64): on CPU, torch's vectorised exp is ~40x slower on lanes that underflow, which made
    # a small-epsilon softmin ~13x slower at n = 2000. After subtracting the row max the largest
    # term is 1, so the clamp changes a row sum by at most m * exp(floor) relative (m * 1e-34 in
    # float32); a zero weight (h_j = -inf) then weighs exp(floor) instead of 0, as negligibly.
    return 0.9 * math.log(torch.finfo(dtype).tiny)


def _softmin(
    eps: float,
    cost: _Cost,
    h: Tensor,
    grad: tuple[Tensor, Tensor, int] | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    r"""Soft c-transform ``f_i = -eps * logsumexp_j(h_j - C_ij / eps)`` (no autograd).

    With ``grad = (x, y, p)`` (``cost[..., i, j] = C(x_i, y_j)``), also returns the pieces of
    :math:`\sum_j \pi_{ij} \nabla_1 C(x_i, y_j) = s_i x_i - G_i`, with
    :math:`\pi_{ij} = \mathrm{softmax}_j(h_j - C_{ij}/\varepsilon)`: for ``p=2``
    (:math:`\nabla_1 C = x_i - y_j`) :math:`s_i = 1`, :math:`G = \pi y`; for ``p=1``
    (:math:`\nabla_1 C = (x_i - y_j) / C_{ij}`, zero where :math:`C_{ij} = 0`)
    :math:`w = \pi / C`, :math:`s_i = \sum_j w_{ij}`, :math:`G = w y`.
    """
    shape = cost.shape
    n, m = shape[-2], shape[-1]
    u = cost.u.reshape(-1, n, cost.u.shape[-1])
    nb = u.shape[0]
    h3 = h.expand(shape[:-2] + (m,)).reshape(nb, 1, m)
    block = _ONLINE_BLOCK if cost.online and u.device.type != "cpu" else _BLOCK
    rows = n if not cost.online and u.device.type != "cpu" else max(1, block // max(1, nb * m))
    rows = min(n, rows)
    floor = _exp_floor(u.dtype)
    out = u.new_empty(nb, n)
    buf = u.new_empty(nb, rows, m)
    s_out: Tensor | None = None
    g_out: Tensor | None = None
    if grad is not None:
        y3 = grad[1].reshape(nb, m, -1)
        g_out = u.new_empty(nb, n, y3.shape[-1])
        s_out = u.new_ones(nb, n)
    for i in range(0, n, rows):
        i1 = min(i + rows, n)
        t = buf[:, : i1 - i]
        shift = cost.exponent(i, i1, eps, h3, t)
        mx = t.amax(-1, keepdim=True)
        mx = torch.where(torch.isfinite(mx), mx, 0.0)
        t.sub_(mx).clamp_min_(floor).exp_()
        tot = t.sum(-1)
        lse = tot.log().add_(mx.squeeze(-1))
        out[:, i:i1] = lse if shift is None else lse.add_(shift)
        if grad is not None:
            assert g_out is not None and s_out is not None
            if grad[2] == 1:
                c = cost.rows(i, i1).reshape(nb, -1, m)
                t = torch.where(c > 0, t / c, 0.0)
                s_out[:, i : i + rows] = t.sum(-1) / tot
            g_out[:, i : i + rows] = torch.bmm(t, y3).div_(tot.unsqueeze(-1))
    f = out.mul_(-eps).reshape(shape[:-1])
    if grad is None:
        return f, None, None
    assert g_out is not None and s_out is not None
    return f, s_out.reshape(shape[:-1]), g_out.reshape(shape[:-1] + (-1,))


def _weights(w: Tensor | None, x: Tensor, name: str, dtype: torch.dtype) -> Tensor:
    n = x.shape[-2]
    if w is None:
        return torch.full(x.shape[:-1], 1.0 / n, dtype=dtype, device=x.device)
    check_tensor(w, name, ndim=x.dim() - 1, floating=True)
    if get_checks() != "off" and w.shape != x.shape[:-1]:
        raise ValueError(f"{name}: expected shape {tuple(x.shape[:-1])}, got {tuple(w.shape)}")
    return w.to(dtype)


def _costs(x: Tensor, y: Tensor, p: int, debias: bool, online: bool) -> dict[str, _Cost]:
    """The costs the loop reads, by side: ``xy``, ``yx`` and, when debiasing, ``xx``, ``yy``."""
    cxy = _Cost(x, y, p, False, online)
    costs = {"xy": cxy, "yx": cxy.transposed()}
    if debias:
        costs["xx"] = _Cost(x, x, p, True, online)
        costs["yy"] = _Cost(y, y, p, True, online)
    return costs


def _cost_softmin(costs: dict[str, _Cost], eps: float, side: str, h: Tensor) -> Tensor:
    """The loop's softmin: :func:`_softmin` on the cost block of ``side``."""
    return _softmin(eps, costs[side], h)[0]


def _extrapolate_one(
    costs: dict[str, _Cost],
    eps: float,
    side: str,
    h: Tensor,
    pts: tuple[Tensor, Tensor, int] | None,
) -> tuple[Tensor, Tensor | None]:
    r"""One softmin of the last step; with ``pts = (u, v, p)`` also its cost-gradient average
    :math:`\sum_j \pi_{ij} \nabla_1 C(u_i, v_j)` (see :func:`_softmin`)."""
    f, s, g = _softmin(eps, costs[side], h, pts)
    return f, (None if pts is None or s is None or g is None else s.unsqueeze(-1) * pts[0] - g)


def _extrapolate(
    costs: dict[str, _Cost],
    pots: Potentials,
    log_a: Tensor,
    log_b: Tensor,
    eps: float,
    x: Tensor,
    y: Tensor,
    p: int,
    grad_x: bool,
    grad_y: bool,
) -> tuple[Potentials, Tensor | None, Tensor | None]:
    r"""geomloss's final extrapolation: one plain (Jacobi) step from the loop's potentials.

    Returns the new potentials and, for ``x`` when ``grad_x`` (else ``None``),
    :math:`\sum_j \pi_{ij} \nabla_1 C(x_i, y_j) - \sum_k \pi^{aa}_{ik} \nabla_1 C(x_i, x_k)`
    (without the self term when not debiasing); likewise for ``y``.
    """
    px = (x, y, p) if grad_x else None
    py = (y, x, p) if grad_y else None
    f, dx = _extrapolate_one(costs, eps, "xy", log_b + pots.g / eps, px)
    g, dy = _extrapolate_one(costs, eps, "yx", log_a + pots.f / eps, py)
    if pots.f_aa is None or pots.g_bb is None:
        return Potentials(f, g), dx, dy
    f_aa, dxx = _extrapolate_one(
        costs, eps, "xx", log_a + pots.f_aa / eps, (x, x, p) if grad_x else None
    )
    g_bb, dyy = _extrapolate_one(
        costs, eps, "yy", log_b + pots.g_bb / eps, (y, y, p) if grad_y else None
    )
    if dx is not None and dxx is not None:
        dx = dx - dxx
    if dy is not None and dyy is not None:
        dy = dy - dyy
    return Potentials(f, g, f_aa, g_bb), dx, dy


def sinkhorn_divergence(
    x: Tensor,
    y: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    p: int = 2,
    blur: float = 0.05,
    scaling: float = 0.5,
    debias: bool = True,
    diameter: float | None = None,
    tol: float | None = None,
    max_iter: int = 1000,
    check_every: int = 10,
    backend: Backend = "auto",
) -> Tensor:
    r"""Sinkhorn divergence between weighted point clouds, as geomloss's ``SamplesLoss("sinkhorn")``.

    .. math::
        S_\varepsilon(\alpha, \beta) = \mathrm{OT}_\varepsilon(\alpha, \beta)
            - \tfrac12 \mathrm{OT}_\varepsilon(\alpha, \alpha)
            - \tfrac12 \mathrm{OT}_\varepsilon(\beta, \beta),
        \qquad \mathrm{OT}_\varepsilon = \min_{P \in U(a, b)} \langle P, C\rangle
            + \varepsilon \mathrm{KL}(P \,\|\, a \otimes b)

    Conventions (geomloss's, pinned by tests against ``geomloss.SamplesLoss``):
        * cost :math:`C(x, y) = \tfrac1p \|x - y\|^p`: for ``p=2`` it is **half** the squared
          distance :math:`\tfrac12\|x-y\|^2`; for ``p=1`` the Euclidean distance;
        * temperature :math:`\varepsilon = \mathrm{blur}^p` (so POT's ``reg`` on the cost
          :math:`\|x-y\|^2` corresponds to ``blur = sqrt(reg / 2)``);
        * epsilon-scaling schedule from :math:`\mathrm{diameter}^p` down to
          :math:`\mathrm{blur}^p`, dividing by :math:`\mathrm{scaling}^p` at each step (see
          :func:`epsilon_schedule`); ``diameter`` defaults to the diagonal of the bounding box
          of all points (one host sync);
        * symmetric (averaged) log-domain updates, one per temperature (the symmetric mode of
          the loop shared with :func:`inforeg.ot.sinkhorn`), then a final
          extrapolation step; the value is the dual formula
          :math:`\langle a, f_{ba} - f_{aa}\rangle + \langle b, g_{ab} - g_{bb}\rangle`
          (``debias=True``) or :math:`\langle a, f_{ba}\rangle + \langle b, g_{ab}\rangle`.

    Like geomloss, the default runs a fixed number of iterations (the schedule length), so it is
    an approximation of :math:`S_\varepsilon` whose accuracy improves as ``scaling`` approaches 1.
    With ``tol`` set, symmetric updates continue at the final temperature until the potentials
    move by at most ``tol`` (sup norm), checked every ``check_every`` iterations (one host sync
    per check), up to ``max_iter`` extra iterations.

    Gradient: geomloss's rule. The loop runs without autograd; the returned value is
    differentiated through the last (extrapolation) step only, its input potentials held fixed
    (no backpropagation through the loop). With :math:`\pi_{ij} =
    \mathrm{softmax}_j(\log b_j + g_j/\varepsilon - C(x_i, y_j)/\varepsilon)` the row-normalised
    kernel of that step (and :math:`\pi^{aa}` likewise for :math:`\mathrm{OT}(\alpha, \alpha)`),

    .. math::
        \frac{\partial S}{\partial x_i} = a_i \Big(\sum_j \pi_{ij} \nabla_1 C(x_i, y_j)
            - \sum_k \pi^{aa}_{ik} \nabla_1 C(x_i, x_k)\Big), \qquad
        \frac{\partial S}{\partial a} = f_{ba} - f_{aa},

    symmetrically for :math:`y, b` (without the debiasing terms when ``debias=False``);
    :math:`\nabla_1 C = x_i - y_j` for ``p=2`` and :math:`(x_i - y_j)/\|x_i - y_j\|` (zero at
    coincident points) for ``p=1``. At convergence this is the exact gradient (envelope
    theorem); before it, it stays a softmax average of cost gradients, hence bounded. It is
    computed in closed form inside the last step's softmins (no autograd graph over the
    :math:`n \times m` matrices). Second derivatives are not supported (as in geomloss).

    Backends (geomloss's names): ``"tensorized"`` forms the cost matrices densely,
    :math:`2nm + n^2 + m^2` entries with ``debias`` (6.4 GB in float32 at n = m = 20 000);
    ``"online"`` recomputes blocks of rows from the points at each softmin (a GEMM per block,
    memory O(block x m); geomloss does this with KeOps). ``"auto"`` (default) is online when the
    dense matrices would exceed ``ONLINE_ABOVE`` = 2^28 entries (1 GiB of float32). Both give
    the same values up to the rounding of the cost.

    Args:
        x: points ``(N, D)`` or ``(B, N, D)``.
        y: points ``(M, D)`` or ``(B, M, D)``.
        a: weights ``(N,)``/``(B, N)`` summing to one (default uniform).
        b: weights ``(M,)``/``(B, M)`` summing to one (default uniform).
        p: 1 or 2, exponent of the cost.
        blur: :math:`\varepsilon^{1/p}`, > 0.
        scaling: annealing ratio in (0, 1).
        debias: subtract the self-transport terms (the divergence); else return
            :math:`\mathrm{OT}_\varepsilon(\alpha, \beta)`.
        diameter: upper bound of the distances (default: bounding-box diagonal).
        tol, max_iter, check_every: optional extra convergence loop (see above).
        backend: ``"auto"`` (default), ``"tensorized"`` or ``"online"`` (see above).

    Returns:
        Shape ``()`` for 2-D inputs, ``(B,)`` for batched inputs, in the input dtype (half
        inputs are computed in float32).

    Example:
        A translated cloud: the debiased divergence is half the squared translation (the cost's
        cross term averages out), the biased one adds the entropic blur of the two clouds.

        >>> x = torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64)
        >>> round(float(sinkhorn_divergence(x, x + 2.0)), 6)
        2.0
        >>> round(float(sinkhorn_divergence(x, x + 2.0, debias=False)), 6)
        2.002747
    """
    check_tensor(x, "x", ndim=(2, 3), floating=True)
    check_tensor(y, "y", ndim=x.dim(), floating=True)
    if get_checks() != "off":
        if x.shape[-1] != y.shape[-1]:
            raise ValueError(f"y: expected {x.shape[-1]} features to match x, got {y.shape[-1]}")
        if x.dim() == 3 and x.shape[0] != y.shape[0]:
            raise ValueError(f"y: expected batch size {x.shape[0]} to match x, got {y.shape[0]}")
    check_choice(p, "p", (1, 2))
    blur = check_positive(blur, "blur")
    scaling = check_number(
        scaling, "scaling", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    max_iter = check_int(max_iter, "max_iter", low=0)
    check_every = check_int(check_every, "check_every", low=1)
    if tol is not None:
        tol = check_number(tol, "tol", low=0.0)
    check_choice(backend, "backend", ("auto", "tensorized", "online"))
    in_dtype = torch.promote_types(x.dtype, y.dtype)
    dt = compute_dtype(x, y)
    x, y = x.to(dt), y.to(dt)
    a_w = _weights(a, x, "a", dt)
    b_w = _weights(b, y, "b", dt)
    if diameter is None:
        pts = torch.cat([x.detach().reshape(-1, x.shape[-1]), y.detach().reshape(-1, y.shape[-1])])
        diameter = float((pts.amax(0) - pts.amin(0)).norm())  # one host sync
        diameter = finite_diameter(max(diameter, blur), blur)
    else:
        diameter = check_positive(diameter, "diameter")
    eps_list = epsilon_schedule(p, diameter, blur, scaling)
    eps = eps_list[-1]

    need_grad = torch.is_grad_enabled() and (
        x.requires_grad or y.requires_grad or a_w.requires_grad or b_w.requires_grad
    )
    with torch.no_grad():
        n, m, batch = x.shape[-2], y.shape[-2], x[..., 0, 0].numel()
        # at their common centre: the cost is shift-invariant, and its expansion
        # ||u||^2 + ||v||^2 - 2 u.v rounds far less there for clouds away from the origin
        xd, yd = x.detach(), y.detach()
        shift = (xd.sum(-2, keepdim=True) + yd.sum(-2, keepdim=True)) / (n + m)
        xd, yd = xd - shift, yd - shift
        entries = batch * (2 * n * m + (n * n + m * m if debias else 0))
        online = backend == "online" or (backend == "auto" and entries > ONLINE_ABOVE)
        costs = _costs(xd, yd, p, debias, online)
        al, bl = torch.log(a_w.detach()), torch.log(b_w.detach())
        loop = sinkhorn_loop(
            partial(_cost_softmin, costs),
            al,
            bl,
            eps_list,
            eps,
            symmetric=True,
            debias=debias,
            tol=tol,
            max_iter=len(eps_list) + max_iter,
            check_every=check_every,
        )
        grad_x = need_grad and x.requires_grad
        grad_y = need_grad and y.requires_grad
        pots, dx, dy = _extrapolate(costs, loop.potentials, al, bl, eps, xd, yd, p, grad_x, grad_y)
        pot_a, pot_b = pots.f, pots.g
        if debias:
            assert pots.f_aa is not None and pots.g_bb is not None
            pot_a, pot_b = pots.f - pots.f_aa, pots.g - pots.g_bb
        value = (a_w.detach() * pot_a).sum(-1) + (b_w.detach() * pot_b).sum(-1)
    if not need_grad:
        return value.to(in_dtype)

    # Gradient of the last step with its input potentials held fixed (geomloss's rule):
    # d/dx_i = a_i (sum_j pi_ij grad_1 C(x_i, y_j) - sum_k pi^aa_ik grad_1 C(x_i, x_k)),
    # d/da = f_ba - f_aa; attached through a linear surrogate (value unchanged).
    surrogate = (pot_a * a_w).sum(-1) + (pot_b * b_w).sum(-1)
    if dx is not None:
        surrogate = surrogate + (a_w.detach().unsqueeze(-1) * dx * x).sum((-2, -1))
    if dy is not None:
        surrogate = surrogate + (b_w.detach().unsqueeze(-1) * dy * y).sum((-2, -1))
    out = value + (surrogate - surrogate.detach())
    return out.to(in_dtype)


class SinkhornDivergence(torch.nn.Module):
    """Module form of :func:`sinkhorn_divergence` (geomloss conventions; see there)."""

    def __init__(
        self,
        p: int = 2,
        blur: float = 0.05,
        scaling: float = 0.5,
        debias: bool = True,
        diameter: float | None = None,
        tol: float | None = None,
        max_iter: int = 1000,
        check_every: int = 10,
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        check_choice(p, "p", (1, 2))
        check_choice(backend, "backend", ("auto", "tensorized", "online"))
        self.p = p
        self.blur = check_positive(blur, "blur")
        self.scaling = scaling
        self.debias = debias
        self.diameter = diameter
        self.tol = tol
        self.max_iter = max_iter
        self.check_every = check_every
        self.backend: Backend = backend

    def forward(
        self, x: Tensor, y: Tensor, a: Tensor | None = None, b: Tensor | None = None
    ) -> Tensor:
        """Divergence between ``(a, x)`` and ``(b, y)``."""
        return sinkhorn_divergence(
            x,
            y,
            a,
            b,
            p=self.p,
            blur=self.blur,
            scaling=self.scaling,
            debias=self.debias,
            diameter=self.diameter,
            tol=self.tol,
            max_iter=self.max_iter,
            check_every=self.check_every,
            backend=self.backend,
        )
