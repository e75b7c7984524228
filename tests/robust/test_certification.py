"""Certification statistics: Clopper–Pearson bound, binomial test, Cohen and DRS radii."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from inforeg.robust import (
    binomial_test_half,
    certified_radius,
    clopper_pearson_lower,
    dual_certified_radius,
)

PHI = NormalDist().cdf
PROBIT = NormalDist().inv_cdf


def test_clopper_pearson_oracles():
    assert clopper_pearson_lower(100, 100, 1e-3) == pytest.approx(0.9332543, abs=5e-8)
    assert clopper_pearson_lower(90, 100, 1e-3) == pytest.approx(0.7753299, abs=5e-8)
    assert clopper_pearson_lower(0, 100, 1e-3) == 0.0
    assert clopper_pearson_lower(0, 1, 0.5) == 0.0
    for n in (1, 7, 2000):
        assert clopper_pearson_lower(n, n, 0.01) == pytest.approx(0.01 ** (1 / n), rel=1e-14)


def test_clopper_pearson_matches_scipy_beta_quantile():
    beta = pytest.importorskip("scipy.stats").beta
    for n in (1, 2, 5, 10, 100, 1000, 2000, 100_000):
        for n_a in sorted({1, n // 3, n // 2, n - 1, int(0.9 * n), int(0.99 * n)} - {0}):
            for alpha in (1e-6, 1e-3, 0.05, 0.5):
                ref = beta.ppf(alpha, n_a, n - n_a + 1)
                got = clopper_pearson_lower(n_a, n, alpha)
                assert got == pytest.approx(ref, rel=1e-9), (n_a, n, alpha)


def test_clopper_pearson_is_the_exact_tail_bound():
    """P(Bin(n, p_lower) >= n_a) = alpha: the defining property, checked by a direct sum."""
    for n_a, n, alpha in ((3, 10, 0.05), (17, 20, 1e-3), (250, 300, 0.01)):
        p = clopper_pearson_lower(n_a, n, alpha)
        tail = math.fsum(math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(n_a, n + 1))
        assert tail == pytest.approx(alpha, rel=1e-9)


def test_clopper_pearson_monotone_in_successes_and_level():
    values = [clopper_pearson_lower(k, 50, 0.01) for k in range(51)]
    assert all(b > a for a, b in zip(values, values[1:]))
    assert clopper_pearson_lower(40, 50, 0.1) > clopper_pearson_lower(40, 50, 0.001)


def test_binomial_test_half_matches_scipy():
    binomtest = pytest.importorskip("scipy.stats").binomtest
    for n in (1, 2, 7, 100, 1001):
        for k in range(0, n + 1, max(1, n // 13)):
            assert binomial_test_half(k, n) == pytest.approx(binomtest(k, n, 0.5).pvalue, rel=1e-10)


def test_binomial_test_half_closed_forms():
    assert binomial_test_half(5, 10) == 1.0
    assert binomial_test_half(10, 10) == pytest.approx(2 * 0.5**10, rel=1e-14)
    assert binomial_test_half(0, 10) == pytest.approx(2 * 0.5**10, rel=1e-14)
    assert binomial_test_half(9, 10) == pytest.approx(2 * 11 / 1024, rel=1e-13)


def test_cohen_radius_oracles():
    assert certified_radius(0.9, 0.25) == pytest.approx(0.3203879, abs=5e-8)
    assert certified_radius(0.9, 0.5) == pytest.approx(2 * 0.3203879, abs=1e-7)
    assert certified_radius(0.5, 0.25) == 0.0
    assert certified_radius(0.3, 0.25) == 0.0
    assert certified_radius(1.0, 0.25) == math.inf
    p = clopper_pearson_lower(100, 100, 1e-3)
    assert certified_radius(p, 0.25) == pytest.approx(0.3751188, abs=5e-8)


def test_dual_radius_oracles():
    sigma = 0.25
    p = PHI(1.0)
    for combine in ("official", "conservative"):
        assert dual_certified_radius(p, p, sigma, combine) == pytest.approx(sigma * math.sqrt(2))
    official = dual_certified_radius(0.8, 0.95, 0.5, combine="official")
    assert official == pytest.approx(0.5 * math.hypot(PROBIT(0.8), PROBIT(0.95)), rel=1e-14)
    conservative = dual_certified_radius(0.8, 0.95, 0.5, combine="conservative")
    assert conservative == pytest.approx(0.5 * (PROBIT(0.8) + PROBIT(0.95)) / math.sqrt(2))
    # the spec's soundness example: one branch below 1/2
    assert dual_certified_radius(PHI(2.0), 0.4, sigma, "official") == pytest.approx(0.5, rel=1e-12)
    cons = dual_certified_radius(PHI(2.0), 0.4, sigma, combine="conservative")
    assert cons == pytest.approx(0.25 * (2.0 + PROBIT(0.4)) / math.sqrt(2), rel=1e-12)
    assert cons == pytest.approx(0.309, abs=5e-4)
    p_100 = clopper_pearson_lower(100, 100, 1e-3)
    assert dual_certified_radius(p_100, p_100, sigma) == pytest.approx(0.5304980, abs=5e-8)


def test_dual_radius_properties():
    grid = [0.0, 0.1, 0.45, 0.5, 0.6, 0.8, 0.95, 0.999]
    for p_l in grid:
        for p_r in grid:
            off = dual_certified_radius(p_l, p_r, 0.3, "official")
            cons = dual_certified_radius(p_l, p_r, 0.3, "conservative")
            assert cons <= off + 1e-12
            assert off == dual_certified_radius(p_r, p_l, 0.3, "official")  # symmetric
            assert off >= 0.0 and cons >= 0.0
    assert dual_certified_radius(0.0, 1.0, 0.3, "conservative") == 0.0  # undecided, not NaN
    assert dual_certified_radius(0.2, 0.3, 0.3, "conservative") == 0.0


@pytest.mark.parametrize(
    ("p_l", "p_r"), [(PHI(2.0), 0.4), (0.8, 0.95), (0.6, 0.999), (0.51, 0.52), (0.9, 0.9)]
)
def test_default_dual_radius_holds_for_the_summed_vote(p_l, p_r):
    """The default radius never exceeds the distance at which the summed vote can change.

    Worst case: half-space base classifiers whose class-A probabilities are exactly the bounds.
    A perturbation with parts of norms a, b on the two halves moves them to
    Phi(z_l - a/sigma) and Phi(z_r - b/sigma); two classes, so A loses the summed vote once they
    sum below 1. At a given ||delta|| the attacker takes a = b = ||delta|| / sqrt(2).
    """
    sigma = 0.25
    radius = dual_certified_radius(p_l, p_r, sigma)
    z_l, z_r = PROBIT(p_l), PROBIT(p_r)

    def votes_for_a(norm: float) -> float:
        part = norm / math.sqrt(2.0) / sigma
        return PHI(z_l - part) + PHI(z_r - part)

    assert votes_for_a(radius * (1 - 1e-9)) > 1.0  # still certified just inside
    assert votes_for_a(radius * (1 + 1e-6)) < 1.0  # tight: the vote flips just outside


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: clopper_pearson_lower(101, 100, 1e-3), "n_a"),
        (lambda: clopper_pearson_lower(-1, 100, 1e-3), "n_a"),
        (lambda: clopper_pearson_lower(1, 0, 1e-3), "n"),
        (lambda: clopper_pearson_lower(1, 10, 0.0), "alpha"),
        (lambda: clopper_pearson_lower(1, 10, 1.0), "alpha"),
        (lambda: clopper_pearson_lower(1, 10, -0.1), "alpha"),
        (lambda: clopper_pearson_lower(1, 10, float("nan")), "alpha"),
        (lambda: certified_radius(1.2, 0.25), "p_lower"),
        (lambda: certified_radius(-0.1, 0.25), "p_lower"),
        (lambda: certified_radius(float("nan"), 0.25), "p_lower"),
        (lambda: certified_radius(0.9, 0.0), "sigma"),
        (lambda: dual_certified_radius(0.9, 1.5, 0.25), "p_lower_r"),
        (lambda: dual_certified_radius(-1, 0.5, 0.25), "p_lower_l"),
        (lambda: dual_certified_radius(0.9, 0.9, -1.0), "sigma"),
        (lambda: binomial_test_half(11, 10), "k"),
    ],
)
def test_bad_values_name_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_bad_types_and_choices():
    with pytest.raises(TypeError, match="n"):
        clopper_pearson_lower(5, 10.0, 0.01)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="n_a"):
        clopper_pearson_lower(True, 10, 0.01)
    with pytest.raises(ValueError, match="combine"):
        dual_certified_radius(0.9, 0.9, 0.25, combine="sum")  # type: ignore[arg-type]
