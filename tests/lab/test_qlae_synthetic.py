"""qlae-synthetic: the sprite generator and the AE's decile codes."""

from __future__ import annotations

import math

import torch

from inforeg.lab.experiments.qlae_synthetic import N_VALUES, SIZES, _codes, sprites


def test_sprites_shapes_areas_and_positions():
    x, s = sprites(600, torch.Generator().manual_seed(0))
    assert x.shape == (600, 256) and s.shape == (600, 4)
    assert x.min() >= 0 and x.max() <= 1
    # every factor value occurs
    for i, k in enumerate((3, len(SIZES), 8, 8)):
        assert set(s[:, i].tolist()) == set(range(k))
    area = x.sum(1)
    # mean anti-aliased area per size (the +-0.1 px jitter averages out): a square's linear ramp
    # over its max-norm distance integrates to (2r)^2 + 1/3, a disc's to pi r^2 (+ O(1/r))
    for k, r in enumerate(SIZES):
        square = (s[:, 0] == 0) & (s[:, 1] == k)
        disc = (s[:, 0] == 1) & (s[:, 1] == k)
        assert abs(float(area[square].mean()) - (4 * r**2 + 1 / 3)) < 0.5
        assert abs(float(area[disc].mean()) - math.pi * r**2) < 0.5
    # centre of mass at 4 + 8/7 * position: +-0.3 px jitter plus pixel sampling of small shapes,
    # within half a factor step (4/7 px), so positions stay identifiable; x along columns
    img = x.view(600, 16, 16)
    u = torch.arange(16) + 0.5
    cx = (img.sum(1) * u).sum(1) / area
    cy = (img.sum(2) * u).sum(1) / area
    for c, pos in ((cx, s[:, 2]), (cy, s[:, 3])):
        err = (c - (4 + 8 / 7 * pos)).abs()
        assert err.max() < 0.45 and 0.1 < err.mean() < 0.2  # uniform +-0.3 jitter: mean 0.15


def test_sprites_jitter_makes_images_unique_and_generation_reproducible():
    x, _ = sprites(2000, torch.Generator().manual_seed(1))
    assert torch.unique(x, dim=0).shape[0] == 2000  # 960 factor combinations, no repeat
    x2, _ = sprites(2000, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2)


def test_ae_codes_are_deciles_of_the_fit_split_and_drop_inactive_latents():
    g = torch.Generator().manual_seed(2)
    z_fit = torch.randn(1000, 3, generator=g)
    z_fit[:, 2] *= 1e-3  # range below 1/20 of the largest: inactive
    z = torch.randn(500, 3, generator=g)
    z[:, 2] *= 1e-3  # (the rule reads the scored latents)
    codes, codes_fit, active = _codes("AE", z, z_fit)
    assert active.tolist() == [True, True, False]
    assert codes.shape == (500, 2) and codes_fit.shape == (1000, 2)
    counts = torch.bincount(codes_fit[:, 0], minlength=N_VALUES)
    assert counts.tolist() == [100] * N_VALUES  # equal-frequency bins on the fit split
    edges = torch.quantile(z_fit[:, 1], torch.linspace(0, 1, N_VALUES + 1)[1:-1])
    assert torch.equal(codes[:, 1], torch.bucketize(z[:, 1].contiguous(), edges))


def test_qlae_codes_keep_indices_of_latents_that_vary():
    idx = torch.tensor([[0, 3, 5], [1, 3, 5], [2, 3, 6]])
    codes, codes_fit, active = _codes("QLAE", idx, idx)
    assert active.tolist() == [True, False, True]
    assert torch.equal(codes, idx[:, [0, 2]]) and torch.equal(codes_fit, codes)


def test_collapsed_codes_score_zero_instead_of_failing():
    from inforeg.estimators import infomec

    idx = torch.full((50, 4), 3)
    codes, codes_fit, active = _codes("QLAE", idx, idx)
    assert active.all() and codes.shape == (50, 4)
    s = torch.randint(0, 3, (50, 2), generator=torch.Generator().manual_seed(0))
    res = infomec(codes, s, discrete_latents=True, infoe_fit=(codes_fit, s))
    assert (res.infom, res.infoe, res.infoc) == (0.0, 0.0, 0.0)
    z = torch.zeros(50, 4)
    assert _codes("AE", z, z)[2].all()
