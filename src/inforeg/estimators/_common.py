"""Helpers shared by the estimator modules (not public API)."""

from __future__ import annotations

import torch
from torch import Tensor

from inforeg.core.checks import check_positive

__all__ = ["check_log_base", "plugin_entropy"]


def check_log_base(base: object) -> float:
    """A logarithm base: positive and not 1 (base 1 would divide by log 1 = 0)."""
    b = check_positive(base, "base")
    if b == 1.0:
        raise ValueError("base: expected a logarithm base != 1, got 1")
    return b


def plugin_entropy(codes: Tensor) -> Tensor:
    r"""Plug-in (maximum-likelihood) entropy :math:`-\sum_s \hat p_s \log \hat p_s` in nats.

    ``codes``: a 1-D tensor of symbols (any dtype ``torch.unique`` accepts); :math:`\hat p_s` is
    the frequency of symbol ``s``. Every observed frequency is positive, so no ``0 log 0`` arises.
    Returns a 0-d float64 tensor.
    """
    _, counts = torch.unique(codes, return_counts=True)
    p = counts.double() / codes.numel()
    return -(p * p.log()).sum()
