"""EntropyBlockPTQ: calibration, the partition rules, the search's guarantees and its cost."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inforeg.quant import (
    EntropyBlockPTQ,
    dependency_entropy,
    entropy_block_partition,
    fake_quantize_asymmetric,
    quantized_activation_entropy,
)

CANDS = tuple(1 - 0.1 * a for a in range(7))


def _mlp(seed=0, widths=(6, 16, 16, 16, 4)):
    torch.manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        lin = nn.Linear(a, b)
        layers.append(lin if i == len(widths) - 2 else nn.Sequential(lin, nn.ReLU()))
    x = torch.randn(128, widths[0], generator=torch.Generator().manual_seed(seed + 100))
    return layers, x


def _score(a, b):
    return float((a - b).detach().abs().pow(0.5).mean())


def test_calibration_ranges_and_proxies():
    layers, x = _mlp()
    ptq = EntropyBlockPTQ(layers, bits=4, proxy="dependency")
    blocks = ptq.calibrate(x)
    acts = [x]
    for layer in layers:
        acts.append(layer(acts[-1]).detach())
    q = [fake_quantize_asymmetric(a, a.amin(0), a.amax(0), 4)[None] for a in acts[:-1]]
    expected = [quantized_activation_entropy(q[0])]  # shape differs from nothing before it
    expected.append(quantized_activation_entropy(q[1]))  # 6 -> 16 channels: shapes differ
    expected += [dependency_entropy(q[i - 1], q[i]) for i in (2, 3)]
    torch.testing.assert_close(ptq.entropies, torch.stack(expected))
    assert blocks == entropy_block_partition(ptq.entropies) == ptq.blocks
    torch.testing.assert_close(ptq.range_min_0, x.amin(0))
    assert "range_max_3" in ptq.state_dict()
    first = EntropyBlockPTQ(layers, bits=4, proxy="entropy")
    first.calibrate(x)
    torch.testing.assert_close(
        first.entropies, torch.stack([quantized_activation_entropy(v) for v in q])
    )


def test_sixteen_bits_reproduce_the_float_model():
    layers, x = _mlp()
    ptq = EntropyBlockPTQ(layers, bits=16)
    ptq.calibrate(x)
    ref = nn.Sequential(*layers)(x)
    torch.testing.assert_close(ptq(x), ref, rtol=0, atol=1e-3)


@pytest.mark.parametrize("partition", ["entropy", "network", [0, 0, 1, 1]])
def test_block_search_never_worsens_its_objective_and_cost_formula(partition):
    layers, x = _mlp(1)
    ptq = EntropyBlockPTQ(layers, bits=3, partition=partition, sweeps=2)
    blocks = ptq.calibrate(x)
    ref = nn.Sequential(*layers)(x)
    before = _score(ptq(x), ref)
    factors = ptq.search(x)
    assert factors == ptq.factors and all(f in CANDS for f in factors)
    sizes = [blocks.count(b) for b in sorted(set(blocks))]
    assert ptq.cost == sum(2 * s * 7 for s in sizes)
    assert ptq.layer_cost == sum(2 * s * s * 7 for s in sizes)
    if partition == "network":  # one block: the objective is the network output's score
        assert _score(ptq(x), ref) <= before


def test_network_search_matches_brute_force_on_a_tiny_model():
    """With enough sweeps, one-block coordinate descent over two layers and three candidates reaches
    a coordinate-wise minimum; check it is no worse than every single-coordinate change."""
    layers, x = _mlp(2, widths=(3, 5, 2))
    cands = (1.0, 0.8, 0.6)
    ptq = EntropyBlockPTQ(layers, bits=2, candidates=cands, partition="network", sweeps=4)
    ptq.calibrate(x)
    ref = nn.Sequential(*layers)(x)
    best = ptq.search(x)
    best_score = _score(ptq(x), ref)
    for i in range(2):
        for c in cands:
            ptq.factors = list(best)
            ptq.factors[i] = c
            assert best_score <= _score(ptq(x), ref) + 1e-12


def test_max_block_cuts_long_blocks_as_the_paper_caps_them_at_three():
    layers, x = _mlp(4, widths=(6, 16, 16, 16, 16, 16, 16, 16, 4))  # 8 layers
    ptq = EntropyBlockPTQ(layers, bits=3, partition="network", max_block=3)
    assert ptq.calibrate(x) == [0, 0, 0, 1, 1, 1, 2, 2]
    ptq.search(x)
    assert ptq.cost == 2 * 7 * (3 + 3 + 2)  # sweeps x candidates x layers, block by block
    explicit = EntropyBlockPTQ(layers, partition=[0, 0, 1, 1, 1, 1, 1, 2], max_block=2)
    assert explicit.calibrate(x) == [0, 0, 1, 1, 2, 2, 3, 4]
    uncapped = EntropyBlockPTQ(layers, partition="network")
    assert uncapped.calibrate(x) == [0] * 8
    assert "max_block=3" in repr(ptq)


def test_layer_rule_is_the_released_per_layer_argmin():
    layers, x = _mlp(3)
    ptq = EntropyBlockPTQ(layers, bits=3, partition="layer")
    ptq.calibrate(x)
    factors = ptq.search(x)
    assert ptq.cost == 4 * 7
    a = x
    for i, layer in enumerate(layers):
        lo, hi = getattr(ptq, f"range_min_{i}"), getattr(ptq, f"range_max_{i}")
        scores = [_score(fake_quantize_asymmetric(a, c * lo, c * hi, 3), a) for c in CANDS]
        assert factors[i] == CANDS[scores.index(min(scores))]
        a = layer(fake_quantize_asymmetric(a, factors[i] * lo, factors[i] * hi, 3)).detach()


def test_bad_input():
    layers, x = _mlp()
    with pytest.raises(RuntimeError, match="calibrate"):
        EntropyBlockPTQ(layers)(x)
    with pytest.raises(ValueError, match="layers"):
        EntropyBlockPTQ([])
    with pytest.raises(TypeError, match="layers"):
        EntropyBlockPTQ(nn.Linear(2, 2))
    with pytest.raises(TypeError, match=r"layers\[1\]"):
        EntropyBlockPTQ([nn.Linear(2, 2), "relu"])
    with pytest.raises(ValueError, match="bits"):
        EntropyBlockPTQ(layers, bits=0)
    with pytest.raises(ValueError, match="candidates"):
        EntropyBlockPTQ(layers, candidates=())
    with pytest.raises(ValueError, match=r"candidates\[1\]"):
        EntropyBlockPTQ(layers, candidates=(1.0, -0.5))
    with pytest.raises(ValueError, match="partition"):
        EntropyBlockPTQ(layers, partition="uniform")
    with pytest.raises(ValueError, match="partition"):
        EntropyBlockPTQ(layers, partition=[0, 1])
    with pytest.raises(ValueError, match="partition"):
        EntropyBlockPTQ(layers, partition=[0, 2, 2, 2])
    with pytest.raises(ValueError, match="sweeps"):
        EntropyBlockPTQ(layers, sweeps=0)
    with pytest.raises(ValueError, match="threshold"):
        EntropyBlockPTQ(layers, threshold="median")
    with pytest.raises(ValueError, match="proxy"):
        EntropyBlockPTQ(layers, proxy="kl")
    with pytest.raises(ValueError, match="max_block"):
        EntropyBlockPTQ(layers, max_block=0)
    with pytest.raises(TypeError, match="max_block"):
        EntropyBlockPTQ(layers, max_block=2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="x"):
        EntropyBlockPTQ(layers).calibrate(torch.zeros(0, 6))


def test_a_searched_model_survives_a_checkpoint():
    # Regression: the calibration buffers were absent (None, or empty) in a fresh instance and the
    # chosen factors were a Python list outside the state_dict, so loading a calibrated model's
    # checkpoint raised (unexpected keys, size mismatch) and the factors were lost.
    import copy
    import io

    layers, x = _mlp(seed=3)
    ptq = EntropyBlockPTQ(copy.deepcopy(layers), bits=3, candidates=CANDS, sweeps=1)
    ptq.calibrate(x)
    factors = ptq.search(x)
    assert factors != [CANDS[0]] * len(layers)  # the search moved away from the start
    buf = io.BytesIO()
    torch.save(ptq.state_dict(), buf)
    buf.seek(0)
    fresh = EntropyBlockPTQ(copy.deepcopy(layers), bits=3, candidates=CANDS, sweeps=1)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert fresh.factors == factors and fresh.blocks == ptq.blocks and fresh.cost == ptq.cost
    torch.testing.assert_close(fresh.entropies, ptq.entropies, rtol=0, atol=0)
    torch.testing.assert_close(fresh(x), ptq(x), rtol=0, atol=0)
