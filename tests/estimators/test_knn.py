"""k-NN entropy and MI: closed forms, float64 brute-force loops, scikit-learn, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma

import inforeg
from inforeg.estimators import (
    kl_entropy,
    ksg_mutual_information,
    ksg_mutual_information_classif,
)


def _gauss(n: int, rho: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=n)
    return torch.from_numpy(z[:, 0]), torch.from_numpy(z[:, 1])


def _brute_ksg(x: np.ndarray, y: np.ndarray, k: int, algorithm: int) -> float:
    """Literal double loop of Kraskov et al. (2004), float64."""
    n = len(x)
    x = x.reshape(n, -1)
    y = y.reshape(n, -1)
    total = 0.0
    for i in range(n):
        dx = np.array([np.max(np.abs(x[j] - x[i])) for j in range(n)])
        dy = np.array([np.max(np.abs(y[j] - y[i])) for j in range(n)])
        dz = np.maximum(dx, dy)
        dz[i] = np.inf
        nn = np.argsort(dz, kind="stable")[:k]
        if algorithm == 1:
            eps = dz[nn[-1]]
            nx = sum(1 for j in range(n) if j != i and dx[j] < eps)
            ny = sum(1 for j in range(n) if j != i and dy[j] < eps)
            total += digamma(nx + 1) + digamma(ny + 1)
        else:
            ex, ey = dx[nn].max(), dy[nn].max()
            nx = sum(1 for j in range(n) if j != i and dx[j] <= ex)
            ny = sum(1 for j in range(n) if j != i and dy[j] <= ey)
            total += digamma(nx) + digamma(ny)
    if algorithm == 1:
        return digamma(k) + digamma(n) - total / n
    return digamma(k) - 1.0 / k + digamma(n) - total / n


class TestKSG:
    @pytest.mark.parametrize("algorithm", [1, 2])
    @pytest.mark.parametrize("backend", ["brute", "kdtree"])
    def test_matches_bruteforce_loops(self, algorithm, backend):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((60, 2))
        y = x[:, :1] + 0.5 * rng.standard_normal((60, 1))
        ref = _brute_ksg(x, y, 3, algorithm)
        got = ksg_mutual_information(
            torch.from_numpy(x), torch.from_numpy(y), k=3, algorithm=algorithm, backend=backend
        )
        assert got.dtype == torch.float64
        assert abs(float(got) - ref) < 1e-12

    def test_gaussian_closed_form_and_spec_value(self):
        x, y = _gauss(2000, 0.9)
        got = float(ksg_mutual_information(x, y))
        assert abs(got - 0.855) < 1e-3  # spec §12 (seeded)
        assert abs(got - (-0.5 * math.log(1 - 0.81))) < 0.05

    def test_multivariate_canonical_correlations(self):
        rng = np.random.default_rng(3)
        n = 3000
        x = rng.standard_normal((n, 2))
        y = np.stack([0.8 * x[:, 0], 0.5 * x[:, 1]], 1) + np.stack(
            [0.6 * rng.standard_normal(n), math.sqrt(0.75) * rng.standard_normal(n)], 1
        )
        true = -0.5 * (math.log(1 - 0.64) + math.log(1 - 0.25))
        got = float(ksg_mutual_information(torch.from_numpy(x), torch.from_numpy(y)))
        assert abs(got - true) < 0.06

    def test_units_bits_vs_nats(self):
        x, y = _gauss(500, 0.7)
        nats = ksg_mutual_information(x, y)
        bits = ksg_mutual_information(x, y, base=2)
        assert torch.allclose(bits, nats / math.log(2))

    def test_independent_near_zero(self):
        rng = np.random.default_rng(4)
        x = torch.from_numpy(rng.standard_normal(2000))
        y = torch.from_numpy(rng.standard_normal(2000))
        assert abs(float(ksg_mutual_information(x, y))) < 0.03

    @pytest.mark.parametrize("seed", [0, 1, 2])
    def test_matches_sklearn_regression(self, seed):
        fs = pytest.importorskip("sklearn.feature_selection")
        x, y = _gauss(1500, 0.6, seed)
        ref = fs.mutual_info_regression(
            x.numpy()[:, None], y.numpy(), n_neighbors=3, random_state=0
        )
        # sklearn divides by the (population) std and adds 1e-10 jitter; then clips at 0.
        got = ksg_mutual_information(x / x.std(unbiased=False), y / y.std(unbiased=False), k=3)
        assert abs(max(0.0, float(got)) - float(ref[0])) < 1e-6

    def test_bad_input(self):
        x, y = _gauss(10, 0.5)
        with pytest.raises(ValueError, match="k"):
            ksg_mutual_information(x, y, k=10)
        with pytest.raises(ValueError, match="y"):
            ksg_mutual_information(x, y[:-1])
        with pytest.raises(ValueError, match="algorithm"):
            ksg_mutual_information(x, y, algorithm=3)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="x"):
            ksg_mutual_information(x.long(), y)
        bad = x.clone()
        bad[0] = float("nan")
        with inforeg.core.checks.checks("full"), pytest.raises(ValueError, match="x"):
            ksg_mutual_information(bad, y)

    def test_duplicates_raise_or_jitter(self):
        x = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 2.0], dtype=torch.float64)
        with pytest.raises(ValueError, match="duplicate"):
            ksg_mutual_information(x, x, k=3)
        assert torch.isfinite(ksg_mutual_information(x, x, k=3, jitter=1e-6))

    @pytest.mark.parametrize("dims", [1, 2])
    def test_inputs_that_require_grad(self, dims):
        # features monitored during training carry gradients; the 1-D counting path once
        # called .numpy() on them and raised
        g = torch.Generator().manual_seed(0)
        x = torch.randn(100, dims, dtype=torch.float64, generator=g)
        y = x + torch.randn(100, dims, dtype=torch.float64, generator=g)
        want = ksg_mutual_information(x, y)
        got = ksg_mutual_information(x.clone().requires_grad_(True), y.requires_grad_(True))
        assert torch.equal(got, want) and not got.requires_grad

    def test_float32_input_returns_float32(self):
        x, y = _gauss(200, 0.5)
        got = ksg_mutual_information(x.float(), y.float())
        assert got.dtype == torch.float32
        assert torch.isfinite(got)


class TestKLEntropy:
    @pytest.mark.parametrize("metric", ["euclidean", "chebyshev"])
    def test_gaussian_closed_form(self, metric):
        rng = np.random.default_rng(0)
        cov = np.array([[1.0, 0.5], [0.5, 2.0]])
        z = torch.from_numpy(rng.multivariate_normal([0, 0], cov, size=4000))
        true = 0.5 * math.log((2 * math.pi * math.e) ** 2 * np.linalg.det(cov))
        assert abs(float(kl_entropy(z, metric=metric)) - true) < 0.05

    def test_spec_value_1d(self):
        x, _ = _gauss(2000, 0.9)  # marginal N(0, 1)
        got = float(kl_entropy(x, k=3))
        assert abs(got - 1.398) < 1e-3  # spec §12: 1.398 vs true 1.4189

    def test_bruteforce_formula(self):
        rng = np.random.default_rng(2)
        x = rng.standard_normal((50, 3))
        d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
        np.fill_diagonal(d, np.inf)
        r = np.sort(d, 1)[:, 2]
        logc = 1.5 * math.log(math.pi) - math.lgamma(2.5)
        ref = digamma(50) - digamma(3) + logc + 3 * np.log(r).mean()
        for backend in ("brute", "kdtree"):
            got = kl_entropy(torch.from_numpy(x), k=3, backend=backend)
            assert abs(float(got) - ref) < 1e-12

    def test_units_and_scaling(self):
        x, _ = _gauss(500, 0.0)
        h = kl_entropy(x)
        assert torch.allclose(kl_entropy(x, base=2), h / math.log(2))
        # H(cX) = H(X) + log c exactly for the estimator.
        assert torch.allclose(kl_entropy(3.0 * x), h + math.log(3.0))

    def test_bad_input(self):
        x = torch.randn(5, dtype=torch.float64)
        with pytest.raises(ValueError, match="k"):
            kl_entropy(x, k=5)
        with pytest.raises(ValueError, match="metric"):
            kl_entropy(x, metric="cosine")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="duplicate"):
            kl_entropy(torch.tensor([1.0, 1.0, 2.0, 3.0]), k=1)
        with pytest.raises(ValueError, match="x"):
            kl_entropy(torch.randn(2, 2, 2))


class TestRossClassif:
    @pytest.mark.parametrize("backend", ["brute", "kdtree"])
    def test_matches_sklearn(self, backend):
        fs = pytest.importorskip("sklearn.feature_selection")
        rng = np.random.default_rng(5)
        y = rng.integers(0, 3, 800)
        y[0] = 7  # a singleton class is dropped, as in sklearn
        x = rng.standard_normal(800) + y
        ref = fs.mutual_info_classif(x[:, None], y, n_neighbors=3, random_state=0)
        got = ksg_mutual_information_classif(
            torch.from_numpy(x), torch.from_numpy(y), k=3, backend=backend
        )
        assert abs(float(got) - float(ref[0])) < 1e-6

    def test_closed_form_separated_classes(self):
        # Far-apart classes: I(X;Y) = H(Y) = log 2.
        rng = np.random.default_rng(6)
        y = np.repeat([0, 1], 500)
        x = rng.standard_normal(1000) + 100 * y
        got = float(ksg_mutual_information_classif(torch.from_numpy(x), torch.from_numpy(y)))
        assert abs(got - math.log(2)) < 0.01

    def test_bad_input(self):
        x = torch.randn(10, dtype=torch.float64)
        with pytest.raises(ValueError, match="y"):
            ksg_mutual_information_classif(x, torch.zeros(9, dtype=torch.long))
        with pytest.raises(TypeError, match="y"):
            ksg_mutual_information_classif(x, torch.zeros(10))
        with pytest.raises(ValueError, match="y"):
            ksg_mutual_information_classif(x, torch.arange(10))


def test_brute_streams_in_chunks():
    x, y = _gauss(300, 0.5)
    a = ksg_mutual_information(x, y, backend="brute", chunk_size=7)
    b = ksg_mutual_information(x, y, backend="brute")
    assert torch.equal(a, b)


@pytest.mark.parametrize("algorithm", [1])
def test_ties_in_a_marginal_match_loops(algorithm):
    # x takes few distinct values (ties at the count boundary); y is continuous. Algorithm 2 is
    # not tested here: with ties at the k-th joint distance it depends on which tied neighbours
    # are taken (documented).
    rng = np.random.default_rng(8)
    x = np.round(rng.standard_normal(80) * 2) / 2 + 1e6
    y = x + rng.standard_normal(80)
    ref = _brute_ksg(x, y, 3, algorithm)
    for backend in ("brute", "kdtree"):
        got = ksg_mutual_information(
            torch.from_numpy(x), torch.from_numpy(y), algorithm=algorithm, backend=backend
        )
        assert abs(float(got) - ref) < 1e-12


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("use_numpy", [True, False])
def test_sorted_radius_count_matches_blocked_count(strict, use_numpy):
    # Both 1-D count paths (numpy on CPU, torch elsewhere) against the exact blocked count, with
    # ties and radii that land exactly on neighbours.
    from inforeg.estimators.knn import _count_sorted_1d, _count_within

    rng = np.random.default_rng(9)
    x = torch.from_numpy(np.round(rng.standard_normal(300) * 4) / 4 + 1e3)[:, None]
    radius = (x[torch.from_numpy(rng.integers(0, 300, 300)), 0] - x[:, 0]).abs()
    ref = _count_within(x, radius, strict, "chebyshev", None)
    got = _count_sorted_1d(x, radius, strict, None, use_numpy=use_numpy)
    assert torch.equal(got, ref)


def _near_duplicate_classes(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    # 100 points 1e-9 apart near 1000, two classes shifted by 1e-9: the matmul expansion of the
    # squared distance has a rounding error ~1e-10, so it cannot rank these neighbours.
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (100,), generator=g)
    x = 1000 + 1e-9 * (torch.randn(100, 1, generator=g, dtype=torch.float64) + y[:, None])
    return x, y


def _loop_ross(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Ross (2014) by its definition, Euclidean distances from differences, float64."""
    n = len(x)
    keep = [i for i in range(n) if (y == y[i]).sum() > 1]
    terms = []
    for i in keep:
        d = np.sqrt(((x - x[i]) ** 2).sum(1))
        same = np.sort(d[(y == y[i]) & (np.arange(n) != i)])
        k_i = min(k, len(same))
        r = same[k_i - 1]
        m_i = sum(1 for j in keep if d[j] < r)
        terms.append(digamma(k_i) - digamma((y == y[i]).sum()) - digamma(m_i))
    return float(digamma(len(keep)) + np.mean(terms))


