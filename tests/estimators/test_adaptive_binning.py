"""EBAB and aKDE: the spec's properties and hand-computed plug-in values."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.estimators import (
    InformationPlane,
    adaptive_bin_edges,
    adaptive_binning_mutual_information,
    information_plane,
    kde_mutual_information,
)


def _data(n: int = 400, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, generator=g, dtype=torch.float64), torch.randint(
        0, 4, (n,), generator=g
    )


def test_bin_edges_equal_distinct_counts_and_relu_zero_bin():
    t = torch.tensor([[0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0]], dtype=torch.float64)
    edges = adaptive_bin_edges(t, n_bins=3, lower_edge=0.0)
    assert torch.equal(edges, torch.tensor([0.0, 1.0, 3.0, 5.0, 6.0], dtype=torch.float64))


def test_scale_invariance_unlike_fixed_bins_with_fixed_edge():
    t, y = _data()
    a = adaptive_binning_mutual_information(t - 0.5, y, n_bins=4, lower_edge=-1.000001)
    b = adaptive_binning_mutual_information(0.3 * (t - 0.5), y, n_bins=4, lower_edge=-1.000001)
    assert torch.allclose(torch.stack(a), torch.stack(b))
    f1 = adaptive_binning_mutual_information(
        t - 0.5, y, n_bins=4, lower_edge=-1.000001, binning="fixed"
    )
    f2 = adaptive_binning_mutual_information(
        0.3 * (t - 0.5), y, n_bins=4, lower_edge=-1.000001, binning="fixed"
    )
    assert not torch.allclose(f1[0], f2[0])


def test_constant_injective_and_label_bounds():
    t, y = _data()
    ixt, ity = adaptive_binning_mutual_information(torch.zeros(400, 3, dtype=torch.float64), y)
    assert abs(float(ixt)) < 1e-12 and abs(float(ity)) < 1e-12
    ixt, ity = adaptive_binning_mutual_information(t, y, n_bins=1000, base=2)
    assert abs(float(ixt) - math.log2(400)) < 1e-9  # injective layer: log2 N bits
    p = torch.bincount(y).double() / 400
    h_y = float(-(p * p.log2()).sum())
    assert 0 <= float(ity) <= h_y + 1e-12


def test_plugin_values_by_hand():
    t = torch.tensor([[0.0], [0.0], [1.0], [1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1])
    ixt, ity = adaptive_binning_mutual_information(t, y, n_bins=1, lower_edge=0.0)
    assert abs(float(ixt) - math.log(2)) < 1e-12 and abs(float(ity) - math.log(2)) < 1e-12
    ids = torch.tensor([0, 0, 1, 1])
    ixt, _ = adaptive_binning_mutual_information(t, y, x_ids=ids, n_bins=1, lower_edge=0.0)
    assert abs(float(ixt) - math.log(2)) < 1e-12


def test_kde_bounds_ordering_and_variance():
    t, y = _data()
    r = kde_mutual_information(t, y, variance=0.01)
    assert float(r.i_xt_upper) >= float(r.i_xt_lower)
    r2 = kde_mutual_information(t, y, variance=0.1)
    assert float(r2.i_xt_upper) < float(r.i_xt_upper)  # more noise, less information
    rel = kde_mutual_information(10 * t, y, variance=0.01, variance_rule="relative_to_max")
    same = kde_mutual_information(t, y, variance=0.01 * float(t.abs().max()) ** 2)
    assert torch.allclose(rel.i_xt_upper, same.i_xt_upper)


def test_kde_bruteforce_single_point_classes():
    t = torch.tensor([[0.0], [10.0]], dtype=torch.float64)
    y = torch.tensor([0, 1])
    r = kde_mutual_information(t, y, variance=0.01)
    # far-apart points: H_up = H(T|X) + log 2, so I(X;T) = log 2 = I(T;Y)
    assert abs(float(r.i_xt_upper) - math.log(2)) < 1e-9
    assert abs(float(r.i_ty_upper) - math.log(2)) < 1e-9


def test_information_plane_helpers():
    t, y = _data()
    pts = information_plane([t, t[:, :1]], y, base=2)
    assert len(pts) == 2 and pts[0][0] >= pts[1][0]
    logger = InformationPlane(estimator="kde")
    logger.log(0, [t], y)
    logger.log(1, [t], y)
    assert [e for e, _, _ in logger.history[0]] == [0, 1]


def test_bad_input():
    t, y = _data()
    with pytest.raises(ValueError, match="y"):
        adaptive_binning_mutual_information(t, y[:-1])
    with pytest.raises(TypeError, match="y"):
        adaptive_binning_mutual_information(t, y.double())
    with pytest.raises(ValueError, match="binning"):
        adaptive_binning_mutual_information(t, y, binning="quantile")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="variance"):
        kde_mutual_information(t, y, variance=0.0)
    with pytest.raises(ValueError, match="lower_edges"):
        information_plane([t], y, lower_edges=[0.0, 0.0])


def _plugin_bits(codes: list[tuple[int, ...]], y: list[int]) -> tuple[float, float]:
    """I(X;T) = H(T) and I(T;Y) by counting, for distinct inputs."""
    from collections import Counter

    def h(items: list) -> float:
        n = len(items)
        return -sum(c / n * math.log2(c / n) for c in Counter(items).values())

    h_t = h(codes)
    h_ty = sum(
        (y.count(c) / len(y)) * h([code for code, lab in zip(codes, y) if lab == c]) for c in set(y)
    )
    return h_t, h_t - h_ty


def test_fixed_value_range_bins_by_hand():
    t, y = _data(n=300, seed=3)
    lo, hi, n_bins = -0.5, 2.0, 5
    width = (hi - lo) / n_bins
    codes = [tuple(min(max(int((v - lo) // width), 0), n_bins) for v in row) for row in t.tolist()]
    ref = _plugin_bits(codes, y.tolist())
    got = adaptive_binning_mutual_information(
        t, y, n_bins=n_bins, binning="fixed", base=2, value_range=(lo, hi)
    )
    assert float(got[0]) == pytest.approx(ref[0], abs=1e-12)
    assert float(got[1]) == pytest.approx(ref[1], abs=1e-12)
    # the per-call range is the special case (lower edge, current maximum)
    per_call = adaptive_binning_mutual_information(t, y, n_bins=4, lower_edge=0.0, binning="fixed")
    same = adaptive_binning_mutual_information(
        t, y, n_bins=4, binning="fixed", value_range=(0.0, float(t.max()))
    )
    assert torch.allclose(torch.stack(per_call), torch.stack(same))


def test_run_wide_range_is_not_scale_adaptive():
    """With one range for the run, shrinking activations lowers I(X;T); per-call bins do not see it."""
    t, y = _data(n=300, seed=4)
    full, small = t, 0.25 * t
    run_range = (0.0, float(full.max()))
    big_i = adaptive_binning_mutual_information(
        full, y, n_bins=8, binning="fixed", value_range=run_range
    )[0]
    small_i = adaptive_binning_mutual_information(
        small, y, n_bins=8, binning="fixed", value_range=run_range
    )[0]
    assert float(small_i) < float(big_i) - 1.0
    per_call = [
        adaptive_binning_mutual_information(a, y, n_bins=8, lower_edge=0.0, binning="fixed")[0]
        for a in (full, small)
    ]
    assert torch.allclose(per_call[0], per_call[1])
    pts = information_plane(
        [full, small], y, "fixed", n_bins=8, value_ranges=[run_range, run_range]
    )
    assert pts[0][0] == pytest.approx(float(big_i)) and pts[1][0] == pytest.approx(float(small_i))


def test_value_range_bad_input():
    t, y = _data()
    with pytest.raises(ValueError, match="value_range"):
        adaptive_binning_mutual_information(t, y, value_range=(0.0, 1.0))  # adaptive bins
    with pytest.raises(ValueError, match="value_range"):
        adaptive_binning_mutual_information(
            t, y, binning="fixed", lower_edge=0.0, value_range=(0.0, 1.0)
        )
    with pytest.raises(ValueError, match="value_range"):
        adaptive_binning_mutual_information(t, y, binning="fixed", value_range=(1.0, 1.0))
    with pytest.raises(ValueError, match="value_range"):
        adaptive_binning_mutual_information(t, y, binning="fixed", value_range=(0.0, float("inf")))
    with pytest.raises(ValueError, match="value_ranges"):
        information_plane([t], y, "fixed", value_ranges=[(0.0, 1.0), (0.0, 1.0)])


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_bin_edges_of_half_input_equal_those_of_the_same_values_in_float32(low):
    # Issue 18 reported bf16 edges 0.13 from the float32 ones: the edges follow the distinct
    # values, which bf16 merges; on the same values the computation (float64) agrees exactly.
    g = torch.Generator().manual_seed(0)
    t = torch.relu(torch.randn(100, 5, generator=g)).to(low)
    for lower in (None, 0.0):
        edges = adaptive_bin_edges(t, 30, lower)
        assert edges.dtype == torch.float64
        assert torch.equal(edges, adaptive_bin_edges(t.float(), 30, lower))
        assert torch.equal(edges, adaptive_bin_edges(t.double(), 30, lower))


def test_base_one_is_rejected():
    t, y = _data()
    with pytest.raises(ValueError, match="base"):
        kde_mutual_information(t, y, base=1.0)
