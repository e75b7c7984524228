from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from inforeg.core.checks import checks
from inforeg.losses import ProgressiveSelfDistillation, progressive_self_distillation, pskd_alpha
from tests._helpers import gradcheck64


def _brute(logits, targets, past, alpha):
    """Float64 loop over the definition: -sum_k ((1-a) onehot + a p_hat)_k log softmax(z)_k."""
    out = []
    for b in range(logits.shape[0]):
        z = logits[b].double()
        log_p = z - torch.log(torch.exp(z - z.max()).sum()) - z.max()
        target = torch.zeros_like(z)
        target[targets[b]] = 1.0 - alpha
        target = target + alpha * past[b].double()
        out.append(-(target * log_p).sum())
    return torch.stack(out)


def test_spec_soft_target_and_closed_form():
    # Spec: y=(1,0,0), p_hat=(0.5,0.3,0.2), alpha=0.4 -> soft target (0.8, 0.12, 0.08).
    z = torch.tensor([[1.0, -0.5, 2.0]], dtype=torch.float64)
    y = torch.tensor([0])
    p_hat = torch.tensor([[0.5, 0.3, 0.2]], dtype=torch.float64)
    soft = torch.tensor([0.8, 0.12, 0.08], dtype=torch.float64)
    expected = -(soft * F.log_softmax(z[0], 0)).sum()
    got = progressive_self_distillation(z, y, p_hat, alpha=0.4)
    torch.testing.assert_close(got, expected, rtol=1e-14, atol=1e-14)
    # loss = (1 - a) CE(y) + a H(p_hat, p)
    ce = F.cross_entropy(z, y)
    h = -(p_hat * F.log_softmax(z, 1)).sum()
    torch.testing.assert_close(got, 0.6 * ce + 0.4 * h)


def test_matches_brute_force_and_reductions():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(6, 5, generator=g, dtype=torch.float64) * 3
    y = torch.randint(0, 5, (6,), generator=g)
    past = torch.softmax(torch.randn(6, 5, generator=g, dtype=torch.float64), 1)
    ref = _brute(z, y, past, 0.3)
    none = progressive_self_distillation(z, y, past, 0.3, reduction="none")
    torch.testing.assert_close(none, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(progressive_self_distillation(z, y, past, 0.3), ref.mean())
    torch.testing.assert_close(progressive_self_distillation(z, y, past, 0.3, "sum"), ref.sum())


def test_alpha_zero_is_cross_entropy():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 4, generator=g)
    y = torch.randint(0, 4, (8,), generator=g)
    past = torch.softmax(torch.randn(8, 4, generator=g), 1)
    torch.testing.assert_close(
        progressive_self_distillation(z, y, past, 0.0), F.cross_entropy(z, y)
    )


def test_gradient_formula_and_gradcheck():
    g = torch.Generator().manual_seed(2)
    z = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2, 1, 1])
    past = torch.softmax(torch.randn(4, 3, generator=g, dtype=torch.float64), 1)
    loss = progressive_self_distillation(z, y, past, 0.7, reduction="sum")
    (grad,) = torch.autograd.grad(loss, z)
    soft = 0.3 * F.one_hot(y, 3).double() + 0.7 * past
    torch.testing.assert_close(grad, torch.softmax(z, 1) - soft)  # dL/dz = softmax(z) - y_tilde
    gradcheck64(lambda t: progressive_self_distillation(t, y, past, 0.7, reduction="none"), z)


def test_extreme_logits_and_bfloat16_stay_finite():
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4]], requires_grad=True)
    y = torch.tensor([1, 0])
    past = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    loss = progressive_self_distillation(z, y, past, 0.5)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    zb = torch.randn(4, 3).bfloat16()
    out = progressive_self_distillation(
        zb, torch.tensor([0, 1, 2, 0]), torch.full((4, 3), 1 / 3), 0.5
    )
    assert out.dtype == torch.bfloat16 and torch.isfinite(out)


