"""The mee-digits-gan experiment's measurements: the Fréchet distance against scipy's matrix
square root, the coverage / quality summary of a class histogram, D's affine R^2 and the code
entropy against brute force; the experiment's protocol-2 declaration."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from inforeg.lab.experiments.base import protocol_problems
from inforeg.lab.experiments.mee_digits_gan import (
    EXPERIMENT,
    affine_r2,
    code_entropy,
    coverage_and_quality,
    frechet_distance,
)

linalg = pytest.importorskip("scipy.linalg")


def test_frechet_distance_matches_scipy_sqrtm():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=gen, dtype=torch.float64)
    b = (
        torch.randn(400, 6, generator=gen, dtype=torch.float64)
        @ torch.randn(6, 6, generator=gen, dtype=torch.float64)
        + 0.5
    )
    ca, cb = np.cov(a.numpy().T), np.cov(b.numpy().T)
    mu = a.numpy().mean(0) - b.numpy().mean(0)
    root = linalg.sqrtm(ca @ cb).real
    expected = mu @ mu + np.trace(ca + cb - 2 * root)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_coverage_and_quality_of_known_histograms():
    even = torch.eye(10).repeat(30, 1)  # every class 30 times, confidence 1
    out = coverage_and_quality(even)
    assert out["class KL to uniform (nats)"] == pytest.approx(0.0, abs=1e-12)
    assert out["classes covered (>= 2% of samples)"] == 10
    assert out["mean classifier confidence"] == pytest.approx(1.0)
    one = torch.full((50, 10), 0.05)
    one[:, 3] = 0.55  # every sample labelled 3, confidence 0.55
    out = coverage_and_quality(one)
    assert out["class KL to uniform (nats)"] == pytest.approx(math.log(10))
    assert out["classes covered (>= 2% of samples)"] == 1
    assert out["mean classifier confidence"] == pytest.approx(0.55)
    assert out["confident samples (>= 0.9)"] == 0.0


def test_affine_r2_is_one_for_an_affine_d_and_lower_otherwise():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(300, 5, generator=gen)
    lin = nn.Linear(5, 3)
    assert affine_r2(lin, x) == pytest.approx(1.0, abs=1e-9)
    assert affine_r2(lambda v: lin(v).pow(2), x) < 0.9


def test_code_entropy_is_log_mean_nearest_neighbour_distance():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(40, 4, generator=gen, dtype=torch.float64)
    d = torch.cdist(x, x).pow(2) / 4
    d.fill_diagonal_(math.inf)
    expected = math.log(float(d.min(1).values.mean()) + 1e-8)
    assert code_entropy(nn.Identity(), x) == pytest.approx(expected, rel=1e-9)


def test_experiment_meets_protocol_2():
    assert protocol_problems(EXPERIMENT) == []
    assert EXPERIMENT.name == "mee-digits-gan"
    assert {c.kind for c in EXPERIMENT.claims} == {"paper", "sanity"}
    sizes = {len(next(iter(g.values()))) for g in EXPERIMENT.tuning.values()}
    assert sizes == {3}
