"""Compositional NLL: closed-form values and gradients, the moving average, the module's state,
and convergence to the sample mean for a Gaussian mean (spec §8 oracles)."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.optim import CompositionalNLL, compositional_nll
from tests._helpers import assert_close, gradcheck64, module_matches_function


def _inputs(dtype=torch.float64, n=7, m=11, seed=0):
    g = torch.Generator().manual_seed(seed)
    e_data = torch.randn(n, generator=g, dtype=torch.float64).to(dtype)
    e_noise = (2 * torch.randn(m, generator=g, dtype=torch.float64)).to(dtype)
    log_q = (-0.5 * torch.randn(m, generator=g, dtype=torch.float64) ** 2 - 1.0).to(dtype)
    return e_data, e_noise, log_q


def test_beta_one_value_and_gradient_are_the_minibatch_objective(dtype):
    e_data, e_noise, log_q = _inputs(dtype)
    e_data.requires_grad_(True)
    e_noise.requires_grad_(True)
    out = compositional_nll(e_data, e_noise, log_q, beta=1.0)
    ed, en, lq = e_data.double(), e_noise.double(), log_q.double()
    expected = ed.mean() + torch.logsumexp(-en - lq, 0) - math.log(en.numel())
    assert_close(out.loss, expected)
    assert_close(out.log_u, expected - ed.mean())
    g_data, g_noise = torch.autograd.grad(out.loss, (e_data, e_noise))
    assert_close(g_data, torch.full_like(ed, 1 / ed.numel()))
    assert_close(g_noise, -torch.softmax(-en - lq, 0))


def test_first_step_ignores_beta():
    e_data, e_noise, log_q = _inputs()
    a = compositional_nll(e_data, e_noise, log_q, beta=0.1)
    b = compositional_nll(e_data, e_noise, log_q, beta=1.0)
    assert_close(a.loss, b.loss)
    assert_close(a.log_u, b.log_u)


def test_moving_average_and_weights():
    e_data, e_noise, log_q = _inputs()
    e_noise.requires_grad_(True)
    beta, log_u_prev = 0.25, torch.tensor(-0.7, dtype=torch.float64)
    out = compositional_nll(e_data, e_noise, log_q, log_u=log_u_prev, beta=beta)
    m = e_noise.numel()
    g_hat = torch.exp(-e_noise.detach() - log_q).mean()
    u_t = (1 - beta) * math.exp(-0.7) + beta * g_hat
    assert_close(out.log_u, torch.log(u_t))
    assert_close(out.loss, e_data.mean() + torch.log(u_t))  # value: the current NLL estimate
    (g_noise,) = torch.autograd.grad(out.loss, e_noise)
    assert_close(g_noise, -torch.exp(-e_noise.detach() - log_q) / (m * u_t))
    assert not out.log_u.requires_grad  # state, not graph


def test_module_first_call_sets_then_mixes():
    e_data, e_noise, log_q = _inputs()
    e_noise2 = e_noise + 0.5
    crit = CompositionalNLL(beta=0.3)
    first = crit(e_data, e_noise, log_q)
    ref1 = compositional_nll(e_data, e_noise, log_q, beta=0.3)
    assert_close(first, ref1.loss)
    assert_close(crit.log_u, ref1.log_u)
    assert bool(crit.initialized)
    second = crit(e_data, e_noise2, log_q)
    ref2 = compositional_nll(e_data, e_noise2, log_q, log_u=ref1.log_u, beta=0.3)
    assert_close(second, ref2.loss)
    assert_close(crit.log_u, ref2.log_u)
    assert set(crit.state_dict()) == {"log_u", "initialized"}
    crit.reset()
    assert not bool(crit.initialized)
    assert_close(crit(e_data, e_noise2, log_q), compositional_nll(e_data, e_noise2, log_q).loss)


def test_module_matches_function_on_first_call():
    e_data, e_noise, log_q = _inputs()

    def fn(ed, en, lq, beta):
        return compositional_nll(ed, en, lq, beta=beta).loss

    module_matches_function(CompositionalNLL, fn, e_data, e_noise, log_q, settings={"beta": 0.4})


def test_gradcheck_beta_one():
    e_data, e_noise, log_q = _inputs()
    gradcheck64(lambda ed, en: compositional_nll(ed, en, log_q, beta=1.0).loss, e_data, e_noise)


def _fit_gaussian_mean(use_log_q: bool, steps=400, lr=0.2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 1.5 + torch.randn(2000, generator=g, dtype=torch.float64)
    theta = torch.zeros((), dtype=torch.float64, requires_grad=True)
    crit = CompositionalNLL(beta=0.1).double()
    opt = torch.optim.SGD([theta], lr=lr)
    trace = []
    for _ in range(steps):
        y = 2.0 * torch.randn(1024, generator=g, dtype=torch.float64)  # q = N(0, 2^2)
        log_q = -0.5 * (y / 2.0) ** 2 - math.log(2.0 * math.sqrt(2 * math.pi))
        if not use_log_q:
            log_q = torch.zeros_like(y)
        loss = crit(0.5 * (x - theta) ** 2, 0.5 * (y - theta) ** 2, log_q)
        opt.zero_grad()
        loss.backward()
        opt.step()
        trace.append(float(theta.detach()))
    return sum(trace[-100:]) / 100, float(x.mean())


def test_gaussian_mean_converges_to_the_sample_mean():
    theta, xbar = _fit_gaussian_mean(use_log_q=True)
    assert abs(theta - xbar) < 0.02
    # dropping log q biases the partition function: the fixed point moves to xbar / 0.8
    theta_wrong, _ = _fit_gaussian_mean(use_log_q=False)
    assert abs(theta_wrong - xbar / 0.8) < 0.05
    assert abs(theta_wrong - xbar) > 0.3


def test_no_nan_for_extreme_energies():
    e_data = torch.tensor([1e4, -1e4], dtype=torch.float32, requires_grad=True)
    e_noise = torch.tensor([1e4, -1e3, 50.0], dtype=torch.float32, requires_grad=True)
    log_q = torch.zeros(3)
    out = compositional_nll(e_data, e_noise, log_q, log_u=torch.tensor(-5e3), beta=0.1)
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(out.log_u)
    assert torch.isfinite(e_noise.grad).all() and torch.isfinite(e_data.grad).all()


@pytest.mark.parametrize("half", [torch.bfloat16, torch.float16])
def test_half_precision_computes_in_float32(half):
    e_data, e_noise, log_q = _inputs(torch.float64)
    ref = compositional_nll(e_data, e_noise, log_q, beta=1.0)
    out = compositional_nll(e_data.to(half), e_noise.to(half), log_q.to(half), beta=1.0)
    assert out.loss.dtype == half and out.log_u.dtype == torch.float32
    assert_close(out.loss, ref.loss, rtol=5e-2, atol=5e-2)


def test_bad_input():
    e_data, e_noise, log_q = _inputs()
    with pytest.raises(ValueError, match="energy_data"):
        compositional_nll(torch.zeros(0, dtype=torch.float64), e_noise, log_q)
    with pytest.raises(ValueError, match="energy_noise"):
        compositional_nll(e_data, e_noise[None], log_q)
    with pytest.raises(ValueError, match="log_q_noise"):
        compositional_nll(e_data, e_noise, log_q[:-1])
    with pytest.raises(TypeError, match="energy_data"):
        compositional_nll(torch.arange(3), e_noise, log_q)
    with pytest.raises(ValueError, match="beta"):
        compositional_nll(e_data, e_noise, log_q, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        compositional_nll(e_data, e_noise, log_q, beta=1.5)
    with pytest.raises(ValueError, match="log_u"):
        compositional_nll(e_data, e_noise, log_q, log_u=torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="beta"):
        CompositionalNLL(beta=-0.1)
    with pytest.raises(ValueError, match="log_q_noise"):
        CompositionalNLL()(e_data, e_noise, log_q[:-1])


def test_beta_one_with_a_previous_estimate_is_the_minibatch_estimate():
    """beta = 1 (documented as the biased minibatch estimator) raised 'math domain error' once a
    previous log_u was passed, so CompositionalNLL(beta=1) failed on its first call."""
    e_data, e_noise = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0, 2.0])
    log_q = torch.zeros(3)
    fresh = compositional_nll(e_data, e_noise, log_q, beta=1.0)
    with_past = compositional_nll(e_data, e_noise, log_q, log_u=torch.tensor(5.0), beta=1.0)
    assert_close(with_past.log_u, fresh.log_u)
    assert_close(with_past.loss, fresh.loss)
    module = CompositionalNLL(beta=1.0)
    assert_close(module(e_data, e_noise, log_q), fresh.loss)
    assert_close(module(e_data, e_noise, log_q), fresh.loss)  # the second step too
