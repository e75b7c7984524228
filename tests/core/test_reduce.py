from __future__ import annotations

import pytest
import torch

from inforeg.core.reduce import masked_aggregate, reduce


def test_reduce_modes():
    x = torch.tensor([1.0, 2.0, 6.0])
    assert reduce(x, "mean") == 3.0
    assert reduce(x, "sum") == 9.0
    assert torch.equal(reduce(x, "none"), x)
    with pytest.raises(ValueError, match="reduction: expected one of"):
        reduce(x, "max")


def _spec_case():
    # rl.md: lengths 1 and 3 with per-token losses [1] and [0, 0, 0].
    values = torch.tensor([[1.0, 9.0, 9.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    return values, mask


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("token-mean", 0.25),
        ("seq-mean-token-mean", 0.5),
        ("seq-mean-token-sum", 0.5),
        ("seq-mean-token-sum-norm", 1.0 / 6.0),
    ],
)
def test_aggregation_spec_values(mode, expected):
    values, mask = _spec_case()
    assert masked_aggregate(values, mask, mode).item() == pytest.approx(expected)


def test_aggregation_padding_changes_nothing_and_empty_is_zero():
    values, mask = _spec_case()
    padded_v = torch.cat([values, torch.full((2, 2), 123.0)], dim=1)
    padded_m = torch.cat([mask, torch.zeros(2, 2, dtype=mask.dtype)], dim=1)
    for mode in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum"):
        assert masked_aggregate(padded_v, padded_m, mode) == masked_aggregate(values, mask, mode)
    # Dr. GRPO normalises by the padded length unless a constant is given.
    assert masked_aggregate(
        padded_v, padded_m, "seq-mean-token-sum-norm", norm=3
    ).item() == pytest.approx(1 / 6)
    zero = masked_aggregate(values, torch.zeros_like(mask), "seq-mean-token-mean")
    assert zero.item() == 0.0 and torch.isfinite(zero)


def test_aggregation_bfloat16_and_errors():
    values, mask = _spec_case()
    out = masked_aggregate(values.bfloat16(), mask, "token-mean")
    assert out.dtype == torch.bfloat16 and out.float().item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="mask: expected the same shape"):
        masked_aggregate(values, mask[:, :2])
    with pytest.raises(ValueError, match="mode: expected one of"):
        masked_aggregate(values, mask, "token-sum")
    with pytest.raises(ValueError, match="values: expected a 2-D"):
        masked_aggregate(values[0], None)


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum"])
def test_aggregation_ignores_nan_where_masked(mode):
    # Regression: (v * m).sum() let a NaN at a padded position (the entropy of logits that are
    # all -inf there) through as 0 * NaN, so the loss was NaN.
    v = torch.tensor([[1.0, 2.0, float("nan")], [4.0, float("inf"), 0.0]], requires_grad=True)
    m = torch.tensor([[1, 1, 0], [1, 0, 1]])
    clean = torch.tensor([[1.0, 2.0, 0.0], [4.0, 0.0, 0.0]])
    got = masked_aggregate(v, m, mode)
    torch.testing.assert_close(got, masked_aggregate(clean, m, mode))
    got.backward()
    assert torch.isfinite(v.grad).all() and float(v.grad[0, 2]) == float(v.grad[1, 1]) == 0.0
