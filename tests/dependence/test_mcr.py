"""MCR permutation game: JSD, gradient routing, limits."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from inforeg.core.checks import checks
from inforeg.dependence import MCRRegularizer, jensen_shannon_logits, permutation_jsd
from tests._helpers import gradcheck64


def test_jsd_reference_and_bounds():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(7, 4, generator=g, dtype=torch.float64)
    b = torch.randn(7, 4, generator=g, dtype=torch.float64)
    p, q = a.softmax(1), b.softmax(1)
    m = (p + q) / 2
    want = (0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1)).mean()
    torch.testing.assert_close(jensen_shannon_logits(a, b), want)
    torch.testing.assert_close(jensen_shannon_logits(b, a), want)
    far = jensen_shannon_logits(torch.tensor([[1e4, -1e4]]), torch.tensor([[-1e4, 1e4]]))
    assert float(far) == pytest.approx(math.log(2), abs=1e-6)
    assert float(jensen_shannon_logits(a, a)) == pytest.approx(0.0, abs=1e-12)
    gradcheck64(jensen_shannon_logits, a, b)


def heads(d: int = 3, c: int = 4):
    torch.manual_seed(0)
    return nn.Linear(d, c, bias=False).double(), nn.Linear(d, c, bias=False).double()


def test_zero_head_and_identity_perm():
    ha, hv = heads()
    nn.init.zeros_(hv.weight)
    za = torch.randn(10, 3, dtype=torch.float64)
    zv = torch.randn(10, 3, dtype=torch.float64)
    j = permutation_jsd(za, zv, ha, hv, num_samples=4)
    for key in ("v,v", "v,a", "v,both"):
        assert float(j[key]) == pytest.approx(0.0, abs=1e-12)
    assert float(j["a,a"]) > 0
    ident = torch.arange(10).unsqueeze(0)
    j0 = permutation_jsd(za, zv, *heads(), bias=torch.ones(4, dtype=torch.float64), perms=ident)
    assert all(abs(float(v)) < 1e-12 for v in j0.values())


def test_gradient_routing_and_games():
    ha, hv = heads()
    za = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    zv = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    perms = torch.stack([torch.randperm(8) for _ in range(3)])
    j = permutation_jsd(za, zv, ha, hv, perms=perms)
    ga, gv = torch.autograd.grad(j["a,a"], (za, zv), allow_unused=True)
    assert ga is not None and (gv is None or float(gv.abs().sum()) == 0.0)
    ga, gv = torch.autograd.grad(j["v,v"], (za, zv), allow_unused=True)
    assert (ga is None or float(ga.abs().sum()) == 0.0) and gv is not None
    greedy = MCRRegularizer(weight=0.5, game="greedy")(za, zv, ha, hv, perms=perms)
    want = 0.5 * (-j["a,a"] + j["a,v"] - j["v,v"] + j["v,a"])
    torch.testing.assert_close(greedy, want)
    ind = MCRRegularizer(weight=0.5, game="independent")(za, zv, ha, hv, perms=perms)
    torch.testing.assert_close(ind, 0.5 * (-j["a,a"] - j["v,v"]))
    col = MCRRegularizer(weight=0.5, game="collaborative")(za, zv, ha, hv, perms=perms)
    torch.testing.assert_close(col, 0.5 * (-j["a,both"] - j["v,both"]))
    # the value does not depend on the route (only the gradient does)
    torch.testing.assert_close(j["a,a"], j["a,v"])


def test_bad_input():
    ha, hv = heads()
    za = torch.randn(5, 3)
    with pytest.raises(ValueError, match="z_v"):
        permutation_jsd(za, torch.randn(4, 3), ha.float(), hv.float())
    with pytest.raises(ValueError, match="perms"):
        permutation_jsd(za, za, ha.float(), hv.float(), perms=torch.arange(4).unsqueeze(0))
    with pytest.raises(ValueError, match="game"):
        MCRRegularizer(game="nash")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_samples"):
        MCRRegularizer(num_samples=0)
    bad = za.clone()
    bad[0, 0] = float("nan")
    with checks("full"), pytest.raises(ValueError, match="z_a"):
        permutation_jsd(bad, za, ha.float(), hv.float())
