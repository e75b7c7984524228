"""MambaRec modality alignment loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from inforeg.dependence import ModalityAlignmentLoss, infonce, mmd, modality_alignment_mmd
from tests._helpers import gradcheck64


def test_values_and_invariance():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 16, generator=g, dtype=torch.float64)
    y = x + 1.0
    assert float(modality_alignment_mmd(x, x)) == pytest.approx(0.0, abs=1e-12)
    val = modality_alignment_mmd(x, y)
    assert float(val) > 0
    want = mmd(F.normalize(x, dim=1), F.normalize(y, dim=1), "gaussian", 1.0, "biased")
    torch.testing.assert_close(val, want)
    scale = torch.rand(64, 1, generator=g, dtype=torch.float64) + 0.5
    torch.testing.assert_close(modality_alignment_mmd(x * scale, y), val)
    # brute force on the normalised features
    xn, yn = F.normalize(x, dim=1), F.normalize(y, dim=1)

    def k(a, b):  # type: ignore[no-untyped-def]
        return torch.exp(-(torch.cdist(a, b) ** 2) / 2).mean()

    assert float(val) == pytest.approx(float(k(xn, xn) + k(yn, yn) - 2 * k(xn, yn)), abs=1e-10)
    gradcheck64(lambda a, b: modality_alignment_mmd(a, b, 1.5), x[:5], y[:4])


def test_module():
    g = torch.Generator().manual_seed(1)
    img, txt = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    side, content = torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)
    loss = ModalityAlignmentLoss(mmd_weight=0.2)
    want = 0.2 * modality_alignment_mmd(img, txt) + 0.01 * infonce(side, content, 0.2)
    torch.testing.assert_close(loss(img, txt, ((side, content),)), want)
    nce_only = ModalityAlignmentLoss(mmd_weight=0.0, contrastive_weight=0.03)
    want = 0.03 * infonce(side, content, 0.2)
    torch.testing.assert_close(nce_only(img, txt, ((side, content),)), want)
    assert float(nce_only(img, txt)) == 0.0
    same = torch.ones(8, 4)
    assert float(infonce(same, same, 0.2)) == pytest.approx(math.log(8), rel=1e-6)
    with pytest.raises(ValueError, match="bandwidth"):
        ModalityAlignmentLoss(bandwidth=0.0)
    with pytest.raises(ValueError, match="x"):
        modality_alignment_mmd(torch.randn(4), torch.randn(4, 2))
