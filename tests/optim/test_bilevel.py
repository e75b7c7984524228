"""MAID and the inexact hypergradient against exact hypergradients of quadratic bilevel problems
(spec §9 oracles)."""

from __future__ import annotations

import pytest
import torch

from inforeg.optim import MAID, gradient_descent_solver, inexact_hypergradient

D = torch.float64


def _ridge(seed=0, n=5):
    """g = 1/2 ||x - y||^2 + 1/2 sum e^theta x^2, f = 1/2 ||x - x_t||^2, x_hat = y / (1 + e^theta)."""
    g = torch.Generator().manual_seed(seed)
    y = 1.0 + torch.rand(n, generator=g, dtype=D) * 2.0
    x_t = y * (0.2 + 0.6 * torch.rand(n, generator=g, dtype=D))  # reachable: F* = 0

    def lower(x, th):
        return 0.5 * ((x - y) ** 2).sum() + 0.5 * (th.exp() * x**2).sum()

    def upper(x):
        return 0.5 * ((x - x_t) ** 2).sum()

    def x_hat(th):
        return y / (1 + th.exp())

    def exact_grad(th):
        e = th.exp()
        return (x_hat(th) - x_t) * (-y * e / (1 + e) ** 2)

    return lower, upper, x_hat, exact_grad, y


def _maid(lower, upper, solver, theta, x, **kw):
    """MAID on a problem with mu = 1 and L_f = 1 (the ridge oracles), seeded probes."""
    kw = {"mu": 1.0, "lipschitz_upper": 1.0, "generator": torch.Generator().manual_seed(0), **kw}
    return MAID(lower, upper, solver, theta, x, **kw)


def test_hypergradient_matches_the_closed_form():
    lower, upper, x_hat, exact_grad, _ = _ridge()
    theta = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0], dtype=D)
    out = inexact_hypergradient(lower, upper, x_hat(theta), theta, tol=1e-12)
    assert (out.grad - exact_grad(theta)).abs().max() < 1e-8
    assert out.grad.shape == theta.shape and out.q.shape == theta.shape
    assert 1 <= out.cg_iters <= 5  # diagonal Hessian with 5 distinct eigenvalues


def test_hypergradient_against_autograd_through_an_exact_solve():
    """Non-diagonal lower level, x and theta of different shapes (x (3, 2), theta scalar)."""
    g = torch.Generator().manual_seed(1)
    a = torch.randn(10, 6, generator=g, dtype=D)
    b = torch.randn(10, generator=g, dtype=D)
    c = torch.randn(6, 6, generator=g, dtype=D)

    def lower(x, th):
        v = x.reshape(-1)
        return 0.5 * ((a @ v - b) ** 2).sum() + 0.5 * th.exp() * (v**2).sum() + th * v.sum()

    def upper(x):
        return 0.5 * ((c @ x.reshape(-1) - 1.0) ** 2).sum()

    def solve(th):
        h = a.T @ a + th.exp() * torch.eye(6, dtype=D)
        return torch.linalg.solve(h, a.T @ b - th).reshape(3, 2)

    theta = torch.tensor(0.3, dtype=D, requires_grad=True)
    (ref,) = torch.autograd.grad(upper(solve(theta)), theta)
    out = inexact_hypergradient(lower, upper, solve(theta).detach(), theta.detach(), tol=1e-12)
    assert out.grad.shape == theta.shape and out.q.shape == (3, 2)
    assert abs(float(out.grad - ref)) < 1e-8


def test_gradient_descent_solver_certificate():
    lower, _, x_hat, _, y = _ridge()
    theta = torch.tensor([-1.0, 0.0, 0.5, 1.0, 2.0], dtype=D)
    solver = gradient_descent_solver(lower, mu=1.0, L=1.0 + float(theta.exp().max()))
    for eps in (1e-1, 1e-4, 1e-8):
        x = solver(theta, torch.zeros_like(y), eps)
        assert float((x - x_hat(theta)).norm()) <= eps
    first = solver.iterations
    solver(theta, x_hat(theta), 1e-3)  # already solved: one gradient evaluation
    assert solver.iterations == first + 1


def test_maid_with_eps_accurate_solver_decreases_the_exact_objective():
    """A solver that returns x_hat + (eps / 2) * unit (the worst case allowed) never makes MAID
    accept a step that increases the exact F, and F falls 100x within 60 steps."""
    lower, upper, x_hat, exact_grad, y = _ridge(seed=2)
    unit = torch.ones_like(y) / y.numel() ** 0.5

    def solver(th, x_init, eps):
        return x_hat(th) + 0.5 * eps * unit

    def exact_f(th):
        return float(upper(x_hat(th)))

    theta = torch.zeros_like(y)
    maid = _maid(lower, upper, solver, theta, x_hat(theta))
    f0 = exact_f(theta)
    previous = f0
    for _ in range(60):
        if maid.step():
            now = exact_f(maid.theta)
            assert now < previous
            previous = now
    assert exact_f(maid.theta) < f0 / 100
    assert sum(h["accepted"] for h in maid.history) >= 10
    assert [set(h) for h in maid.history[:1]] == [
        {"upper", "eps", "delta", "step_size", "accepted", "omega_ratio", "ll_iters", "cg_iters"}
    ]


def test_inexact_hypergradient_has_the_sign_of_the_exact_one():
    lower, upper, x_hat, exact_grad, y = _ridge(seed=3)
    theta = torch.tensor([-0.5, 0.0, 0.3, 0.8, 1.5], dtype=D)
    exact = exact_grad(theta)
    eps = 0.2 * float(exact.abs().min())
    x_tilde = x_hat(theta) + eps * torch.ones_like(y) / y.numel() ** 0.5
    out = inexact_hypergradient(lower, upper, x_tilde, theta, tol=eps)
    assert torch.equal(torch.sign(out.grad), torch.sign(exact))


