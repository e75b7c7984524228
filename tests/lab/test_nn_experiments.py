"""The nn-family experiments' building blocks (splits, rotation, the tiny invertible network) and
a quick run of each, checked to produce every arm's metrics."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.core.threads import intra_op_threads

pytest.importorskip("sklearn")

from inforeg.lab.experiments import (  # noqa: E402
    compander_digits,
    crrelu_digits,
    dlv_rescaling_digits,
    waveblock_mutual_digits,
)
from inforeg.lab.experiments._digit_images import digit_images, stratified_split  # noqa: E402

EXPERIMENTS = [crrelu_digits, compander_digits, dlv_rescaling_digits, waveblock_mutual_digits]


def test_digit_images_and_stratified_split():
    x, y = digit_images()
    assert x.shape == (1797, 1, 8, 8) and x.min() == 0.0 and x.max() == 1.0
    sizes = {"a": 500, "b": 300, "c": 997}
    idx = stratified_split(y, sizes, seed=3)
    assert {k: v.numel() for k, v in idx.items()} == sizes
    assert torch.cat(list(idx.values())).unique().numel() == 1797  # disjoint, all used
    counts = torch.bincount(y[idx["a"]], minlength=10)
    assert counts.min() >= 48 and counts.max() <= 52  # stratified: ~50 per class
    again = stratified_split(y, sizes, seed=3)
    assert all(torch.equal(idx[k], again[k]) for k in sizes)
    assert not torch.equal(idx["a"], stratified_split(y, sizes, seed=4)["a"])
    with pytest.raises(ValueError, match="sizes"):
        stratified_split(y, {"a": 2000}, seed=0)


def test_rotation_matches_rot90_and_keeps_identity():
    x = torch.rand(3, 1, 8, 8)
    torch.testing.assert_close(waveblock_mutual_digits.rotate(x, 0.0), x)
    # +90 degrees in the sampling grid is a quarter turn of the image
    r = waveblock_mutual_digits.rotate(x, 90.0)
    quarter = [torch.rot90(x, k, dims=(2, 3)) for k in (1, 3)]
    assert any(torch.allclose(r, q, atol=1e-5) for q in quarter)


@pytest.mark.parametrize("extra", [0, 1])
def test_tiny_irn_is_invertible(extra):
    torch.manual_seed(0)
    net = dlv_rescaling_digits.TinyIRN(extra=extra).double()
    for p in net.parameters():  # leave the zero-initialised identity: random subnets
        torch.nn.init.normal_(p, std=0.3)
    hr = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    z_down = torch.randn(4, extra, 4, 4, dtype=torch.float64) if extra else None
    lr, z_up = net.down(hr, z_down)
    assert lr.shape == (4, 1, 4, 4) and z_up.shape == (4, 3 + extra, 4, 4)
    hr_back, z_back = net.up(lr, z_up)
    torch.testing.assert_close(hr_back, hr)
    if extra:
        torch.testing.assert_close(z_back, z_down)
    # at initialisation every coupling is the identity: LR is exactly the 2x2 average
    fresh = dlv_rescaling_digits.TinyIRN().double()
    lr0, _ = fresh.down(hr, None)
    torch.testing.assert_close(lr0, torch.nn.functional.avg_pool2d(hr, 2))


def test_quantise_is_straight_through():
    v = torch.tensor([-0.2, 0.1234, 0.5, 1.3], requires_grad=True)
    q = dlv_rescaling_digits._quantise(v)
    torch.testing.assert_close(
        q.detach(), torch.tensor([0.0, 31 / 255, 0.5, 1.0]), atol=2e-3, rtol=0
    )
    assert torch.all(q.detach() * 255 == torch.round(q.detach() * 255))
    (g,) = torch.autograd.grad(q.sum(), v)
    assert torch.equal(g, torch.ones(4))


@pytest.mark.slow
@pytest.mark.parametrize("module", EXPERIMENTS, ids=lambda m: m.EXPERIMENT.name)
def test_quick_seed_gives_every_arm_finite_metrics(module):
    exp = module.EXPERIMENT
    with intra_op_threads(exp.threads):
        result = exp.run_seed(0, True)
    assert set(result.metrics) == set(exp.tuning)
    for claim in exp.claims:
        for arm in (claim.method, claim.baseline):
            assert math.isfinite(result.metrics[arm][claim.metric])
    for check in exp.regime_checks:
        assert math.isfinite(result.regime[check.measure])
    for arm, point in result.tuning.items():
        for name, values in exp.tuning[arm].items():
            assert point[name] in values
