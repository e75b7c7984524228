"""Tsallis entropy and the q-Gaussian: closed forms, limits, numerical integration."""

from __future__ import annotations

import math

import pytest
import torch

import inforeg
from inforeg.core.checks import checks
from inforeg.estimators import QGaussian, tsallis_entropy
from tests._helpers import gradcheck64


class TestTsallis:
    def test_closed_forms(self):
        p = torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
        assert torch.allclose(tsallis_entropy(p, 2.0), torch.tensor(1 - 0.375, dtype=torch.float64))
        shannon = -(p * p.log()).sum()
        assert torch.allclose(tsallis_entropy(p, 1.0), shannon)
        assert abs(float(tsallis_entropy(p, 1.0 + 1e-4) - shannon)) < 1e-3  # q -> 1 limit (nats)
        u = torch.full((4,), 0.25, dtype=torch.float64)  # uniform: (1 - n^(1-q))/(q-1)
        assert torch.allclose(
            tsallis_entropy(u, 3.0), torch.tensor((1 - 4 ** (-2)) / 2, dtype=torch.float64)
        )

    def test_dim_zero_probs_and_dtypes(self):
        p = torch.tensor([[1.0, 0.0], [0.5, 0.5]])
        assert torch.allclose(tsallis_entropy(p, 1.0), torch.tensor([0.0, math.log(2)]))
        assert torch.allclose(tsallis_entropy(p.T, 2.0, dim=0), torch.tensor([0.0, 0.5]))
        assert tsallis_entropy(p.bfloat16(), 2.0).dtype == torch.bfloat16
        gradcheck64(lambda v: tsallis_entropy(v, 1.7), torch.tensor([0.2, 0.3, 0.5]))

    def test_bad_input(self):
        with pytest.raises(ValueError, match="q"):
            tsallis_entropy(torch.tensor([0.5, 0.5]), 0.0)
        with inforeg.core.checks.checks("full"), pytest.raises(ValueError, match="p"):
            tsallis_entropy(torch.tensor([0.5, 0.6]), 2.0)


class TestQGaussian:
    @pytest.mark.parametrize("q,var", [(0.5, 0.2857142857), (1.0, 0.5), (1.5, 2.0)])
    def test_mass_and_variance(self, q, var):
        d = QGaussian(q, torch.tensor(1.0, dtype=torch.float64))
        x = torch.linspace(-400, 400, 800001, dtype=torch.float64)
        p = d.log_prob(x).exp()
        assert abs(float(torch.trapezoid(p, x)) - 1) < 2e-3
        assert abs(float(d.variance) - var) < 1e-6
        if q < 1.5:
            assert abs(float(torch.trapezoid(p * x * x, x)) - var) < 1e-4

    def test_student_t_and_cauchy_links(self):
        x = torch.linspace(-5, 5, 11, dtype=torch.float64)
        cauchy = torch.distributions.Cauchy(0.0, 1.0)
        assert torch.allclose(
            QGaussian(2.0, 1.0).log_prob(x.float()).double(), cauchy.log_prob(x).double(), atol=1e-5
        )
        q, beta = 1.5, 2.0
        nu = (3 - q) / (q - 1)
        t = torch.distributions.StudentT(nu, 0.0, 1 / math.sqrt(beta * (3 - q)))
        assert torch.allclose(
            QGaussian(q, beta).log_prob(x.float()), t.log_prob(x.float()), atol=1e-5
        )

    @pytest.mark.parametrize("q", [0.5, 1.0, 1.5])
    def test_samples_match_density(self, q):
        torch.manual_seed(0)
        d = QGaussian(q, torch.tensor(1.0, dtype=torch.float64))
        s = d.sample((200000,))
        x = torch.linspace(-0.5, 0.5, 2001, dtype=torch.float64)
        mass = float(torch.trapezoid(d.log_prob(x).exp(), x))
        assert abs(float((s.abs() < 0.5).double().mean()) - mass) < 0.01
        if q < 1.5:
            assert abs(float(s.var()) - float(d.variance)) < 0.02

    def test_compact_support_and_bad_q(self):
        d = QGaussian(0.5, 1.0)
        assert d.log_prob(torch.tensor(3.0)) == float("-inf")  # |x| > 1/sqrt(beta (1 - q))
        with pytest.raises(ValueError, match="q"):
            QGaussian(3.0)
        with pytest.raises(ValueError, match="beta"):
            QGaussian(1.5, beta=-1.0)


def test_qgaussian_log_prob_checks_value():
    d = QGaussian(1.5, beta=2.0, loc=0.5)
    with pytest.raises(TypeError, match="value"):
        d.log_prob(torch.tensor([True, False]))
    with checks("full"), pytest.raises(ValueError, match="value: expected finite"):
        d.log_prob(torch.tensor([0.0, float("nan")]))


@pytest.mark.parametrize("validate", [True, False])
def test_qgaussian_rejects_nan_parameters_whatever_torch_validation_says(validate):
    # Regression: a NaN loc was caught only by torch's argument validation, a global switch that
    # the first torch.compile in a process turns off; then the distribution was silently NaN.
    from torch.distributions import Distribution

    before = Distribution._validate_args
    Distribution.set_default_validate_args(validate)
    try:
        with pytest.raises(ValueError, match="loc"):
            QGaussian(1.5, loc=float("nan"))
        with pytest.raises(ValueError, match="beta"):
            QGaussian(1.5, beta=float("nan"))
    finally:
        Distribution.set_default_validate_args(before)
