"""Comp-sum losses: closed forms from the spec, the integral identity, gradients, bad input."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.core.checks import checks
from inforeg.losses import (
    AdversarialCompSumLoss,
    CompSumLoss,
    adversarial_comp_sum_loss,
    comp_sum_loss,
    generalized_cross_entropy,
    margin_vector_distance,
)
from tests._helpers import gradcheck64, module_matches_function

H = torch.tensor([[1.0, 0.0, -1.0]], dtype=torch.float64)
Y = torch.tensor([0])


@pytest.mark.parametrize(
    "tau,expected", [(0.0, 0.5032), (0.5, 0.4521), (1.0, 0.4076), (1.5, 0.3688), (2.0, 0.3348)]
)
def test_spec_values(tau, expected):
    assert float(comp_sum_loss(H, Y, tau=tau)) == pytest.approx(expected, abs=1e-4)


def test_named_kinds_match_closed_forms():
    torch.manual_seed(0)
    z = torch.randn(6, 5, dtype=torch.float64)
    y = torch.randint(0, 5, (6,))
    p_y = torch.softmax(z, 1)[torch.arange(6), y]
    u = torch.tensor(
        [sum(math.exp(z[i, j] - z[i, y[i]]) for j in range(5) if j != y[i]) for i in range(6)],
        dtype=torch.float64,
    )
    none = dict(reduction="none")
    assert torch.allclose(comp_sum_loss(z, y, kind="sum_exp", **none), u.double())
    assert torch.allclose(comp_sum_loss(z, y, kind="ce", **none), -p_y.log())
    assert torch.allclose(comp_sum_loss(z, y, kind="mae", **none), 1 - p_y)
    assert torch.allclose(comp_sum_loss(z, y, kind="gce", q=0.7, **none), (1 - p_y**0.7) / 0.7)
    assert torch.allclose(
        generalized_cross_entropy(z, y, q=0.3, reduction="none"), (1 - p_y**0.3) / 0.3
    )
    assert torch.allclose(comp_sum_loss(z, y, kind="ce"), torch.nn.functional.cross_entropy(z, y))


@pytest.mark.parametrize("tau", [0.0, 0.3, 1.0, 1.7, 2.0, 3.5])
def test_integral_identity(tau):
    integrate = pytest.importorskip("scipy.integrate")
    z = torch.tensor([[0.3, -1.2, 0.8, 0.1]], dtype=torch.float64)
    y = torch.tensor([1])
    u = float(1 / torch.softmax(z, 1)[0, 1] - 1)
    ref, _ = integrate.quad(lambda t: (1 + t) ** (-tau), 0, u)
    assert float(comp_sum_loss(z, y, tau=tau)) == pytest.approx(ref, rel=1e-9)


def test_decreasing_in_tau_and_continuous_at_one():
    z = torch.tensor([[0.2, 1.0, -0.5]], dtype=torch.float64)
    y = torch.tensor([0])
    vals = [
        float(comp_sum_loss(z, y, tau=t)) for t in (0.0, 0.5, 0.999999, 1.0, 1.000001, 1.5, 2.0)
    ]
    assert all(a >= b for a, b in zip(vals, vals[1:]))
    assert vals[2] == pytest.approx(vals[3], abs=1e-5) and vals[4] == pytest.approx(
        vals[3], abs=1e-5
    )


def test_class_axis_dim():
    torch.manual_seed(1)
    z = torch.randn(3, 4, 5, dtype=torch.float64)  # (B, K, T)
    y = torch.randint(0, 4, (3, 5))
    a = comp_sum_loss(z, y, kind="gce", dim=1, reduction="none")
    b = comp_sum_loss(z.transpose(1, 2), y, kind="gce", dim=2, reduction="none")
    assert a.shape == (3, 5) and torch.allclose(a, b)


@pytest.mark.parametrize("tau", [0.0, 1.0, 1.5, 2.0])
def test_gradcheck(tau):
    torch.manual_seed(2)
    z = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 2, 1, 1])
    gradcheck64(lambda t: comp_sum_loss(t, y, tau=tau), z)


@pytest.mark.parametrize("kind", ["ce", "gce", "mae"])
def test_extreme_logits_and_bfloat16(kind):
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], requires_grad=True)
    y = torch.tensor([1, 1])
    loss = comp_sum_loss(z, y, kind=kind)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    zb = torch.randn(4, 3).bfloat16()
    out = comp_sum_loss(zb, torch.tensor([0, 1, 2, 0]), kind=kind)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out)


def test_module_matches_function():
    z = torch.randn(5, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (5,))
    module_matches_function(CompSumLoss, comp_sum_loss, z, y, settings={"kind": "gce", "q": 0.5})
    # GCE with q = 0.5 is the comp-sum loss with tau = 1 + q
    torch.testing.assert_close(comp_sum_loss(z, y, "gce", q=0.5), comp_sum_loss(z, y, tau=1.5))


def test_bad_input():
    z = torch.randn(4, 3)
    with pytest.raises(ValueError, match="targets"):
        comp_sum_loss(z, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="kind"):
        comp_sum_loss(z, torch.tensor([0, 1, 2, 0]), kind="hinge")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="q"):
        generalized_cross_entropy(z, torch.tensor([0, 1, 2, 0]), q=0.0)
    with pytest.raises(ValueError, match="tau"):
        comp_sum_loss(z, torch.tensor([0, 1, 2, 0]), tau=-1.0)
    with pytest.raises(ValueError, match="logits"):
        comp_sum_loss(torch.randn(4), torch.tensor([0, 1, 2, 0]))
    with pytest.raises(TypeError, match="logits"):
        comp_sum_loss(torch.ones(4, 3, dtype=torch.long), torch.tensor([0, 1, 2, 0]))
    with checks("full"):
        with pytest.raises(ValueError, match="logits"):
            comp_sum_loss(torch.tensor([[float("nan"), 0.0]]), torch.tensor([0]))
        with pytest.raises(ValueError, match="targets"):
            comp_sum_loss(z, torch.tensor([0, 1, 3, 0]))


def test_margin_vector_distance():
    torch.manual_seed(3)
    a = torch.randn(5, 4, dtype=torch.float64)
    b = torch.randn(5, 4, dtype=torch.float64)
    y = torch.randint(0, 4, (5,))
    d = a - b
    ref = torch.stack([torch.linalg.norm(d[i, y[i]] - d[i]) for i in range(5)])
    assert torch.allclose(margin_vector_distance(a, b, y), ref)
    assert torch.allclose(margin_vector_distance(a + 3.0, b - 1.0, y), ref)
    assert torch.equal(margin_vector_distance(a, a, y), torch.zeros(5, dtype=torch.float64))
    aa = a.clone().requires_grad_(True)
    margin_vector_distance(aa, a, y).sum().backward()
    assert torch.equal(aa.grad, torch.zeros_like(a))  # safe sqrt at 0
    gradcheck64(lambda t: margin_vector_distance(t, b, y), a)
    with pytest.raises(ValueError, match="logits_clean"):
        margin_vector_distance(a, b[:, :3], y)


def test_adversarial_comp_sum():
    torch.manual_seed(4)
    model = torch.nn.Linear(6, 3).double()
    x = torch.randn(8, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (8,))
    plain = comp_sum_loss(model(x), y, kind="ce")
    assert torch.allclose(adversarial_comp_sum_loss(model, x, y, nu=0.0), plain)
    assert torch.allclose(
        adversarial_comp_sum_loss(model, x, y, nu=1.0, epsilon=0.0, init_std=0.0), plain
    )
    loss = adversarial_comp_sum_loss(model, x, y, nu=2.0, epsilon=0.1, steps=5)
    assert float(loss) > float(plain)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    # PGD increases the inner objective relative to the random start
    torch.manual_seed(5)
    r0 = adversarial_comp_sum_loss(model, x, y, nu=1.0, steps=0) - plain
    torch.manual_seed(5)
    r5 = adversarial_comp_sum_loss(model, x, y, nu=1.0, steps=5) - plain
    assert float(r5) > float(r0)
    # linear model: the L-inf max of ||W-difference|| is reached; bounded by eps*||.||_1 norms
    mod = AdversarialCompSumLoss(nu=1.0, epsilon=0.05, steps=3)
    assert torch.isfinite(mod(model, x, y))
    with pytest.raises(ValueError, match="rho"):
        adversarial_comp_sum_loss(model, x, y, rho=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        adversarial_comp_sum_loss(model, x, y, epsilon=-0.1)


def test_property_monotone_in_tau_and_bounded():
    hypothesis = pytest.importorskip("hypothesis")
    st = pytest.importorskip("hypothesis.strategies")

    @hypothesis.settings(max_examples=25, deadline=None)
    @hypothesis.given(
        st.lists(st.floats(-20, 20), min_size=2, max_size=6),
        st.floats(0.0, 3.0),
        st.floats(0.0, 3.0),
    )
    def check(row, t1, t2):
        z = torch.tensor([row], dtype=torch.float64)
        y = torch.tensor([0])
        lo, hi = sorted((t1, t2))
        a, b = float(comp_sum_loss(z, y, tau=lo)), float(comp_sum_loss(z, y, tau=hi))
        assert a >= b - 1e-9 and b >= 0.0
        assert 0.0 <= float(comp_sum_loss(z, y, kind="mae")) <= 1.0

    check()


def test_adversarial_loss_names_the_model_output_and_targets():
    model = torch.nn.Linear(3, 3)
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"model\(x\): expected a 2-D"):
        adversarial_comp_sum_loss(model, x.unsqueeze(0), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="targets: expected 4 labels"):
        adversarial_comp_sum_loss(model, x, torch.zeros(3, dtype=torch.long))
    with checks("full"), pytest.raises(ValueError, match="targets: expected labels in"):
        adversarial_comp_sum_loss(model, x, torch.full((4,), 3))
