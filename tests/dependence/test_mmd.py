"""MMD: float64 brute force, geomloss, streaming, gradients, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inforeg.core.checks import checks
from inforeg.dependence import MMDLoss, mmd
from tests._helpers import gradcheck64, module_matches_function


def kern(a, b, kernel, sigmas):
    d = np.sqrt(((a - b) ** 2).sum())
    if kernel == "energy":
        return -d
    if kernel == "gaussian":
        return sum(np.exp(-(d**2) / (2 * s * s)) for s in sigmas)
    return sum(np.exp(-d / s) for s in sigmas)


def brute(x, y, kernel, sigmas, estimator):
    n, m = len(x), len(y)
    if estimator == "linear":
        h = n // 2
        tot = 0.0
        for i in range(h):
            a0, a1, b0, b1 = x[2 * i], x[2 * i + 1], y[2 * i], y[2 * i + 1]
            tot += kern(a0, a1, kernel, sigmas) + kern(b0, b1, kernel, sigmas)
            tot -= kern(a0, b1, kernel, sigmas) + kern(a1, b0, kernel, sigmas)
        return tot / h
    kxx = sum(
        kern(x[i], x[j], kernel, sigmas)
        for i in range(n)
        for j in range(n)
        if estimator == "biased" or i != j
    )
    kyy = sum(
        kern(y[i], y[j], kernel, sigmas)
        for i in range(m)
        for j in range(m)
        if estimator == "biased" or i != j
    )
    kxy = sum(kern(x[i], y[j], kernel, sigmas) for i in range(n) for j in range(m))
    if estimator == "biased":
        return kxx / n**2 + kyy / m**2 - 2 * kxy / (n * m)
    return kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (n * m)


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((9, 3)), rng.standard_normal((11, 3)) + 0.5


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "energy"])
@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_brute_force(data, kernel, estimator):
    x, y = data
    sig = None if kernel == "energy" else [0.7, 2.0]
    got = mmd(torch.from_numpy(x), torch.from_numpy(y), kernel, sig, estimator)
    assert float(got) == pytest.approx(brute(x, y, kernel, sig or [], estimator), abs=1e-12)
    if kernel != "energy":
        one = mmd(torch.from_numpy(x), torch.from_numpy(y), kernel, 1.3, estimator)
        assert float(one) == pytest.approx(brute(x, y, kernel, [1.3], estimator), abs=1e-12)


@pytest.mark.parametrize("kernel", ["gaussian", "laplacian", "energy"])
def test_linear(kernel):
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((11, 2)), rng.standard_normal((11, 2))
    sig = None if kernel == "energy" else 0.9
    got = mmd(torch.from_numpy(x), torch.from_numpy(y), kernel, sig, "linear")
    assert float(got) == pytest.approx(brute(x, y, kernel, [sig] if sig else [], "linear"))


def test_energy_doctest_value():
    x = torch.tensor([[0.0], [1.0]])
    y = torch.tensor([[0.0], [3.0]])
    # 2 E|X-Y| - E|X-X'| - E|Y-Y'| = 2 * 1.5 - 0.5 - 1.5
    assert float(mmd(x, y, kernel="energy", estimator="biased")) == pytest.approx(1.0)


def test_median_heuristic(data):
    x, y = (torch.from_numpy(a) for a in data)
    pooled = torch.cat([x, y])
    d = torch.cdist(pooled, pooled)
    iu = torch.triu_indices(20, 20, 1)
    med = float(d[iu[0], iu[1]].median())
    torch.testing.assert_close(mmd(x, y), mmd(x, y, bandwidth=med))


def test_identical_samples_and_shift():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(64, 16, generator=g, dtype=torch.float64)
    assert float(mmd(x, x, bandwidth=1.0, estimator="biased")) == pytest.approx(0.0, abs=1e-12)
    far = mmd(x, x + 3.0, bandwidth=1.0, estimator="biased")
    near = mmd(x, x + 0.3, bandwidth=1.0, estimator="biased")
    assert float(far) > float(near) > 0
    # Unbiased estimate is centred near 0 for two samples from one distribution.
    y = torch.randn(64, 16, generator=g, dtype=torch.float64)
    assert abs(float(mmd(x, y, bandwidth=4.0))) < 0.02


@pytest.mark.parametrize("estimator", ["unbiased", "biased"])
def test_chunked_equals_dense_with_grad(estimator):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(17, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(13, 3, generator=g, dtype=torch.float64, requires_grad=True)
    for kernel in ("gaussian", "laplacian", "energy"):
        bw = None if kernel == "energy" else (0.5, 1.5)
        dense = mmd(x, y, kernel, bw, estimator)
        chunked = mmd(x, y, kernel, bw, estimator, chunk_size=4)
        torch.testing.assert_close(chunked, dense, rtol=0, atol=1e-12)
        gd = torch.autograd.grad(dense, (x, y))
        gc = torch.autograd.grad(chunked, (x, y))
        for a, b in zip(gd, gc):
            torch.testing.assert_close(a, b)


def test_gradcheck():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(5, 2, generator=g, dtype=torch.float64, requires_grad=True)
    for kernel, bw in (("gaussian", 0.8), ("laplacian", 1.1), ("energy", None)):
        for est in ("unbiased", "biased"):
            gradcheck64(lambda a, b, k=kernel, w=bw, e=est: mmd(a, b, k, w, e, chunk_size=2), x, y)
    gradcheck64(lambda a, b: mmd(a, b, "gaussian", 0.8, "linear"), x[:5], y)


def test_peer_geomloss(data):
    geomloss = pytest.importorskip("geomloss")
    x, y = (torch.from_numpy(a) for a in data)
    for kernel in ("gaussian", "laplacian", "energy"):
        loss = geomloss.SamplesLoss(kernel, blur=0.8, backend="tensorized")
        ref = float(loss(x, y))
        bw = None if kernel == "energy" else 0.8
        # geomloss clamps squared distances at 1e-8, so its self-distances are 1e-4, not 0:
        # k(x, x) = exp(-1e-4) (laplacian) or -1e-4 (energy). Undo that on the diagonals.
        diag = {"gaussian": 0.0, "laplacian": np.expm1(-1e-4), "energy": -1e-4}[kernel]
        ref -= 0.5 * diag * (1 / len(x) + 1 / len(y))
        assert float(mmd(x, y, kernel, bw, "biased")) / 2 == pytest.approx(ref, rel=1e-10)


def test_dtypes_and_extremes():
    x = torch.randn(20, 4).to(torch.bfloat16)
    y = torch.randn(20, 4).to(torch.bfloat16)
    out = mmd(x, y)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out)
    big = mmd(torch.randn(10, 2) * 1e4, torch.randn(10, 2) * 1e4, kernel="laplacian")
    assert torch.isfinite(big)
    const = torch.zeros(8, 3)
    assert torch.isfinite(mmd(const, const))  # median 0 -> floored bandwidth


def test_bad_input():
    x = torch.randn(10, 3)
    with pytest.raises(ValueError, match="y"):
        mmd(x, torch.randn(10, 2))
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, x, bandwidth=-1.0)
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, x, bandwidth=[1.0, 0.0])
    with pytest.raises(ValueError, match="bandwidth"):
        mmd(x, x, kernel="energy", bandwidth=1.0)
    with pytest.raises(ValueError, match="kernel"):
        mmd(x, x, kernel="cauchy")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="estimator"):
        mmd(x, x, estimator="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="y"):
        mmd(x, torch.randn(9, 3), estimator="linear")
    with pytest.raises(ValueError, match="2 samples"):
        mmd(x[:1], x)
    with pytest.raises(ValueError, match="chunk_size"):
        mmd(x, x, chunk_size=0)
    with pytest.raises(TypeError, match="bandwidth"):
        mmd(x, x, bandwidth="auto")  # type: ignore[arg-type]
    bad = x.clone()
    bad[1, 1] = float("inf")
    with checks("full"), pytest.raises(ValueError, match="y"):
        mmd(x, bad)


def test_module():
    x = torch.randn(10, 2, dtype=torch.float64)
    y = torch.randn(12, 2, dtype=torch.float64)
    module_matches_function(
        MMDLoss,
        lambda a, b, weight, **kw: weight * mmd(a, b, **kw),
        x,
        y,
        settings={"bandwidth": [0.5, 1.0], "estimator": "biased", "weight": 3.0},
    )
    assert "gaussian" in repr(MMDLoss())
