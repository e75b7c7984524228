"""DEPICT target distribution and clustering loss: spec values, closed forms, gradients."""

from __future__ import annotations

import pytest
import torch

from inforeg.core.checks import checks
from inforeg.losses import (
    DEPICTClusteringLoss,
    depict_clustering_loss,
    depict_target_distribution,
)
from tests._helpers import gradcheck64

P = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]], dtype=torch.float64)


def test_spec_values():
    paper = torch.tensor([[0.832, 0.168], [0.688, 0.312], [0.453, 0.547]], dtype=torch.float64)
    code = torch.tensor([[0.961, 0.039], [0.830, 0.170], [0.407, 0.593]], dtype=torch.float64)
    assert torch.allclose(depict_target_distribution(P, "paper"), paper, atol=6e-4)
    assert torch.allclose(depict_target_distribution(P, "code"), code, atol=6e-4)


def test_brute_force_and_properties():
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(7, 4, dtype=torch.float64), 1)
    f = p.sum(0)
    for a, b in [(1.0, 0.5), (2.0, 1.0), (1.5, 0.3)]:
        raw = p**a / f**b
        ref = raw / raw.sum(1, keepdim=True)
        got = depict_target_distribution(p, power=(a, b))
        assert torch.allclose(got, ref)
        assert torch.allclose(got.sum(1), torch.ones(7, dtype=torch.float64))
    # equal cluster frequencies: the paper target equals P; the code target sharpens it (p^2)
    balanced = torch.tensor([[0.7, 0.3], [0.3, 0.7]], dtype=torch.float64)
    assert torch.allclose(depict_target_distribution(balanced, "paper"), balanced)
    sharp = torch.tensor([[0.49, 0.09], [0.09, 0.49]], dtype=torch.float64) / 0.58
    assert torch.allclose(depict_target_distribution(balanced, "code"), sharp)
    # b = 0, a = 1: identity
    assert torch.allclose(depict_target_distribution(p, power=(1.0, 0.0)), p)
    # one-hot rows stay finite
    hard = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert torch.isfinite(depict_target_distribution(hard)).all()


def test_loss_matches_cross_entropy_and_gradcheck():
    torch.manual_seed(1)
    z = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    q = depict_target_distribution(torch.softmax(torch.randn(5, 3, dtype=torch.float64), 1))
    ref = -(q * torch.log_softmax(z, 1)).sum(1).mean()
    assert torch.allclose(depict_clustering_loss(z, q), ref)
    # gradient: softmax(z) - q, per row / N
    depict_clustering_loss(z, q).backward()
    assert torch.allclose(z.grad, (torch.softmax(z.detach(), 1) - q) / 5)
    gradcheck64(lambda t: depict_clustering_loss(t, q), z)
    mod = DEPICTClusteringLoss("code")
    pp = torch.softmax(z.detach(), 1)
    assert torch.allclose(mod.target(pp), depict_target_distribution(pp, "code"))
    assert torch.allclose(mod(z, q), ref)


def test_extreme_and_bfloat16():
    z = torch.tensor([[1e4, -1e4], [-1e4, 1e4]], requires_grad=True)
    q = torch.tensor([[0.5, 0.5], [1.0, 0.0]])
    loss = depict_clustering_loss(z, q)
    loss.backward()
    assert torch.isfinite(z.grad).all()
    zb = torch.randn(4, 3).bfloat16()
    qb = depict_target_distribution(torch.softmax(zb.float(), 1).bfloat16())
    assert qb.dtype == torch.bfloat16
    assert depict_clustering_loss(zb, qb).dtype == torch.bfloat16


def test_bad_input():
    with pytest.raises(ValueError, match="mode"):
        depict_target_distribution(P, "dec")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="power"):
        depict_target_distribution(P, power=(0.0, 1.0))
    with pytest.raises(ValueError, match="probs"):
        depict_target_distribution(P[0])
    with pytest.raises(ValueError, match="target"):
        depict_clustering_loss(torch.randn(3, 2), torch.ones(3, 3) / 3)
    with checks("full"):
        with pytest.raises(ValueError, match="probs"):
            depict_target_distribution(torch.tensor([[0.5, 0.6]]))
        with pytest.raises(ValueError, match="logits"):
            depict_clustering_loss(torch.tensor([[float("nan"), 0.0]]), torch.tensor([[0.5, 0.5]]))


def test_default_is_the_target_the_authors_ran():
    """mode="code" (p^2 / f) is the default of the function and the module; "paper" is opt-in."""
    torch.manual_seed(2)
    p = torch.softmax(torch.randn(6, 3, dtype=torch.float64), 1)
    f = p.sum(0)
    code = p**2 / f
    code = code / code.sum(1, keepdim=True)
    assert torch.allclose(depict_target_distribution(p), code)
    assert torch.allclose(DEPICTClusteringLoss().target(p), code)
    paper = p / f.sqrt()
    paper = paper / paper.sum(1, keepdim=True)
    assert torch.allclose(DEPICTClusteringLoss("paper").target(p), paper)
    assert not torch.allclose(code, paper)
