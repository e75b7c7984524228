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
    secs, mem, out = measure(lambda: torch.ones(16_000_000, dtype=torch.float64).sum(), repeat=2)
    assert secs > 0 and out == 16_000_000
    assert mem >= 64 * 2**20
    bench = get_bench("pairwise")
    path = write(bench, BenchResult([{"n": 1, "ratio": 0.5}], "note"), tmp_path)
    text = path.read_text()
    assert (
        "| n | ratio |" in text and "| 1 | 0.5 |" in text and (tmp_path / "pairwise.json").is_file()
    )
