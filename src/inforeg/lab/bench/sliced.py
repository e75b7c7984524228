"""inforeg.ot.sliced_wasserstein vs POT ``ot.sliced_wasserstein_distance`` (same projections)."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch

from inforeg.lab.bench.base import Benchmark, BenchResult, compare_row, measure
from inforeg.ot import max_sliced_wasserstein, random_projections, sliced_wasserstein


def run(quick: bool) -> BenchResult:
    import ot

    rows: list[dict[str, Any]] = []
    configs = [(2000, 16, 50, False), (10_000, 64, 200, False), (10_000, 64, 200, True)]
    if quick:
        configs = configs[:2]
    for n, d, n_proj, weighted in configs:
        rng = np.random.default_rng(n + d)
        x = rng.standard_normal((n, d))
        y = rng.standard_normal((n, d)) @ np.diag(np.linspace(0.5, 1.5, d)) + 0.1
        a = b = None
        if weighted:
            a = rng.random(n)
            a /= a.sum()
            b = rng.random(n)
            b /= b.sum()
        proj = random_projections(d, n_proj, seed=0, dtype=torch.float64).numpy()
        xt, yt, pt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(proj)
        at = None if a is None else torch.from_numpy(a)
        bt = None if b is None else torch.from_numpy(b)
        pot = partial(ot.sliced_wasserstein_distance, x, y, a, b, p=2, projections=proj)
        ours = partial(sliced_wasserstein, xt, yt, at, bt, p=2, projections=pt)
        pot_max = partial(ot.max_sliced_wasserstein_distance, x, y, a, b, p=2, projections=proj)
        ours_max = partial(max_sliced_wasserstein, xt, yt, at, bt, p=2, projections=pt)
        sizes = f"n={n}, d={d}, L={n_proj}, {'random' if weighted else 'uniform'} weights"
        for table, pot_fn, ours_fn in (
            ("sliced Wasserstein vs POT, float64", pot, ours),
            ("max-sliced Wasserstein vs POT, float64", pot_max, ours_max),
        ):
            peer = measure(pot_fn)
            got = measure(ours_fn)
            rel = abs(float(got[2]) - float(peer[2])) / float(peer[2])
            cells = {"rel. diff": rel, "POT value": float(peer[2])}
            rows.append(compare_row(table, sizes, got, peer, "POT", **cells))
    notes = (
        "float64, p = 2, the same (d, L) projection matrix passed to both. Uniform weights take "
        "inforeg's equal-size sort path; random weights take the merged-quantile path (the "
        "algorithm POT uses in both cases). Best of 3 on a shared 2-core machine."
    )
    return BenchResult(rows, notes)


BENCHMARK = Benchmark(
    name="sliced",
    peer="POT ot.sliced_wasserstein_distance / max_sliced_wasserstein_distance",
    description="Sliced and max-sliced Wasserstein distances with identical projections.",
    run=run,
    requires=("ot",),
)