def _loop_kl(x: np.ndarray, k: int) -> float:
    n, d = x.shape
    r = [np.sort(np.sqrt(((x - x[i]) ** 2).sum(1)))[k] for i in range(n)]  # [0] is the point
    log_c = d / 2 * math.log(math.pi) - math.lgamma(d / 2 + 1)
    return float(digamma(n) - digamma(k) + log_c + d * np.mean(np.log(r)))


class TestNearDuplicates:
    """Regression (issue 18): the brute-force back-end ranked neighbours with the matmul
    expansion and disagreed with the k-d tree on near-duplicate points."""

    def test_ross_brute_matches_kdtree_and_loops(self):
        x, y = _near_duplicate_classes()
        ref = _loop_ross(x.numpy(), y.numpy(), 3)
        for backend in ("brute", "kdtree"):
            got = float(ksg_mutual_information_classif(x, y, k=3, backend=backend))
            assert got == pytest.approx(ref, abs=1e-12), backend

    def test_kl_entropy_on_jittered_duplicates(self):
        g = torch.Generator().manual_seed(0)
        x = (1000 + torch.randn(50, 3, generator=g, dtype=torch.float64)).repeat(5, 1)
        xj = x + 1e-10 * 1000 * torch.randn(
            x.shape, generator=torch.Generator().manual_seed(3), dtype=x.dtype
        )
        ref = _loop_kl(xj.numpy(), 3)
        for backend in ("brute", "kdtree"):
            got = float(kl_entropy(xj, k=3, backend=backend))
            assert got == pytest.approx(ref, rel=1e-9), backend


def test_seed_none_jitters_x_and_y_independently():
    """seed=None gave x and y the same noise (both seed 0): ties in independent discrete data
    were then broken alike, and KSG reported 3.1 nats for a true MI of 0."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 3, (600,), generator=g).double()
    y = torch.randint(0, 3, (600,), generator=g).double()
    mi = float(ksg_mutual_information(x, y, jitter=1e-10, seed=None))
    assert abs(mi) < 0.1
    assert mi == float(ksg_mutual_information(x, y, jitter=1e-10, seed=0))  # None means 0


@pytest.mark.parametrize("fn", [ksg_mutual_information, ksg_mutual_information_classif])
def test_base_one_is_rejected(fn):
    x = torch.randn(50, dtype=torch.float64)
    y = (x > 0).long() if fn is ksg_mutual_information_classif else x + torch.randn(50).double()
    with pytest.raises(ValueError, match="base"):
        fn(x, y, base=1.0)
