"""Scores for clustering and category discovery: cluster-to-class matching and NMI.

Shared by ``legogcd-digits`` and ``depict-digits``.
"""

from __future__ import annotations

import torch
from torch import Tensor


def hungarian_map(pred: Tensor, y: Tensor, k: int) -> Tensor:
    """The one-to-one cluster-to-class map (length ``k``) that maximises the matched count."""
    from scipy.optimize import linear_sum_assignment

    counts = torch.zeros(k, k)
    counts.index_put_((pred.long(), y.long()), torch.ones(pred.shape[0]), accumulate=True)
    rows, cols = linear_sum_assignment(-counts.numpy())
    mapping = torch.empty(k, dtype=torch.long)
    mapping[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return mapping


def clustering_accuracy(pred: Tensor, y: Tensor, k: int) -> float:
    """Accuracy after the optimal (Hungarian) cluster-to-class matching.

    >>> clustering_accuracy(torch.tensor([1, 1, 0, 2]), torch.tensor([0, 0, 1, 1]), 3)
    0.75
    """
    return float((hungarian_map(pred, y, k)[pred] == y).float().mean())


def gcd_accuracy(pred: Tensor, y: Tensor, known: Tensor, k: int) -> tuple[float, float, float]:
    """All/Old/New accuracy with one matching on all rows (the GCD "v2" convention).

    >>> gcd_accuracy(torch.tensor([1, 1, 0, 2]), torch.tensor([0, 0, 1, 1]),
    ...              torch.tensor([True, True, False, False]), 3)
    (0.75, 1.0, 0.5)
    """
    correct = (hungarian_map(pred, y, k)[pred] == y).float()
    return float(correct.mean()), float(correct[known].mean()), float(correct[~known].mean())


def nmi(pred: Tensor, y: Tensor) -> float:
    """Normalised mutual information (scikit-learn, arithmetic mean normalisation)."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(y.numpy(), pred.numpy()))
