"""inforeg MMD vs geomloss's kernel SamplesLoss, and a chunked n = 100 000 run."""

from __future__ import annotations

import numpy as np
import torch

from inforeg.dependence import mmd
from inforeg.lab.bench.base import (
    Benchmark,
    BenchResult,
    big_n,
    compare_row,
    measure,
    measure_once,
)

SIGMA = 4.0


def run(quick: bool) -> BenchResult:
    try:
        import geomloss
    except ImportError as exc:  # pragma: no cover
        raise ImportError("this benchmark needs geomloss: pip install 'inforeg[ref]'") from exc
    rows = []
    for n in (1000, 4000) if quick else (1000, 4000, 8000):
        rng = np.random.default_rng(n)
        x = torch.from_numpy(rng.standard_normal((n, 64)))
        y = torch.from_numpy(rng.standard_normal((n, 64)) + 0.1)
        loss = geomloss.SamplesLoss("gaussian", blur=SIGMA, backend="tensorized")

        def ref_fn(
            x: torch.Tensor = x, y: torch.Tensor = y, loss: geomloss.SamplesLoss = loss
        ) -> torch.Tensor:
            return 2.0 * loss(x, y)  # geomloss returns half the biased MMD^2

        def ours_fn(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
            return mmd(x, y, "gaussian", SIGMA, "biased", chunk_size=1024)

        peer = measure(ref_fn)
        ours = measure(ours_fn)
        rel = abs(float(ours[2]) - float(peer[2])) / abs(float(peer[2]))
        rows.append(
            compare_row(
                "biased MMD^2 vs geomloss (tensorized), float64",
                f"n={n}, d=64",
                ours,
                peer,
                "geomloss",
                **{"rel. diff": rel},
            )
        )
    n = 20_000 if quick else big_n()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 64, generator=g)
    y = torch.randn(n, 64, generator=g) + 0.05

    def big() -> torch.Tensor:
        return mmd(x, y, "gaussian", SIGMA, "unbiased", chunk_size=1024)

    ours = measure_once(big)
    rows.append(
        compare_row(
            "unbiased MMD^2, float32, chunked (no peer: geomloss tensorized needs 3 n^2 floats)",
            f"n={n}, d=64",
            ours,
            None,
            "",
            value=float(ours[2]),
        )
    )
    return BenchResult(
        rows,
        "Gaussian kernel exp(-||a-b||^2/(2 sigma^2)), sigma = 4 (geomloss blur = sigma). "
        "Convention: geomloss's kernel loss is 1/2 of the biased (V-statistic) MMD^2, so the "
        "reference column is 2 * SamplesLoss. inforeg streams blocks of 1024 rows. The large run "
        "uses the unbiased estimator in float32, timed once.",
    )


BENCHMARK = Benchmark(
    name="mmd",
    technique="mmd",
    peer="geomloss SamplesLoss (tensorized)",
    description="Biased Gaussian MMD^2: geomloss (dense) vs inforeg (streamed), plus n = 100 000, "
    "d = 64 chunked.",
    run=run,
)
