"""EPO: phase weight values, hinge band (rebuttal smoke test), history, module, indicator mode."""

from __future__ import annotations

import pytest
import torch

from inforeg.rl import (
    EntropySmoothingRegularizer,
    TurnEntropyHistory,
    entropy_band_penalty,
    phase_weight_schedule,
    token_entropy,
)
from tests._helpers import gradcheck64


def test_phase_weight_values():
    assert phase_weight_schedule(0) == pytest.approx(1.0)
    assert phase_weight_schedule(75) == pytest.approx(0.82707, abs=1e-5)
    assert phase_weight_schedule(76) == pytest.approx(0.76863, abs=1e-5)
    assert phase_weight_schedule(150) == pytest.approx(0.03983, abs=1e-5)
    ws = [phase_weight_schedule(e) for e in range(151)]
    assert all(a >= b for a, b in zip(ws, ws[1:]))


def test_band_rebuttal_smoke_test_and_gradient():
    h = torch.tensor([0.5, 1.0, 1.9, 2.5], requires_grad=True)
    p = entropy_band_penalty(h, torch.tensor(1.0), 0.8, 2.0)
    torch.testing.assert_close(p.detach(), torch.tensor([0.3, 0.0, 0.0, 0.5]))
    p.sum().backward()
    torch.testing.assert_close(h.grad, torch.tensor([-1.0, 0.0, 0.0, 1.0]))
    no_floor = entropy_band_penalty(torch.tensor([0.01]), torch.tensor(1.0), 0.0, 2.0)
    assert no_floor.item() == 0.0


def test_history_per_turn_means():
    hist = TurnEntropyHistory(max_turns=4)
    ent = torch.tensor([[1.0, 3.0], [2.0, 0.0], [5.0, 5.0]])
    mask = torch.tensor([[1, 1], [1, 0], [1, 1]])
    hist.update(ent, mask, torch.tensor([0, 0, 2]))
    hist.update(torch.tensor([[4.0, 4.0]]), None, torch.tensor([0]))
    ref = hist.reference()
    assert ref[0].item() == pytest.approx((2.0 + 4.0) / 2)  # iteration means 2.0 then 4.0
    assert ref[2].item() == pytest.approx(5.0)
    assert torch.isnan(ref[1]) and torch.isnan(ref[3])
    hist.update(torch.ones(1, 2), None, torch.tensor([9]))  # beyond max_turns: ignored
    assert hist.counts.sum().item() == 3


def _reference_loss(z, mask, ref, coef, cs, kl, kr, alpha, w):
    h = token_entropy(z)
    m = mask.to(h.dtype)
    pen = alpha * (torch.relu(kl * ref - h) + torch.relu(h - kr * ref))
    agg = lambda v: (v * m).sum() / m.sum()  # noqa: E731
    return -coef * (agg(h) - cs * agg(w * pen))


def test_module_value_gradcheck_and_padding():
    torch.manual_seed(0)
    z = torch.randn(3, 4, 6, dtype=torch.float64)
    mask = torch.ones(3, 4)
    mask[2, 2:] = 0
    reg = EntropySmoothingRegularizer(
        coef=0.5,
        smooth_coef=2.0,
        kappa_low=0.9,
        kappa_high=1.05,
        out_of_range_penalty=0.7,
        total_epochs=10,
    )
    # no history yet: only the bonus
    loss, _ = reg(z, mask)
    torch.testing.assert_close(loss, -0.5 * (token_entropy(z) * mask).sum() / mask.sum())
    reg.record(z, mask)
    ref = reg.history.reference()[0]
    loss, stats = reg(z * 1.7, mask, epoch=3)
    want = _reference_loss(
        z * 1.7, mask, ref, 0.5, 2.0, 0.9, 1.05, 0.7, phase_weight_schedule(3, 10)
    )
    torch.testing.assert_close(loss, want.to(loss.dtype))
    assert set(stats) >= {"entropy", "masked_fraction", "anchor", "coefficient", "phase_weight"}
    gradcheck64(lambda x: reg(x, mask, epoch=3)[0], z * 1.7)
    z2 = z.clone()
    z2[2, 2:] = 100 * torch.randn(2, 6, dtype=torch.float64)
    torch.testing.assert_close(reg(z2, mask)[0], reg(z, mask)[0])


def test_hinge_pulls_entropy_into_band():
    torch.manual_seed(0)
    z = torch.randn(2, 3, 8, dtype=torch.float64)
    reg = EntropySmoothingRegularizer(
        coef=1.0, kappa_low=0.8, kappa_high=1.2, out_of_range_penalty=5.0
    )
    reg.record(z)
    sharp = (4 * z).requires_grad_()  # entropy far below 0.8 x history
    reg(sharp)[0].backward()
    with torch.no_grad():
        assert token_entropy(sharp - 0.05 * sharp.grad).mean() > token_entropy(sharp).mean()


def test_indicator_mode_warns_and_has_no_smoothing_gradient():
    z = torch.randn(2, 3, 5, dtype=torch.float64)
    with pytest.warns(UserWarning, match="released EPO"):
        ind = EntropySmoothingRegularizer(
            coef=1.0, penalty="indicator", kappa_low=0.8, kappa_high=1.2
        )
    ind.record(z)
    zz = (3 * z).requires_grad_()
    loss, stats = ind(zz)
    (g_ind,) = torch.autograd.grad(loss, zz)
    zz2 = (3 * z).requires_grad_()
    (g_bonus,) = torch.autograd.grad(-(token_entropy(zz2)).mean(), zz2)
    torch.testing.assert_close(g_ind, g_bonus)  # the update is the bonus alone
    assert stats["masked_fraction"].item() > 0


def test_turns_and_bad_input():
    reg = EntropySmoothingRegularizer()
    z = torch.randn(2, 3, 5)
    with pytest.raises(ValueError, match="turn"):
        reg(z, None, torch.tensor([0, 1, 2]))
    with pytest.raises(TypeError, match="turn"):
        reg(z, None, torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="mask"):
        reg(z, torch.ones(3, 3))
    with pytest.raises(ValueError, match="temperature"):
        EntropySmoothingRegularizer(temperature=0.0)
    with pytest.raises(ValueError, match="kappa_high"):
        EntropySmoothingRegularizer(kappa_low=1.5, kappa_high=1.0)
    with pytest.raises(ValueError, match="penalty"):
        EntropySmoothingRegularizer(penalty="square")
    with pytest.raises(ValueError, match="epoch"):
        phase_weight_schedule(-1)


def test_history_ignores_nan_at_masked_positions():
    # Regression: (entropy * mask).sum() put the NaN entropy of a padded position (its logits all
    # -inf) into the turn history, where it stayed for good.
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(2, 3, 5, generator=g)
    pad = torch.tensor([[False, False, False], [False, False, True]])
    ent = token_entropy(raw.masked_fill(pad[..., None], float("-inf")))
    history = TurnEntropyHistory(max_turns=2)
    history.update(ent, mask=~pad, turn=torch.tensor([0, 1]))
    want = token_entropy(raw)[1, :2].double().mean()
    torch.testing.assert_close(history.reference()[1], want)
