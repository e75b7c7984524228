"""Pieces of the mi-screening, dse, sfda and quantnas experiments that their verdicts rely on."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.lab.experiments import dse_digits, mi_screening_synthetic, quantnas_toy, sfda_digits


def test_screening_scores_the_kept_set_and_ranks():
    scores = torch.zeros(20)
    scores[[0, 2, 3]] = torch.tensor([5.0, 4.0, 3.0])  # linear 0 and nonlinear 2, 3 on top
    scores[10] = 4.5  # a null feature between them
    out, kept = mi_screening_synthetic._score_kept(scores, 4, "t")
    assert kept == {0, 10, 2, 3}
    assert out["t recall of true variables"] == pytest.approx(3 / 5)
    assert out["t recall of nonlinear variables"] == pytest.approx(2 / 3)
    assert out["t recall of linear variables"] == pytest.approx(1 / 2)
    # ranks of 2, 3, 4: 3, 4 and 20 (feature 4 ties with 15 others at 0: the worse rank)
    assert out["t mean log2 rank of nonlinear variables"] == pytest.approx(
        (math.log2(3) + math.log2(4) + math.log2(20)) / 3
    )
    assert out["t worst rank of true variables"] == 20.0


def test_nonlinear_signals_have_no_correlation_but_mi():
    x, y = mi_screening_synthetic._problem(0, 1000, 8)
    corr = mi_screening_synthetic._pearson(x, y)
    assert float(corr[2:5].max()) < 0.1 < float(corr[:2].min())


def test_knn_probe_accuracy():
    g = torch.Generator().manual_seed(0)
    centres = 10.0 * torch.eye(10, dtype=torch.float64)
    y = torch.arange(10).repeat(6)
    z = centres[y] + 0.1 * torch.randn(60, 10, generator=g, dtype=torch.float64)
    assert dse_digits._knn_accuracy(z[:40], y[:40], z[40:], y[40:]) == 1.0
    assert dse_digits._knn_accuracy(z[:40], y[:40], z[40:], (y[40:] + 1) % 10) == 0.0


def test_sfda_target_is_imbalanced_and_priors():
    pytest.importorskip("sklearn")
    d = sfda_digits.load_domains(0)
    yt = torch.cat([d["yt_adapt"], d["yt_val"], d["yt_test"]])
    counts = torch.bincount(yt, minlength=10).float()
    assert float(counts.max() / counts.min()) > 15.0
    priors = sfda_digits._priors(yt, 0)
    true, mis = priors[sfda_digits.TRUE_P], priors[sfda_digits.MIS_P]
    assert torch.allclose(true, counts / counts.sum())
    for p in priors.values():
        assert float(p.sum()) == pytest.approx(1.0)
    # before renormalisation each class is scaled by exactly 1 +- 0.3
    ratio = mis / true
    ratio = ratio / ratio.min()
    assert bool(((ratio - 1.0).abs() < 1e-5).logical_or((ratio - 1.3 / 0.7).abs() < 1e-5).all())


def test_quantnas_derived_net_runs_its_chosen_bits():
    torch.manual_seed(0)
    net = quantnas_toy.ToySupernet()
    x = torch.randn(8, 1, quantnas_toy.LENGTH)
    outputs = {}
    for b_index, bits in enumerate(quantnas_toy.BITS):
        with torch.no_grad():
            net.alpha.zero_()
            net.alpha[:, 1 * len(quantnas_toy.BITS) + b_index] = 5.0  # kernel 3 at `bits`
        assert net.choice() == [(1, bits)] * quantnas_toy.EDGES
        expected = quantnas_toy.EDGES * quantnas_toy.CHANNELS**2 * 3 * quantnas_toy.LENGTH * bits**2
        assert net.derived_bitops() == pytest.approx(expected)
        with torch.no_grad():
            outputs[bits] = net(x, derived=True)
    # full-precision reference of the same discrete network
    with torch.no_grad():
        h = net.inp(x)
        for e in range(quantnas_toy.EDGES):
            h = torch.relu(net.convs[e * len(quantnas_toy.KERNELS) + 1](h)) + h
        ref = net.out(h)
    err8 = float((outputs[8] - ref).abs().max())
    err4 = float((outputs[4] - ref).abs().max())
    assert 0.0 < err8 < err4
