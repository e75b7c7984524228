"""Dual and semi-dual of regularised OT (quadratic, entropic, sparsity-constrained), L-BFGS in torch.

Shared by :mod:`inforeg.ot.smooth` and :mod:`inforeg.ot.sparse`. Layout: problems are handled in
the transposed layout ``(*batch, m, n)`` so that each *column* ``j`` of the plan (one target) is a
contiguous last-axis vector over the ``n`` sources.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from inforeg.core.threads import intra_op_threads
from inforeg.ot._common import OTResult

Reg = Literal["l2", "entropy", "sparse"]
Formulation = Literal["dual", "semi_dual"]


def sparse_simplex_projection(z: Tensor, k: int) -> Tensor:
    """Project each last-axis vector of ``z`` onto the simplex with at most ``k`` non-zeros.

    Keep the ``k`` largest entries, project them onto the simplex (sort, cumulative sums,
    threshold), zero the rest (Kyrillidis et al., ICML 2013). ``k >= z.shape[-1]`` is the plain
    simplex projection. Ties among the k-th largest are broken by ``torch.topk``.
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
    """Conjugate ``delta(s)`` summed over the last axis, and its gradient (the plan column)."""
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


def max_omega_and_grad(
    x: Tensor, bj: Tensor, gamma: float, reg: Reg, k: int
) -> tuple[Tensor, Tensor]:
    """``max_Omega_j(x_j)`` over the last axis (``bj`` shape ``(*batch, m)``) and ``G_j``."""
    if reg == "entropy":
        lse = torch.logsumexp(x / gamma, dim=-1)
        val = gamma * (lse - torch.log(bj))
        return val, torch.softmax(x / gamma, dim=-1)
    g = sparse_simplex_projection(x / (bj * gamma).unsqueeze(-1), k)
    val = (x * g).sum(-1) - 0.5 * gamma * bj * (g * g).sum(-1)
    return val, g


def _objective(
    params: Tensor,
    a: Tensor,
    b: Tensor,
    ct: Tensor,
    gamma: float,
    reg: Reg,
    k: int,
    formulation: Formulation,
    want_plan: bool = False,
) -> tuple[Tensor, Tensor, Tensor | None]:
    """Dual objective (to maximise) per problem, its gradient, and (optionally) the plan
    (transposed). With ``k < n`` only the top-k entries of each column are touched after the
    selection, so an evaluation costs one pass over the cost plus the selection."""
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
    x = alpha.unsqueeze(-2) - ct
    if sparse:
        scale = (b * gamma).unsqueeze(-1)
        xs, idx = torch.topk(x, k, dim=-1, largest=True, sorted=True)
        u = xs / scale
        css = torch.cumsum(u, -1) - 1.0
        ind = torch.arange(1, k + 1, dtype=x.dtype, device=x.device)
        rho = ((u - css / ind) > 0).sum(-1, keepdim=True).clamp_min(1)
        theta = torch.gather(css, -1, rho - 1) / rho.to(x.dtype)
        w = (u - theta).clamp_min(0.0)  # G_j on its top-k support
        val = (xs * w).sum(-1) - 0.5 * gamma * b * (w * w).sum(-1)
        tv = w * b.unsqueeze(-1)
        obj = (a * alpha).sum(-1) - (b * val).sum(-1)
        row = torch.zeros_like(alpha).scatter_add_(-1, idx.flatten(-2), tv.flatten(-2))
        plan_t = torch.zeros_like(x).scatter(-1, idx, tv) if want_plan else None
        return obj, a - row, plan_t
    val, g = max_omega_and_grad(x, b, gamma, reg, k)
    plan_t = g * b.unsqueeze(-1)
    obj = (a * alpha).sum(-1) - (b * val).sum(-1)
    grad = a - plan_t.sum(-2)
    return obj, grad, plan_t


_SINGLE_THREAD_ELEMENTS = 1 << 18


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
) -> OTResult:
    """L-BFGS solve; small CPU problems run with one intra-op thread (restored afterwards): the
    many tiny tensor operations of each L-BFGS iteration cost more in thread hand-offs than they
    gain from parallelism."""
    if cost.device.type != "cpu" or cost.numel() > _SINGLE_THREAD_ELEMENTS:
        return _solve(a, b, cost, gamma, reg, k, formulation, max_iter, tol, history_size, restarts)
    with intra_op_threads(1):
        return _solve(a, b, cost, gamma, reg, k, formulation, max_iter, tol, history_size, restarts)


def _solve(
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
) -> OTResult:
    """Maximise the (semi-)dual with torch's L-BFGS (strong Wolfe line search) from zero potentials;
    return the plan recovered from the potentials and the envelope-differentiable value."""
    ct = cost.transpose(-2, -1)
    a_d, b_d, ct_d = a.detach(), b.detach(), ct.detach()
    n, m = a.shape[-1], b.shape[-1]
    size = n + m if formulation == "dual" else n
    params = torch.zeros(*a.shape[:-1], size, dtype=a.dtype, device=a.device, requires_grad=True)

    def closure() -> Tensor:
        with torch.no_grad():
            obj, grad, _ = _objective(params, a_d, b_d, ct_d, gamma, reg, k, formulation)
        params.grad = -grad
        return -obj.sum()

    # L-BFGS stalls at the kinks of the sparse objectives (the top-k set changes); restarting
    # with a fresh history from the current point (up to ``restarts`` times, within the
    # ``max_iter`` budget) gets it moving again.
    n_iter = 0
    for _ in range(restarts + 1):
        opt = torch.optim.LBFGS(
            [params],
            lr=1.0,
            max_iter=max_iter - n_iter,
            max_eval=2 * (max_iter - n_iter),
            tolerance_grad=tol,
            tolerance_change=tol * 1e-3,
            history_size=history_size,
            line_search_fn="strong_wolfe",
        )
        opt.step(closure)  # type: ignore[arg-type]
        n_iter += int(opt.state[opt._params[0]].get("n_iter", 0))
        if n_iter >= max_iter or params.grad is None:
            break
        if float(params.grad.abs().amax()) <= tol:  # host sync
            break
    alpha_beta = params.detach()
    with torch.no_grad():
        _, grad, plan_opt = _objective(
            alpha_beta, a_d, b_d, ct_d, gamma, reg, k, formulation, want_plan=True
        )
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
            mval = gamma * (torch.logsumexp(x / gamma, dim=-1) - torch.log(b))
        else:
            gj = (plan_t / b_d.unsqueeze(-1)).detach()
            mval = (x * gj).sum(-1) - 0.5 * gamma * b * (gj * gj).sum(-1)
        value = (a * alpha).sum(-1) - (b * mval).sum(-1)
        g = -mval.detach()
    return OTResult(
        plan=plan_t.transpose(-2, -1),
        value=value,
        f=alpha,
        g=g,
        n_iter=n_iter,
        converged=converged,
    )
