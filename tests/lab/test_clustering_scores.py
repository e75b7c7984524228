"""Cluster-to-class matching used by the clustering / category-discovery experiments."""

from __future__ import annotations

import itertools

import pytest
import torch

from inforeg.lab.experiments._clustering import clustering_accuracy, gcd_accuracy, hungarian_map


def _brute_best(pred: torch.Tensor, y: torch.Tensor, k: int) -> tuple[float, tuple[int, ...]]:
    best, arg = -1.0, ()
    for perm in itertools.permutations(range(k)):
        acc = float((torch.tensor(perm)[pred] == y).float().mean())
        if acc > best:
            best, arg = acc, perm
    return best, arg


@pytest.mark.parametrize("seed", range(5))
def test_hungarian_matches_brute_force_over_permutations(seed):
    g = torch.Generator().manual_seed(seed)
    k = 5
    y = torch.randint(0, k, (60,), generator=g)
    pred = torch.where(
        torch.rand(60, generator=g) < 0.6, (y + 2) % k, torch.randint(0, k, (60,), generator=g)
    )
    best, _ = _brute_best(pred, y, k)
    assert clustering_accuracy(pred, y, k) == pytest.approx(best)
    mapping = hungarian_map(pred, y, k)
    assert sorted(mapping.tolist()) == list(range(k))  # one-to-one


def test_gcd_accuracy_uses_one_matching_for_old_and_new():
    # clusters 0/1 hold classes 1/0 (old); cluster 2 holds class 2 and half of class 3 (new)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    pred = torch.tensor([1, 1, 0, 0, 2, 2, 2, 3])
    known = y < 2
    all_, old, new = gcd_accuracy(pred, y, known, 4)
    assert (all_, old, new) == (pytest.approx(7 / 8), 1.0, pytest.approx(3 / 4))
