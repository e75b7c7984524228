"""MEE terms: FIFO memory, entropy proxy (scaling, gradient direction), DLLE and DIsoMap identities."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.estimators import (
    EmbeddingMemory,
    ManifoldEntropyLoss,
    disomap_loss,
    dlle_loss,
    isometric_mix,
    nearest_neighbor_entropy,
)
from tests._helpers import gradcheck64


def test_nn_entropy_bruteforce_and_scaling():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 4, generator=g, dtype=torch.float64)
    mem = torch.randn(50, 4, generator=g, dtype=torch.float64)
    d = torch.stack([min(((mem[b] - z[j]) ** 2).sum() / 4 for b in range(50)) for j in range(16)])
    h = nearest_neighbor_entropy(z, mem, eps=1e-30)
    assert torch.allclose(h, d.mean().log())
    assert torch.allclose(
        nearest_neighbor_entropy(z, mem, estimator="kozachenko", eps=1e-30),
        4 * 0.5 * d.log().mean(),
    )
    # scaling codes and memory by c shifts H by 2 log c (so the loss by -2 lambda log c)
    c = 3.0
    assert torch.allclose(nearest_neighbor_entropy(c * z, c * mem, eps=1e-30), h + 2 * math.log(c))
    assert float(d.mean()) >= 0


def test_gradient_moves_codes_away_from_neighbour():
    z = torch.tensor([[0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    mem = torch.tensor([[1.0, 0.0], [5.0, 5.0]], dtype=torch.float64)
    (grad,) = torch.autograd.grad(nearest_neighbor_entropy(z, mem), z)
    step = z.detach() + 0.1 * grad  # ascent on H
    assert float(((step - mem[0]) ** 2).sum()) > 1.0
    gradcheck64(
        lambda v: nearest_neighbor_entropy(v, mem.new_ones(7, 3).cumsum(0)),
        torch.randn(5, 3, dtype=torch.float64),
    )


def test_duplicate_code_is_finite_and_batch_mode():
    z = torch.ones(3, 2)
    assert torch.isfinite(nearest_neighbor_entropy(z, torch.ones(4, 2)))
    x = torch.randn(10, 2, dtype=torch.float64)
    d = torch.cdist(x, x) ** 2 / 2 + torch.diag(
        torch.full((10,), float("inf"), dtype=torch.float64)
    )
    assert torch.allclose(nearest_neighbor_entropy(x, eps=1e-30), d.min(1).values.mean().log())


def test_fifo_memory_order_and_size():
    m = EmbeddingMemory(5, 2, init="empty")
    m.push(torch.arange(6.0).reshape(3, 2))
    assert torch.equal(m.values(), torch.arange(6.0).reshape(3, 2))
    m.push(torch.arange(6.0, 12.0).reshape(3, 2))
    assert torch.equal(m.values(), torch.arange(2.0, 12.0).reshape(5, 2))  # oldest dropped first
    m.push(torch.arange(100.0, 114.0).reshape(7, 2))
    assert torch.equal(m.values(), torch.arange(104.0, 114.0).reshape(5, 2))
    full = EmbeddingMemory(4, 3)
    assert full.values().shape == (4, 3) and full.values().abs().max() <= 1
    assert "data" in full.state_dict()


def test_module_warmup_memory_and_legacy_shrink():
    loss = ManifoldEntropyLoss(2, memory_size=8, weight=2.0, warmup_epochs=10)
    z = torch.randn(4, 2)
    assert float(loss(z)) == 0.0  # epoch 0 of the warm-up
    loss.set_epoch(5)
    mem = loss.memory.values().clone()
    out = loss(z)
    assert torch.allclose(out, -1.0 * nearest_neighbor_entropy(z, mem))
    legacy = ManifoldEntropyLoss(
        2, memory_size=8, legacy_slotwise=True, batch_size=4, warmup_epochs=0
    )
    for _ in range(3):
        legacy(torch.randn(4, 2))
    assert legacy.legacy_buffer.shape[0] == 1  # the authors' buffer collapses to one batch


def test_dlle_and_disomap_identities():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 6, generator=g)
    flip_invariant = lambda v: torch.stack([v.abs().sum(1), (v**2).sum(1)], 1)  # noqa: E731
    assert float(dlle_loss(flip_invariant(x), flip_invariant(-x))) == 0.0
    w, b = torch.randn(6, 8, generator=g), torch.randn(8, generator=g)
    affine = lambda v: v @ w + b  # noqa: E731
    y = torch.randn(4096, 6, generator=g)
    alpha = torch.randn(4096, generator=g)
    mix = isometric_mix(x, y, alpha)
    val = disomap_loss(affine(mix), affine(x), affine(y), alpha, 0.05, generator=g)
    assert abs(float(val) - 0.0025) < 2e-4


def test_bad_input():
    with pytest.raises(ValueError, match="memory"):
        nearest_neighbor_entropy(torch.randn(3, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="k"):
        nearest_neighbor_entropy(torch.randn(3, 2), k=3)
    with pytest.raises(ValueError, match="estimator"):
        nearest_neighbor_entropy(torch.randn(3, 2), estimator="kl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="e_aug"):
        dlle_loss(torch.randn(3, 2), torch.randn(3, 3))
    with pytest.raises(ValueError, match="batch_size"):
        ManifoldEntropyLoss(2, legacy_slotwise=True)


def test_legacy_slotwise_rejects_k_other_than_one():
    with pytest.raises(ValueError, match="k"):
        ManifoldEntropyLoss(4, memory_size=8, k=3, legacy_slotwise=True, batch_size=2)


def test_nearest_neighbor_entropy_far_from_the_origin_in_float32():
    """Codes near 100 with spread 1e-3: float32 distances collapsed to eps (-18.42 for -15.47)."""
    g = torch.Generator().manual_seed(0)
    z = 100 + 1e-3 * torch.randn(64, 4, generator=g, dtype=torch.float64)
    mem = 100 + 1e-3 * torch.randn(128, 4, generator=g, dtype=torch.float64)
    want = float(nearest_neighbor_entropy(z.float().double(), mem.float().double()))
    assert float(nearest_neighbor_entropy(z.float(), mem.float())) == pytest.approx(want, abs=0.01)
