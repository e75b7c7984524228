"""inforeg.ot.sinkhorn vs POT ``ot.sinkhorn(method="sinkhorn_log")``; sinkhorn_divergence vs geomloss."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch

from inforeg.lab.bench.base import Benchmark, BenchResult, compare_row, measure
from inforeg.ot import sinkhorn, sinkhorn_divergence


def _marginal_err(plan: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(plan.sum(1) - a).sum() + np.abs(plan.sum(0) - b).sum())


def run(quick: bool) -> BenchResult:
    import geomloss

    import ot

    rows: list[dict[str, Any]] = []
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

            def gl(
                xt: torch.Tensor = xt, yt: torch.Tensor = yt, loss: Any = loss
            ) -> tuple[float, torch.Tensor]:
                xr = xt.clone().requires_grad_(True)
                v = loss(xr, yt)
                v.backward()
                assert xr.grad is not None
                return float(v.detach()), xr.grad

            def sd(xt: torch.Tensor = xt, yt: torch.Tensor = yt) -> tuple[float, torch.Tensor]:
                xr = xt.clone().requires_grad_(True)
                v = sinkhorn_divergence(xr, yt, blur=0.05, scaling=0.5)
                v.backward()
                assert xr.grad is not None
                return float(v.detach()), xr.grad

            t_gl, m_gl, (v_gl, g_gl) = measure(gl, repeat=repeat)
            t_sd, m_sd, (v_sd, g_sd) = measure(sd, repeat=repeat)
            rows.append(
                compare_row(
                    "Sinkhorn divergence vs geomloss, float32, forward + backward",
                    size,
                    (t_sd, m_sd, None),
                    (t_gl, m_gl, None),
                    "geomloss",
                    **{
                        "rel. diff": abs(v_sd - v_gl) / abs(v_gl),
                        "grad rel. diff": float((g_sd - g_gl).norm() / g_gl.norm()),
                        "geomloss value": v_gl,
                        "ours value": v_sd,
                    },
                )
            )
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
        "shared 2-core machine."
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
