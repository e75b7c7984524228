"""inforeg.ot.sinkhorn vs POT ``ot.sinkhorn(method="sinkhorn_log")``; sinkhorn_divergence vs geomloss."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch

from inforeg.lab.bench.base import (
    Benchmark,
    BenchResult,
    ValueGrad,
    compare_row,
    measure,
    measure_once,
    rel_diffs,
    value_and_grad,
)
from inforeg.ot import sinkhorn, sinkhorn_divergence
from inforeg.ot.divergence import Backend


def _marginal_err(plan: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - b).sum())


ONLINE_TABLE = "Sinkhorn divergence, online backend vs tensorized, float32, forward + backward"


def _large_online_rows(quick: bool) -> list[dict[str, Any]]:
    n = 5000 if quick else 20_000
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 2, generator=g)
    y = torch.randn(n, 2, generator=g) + 0.5
    loss = partial(sinkhorn_divergence, y=y, blur=0.05, scaling=0.5, backend="online")
    t, mem, (value, _) = measure_once(partial(value_and_grad, loss, x))
    return [compare_row(ONLINE_TABLE, f"n={n}, d=2", (t, mem, None), None, "", value=value)]


def run(quick: bool) -> BenchResult:
    import geomloss

    import ot

    rows: list[dict[str, Any]] = []
    online_rows: list[dict[str, Any]] = []
    sizes = (500, 2000) if quick else (500, 2000, 5000)
    for n in sizes:
        for d in (2, 64):
            rng = np.random.default_rng(n + d)
            x = rng.standard_normal((n, d))
            y = rng.standard_normal((n, d)) + 0.5
            cost = ot.dist(x, y)  # squared Euclidean
            a = np.full(n, 1.0 / n)
            reg = 0.05 * float(cost.max())
            repeat = 1 if n >= 5000 else 3
            ct, at = torch.from_numpy(cost), torch.from_numpy(a)
            ct32, at32 = ct.float(), at.float()

            def pot(
                tol: float, cost: np.ndarray = cost, a: np.ndarray = a, reg: float = reg
            ) -> Any:
                return ot.sinkhorn(
                    a, a, cost, reg, method="sinkhorn_log", stopThr=tol, numItermax=10000
                )

            def ours(tol: float, c: torch.Tensor, w: torch.Tensor, reg: float = reg) -> Any:
                return sinkhorn(w, w, c, reg, tol=tol, max_iter=10000)

            t_pot, m_pot, p_pot = measure(partial(pot, 1e-9), repeat=repeat)
            t_64, m_64, r64 = measure(partial(ours, 1e-9, ct, at), repeat=repeat)
            t_pot6, _, p_pot6 = measure(partial(pot, 1e-6), repeat=repeat)
            t_32, m_32, r32 = measure(partial(ours, 1e-6, ct32, at32), repeat=repeat)
            plan64 = r64.plan.numpy()
            plan32 = r32.plan.double().numpy()
            size = f"n={n}, d={d}"
            rows.append(
                compare_row(
                    "sinkhorn vs POT (sinkhorn_log), float64, tol 1e-9",
                    size,
                    (t_64, m_64, None),
                    (t_pot, m_pot, None),
                    "POT",
                    **{
                        "max |plan diff|": float(np.abs(plan64 - p_pot).max()),
                        "max plan": float(p_pot.max()),
                        "marg. err POT": _marginal_err(p_pot, a, a),
                        "marg. err ours": _marginal_err(plan64, a, a),
                    },
                )
            )
            rows.append(
                compare_row(
                    "sinkhorn, ours float32 vs POT float64, tol 1e-6",
                    size,
                    (t_32, m_32, None),
                    (t_pot6, 0, None),
                    "POT",
                    **{
                        "max |plan diff| vs POT 1e-9": float(np.abs(plan32 - p_pot).max()),
                        "marg. err POT": _marginal_err(p_pot6, a, a),
                        "marg. err ours": _marginal_err(plan32, a, a),
                    },
                )
            )
            # Sinkhorn divergence with geomloss's defaults (blur 0.05, scaling 0.5, debias).
            xt, yt = torch.from_numpy(x).float(), torch.from_numpy(y).float()
            loss = geomloss.SamplesLoss(
                "sinkhorn", p=2, blur=0.05, scaling=0.5, debias=True, backend="tensorized"
            )

            def sd(backend: Backend, xt: torch.Tensor = xt, yt: torch.Tensor = yt) -> ValueGrad:
                return value_and_grad(
                    lambda v: sinkhorn_divergence(v, yt, blur=0.05, scaling=0.5, backend=backend),
                    xt,
                )

            def gl(xt: torch.Tensor = xt, yt: torch.Tensor = yt, loss: Any = loss) -> ValueGrad:
                return value_and_grad(lambda v: loss(v, yt), xt)

            t_gl, m_gl, ref_gl = measure(gl, repeat=repeat)
            t_sd, m_sd, dense = measure(partial(sd, "tensorized"), repeat=repeat)
            t_on, m_on, online = measure(partial(sd, "online"), repeat=repeat)
            rel, grad_rel = rel_diffs(online, ref_gl)
            online_rows.append(
                compare_row(
                    ONLINE_TABLE,
                    size,
                    (t_on, m_on, None),
                    (t_sd, m_sd, None),
                    "tensorized",
                    **{
                        "rel. diff vs geomloss": rel,
                        "grad rel. diff vs geomloss": grad_rel,
                        "rel. diff vs tensorized": rel_diffs(online, dense)[0],
                    },
                )
            )
            rel, grad_rel = rel_diffs(dense, ref_gl)
            cells = {"rel. diff": rel, "grad rel. diff": grad_rel}
            cells |= {"geomloss value": ref_gl[0], "ours value": dense[0]}
            rows.append(
                compare_row(
                    "Sinkhorn divergence vs geomloss, float32, forward + backward",
                    size,
                    (t_sd, m_sd, None),
                    (t_gl, m_gl, None),
                    "geomloss",
                    **cells,
                )
            )
    rows += online_rows + _large_online_rows(quick)
    notes = (
        "Sinkhorn rows: cost = squared Euclidean, uniform marginals, reg = epsilon = 0.05 max C, "
        "same inputs for both. 'f64' rows: both libraries in float64 with stopping threshold "
        "1e-9 (POT: L2 error of the column marginal checked every 10 iterations; ours: L1 error "
        "of the row marginal checked every 10 iterations). 'f32' rows: ours in float32 with tol "
        "1e-6 against POT (float64, stopThr 1e-6); the achieved marginal errors (L1, both "
        "marginals) are shown next to each. Divergence rows: geomloss SamplesLoss('sinkhorn', "
        "p=2, blur=0.05, scaling=0.5, debias=True, backend='tensorized') vs "
        "inforeg.ot.sinkhorn_divergence with the same arguments, float32, forward + backward "
        "w.r.t. x; 'grad rel. diff' is ||grad_ours - grad_geomloss|| / ||grad_geomloss||, both "
        "in float32 (tests/ot compare them in float64). Times are best of 3 (1 at n=5000) on a "
        "shared 2-core machine. Online rows: the same divergence with backend='online' (cost "
        "rows recomputed from the points at each softmin, one GEMM per block of rows, no "
        "n x m matrix) against backend='tensorized' (the dense matrices, the default below "
        "2^28 entries) in the same run; the largest size is online alone, one run (the dense "
        "matrices would take 6.4 GB)."
    )
    return BenchResult(rows, notes)


BENCHMARK = Benchmark(
    name="sinkhorn",
    peer="POT ot.sinkhorn(method='sinkhorn_log'); geomloss SamplesLoss('sinkhorn')",
    description="Log-domain Sinkhorn plans and values vs POT, and the debiased Sinkhorn "
    "divergence vs geomloss, on the same point clouds (n = 500, 2000, 5000; d = 2, 64).",
    run=run,
    requires=("ot", "geomloss"),
)
