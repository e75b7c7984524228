"""Q-VLM's entropy proxies against hand computation, and the partition rule (spec §12 oracles)."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.quant import dependency_entropy, entropy_block_partition, quantized_activation_entropy
from tests._helpers import assert_close, gradcheck64


def _tensor(seed=0, shape=(2, 5, 3)):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


def _entropy_by_hand(a):
    b, t, d = a.shape
    total = 0.0
    for i in range(b):
        for k in range(d):
            col = [abs(float(a[i, j, k])) for j in range(t)]
            norm = max(math.sqrt(sum(v * v for v in col)), 1e-12)
            total += -sum((v / norm) * math.log(v / norm + 1e-7) for v in col)
    return total / (b * d)


def _dependency_by_hand(prev, cur):
    b, t, d = prev.shape
    total = 0.0
    for i in range(b):
        for k in range(d):
            p = [abs(float(prev[i, j, k])) for j in range(t)]
            q = [abs(float(cur[i, j, k])) for j in range(t)]
            p = [v / sum(p) for v in p]
            q = [v / sum(q) for v in q]
            joint = [u * v for u, v in zip(p, q)]
            joint = [v / sum(joint) for v in joint]
            cond = [v / (u + 1e-5) for u, v in zip(p, q)]
            cond = [v / sum(cond) for v in cond]
            total += -sum(jv * math.log(cv + 1e-5) for jv, cv in zip(joint, cond))
    return total / (b * d)


def test_entropy_proxy_by_hand(dtype):
    a = _tensor(0)
    got = quantized_activation_entropy(a.to(dtype))
    assert got.dtype == dtype and got.shape == ()
    assert_close(got, torch.tensor(_entropy_by_hand(a)))


def test_dependency_proxy_by_hand(dtype):
    prev, cur = _tensor(1), _tensor(2)
    got = dependency_entropy(prev.to(dtype), cur.to(dtype))
    assert got.dtype == dtype
    assert_close(got, torch.tensor(_dependency_by_hand(prev, cur)))


def test_dim_argument_moves_the_token_axis():
    a = _tensor(3)
    assert_close(
        quantized_activation_entropy(a.transpose(1, 2), dim=2), quantized_activation_entropy(a)
    )
    b = _tensor(4)
    assert_close(
        dependency_entropy(a.transpose(1, 2), b.transpose(1, 2), dim=-1), dependency_entropy(a, b)
    )


def test_proxies_are_invariant_to_scale_and_sign():
    a, b = _tensor(5), _tensor(6)
    assert_close(quantized_activation_entropy(-3.0 * a), quantized_activation_entropy(a))
    assert_close(dependency_entropy(2.0 * a, -b), dependency_entropy(a, b))


def test_gradcheck():
    a = _tensor(7) + 3.0  # away from |.|'s kink at 0
    b = _tensor(8) - 3.0
    gradcheck64(quantized_activation_entropy, a)
    gradcheck64(dependency_entropy, a, b)


def test_all_zero_slices_stay_finite():
    a = torch.zeros(1, 4, 2, requires_grad=True)
    b = torch.zeros(1, 4, 2)
    h = quantized_activation_entropy(a)
    d = dependency_entropy(a, b) + dependency_entropy(a, b + 1.0) + dependency_entropy(b + 1.0, a)
    assert float(h.detach()) == 0.0 and torch.isfinite(d)
    (h + d).backward()
    assert torch.isfinite(a.grad).all()


def test_half_precision():
    a = _tensor(9).to(torch.bfloat16)
    got = quantized_activation_entropy(a)
    assert got.dtype == torch.bfloat16
    assert_close(
        got.float(), quantized_activation_entropy(a.double()).float(), rtol=2e-2, atol=2e-2
    )


H = [2.0, 5.0, 1.0, 4.0, 0.5, 3.0]


@pytest.mark.parametrize(
    ("threshold", "expected"),
    [
        (3.0, [0, 1, 1, 2, 2, 3]),
        ("running_mean", [0, 0, 0, 1, 1, 2]),
        ("mean", [0, 1, 1, 2, 2, 3]),
        (0.0, [0, 0, 0, 0, 0, 0]),
        (10.0, [0, 1, 2, 3, 4, 5]),
    ],
)
def test_partition_oracle(threshold, expected):
    assert entropy_block_partition(H, threshold) == expected
    assert entropy_block_partition(torch.tensor(H), threshold) == expected


def test_partition_first_release_threshold_and_single_layer():
    assert entropy_block_partition([40.0, 36.0, 38.0], 37) == [0, 0, 1]
    assert entropy_block_partition([1.0]) == [0]


def test_bad_input():
    a = _tensor(0)
    with pytest.raises(ValueError, match="cur"):
        dependency_entropy(a, a[:, :4])
    with pytest.raises(ValueError, match="dim"):
        quantized_activation_entropy(a, dim=3)
    with pytest.raises(ValueError, match="eps"):
        quantized_activation_entropy(a, eps=0.0)
    with pytest.raises(ValueError, match="a"):
        quantized_activation_entropy(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="entropies"):
        entropy_block_partition([])
    with pytest.raises(ValueError, match="entropies"):
        entropy_block_partition(torch.zeros(0))
    with pytest.raises(ValueError, match="entropies"):
        entropy_block_partition([1.0, float("nan")])
    with pytest.raises(ValueError, match="entropies"):
        entropy_block_partition(torch.ones(2, 3))
    with pytest.raises(TypeError, match="entropies"):
        entropy_block_partition("abc")
    with pytest.raises(ValueError, match="threshold"):
        entropy_block_partition(H, "median")
    with pytest.raises(TypeError, match="threshold"):
        entropy_block_partition(H, None)  # type: ignore[arg-type]
