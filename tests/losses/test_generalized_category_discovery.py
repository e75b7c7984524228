"""SimGCD / LegoGCD losses: the spec's numeric values, brute-force references, gradients."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from inforeg.core.checks import checks
from inforeg.losses import (
    LegoGCDLoss,
    SimGCDLoss,
    cross_view_self_distillation,
    dual_view_kl,
    local_entropy_regularizer,
    mean_entropy_regularizer,
    simgcd_teacher_temperature,
)
from tests._helpers import gradcheck64

Z1 = torch.tensor([[0.9, 0.2, -0.1, 0.0]], dtype=torch.float64)
Z2 = torch.tensor([[0.1, 0.8, 0.3, -0.2]], dtype=torch.float64)


def test_spec_values():
    assert float(dual_view_kl(Z1, Z2)) == pytest.approx(6.9925, abs=1e-4)
    assert float(mean_entropy_regularizer(torch.cat([Z1, Z2]))) == pytest.approx(0.6721, abs=1e-4)


def brute_kl(a, b, t):
    out = 0.0
    for i in range(a.shape[0]):
        pa = [math.exp(v / t) for v in a[i].tolist()]
        pb = [math.exp(v / t) for v in b[i].tolist()]
        sa, sb = sum(pa), sum(pb)
        out += sum(x / sa * math.log((x / sa) / (y / sb)) for x, y in zip(pa, pb))
    return out / a.shape[0]


def test_dual_view_kl_brute_force_and_properties():
    torch.manual_seed(0)
    a = torch.randn(5, 4, dtype=torch.float64)
    b = torch.randn(5, 4, dtype=torch.float64)
    assert float(dual_view_kl(a, b, temperature=0.5)) == pytest.approx(
        brute_kl(a, b, 0.5), rel=1e-10
    )
    assert float(dual_view_kl(a, a)) == pytest.approx(0.0, abs=1e-12)
    assert bool((dual_view_kl(a, b, reduction="none") >= 0).all())
    aa = a.clone().requires_grad_(True)
    bb = b.clone().requires_grad_(True)
    dual_view_kl(aa, bb, detach_target=True).backward()
    assert bb.grad is None and aa.grad is not None
    gradcheck64(lambda x, y: dual_view_kl(x, y, temperature=0.3), a, b)


def test_mean_entropy_limits():
    collapsed = torch.tensor([[10.0, 0, 0, 0], [9.0, 0, 0, 0]], dtype=torch.float64)
    assert float(mean_entropy_regularizer(collapsed, temperature=0.01)) == pytest.approx(
        math.log(4), abs=1e-9
    )
    balanced = torch.eye(4, dtype=torch.float64) * 5
    assert float(mean_entropy_regularizer(balanced)) == pytest.approx(0.0, abs=1e-9)
    z = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    gradcheck64(lambda t: mean_entropy_regularizer(t, 0.5), z)
    assert torch.allclose(mean_entropy_regularizer(z.t(), dim=0), mean_entropy_regularizer(z))


def brute_ler(z, lab, k_old, q, delta, tau, lam, t):
    total = 0.0
    for i in range(z.shape[0]):
        row = z[i].tolist()
        m = max(row)
        conf = max(math.exp((v - m) / t) for v in row) / sum(math.exp((v - m) / t) for v in row)
        if lab[i] or conf < delta or row.index(m) >= k_old:
            continue
        p = [math.exp(v / tau) for v in row]
        p = [x / sum(p) for x in p]
        a = [v / tau + lam * math.log(qq) for v, qq in zip(row, q.tolist())]
        lse = math.log(sum(math.exp(v) for v in a))
        total += -sum(pp * (v - lse) for pp, v in zip(p, a))
    return total / z.shape[0]


def test_local_entropy_brute_force():
    torch.manual_seed(1)
    z = torch.randn(12, 5, dtype=torch.float64) * 0.3
    lab = torch.tensor([True, False] * 6)
    q = torch.softmax(torch.randn(5, dtype=torch.float64), 0)
    got = local_entropy_regularizer(z, lab, 3, q, threshold=0.4)
    ref = brute_ler(z, lab.tolist(), 3, q, 0.4, 0.05, 0.4, 0.1)
    assert ref > 0
    assert float(got) == pytest.approx(ref, rel=1e-10)
    gradcheck64(lambda t: local_entropy_regularizer(t, lab, 3, q, threshold=0.4), z)


def test_local_entropy_special_cases():
    k = 4
    uniform = torch.full((k,), 1.0 / k, dtype=torch.float64)
    zero = torch.zeros(3, k, dtype=torch.float64)
    unl = torch.zeros(3, dtype=torch.bool)
    # z = 0 and q uniform: l = log K on every selected row (threshold below 1/K selects all)
    out = local_entropy_regularizer(zero, unl, k, uniform, threshold=0.2, reduction="none")
    assert torch.allclose(out, torch.full((3,), math.log(k), dtype=torch.float64))
    # q uniform: Q = P and l = H(P)
    torch.manual_seed(2)
    z = torch.randn(3, k, dtype=torch.float64) * 0.05
    p = torch.softmax(z / 0.05, 1)
    h = -(p * p.log()).sum(1)
    got = local_entropy_regularizer(z, unl, k, uniform, threshold=0.0, reduction="none")
    assert torch.allclose(got, h)
    # no row passes the threshold: exactly 0 (issue #1 of the authors' repo)
    assert float(local_entropy_regularizer(z, unl, k, uniform, threshold=1.0)) == 0.0
    # labelled rows and novel-class argmax rows are never selected
    assert float(local_entropy_regularizer(z, ~unl, k, uniform, threshold=0.0)) == 0.0
    assert float(local_entropy_regularizer(z, unl, 0, uniform, threshold=0.0)) == 0.0


def test_teacher_temperature_schedule():
    assert simgcd_teacher_temperature(0) == pytest.approx(0.07)
    assert simgcd_teacher_temperature(29) == pytest.approx(0.04)
    assert simgcd_teacher_temperature(100) == pytest.approx(0.04)
    assert simgcd_teacher_temperature(10, warmup_epochs=21) == pytest.approx(0.055)


def test_simgcd_and_legogcd_modules():
    torch.manual_seed(3)
    b, k = 6, 5
    z = torch.randn(2 * b, k, dtype=torch.float64, requires_grad=True)
    feats = torch.randn(2 * b, 8, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 3, (b,))
    lab = torch.tensor([True, True, True, False, False, False])
    sim = SimGCDLoss()
    terms = sim.terms(z, y, lab, feats, epoch=0)
    ce = F.cross_entropy(torch.cat([z[:3], z[b : b + 3]]) / 0.1, torch.cat([y[:3], y[:3]]))
    assert torch.allclose(terms["sup"], ce)
    sd = cross_view_self_distillation(z, 0.07)
    q = torch.softmax(z.detach() / 0.07, 1)
    lp = torch.log_softmax(z / 0.1, 1)
    ref_sd = 0.5 * (-(q[:b] * lp[b:]).sum(1).mean() - (q[b:] * lp[:b]).sum(1).mean())
    assert torch.allclose(sd, ref_sd)
    # InfoNCE (temperature 1): positive = the other view
    f = F.normalize(feats, dim=1)
    ref_u = 0.0
    for i in range(2 * b):
        j = (i + b) % (2 * b)
        sims = [float(f[i] @ f[m]) for m in range(2 * b) if m != i]
        ref_u += -float(f[i] @ f[j]) + math.log(sum(math.exp(s) for s in sims))
    assert float(terms["unsup_contrastive"]) == pytest.approx(ref_u / (2 * b), rel=1e-9)
    lam = 0.35
    expected = (
        (1 - lam) * (terms["self_distillation"] + terms["mean_entropy"])
        + lam * terms["sup"]
        + (1 - lam) * terms["unsup_contrastive"]
        + lam * terms["sup_contrastive"]
    )
    assert torch.allclose(terms["total"], expected)
    sim(z, y, lab, feats).backward()
    assert torch.isfinite(z.grad).all() and torch.isfinite(feats.grad).all()

    lego = LegoGCDLoss(num_classes=k, num_known=3, threshold=0.3)
    t2 = lego.terms(z, y, lab, feats)
    assert torch.allclose(
        t2["total"],
        terms["total"] + (1 - lam) * t2["dual_view_kl"] + 2.0 * t2["local_entropy"],
    )
    prior_before = torch.full((k,), 1.0 / k)
    expected_prior = 0.999 * prior_before + 0.001 * torch.softmax(z.detach().float(), 1).mean(0)
    assert torch.allclose(lego.class_prior, expected_prior, atol=1e-7)
    assert "class_prior" in lego.state_dict()
    lego.eval()
    lego.terms(z, y, lab)
    assert torch.allclose(lego.class_prior, expected_prior, atol=1e-7)  # no update in eval


def test_extreme_and_bfloat16():
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], requires_grad=True)
    w = torch.tensor([[-1e4, 1e4, 0.0], [1e4, 0.0, -1e4]])
    lab = torch.tensor([False, False])
    q = torch.full((3,), 1 / 3)
    loss = (
        dual_view_kl(z, w)
        + mean_entropy_regularizer(z)
        + local_entropy_regularizer(z, lab, 3, q, threshold=0.5)
    )
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    zb = torch.randn(4, 3).bfloat16()
    assert dual_view_kl(zb, zb.flip(0)).dtype == torch.bfloat16
    assert torch.isfinite(mean_entropy_regularizer(zb))


def test_bad_input():
    z = torch.randn(4, 3)
    q = torch.full((3,), 1 / 3)
    with pytest.raises(ValueError, match="logits_b"):
        dual_view_kl(z, torch.randn(4, 2))
    with pytest.raises(ValueError, match="temperature"):
        mean_entropy_regularizer(z, temperature=0.0)
    with pytest.raises(ValueError, match="labelled_mask"):
        local_entropy_regularizer(z, torch.zeros(3, dtype=torch.bool), 2, q, 0.5)
    with pytest.raises(ValueError, match="class_prior"):
        local_entropy_regularizer(z, torch.zeros(4, dtype=torch.bool), 2, torch.ones(2) / 2, 0.5)
    with pytest.raises(ValueError, match="threshold"):
        local_entropy_regularizer(z, torch.zeros(4, dtype=torch.bool), 2, q, 1.5)
    with pytest.raises(ValueError, match="num_known"):
        local_entropy_regularizer(z, torch.zeros(4, dtype=torch.bool), 5, q, 0.5)
    with pytest.raises(ValueError, match="logits"):
        SimGCDLoss()(
            torch.randn(5, 3), torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="labels"):
        SimGCDLoss()(z, torch.zeros(3, dtype=torch.long), torch.zeros(2, dtype=torch.bool))
    with checks("full"):
        with pytest.raises(ValueError, match="class_prior"):
            local_entropy_regularizer(z, torch.zeros(4, dtype=torch.bool), 2, torch.ones(3), 0.5)
        with pytest.raises(ValueError, match="logits_a"):
            dual_view_kl(torch.full((2, 3), float("nan")), torch.zeros(2, 3))


def test_supervised_contrastive_brute_force():
    torch.manual_seed(5)
    b, k = 4, 3
    z = torch.randn(2 * b, k, dtype=torch.float64)
    feats = torch.randn(2 * b, 5, dtype=torch.float64)
    y = torch.tensor([0, 1, 0, 2])
    lab = torch.tensor([True, True, True, False])
    terms = SimGCDLoss().terms(z, y, lab, feats)
    idx = [0, 1, 2, b, b + 1, b + 2]  # labelled rows of both views
    f = F.normalize(feats[idx], dim=1)
    labels = torch.cat([y[:3], y[:3]])
    ref = 0.0
    for i in range(6):
        denom = sum(math.exp(float(f[i] @ f[a]) / 0.07) for a in range(6) if a != i)
        pos = [p for p in range(6) if p != i and labels[p] == labels[i]]
        ref += -sum(float(f[i] @ f[p]) / 0.07 - math.log(denom) for p in pos) / len(pos)
    assert float(terms["sup_contrastive"]) == pytest.approx(ref / 6, rel=1e-9)


def brute_code_dkl(a, b, t):
    """The authors' DistillLoss DKL term: log_softmax applied to the view probabilities."""
    out = 0.0
    for i in range(a.shape[0]):
        ea = [math.exp(v / t) for v in a[i].tolist()]
        eb = [math.exp(v / t) for v in b[i].tolist()]
        pa = [x / sum(ea) for x in ea]
        pb = [x / sum(eb) for x in eb]
        lse_a = math.log(sum(math.exp(x) for x in pa))
        lse_b = math.log(sum(math.exp(x) for x in pb))
        out += sum(x * ((x - lse_a) - (y - lse_b)) for x, y in zip(pa, pb))
    return out / a.shape[0]


