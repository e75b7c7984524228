"""The one plug-in discrete entropy of estimators/ (used by InfoMEC and adaptive binning)."""

from __future__ import annotations

import math

import torch

from inforeg.estimators._common import plugin_entropy


def test_plugin_entropy_closed_forms():
    assert float(plugin_entropy(torch.tensor([0, 0, 1, 1]))) == math.log(2.0)
    assert float(plugin_entropy(torch.tensor([7, 7, 7]))) == 0.0
    # frequencies (1/2, 1/4, 1/4), symbols in any order and of a float dtype
    h = plugin_entropy(torch.tensor([2.5, -1.0, 2.5, 3.0]))
    assert abs(float(h) - 1.5 * math.log(2.0)) < 1e-15 and h.dtype == torch.float64
