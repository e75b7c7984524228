"""HSIC and CKA: spec values, Song et al. formula, linear-CKA closed form, hyppo, streaming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inforeg.core.checks import checks
from inforeg.dependence import HSICLoss, cka, hsic
from tests._helpers import gradcheck64, module_matches_function


def gram(z, sigma):
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * sigma**2))


def song_unbiased(k, l_):
    n = len(k)
    kt, lt = k.copy(), l_.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(n)
    val = np.trace(kt @ lt) + (one @ kt @ one) * (one @ lt @ one) / ((n - 1) * (n - 2))
    val -= 2 / (n - 2) * one @ kt @ lt @ one
    return val / (n * (n - 3))


def biased(k, l_):
    n = len(k)
    h = np.eye(n) - np.ones((n, n)) / n
    return np.trace(k @ h @ l_ @ h) / (n - 1) ** 2


def test_spec_value():
    x = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    val = hsic(x, x**2, bandwidth_x=1.0, bandwidth_y=1.0)
    assert float(val) == pytest.approx(0.229077, abs=1e-6)
    assert float(val) * 9 / 16 == pytest.approx(0.128856, abs=1e-6)  # the /n^2 convention


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_reference_formulas(estimator):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3))
    y = np.tanh(x[:, :2]) + 0.3 * rng.standard_normal((12, 2))
    k, l_ = gram(x, 1.2), gram(y, 0.7)
    ref = song_unbiased if estimator == "unbiased" else biased
    got = hsic(
        torch.from_numpy(x), torch.from_numpy(y), "gaussian", "gaussian", 1.2, 0.7, estimator
    )
    assert float(got) == pytest.approx(ref(k, l_), abs=1e-12)
    want_cka = ref(k, l_) / np.sqrt(ref(k, k) * ref(l_, l_))
    got_cka = cka(
        torch.from_numpy(x), torch.from_numpy(y), "gaussian", "gaussian", 1.2, 0.7, estimator
    )
    assert float(got_cka) == pytest.approx(want_cka, abs=1e-12)


def test_linear_cka_closed_form():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 4, generator=g, dtype=torch.float64)
    y = x @ torch.randn(4, 3, generator=g, dtype=torch.float64) + torch.randn(
        30, 3, generator=g, dtype=torch.float64
    )
    xc, yc = x - x.mean(0), y - y.mean(0)
    want = (yc.T @ xc).norm() ** 2 / ((xc.T @ xc).norm() * (yc.T @ yc).norm())
    got = cka(x, y, "linear", "linear")
    torch.testing.assert_close(got, want)
    q, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    torch.testing.assert_close(cka(2.5 * x @ q + 1.0, y, "linear", "linear"), got)
    torch.testing.assert_close(
        cka(x, x, "linear", "linear"), torch.tensor(1.0, dtype=torch.float64)
    )


def test_median_heuristic_per_variable():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(15, 2, generator=g, dtype=torch.float64)
    y = 10 * torch.randn(15, 3, generator=g, dtype=torch.float64)

    def med(z):
        d = torch.cdist(z, z)
        iu = torch.triu_indices(15, 15, 1)
        return float(d[iu[0], iu[1]].median())

    torch.testing.assert_close(hsic(x, y), hsic(x, y, bandwidth_x=med(x), bandwidth_y=med(y)))


def test_peer_hyppo():
    hyppo = pytest.importorskip("hyppo.independence")
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 2))
    y = x**2 + 0.5 * rng.standard_normal((40, 2))
    s = 1.3
    for bias, est in ((False, "unbiased"), (True, "biased")):
        ref = hyppo.Hsic(compute_kernel="gaussian", bias=bias, gamma=1 / (2 * s * s)).statistic(
            x, y
        )
        got = cka(
            torch.from_numpy(x), torch.from_numpy(y), bandwidth_x=s, bandwidth_y=s, estimator=est
        )
        # hyppo square-roots the biased statistic (R energy's convention), not the unbiased one.
        want = float(got) ** 0.5 if bias else float(got)
        assert want == pytest.approx(ref, rel=1e-8)


@pytest.mark.parametrize("estimator", ["biased", "unbiased"])
def test_chunked_equals_dense_and_gradcheck(estimator):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(14, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randn(14, 2, generator=g, dtype=torch.float64, requires_grad=True)
    for fn in (hsic, cka):
        dense = fn(x, y, "gaussian", "laplacian", 1.0, [0.5, 2.0], estimator)
        chunked = fn(x, y, "gaussian", "laplacian", 1.0, [0.5, 2.0], estimator, chunk_size=3)
        torch.testing.assert_close(chunked, dense, rtol=0, atol=1e-12)
        for a, b in zip(torch.autograd.grad(dense, (x, y)), torch.autograd.grad(chunked, (x, y))):
            torch.testing.assert_close(a, b)
    xs, ys = x[:6], y[:6]
    gradcheck64(lambda a, b: hsic(a, b, "gaussian", "linear", 1.0, None, estimator, 2), xs, ys)
    gradcheck64(lambda a, b: cka(a, b, "laplacian", "gaussian", 1.0, 1.0, estimator), xs, ys)


def test_properties():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(50, 2, generator=g, dtype=torch.float64)
    y_ind = torch.randn(50, 2, generator=g, dtype=torch.float64)
    assert float(hsic(x, y_ind)) >= 0
    assert float(hsic(x, x**2)) > float(hsic(x, y_ind))
    assert abs(float(hsic(x, y_ind, estimator="unbiased"))) < 0.02
    const = torch.ones(50, 1, dtype=torch.float64)
    assert float(cka(x, const)) == 0.0
    perm = torch.randperm(50, generator=g)
    torch.testing.assert_close(hsic(x[perm], y_ind[perm]), hsic(x, y_ind))
    out = hsic(x.to(torch.bfloat16), y_ind.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out)


def test_bad_input():
    x = torch.randn(10, 2)
    with pytest.raises(ValueError, match="y"):
        hsic(x, torch.randn(8, 2))
    with pytest.raises(ValueError, match="4 samples"):
        hsic(x[:3], x[:3], estimator="unbiased")
    with pytest.raises(ValueError, match="bandwidth_x"):
        hsic(x, x, bandwidth_x=-1.0)
    with pytest.raises(ValueError, match="kernel_y"):
        hsic(x, x, kernel_y="poly")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="estimator"):
        cka(x, x, estimator="u")  # type: ignore[arg-type]
    bad = x.clone()
    bad[0, 0] = float("nan")
    with checks("full"), pytest.raises(ValueError, match="x"):
        hsic(bad, x)


def test_module():
    x = torch.randn(10, 2, dtype=torch.float64)
    y = torch.randn(10, 3, dtype=torch.float64)
    module_matches_function(
        HSICLoss, lambda a, b, weight: weight * hsic(a, b), x, y, settings={"weight": 2.0}
    )
    module_matches_function(
        HSICLoss, lambda a, b, normalized: cka(a, b), x, y, settings={"normalized": True}
    )