def test_bad_input():
    z = torch.randn(3, 4)
    y = torch.tensor([0, 1, 2])
    past = torch.full((3, 4), 0.25)
    with pytest.raises(ValueError, match="alpha"):
        progressive_self_distillation(z, y, past, 1.5)
    with pytest.raises(ValueError, match="logits: expected a 2-D"):
        progressive_self_distillation(z[0], y, past, 0.5)
    with pytest.raises(ValueError, match="targets: expected 3 labels"):
        progressive_self_distillation(z, y[:2], past, 0.5)
    with pytest.raises(ValueError, match="past_probs: expected the same shape"):
        progressive_self_distillation(z, y, past[:, :3], 0.5)
    with pytest.raises(TypeError, match="targets: expected an integer tensor"):
        progressive_self_distillation(z, y.float(), past, 0.5)
    with pytest.raises(ValueError, match="reduction"):
        progressive_self_distillation(z, y, past, 0.5, reduction="max")  # type: ignore[arg-type]
    with checks("full"):
        with pytest.raises(ValueError, match="logits: expected finite values"):
            progressive_self_distillation(torch.full((3, 4), float("nan")), y, past, 0.5)
        with pytest.raises(ValueError, match="past_probs: expected probabilities summing to 1"):
            progressive_self_distillation(z, y, past * 2, 0.5)
        with pytest.raises(ValueError, match="targets: expected labels in"):
            progressive_self_distillation(z, torch.tensor([0, 1, 9]), past, 0.5)


def test_alpha_schedule_follows_authors_code():
    assert pskd_alpha(0, 300) == pytest.approx(0.8 / 300)
    assert pskd_alpha(299, 300) == pytest.approx(0.8)
    assert pskd_alpha(4, 10, alpha_T=0.5) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="epoch"):
        pskd_alpha(10, 10)


def test_module_memory_epoch_zero_is_ce_and_updates_seen_rows_only():
    torch.manual_seed(0)
    mod = ProgressiveSelfDistillation(num_samples=10, num_classes=3, alpha_T=0.8, total_epochs=4)
    z = torch.randn(4, 3)
    y = torch.tensor([0, 1, 2, 0])
    idx = torch.tensor([1, 3, 5, 7])
    mod.set_epoch(2)  # alpha > 0, but nothing stored yet: hard targets -> CE
    torch.testing.assert_close(mod(z, y, idx), F.cross_entropy(z, y))
    assert mod.seen.tolist() == [i in (1, 3, 5, 7) for i in range(10)]
    torch.testing.assert_close(mod.memory[idx], torch.softmax(z, 1))
    assert mod.memory[[0, 2, 4, 6, 8, 9]].abs().sum() == 0
    # Next visit uses the stored prediction.
    z2 = torch.randn(4, 3)
    expected = progressive_self_distillation(z2, y, torch.softmax(z, 1), mod.alpha)
    torch.testing.assert_close(mod(z2, y, idx), expected)
    assert mod.alpha == pytest.approx(0.8 * 3 / 4)
    # eval mode never writes the memory.
    mod.eval()
    before = mod.memory.clone()
    mod(torch.randn(4, 3), y, idx)
    assert torch.equal(before, mod.memory)


def test_module_state_dict_restores_memory_and_epoch():
    mod = ProgressiveSelfDistillation(5, 3, total_epochs=10)
    mod.set_epoch(6)
    mod(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([0, 4]))
    state = mod.state_dict()
    fresh = ProgressiveSelfDistillation(5, 3, total_epochs=10)
    fresh.load_state_dict(state)
    assert fresh.epoch == 6 and fresh.alpha == mod.alpha
    assert torch.equal(fresh.memory, mod.memory) and torch.equal(fresh.seen, mod.seen)


def test_module_bad_input():
    with pytest.raises(ValueError, match="num_classes"):
        ProgressiveSelfDistillation(5, 1)
    with pytest.raises(ValueError, match="alpha_T"):
        ProgressiveSelfDistillation(5, 3, alpha_T=2.0)
    mod = ProgressiveSelfDistillation(5, 3, total_epochs=2)
    with pytest.raises(ValueError, match="epoch"):
        mod.set_epoch(2)
    with pytest.raises(ValueError, match="indices: expected 2 indices"):
        mod(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(TypeError, match="indices: expected an integer tensor"):
        mod(torch.randn(2, 3), torch.tensor([0, 1]), torch.tensor([0.0, 1.0]))
