"""The lpn-laplace-1d experiment's references: quadrature MMSE against Tweedie's closed form,
soft-thresholding, and the posterior median's shape; the Laplace sampler's moments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inforeg.lab.experiments.lpn_laplace_1d import MAP, MEDIAN, MMSE, sample_pairs, targets

stats = pytest.importorskip("scipy.stats")


def test_mmse_matches_tweedie_closed_form():
    """Laplace(0, 1) prior, N(0, 1) noise: E[x|y] = y + m'(y)/m(y) with
    m(y) ∝ e^{-y}Φ(y-1) + e^{y}Φ(-y-1) (the φ terms of m' cancel)."""
    grid, refs = targets()
    log_a = -grid + stats.norm.logcdf(grid - 1)
    log_b = grid + stats.norm.logcdf(-grid - 1)
    closed = grid + (np.exp(log_b) - np.exp(log_a)) / (np.exp(log_a) + np.exp(log_b))
    np.testing.assert_allclose(refs[MMSE], closed, atol=1e-6)


def test_map_and_median_references():
    grid, refs = targets()
    np.testing.assert_allclose(refs[MAP], np.sign(grid) * np.maximum(np.abs(grid) - 1, 0))
    median = refs[MEDIAN]
    np.testing.assert_allclose(median, -median[::-1], atol=1e-9)  # odd
    assert (np.diff(median) > 0).all()  # increasing: no dead zone (no point mass at 0)
    # shrinks towards 0, but never past the MAP (which shrinks by 1)
    assert (np.abs(median) <= np.abs(grid) + 1e-12).all()
    assert (np.abs(median) >= np.abs(refs[MAP]) - 1e-12).all()


def test_sampler_moments():
    y, x = sample_pairs(200_000, torch.Generator().manual_seed(0))
    assert abs(float(x.abs().mean()) - 1.0) < 0.01  # E|x| = b = 1
    assert abs(float((y - x).std()) - 1.0) < 0.01
