"""MI screening: agreement with sklearn per feature, support recovery vs correlation screening."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inforeg.estimators import ksg_mutual_information_per_feature, mutual_information_screening


def test_matches_sklearn_per_feature():
    fs = pytest.importorskip("sklearn.feature_selection")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(150, 12, generator=g, dtype=torch.float64)
    y = x[:, 0] ** 2 + x[:, 1] + 0.3 * torch.randn(150, generator=g, dtype=torch.float64)
    got = ksg_mutual_information_per_feature(x, y, feature_chunk=5).clamp_min(0).numpy()
    ref = fs.mutual_info_regression(x.numpy(), y.numpy(), n_neighbors=3, random_state=0)
    assert np.abs(got - ref).max() < 1e-9


@pytest.mark.parametrize("seed", [0])
def test_recovers_quadratic_signals_that_pearson_misses(seed):
    # spec §10 sizes: n = 200, p = 2000; y depends on x_0^2 + x_1^2 only.
    g = torch.Generator().manual_seed(seed)
    n, p = 200, 2000
    x = torch.randn(n, p, generator=g, dtype=torch.float64)
    y = x[:, 0] ** 2 + x[:, 1] ** 2 + 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    idx, scores = mutual_information_screening(x, y)
    assert idx.shape[0] == int(n / np.log(n)) and scores.shape == (p,)
    assert {0, 1} <= set(idx.tolist())
    corr = ((x - x.mean(0)) * (y - y.mean())[:, None]).mean(0).abs() / x.std(0) / y.std()
    pearson = set(torch.topk(corr, idx.shape[0]).indices.tolist())
    assert not {0, 1} <= pearson


def test_bad_input():
    x = torch.randn(20, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="y"):
        mutual_information_screening(x, torch.randn(19, dtype=torch.float64))
    with pytest.raises(ValueError, match="top_k"):
        mutual_information_screening(x, torch.randn(20, dtype=torch.float64), top_k=4)
    with pytest.raises(ValueError, match=r"k: expected k < n = 20"):
        ksg_mutual_information_per_feature(x, torch.randn(20, dtype=torch.float64), k=20)
    # one sample: the k error, not a ZeroDivisionError from the default top_k = n / log n
    with pytest.raises(ValueError, match=r"k: expected k < n = 1"):
        mutual_information_screening(x[:1], torch.randn(1, dtype=torch.float64))


def test_per_feature_is_the_ksg_estimator_of_each_column():
    # The batched screen (torch counts) and ksg_mutual_information (numpy counts on CPU) agree
    # column by column, tied columns (binary, rounded) included.
    from inforeg.estimators import ksg_mutual_information

    g = torch.Generator().manual_seed(1)
    n = 120
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    x[:, 3] = (x[:, 3] > 0).double()
    x[:, 4] = torch.round(x[:, 4] * 4)
    y = x[:, 0] + x[:, 3] + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    got = ksg_mutual_information_per_feature(x, y, k=4, feature_chunk=2)
    xs = x / x.std(0, unbiased=False)
    ys = y / y.std(unbiased=False)
    for j in range(x.shape[1]):
        ref = ksg_mutual_information(xs[:, j], ys, k=4, backend="brute")
        assert abs(float(got[j]) - float(ref)) < 1e-12, j


def test_per_feature_screen_under_inference_mode():
    # The feature blocks run in worker threads, which must inherit the caller's inference mode.
    from inforeg.core.threads import intra_op_threads

    g = torch.Generator().manual_seed(2)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64)
    y = x[:, 0] + 0.1 * torch.randn(40, generator=g, dtype=torch.float64)
    with intra_op_threads(2):
        ref = ksg_mutual_information_per_feature(x, y, k=3, feature_chunk=1)
        with torch.inference_mode():
            got = ksg_mutual_information_per_feature(x.clone(), y.clone(), k=3, feature_chunk=1)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
