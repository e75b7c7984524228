"""Evaluation metrics used by the experiments (classification and calibration)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Top-1 accuracy."""
    return float((logits.argmax(dim=1) == y).float().mean())


def nll(logits: Tensor, y: Tensor) -> float:
    """Mean negative log-likelihood (nats)."""
    return float(F.cross_entropy(logits.float(), y))


def expected_calibration_error(logits: Tensor, y: Tensor, n_bins: int = 15) -> float:
    """ECE with ``n_bins`` equal-width confidence bins (Guo et al. 2017): sum_b |B|/n |acc - conf|."""
    probs = torch.softmax(logits.float(), dim=1)
    conf, pred = probs.max(dim=1)
    correct = (pred == y).float()
    edges = torch.linspace(0, 1, n_bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.float().mean() * (correct[in_bin].mean() - conf[in_bin].mean()).abs()
    return float(ece)
