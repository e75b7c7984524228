"""inforeg.ot._lbfgs: L-BFGS on a batch of independent problems.

A batch must give each problem the answer it gets alone (the old solver coupled them through one
history and line search), and a batch of one must take torch's L-BFGS steps (same algorithm,
constants and stopping tests), so that single solves did not change.
"""

from __future__ import annotations

import pytest
import torch

from inforeg.ot._lbfgs import _direction, batched_lbfgs

D64 = torch.float64


def _rosenbrock(x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row scaled Rosenbrock sum and its gradient (rows are independent problems)."""
    u, v = x[:, :-1], x[:, 1:]
    s = scale.unsqueeze(-1)
    f = (s * (v - u * u) ** 2 + (1 - u) ** 2).sum(-1)
    g = torch.zeros_like(x)
    g[:, :-1] += -4 * s * u * (v - u * u) - 2 * (1 - u)
    g[:, 1:] += 2 * s * (v - u * u)
    return f, g


def _torch_lbfgs(fun, x0: torch.Tensor, max_iter: int, tol: float, change: float):
    """torch.optim.LBFGS (history 10, strong Wolfe) minimising ``fun(x) -> (f, g)`` from ``x0``
    as one problem: the reference, and the solver inforeg used before."""
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [x],
        lr=1.0,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        tolerance_grad=tol,
        tolerance_change=change,
        history_size=10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        with torch.no_grad():
            f, g = fun(x)
        x.grad = g
        return f.sum()

    opt.step(closure)  # type: ignore[arg-type]
    return x.detach(), int(opt.state[opt._params[0]]["n_iter"])


@pytest.mark.parametrize("seed", range(4))
def test_a_batch_of_one_takes_torchs_steps(seed):
    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(1, 6, generator=gen, dtype=D64)
    scale = torch.tensor([10.0 + 20 * seed], dtype=D64)
    ours, n_ours = batched_lbfgs(lambda x: _rosenbrock(x, scale), x0, 200, 1e-10, 1e-14)
    ref, n_ref = _torch_lbfgs(lambda x: _rosenbrock(x, scale), x0, 200, 1e-10, 1e-14)
    assert n_ours == n_ref
    torch.testing.assert_close(ours, ref, atol=1e-9, rtol=0)


def test_each_problem_of_a_batch_is_solved_as_if_alone():
    gen = torch.Generator().manual_seed(5)
    x0 = torch.randn(5, 4, generator=gen, dtype=D64)
    scale = torch.tensor([1.0, 10.0, 100.0, 3.0, 50.0], dtype=D64)  # different conditioning

    def solve(rows: slice) -> torch.Tensor:
        return batched_lbfgs(lambda x: _rosenbrock(x, scale[rows]), x0[rows], 300, 1e-12, 1e-15)[0]

    together = solve(slice(None))
    for i in range(5):
        torch.testing.assert_close(together[i], solve(slice(i, i + 1))[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(together, torch.ones_like(together), atol=1e-6, rtol=0)


def test_a_problem_with_nonfinite_start_stops_and_leaves_the_others_alone():
    x0 = torch.tensor([[float("nan"), 0.0], [0.0, 0.0]], dtype=D64)
    scale = torch.tensor([10.0, 10.0], dtype=D64)
    out, _ = batched_lbfgs(lambda x: _rosenbrock(x, scale), x0, 200, 1e-10, 1e-14)
    assert torch.isnan(out[0, 0])
    torch.testing.assert_close(out[1], torch.ones(2, dtype=D64), atol=1e-6, rtol=0)


def test_the_compact_product_is_the_two_loop_recursion():
    gen = torch.Generator().manual_seed(0)
    hist, size = 4, 7
    a = torch.randn(size, size, generator=gen, dtype=D64)
    a = a @ a.T + size * torch.eye(size, dtype=D64)
    s_hist = torch.randn(3, hist, size, generator=gen, dtype=D64)
    y_hist = s_hist @ a  # positive curvature
    count = torch.tensor([4, 6, 2])  # full; wrapped round (oldest in slot 2); half empty
    g = torch.randn(3, size, generator=gen, dtype=D64)
    scale = torch.tensor([0.3, 0.7, 1.1], dtype=D64)
    got = _direction(g, s_hist, y_hist, count, scale)
    for i in range(3):
        kept = min(int(count[i]), hist)
        slots = [(int(count[i]) - kept + j) % hist for j in range(kept)]  # oldest first
        q, alphas = g[i].clone(), list[torch.Tensor]()
        for j in reversed(slots):
            s, y = s_hist[i, j], y_hist[i, j]
            alpha = (s @ q) / (s @ y)
            q, alphas = q - alpha * y, [alpha, *alphas]
        r = scale[i] * q
        for j, alpha in zip(slots, alphas):
            s, y = s_hist[i, j], y_hist[i, j]
            r = r + s * (alpha - (y @ r) / (s @ y))
        torch.testing.assert_close(got[i], -r, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_a_batch_of_one_takes_torchs_steps_on_the_quadratic_ot_dual(seed):
    """The l2-regularised dual (piecewise quadratic), solved from zero to the end."""
    from inforeg.ot._smooth_core import _lbfgs, _objective, _Problem

    gen = torch.Generator().manual_seed(seed)
    n, m = 30, 20
    cost = torch.rand(n, m, dtype=D64, generator=gen)
    a, b = torch.full((n,), 1 / n, dtype=D64), torch.full((m,), 1 / m, dtype=D64)
    problem = _Problem(a, b, cost.T.contiguous(), 0.05, "l2", n, "dual")
    ours, n_ours = _lbfgs(problem, 500, 1e-9, 10, 0)

    def negated(params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        obj, grad, _ = _objective(params, problem)
        return -obj, -grad

    ref, n_ref = _torch_lbfgs(negated, torch.zeros(n + m, dtype=D64), 500, 1e-9, 1e-12)
    # Here the runs agree to 1e-10 with equal counts; the slack is for other CPUs' rounding,
    # which a piecewise-quadratic objective can amplify late in a run.
    assert abs(n_ours - n_ref) <= 2
    torch.testing.assert_close(ours, ref, atol=1e-7, rtol=0)


def _waves(x: torch.Tensor, w: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row i: sum_k c_ik cos(w_ik . x_i) + |x_i|^2 / 10 and its gradient (non-convex, smooth)."""
    z = (w @ x.unsqueeze(-1)).squeeze(-1)
    f = (c * torch.cos(z)).sum(-1) + 0.1 * (x * x).sum(-1)
    g = (-(c * torch.sin(z)).unsqueeze(-1) * w).sum(-2) + 0.2 * x
    return f, g


def test_the_line_search_is_torchs_strong_wolfe_search():
    """3000 searches at once along descent directions of random non-convex functions, scaled so
    that the first trial overshoots or falls short by up to e^4: every step length, value and
    count of evaluations equals torch's ``_strong_wolfe`` (to rounding: the batch evaluates in
    another order), each search on its own. The set reaches bracketing's three exits, the
    zoom's new high ends, its flips and its moves away from a bracket's end (11 after two near
    trials in a row); removing the flip or that memory of near trials makes it fail."""
    import torch.optim.lbfgs as torch_lbfgs

    from inforeg.ot._lbfgs import _line_search

    _strong_wolfe = getattr(torch_lbfgs, "_strong_wolfe", None)  # private to torch
    if _strong_wolfe is None:
        pytest.skip("this torch has no torch.optim.lbfgs._strong_wolfe to compare with")

    gen = torch.Generator().manual_seed(0)
    n, dim, terms = 3000, 3, 4
    w = torch.randn(n, terms, dim, generator=gen, dtype=D64) * 3
    c = torch.randn(n, terms, generator=gen, dtype=D64)
    x0 = torch.randn(n, dim, generator=gen, dtype=D64)
    f0, g0 = _waves(x0, w, c)
    d = -g0 * torch.exp(1.5 * torch.randn(n, 1, generator=gen, dtype=D64))
    gtd = (g0 * d).sum(-1)
    ones = torch.ones(n, dtype=D64)
    step = _line_search(
        lambda x: _waves(x, w, c), x0, f0, g0, d, gtd, ones, ones.bool(), 1e-9 * ones
    )
    for i in range(n):
        wi, ci = w[i : i + 1], c[i : i + 1]

        def along(x: torch.Tensor, t: float, dd: torch.Tensor) -> tuple[float, torch.Tensor]:
            f, g = _waves((x + t * dd).unsqueeze(0), wi, ci)  # noqa: B023 (called at once)
            return float(f[0]), g[0]

        f, _, t, evals = _strong_wolfe(along, x0[i], 1.0, d[i], float(f0[i]), g0[i], gtd[i])
        assert float(step.t[i]) == pytest.approx(float(t), rel=1e-9, abs=1e-14), i
        assert float(step.f[i]) == pytest.approx(f, rel=1e-9, abs=1e-14), i  # batched rounding
        assert int(step.evals[i]) == evals, i