def test_dual_view_kl_code_form_matches_the_official_expression():
    assert float(dual_view_kl(Z1, Z2, form="code")) == pytest.approx(
        brute_code_dkl(Z1, Z2, 0.1), rel=1e-12
    )
    torch.manual_seed(6)
    a = torch.randn(7, 5, dtype=torch.float64)
    b = torch.randn(7, 5, dtype=torch.float64)
    got = dual_view_kl(a, b, temperature=0.4, form="code")
    assert float(got) == pytest.approx(brute_code_dkl(a, b, 0.4), rel=1e-12)
    # it is not the KL: smaller on confident rows, bounded, and can be negative
    assert float(got) < float(dual_view_kl(a, b, temperature=0.4))
    rows = dual_view_kl(a * 10, b * 10, temperature=0.1, reduction="none", form="code")
    assert bool((rows.abs() <= 2.0).all())
    # view 1 fairly sure of class 0, view 2 very sure of it: the code form goes negative
    sure = torch.tensor([[0.75, 0.125, 0.125]], dtype=torch.float64).log()
    surer = torch.tensor([[0.995, 0.0025, 0.0025]], dtype=torch.float64).log()
    assert float(dual_view_kl(sure, surer, temperature=1.0, form="code")) < -0.05
    assert float(dual_view_kl(sure, surer, temperature=1.0)) > 0.7
    assert float(dual_view_kl(a, a, form="code")) == pytest.approx(0.0, abs=1e-12)
    assert torch.autograd.gradcheck(
        lambda x, y: dual_view_kl(x, y, temperature=0.3, form="code"),
        (a.clone().requires_grad_(True), b.clone().requires_grad_(True)),
    )
    with pytest.raises(ValueError, match="form"):
        dual_view_kl(a, b, form="kl")  # type: ignore[arg-type]


