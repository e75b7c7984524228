"""PGNM: Beta log-density against scipy, the two policy losses' values and gradients, the mask
image against a brute-force blur, and the policy's base EMA recovered from its outputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats

from inforeg.core.checks import checks
from inforeg.nn import (
    BetaNoiseMaskPolicy,
    beta_mask_log_prob,
    noise_mask_from_cells,
    reinforce_mask_loss,
    sample_mask_cells,
)
from tests._helpers import assert_close, gradcheck64


def _params(b: int = 4, cells: int = 9, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    la = torch.randn(b, cells, generator=g, dtype=torch.float64)
    lb = torch.randn(b, cells, generator=g, dtype=torch.float64)
    m = torch.rand(b, cells, generator=g, dtype=torch.float64) * 0.98 + 0.01
    return m, la, lb


# ----------------------------------------------------------------------------- log-density


def test_log_prob_matches_scipy():
    m, la, lb = _params()
    ref = stats.beta.logpdf(m.numpy(), np.exp(la.numpy()), np.exp(lb.numpy()))
    assert_close(beta_mask_log_prob(m, la, lb, per_cell=True), torch.from_numpy(ref))
    assert_close(beta_mask_log_prob(m, la, lb), torch.from_numpy(ref.sum(1)))
    # the (1, G²) base broadcasts over the batch
    ref_b = stats.beta.logpdf(m.numpy(), np.exp(la[:1].numpy()), np.exp(lb[:1].numpy()))
    assert_close(beta_mask_log_prob(m, la[:1], lb[:1]), torch.from_numpy(ref_b.sum(1)))


def test_log_prob_score_function_closed_form():
    """∂ log π / ∂ log α = α (log m − ψ(α) + ψ(α + β)); cells get no gradient."""
    m, la, lb = _params()
    la.requires_grad_(True)
    lb.requires_grad_(True)
    m.requires_grad_(True)
    beta_mask_log_prob(m, la, lb).sum().backward()
    a, b = la.detach().exp(), lb.detach().exp()
    dig = torch.special.digamma
    assert_close(la.grad, a * (m.detach().log() - dig(a) + dig(a + b)))
    assert_close(lb.grad, b * (torch.log1p(-m.detach()) - dig(b) + dig(a + b)))
    assert m.grad is None
    m2, la2, lb2 = _params(b=2, cells=4)
    gradcheck64(lambda x, y: beta_mask_log_prob(m2, x, y, per_cell=True), la2, lb2)


def test_log_prob_finite_at_edges_and_extremes(dtype):
    m = torch.tensor([[0.0, 1.0, 0.5, 0.0]], dtype=dtype)
    la = torch.tensor([[1e4, -1e4, 3.0, 0.5]], dtype=dtype, requires_grad=True)
    lb = torch.tensor([[-1e4, 1e4, 3.0, 2.0]], dtype=dtype, requires_grad=True)
    out = beta_mask_log_prob(m, la, lb)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert torch.isfinite(la.grad).all() and torch.isfinite(lb.grad).all()


def test_log_prob_dtype_and_device(device, dtype):
    m, la, lb = _params()
    ref = beta_mask_log_prob(m, la, lb)
    out = beta_mask_log_prob(*(t.to(device, dtype) for t in (m, la, lb)))
    assert out.dtype == dtype
    assert_close(out, ref)
    bf = beta_mask_log_prob(*(t.to(torch.bfloat16) for t in (m, la, lb)))
    assert bf.dtype == torch.bfloat16 and torch.isfinite(bf.float()).all()


def test_sampled_cells_have_the_beta_mean():
    torch.manual_seed(0)
    la = torch.tensor([[0.5, -1.0, 1.5]]).expand(20_000, -1)
    lb = torch.tensor([[0.0, 0.3, 1.0]]).expand(20_000, -1)
    cells = sample_mask_cells(la, lb)
    assert cells.shape == (20_000, 3) and not cells.requires_grad
    assert ((cells >= 0) & (cells <= 1)).all()
    assert_close(cells.mean(0), torch.sigmoid(la[0] - lb[0]), rtol=0, atol=1e-2)
    one = sample_mask_cells(torch.zeros(1, 3), torch.zeros(1, 3))
    assert one.shape == (1, 3)


def test_log_prob_bad_input():
    m, la, lb = _params()
    with pytest.raises(ValueError, match="log_alpha"):
        beta_mask_log_prob(m, la[:, :3], lb[:, :3])
    with pytest.raises(ValueError, match="log_alpha"):
        beta_mask_log_prob(m, la[:2], lb[:2])
    with pytest.raises(ValueError, match="log_beta"):
        beta_mask_log_prob(m, la, lb[:1])
    with pytest.raises(ValueError, match="cells"):
        beta_mask_log_prob(m[0], la, lb)
    with pytest.raises(TypeError, match="cells"):
        beta_mask_log_prob(m.long(), la, lb)
    bad = la.clone()
    bad[0, 0] = float("nan")
    with checks("full"), pytest.raises(ValueError, match="log_alpha"):
        beta_mask_log_prob(m, bad, lb)


# ----------------------------------------------------------------------------- losses


def test_reinforce_value_and_gradient():
    g = torch.Generator().manual_seed(1)
    lp = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    ce = torch.rand(6, generator=g, dtype=torch.float64).requires_grad_(True)
    loss = reinforce_mask_loss(lp, ce)
    adv = ce.detach() - ce.detach().mean()
    assert_close(loss, (adv * lp.detach().sum(1)).mean())
    loss.backward()
    assert_close(lp.grad, (adv / 6)[:, None].expand(6, 4))
    assert ce.grad is None  # the policy loss gives the classifier nothing
    # baselines: a float, or none
    v = reinforce_mask_loss(lp, ce, baseline=0.25, reduction="none")
    assert_close(v, (ce.detach() - 0.25) * lp.detach().sum(1))
    v0 = reinforce_mask_loss(lp, ce, baseline=None, reduction="sum")
    assert_close(v0, (ce.detach() * lp.detach().sum(1)).sum())


def test_code_mode_value_and_gradients():
    g = torch.Generator().manual_seed(2)
    lp = (torch.randn(5, 3, generator=g, dtype=torch.float64) * 5).requires_grad_(True)
    ce = torch.rand(5, generator=g, dtype=torch.float64).requires_grad_(True)
    loss = reinforce_mask_loss(lp, ce, mode="code")
    lse = torch.log(lp.detach().exp().sum(1))  # the authors' log(sum(exp(.)))
    assert_close(loss, lse.mean() * ce.detach().mean())
    loss.backward()
    assert_close(lp.grad, torch.softmax(lp.detach(), 1) * ce.detach().mean() / 5)
    assert_close(ce.grad, torch.full((5,), float(lse.mean() / 5), dtype=torch.float64))
    gradcheck64(lambda a, b: reinforce_mask_loss(a, b, mode="code"), lp, ce)
    gradcheck64(lambda a: reinforce_mask_loss(a, ce, reduction="none"), lp)


def test_losses_finite_for_extreme_log_probs():
    lp = torch.tensor([[1e4, -1e4], [-1e4, 1e4]], requires_grad=True)
    ce = torch.tensor([1.0, 2.0])
    for mode in ("reinforce", "code"):
        out = reinforce_mask_loss(lp, ce, mode=mode)
        (g,) = torch.autograd.grad(out, lp)
        assert torch.isfinite(out) and torch.isfinite(g).all()
    out = reinforce_mask_loss(lp.detach().bfloat16(), ce.bfloat16(), mode="code")
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float())


def test_losses_dtype_and_device(device, dtype):
    g = torch.Generator().manual_seed(3)
    lp = torch.randn(6, 4, generator=g, dtype=torch.float64)
    ce = torch.rand(6, generator=g, dtype=torch.float64)
    for mode in ("reinforce", "code"):
        ref = reinforce_mask_loss(lp, ce, mode=mode)
        out = reinforce_mask_loss(lp.to(device, dtype), ce.to(device, dtype), mode=mode)
        assert out.dtype == dtype
        assert_close(out, ref)


def test_losses_bad_input():
    lp, ce = torch.randn(4, 3), torch.rand(4)
    with pytest.raises(ValueError, match="ce"):
        reinforce_mask_loss(lp, torch.rand(5))
    with pytest.raises(ValueError, match="ce"):
        reinforce_mask_loss(lp, torch.rand(4, 1))
    with pytest.raises(ValueError, match="log_prob_cells"):
        reinforce_mask_loss(lp[0], ce)
    with pytest.raises(ValueError, match="mode"):
        reinforce_mask_loss(lp, ce, mode="ppo")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="baseline"):
        reinforce_mask_loss(lp, ce, baseline="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="baseline"):
        reinforce_mask_loss(lp, ce, baseline=float("nan"))
    with pytest.raises(ValueError, match="reduction"):
        reinforce_mask_loss(lp, ce, reduction="max")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ce"):
        reinforce_mask_loss(lp, torch.ones(4, dtype=torch.long))
    bad = ce.clone()
    bad[2] = float("inf")
    with checks("full"), pytest.raises(ValueError, match="ce"):
        reinforce_mask_loss(lp, bad)


# ----------------------------------------------------------------------------- mask image


def _blur_reference(img: np.ndarray, k: int, sigma: float) -> np.ndarray:
    """Brute force: 2-D Gaussian kernel (outer product), reflect padding, explicit sums."""
    t = np.arange(k) - (k - 1) / 2
    w = np.exp(-0.5 * (t / sigma) ** 2)
    w = w / w.sum()
    kern = np.outer(w, w)
    half = k // 2
    padded = np.pad(img, half, mode="reflect")
    out = np.zeros_like(img)
    for i in range(img.shape[0]):
        for j in range(img.shape[1]):
            out[i, j] = (padded[i : i + k, j : j + k] * kern).sum()
    return out


def test_mask_image_against_brute_force():
    g = torch.Generator().manual_seed(4)
    cells = torch.rand(3, 16, generator=g, dtype=torch.float64)
    mask = noise_mask_from_cells(cells, 12, blur_kernel=5, blur_sigma=1.3)
    assert mask.shape == (3, 1, 12, 12)
    for b in range(3):
        up = np.kron(cells[b].reshape(4, 4).numpy(), np.ones((3, 3)))  # nearest, integer factor
        assert_close(mask[b, 0], torch.from_numpy(_blur_reference(up, 5, 1.3)))


def test_mask_image_nearest_and_constants():
    cells = torch.arange(4.0)[None]
    up = noise_mask_from_cells(cells, 6, blur_kernel=1)
    assert torch.equal(up[0, 0, :3, :3], torch.zeros(3, 3))
    assert torch.equal(up[0, 0, 3:, 3:], torch.full((3, 3), 3.0))
    const = noise_mask_from_cells(torch.full((2, 9), 0.7), 8, blur_kernel=13, blur_sigma=6.0)
    assert_close(const, torch.full((2, 1, 8, 8), 0.7))


def test_mask_image_dtype(device, dtype):
    cells = torch.rand(2, 4, dtype=torch.float64)
    ref = noise_mask_from_cells(cells, 8, blur_kernel=3, blur_sigma=1.0)
    out = noise_mask_from_cells(cells.to(device, dtype), 8, blur_kernel=3, blur_sigma=1.0)
    assert out.dtype == dtype
    assert_close(out, ref)
    bf = noise_mask_from_cells(cells.bfloat16(), 8, blur_kernel=3, blur_sigma=1.0)
    assert bf.dtype == torch.bfloat16 and torch.isfinite(bf.float()).all()


def test_mask_image_bad_input():
    with pytest.raises(ValueError, match="cells"):
        noise_mask_from_cells(torch.rand(2, 5), 8)
    with pytest.raises(ValueError, match="blur_kernel"):
        noise_mask_from_cells(torch.rand(2, 4), 8, blur_kernel=4)
    with pytest.raises(ValueError, match="blur_kernel"):
        noise_mask_from_cells(torch.rand(2, 4), 4, blur_kernel=13)
    with pytest.raises(ValueError, match="blur_sigma"):
        noise_mask_from_cells(torch.rand(2, 4), 8, blur_kernel=3, blur_sigma=0.0)
    with pytest.raises(ValueError, match="size"):
        noise_mask_from_cells(torch.rand(2, 4), 0)


# ----------------------------------------------------------------------------- policy


def _policy(seed: int = 0) -> BetaNoiseMaskPolicy:
    torch.manual_seed(seed)
    feats = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.ReLU())
    return BetaNoiseMaskPolicy(feats, feature_dim=6, grid=3).double()


def test_policy_outputs_and_base_ema_recovered_from_outputs():
    policy = _policy()
    x = torch.randn(8, 5, dtype=torch.float64)
    b_a, b_b = policy.unconditional()
    assert b_a.shape == (1, 9) and ((b_a >= 0) & (b_a < 1)).all()  # U(0, 1) init
    la, lb = policy(x)
    assert la.shape == lb.shape == (8, 9)
    head_a = (la.detach() - 0.9 * b_a) / 0.1
    head_b = (lb.detach() - 0.9 * b_b) / 0.1
    new_a, new_b = policy.unconditional()
    assert_close(new_a, 0.99 * b_a + 0.01 * head_a.mean(0, keepdim=True))
    assert_close(new_b, 0.99 * b_b + 0.01 * head_b.mean(0, keepdim=True))
    # the heads really are Linear-BN-ReLU x2, Linear on the features
    policy.eval()
    feats = policy.features(x)
    la_eval, _ = policy(x)
    assert_close(la_eval, 0.9 * new_a + 0.1 * policy.alpha_head(feats))


def test_policy_buffers_frozen_in_eval_and_follow_state_dict():
    policy = _policy().eval()
    before = policy.unconditional()
    policy(torch.randn(4, 5, dtype=torch.float64))
    after = policy.unconditional()
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    state = policy.state_dict()
    assert "base_alpha" in state and "base_beta" in state
    other = _policy(seed=9)
    other.load_state_dict(state)
    assert torch.equal(other.base_alpha, policy.base_alpha)
    assert policy.float().base_alpha.dtype == torch.float32


def test_policy_gradients_reach_heads_and_features_not_buffers():
    policy = _policy()
    x = torch.randn(8, 5, dtype=torch.float64)
    la, lb = policy(x)
    cells = sample_mask_cells(la, lb)
    lp = beta_mask_log_prob(cells, la, lb, per_cell=True)
    reinforce_mask_loss(lp, torch.rand(8, dtype=torch.float64)).backward()
    for name, p in policy.named_parameters():
        assert p.grad is not None, name
    assert not policy.base_alpha.requires_grad


def test_policy_parity_and_bf16(device, dtype):
    policy = _policy().eval()
    x = torch.randn(6, 5, dtype=torch.float64)
    ref = policy(x)
    moved = _policy().eval().to(device=device, dtype=dtype)
    out = moved(x.to(device, dtype))
    for o, r in zip(out, ref):
        assert o.dtype == dtype
        assert_close(o, r)
    big = moved(x.to(device, dtype) * 1e4)
    assert all(torch.isfinite(t).all() for t in big)
    lp = beta_mask_log_prob(sample_mask_cells(*big), *big)
    assert torch.isfinite(lp).all()


def test_policy_identity_features_and_bad_input():
    policy = BetaNoiseMaskPolicy(None, feature_dim=4, grid=2)
    la, _ = policy(torch.randn(3, 4))
    assert la.shape == (3, 4)
    with pytest.raises(ValueError, match="x"):
        policy(torch.randn(3, 5))
    with pytest.raises(TypeError, match="features"):
        BetaNoiseMaskPolicy("resnet", feature_dim=4, grid=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grid"):
        BetaNoiseMaskPolicy(None, feature_dim=4, grid=0)
    with pytest.raises(ValueError, match="decay"):
        BetaNoiseMaskPolicy(None, feature_dim=4, grid=2, decay=1.5)
    with pytest.raises(ValueError, match="base_momentum"):
        BetaNoiseMaskPolicy(None, feature_dim=4, grid=2, base_momentum=-0.1)
    with pytest.raises(TypeError, match="x"):
        policy(np.zeros((3, 4)))  # type: ignore[arg-type]
    bad = torch.randn(3, 4)
    bad[0, 0] = math.nan
    with checks("full"), pytest.raises(ValueError, match="x"):
        policy(bad)


def test_policy_checks_the_dtype_and_a_one_sample_training_batch():
    # Regression (issue 18): int, bool and bf16 input, and a one-sample batch in train() mode,
    # failed inside torch's Linear / BatchNorm with errors naming no argument.
    policy = BetaNoiseMaskPolicy(None, feature_dim=4, grid=2)
    x = torch.randn(3, 4)
    with pytest.raises(TypeError, match=r"x: expected floating-point features .* torch.int64"):
        policy(x.long())
    with pytest.raises(TypeError, match=r"x: expected floating-point features .* torch.bool"):
        policy(x > 0)
    with pytest.raises(TypeError, match=r"x: expected dtype torch.float32.*\.to\(torch.bfloat16\)"):
        policy(x.bfloat16())
    la, lb = policy.to(torch.bfloat16)(x.bfloat16())  # converted: fine
    assert la.dtype == lb.dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: fine
        BetaNoiseMaskPolicy(None, feature_dim=4, grid=2)(x.bfloat16())
    with pytest.raises(ValueError, match=r"x: a batch of 1 sample in training mode"):
        policy(x[:1].bfloat16())
    assert policy.eval()(x[:1].bfloat16())[0].shape == (1, 4)


@pytest.mark.parametrize(
    ("log_a", "log_b"), [(-7.0, -7.0), (-10.0, -10.0), (1.0, -0.5), (0.0, 0.0)]
)
def test_sampled_cells_follow_the_beta_distribution(log_a, log_b):
    """torch.distributions.Beta underflows both Gamma draws at small concentrations and returns
    exactly 0.5: at log alpha = log beta = -10, 94% of cells were 0.5 (variance 0.015, not 0.25)."""
    stats = pytest.importorskip("scipy.stats")
    torch.manual_seed(0)
    n = 100_000
    cells = sample_mask_cells(torch.full((1, n), log_a), torch.full((1, n), log_b)).double()
    a, b = math.exp(log_a), math.exp(log_b)
    ref = stats.beta(a, b)
    for lo, hi in ((0.1, 0.9), (0.0, 0.5), (0.3, 0.7)):
        want = ref.cdf(hi) - ref.cdf(lo)
        got = float(((cells >= lo) & (cells < hi)).double().mean())  # float32 rounds to 0
        assert abs(got - want) < 4 * math.sqrt(want * (1 - want) / n) + 1e-4
    assert abs(float(cells.var()) - ref.var()) < 0.01
