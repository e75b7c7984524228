"""The exact Gaussian-mixture denoiser: closed forms, Monte Carlo posterior mean, moments."""

from __future__ import annotations

import pytest
import torch

from inforeg.diffusion import GaussianMixtureDenoiser, gmm_denoiser
from tests._helpers import assert_close, gradcheck64


def test_one_component_is_the_gaussian_posterior_mean():
    mu = torch.tensor([[1.0, -2.0, 0.5]], dtype=torch.float64)
    den = gmm_denoiser(mu, std=0.5)
    x = torch.randn(4, 3, dtype=torch.float64)
    sigma = torch.tensor([0.1, 1.0, 3.0, 10.0], dtype=torch.float64)
    var = 0.25 + sigma[:, None] ** 2
    assert_close(den(x, sigma), (0.25 * x + sigma[:, None] ** 2 * mu) / var)
    assert_close(den(x, 0.0), x)  # no noise: the identity
    assert_close(den(x, torch.tensor(1e8, dtype=torch.float64)), mu.expand(4, 3))


def test_matches_monte_carlo_posterior_mean():
    g = torch.Generator().manual_seed(0)
    means = torch.tensor([[-1.0, 0.0], [1.0, 1.0], [0.0, -2.0]], dtype=torch.float64)
    weights = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    den = gmm_denoiser(means, std=0.3, weights=weights)
    x_query = torch.tensor([[0.4, 0.2]], dtype=torch.float64)
    sigma = 0.8
    # importance weights of exact draws x0 ~ mixture for the likelihood N(x_query; x0, sigma^2)
    x0 = den.sample(400_000, generator=g)
    logw = -((x0 - x_query) ** 2).sum(1) / (2 * sigma**2)
    w = torch.softmax(logw, 0)
    mc = (w[:, None] * x0).sum(0)
    assert_close(den(x_query, sigma)[0], mc, atol=5e-3, rtol=0)


def test_moments_and_samples():
    g = torch.Generator().manual_seed(1)
    means = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    den = gmm_denoiser(means, std=0.2, weights=weights)
    draws = den.sample(200_000, generator=g).flatten(1)
    assert draws.shape == (200_000, 6)
    assert_close(den.mean(), draws.mean(0), atol=1e-2, rtol=0)
    assert_close(den.covariance(), torch.cov(draws.T), atol=2e-2, rtol=0)
    assert isinstance(den, GaussianMixtureDenoiser) and den.means.shape == (4, 2, 3)


def test_far_points_are_finite_and_gradcheck():
    den = gmm_denoiser(torch.tensor([[-1.0], [1.0]], dtype=torch.float64), std=0.1)
    far = torch.tensor([[1e4], [-1e4]], dtype=torch.float64)
    assert torch.isfinite(den(far, torch.tensor([0.01, 0.01], dtype=torch.float64))).all()
    x = torch.randn(3, 1)
    gradcheck64(lambda v: den(v, torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)), x)


def test_bad_input():
    means = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="std"):
        gmm_denoiser(means, std=0.0)
    with pytest.raises(ValueError, match="weights"):
        gmm_denoiser(means, std=1.0, weights=torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="weights"):
        gmm_denoiser(means, std=1.0, weights=torch.tensor([0.5, 0.6, -0.1]))
    with pytest.raises(ValueError, match="means"):
        gmm_denoiser(torch.zeros(3), std=1.0)
    with pytest.raises(ValueError, match="x"):
        gmm_denoiser(means, std=1.0)(torch.zeros(4, 3), 1.0)
