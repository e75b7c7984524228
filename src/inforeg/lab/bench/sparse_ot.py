"""inforeg.ot.sparse_ot vs POT ``smooth_ot_semi_dual(reg_type="sparsity_constrained")``."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import torch

from inforeg.lab.bench.base import Benchmark, BenchResult, compare_row, measure
from inforeg.ot import sparse_ot
from inforeg.ot._smooth_core import _objective, _Problem


def semi_dual_objective(
    alpha: torch.Tensor, a: torch.Tensor, b: torch.Tensor, cost: torch.Tensor, gamma: float, k: int
) -> float:
    """The top-k semi-dual objective (to maximise) at source potentials ``alpha``."""
    ct = cost.transpose(-2, -1).contiguous()
    return float(_objective(alpha, _Problem(a, b, ct, gamma, "sparse", k, "semi_dual"))[0])


def _cpu_seconds(fn: Callable[[], Any], repeat: int = 5) -> float:
    """Best process CPU time of ``fn`` over ``repeat`` calls (after one warm-up call). Both
    sides run on one thread here, so on a loaded machine this is the time a quiet one would
    show, to within cache effects."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        best = min(best, time.process_time() - t0)
    return best


def _marg(plan: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    return float(np.abs(plan.sum(1) - a).sum()), float(np.abs(plan.sum(0) - b).sum())


def run(quick: bool) -> BenchResult:
    try:
        from threadpoolctl import threadpool_limits

        import ot
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            "this benchmark needs POT and scikit-learn: pip install 'inforeg[ref]'"
        ) from exc
    rows: list[dict[str, Any]] = []
    gamma = 0.1
    # n = 300, k = 3 is issue 19's case (k binds hardest there: the polish after Newton's stall
    # dominates).
    cases = ((300, 3), (300, 5), (300, 10))
    for n, k in cases if quick else ((100, 5), *cases):
        rng = np.random.default_rng(n + k)
        x = rng.standard_normal((n, 2))
        y = rng.standard_normal((n, 2)) + 1.0
        cost = ot.dist(x, y)
        cost /= cost.max()
        a = np.full(n, 1.0 / n)

        def pot(cost: np.ndarray = cost, a: np.ndarray = a, k: int = k) -> Any:
            with contextlib.redirect_stdout(io.StringIO()):  # POT prints in its projection
                return ot.smooth.smooth_ot_semi_dual(
                    a, a, cost, gamma, reg_type="sparsity_constrained", max_nz=k, log=True
                )

        ct, at = torch.from_numpy(cost), torch.from_numpy(a)
        ours = partial(sparse_ot, at, at, ct, k, gamma)
        lbfgs = partial(sparse_ot, at, at, ct, k, gamma, method="lbfgs")
        # Best of 5 for both: on the shared 2-core machine single runs vary by ~15%. POT's BLAS
        # runs on one thread, as inforeg does at this size (see ot._smooth_core.solve): on a
        # loaded machine a second BLAS thread made POT 10x slower in wall time.
        with threadpool_limits(1):
            t_pot, m_pot, p_pot = measure(pot, repeat=5)
            cpu_pot = _cpu_seconds(pot)
        t_ours, m_ours, r = measure(ours, repeat=5)
        cpu_ours = _cpu_seconds(ours)
        t_lbfgs, _, r_lbfgs = measure(lbfgs)
        p_pot, log_pot = p_pot
        obj_pot = semi_dual_objective(torch.from_numpy(log_pot["alpha"]), at, at, ct, gamma, k)
        plan = r.plan.numpy()
        # accuracy reference (untimed): POT run to stopThr 1e-15, and both semi-dual objectives
        with contextlib.redirect_stdout(io.StringIO()):
            p_tight, log_tight = ot.smooth.smooth_ot_semi_dual(
                a, a, cost, gamma, reg_type="sparsity_constrained", max_nz=k,
                stopThr=1e-15, numItermax=20000, log=True,
            )  # fmt: skip
        obj_ours = semi_dual_objective(r.f, at, at, ct, gamma, k)
        obj_tight = semi_dual_objective(torch.from_numpy(log_tight["alpha"]), at, at, ct, gamma, k)
        table = f"sparse OT (semi-dual, sparsity-constrained, gamma={gamma}) vs POT, float64"
        peer = (t_pot, m_pot, p_pot)
        pot_marg = "{:.2e} / {:.2e}".format(*_marg(p_pot, a, a))
        for method, got in (("Newton", r), ("L-BFGS", r_lbfgs)):
            timing = (t_ours, m_ours, got) if method == "Newton" else (t_lbfgs, 0, got)
            mine = got.plan.numpy()
            cells = {
                "max |plan diff|": float(np.abs(mine - p_pot).max()),
                "max |plan diff| vs POT 1e-15": float(np.abs(mine - p_tight).max()),
                "semi-dual obj ours - POT 1e-15": (
                    obj_ours
                    if method == "Newton"
                    else semi_dual_objective(got.f, at, at, ct, gamma, k)
                )
                - obj_tight,
                "semi-dual obj POT - POT 1e-15": obj_pot - obj_tight,
                "row marg. err POT 1e-15": f"{_marg(p_tight, a, a)[0]:.2e}",
                "max plan": float(p_pot.max()),
                "row/col marg. err POT": pot_marg,
                "row/col marg. err ours": "{:.2e} / {:.2e}".format(*_marg(mine, a, a)),
                "max nnz/col ours": int((mine > 0).sum(0).max()),
                "ours iters": got.n_iter,
                "ours converged": got.converged,
            }
            if method == "Newton":  # CPU seconds, best of 5 (one thread each)
                cells.update(
                    {
                        "POT CPU s": cpu_pot,
                        "ours CPU s": cpu_ours,
                        "CPU speed-up": cpu_pot / cpu_ours,
                    }
                )
            rows.append(compare_row(table, f"n={n}, k={k}, {method}", timing, peer, "POT", **cells))
    if not quick:
        n, k = 5000, 10
        rng = np.random.default_rng(0)
        x = rng.standard_normal((n, 2))
        y = rng.standard_normal((n, 2)) + 1.0
        ct = torch.cdist(torch.from_numpy(x), torch.from_numpy(y)) ** 2
        ct /= ct.max()
        at = torch.full((n,), 1.0 / n, dtype=torch.float64)
        w = torch.full((500,), 1.0 / 500, dtype=torch.float64)
        sparse_ot(w, w, ct[:500, :500].contiguous(), k, gamma)  # warm-up
        t0 = time.perf_counter()
        r = sparse_ot(at, at, ct, k, gamma)
        t_big = time.perf_counter() - t0
        plan = r.plan.numpy()
        cells = {
            "row/col marg. err ours": "{:.2e} / {:.2e}".format(
                *_marg(plan, at.numpy(), at.numpy())
            ),
            "max nnz/col ours": int((plan > 0).sum(0).max()),
            "ours iters": r.n_iter,
            "ours converged": r.converged,
        }
        table = f"sparse OT at n={n} (no peer: POT's dense L-BFGS-B is not run at this size)"
        rows.append(compare_row(table, f"n={n}, k={k}", (t_big, 0, r), None, "", **cells))
    notes = (
        "Semi-dual, squared Euclidean cost divided by its maximum, uniform marginals, "
        f"gamma = {gamma}, POT defaults (L-BFGS-B, stopThr 1e-9, 500 iterations) vs inforeg "
        "defaults (method='auto': semismooth Newton with continuation in gamma, tol 1e-9 on the "
        "largest gradient entry, 500 iterations; when Newton stalls at a top-k kink, L-BFGS "
        "from Newton's best point) and, for reference, inforeg with method='lbfgs' (torch's "
        "L-BFGS algorithm run per problem, inforeg.ot._lbfgs; up to 5 restarts). "
        "Marginal errors are L1; the column marginals hold exactly in the semi-dual. Where k "
        "binds (some column has k non-zeros) the semi-dual has kinks: no solver reaches a zero "
        "gradient there and the recovered plans differ at the tied entries. Float64. POT's "
        "stdout (one print per call of its projection) is discarded. The n = 5000 row is "
        "inforeg alone, one run with the defaults after a small warm-up (no POT run). Shared "
        "2-core machine; best of 5 timed runs after a warm-up (3 for inforeg L-BFGS). POT's "
        "numpy BLAS is limited to one thread (threadpoolctl), as inforeg's solvers run on one "
        "intra-op thread at these sizes: on a loaded machine two BLAS threads made POT up to 10x "
        "slower in wall time (3.4 s vs 0.30 s of CPU at k = 3, load 8.7). The CPU columns "
        "(process time, best of 5, Newton rows) are the load-robust comparison. Accuracy "
        "reference (untimed): POT with stopThr 1e-15 and 20000 iterations; its plan, its "
        "row-marginal error and the differences of the semi-dual objectives (ours minus POT's, "
        "and POT's default run minus POT's, all evaluated by inforeg at the returned potentials) "
        "are shown. Where k does not bind "
        "the converged plans agree to ~1e-7; where it binds both solvers stop at a kink with "
        "objectives equal to ~1e-9 while the plans differ at the tied entries (the plan is "
        "not determined by the optimal value there)."
    )
    return BenchResult(rows, notes)


BENCHMARK = Benchmark(
    name="sparse-ot",
    peer="POT ot.smooth.smooth_ot_semi_dual(reg_type='sparsity_constrained')",
    description="Sparsity-constrained OT (at most k non-zeros per column): plans, marginals, time.",
    run=run,
)
