"""inforeg.core.pairwise vs scipy.spatial.distance.cdist: squared distances and kernel sums."""

from __future__ import annotations

import numpy as np
import torch

from inforeg.core.pairwise import pairwise_sum, sqeuclidean
from inforeg.lab.bench.base import Benchmark, BenchResult, compare_row, measure


def run(quick: bool) -> BenchResult:
    from scipy.spatial.distance import cdist

    rows = []
    sizes = (1000, 4000) if quick else (1000, 4000, 8000)
    for n in sizes:
        rng = np.random.default_rng(n)
        x = rng.standard_normal((n, 16))
        xt = torch.from_numpy(x)

        def scipy_sum(x: np.ndarray = x) -> float:
            return float(np.exp(-cdist(x, x, "sqeuclidean") / 2.0).sum())

        def dense_sum(xt: torch.Tensor = xt) -> torch.Tensor:
            return torch.exp(-sqeuclidean(xt) / 2.0).sum()

        def chunked_sum(xt: torch.Tensor = xt) -> torch.Tensor:
            return pairwise_sum(xt, kind="gaussian", bandwidth=1.0, chunk_size=256)

        peer = measure(scipy_sum)
        for case, fn in (("dense", dense_sum), ("chunked (256 rows)", chunked_sum)):
            ours = measure(fn)
            rel = abs(float(ours[2]) - peer[2]) / abs(peer[2])
            rows.append(
                compare_row(
                    "Gaussian kernel sum vs scipy cdist, d = 16, float64",
                    f"n={n}, {case}",
                    ours,
                    peer,
                    "scipy",
                    **{"rel. diff": rel},
                )
            )
    return BenchResult(
        rows,
        "Gaussian kernel sum sum_ij exp(-||x_i - x_j||^2 / 2) in float64; chunk_size 256 rows.",
    )


BENCHMARK = Benchmark(
    name="pairwise",
    peer="scipy.spatial.distance.cdist",
    description="Sum of a Gaussian kernel matrix: scipy's cdist (dense) vs inforeg dense and "
    "chunked (O(n * chunk) memory).",
    run=run,
    requires=("scipy",),
)
