"""inforeg KSG mutual information vs scikit-learn's mutual_info_regression (same k, nats)."""

from __future__ import annotations

import math

import numpy as np
import torch

from inforeg.lab.bench.base import Benchmark, BenchResult, measure


def run(quick: bool) -> BenchResult:
    try:
        from sklearn.feature_selection import mutual_info_regression
    except ImportError as exc:  # pragma: no cover
        raise ImportError("this benchmark needs scikit-learn: pip install 'inforeg[ref]'") from exc
    from inforeg.estimators import ksg_mutual_information

    rows = []
    sizes = (2000, 20000) if quick else (2000, 20000, 100000)
    rho = 0.9
    for n in sizes:
        rng = np.random.default_rng(n)
        z = rng.multivariate_normal([0.0, 0.0], [[1.0, rho], [rho, 1.0]], size=n)
        # sklearn scales each variable by its (population) std and adds 1e-10 jitter
        # (random_state fixed); we pass the same scaled data without jitter.
        x = torch.from_numpy(z[:, 0] / z[:, 0].std())
        y = torch.from_numpy(z[:, 1] / z[:, 1].std())

        def sk(z: np.ndarray = z) -> float:
            return float(
                mutual_info_regression(z[:, :1], z[:, 1], n_neighbors=3, random_state=0)[0]
            )

        def ours_tree(x: torch.Tensor = x, y: torch.Tensor = y) -> float:
            return float(ksg_mutual_information(x, y, k=3, backend="kdtree"))

        t_sk, m_sk, v_sk = measure(sk)
        t_tree, m_tree, v_tree = measure(ours_tree)
        row = {
            "n": n,
            "true MI (nats)": -0.5 * math.log(1 - rho * rho),
            "sklearn": v_sk,
            "inforeg kdtree": v_tree,
            "abs diff": abs(v_tree - v_sk),
            "sklearn s": t_sk,
            "kdtree s": t_tree,
            "time ratio kdtree/sklearn": t_tree / t_sk,
            "memory ratio kdtree/sklearn": m_tree / max(m_sk, 1),
        }
        if n <= 2000:

            def ours_brute(x: torch.Tensor = x, y: torch.Tensor = y) -> float:
                return float(ksg_mutual_information(x, y, k=3, backend="brute", chunk_size=512))

            t_b, m_b, v_b = measure(ours_brute, repeat=1)
            row.update({"inforeg brute": v_b, "brute s": t_b, "brute MB": m_b / 2**20})
        rows.append(row)
    return BenchResult(
        rows,
        "Bivariate normal, rho = 0.9, k = 3, algorithm 1, nats. sklearn's 1e-10 jitter is left on "
        "(random_state=0; it cannot be switched off) and its std scaling is applied to our "
        "inputs. 'kdtree' is the default CPU back-end (scipy cKDTree); 'brute' is the streamed "
        "torch search (O(n * chunk) memory, meant for GPUs; slow on CPU, so only run at n = 2000).",
    )


BENCHMARK = Benchmark(
    name="ksg",
    technique="core",
    peer="sklearn.feature_selection.mutual_info_regression",
    description="KSG mutual information (algorithm 1, k = 3, nats) vs scikit-learn.",
    run=run,
)
