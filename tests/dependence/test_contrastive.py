"""InfoNCE, MINE bounds, WDM/WPC and the gradient penalty."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from inforeg.core.checks import checks
from inforeg.dependence import (
    MINE,
    InfoNCELoss,
    gradient_penalty,
    infonce,
    mine_lower_bound,
    spectral_normalize,
    wasserstein_dependency,
)
from tests._helpers import gradcheck64, module_matches_function


def test_infonce_reference_and_bounds():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 4, generator=g, dtype=torch.float64)
    y = x + 0.3 * torch.randn(8, 4, generator=g, dtype=torch.float64)
    xn, yn = x / x.norm(dim=1, keepdim=True), y / y.norm(dim=1, keepdim=True)
    s = xn @ yn.T / 0.2
    want = torch.stack([-(s[i, i] - torch.logsumexp(s[i], 0)) for i in range(8)])
    torch.testing.assert_close(infonce(x, y, 0.2, reduction="none"), want)
    sym = 0.5 * (want + torch.stack([-(s[i, i] - torch.logsumexp(s[:, i], 0)) for i in range(8)]))
    torch.testing.assert_close(infonce(x, y, 0.2, symmetric=True, reduction="none"), sym)
    # identical vectors: every score equal, loss = log N
    same = torch.ones(8, 4, dtype=torch.float64)
    assert float(infonce(same, same)) == pytest.approx(math.log(8))
    # the bound log N - loss never exceeds log N
    assert math.log(8) - float(infonce(x, y, 0.01)) <= math.log(8)
    gradcheck64(lambda a, b: infonce(a, b, 0.5, symmetric=True), x[:4], y[:4])
    big = infonce(torch.randn(6, 3) * 1e4, torch.randn(6, 3) * 1e4, 0.01, normalize=False)
    assert torch.isfinite(big)
    half = infonce(x.to(torch.bfloat16), y.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16
    module_matches_function(
        InfoNCELoss,
        lambda a, b, temperature, weight: weight * infonce(a, b, temperature),
        x,
        y,
        settings={"temperature": 0.2, "weight": 2.0},
    )


def test_mine_bounds():
    tj = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
    tm = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert float(mine_lower_bound(tj, tm)) == pytest.approx(2.0 - math.log((1 + math.e) / 2))
    assert float(mine_lower_bound(tj, tm, "nwj")) == pytest.approx(2.0 - (math.exp(-1) + 1) / 2)
    # DV >= NWJ for the same critic
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(50, generator=g), torch.randn(50, generator=g)
    assert float(mine_lower_bound(a, b)) >= float(mine_lower_bound(a, b, "nwj"))
    assert torch.isfinite(mine_lower_bound(a * 1e4, b * 1e4))


class Bilinear(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.w = nn.Linear(d, d, bias=False)

    def forward(self, x, y):  # type: ignore[no-untyped-def]
        return (self.w(x) * y).sum(1)


class Separable(nn.Module):
    def __init__(self, d: int, a: torch.Tensor | None = None) -> None:
        super().__init__()
        self.g = nn.Linear(d, 4)
        self.h = nn.Linear(d, 4)

    def forward(self, x, y):  # type: ignore[no-untyped-def]
        return self.g(x) @ self.h(y).T


def test_mine_module_ema_gradient():
    torch.manual_seed(0)
    mine = MINE(Bilinear(3))
    x, y = torch.randn(64, 3), torch.randn(64, 3)
    est = mine(x, y)
    assert torch.isfinite(est) and torch.isfinite(mine.log_ema)
    est.backward()
    assert mine.critic.w.weight.grad is not None
    mine.eval()
    torch.manual_seed(1)
    v = mine(x, y)
    torch.manual_seed(1)
    perm = torch.randperm(64)
    ref = mine_lower_bound(mine.critic(x, y), mine.critic(x, y[perm]))
    torch.testing.assert_close(v, ref)
    assert "log_ema" in mine.state_dict()


def _mine_step_before_log_space(mine, x, y, ema):  # type: ignore[no-untyped-def]
    # MINE.forward (DV, training) as it was before issue 18: the EMA of mean exp(T) itself.
    perm = torch.randperm(y.shape[0])
    tj, tm = mine._scores(x, y), mine._scores(x, y[perm])
    value = mine_lower_bound(tj, tm)
    batch_mean = torch.exp(tm).mean()
    with torch.no_grad():
        ema = batch_mean.clone() if ema is None else 0.9 * ema + 0.1 * batch_mean
    surrogate = tj.mean() - batch_mean / ema
    return value.detach() + surrogate - surrogate.detach(), ema


def test_mine_log_space_ema_matches_the_direct_formula():
    # Same values, EMA and gradients as the direct formula on ordinary scores, over 4 steps.
    torch.manual_seed(3)
    new = MINE(Bilinear(3), ema_rate=0.1).double()
    old = MINE(Bilinear(3), ema_rate=0.1).double()
    old.load_state_dict(new.state_dict())
    ema = None
    for step in range(4):
        x, y = torch.randn(32, 3, dtype=torch.float64), torch.randn(32, 3, dtype=torch.float64)
        torch.manual_seed(10 + step)
        v_new = new(x, y)
        torch.manual_seed(10 + step)
        v_old, ema = _mine_step_before_log_space(old, x, y, ema)
        torch.testing.assert_close(v_new, v_old, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(new.log_ema.exp(), ema, rtol=1e-12, atol=0.0)
        g_new = torch.autograd.grad(v_new, new.critic.w.weight)[0]
        g_old = torch.autograd.grad(v_old, old.critic.w.weight)[0]
        torch.testing.assert_close(g_new, g_old, rtol=1e-10, atol=1e-12)


def test_mine_large_scores_stay_finite():
    # Regression (issue 18): scores of order 1e6 overflowed exp() in the EMA-corrected DV
    # estimate (NaN value and gradient).
    torch.manual_seed(0)
    mine = MINE(Bilinear(3)).double()
    for _ in range(2):
        x = torch.randn(16, 3, dtype=torch.float64) * 1e3
        y = torch.randn(16, 3, dtype=torch.float64) * 1e3
        est = mine(x, y)
        (grad,) = torch.autograd.grad(est, mine.critic.w.weight)
        assert torch.isfinite(est) and torch.isfinite(mine.log_ema) and torch.isfinite(grad).all()


def test_mine_loads_a_state_dict_with_the_former_ema_buffer():
    mine = MINE(Bilinear(2))
    state = {k: v for k, v in mine.state_dict().items() if k != "log_ema"}
    state["ema"] = torch.tensor(2.0)
    mine.load_state_dict(state)
    assert float(mine.log_ema) == pytest.approx(math.log(2.0))


def test_wdm_kr_and_gp():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64)
    y = torch.randn(6, 2, generator=g, dtype=torch.float64)

    def critic(a, b):  # type: ignore[no-untyped-def]
        return a @ b.T

    out = wasserstein_dependency(critic, x, y, lipschitz="none")
    s = x @ y.T
    want = s.diagonal().mean() - (s.sum() - s.diagonal().sum()) / 30
    torch.testing.assert_close(out.estimate, want)
    # linear critic f(u) = a.u with ||a|| = 1 has zero two-sided gradient penalty
    a = torch.tensor([0.6, 0.0, 0.8, 0.0], dtype=torch.float64)

    def lin(p, q):  # type: ignore[no-untyped-def]
        return (p @ a[:2]).unsqueeze(1) + (q @ a[2:]).unsqueeze(0)

    assert float(gradient_penalty(lin, x, y)) == pytest.approx(0.0, abs=1e-10)
    # KR estimate scales linearly with a joint rescaling for a fixed metric-like critic; InfoNCE
    # with the same critic is not a KR quantity
    out2 = wasserstein_dependency(critic, 2 * x, 2 * y, lipschitz="none")
    torch.testing.assert_close(out2.estimate, 4 * out.estimate)
    nce = wasserstein_dependency(critic, x, y, lipschitz="gradient_penalty", objective="infonce")
    assert float(nce.estimate.detach()) <= math.log(6) and float(nce.penalty.detach()) >= 0


def test_spectral_norm_and_training_signal():
    torch.manual_seed(3)
    crit = spectral_normalize(Separable(3))
    for _ in range(3):
        crit(torch.randn(8, 3), torch.randn(8, 3))  # power iterations
    sigma = torch.linalg.matrix_norm(crit.g.weight, ord=2)
    assert float(sigma.detach()) <= 1.0 + 1e-3
    x = torch.randn(16, 3, requires_grad=True)
    out = wasserstein_dependency(crit, x, x + 0.1 * torch.randn(16, 3), lipschitz="spectral_norm")
    out.loss.backward()
    assert x.grad is not None and float(out.penalty) == 0.0


def test_bad_input():
    x = torch.randn(5, 3)
    with pytest.raises(ValueError, match="y"):
        infonce(x, torch.randn(4, 3))
    with pytest.raises(ValueError, match="temperature"):
        infonce(x, x, temperature=0.0)
    with pytest.raises(ValueError, match="kind"):
        mine_lower_bound(x[:, 0], x[:, 0], "js")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="critic"):
        wasserstein_dependency(lambda a, b: a.sum(1), x, x)
    with pytest.raises(ValueError, match="lipschitz"):
        wasserstein_dependency(lambda a, b: a @ b.T, x, x, lipschitz="clip")  # type: ignore[arg-type]
    bad = x.clone()
    bad[0, 0] = float("nan")
    with checks("full"), pytest.raises(ValueError, match="x"):
        infonce(bad, x)


def test_gradient_penalty_evaluates_under_no_grad():
    # Regression: under torch.no_grad (a validation pass) the penalty raised "element 0 of
    # tensors does not require grad"; it now gives the training value, without a graph.
    g = torch.Generator().manual_seed(3)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64)
    y = torch.randn(6, 2, generator=g, dtype=torch.float64)
    w = torch.randn(2, 2, generator=g, dtype=torch.float64, requires_grad=True)

    def critic(a, b):  # type: ignore[no-untyped-def]
        return torch.tanh(a @ w) @ b.T

    train = wasserstein_dependency(critic, x, y)
    assert train.loss.requires_grad
    with torch.no_grad():
        ev = wasserstein_dependency(critic, x, y)
    assert not ev.loss.requires_grad
    torch.testing.assert_close(ev.penalty, train.penalty.detach(), rtol=0, atol=0)
    torch.testing.assert_close(ev.loss, train.loss.detach(), rtol=0, atol=0)


def test_gradient_penalty_takes_the_norm_over_every_coordinate():
    """The norm summed dimension 1 only: (N, 2, 3) inputs gave 0.906 instead of 4.404, and 1-D
    inputs raised IndexError."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)
    y = torch.randn(4, 2, 3, generator=g, dtype=torch.float64)

    def critic(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a.flatten(1) @ b.flatten(1).T

    flat = gradient_penalty(critic, x.flatten(1), y.flatten(1))
    assert float(gradient_penalty(critic, x, y)) == pytest.approx(float(flat), rel=1e-12)
    x1, y1 = x[:, 0, 0], y[:, 0, 0]
    got = gradient_penalty(lambda a, b: 2 * a[:, None] * b[None, :], x1, y1)
    want = (2 * (x1**2 + y1**2).sqrt() - 1).pow(2).mean()  # grad = (2 y_i, 2 x_i)
    assert float(got) == pytest.approx(float(want), rel=1e-6)
