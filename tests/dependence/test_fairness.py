"""JdCov, CCdCov, the fairness module and the generalised JSD."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from inforeg.core.checks import checks
from inforeg.dependence import (
    DistanceCovarianceFairness,
    concatenated_distance_covariance,
    distance_covariance_sqr,
    encode_attributes,
    generalized_jsd,
    joint_distance_covariance,
    smallest_lambda_reaching,
)
from tests._helpers import gradcheck64


def u_center_np(z):
    z = z.reshape(len(z), -1)
    n = len(z)
    d = np.sqrt(((z[:, None] - z[None]) ** 2).sum(-1))
    u = d - d.sum(0, keepdims=True) / (n - 2) - d.sum(1, keepdims=True) / (n - 2)
    u += d.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(u, 0.0)
    return u


def jdcov_np(xs, c):
    n = len(xs[0])
    prod = np.ones((n, n))
    for x in xs:
        prod *= u_center_np(x) + c
    return prod.sum() / (n * (n - 3)) - c ** len(xs) * n / (n - 3)


def test_two_variables_equal_dcov():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 2, generator=g, dtype=torch.float64)
    y = x[:, :1] ** 2 + torch.randn(20, 1, generator=g, dtype=torch.float64)
    torch.testing.assert_close(
        joint_distance_covariance([x, y]), distance_covariance_sqr(x, y, unbiased=True)
    )
    x6 = torch.arange(1.0, 7.0, dtype=torch.float64)
    assert float(joint_distance_covariance([x6, x6**2])) == pytest.approx(10.888888889, abs=1e-8)


@pytest.mark.parametrize("c", [1.0, 0.5])
def test_three_variables_brute_force(c):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((15, 2))
    b = rng.standard_normal(15) + a[:, 0]
    d = np.sign(a[:, 1] * b)
    want = jdcov_np([a, b, d], c)
    t = [torch.from_numpy(v) for v in (a, b, d)]
    assert float(joint_distance_covariance(t, c)) == pytest.approx(want, abs=1e-12)
    assert float(joint_distance_covariance(t, c, chunk_size=4)) == pytest.approx(want, abs=1e-12)


def test_gradcheck_jdcov():
    g = torch.Generator().manual_seed(2)
    xs = [
        torch.randn(7, k, generator=g, dtype=torch.float64, requires_grad=True) for k in (1, 2, 1)
    ]
    gradcheck64(lambda a, b, d: joint_distance_covariance([a, b, d], chunk_size=3), *xs)


def test_xor_intersection():
    g = torch.Generator().manual_seed(3)
    n = 400
    z1 = torch.randint(0, 2, (n,), generator=g)
    z2 = torch.randint(0, 2, (n,), generator=g)
    pred = (z1 ^ z2).double() + 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
    marg = sum(
        float(distance_covariance_sqr(pred, encode_attributes([z]).double(), unbiased=True))
        for z in (z1, z2)
    )
    cc = float(concatenated_distance_covariance(pred, [z1, z2]))
    assert abs(marg) < 0.01
    assert cc > 0.05 and cc > 10 * abs(marg)
    fair = DistanceCovarianceFairness("dcov")
    assert abs(float(fair(pred, [z1, z2]))) < 0.01


def test_encode_attributes():
    z_cat = torch.tensor([0, 2, 1, 2])
    z_cont = torch.tensor([1.0, 2.0, 3.0, 4.0])
    enc = encode_attributes([z_cat, z_cont])
    assert enc.shape == (4, 4)
    torch.testing.assert_close(enc[:, :3], torch.eye(3)[z_cat])
    assert float(enc[:, 3].mean()) == pytest.approx(0.0, abs=1e-6)
    assert float(enc[:, 3].std()) == pytest.approx(1.0, abs=1e-6)
    assert encode_attributes([z_cat], num_classes=[5]).shape == (4, 5)


def test_module_kinds_and_grad():
    g = torch.Generator().manual_seed(4)
    n = 32
    pred = torch.randn(n, generator=g, dtype=torch.float64, requires_grad=True)
    z1 = torch.randn(n, generator=g, dtype=torch.float64)
    z2 = torch.randint(0, 3, (n,), generator=g)
    for kind in ("ccdcov", "jdcov", "dcov"):
        loss = DistanceCovarianceFairness(kind, weight=2.0)(pred, [z1, z2])
        (grad,) = torch.autograd.grad(loss, pred)
        assert torch.isfinite(grad).all()
    clamped = DistanceCovarianceFairness("ccdcov", clamp_negative=True)(pred.detach(), [z1, z2])
    assert float(clamped) >= 0.0


def test_generalized_jsd():
    g = torch.Generator().manual_seed(5)
    p = torch.randn(2000, generator=g, dtype=torch.float64)
    same = torch.arange(2000) % 2
    assert float(generalized_jsd(p, same)) < 0.01
    sep = torch.cat(
        [torch.randn(500, generator=g) * 0.1, 10 + torch.randn(500, generator=g) * 0.1]
    ).double()
    groups = torch.cat([torch.zeros(500), torch.ones(500)]).long()
    assert float(generalized_jsd(sep, groups)) == pytest.approx(1.0, abs=1e-3)
    four = torch.cat([k * 10 + torch.randn(100, generator=g) * 0.1 for k in range(4)]).double()
    gid = torch.arange(400) // 100
    v = float(generalized_jsd(four, gid, weights="equal"))
    assert v <= math.log2(4) + 1e-9 and v == pytest.approx(2.0, abs=1e-3)


def test_smallest_lambda():
    assert smallest_lambda_reaching([0.0, 1.0, 10.0], [0.3, 0.05, 0.01], 0.1) == 1.0
    assert smallest_lambda_reaching([0.0], [0.3], 0.1) is None


def test_bad_input():
    x = torch.randn(10)
    with pytest.raises(ValueError, match="xs"):
        joint_distance_covariance([x])
    with pytest.raises(ValueError, match="xs\\[1\\]"):
        joint_distance_covariance([x, torch.randn(9)])
    with pytest.raises(ValueError, match="4 samples"):
        joint_distance_covariance([x[:3], x[:3]])
    with pytest.raises(ValueError, match="c"):
        joint_distance_covariance([x, x], c=-1.0)
    with pytest.raises(ValueError, match="kind"):
        DistanceCovarianceFairness("mi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="groups"):
        generalized_jsd(x, torch.zeros(9, dtype=torch.long))
    with pytest.raises(ValueError, match="bandwidth"):
        generalized_jsd(x, torch.zeros(10, dtype=torch.long), bandwidth=0.0)
    bad = x.clone()
    bad[0] = float("nan")
    with checks("full"), pytest.raises(ValueError, match="xs\\[0\\]"):
        joint_distance_covariance([bad, x])


def test_encode_attributes_rejects_negative_codes():
    codes = torch.tensor([0, 1, -1, 2])
    with pytest.raises(ValueError, match=r"attributes\[1\]: expected categorical codes >= 0"):
        encode_attributes([torch.randn(4), codes])
    with checks("full"), pytest.raises(ValueError, match=r"attributes\[0\]"):
        encode_attributes([codes], num_classes=[3])


def test_joint_distance_covariance_float32_as_accurate_as_its_inputs() -> None:
    """The n^2 products of U-centred entries cancel to a total ~1e4 times smaller than their
    magnitudes: in float32 the statistic was off by 1e-3 of itself at n = 1500 (1e-2 at 6000).
    Distances stay in the inputs' precision; centring and products are float64."""
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(1500, 2, generator=g) for _ in range(3)]
    xd = [x.double().requires_grad_(True) for x in xs]
    ref = joint_distance_covariance(xd)
    (ref_grad,) = torch.autograd.grad(ref, xd[0])
    x0 = xs[0].clone().requires_grad_(True)
    got = joint_distance_covariance([x0, *xs[1:]])
    (grad,) = torch.autograd.grad(got, x0)
    assert got.dtype == torch.float32 and grad.dtype == torch.float32
    assert abs(float(got.detach()) / float(ref.detach()) - 1.0) < 1e-6
    assert float((grad.double() - ref_grad).norm() / ref_grad.norm()) < 1e-5