def test_legogcd_dkl_form_switches_the_dkl_term():
    torch.manual_seed(7)
    b, k = 4, 5
    z = torch.randn(2 * b, k, dtype=torch.float64)
    y = torch.randint(0, 3, (b,))
    lab = torch.tensor([True, False, True, False])
    paper = LegoGCDLoss(k, 3).terms(z, y, lab)
    code = LegoGCDLoss(k, 3, dkl_form="code").terms(z, y, lab)
    assert torch.allclose(paper["dual_view_kl"], dual_view_kl(z[:b], z[b:]))
    assert torch.allclose(code["dual_view_kl"], dual_view_kl(z[:b], z[b:], form="code"))
    assert not torch.allclose(paper["dual_view_kl"], code["dual_view_kl"])
    assert torch.allclose(
        code["total"] - code["dual_view_kl"] * 0.65, paper["total"] - paper["dual_view_kl"] * 0.65
    )
    with pytest.raises(ValueError, match="dkl_form"):
        LegoGCDLoss(k, 3, dkl_form="kl")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [SimGCDLoss, LegoGCDLoss])
def test_a_batch_without_labelled_images_has_zero_supervised_terms(cls):
    """SupCon over no labelled rows averaged an empty set (NaN, and so a NaN total); it is 0,
    as the supervised cross-entropy term already was."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(8, 5, generator=g, requires_grad=True)
    feats = torch.randn(8, 16, generator=g, requires_grad=True)
    labels, lab = torch.randint(0, 5, (4,), generator=g), torch.zeros(4, dtype=torch.bool)
    loss = cls() if cls is SimGCDLoss else cls(5, 3)
    out = loss.terms(z, labels, lab, feats)
    assert float(out["sup_contrastive"]) == 0.0 and float(out["sup"]) == 0.0
    assert torch.isfinite(out["total"])
    gz, gf = torch.autograd.grad(out["total"], (z, feats))
    assert torch.isfinite(gz).all() and torch.isfinite(gf).all()