def _quadratic_bilevel(seed=0, n=40, m=4):
    """The authors' Quadratic.py problem, scaled down and with centred (better conditioned)
    matrices: F is a least-squares problem in theta."""
    g = torch.Generator().manual_seed(seed)
    a1, a2, a3 = (torch.randn(n, m, generator=g, dtype=D) for _ in range(3))
    b1 = a1 @ torch.rand(m, generator=g, dtype=D) + 0.01 * torch.randn(n, generator=g, dtype=D)
    b2 = a2 @ torch.rand(m, generator=g, dtype=D) + a3 @ torch.rand(m, generator=g, dtype=D)

    def lower(x, th):
        return 0.5 * ((a2 @ x + a3 @ th - b2) ** 2).sum()

    def upper(x):
        return 0.5 * ((a1 @ x - b1) ** 2).sum()

    k = torch.linalg.solve(a2.T @ a2, a2.T)  # x_hat = k (b2 - a3 theta)
    lin = -a1 @ k @ a3
    theta_star = torch.linalg.lstsq(lin, b1 - a1 @ k @ b2).solution
    eig = torch.linalg.eigvalsh(a2.T @ a2)
    lf = float(torch.linalg.eigvalsh(a1.T @ a1)[-1])
    return lower, upper, float(eig[0]), float(eig[-1]), lf, float(upper(k @ (b2 - a3 @ theta_star)))


def test_maid_reaches_the_exact_optimum_of_a_quadratic_bilevel_problem():
    lower, upper, mu, big_l, lf, f_star = _quadratic_bilevel(seed=1)
    solver = gradient_descent_solver(lower, mu=mu, L=big_l)
    theta0 = torch.ones(4, dtype=D)
    x0 = solver(theta0, torch.zeros(4, dtype=D), 1e-3)
    maid = MAID(
        lower,
        upper,
        solver,
        theta0,
        x0,
        mu=mu,
        lipschitz_upper=lf,
        eps=1e-3,
        delta=1e-3,
        beta=0.01,
        rho=0.5,
        nu=1.25,
        generator=torch.Generator().manual_seed(0),
    )
    f_start = maid.f_old
    for _ in range(100):
        maid.step()
    assert f_start > 2 * f_star
    assert maid.history[-1]["upper"] < f_star + 1e-3 * (f_start - f_star)


def test_budget_and_fixed_eps():
    lower, upper, x_hat, _, y = _ridge()
    solver = gradient_descent_solver(lower, mu=1.0, L=20.0)
    theta = torch.zeros_like(y)
    maid = _maid(lower, upper, solver, theta, x_hat(theta), ll_budget=30)
    for _ in range(50):
        maid.step()
    assert maid.exhausted
    spent = maid.ll_iters
    assert not maid.step() and maid.ll_iters == spent  # no work once the budget is spent
    fixed = _maid(lower, upper, solver, theta, x_hat(theta), eps=1e-3, delta=1e-3, fixed_eps=True)
    for _ in range(5):
        fixed.step()
    assert {h["eps"] for h in fixed.history} == {1e-3}


def test_nonconvex_lower_level_raises():
    def lower(x, th):
        return -0.5 * (x**2).sum() + (th * x).sum()

    with pytest.raises(ValueError, match="lower"):
        inexact_hypergradient(
            lower, lambda x: (x**2).sum(), torch.ones(3, dtype=D), torch.ones(3, dtype=D)
        )


def test_bad_input():
    lower, upper, x_hat, _, y = _ridge()
    theta = torch.zeros_like(y)
    solver = gradient_descent_solver(lower, mu=1.0, L=2.0)
    kw = dict(mu=1.0, lipschitz_upper=1.0)
    with pytest.raises(TypeError, match="solver"):
        MAID(lower, upper, "gd", theta, y, **kw)
    with pytest.raises(TypeError, match="lower"):
        inexact_hypergradient(None, upper, y, theta)
    with pytest.raises(ValueError, match="mu"):
        MAID(lower, upper, solver, theta, y, mu=0.0, lipschitz_upper=1.0)
    for name, bad in [
        ("eta", 1.0),
        ("rho", 0.0),
        ("tau", 1.5),
        ("nu", 0.5),
        ("eps", -1.0),
        ("delta", 0.0),
        ("beta", 0.0),
        ("ll_budget", 0.0),
    ]:
        with pytest.raises(ValueError, match=name):
            MAID(lower, upper, solver, theta, y, **kw, **{name: bad})
    with pytest.raises(ValueError, match="max_retries"):
        MAID(lower, upper, solver, theta, y, **kw, max_retries=0)
    with pytest.raises(TypeError, match="theta"):
        MAID(lower, upper, solver, torch.zeros(5, dtype=torch.long), y, **kw)
    with pytest.raises(ValueError, match="x"):
        inexact_hypergradient(lower, upper, torch.zeros(0, dtype=D), theta)
    with pytest.raises(ValueError, match="tol"):
        inexact_hypergradient(lower, upper, y, theta, tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        inexact_hypergradient(lower, upper, y, theta, max_iter=0)
    with pytest.raises(ValueError, match="L"):
        gradient_descent_solver(lower, mu=2.0, L=1.0)
    with pytest.raises(ValueError, match="eps"):
        solver(theta, y, 0.0)
