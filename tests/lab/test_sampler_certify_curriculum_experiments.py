"""Pieces of the evodiff-gmm, drs-digits and entropy-curriculum-digits experiments that their
verdicts rest on: equal NFE for every arm, the Fréchet distance, the certified-accuracy summary,
and the masked-digits difficulty."""

from __future__ import annotations

import pytest
import torch

from inforeg.diffusion import gmm_denoiser
from inforeg.lab.experiments import drs_digits, evodiff_gmm
from inforeg.lab.experiments.protocol import grid_points


@pytest.mark.parametrize("nfe", [5, 10])
def test_every_evodiff_arm_uses_exactly_the_stated_nfe(nfe):
    den = gmm_denoiser(torch.randn(3, 2, dtype=torch.float64), std=0.2)
    calls = []

    def counting(x, sigma):
        calls.append(1)
        return den(x, sigma)

    z = 80 * torch.randn(4, 2, dtype=torch.float64)
    for arm, grid in evodiff_gmm.GRIDS.items():
        for point in grid_points(grid):
            calls.clear()
            out = evodiff_gmm.sample(arm, point, counting, z, nfe)
            assert len(calls) == nfe, (arm, point)
            assert out.shape == z.shape and torch.isfinite(out).all()


def test_frechet_to_gaussian():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 3, generator=g, dtype=torch.float64)
    cov = a @ a.T + torch.eye(3, dtype=torch.float64)
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    x = (
        mean
        + torch.randn(50_000, 3, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    )
    assert evodiff_gmm.frechet_to_gaussian(x, mean, cov) == pytest.approx(0.0, abs=0.05)
    shift = torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64)
    assert evodiff_gmm.frechet_to_gaussian(x + shift, mean, cov) == pytest.approx(25.0, abs=0.2)
    # different covariances: (sqrt(2) - 1)^2 per axis for N(0, 2I) against N(0, I)
    y = 2**0.5 * torch.randn(50_000, 2, generator=g, dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)
    want = 2 * (2**0.5 - 1) ** 2
    assert evodiff_gmm.frechet_to_gaussian(
        y, torch.zeros(2, dtype=torch.float64), eye
    ) == pytest.approx(want, abs=0.02)


def test_digits_mixture_is_in_range():
    den = evodiff_gmm.digits_mixture()
    assert den.means.shape == (10, 1, 8, 8)
    assert den.means.min() >= -1.0 and den.means.max() <= 1.0


def test_certified_accuracy_summary():
    radii = [-1.0, 0.0, 0.3, 0.6, 1.2]  # wrong, correct at radius 0, ...
    got = drs_digits._summary(radii, "t")
    assert got["t cert. acc @0.0"] == 0.8
    assert got["t cert. acc @0.25"] == 0.6
    assert got["t cert. acc @0.5"] == 0.4
    assert got["t cert. acc @1.0"] == 0.2
    assert got["t ACR"] == pytest.approx((0.3 + 0.6 + 1.2) / 5)


def test_masked_digits_difficulty():
    pytest.importorskip("sklearn")
    from inforeg.data import static_entropy
    from inforeg.lab.experiments import entropy_curriculum_digits as ecd

    data = ecd._data(0)
    x, static, rate = data["x_train"], data["static"], data["rate"]
    assert set(rate.unique().tolist()) == {0.0, 0.25, 0.5}
    want = rate + 0.5 * static_entropy(x, bins=16, value_range=(0.0, 1.0))
    assert torch.equal(static, want)
    zeros = (x == 0).float().mean(1)
    assert zeros[rate == 0.5].mean() > zeros[rate == 0.25].mean() + 0.08
    assert zeros[rate == 0.25].mean() > zeros[rate == 0.0].mean() + 0.08
    assert data["x_val"].min() >= 0 and data["x_val"].max() <= 1
