"""Distance covariance/correlation: dcor/R-energy oracles, brute force, closed form, fast path."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inforeg.core.checks import checks
from inforeg.dependence import (
    DistanceCorrelationLoss,
    distance_correlation,
    distance_correlation_sqr,
    distance_covariance,
    distance_covariance_sqr,
)
from tests._helpers import gradcheck64, module_matches_function

A4 = torch.arange(1.0, 17.0, dtype=torch.float64).reshape(4, 4)
B4 = torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64)


def brute_dcov_sqr(x: np.ndarray, y: np.ndarray, exponent: float = 1.0, unbiased: bool = False):
    """Loop definition in float64 (double- or U-centring written out element by element)."""
    x = x.reshape(len(x), -1)
    y = y.reshape(len(y), -1)
    n = len(x)

    def dist(z):
        d = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                d[i, j] = np.sqrt(((z[i] - z[j]) ** 2).sum()) ** exponent
        return d

    def center(d):
        out = np.zeros((n, n))
        for i in range(n):
            for j in range(n):
                if unbiased:
                    if i != j:
                        out[i, j] = (
                            d[i, j]
                            - d[i].sum() / (n - 2)
                            - d[:, j].sum() / (n - 2)
                            + d.sum() / ((n - 1) * (n - 2))
                        )
                else:
                    out[i, j] = d[i, j] - d[i].mean() - d[:, j].mean() + d.mean()
        return out

    a, b = center(dist(x)), center(dist(y))
    return (a * b).sum() / (n * (n - 3) if unbiased else n * n)


class TestOracles:
    def test_dcor_doctest_values(self):
        assert float(distance_covariance_sqr(A4, A4)) == pytest.approx(52.0, abs=1e-10)
        assert float(distance_covariance_sqr(A4, B4)) == pytest.approx(1.0, abs=1e-12)
        assert float(distance_covariance_sqr(B4, B4)) == pytest.approx(0.25, abs=1e-12)
        assert float(distance_correlation(A4, B4)) == pytest.approx(0.5266403, abs=1e-7)
        assert float(distance_correlation(A4, B4, exponent=0.5)) == pytest.approx(
            0.6703214, abs=1e-7
        )
        assert float(distance_correlation(A4, A4)) == pytest.approx(1.0, abs=1e-12)
        assert float(distance_correlation_sqr(A4, B4, unbiased=True)) == pytest.approx(-0.5)
        assert float(distance_correlation_sqr(A4, B4, exponent=0.5, unbiased=True)) == (
            pytest.approx(-0.4050479, abs=1e-7)
        )

    def test_r_energy_values(self):
        a = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9.0]], dtype=torch.float64)
        b = torch.tensor([[7, 3, 6], [2, 1, 4], [3, 8, 1.0]], dtype=torch.float64)
        c = torch.tensor([[1, 1, 1], [2, 1, 1], [1, 1, 1.0]], dtype=torch.float64)
        assert float(distance_correlation_sqr(a, b)) == pytest.approx(0.93387, abs=1e-5)
        assert float(distance_correlation_sqr(a, c)) == pytest.approx(0.31623, abs=1e-5)
        assert float(distance_correlation_sqr(a, a)) == pytest.approx(1.0, abs=1e-12)
        const = torch.ones(3, 3, dtype=torch.float64)
        assert float(distance_correlation_sqr(a, const)) == 0.0

    def test_fairness_spec_value(self):
        x = torch.arange(1.0, 7.0, dtype=torch.float64)
        assert float(distance_covariance_sqr(x, x**2, unbiased=True)) == pytest.approx(
            10.888888888889, abs=1e-9
        )
        for method in ("naive", "fast"):
            r = distance_correlation_sqr(x, x**2, unbiased=True, method=method)
            assert float(r) == pytest.approx(0.98853830, abs=1e-7)

    @pytest.mark.parametrize("unbiased", [False, True])
    @pytest.mark.parametrize("exponent", [1.0, 0.5, 1.5])
    def test_brute_force(self, unbiased, exponent):
        rng = np.random.default_rng(3)
        x = rng.standard_normal((9, 3))
        y = rng.standard_normal((9, 2)) + x[:, :2] ** 2
        want = brute_dcov_sqr(x, y, exponent, unbiased)
        got = distance_covariance_sqr(
            torch.from_numpy(x), torch.from_numpy(y), exponent, unbiased, method="naive"
        )
        assert float(got) == pytest.approx(want, abs=1e-12)
        fused = distance_correlation_sqr(
            torch.from_numpy(x), torch.from_numpy(y), exponent, unbiased
        )
        wx = brute_dcov_sqr(x, x, exponent, unbiased)
        wy = brute_dcov_sqr(y, y, exponent, unbiased)
        assert float(fused) == pytest.approx(want / math.sqrt(abs(wx * wy)), abs=1e-12)

    def test_bivariate_normal_closed_form(self):
        rho = 0.7
        num = rho * math.asin(rho) + math.sqrt(1 - rho**2) - rho * math.asin(rho / 2)
        num += -math.sqrt(4 - rho**2) + 1
        want = num / (1 + math.pi / 3 - math.sqrt(3))
        assert want == pytest.approx(0.42241, abs=1e-5)
        g = torch.Generator().manual_seed(0)
        z = torch.randn(3000, 2, generator=g, dtype=torch.float64)
        x = z[:, 0]
        y = rho * z[:, 0] + math.sqrt(1 - rho**2) * z[:, 1]
        assert float(distance_correlation_sqr(x, y)) == pytest.approx(want, abs=0.03)


class TestFastPath:
    @pytest.mark.parametrize("unbiased", [False, True])
    @pytest.mark.parametrize("n", [4, 5, 17, 64, 333])
    def test_fast_equals_naive_with_ties(self, n, unbiased):
        g = torch.Generator().manual_seed(n)
        x = torch.randn(n, generator=g, dtype=torch.float64)
        y = x**2 + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
        x[::3] = x[0]  # ties in x
        y[1::4] = y[1]  # ties in y
        for fn in (distance_covariance_sqr, distance_correlation_sqr):
            fast = fn(x, y, unbiased=unbiased, method="fast")
            naive = fn(x, y, unbiased=unbiased, method="naive")
            assert float(fast) == pytest.approx(float(naive), rel=1e-10, abs=1e-12)

    def test_fast_gradient_matches_naive(self):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(40, generator=g, dtype=torch.float64, requires_grad=True)
        y = torch.randn(40, 1, generator=g, dtype=torch.float64, requires_grad=True)
        gf = torch.autograd.grad(distance_correlation_sqr(x, y, method="fast"), (x, y))
        gn = torch.autograd.grad(distance_correlation_sqr(x, y, method="naive"), (x, y))
        for a, b in zip(gf, gn):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)

    def test_fast_gradcheck(self):
        g = torch.Generator().manual_seed(2)
        x = torch.randn(9, generator=g, dtype=torch.float64, requires_grad=True)
        y = torch.randn(9, generator=g, dtype=torch.float64, requires_grad=True)
        for ub in (False, True):
            gradcheck64(
                lambda a, b, ub=ub: distance_covariance_sqr(a, b, unbiased=ub, method="fast"), x, y
            )

    def test_auto_picks_fast_for_1d(self):
        x = torch.randn(50, dtype=torch.float64)
        y = torch.randn(50, 1, dtype=torch.float64)
        auto = distance_covariance_sqr(x, y)
        fast = distance_covariance_sqr(x, y, method="fast")
        assert float(auto) == float(fast)

    @pytest.mark.parametrize("n", [31, 32, 33, 95, 1000, 2049])
    def test_fast_across_padding_and_levels(self, n):
        """Sizes around BASE * 2^L (front padding, one or many partition levels)."""
        g = torch.Generator().manual_seed(n)
        x = torch.randn(n, generator=g, dtype=torch.float64)
        y = torch.sin(3.0 * x) + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
        y[::7] = y[5]  # ties in y, spread over many blocks and levels
        for ub in (False, True):
            fast = distance_covariance_sqr(x, y, unbiased=ub, method="fast")
            naive = distance_covariance_sqr(x, y, unbiased=ub, method="naive")
            assert float(fast) == pytest.approx(float(naive), rel=1e-10, abs=1e-12)

    def test_fast_gradient_with_ties(self):
        """Tied pairs (in x or y) get a zero gradient, as in the naive path."""
        g = torch.Generator().manual_seed(3)
        x0 = torch.randn(150, generator=g, dtype=torch.float64)
        x0[::5] = x0[2]
        x = x0.requires_grad_(True)
        y = torch.randint(0, 3, (150,), generator=g).to(torch.float64).requires_grad_(True)
        for ub in (False, True):
            gf = torch.autograd.grad(
                distance_correlation_sqr(x, y, unbiased=ub, method="fast"), (x, y)
            )
            gn = torch.autograd.grad(
                distance_correlation_sqr(x, y, unbiased=ub, method="naive"), (x, y)
            )
            for a, b in zip(gf, gn):
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


class TestStreaming:
    @pytest.mark.parametrize("chunk", [1, 3, 7, 50])
    def test_chunked_equals_dense(self, chunk):
        g = torch.Generator().manual_seed(4)
        x = torch.randn(23, 3, generator=g, dtype=torch.float64, requires_grad=True)
        y = torch.randn(23, 2, generator=g, dtype=torch.float64, requires_grad=True)
        for ub in (False, True):
            dense = distance_correlation_sqr(x, y, unbiased=ub, chunk_size=10_000)
            chunked = distance_correlation_sqr(x, y, unbiased=ub, chunk_size=chunk)
            torch.testing.assert_close(chunked, dense, rtol=0, atol=1e-10)
            gd = torch.autograd.grad(dense, (x, y))
            gc = torch.autograd.grad(chunked, (x, y))
            for a, b in zip(gd, gc):
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
            cov_d = distance_covariance_sqr(x, y, unbiased=ub, method="naive")
            cov_c = distance_covariance_sqr(x, y, unbiased=ub, method="naive", chunk_size=chunk)
            torch.testing.assert_close(cov_c, cov_d, rtol=0, atol=1e-10)

    @pytest.mark.parametrize("d", [1, 3, 7])
    @pytest.mark.parametrize("exponent", [1.0, 0.5])
    def test_fused_no_grad_equals_streamed_autograd_path(self, d, exponent):
        """The no-autograd triangular pass equals the checkpointed path (values, float64)."""
        g = torch.Generator().manual_seed(d)
        x = torch.randn(57, d, generator=g, dtype=torch.float64)
        y = torch.tanh(x[:, :1]) + 0.5 * torch.randn(57, 2, generator=g, dtype=torch.float64)
        x[10] = x[3]  # a duplicated point: its distance must stay exactly 0
        for ub in (False, True):
            xr = x.clone().requires_grad_(True)
            ref_cor = distance_correlation_sqr(xr, y, exponent, ub, method="naive").detach()
            ref_cov = distance_covariance_sqr(xr, y, exponent, ub, method="naive").detach()
            for chunk in (None, 1, 5, 57, 1000):
                with torch.no_grad():
                    cor = distance_correlation_sqr(xr, y, exponent, ub, "naive", chunk)
                cov = distance_covariance_sqr(x, y, exponent, ub, "naive", chunk)
                assert float(cor) == pytest.approx(float(ref_cor), rel=1e-12, abs=1e-13)
                assert float(cov) == pytest.approx(float(ref_cov), rel=1e-12, abs=1e-13)

    def test_gradcheck_naive(self):
        g = torch.Generator().manual_seed(5)
        x = torch.randn(7, 2, generator=g, dtype=torch.float64, requires_grad=True)
        y = torch.randn(7, 3, generator=g, dtype=torch.float64, requires_grad=True)
        for exponent in (1.0, 0.5):
            gradcheck64(
                lambda a, b, e=exponent: distance_correlation_sqr(a, b, e, chunk_size=3), x, y
            )
            gradcheck64(
                lambda a, b, e=exponent: distance_covariance_sqr(a, b, e, unbiased=True), x, y
            )

    def test_duplicate_points_give_finite_gradient(self):
        x = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 2.0], [3.0, 1.0]], requires_grad=True)
        y = torch.tensor([0.0, 1.0, 1.0, 5.0], requires_grad=True)
        loss = distance_correlation(x, y, method="naive")
        loss.backward()
        assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()


class TestProperties:
    def test_invariances(self):
        g = torch.Generator().manual_seed(6)
        x = torch.randn(30, 3, generator=g, dtype=torch.float64)
        y = x[:, :1] ** 2 + 0.1 * torch.randn(30, 1, generator=g, dtype=torch.float64)
        base = distance_correlation_sqr(x, y)
        q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
        perm = torch.randperm(30, generator=g)
        torch.testing.assert_close(distance_correlation_sqr(3.0 * x @ q + 1.0, y - 2.0), base)
        torch.testing.assert_close(distance_correlation_sqr(x[perm], y[perm]), base)
        torch.testing.assert_close(distance_correlation_sqr(y, x), base)
        assert 0.0 <= float(base) <= 1.0
        # dCov scales with |c|^exponent in each argument.
        c = distance_covariance_sqr(2.0 * x, y)
        torch.testing.assert_close(c, 2.0 * distance_covariance_sqr(x, y))

    def test_linear_relation_has_dcor_one(self):
        x = torch.randn(20, dtype=torch.float64)
        assert float(distance_correlation(x, -3.0 * x + 1.0)) == pytest.approx(1.0, abs=1e-12)

    def test_peer_dcor(self):
        dcor = pytest.importorskip("dcor")
        rng = np.random.default_rng(7)
        x = rng.standard_normal((60, 3))
        y = rng.standard_normal((60, 2)) + np.sin(x[:, :2])
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        for e in (1.0, 0.5):
            assert float(distance_covariance_sqr(xt, yt, e)) == pytest.approx(
                dcor.distance_covariance_sqr(x, y, exponent=e), rel=1e-10
            )
            assert float(distance_covariance(xt, yt, e)) == pytest.approx(
                dcor.distance_covariance(x, y, exponent=e), rel=1e-10
            )
            assert float(distance_correlation_sqr(xt, yt, e, unbiased=True)) == pytest.approx(
                dcor.u_distance_correlation_sqr(x, y, exponent=e), rel=1e-10
            )
        x1, y1 = x[:, 0], y[:, 0]
        assert float(distance_correlation(torch.from_numpy(x1), torch.from_numpy(y1))) == (
            pytest.approx(dcor.distance_correlation(x1, y1, method="avl"), rel=1e-10)
        )

    def test_half_precision(self):
        x = torch.randn(32, 4).to(torch.bfloat16)
        y = (x.float() ** 2).to(torch.bfloat16)
        out = distance_correlation_sqr(x, y)
        assert out.dtype == torch.bfloat16 and torch.isfinite(out)
        big = distance_correlation_sqr(torch.randn(16, 2) * 1e4, torch.randn(16, 2))
        assert torch.isfinite(big)


class TestBadInput:
    def test_errors(self):
        x = torch.randn(10, 2)
        with pytest.raises(ValueError, match="y"):
            distance_covariance_sqr(x, torch.randn(9, 2))
        with pytest.raises(ValueError, match="4 samples"):
            distance_covariance_sqr(torch.randn(3), torch.randn(3), unbiased=True)
        with pytest.raises(ValueError, match="exponent"):
            distance_covariance_sqr(x, x, exponent=2.0)
        with pytest.raises(ValueError, match="exponent"):
            distance_covariance_sqr(x, x, exponent=-1.0)
        with pytest.raises(ValueError, match="method"):
            distance_covariance_sqr(x, x, method="avl")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="method"):
            distance_covariance_sqr(x, x, method="fast")
        with pytest.raises(ValueError, match="x"):
            distance_covariance_sqr(torch.randn(2, 3, 4), x)
        with pytest.raises(TypeError, match="x"):
            distance_covariance_sqr(torch.arange(10), torch.randn(10))
        with pytest.raises(ValueError, match="chunk_size"):
            distance_correlation_sqr(x, x, chunk_size=0)
        bad = x.clone()
        bad[0, 0] = float("nan")
        with checks("full"), pytest.raises(ValueError, match="x"):
            distance_correlation_sqr(bad, x)


class TestModule:
    def test_module(self):
        x = torch.randn(12, 2, dtype=torch.float64)
        y = torch.randn(12, 1, dtype=torch.float64)
        module_matches_function(
            DistanceCorrelationLoss,
            lambda a, b, weight: weight * distance_correlation_sqr(a, b),
            x,
            y,
            settings={"weight": 2.0},
        )
        module_matches_function(
            DistanceCorrelationLoss,
            lambda a, b, statistic, unbiased: distance_covariance_sqr(a, b, unbiased=unbiased),
            x,
            y,
            settings={"statistic": "covariance", "unbiased": True},
        )
        assert "correlation" in repr(DistanceCorrelationLoss())
        with pytest.raises(ValueError, match="statistic"):
            DistanceCorrelationLoss("foo")  # type: ignore[arg-type]


@pytest.mark.parametrize("unbiased", [False, True])
def test_fast_path_tie_aware_branch_on_tie_free_data(unbiased: bool) -> None:
    """Off the CPU the 1-D fast path always takes its tie-aware branch (no host check); on
    tie-free data it must equal the plain branch, values and gradients."""
    from inforeg.dependence.distance_covariance import _fast_all

    g = torch.Generator().manual_seed(11)
    x = torch.randn(257, generator=g, dtype=torch.float64, requires_grad=True)
    y = (x.detach() ** 2 + torch.randn(257, generator=g, dtype=torch.float64)).requires_grad_()
    plain = torch.stack(_fast_all(x, y, unbiased))
    tie_aware = torch.stack(_fast_all(x, y, unbiased, always_ties=True))
    torch.testing.assert_close(tie_aware, plain, rtol=1e-12, atol=1e-12)
    gp = torch.autograd.grad(plain.sum(), (x, y))
    gt = torch.autograd.grad(tie_aware.sum(), (x, y))
    for a, b in zip(gt, gp):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_float32_input_accumulates_in_float64() -> None:
    """The V-statistic cancels by ~1000x at this size: float32 inputs must still agree with
    float64 to float32 rounding of the inputs (float32 accumulation was off by ~1e-3)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6000, 32, generator=g, dtype=torch.float64)
    y = 0.5 * x + torch.randn(6000, 32, generator=g, dtype=torch.float64)
    x32, y32 = x.float(), y.float()
    ref = distance_covariance_sqr(x32.double(), y32.double())
    got = distance_covariance_sqr(x32, y32)
    assert got.dtype == torch.float32
    assert abs(float(got) / float(ref) - 1.0) < 1e-5
    ref_c = distance_correlation_sqr(x32.double(), y32.double())
    assert abs(float(distance_correlation_sqr(x32, y32)) / float(ref_c) - 1.0) < 1e-5


