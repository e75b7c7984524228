"""The one categorical-entropy helper of losses/: values, masked (-inf) logits, zero probabilities."""

from __future__ import annotations

import math

import torch

from inforeg.losses._common import (
    entropy_from_logits,
    entropy_from_probs,
    entropy_terms_from_logits,
)
from tests._helpers import assert_close, gradcheck64


def _brute_entropy(p: torch.Tensor) -> torch.Tensor:
    # float64 reference, one row at a time, skipping zeros by hand
    rows = p.double().reshape(-1, p.shape[-1])
    out = [-sum(float(v) * math.log(float(v)) for v in row if v > 0) for row in rows]
    return torch.tensor(out, dtype=torch.float64).reshape(p.shape[:-1])


def test_values_match_brute_force(dtype):
    z = torch.randn(4, 3, 7, generator=torch.Generator().manual_seed(0), dtype=dtype)
    ref = _brute_entropy(torch.softmax(z.double(), dim=-1))
    assert_close(entropy_from_logits(z), ref, dtype=dtype)
    assert_close(entropy_from_probs(torch.softmax(z, dim=-1)), ref, dtype=dtype)
    assert_close(entropy_terms_from_logits(z).sum(-1), ref, dtype=dtype)
    # another axis
    zt = z.transpose(1, 2)
    assert_close(entropy_from_logits(zt, dim=1), ref, dtype=dtype)


def test_minus_inf_logits_contribute_zero_with_finite_gradients():
    z = torch.tensor([[0.3, -float("inf"), 1.2, -float("inf")], [2.0, -1.0, 0.0, 5.0]])
    z.requires_grad_(True)
    h = entropy_from_logits(z)
    # the masked row equals the entropy of its two finite logits
    assert_close(h[0], _brute_entropy(torch.softmax(torch.tensor([0.3, 1.2]), dim=0)))
    h.sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert (z.grad[0, [1, 3]] == 0).all()
    # the naive form p * log_softmax is NaN on the same input: the case above is the hard one
    log_p = torch.log_softmax(z.detach(), dim=-1)
    assert torch.isnan(-(log_p.exp() * log_p).sum(-1)[0])


def test_underflowing_probabilities_and_zero_probabilities():
    # float32 logits 1e4 apart: p underflows to exactly 0 for the small ones
    z = torch.tensor([1e4, 0.0, -1e4], requires_grad=True)
    h = entropy_from_logits(z)
    h.backward()
    assert float(h) == 0.0 and torch.isfinite(z.grad).all()
    p = torch.tensor([0.5, 0.0, 0.5, 0.0], dtype=torch.float64, requires_grad=True)
    h = entropy_from_probs(p)
    h.backward()
    assert_close(h, torch.tensor(math.log(2.0), dtype=torch.float64))
    # d/dp_i (-p log p) = -(log p_i + 1) where p_i > 0, and 0 (not NaN) where p_i = 0
    expected = torch.tensor([math.log(2.0) - 1.0, 0.0, math.log(2.0) - 1.0, 0.0], dtype=p.dtype)
    assert_close(p.grad, expected)


def test_gradcheck():
    z = torch.randn(3, 5, generator=torch.Generator().manual_seed(1))
    gradcheck64(entropy_from_logits, z)
    gradcheck64(lambda q: entropy_from_probs(torch.softmax(q, dim=-1)), z)
