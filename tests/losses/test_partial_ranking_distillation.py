"""CPRD: ListMLE over teacher-ranked hard negatives; closed forms and brute force."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from inforeg.core.checks import checks
from inforeg.losses import ContrastivePartialRankingDistillation, partial_ranking_distillation
from tests._helpers import gradcheck64


def brute(s, t, k, tau):
    out = []
    for i in range(s.shape[0]):
        negs = [j for j in range(s.shape[1]) if j != i]
        hard = sorted(negs, key=lambda j: -float(s[i, j]))[:k]
        ranked = sorted(hard, key=lambda j: -float(t[i, j]))
        vals = [float(s[i, j]) / tau for j in ranked]
        loss = 0.0
        for a in range(k - 1):
            loss += -vals[a] + math.log(sum(math.exp(v) for v in vals[a:]))
        out.append(loss / (k - 1))
    return torch.tensor(out, dtype=torch.float64)


def test_brute_force():
    torch.manual_seed(0)
    s = torch.randn(6, 6, dtype=torch.float64)
    t = torch.randn(6, 6, dtype=torch.float64)
    got = partial_ranking_distillation(s, t, num_hard=4, temperature=0.5, reduction="none")
    assert torch.allclose(got, brute(s, t, 4, 0.5))


def test_pairwise_case_and_equal_scores():
    s = torch.tensor([[0.9, 0.2, 0.1]], dtype=torch.float64)
    pos = torch.tensor([[True, False, False]])
    t = torch.tensor([[0.0, 1.0, 2.0]], dtype=torch.float64)  # teacher prefers candidate 2
    got = partial_ranking_distillation(s, t, 2, 0.1, pos)
    assert float(got) == pytest.approx(math.log(1 + math.exp((0.2 - 0.1) / 0.1)))
    k = 5
    flat = torch.zeros(1, 7, dtype=torch.float64)
    pos7 = torch.zeros(1, 7, dtype=torch.bool)
    pos7[0, 0] = True
    expected = sum(math.log(k - a) for a in range(k - 1)) / (k - 1)
    assert float(
        partial_ranking_distillation(flat, torch.randn(1, 7, dtype=torch.float64), k, 1.0, pos7)
    ) == pytest.approx(expected)


def test_teacher_monotone_invariance_and_minimum():
    torch.manual_seed(1)
    s = torch.randn(5, 5, dtype=torch.float64)
    t = torch.randn(5, 5, dtype=torch.float64)
    a = partial_ranking_distillation(s, t, 3, 0.2)
    b = partial_ranking_distillation(s, torch.exp(3 * t) + 7, 3, 0.2)
    assert torch.allclose(a, b)
    # student sorted consistently with the teacher with large gaps -> near 0
    t2 = torch.tensor([[0.0, 3.0, 2.0, 1.0]], dtype=torch.float64)
    s2 = torch.tensor([[1.0, 0.9, 0.5, 0.1]], dtype=torch.float64)
    pos = torch.tensor([[True, False, False, False]])
    assert float(partial_ranking_distillation(s2, t2, 3, 0.01, pos)) < 1e-10
    assert float(partial_ranking_distillation(s2, -t2, 3, 0.01, pos)) > 10


def test_gradients_teacher_free_and_gradcheck():
    torch.manual_seed(2)
    s = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 5, dtype=torch.float64, requires_grad=True)
    partial_ranking_distillation(s, t, 3, 0.3).backward()
    assert t.grad is None and torch.isfinite(s.grad).all()
    assert torch.equal(s.grad.diagonal(), torch.zeros(5, dtype=torch.float64))
    gradcheck64(lambda x: partial_ranking_distillation(x, t.detach(), 3, 0.3), s)


def test_too_few_negatives_and_extremes():
    s = torch.tensor([[1.0, 0.5, 0.2, -0.3]], dtype=torch.float64, requires_grad=True)
    pos = torch.tensor([[True, True, True, False]])  # one negative: no term
    out = partial_ranking_distillation(s, torch.randn(1, 4, dtype=torch.float64), 3, 0.1, pos)
    out.backward()
    assert float(out) == 0.0 and torch.isfinite(s.grad).all()
    z = torch.tensor([[1e4, -1e4, 0.0, 5.0]], requires_grad=True)
    loss = partial_ranking_distillation(
        z, torch.randn(1, 4), 3, 0.05, torch.tensor([[True, False, False, False]])
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    zb = torch.randn(4, 4).bfloat16()
    assert partial_ranking_distillation(zb, torch.randn(4, 4), 2, 0.1).dtype == torch.bfloat16


def test_module():
    torch.manual_seed(3)
    s = torch.randn(6, 6, dtype=torch.float64)
    t = torch.randn(6, 6, dtype=torch.float64)
    mod = ContrastivePartialRankingDistillation(num_hard=3, temperature=0.1, weight=0.5)
    itc = 0.5 * (
        F.cross_entropy(s / 0.1, torch.arange(6)) + F.cross_entropy(s.t() / 0.1, torch.arange(6))
    )
    cprd = 0.5 * (
        partial_ranking_distillation(s, t, 3, 0.1)
        + partial_ranking_distillation(s.t(), t.t(), 3, 0.1)
    )
    assert torch.allclose(mod(s, t), itc + 0.5 * cprd)


def test_bad_input():
    s = torch.randn(4, 4)
    with pytest.raises(ValueError, match="teacher_scores"):
        partial_ranking_distillation(s, torch.randn(4, 3))
    with pytest.raises(ValueError, match="num_hard"):
        partial_ranking_distillation(s, s, num_hard=1)
    with pytest.raises(ValueError, match="positive_mask"):
        partial_ranking_distillation(torch.randn(3, 5), torch.randn(3, 5), 2)
    with pytest.raises(ValueError, match="temperature"):
        partial_ranking_distillation(s, s, 2, temperature=0.0)
    with pytest.raises(ValueError, match="student_sim"):
        ContrastivePartialRankingDistillation()(torch.randn(3, 4), torch.randn(3, 4))
    with checks("full"):
        with pytest.raises(ValueError, match="student_scores"):
            partial_ranking_distillation(torch.full((3, 3), float("nan")), s[:3, :3], 2)


@pytest.mark.parametrize("batch", [1, 2])
def test_module_on_a_batch_too_small_to_rank_is_the_itc_loss(batch):
    """B - 1 < 2 negatives per row: the ranking term is 0 (it raised on num_hard = 1 or 0)."""
    g = torch.Generator().manual_seed(batch)
    s, t = torch.randn(batch, batch, generator=g), torch.randn(batch, batch, generator=g)
    full = ContrastivePartialRankingDistillation()(s, t)
    itc = ContrastivePartialRankingDistillation(weight=0.0)(s, t)
    assert torch.isfinite(full) and float(full) == pytest.approx(float(itc), abs=1e-7)
