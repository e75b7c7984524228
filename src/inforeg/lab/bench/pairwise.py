"""inforeg.core.pairwise vs scipy.spatial.distance.cdist: squared distances and kernel sums."""

from __future__ import annotations

import numpy as np
import torch

from inforeg.core.pairwise import pairwise_sum, sqeuclidean
from inforeg.lab.bench.base import Benchmark, BenchResult, measure


def run(quick: bool) -> BenchResult:
    try:
        from scipy.spatial.distance import cdist
    except ImportError as exc:  # pragma: no cover
        raise ImportError("this benchmark needs scipy: pip install 'inforeg[ref]'") from exc
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

        t_ref, m_ref, ref = measure(scipy_sum)
        t_dense, m_dense, dense = measure(dense_sum)
        t_chunk, m_chunk, chunk = measure(chunked_sum)
        rows.append(
            {
                "n": n,
                "d": 16,
                "rel. diff dense": abs(float(dense) - float(ref)) / abs(float(ref)),
                "rel. diff chunked": abs(float(chunk) - float(ref)) / abs(float(ref)),
                "scipy s": t_ref,
                "dense s": t_dense,
                "chunked s": t_chunk,
                "time ratio chunked/scipy": t_chunk / t_ref,
                "scipy MB": m_ref / 2**20,
                "chunked MB": m_chunk / 2**20,
                "memory ratio chunked/scipy": m_chunk / max(m_ref, 1),
            }
        )
    return BenchResult(
        rows,
        "Gaussian kernel sum sum_ij exp(-||x_i - x_j||^2 / 2) in float64; chunk_size 256 rows.",
    )


BENCHMARK = Benchmark(
    name="pairwise",
    technique="core",
    peer="scipy.spatial.distance.cdist",
    description="Sum of a Gaussian kernel matrix: scipy's cdist (dense) vs inforeg dense and "
    "chunked (O(n * chunk) memory).",
    run=run,
)
