from __future__ import annotations

import pytest
import torch

from inforeg.lab.bench import get as get_bench
from inforeg.lab.bench.base import BenchResult, measure, write
from inforeg.lab.datasets import gaussian_blobs, load_digits_split, symmetric_label_noise


def test_digits_split_is_fixed_stratified_and_standardised():
    a, b = load_digits_split(), load_digits_split()
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (1257, 64) and a.x_test.shape == (540, 64) and a.num_classes == 10
    counts = torch.bincount(a.y_test, minlength=10)
    assert counts.min() >= 52 and counts.max() <= 56  # stratified
    assert a.x_train.mean(0).abs().max() < 1e-4
    assert a.x_test.abs().max() < 100  # constant training pixels are not blown up
    assert a.sizes == {"train": 1257, "validation": 0, "test": 540}


def test_digits_three_way_split_keeps_the_test_split():
    plain, three = load_digits_split(), load_digits_split(val_size=0.2)
    assert three.sizes["test"] == 540 and three.sizes["validation"] == 360
    assert three.sizes["train"] + three.sizes["validation"] == 1257
    # the same test images (standardised with different training statistics)
    assert torch.equal(plain.y_test, three.y_test)
    counts = torch.bincount(three.y_val, minlength=10)
    assert counts.min() >= 34 and counts.max() <= 38  # stratified (360 / 10 per class)
    assert three.x_train.mean(0).abs().max() < 1e-4
    with pytest.raises(ValueError, match="test_size \\+ val_size"):
        load_digits_split(test_size=0.5, val_size=0.5)


def test_label_noise_rate_and_never_same_class():
    y = torch.arange(10).repeat(500)
    noisy = symmetric_label_noise(y, 0.2, 10, seed=0)
    flipped = noisy != y
    assert 0.18 < flipped.float().mean() < 0.22
    assert torch.equal(symmetric_label_noise(y, 0.2, 10, seed=0), noisy)
    assert torch.equal(symmetric_label_noise(y, 0.0, 10), y)
    with pytest.raises(ValueError, match="rate"):
        symmetric_label_noise(y, 1.2, 10)


def test_blobs():
    x, y = gaussian_blobs(300, num_classes=3, dim=5, seed=1)
    assert x.shape == (300, 5) and set(y.tolist()) == {0, 1, 2}
    with pytest.raises(ValueError, match="n"):
        gaussian_blobs(0)


def test_measure_and_write(tmp_path):
    # 128 MB: above glibc's largest dynamic mmap threshold (32 MB), so the temporary is always
    # freshly mapped and shows in peak RSS whatever earlier tests left in the heap.
    # One full CI run measured 0 growth here (2026-12-07); the test alone never did. A likely
    # cause, not confirmed: peak RSS also counts file-backed pages, which the kernel may reclaim
    # during the call on a shared machine. Up to three tries; a measure that never sees the
    # 128 MB still fails.
    mems = []
    for _ in range(3):
        secs, mem, out = measure(lambda: torch.ones(16_000_000, dtype=torch.float64).sum(), 2)
        assert secs > 0 and out == 16_000_000
        mems.append(mem)
        if mem >= 64 * 2**20:
            break
    assert max(mems) >= 64 * 2**20, mems
    bench = get_bench("pairwise")
    path = write(bench, BenchResult([{"n": 1, "ratio": 0.5}], "note"), tmp_path)
    text = path.read_text()
    assert (
        "| n | ratio |" in text and "| 1 | 0.5 |" in text and (tmp_path / "pairwise.json").is_file()
    )


def test_compare_row_has_one_ratio_direction_and_write_gives_one_table_per_comparison(tmp_path):
    from inforeg.lab.bench.base import compare_row

    # inforeg 2 s and 10 MB, the peer 6 s and 40 MB: 3x faster, 4x less memory
    row = compare_row("A vs peer", "n=1", (2.0, 10 * 2**20, 1.0), (6.0, 40 * 2**20, 1.0), "peer")
    assert row["speed-up"] == 3.0 and row["memory ratio"] == 4.0
    assert list(row)[:3] == ["table", "case", "peer s"]
    alone = compare_row("B, no peer", "n=2", (1.0, 0, None), None, "", value=0.5)
    assert "speed-up" not in alone and "memory ratio" not in alone and alone["value"] == 0.5
    # a zero memory growth (below resolution) gives no memory ratio, not a division by zero
    assert "memory ratio" not in compare_row("A vs peer", "n=3", (1.0, 0, 0), (1.0, 5, 0), "peer")
    path = write(get_bench("pairwise"), BenchResult([row, alone], "note"), tmp_path)
    text = path.read_text()
    assert "## A vs peer" in text and "## B, no peer" in text
    assert "| case | peer s | inforeg s | speed-up | peer MB | inforeg MB | memory ratio |" in text
    assert "| case | value | inforeg s | inforeg MB |" in text