@pytest.mark.parametrize("exponent", [1.0, 0.5])
@pytest.mark.parametrize("d", [3, 16])
@pytest.mark.parametrize("unbiased", [False, True])
def test_float32_autograd_path_as_accurate_as_the_forward(
    d: int, unbiased: bool, exponent: float
) -> None:
    """With a gradient (a training loss) the statistic must be as accurate as without: the
    streamed autograd path summed its float32 blocks in float32 (exponent 1: 4e-5 relative at
    n = 2000, 3e-4 at n = 4000; exponent 0.5: 9e-5 at n = 5000), against 1e-7 for the
    float64-accumulated forward."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2000, d, generator=g)
    y = x[:, :1] ** 2 + torch.randn(2000, 1, generator=g)
    xd = x.double().requires_grad_(True)
    for fn in (distance_covariance_sqr, distance_correlation_sqr):
        ref = fn(xd, y.double(), exponent=exponent, unbiased=unbiased)
        (ref_grad,) = torch.autograd.grad(ref, xd)
        xs = x.clone().requires_grad_(True)
        got = fn(xs, y, exponent=exponent, unbiased=unbiased)
        (grad,) = torch.autograd.grad(got, xs)
        assert abs(float(got.detach()) / float(ref) - 1.0) < 1e-6
        assert float((grad.double() - ref_grad).norm() / ref_grad.norm()) < 1e-5
