"""Von Neumann entropy of the covariance spectrum."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.core.checks import checks
from inforeg.dependence import VonNeumannEntropy, von_neumann_entropy
from tests._helpers import gradcheck64, module_matches_function


def test_isotropic_and_collapsed():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5000, 8, generator=g, dtype=torch.float64)
    assert float(von_neumann_entropy(z)) == pytest.approx(math.log(8), abs=2e-3)
    rank1 = torch.randn(500, 1, generator=g, dtype=torch.float64) @ torch.randn(
        1, 8, generator=g, dtype=torch.float64
    )
    assert float(von_neumann_entropy(rank1)) < 1e-5


def test_reference_and_invariances():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(40, 5, generator=g, dtype=torch.float64) @ torch.randn(
        5, 5, generator=g, dtype=torch.float64
    )
    zc = z - z.mean(0)
    cov = zc.T @ zc / 39 + 1e-8 * torch.eye(5, dtype=torch.float64)
    lam = torch.linalg.eigvalsh(cov / cov.trace())
    want = -(lam * lam.log()).sum()
    torch.testing.assert_close(von_neumann_entropy(z), want)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    torch.testing.assert_close(von_neumann_entropy(3.0 * z @ q + 2.0), von_neumann_entropy(z))
    torch.testing.assert_close(von_neumann_entropy(z.reshape(8, 5, 5)), von_neumann_entropy(z))
    assert 0.0 <= float(von_neumann_entropy(z)) <= math.log(5)


def test_uncentred_unit_trace():
    g = torch.Generator().manual_seed(2)
    z = torch.nn.functional.normalize(torch.randn(50, 4, generator=g, dtype=torch.float64), dim=1)
    auto = z.T @ z / 49
    lam = torch.linalg.eigvalsh(auto + 1e-8 * torch.eye(4, dtype=torch.float64)).clamp_min(1e-8)
    got = von_neumann_entropy(z, normalize=False, center=False)
    torch.testing.assert_close(got, -(lam * lam.log()).sum())


def test_gradcheck_and_module():
    g = torch.Generator().manual_seed(3)
    z = torch.randn(10, 3, generator=g, dtype=torch.float64, requires_grad=True)
    gradcheck64(von_neumann_entropy, z)
    for sign, factor in (("maximize", -0.5), ("minimize", 0.5)):
        module_matches_function(
            VonNeumannEntropy,
            lambda a, weight, entropy_sign, f=factor: f * von_neumann_entropy(a),
            z,
            settings={"weight": 0.5, "entropy_sign": sign},
        )
    up = VonNeumannEntropy(weight=0.5)
    # maximising spreads the spectrum: one gradient step on -S increases S
    z2 = z.detach().clone().requires_grad_()
    before = von_neumann_entropy(z2.detach())
    up(z2).backward()
    after = von_neumann_entropy(z2.detach() - 0.1 * z2.grad)
    assert float(after) > float(before)
    # the released code's sign (+beta S) does the opposite: a step on +S lowers S
    z3 = z.detach().clone().requires_grad_()
    VonNeumannEntropy(weight=0.5, entropy_sign="minimize")(z3).backward()
    assert float(von_neumann_entropy(z3.detach() - 0.1 * z3.grad)) < float(before)


def test_half_and_bad_input():
    out = von_neumann_entropy(torch.randn(64, 4).to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out)
    assert torch.isfinite(von_neumann_entropy(torch.zeros(10, 3)))
    with pytest.raises(ValueError, match="z"):
        von_neumann_entropy(torch.randn(5))
    with pytest.raises(ValueError, match="z"):
        von_neumann_entropy(torch.randn(1, 3))
    with pytest.raises(ValueError, match="entropy_sign"):
        VonNeumannEntropy(entropy_sign="up")  # type: ignore[arg-type]
    bad = torch.randn(6, 2)
    bad[0, 0] = float("nan")
    with checks("full"), pytest.raises(ValueError, match="z"):
        von_neumann_entropy(bad)


def test_eps_zero_with_a_zero_eigenvalue_is_finite():
    """eps = 0 is allowed; a rank-deficient covariance gave 0 * log 0 = NaN."""
    z = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
    value = von_neumann_entropy(z, eps=0.0)
    assert float(value) == pytest.approx(math.log(2.0), rel=1e-6)  # two equal eigenvalues
    g = torch.Generator().manual_seed(0)
    assert math.isfinite(float(von_neumann_entropy(torch.randn(3, 5, generator=g), eps=0.0)))
