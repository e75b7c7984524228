"""Pieces of the dependence-family experiments that their verdicts rest on: the temporal InfoNCE
and Koopman operators of vne-koopman, the frontier selection and interaction share of
fairness-dcov, and the least-squares reference of csib-diabetes."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from inforeg.lab.experiments import fairness_dcov, vne_koopman


def _temporal_infonce_loop(z: torch.Tensor, k: int, tau: float) -> float:
    """The spec's temporal InfoNCE, one anchor at a time in float64."""
    zn = F.normalize(z.double(), dim=-1)
    b, t, _ = z.shape
    losses = []
    for s in range(b):
        for n in range(k, t - k):
            pos = sum(
                math.exp(float(zn[s, n] @ zn[s, n + d]) / tau)
                for d in (*range(-k, 0), *range(1, k + 1))
            )
            every = sum(math.exp(float(zn[s, n] @ zn[s, m]) / tau) for m in range(t) if m != n)
            losses.append(-math.log(pos / every))
    return sum(losses) / len(losses)


def test_temporal_infonce_matches_the_definition():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 11, 5, generator=g, dtype=torch.float64)
    for k, tau in ((3, 0.1), (2, 0.5), (1, 1.0)):
        got = float(vne_koopman.temporal_infonce(z, k, tau))
        assert got == pytest.approx(_temporal_infonce_loop(z, k, tau), rel=1e-10)


def test_temporal_infonce_limits():
    z = torch.randn(2, 6, 4)
    assert float(vne_koopman.temporal_infonce(z, k=3)) == 0.0  # T <= 2k: no anchor
    # one anchor whose positives equal it and whose negatives are orthogonal: -> 0 as tau -> 0
    near, far = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    z = torch.stack([far, near, near, near, far]).unsqueeze(0)  # k = 1: anchors 1, 2, 3
    z = z[:, 1:4].clone()  # T = 3: the single anchor 1, positives 0 and 2, no negative
    assert float(vne_koopman.temporal_infonce(z, k=1, tau=0.01)) == pytest.approx(0.0, abs=1e-6)
    z = torch.stack([far, near, near, near, far]).unsqueeze(0)  # anchor 2: negatives 0 and 4
    loss = float(vne_koopman.temporal_infonce(z, k=1, tau=0.01))
    anchor_1 = math.log(
        (math.exp(0) + math.exp(100) + math.exp(100) + math.exp(0)) / (1 + math.exp(100))
    )
    assert loss == pytest.approx((2 * anchor_1 + math.log1p(math.exp(-100))) / 3, rel=1e-5)
    # every step equal: each anchor's 2k positives share the mass of its T - 1 others
    same = torch.ones(1, 9, 3)
    assert float(vne_koopman.temporal_infonce(same, k=2)) == pytest.approx(math.log(8 / 4))


def test_batch_koopman_is_the_mean_per_sequence_ridge():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(4, 9, vne_koopman.H, generator=g, dtype=torch.float64)
    eye = torch.eye(vne_koopman.H, dtype=torch.float64)
    want = torch.stack(
        [
            torch.linalg.solve(s[:-1].T @ s[:-1] + vne_koopman.RIDGE * eye, s[:-1].T @ s[1:])
            for s in z
        ]
    ).mean(0)
    torch.testing.assert_close(vne_koopman.batch_koopman(z), want)
    assert not vne_koopman.batch_koopman(z.requires_grad_()).requires_grad


def test_coupled_pendulums_shape_and_range():
    x = vne_koopman.coupled_pendulums(5, 12, torch.Generator().manual_seed(0))
    assert x.shape == (5, 12, vne_koopman.OBS)
    s, c = x[..., :4], x[..., 4:8]
    torch.testing.assert_close(s**2 + c**2, torch.ones_like(s))


def test_interaction_share():
    groups = torch.arange(8).repeat_interleave(5)  # group = region * 2 + age bin
    region, old = groups // 2, groups % 2
    additive = 0.7 * region.float() + 1.3 * old.float()
    assert fairness_dcov.interaction_share(additive, groups) == pytest.approx(0.0, abs=1e-10)
    xor = (old ^ (region % 2)).float()
    assert fairness_dcov.interaction_share(xor, groups) == pytest.approx(1.0)
    assert fairness_dcov.interaction_share(torch.ones(40), groups) == 0.0


def test_selection_within_the_rmse_budget():
    path = [
        {"val RMSE": 1.00, "val JSD": 0.30, "test RMSE": 1.0, "test JSD": 0.3},
        {"val RMSE": 1.05, "val JSD": 0.10, "test RMSE": 1.1, "test JSD": 0.1},
        {"val RMSE": 1.50, "val JSD": 0.01, "test RMSE": 1.6, "test JSD": 0.0},  # over budget
    ]
    sel = fairness_dcov.select_within_budget(path, budget=1.1)
    assert sel.step == 1 and sel.score == -0.10
    assert sel.metrics == {"test RMSE": 1.1, "test JSD": 0.1}  # test metrics only
    none = fairness_dcov.select_within_budget(path, budget=0.5)
    assert none.score == -math.inf and none.step == -1


def test_csib_least_squares_reference():
    pytest.importorskip("sklearn")
    from inforeg.lab.experiments import csib_diabetes

    data = csib_diabetes.load(0)
    assert [data[f"y_{p}"].shape[0] for p in ("train", "val", "test")] == [265, 88, 89]
    x = torch.cat([data["x_train"], torch.ones(265, 1)], 1).double()
    coef = torch.linalg.pinv(x) @ data["y_train"].double()
    xt = torch.cat([data["x_test"], torch.ones(89, 1)], 1).double()
    rmse = data["scale"] * float(((xt @ coef).float() - data["y_test"]).pow(2).mean().sqrt())
    assert csib_diabetes.least_squares(data)["test RMSE"] == pytest.approx(rmse, rel=1e-5)
