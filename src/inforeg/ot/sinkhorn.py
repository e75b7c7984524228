"""Log-domain Sinkhorn for entropic optimal transport, batched, with envelope or unrolled gradients.

Reference: M. Cuturi, "Sinkhorn Distances: Lightspeed Computation of Optimal Transport",
NeurIPS 2013 (arXiv:1306.0895); log-domain stabilisation and epsilon-scaling as in B. Schmitzer,
"Stabilized Sparse Scaling Algorithms for Entropy Regularized Transport Problems", SIAM J. Sci.
Comput. 2019 (arXiv:1610.06519), and G. Peyre and M. Cuturi, "Computational Optimal Transport"
(arXiv:1803.00567), ch. 4.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import torch
from torch import Tensor

from inforeg.core.checks import check_choice, check_int, check_number, check_positive
from inforeg.ot._common import OTResult, log_weights, prepare_problem
from inforeg.ot._sinkhorn_loop import (
    MatrixSoftmin,
    epsilon_schedule,
    finite_diameter,
    sinkhorn_loop,
)

__all__ = ["Sinkhorn", "sinkhorn"]

GradMode = Literal["envelope", "unroll"]


# Envelope mode switches to absorbed-kernel blocks once the row-marginal error is below this.
_SWITCH_TOL = 1e-2


@torch.no_grad()
def _kernel_block(
    softmin: MatrixSoftmin,
    a: Tensor,
    b: Tensor,
    eps: float,
    f: Tensor,
    g: Tensor,
    steps: int,
    tol: float,
) -> tuple[bool, Tensor, Tensor, float]:
    """``steps`` Sinkhorn iterations with the absorbed kernel ``G = exp(K + u + v)``.

    ``K = -C / eps``, ``u = f / eps``, ``v = g / eps``. Scaling-domain updates of multipliers
    ``s, t`` (two matrix-vector products per iteration) relative to the current log potentials,
    absorbed back into the potentials at the end (Schmitzer's stabilisation). Returns
    ``(converged, f, g, error)``; a non-finite error means the block under- or overflowed and
    must be discarded. One host sync.
    """
    u, v = f / eps, g / eps
    gk = torch.exp(softmin.kernel(eps) + u.unsqueeze(-1) + v.unsqueeze(-2))
    s = torch.ones_like(u)
    t = torch.ones_like(v)
    err = torch.zeros((), dtype=u.dtype, device=u.device)
    done_early = False
    for i in range(steps):
        s_new = torch.reciprocal(torch.matmul(gk, (b * t).unsqueeze(-1)).squeeze(-1))
        if i == steps - 1:
            err = (a * (s / s_new - 1.0)).abs().sum(-1).amax()
            err_val = float(err)  # host sync
            if math.isfinite(err_val) and err_val <= tol:
                done_early = True
                break
        s = s_new
        t = torch.reciprocal(torch.matmul((a * s).unsqueeze(-2), gk).squeeze(-2))
    err_val = float(err)
    if not (math.isfinite(err_val) and bool(torch.isfinite(s).all() & torch.isfinite(t).all())):
        return False, f, g, math.inf
    return done_early, (u + torch.log(s)) * eps, (v + torch.log(t)) * eps, err_val


def _dual_value(
    a: Tensor, b: Tensor, cost: Tensor, f: Tensor, g: Tensor, epsilon: float
) -> tuple[Tensor, Tensor]:
    """Entropic dual objective and plan.

    ``D(f, g) = <a, f> + <b, g> - eps * sum_ij a_i b_j (exp((f_i + g_j - C_ij)/eps) - 1)``.

    Zero weights: the plan is built from ``log a``, ``log b`` (no overflow of
    ``exp((f_i + g_j - C_ij)/eps)`` where both weights vanish), whose gradient at 0 would be
    ``0 * inf``. There :func:`log_weights` gives a zero gradient and a term of value 0 restores
    the exact derivative ``dD/da_i = f_i - eps sum_j b_j exp((f_i + g_j - C_ij)/eps) + eps sum b``
    (``= f_i`` at the optimum, where the sum is 1), and likewise for ``b``.
    """
    log_a, log_b = log_weights(a), log_weights(b)
    z = (f.unsqueeze(-1) + g.unsqueeze(-2) - cost) / epsilon
    plan = torch.exp(z + log_a.unsqueeze(-1) + log_b.unsqueeze(-2))
    mass = plan.sum((-2, -1))
    if a.requires_grad or b.requires_grad:
        with torch.no_grad():
            row = torch.logsumexp(z + log_b.unsqueeze(-2), dim=-1).exp()
            col = torch.logsumexp(z + log_a.unsqueeze(-1), dim=-2).exp()
        mass = mass + ((a - a.detach()) * torch.where(a == 0, row, 0.0)).sum(-1)
        mass = mass + ((b - b.detach()) * torch.where(b == 0, col, 0.0)).sum(-1)
    value = (a * f).sum(-1) + (b * g).sum(-1) - epsilon * (mass - a.sum(-1) * b.sum(-1))
    return value, plan


def sinkhorn(
    a: Tensor | None,
    b: Tensor | None,
    cost: Tensor,
    epsilon: float,
    max_iter: int = 1000,
    tol: float = 1e-9,
    grad: GradMode = "envelope",
    epsilon_scaling: float | None = None,
    check_every: int = 10,
    normalize: bool = False,
) -> OTResult:
    r"""Entropic optimal transport by log-domain Sinkhorn iterations.

    Solves, for each problem in the batch,

    .. math::
        \mathrm{OT}_\varepsilon(a, b) = \min_{P \ge 0,\ P\mathbf 1 = a,\ P^\top \mathbf 1 = b}
        \langle P, C\rangle + \varepsilon\, \mathrm{KL}(P \,\|\, a \otimes b)
        = \max_{f, g}\ \langle a, f\rangle + \langle b, g\rangle
          - \varepsilon \sum_{ij} a_i b_j \big(e^{(f_i + g_j - C_{ij})/\varepsilon} - 1\big)

    with the alternating updates (all in log space, so no under/overflow at small epsilon)

    .. math::
        f_i \leftarrow -\varepsilon \log \sum_j b_j e^{(g_j - C_{ij})/\varepsilon}, \qquad
        g_j \leftarrow -\varepsilon \log \sum_i a_i e^{(f_i - C_{ij})/\varepsilon},

    and plan :math:`P_{ij} = a_i b_j \exp((f_i + g_j - C_{ij})/\varepsilon)`. The plan equals POT's
    ``ot.sinkhorn(a, b, C, reg=epsilon, method="sinkhorn_log")`` (POT's entropy
    :math:`-\sum P \log P` differs from the KL term by a constant on the transport polytope).

    Conventions:
        * ``value`` is the *regularised* optimum :math:`\mathrm{OT}_\varepsilon` above (the dual
          objective at the final potentials), not the linear cost :math:`\langle P, C\rangle`
          returned by POT's ``sinkhorn2``; compute ``(plan * cost).sum((-2, -1))`` for that.
        * ``epsilon`` is in the units of ``cost`` (POT's ``reg``); geomloss's ``blur`` is
          :math:`\varepsilon^{1/p}` and its cost for ``p=2`` is :math:`\tfrac12\|x-y\|^2`
          (see :func:`inforeg.ot.sinkhorn_divergence`).
        * ``f`` and ``g`` are in cost units; the last update is the ``g`` update, so the column
          marginals :math:`P^\top\mathbf 1 = b` hold to rounding and the row marginals to ``tol``.

    Stopping and host syncs: the row-marginal error
    :math:`\max_{\text{batch}} \|P\mathbf 1 - a\|_1` is obtained for free from the next ``f``
    update and compared with ``tol`` only every ``check_every`` iterations; each check is one host
    sync (a ``float()`` of a scalar). No other sync happens in the loop, except one at the start
    when ``epsilon_scaling`` is set (to read ``max C`` and size the schedule). Batched problems
    stop together when the worst one meets ``tol``. ``tol=1e-9`` is below float32 resolution:
    float32 inputs then run ``max_iter`` iterations, so pass a larger ``tol`` for them.

    Speed-up in envelope mode: once the marginal error is below ``1e-2``, iterations run in
    blocks of ``check_every`` with the kernel :math:`G = \exp((f \oplus g - C)/\varepsilon)`
    rebuilt from the current log-domain potentials at the start of each block and scaling-domain
    multipliers absorbed back into the potentials at its end (Schmitzer's absorption, POT's
    ``sinkhorn_stabilized``): two matrix-vector products per iteration instead of two
    log-sum-exps, with the same fixed point. A block that under- or overflows is discarded and
    the solver stays in the log domain from then on. Each block costs one or two host syncs.
    ``grad="unroll"`` always iterates in the log domain.

    Gradients:
        * ``grad="envelope"`` (default): the loop runs under ``torch.no_grad`` and ``value`` is
          the dual objective evaluated at the detached optimal potentials with ``a``, ``b``,
          ``cost`` attached, so by the envelope (Danskin) theorem
          :math:`\partial \mathrm{OT}_\varepsilon / \partial C = P`,
          :math:`\partial/\partial a = f`, :math:`\partial/\partial b = g` (up to the marginal
          error). Memory does not grow with the iterations. Only first derivatives of ``value``
          are exact; ``plan``, ``f`` and ``g`` are returned detached.
        * ``grad="unroll"``: autograd records every iteration (memory grows with ``n_iter``);
          ``plan``, ``f``, ``g`` and ``value`` are all differentiable.

    Epsilon scaling: with ``epsilon_scaling=s`` in (0, 1), the loop first runs one update per
    temperature of the schedule :math:`\varepsilon_k = \max C \cdot s^k > \varepsilon`
    (geometric, from the largest cost down to ``epsilon``; the middle part of
    :func:`inforeg.ot.epsilon_schedule` with ``p = 1``), warm-starting each temperature from the
    last, then iterates at ``epsilon`` until ``tol``. This cuts the iteration count when
    ``epsilon`` is small. The iterations are the alternating mode of the Sinkhorn loop shared
    with :func:`inforeg.ot.sinkhorn_divergence` and
    :func:`inforeg.ot.log_sinkhorn_correspondence`.

    Args:
        a: source weights ``(*batch_a, n)`` summing to one (``None``: uniform).
        b: target weights ``(*batch_b, m)`` summing to one (``None``: uniform). Rescaled to the
            mass of ``a`` (a detached factor), so that rounding (bfloat16 weights differ in mass
            by up to ~1e-3) leaves a balanced problem.
        cost: cost matrix ``(*batch_c, n, m)``; the three batch shapes broadcast.
        epsilon: entropic regularisation, > 0, in cost units.
        max_iter: maximum number of (f, g) update pairs, including scaling steps.
        tol: tolerance on the L1 row-marginal error.
        grad: ``"envelope"`` or ``"unroll"`` (see above).
        epsilon_scaling: ``None`` (off) or the geometric factor in (0, 1).
        check_every: iterations between two convergence checks (host syncs).
        normalize: divide ``a`` and ``b`` by their sums instead of requiring unit mass.
            Negative or non-normalised marginals raise ``ValueError`` under ``"full"`` checks.

    Returns:
        :class:`inforeg.ot.OTResult` with ``plan (*batch, n, m)``, ``value (*batch)``,
        ``f (*batch, n)``, ``g (*batch, m)``, ``n_iter`` and ``converged``. Half-precision inputs
        are solved in float32 and returned in the input dtype.

    Example:
        >>> c = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        >>> r = sinkhorn(None, None, c, epsilon=1e-3)
        >>> r.plan.diagonal().tolist()
        [0.5, 0.5]
    """
    epsilon = check_positive(epsilon, "epsilon")
    max_iter = check_int(max_iter, "max_iter", low=1)
    check_every = check_int(check_every, "check_every", low=1)
    tol = check_number(tol, "tol", low=0.0)
    check_choice(grad, "grad", ("envelope", "unroll"))
    if epsilon_scaling is not None:
        epsilon_scaling = check_number(
            epsilon_scaling,
            "epsilon_scaling",
            low=0.0,
            high=1.0,
            low_inclusive=False,
            high_inclusive=False,
        )
    a, b, cost, in_dtype = prepare_problem(a, b, cost, normalize)

    schedule: list[float] = []
    if epsilon_scaling is not None:
        # one host sync, to size the schedule
        cmax = finite_diameter(float(cost.detach().abs().amax()), epsilon)
        if cmax > epsilon:
            # The temperatures strictly between max C and epsilon (the loop then runs at epsilon).
            schedule = epsilon_schedule(1, cmax, epsilon, epsilon_scaling)[1:-1]

    unroll = grad == "unroll"
    with torch.set_grad_enabled(unroll and torch.is_grad_enabled()):
        a_in = a if unroll else a.detach()
        b_in = b if unroll else b.detach()
        softmin = MatrixSoftmin(cost if unroll else cost.detach())
        loga, logb = log_weights(a_in), log_weights(b_in)
        loop = sinkhorn_loop(
            softmin,
            loga,
            logb,
            schedule,
            epsilon,
            tol=tol,
            max_iter=max_iter,
            check_every=check_every,
            block=None if unroll else partial(_kernel_block, softmin, a_in, b_in),
            block_below=_SWITCH_TOL,
        )
    f, g = loop.potentials.f, loop.potentials.g
    n_iter, converged = loop.n_iter, loop.converged

    if unroll:
        value, plan = _dual_value(a, b, cost, f, g, epsilon)
    else:
        f, g = f.detach(), g.detach()
        with torch.no_grad():
            plan = torch.exp(softmin.log_plan(epsilon, loga, logb, f, g))
        needs_grad = torch.is_grad_enabled() and (
            a.requires_grad or b.requires_grad or cost.requires_grad
        )
        if needs_grad:  # envelope: the dual objective with the inputs attached
            value, _ = _dual_value(a, b, cost, f, g, epsilon)
        else:
            mass = plan.sum((-2, -1))
            value = (a * f).sum(-1) + (b * g).sum(-1) - epsilon * (mass - a.sum(-1) * b.sum(-1))
    return OTResult(
        plan=plan.to(in_dtype),
        value=value.to(in_dtype),
        f=f.to(in_dtype),
        g=g.to(in_dtype),
        n_iter=n_iter,
        converged=converged,
    )


class Sinkhorn(torch.nn.Module):
    """Module form of :func:`sinkhorn`: stores the hyper-parameters, returns an ``OTResult``.

    Args:
        epsilon: entropic regularisation (cost units).
        max_iter, tol, grad, epsilon_scaling, check_every, normalize: as in :func:`sinkhorn`.
    """

    def __init__(
        self,
        epsilon: float,
        max_iter: int = 1000,
        tol: float = 1e-9,
        grad: GradMode = "envelope",
        epsilon_scaling: float | None = None,
        check_every: int = 10,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.epsilon = check_positive(epsilon, "epsilon")
        self.max_iter = max_iter
        self.tol = tol
        self.grad: GradMode = grad
        self.epsilon_scaling = epsilon_scaling
        self.check_every = check_every
        self.normalize = normalize

    def forward(self, a: Tensor | None, b: Tensor | None, cost: Tensor) -> OTResult:
        """Solve the entropic OT problem(s) of ``cost`` with marginals ``a``, ``b``."""
        return sinkhorn(
            a,
            b,
            cost,
            self.epsilon,
            max_iter=self.max_iter,
            tol=self.tol,
            grad=self.grad,
            epsilon_scaling=self.epsilon_scaling,
            check_every=self.check_every,
            normalize=self.normalize,
        )
