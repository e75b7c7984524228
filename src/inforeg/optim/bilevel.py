r"""MAID: an adaptively inexact first-order method for bilevel problems.

Salehi, Mukherjee, Roberts & Ehrhardt, "An adaptively inexact first-order method for bilevel
optimization with application to hyperparameter learning", SIAM Journal on Mathematics of Data
Science, arXiv 2308.10098; authors' code ``MohammadSadeghSalehi/MAID`` (``MAID.py``,
``Quadratic.py``).

The problem is :math:`\min_\theta F(\theta) = f(\hat x(\theta))` with
:math:`\hat x(\theta) = \arg\min_x g(x, \theta)`, :math:`g` :math:`\mu`-strongly convex in
:math:`x`. MAID solves the lower level only to accuracy :math:`\epsilon` and the adjoint linear
system only to residual :math:`\delta`, and adapts both: it tightens them while an a-posteriori
error estimate :math:`\omega` of the hypergradient is not small relative to its norm, or when a
backtracking line search on a certified upper bound of the new objective fails, and loosens them
after each success.

Where inforeg follows the authors' code rather than the paper (the paper's constants were not
read):

- The sufficient-decrease test uses :math:`\eta^2`, as ``MAID.py`` does (checked at
  ``6986372``); the paper's constant was not read.
- :math:`f_\text{old}` in that test is the stored upper value of the last *accepted* iterate
  (initially :math:`f` at the ``x`` passed in), while :math:`\|\nabla f\|` is taken at the freshly
  re-solved :math:`\tilde x` (code).
- The constants :math:`L_B`, :math:`L_{H^{-1}}` of :math:`\omega` are the code's running maxima of
  one random probe each: heuristics, not bounds, so :math:`\|p - \nabla F\| \le \omega` is not
  promised.
- The lower solver of :func:`gradient_descent_solver` stops on :math:`\|\nabla_x g\|/\mu \le
  \epsilon`, a certificate of :math:`\|x - \hat x\| \le \epsilon`, as the authors' TV, FoE and
  regression solvers do; their ``Quadratic.py`` stops at :math:`\|\nabla_x g\|/(2\mu)`, which
  certifies only :math:`2\epsilon`.

Everything here runs on the host's schedule: conjugate gradients and the solvers compare norms
with tolerances every iteration (one synchronisation each), as any iterative solver must.

Example (the doctest below): ridge lower level :math:`g = \frac12(x-y)^2 + \frac12 e^\theta x^2`,
upper :math:`f = \frac12(x - x_t)^2` with :math:`y = 2, x_t = 0.5, \theta = 0`:
:math:`\hat x = 1` and :math:`F'(0) = (1 - 0.5)\cdot(-2/4) = -0.25`.

>>> import torch
>>> lower = lambda x, th: 0.5 * ((x - 2.0) ** 2).sum() + 0.5 * (th.exp() * x**2).sum()
>>> upper = lambda x: 0.5 * ((x - 0.5) ** 2).sum()
>>> out = inexact_hypergradient(lower, upper, torch.ones(1, dtype=torch.float64),
...                             torch.zeros(1, dtype=torch.float64))
>>> round(float(out.grad), 6), out.cg_iters
(-0.25, 1)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from inforeg.core.checks import (
    check_autograd,
    check_int,
    check_number,
    check_positive,
    check_tensor,
)

__all__ = [
    "MAID",
    "HypergradientOutput",
    "LowerSolver",
    "gradient_descent_solver",
    "inexact_hypergradient",
]

LowerObjective = Callable[[Tensor, Tensor], Tensor]
UpperObjective = Callable[[Tensor], Tensor]

# tau ** 60 is below 1e-18 for the default tau = 0.5: enough to rule out an endless loop when the
# hypergradient vanishes (omega / ||p|| is then infinite) without ever binding in practice
_MAX_TIGHTENINGS = 60


class LowerSolver(Protocol):
    """``solver(theta, x_init, eps)`` returns ``x`` with :math:`\\|x - \\hat x(\\theta)\\| \\le
    \\epsilon`. A solver may expose an int attribute ``iterations`` (a running count of its work,
    e.g. gradient evaluations); :class:`MAID` then charges the difference to its budget, and one
    unit per call otherwise."""

    def __call__(self, theta: Tensor, x_init: Tensor, eps: float) -> Tensor: ...


class HypergradientOutput(NamedTuple):
    """``grad`` (the hypergradient estimate :math:`p`, shaped like ``theta``), ``q`` (the adjoint
    solution, shaped like ``x``) and ``cg_iters`` (conjugate-gradient iterations used)."""

    grad: Tensor
    q: Tensor
    cg_iters: int


def _check_callable(obj: object, name: str) -> None:
    if not callable(obj):
        raise TypeError(f"{name}: expected a callable, got {type(obj).__name__}")


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum()


def _grad_x(lower: LowerObjective, x: Tensor, theta: Tensor) -> Tensor:
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(lower(xg, theta.detach()), xg)[0]


def _upper_value_and_grad(upper: UpperObjective, x: Tensor) -> tuple[Tensor, Tensor]:
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        value = upper(xg)
        (grad,) = torch.autograd.grad(value, xg)
    return value.detach(), grad


def _hessian_vector_product(
    lower: LowerObjective, x: Tensor, theta: Tensor
) -> Callable[[Tensor], Tensor]:
    """``v -> ∇²_xx g(x, θ) v`` by double back-propagation (one graph, reused)."""
    xg = x.detach().requires_grad_(True)
    with torch.enable_grad():
        gx = torch.autograd.grad(lower(xg, theta.detach()), xg, create_graph=True)[0]

    def hvp(v: Tensor) -> Tensor:
        if not gx.requires_grad:  # g linear in x: zero Hessian
            return torch.zeros_like(v)
        return torch.autograd.grad(gx, xg, v, retain_graph=True)[0]

    return hvp


def _mixed_product(
    lower: LowerObjective, x: Tensor, theta: Tensor, v: Tensor, transpose: bool = False
) -> Tensor:
    r""":math:`\nabla_\theta \langle \nabla_x g(x, \theta), v\rangle` (shaped like theta), or
    with ``transpose`` :math:`\nabla_x \langle \nabla_\theta g(x, \theta), v\rangle` (like x)."""
    xg = x.detach().requires_grad_(True)
    th = theta.detach().requires_grad_(True)
    first, second = (th, xg) if transpose else (xg, th)
    with torch.enable_grad():
        g_first = torch.autograd.grad(lower(xg, th), first, create_graph=True)[0]
        (out,) = torch.autograd.grad(_dot(g_first, v), second, allow_unused=True)
    return torch.zeros_like(second) if out is None else out.detach()


def _conjugate_gradient(
    hvp: Callable[[Tensor], Tensor], b: Tensor, tol: float, max_iter: int
) -> tuple[Tensor, int]:
    """Solve ``H q = b`` from ``q = 0`` until ``||r|| <= tol`` or ``max_iter`` iterations."""
    q = torch.zeros_like(b)
    r = b.detach().clone()
    d = r.clone()
    rs = float(_dot(r, r))
    iters = 0
    while math.sqrt(rs) > tol and iters < max_iter:
        hd = hvp(d)
        curvature = float(_dot(d, hd))
        if not curvature > 0.0:
            raise ValueError(
                "lower: expected a Hessian in x that is positive definite (g strongly convex in "
                f"x), got curvature {curvature:.3g} along a conjugate-gradient direction"
            )
        alpha = rs / curvature
        q = q + alpha * d
        r = r - alpha * hd
        rs_new = float(_dot(r, r))
        d = r + (rs_new / rs) * d
        rs = rs_new
        iters += 1
    return q, iters


def inexact_hypergradient(
    lower: LowerObjective,
    upper: UpperObjective,
    x: Tensor,
    theta: Tensor,
    tol: float = 1e-6,
    max_iter: int = 2000,
) -> HypergradientOutput:
    r"""Hypergradient of :math:`F(\theta) = f(\hat x(\theta))` at an approximate solution.

    .. math::

        \nabla^2_{xx} g(\tilde x, \theta)\, q = \nabla f(\tilde x) \quad
        \text{(conjugate gradients, } \|r\| \le \delta\text{)}, \qquad
        p = -\nabla_\theta \big\langle \nabla_x g(\tilde x, \theta), q \big\rangle,

    the implicit-function formula :math:`\nabla F = -(\partial_\theta\nabla_x g)^\top
    (\nabla^2_{xx} g)^{-1}\nabla f`; :math:`p \to \nabla F(\theta)` as
    :math:`\tilde x \to \hat x(\theta)` and :math:`\delta \to 0`. Hessian-vector and
    Jacobian-vector products come from double back-propagation; CG starts from :math:`q = 0`
    (as in ``MAID.py``). Nothing is differentiable through the result (it is detached).

    Args:
        lower: ``lower(x, theta) -> scalar`` :math:`g`, strongly convex in ``x``.
        upper: ``upper(x) -> scalar`` :math:`f`.
        x: the approximate lower-level solution :math:`\tilde x` (any shape).
        theta: the hyper-parameters (any shape).
        tol: CG residual tolerance :math:`\delta` > 0 (default 1e-6).
        max_iter: CG iteration cap (default 2000, the authors' value).

    Returns:
        :class:`HypergradientOutput` ``(grad, q, cg_iters)``.

    Raises:
        TypeError: ``lower``/``upper`` not callable, ``x``/``theta`` not floating tensors.
        ValueError: empty tensors, ``tol``/``max_iter`` out of range, or a Hessian that is not
            positive definite along a CG direction.
        RuntimeError: under ``torch.inference_mode``, which forbids the inner gradients (it runs
            under ``torch.no_grad``).
    """
    _check_callable(lower, "lower")
    _check_callable(upper, "upper")
    check_tensor(x, "x", floating=True)
    check_tensor(theta, "theta", floating=True)
    check_positive(tol, "tol")
    check_int(max_iter, "max_iter", low=1)
    check_autograd("inexact_hypergradient")
    _, grad_f = _upper_value_and_grad(upper, x)
    return _hypergradient(lower, grad_f, x, theta, tol, max_iter)


def _hypergradient(
    lower: LowerObjective, grad_f: Tensor, x: Tensor, theta: Tensor, tol: float, max_iter: int
) -> HypergradientOutput:
    q, iters = _conjugate_gradient(_hessian_vector_product(lower, x, theta), grad_f, tol, max_iter)
    return HypergradientOutput(-_mixed_product(lower, x, theta, q), q, iters)


class _GradientDescentSolver:
    """Fixed-step gradient descent on ``lower(., theta)`` with a strong-convexity certificate."""

    def __init__(self, lower: LowerObjective, mu: float, lipschitz: float, max_iter: int) -> None:
        self.lower = lower
        self.mu = mu
        self.step = 1.0 / lipschitz
        self.max_iter = max_iter
        #: running count of gradient evaluations (read by :class:`MAID` for its budget)
        self.iterations = 0

    def __call__(self, theta: Tensor, x_init: Tensor, eps: float) -> Tensor:
        check_positive(eps, "eps")
        check_autograd("gradient_descent_solver")
        x = x_init.detach().clone()
        for _ in range(self.max_iter):
            g = _grad_x(self.lower, x, theta)
            self.iterations += 1
            if float(torch.linalg.vector_norm(g)) / self.mu <= eps:
                break
            x = x - self.step * g
        return x.detach()


def gradient_descent_solver(
    lower: LowerObjective, mu: float, L: float, max_iter: int = 10**4
) -> _GradientDescentSolver:
    r"""A lower-level solver for :class:`MAID`: gradient descent with step :math:`1/L`.

    ``solver(theta, x_init, eps)`` iterates :math:`x \leftarrow x - \nabla_x g(x, \theta)/L` from
    ``x_init`` and stops as soon as

    .. math::

        \|\nabla_x g(x, \theta)\| / \mu \le \epsilon,

    which for :math:`\mu`-strongly convex :math:`g` certifies :math:`\|x - \hat x(\theta)\| \le
    \epsilon` (as the authors' TV, FoE and regression solvers; their ``Quadratic.py`` divides by
    :math:`2\mu`, half the certificate). It returns the detached ``x``; after ``max_iter`` gradient evaluations it
    returns the last iterate uncertified. Its ``iterations`` attribute counts gradient
    evaluations over all calls.

    Args:
        lower: ``lower(x, theta) -> scalar``.
        mu: strong-convexity constant :math:`\mu > 0` of :math:`g` in :math:`x`.
        L: Lipschitz constant of :math:`\nabla_x g` (:math:`L \ge \mu`).
        max_iter: gradient evaluations per call (default 10 000).

    >>> import torch
    >>> solve = gradient_descent_solver(lambda x, th: 0.5 * ((x - th) ** 2).sum(), mu=1.0, L=1.0)
    >>> solve(torch.tensor([3.0]), torch.zeros(1), 1e-6), solve.iterations
    (tensor([3.]), 2)
    """
    _check_callable(lower, "lower")
    m = check_positive(mu, "mu")
    check_positive(L, "L")
    check_number(L, "L", low=m)
    check_int(max_iter, "max_iter", low=1)
    return _GradientDescentSolver(lower, m, float(L), max_iter)


class MAID:
    r"""MAID: adaptively inexact gradient descent on :math:`F(\theta) = f(\hat x(\theta))`.

    Each :meth:`step` does, with the current accuracies :math:`\epsilon, \delta`:

    1. Re-solve :math:`\tilde x = \mathrm{solver}(\theta, x, \epsilon)` and compute
       :math:`p` by :func:`inexact_hypergradient` with CG tolerance :math:`\delta`.
    2. Estimate the hypergradient error (the code's a-posteriori bound)

       .. math::

           B = \max\big|\nabla_x\langle\nabla_\theta g(\tilde x,\theta), p\rangle\big|,\quad
           L_B \leftarrow \max\Big(L_B, \frac{\|-J(\xi)q - p\|}{\|q\|}\Big),\quad
           L_{H^{-1}} \leftarrow \max\Big(L_{H^{-1}}, \frac{\|q(\xi) - q\|}{\|\nabla f(\tilde x)\|}
           \Big),\\
           c = \frac{B}{\mu} + L_{H^{-1}}\|\nabla f(\tilde x)\| B
           + \frac{L_B\|\nabla f(\tilde x)\|}{\mu}, \qquad
           \omega = c\,\epsilon + \frac{B}{\mu}\delta + \frac{L_B}{\mu}\epsilon^2,

       with :math:`\xi \sim N(0, I)` (the Jacobian :math:`J(\xi)q = \nabla_\theta\langle\nabla_x
       g(\xi, \theta), q\rangle` and the CG solve :math:`q(\xi)` re-evaluated at the random point
       itself, as in ``MAID.py``). While :math:`\omega/\|p\| > 1 - \eta`:
       :math:`\epsilon \leftarrow \tau\epsilon, \delta \leftarrow \tau\delta` and go back to 1.
    3. Backtrack, :math:`i = 0, 1, \dots, j + 9` (:math:`j` = retry index):
       :math:`\theta^+ = \theta - \beta\rho^i p`, :math:`x^+ = \mathrm{solver}(\theta^+, \tilde x,
       \epsilon)`; accept when

       .. math::

           f(x^+) + \|\nabla f(x^+)\|\epsilon + \tfrac{L_f}{2}\epsilon^2 - f_\text{old}
           + \|\nabla f(\tilde x)\|\epsilon \le -\beta\rho^i\eta^2\|p\|^2

       (an upper bound of the new exact objective minus a lower bound of the old one, for convex
       :math:`f`). On acceptance :math:`\beta \leftarrow \frac{10}{9}\beta\rho^i`,
       :math:`\epsilon \leftarrow \nu\epsilon`, :math:`\delta \leftarrow \nu\delta`. When every
       :math:`i` fails: :math:`\epsilon \leftarrow \tau\epsilon, \delta \leftarrow \tau\delta` and
       retry from 1 (at most ``max_retries`` times; the step is then rejected).

    Work is charged to a budget of lower-level iterations (``ll_budget``); once it is spent,
    :meth:`step` returns ``False`` without work and :attr:`exhausted` is set. Defaults follow
    ``MAID.py``: :math:`\epsilon_0 = \delta_0 = 0.1`, :math:`\eta = 10^{-4}`, :math:`\rho = 0.9`,
    :math:`\tau = 0.5`, :math:`\beta_0 = 0.1`, :math:`\nu = 1.05`, 3 retries, budget
    :math:`10^6` (the signature's defaults; the released TV, FoE and quadratic examples pass
    :math:`\rho = 0.5`, :math:`\beta_0 = 0.01`). ``fixed_eps=True`` is the code's fixed-accuracy variant (no tightening or
    loosening of :math:`\epsilon, \delta`; ``j + 4`` backtracking steps). See the module
    docstring for where inforeg follows the code over the paper.

    Args:
        lower: ``lower(x, theta) -> scalar`` :math:`g`, :math:`\mu`-strongly convex in ``x``.
        upper: ``upper(x) -> scalar`` :math:`f` (convex, :math:`L_f`-smooth).
        solver: a :class:`LowerSolver`, e.g. :func:`gradient_descent_solver`.
        theta: initial hyper-parameters (copied).
        x: initial lower-level iterate (copied); :math:`f(x)` is the first :math:`f_\text{old}`
            (the code's convention), so pass an approximate lower-level solution.
        mu: :math:`\mu > 0`. lipschitz_upper: :math:`L_f \ge 0`.
        eps, delta: initial accuracies > 0. eta: in (0, 1). rho, tau: in (0, 1). beta: initial
            step > 0. nu: loosening factor >= 1. max_retries: >= 1. ll_budget: > 0.
        fixed_eps: keep :math:`\epsilon, \delta` fixed (the code's ``fixed_eps`` baseline).
        generator: random generator for the probes :math:`\xi` (reproducibility).

    Attributes:
        theta, x, eps, delta, beta: current values. history: one dict per :meth:`step` with
        ``upper`` (:math:`f_\text{old}` after the step), ``eps``, ``delta``, ``step_size`` (0 when
        rejected), ``accepted``, ``omega_ratio`` (:math:`\omega/\|p\|` of the last estimate),
        ``ll_iters`` and ``cg_iters`` (cumulative).

    >>> import torch
    >>> y, xt = torch.tensor([2.0, 1.0], dtype=torch.float64), torch.tensor([0.5, 0.5], dtype=torch.float64)
    >>> lower = lambda x, th: 0.5 * ((x - y) ** 2).sum() + 0.5 * (th.exp() * x**2).sum()
    >>> upper = lambda x: 0.5 * ((x - xt) ** 2).sum()
    >>> solver = lambda th, x0, eps: y / (1 + th.exp())  # exact lower-level solutions
    >>> theta0 = torch.zeros(2, dtype=torch.float64)
    >>> maid = MAID(lower, upper, solver, theta0, y / 2, mu=1.0, lipschitz_upper=1.0, beta=1.0,
    ...             generator=torch.Generator().manual_seed(0))
    >>> accepted = [maid.step() for _ in range(40)]
    >>> round(float(upper(y / (1 + maid.theta.exp()))), 3)  # exact F: from 0.125 towards 0
    0.0
    """

    def __init__(
        self,
        lower: LowerObjective,
        upper: UpperObjective,
        solver: LowerSolver,
        theta: Tensor,
        x: Tensor,
        *,
        mu: float,
        lipschitz_upper: float,
        eps: float = 0.1,
        delta: float = 0.1,
        eta: float = 1e-4,
        rho: float = 0.9,
        tau: float = 0.5,
        beta: float = 0.1,
        nu: float = 1.05,
        max_retries: int = 3,
        ll_budget: float = 1e6,
        fixed_eps: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        _check_callable(lower, "lower")
        _check_callable(upper, "upper")
        _check_callable(solver, "solver")
        check_tensor(theta, "theta", floating=True)
        check_tensor(x, "x", floating=True)
        self.mu = check_positive(mu, "mu")
        self.lipschitz_upper = check_number(lipschitz_upper, "lipschitz_upper", low=0.0)
        self.eps = check_positive(eps, "eps")
        self.delta = check_positive(delta, "delta")
        self.eta = check_number(
            eta, "eta", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
        )
        self.rho = check_number(
            rho, "rho", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
        )
        self.tau = check_number(
            tau, "tau", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
        )
        self.beta = check_positive(beta, "beta")
        self.nu = check_number(nu, "nu", low=1.0)
        self.max_retries = check_int(max_retries, "max_retries", low=1)
        self.ll_budget = check_positive(ll_budget, "ll_budget")
        if not isinstance(fixed_eps, bool):
            raise TypeError(f"fixed_eps: expected a bool, got {type(fixed_eps).__name__}")
        self.fixed_eps = fixed_eps
        self.generator = generator
        self.lower, self.upper, self.solver = lower, upper, solver
        self.theta = theta.detach().clone()
        self.x = x.detach().clone()
        check_autograd("MAID")
        self.f_old = float(_upper_value_and_grad(upper, self.x)[0])
        self.lipschitz_b = 0.0  # running maxima of the code's probes (start at 0 as in MAID.py)
        self.lipschitz_hinv = 0.0
        self.ll_iters = 0
        self.cg_iters = 0
        self.exhausted = False
        self.history: list[dict[str, Any]] = []

    # -- pieces -----------------------------------------------------------------------------
    def _solve(self, theta: Tensor, x_init: Tensor) -> Tensor:
        before = getattr(self.solver, "iterations", None)
        x = self.solver(theta, x_init, self.eps)
        after = getattr(self.solver, "iterations", None)
        counted = isinstance(before, int) and isinstance(after, int)
        self.ll_iters += (after - before) if counted else 1  # type: ignore[operator]
        if self.ll_iters > self.ll_budget:
            self.exhausted = True
        return x.detach()

    def _error_bound(self, x_t: Tensor, hg: HypergradientOutput, grad_f: Tensor) -> float:
        """The code's a-posteriori estimate omega (see the class docstring)."""
        p, q = hg.grad, hg.q
        grad_f_norm = float(torch.linalg.vector_norm(grad_f))
        b = float(_mixed_product(self.lower, x_t, self.theta, p, transpose=True).abs().max())
        xi = torch.randn(x_t.shape, generator=self.generator, dtype=x_t.dtype, device=x_t.device)
        q_norm = float(torch.linalg.vector_norm(q))
        if q_norm > 0.0:
            p_xi = -_mixed_product(self.lower, xi, self.theta, q)
            self.lipschitz_b = max(
                self.lipschitz_b, float(torch.linalg.vector_norm(p_xi - p)) / q_norm
            )
        if grad_f_norm > 0.0:
            hvp = _hessian_vector_product(self.lower, xi, self.theta)
            q_xi, iters = _conjugate_gradient(hvp, grad_f, self.delta, 2000)
            self.cg_iters += iters
            diff = float(torch.linalg.vector_norm(q_xi - q)) / grad_f_norm
            self.lipschitz_hinv = max(self.lipschitz_hinv, diff)
        mu, eps = self.mu, self.eps
        c = b / mu + self.lipschitz_hinv * grad_f_norm * b + self.lipschitz_b * grad_f_norm / mu
        return c * eps + (b / mu) * self.delta + (self.lipschitz_b / mu) * eps**2

    def _inexact_gradient(self) -> tuple[Tensor, Tensor, float, float]:
        """Re-solve and tighten until omega / ||p|| <= 1 - eta: (p, x_tilde, ||grad f||, ratio)."""
        for _ in range(_MAX_TIGHTENINGS):
            x_t = self._solve(self.theta, self.x)
            grad_f = _upper_value_and_grad(self.upper, x_t)[1]
            hg = _hypergradient(self.lower, grad_f, x_t, self.theta, self.delta, 2000)
            self.cg_iters += hg.cg_iters
            omega = self._error_bound(x_t, hg, grad_f)
            p_norm = float(torch.linalg.vector_norm(hg.grad))
            ratio = omega / p_norm if p_norm > 0.0 else (math.inf if omega > 0.0 else 0.0)
            if self.fixed_eps or ratio <= 1.0 - self.eta or self.exhausted:
                break
            self.eps *= self.tau
            self.delta *= self.tau
        self.x = x_t
        return hg.grad, x_t, float(torch.linalg.vector_norm(grad_f)), ratio

    def _backtrack(self, p: Tensor, x_t: Tensor, grad_f_norm: float, tries: int) -> float | None:
        """The accepted step size, or None (iterates unchanged)."""
        eps = self.eps
        p_sq = float(_dot(p, p))
        for i in range(tries):
            step = self.beta * self.rho**i
            theta_new = self.theta - step * p
            x_new = self._solve(theta_new, x_t)
            f_new, grad_new = _upper_value_and_grad(self.upper, x_new)
            upper_new = (
                float(f_new)
                + float(torch.linalg.vector_norm(grad_new)) * eps
                + self.lipschitz_upper * eps**2 / 2
            )
            lower_old = self.f_old - grad_f_norm * eps
            if upper_new - lower_old <= -step * self.eta**2 * p_sq:
                self.theta, self.x, self.f_old = theta_new, x_new, float(f_new)
                return step
            if self.exhausted:
                return None
        return None

    # -- public -----------------------------------------------------------------------------
    def step(self) -> bool:
        """One outer iteration; ``True`` when a step was accepted."""
        check_autograd("MAID.step")
        if self.exhausted:
            return False
        accepted, step_size, ratio = False, 0.0, math.nan
        for j in range(self.max_retries):
            p, x_t, grad_f_norm, ratio = self._inexact_gradient()
            tries = j + (5 if self.fixed_eps else 10)
            step = self._backtrack(p, x_t, grad_f_norm, tries)
            if step is not None:
                accepted, step_size = True, step
                self.beta = step * 10.0 / 9.0
                if not self.fixed_eps:
                    self.eps *= self.nu
                    self.delta *= self.nu
                break
            if self.exhausted:
                break
            if not self.fixed_eps:
                self.eps *= self.tau
                self.delta *= self.tau
        self.history.append(
            {
                "upper": self.f_old,
                "eps": self.eps,
                "delta": self.delta,
                "step_size": step_size,
                "accepted": accepted,
                "omega_ratio": ratio,
                "ll_iters": self.ll_iters,
                "cg_iters": self.cg_iters,
            }
        )
        return accepted

    def __repr__(self) -> str:
        return (
            f"MAID(eps={self.eps:.3g}, delta={self.delta:.3g}, beta={self.beta:.3g}, "
            f"steps={len(self.history)}, ll_iters={self.ll_iters}, cg_iters={self.cg_iters})"
        )
