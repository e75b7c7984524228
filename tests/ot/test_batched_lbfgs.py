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


def _torch_lbfgs(x0: torch.Tensor, scale: torch.Tensor, max_iter: int, tol: float, change: float):
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
            f, g = _rosenbrock(x, scale)
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
    ref, n_ref = _torch_lbfgs(x0, scale, 200, 1e-10, 1e-14)
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
