"""Smooth (quadratically or entropically regularised) optimal transport, dual and semi-dual.

Reference: M. Blondel, V. Seguy, A. Rolet, "Smooth and Sparse Optimal Transport", AISTATS 2018
(arXiv:1710.06276). POT's ``ot.smooth`` is the reference implementation we test against.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from inforeg.core.checks import check_choice, check_int, check_number, check_positive
from inforeg.ot._common import OTResult, prepare_problem
from inforeg.ot._smooth_core import solve

__all__ = ["SmoothOT", "smooth_ot"]


def smooth_ot(
    a: Tensor | None,
    b: Tensor | None,
    cost: Tensor,
    gamma: float,
    regularizer: Literal["l2", "entropy"] = "l2",
    formulation: Literal["dual", "semi_dual"] = "dual",
    max_iter: int = 500,
    tol: float = 1e-9,
    normalize: bool = False,
    method: Literal["auto", "newton", "lbfgs"] = "auto",
) -> OTResult:
    r"""Regularised OT :math:`\min_{T \in U(a,b)} \langle T, C\rangle + \sum_j \Omega(t_j)` by its
    dual or semi-dual, maximised in torch (batched, differentiable): semismooth Newton for the
    quadratic semi-dual, L-BFGS otherwise.

    Regularisers (POT's conventions, ``gamma`` = POT's ``reg``):
        * ``"l2"``: :math:`\Omega(t) = \tfrac\gamma2 \|t\|^2`; dual conjugate
          :math:`\delta(s) = \tfrac1{2\gamma}\|[s]_+\|^2`, plan :math:`[s]_+/\gamma` (sparse plans);
          semi-dual :math:`\max\Omega_j(x) = x\cdot G - \tfrac{\gamma b_j}2\|G\|^2` with
          :math:`G = \mathrm{proj}_\Delta(x / (b_j\gamma))`.
        * ``"entropy"``: :math:`\Omega(t) = \gamma\sum_i t_i\log t_i`; dual
          :math:`\delta(s) = \gamma\sum_i e^{s_i/\gamma - 1}`; semi-dual
          :math:`\max\Omega_j(x) = \gamma\,\mathrm{LSE}(x/\gamma) - \gamma\log b_j`,
          :math:`G = \mathrm{softmax}(x/\gamma)`.

    .. math::
        \text{dual:}\ \max_{\alpha,\beta}\ a\cdot\alpha + b\cdot\beta
            - \sum_j \delta(\alpha + \beta_j - c_j), \qquad
        \text{semi-dual:}\ \max_\alpha\ a\cdot\alpha - \sum_j b_j \max\Omega_j(\alpha - c_j)

    The plan is recovered from the potentials: :math:`t_j = \nabla\delta(\alpha + \beta_j - c_j)`
    (dual) or :math:`t_j = b_j G_j` (semi-dual); the semi-dual's column marginals hold exactly,
    the row marginals to the solver tolerance.

    Solver (``method="auto"``): for ``"l2"`` with ``"semi_dual"``, a damped semismooth Newton
    method with continuation in ``gamma``: generalised Hessian :math:`-L/\gamma` with
    :math:`L = \sum_j (I_{S_j} - 1_{S_j}1_{S_j}^\top/|S_j|)` over the supports :math:`S_j` of the
    columns :math:`G_j`, steps :math:`(L + \nu I)d = \gamma\nabla` with Levenberg-Marquardt
    damping :math:`\nu` (dense Cholesky for ``n <= 512``, conjugate gradients above; see
    ``inforeg.ot._smooth_core._newton_semi_dual``). Otherwise (and as its fallback)
    L-BFGS (torch's algorithm: history 10, strong Wolfe line search) on the negated objective
    from zero potentials, like POT's scipy L-BFGS-B. ``method="lbfgs"`` forces L-BFGS,
    ``"newton"`` Newton (``"l2"`` semi-dual only). Both stop when the largest gradient entry is
    below ``tol`` or after ``max_iter`` iterations. L-BFGS also stops when it stalls: after its
    five restarts, an iteration that changes the objective or the potentials by less than
    ``tol * 1e-3``. In float64 at the default ``tol`` that often comes first on the dual and the
    entropic problems, with marginal errors near 1e-7 (POT's scipy run, stopped by its ``ftol``,
    ends at errors as large or larger), and ``converged`` is then False. Both read scalars on
    the host once per iteration (L-BFGS also once per line-search trial). Batched problems are
    solved together but each with its own steps, history, line search and stopping test, so a
    problem's result does not depend on the rest of its batch. Both solvers run with one
    intra-op thread on CPU problems with at most 2**18 cost entries (all batches together),
    restored afterwards: each iteration is many tiny tensor operations (and for Newton one
    ``n x n`` factorisation), for which thread hand-offs cost more than they save.

    Gradient: envelope theorem -- ``value`` is the objective at the detached optimal potentials
    with ``a``, ``b``, ``cost`` attached, so :math:`\partial\,\mathrm{value}/\partial C = T`,
    :math:`\partial/\partial a = \alpha`. ``plan``, ``f``, ``g`` are detached.

    Args:
        a: ``(*batch, n)`` source weights (``None``: uniform).
        b: ``(*batch, m)`` target weights (``None``: uniform). Rescaled to the mass of ``a`` (a
            detached factor): with unequal masses the duals are unbounded, and rounding alone
            (bfloat16 weights differ in mass by up to ~1e-3) makes them unequal.
        cost: ``(*batch, n, m)``.
        gamma: regularisation strength, > 0.
        regularizer: ``"l2"`` or ``"entropy"``.
        formulation: ``"dual"`` (``f = alpha``, ``g = beta``) or ``"semi_dual"`` (``f = alpha``,
            ``g_j = -max_Omega_j(alpha - c_j)`` so that ``value = a.f + b.g``, where the
            terms of zero-weight columns count as 0: with ``"entropy"`` their ``g_j`` is
            ``-inf``, and ``b_j g_j`` is then NaN rather than 0 if recomputed by hand).
        max_iter: solver iterations (POT's ``numItermax``, default 500).
        tol: gradient tolerance (POT's ``stopThr``, default 1e-9).
        normalize: divide the marginals by their sums.
        method: ``"auto"``, ``"newton"`` or ``"lbfgs"`` (see Solver).

    Returns:
        :class:`inforeg.ot.OTResult`; ``value`` is the optimal (semi-)dual objective, i.e. the
        regularised primal cost :math:`\langle T, C\rangle + \sum_j\Omega(t_j)` at convergence.
        Half inputs are solved in float32 and returned in the input dtype.

    Example:
        A permutation problem: the quadratic regulariser keeps the plan on the permutation, and
        the value is :math:`0 + \tfrac\gamma2 \|T\|^2 = 0.05 \cdot (0.25 + 0.25)`.

        >>> c = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
        >>> r = smooth_ot(None, None, c, gamma=0.1, formulation="semi_dual")
        >>> r.plan
        tensor([[0.5000, 0.0000],
                [0.0000, 0.5000]], dtype=torch.float64)
        >>> round(float(r.value), 12), r.converged
        (0.025, True)
    """
    gamma = check_positive(gamma, "gamma")
    check_choice(regularizer, "regularizer", ("l2", "entropy"))
    check_choice(formulation, "formulation", ("dual", "semi_dual"))
    check_choice(method, "method", ("auto", "newton", "lbfgs"))
    if method == "newton" and (regularizer != "l2" or formulation != "semi_dual"):
        raise ValueError("method='newton' needs regularizer='l2' and formulation='semi_dual'")
    max_iter = check_int(max_iter, "max_iter", low=1)
    tol = check_number(tol, "tol", low=0.0)
    a, b, cost, in_dtype = prepare_problem(a, b, cost, normalize)
    n = cost.shape[-2]
    r = solve(a, b, cost, gamma, regularizer, n, formulation, max_iter, tol, method=method)
    return _cast(r, in_dtype)


def _cast(r: OTResult, dtype: torch.dtype) -> OTResult:
    return OTResult(
        plan=r.plan.to(dtype),
        value=r.value.to(dtype),
        f=r.f.to(dtype),
        g=r.g.to(dtype),
        n_iter=r.n_iter,
        converged=r.converged,
    )


class _SolverModule(torch.nn.Module):
    """Module forms of :func:`smooth_ot` and :func:`inforeg.ot.sparse_ot`: the solver settings
    they share, checked at construction and passed on by :meth:`_settings`."""

    def __init__(
        self,
        formulation: Literal["dual", "semi_dual"],
        max_iter: int,
        tol: float,
        normalize: bool,
        method: Literal["auto", "newton", "lbfgs"],
    ) -> None:
        super().__init__()
        check_choice(formulation, "formulation", ("dual", "semi_dual"))
        check_choice(method, "method", ("auto", "newton", "lbfgs"))
        self.formulation = formulation
        self.max_iter = max_iter
        self.tol = tol
        self.normalize = normalize
        self.method = method

    def _settings(self) -> dict[str, Any]:
        keys = ("formulation", "max_iter", "tol", "normalize", "method")
        return {key: getattr(self, key) for key in keys}


class SmoothOT(_SolverModule):
    """Module form of :func:`smooth_ot` (stores the hyper-parameters)."""

    def __init__(
        self,
        gamma: float,
        regularizer: Literal["l2", "entropy"] = "l2",
        formulation: Literal["dual", "semi_dual"] = "dual",
        max_iter: int = 500,
        tol: float = 1e-9,
        normalize: bool = False,
        method: Literal["auto", "newton", "lbfgs"] = "auto",
    ) -> None:
        super().__init__(formulation, max_iter, tol, normalize, method)
        self.gamma = check_positive(gamma, "gamma")
        check_choice(regularizer, "regularizer", ("l2", "entropy"))
        self.regularizer: Literal["l2", "entropy"] = regularizer

    def forward(self, a: Tensor | None, b: Tensor | None, cost: Tensor) -> OTResult:
        """Solve the regularised OT problem(s)."""
        return smooth_ot(a, b, cost, self.gamma, self.regularizer, **self._settings())
