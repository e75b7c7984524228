"""DDIM, DPM-Solver++(2M) and EVODiff against independent references, reductions, NFE, memory."""

from __future__ import annotations

import math
import weakref

import pytest
import torch

from inforeg.diffusion import (
    EVODiffSampler,
    ddim_sample,
    dpm_solver_pp_2m,
    evodiff_sample,
    gmm_denoiser,
    karras_sigmas,
    logsnr_sigmas,
)
from tests._helpers import assert_close, gradcheck64
from tests.diffusion._reference import dpm_pp_2m_lambda, released_evodiff

OFF = {"balance": False, "refine_ri": False, "correct": False}


def _image_mixture(seed: int = 0, k: int = 5, shape=(2, 4, 4)):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand((k, *shape), generator=g, dtype=torch.float64) * 2 - 1
    weights = torch.softmax(torch.randn(k, generator=g, dtype=torch.float64), 0)
    return gmm_denoiser(means, std=0.1, weights=weights), g


def _start(g: torch.Generator, *shape: int, sigma_max: float = 80.0) -> torch.Tensor:
    return sigma_max * torch.randn(shape, generator=g, dtype=torch.float64)


class Counter:
    """Wraps a denoiser, counts calls, and records how many earlier outputs are still alive
    (anywhere: CPython frees a tensor when its last reference goes) at each call."""

    def __init__(self, den):
        self.den = den
        self.refs: list[weakref.ref] = []
        self.alive_at_call: list[int] = []

    @property
    def calls(self) -> int:
        return len(self.refs)

    def __call__(self, x, sigma):
        self.alive_at_call.append(sum(r() is not None for r in self.refs))
        out = self.den(x, sigma)
        self.refs.append(weakref.ref(out))
        return out


def test_logsnr_and_karras_schedules():
    expected = torch.exp(torch.linspace(math.log(80.0), math.log(0.002), 11, dtype=torch.float64))
    assert torch.equal(logsnr_sigmas(10), expected)
    k = karras_sigmas(5, 0.01, 10.0, rho=3.0)
    ramp = torch.arange(6, dtype=torch.float64) / 5
    assert_close(k, (10.0 ** (1 / 3) + ramp * (0.01 ** (1 / 3) - 10.0 ** (1 / 3))) ** 3)
    for s in (logsnr_sigmas(7), karras_sigmas(7)):
        assert s.shape == (8,) and (s[1:] < s[:-1]).all()
        assert s[0].item() == pytest.approx(80.0) and s[-1].item() == pytest.approx(0.002)


@pytest.mark.parametrize("rho", [1e-6, 1e-3, 0.005])
def test_karras_rho_too_small_for_distinct_levels_names_rho(rho):
    # sigma_max ** (1 / rho) overflows a float below rho = log(80) / 709 (an OverflowError
    # before); just above, the levels round to sigma_max
    with pytest.raises(ValueError, match="rho"):
        karras_sigmas(10, rho=rho)
    s = karras_sigmas(10, rho=0.05)  # still distinct, bunched at sigma_max
    assert (s[1:] < s[:-1]).all() and s[-1].item() == pytest.approx(0.002)


@pytest.mark.parametrize("lower_order_final", [True, False])
@pytest.mark.parametrize("steps", [1, 2, 5, 10])
def test_dpm_solver_matches_lambda_form_reference(steps, lower_order_final):
    den, g = _image_mixture()
    x = _start(g, 3, 2, 4, 4)
    sig = logsnr_sigmas(steps)
    got = dpm_solver_pp_2m(den, x, sig, lower_order_final=lower_order_final)
    ref = dpm_pp_2m_lambda(den, x, sig.tolist(), lower_order_final=lower_order_final)
    assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_ddim_matches_first_order_lambda_form():
    den, g = _image_mixture(1)
    x = _start(g, 2, 2, 4, 4)
    sig = karras_sigmas(6)
    cur = x.clone()
    for i in range(1, 7):
        m = den(cur, torch.full((2,), sig[i - 1].item(), dtype=torch.float64))
        h = math.log(sig[i - 1] / sig[i])
        cur = (sig[i] / sig[i - 1]) * cur - math.expm1(-h) * m
    assert_close(ddim_sample(den, x, sig), cur, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("steps", [3, 10, 22])
def test_evodiff_defaults_match_released_sampler(steps):
    """Defaults (heuristic final step) at 10 and 22 steps (the > 20 branch) and a short run."""
    den, g = _image_mixture(2)
    x = _start(g, 3, 2, 4, 4)
    sig = logsnr_sigmas(steps)
    got = evodiff_sample(den, x, sig)
    ref = released_evodiff(den, x, sig.tolist())
    assert_close(got, ref, rtol=1e-10, atol=1e-10)
    got_z = evodiff_sample(den, x, sig, denoise_to_zero=True)
    assert_close(
        got_z, released_evodiff(den, x, sig.tolist(), denoise_to_zero=True), rtol=1e-10, atol=1e-10
    )


def test_evodiff_changes_at_twenty_steps():
    """The > 20 switch matters: 21 steps differ from what the <= 20 rule would give."""
    den, g = _image_mixture(3)
    x = _start(g, 2, 2, 4, 4)
    sig = logsnr_sigmas(21)
    ref = released_evodiff(den, x, sig.tolist())
    assert_close(evodiff_sample(den, x, sig), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("steps", [1, 2, 3, 8])
def test_evodiff_without_ingredients_is_dpm_solver(steps):
    den, g = _image_mixture(4)
    x = _start(g, 2, 2, 4, 4)
    sig = logsnr_sigmas(steps)
    ddim_final = evodiff_sample(den, x, sig, final_step="ddim", **OFF)
    second = evodiff_sample(den, x, sig, final_step="second_order", **OFF)
    assert_close(
        ddim_final, dpm_solver_pp_2m(den, x, sig, lower_order_final=True), rtol=1e-12, atol=1e-12
    )
    assert_close(
        second, dpm_solver_pp_2m(den, x, sig, lower_order_final=False), rtol=1e-12, atol=1e-12
    )


def test_each_ingredient_changes_the_result():
    den, g = _image_mixture(5)
    x = _start(g, 2, 2, 4, 4)
    sig = logsnr_sigmas(8)
    base = evodiff_sample(den, x, sig, final_step="ddim", **OFF)
    for name in OFF:
        opts = dict(OFF, **{name: True})
        assert (evodiff_sample(den, x, sig, final_step="ddim", **opts) - base).abs().max() > 1e-6, (
            name
        )


def test_flat_inputs_use_per_sample_inner_products():
    """(B, D) equals the same data as (B, 1, D) (one channel): products per sample over D; and a
    batch gives each sample what it gets alone (nothing pooled across the batch)."""
    g = torch.Generator().manual_seed(6)
    means = torch.randn(4, 6, generator=g, dtype=torch.float64)
    den_flat = gmm_denoiser(means, std=0.2)
    den_chan = gmm_denoiser(means[:, None, :], std=0.2)
    x = _start(g, 5, 6)
    sig = logsnr_sigmas(7)
    flat = evodiff_sample(den_flat, x, sig)
    chan = evodiff_sample(den_chan, x[:, None, :], sig)
    assert_close(flat, chan[:, 0], rtol=1e-12, atol=1e-12)
    alone = torch.cat([evodiff_sample(den_flat, x[i : i + 1], sig) for i in range(5)])
    assert_close(flat, alone, rtol=1e-12, atol=1e-12)


def test_image_inputs_use_per_channel_inner_products():
    den, g = _image_mixture(7, shape=(3, 2, 2))
    x = _start(g, 2, 3, 2, 2)
    sig = logsnr_sigmas(6)
    got = evodiff_sample(den, x, sig)
    assert_close(got, released_evodiff(den, x, sig.tolist()), rtol=1e-10, atol=1e-10)
    # pooling the channels (one channel of 12 values) is a different sampler
    den_pooled = gmm_denoiser(
        den.means.reshape(5, 1, 12, 1), std=0.1, weights=den.log_weights.exp()
    )
    pooled = evodiff_sample(den_pooled, x.reshape(2, 1, 12, 1), sig).reshape(x.shape)
    assert (pooled - got).abs().max() > 1e-6


@pytest.mark.parametrize(
    ("sampler", "expected"),
    [
        (lambda d, x, s: ddim_sample(d, x, s), 9),
        (lambda d, x, s: dpm_solver_pp_2m(d, x, s), 9),
        (lambda d, x, s: dpm_solver_pp_2m(d, x, s, lower_order_final=False), 9),
        (lambda d, x, s: evodiff_sample(d, x, s), 9),
        (lambda d, x, s: evodiff_sample(d, x, s, final_step="ddim"), 9),
        (lambda d, x, s: evodiff_sample(d, x, s, final_step="second_order"), 10),
        (lambda d, x, s: evodiff_sample(d, x, s, final_step="second_order", correct=False), 9),
        (lambda d, x, s: evodiff_sample(d, x, s, denoise_to_zero=True), 10),
        (lambda d, x, s: EVODiffSampler(9)(d, x), 9),
    ],
)
def test_nfe_and_at_most_one_earlier_output_alive(sampler, expected):
    den, g = _image_mixture(8)
    counter = Counter(den)
    with torch.no_grad():
        out = sampler(counter, _start(g, 2, 2, 4, 4), logsnr_sigmas(9))
    assert counter.calls == expected
    assert max(counter.alive_at_call) <= 1
    assert torch.isfinite(out).all()


def test_sampler_class_holds_options():
    den, g = _image_mixture(9)
    x = _start(g, 2, 2, 4, 4)
    sampler = EVODiffSampler(7, final_step="ddim", denoise_to_zero=True)
    assert sampler.nfe == 8 and EVODiffSampler(7, final_step="second_order").nfe == 8
    assert torch.equal(sampler.sigmas(), logsnr_sigmas(7))
    want = evodiff_sample(den, x, logsnr_sigmas(7), final_step="ddim", denoise_to_zero=True)
    assert torch.equal(sampler(den, x), want)
    assert torch.equal(
        sampler.sample(den, x, karras_sigmas(4)),
        evodiff_sample(den, x, karras_sigmas(4), final_step="ddim", denoise_to_zero=True),
    )
    assert "final_step='ddim'" in repr(sampler)


def test_dpm_error_falls_with_steps_on_exact_mixture():
    den, g = _image_mixture(10, k=8, shape=(1, 8, 8))
    x = _start(g, 8, 1, 8, 8)
    ref = dpm_solver_pp_2m(den, x, logsnr_sigmas(200))
    errors = [
        (dpm_solver_pp_2m(den, x, logsnr_sigmas(n)) - ref).flatten(1).norm(dim=1).mean().item()
        for n in (5, 10, 20, 40)
    ]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.05


def test_dtypes(dtype):
    den, g = _image_mixture(11)
    x = _start(g, 2, 2, 4, 4)
    sig = logsnr_sigmas(6)
    den_d = gmm_denoiser(den.means.to(dtype), std=0.1, weights=den.log_weights.exp().to(dtype))
    for fn in (dpm_solver_pp_2m, evodiff_sample, ddim_sample):
        ref = fn(den, x, sig)
        got = fn(den_d, x.to(dtype), sig)
        assert got.dtype == dtype
        assert_close(
            got,
            ref,
            rtol=1e-3 if dtype == torch.float32 else None,
            atol=1e-3 if dtype == torch.float32 else None,
        )


def test_half_precision_computes_in_float32():
    den, g = _image_mixture(12)
    x = _start(g, 2, 2, 4, 4)
    seen: list[torch.dtype] = []

    def den_bf16(z, s):
        seen.append(z.dtype)
        return den(z.double(), s.double()).to(z.dtype)

    got = evodiff_sample(den_bf16, x.to(torch.bfloat16), logsnr_sigmas(6), final_step="ddim")
    assert got.dtype == torch.bfloat16 and set(seen) == {torch.bfloat16}
    ref = evodiff_sample(den, x, logsnr_sigmas(6), final_step="ddim")
    assert torch.isfinite(got.float()).all()
    assert (got.double() - ref).abs().max() < 0.1


def test_gradcheck():
    g = torch.Generator().manual_seed(13)
    den = gmm_denoiser(torch.randn(3, 2, generator=g, dtype=torch.float64), std=0.3)
    x = 5.0 * torch.randn(2, 2, generator=g)
    sig = logsnr_sigmas(4, sigma_max=5.0)
    gradcheck64(lambda v: dpm_solver_pp_2m(den, v, sig), x)
    gradcheck64(lambda v: evodiff_sample(den, v, sig), x)
    gradcheck64(lambda v: evodiff_sample(den, v, sig, final_step="second_order"), x)


def test_degenerate_denoisers_give_no_nan():
    """pc(a, 0): the released code divides 0 by 0; inforeg defines it as 0."""
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64) * 80
    for den in (lambda z, s: torch.zeros_like(z), lambda z, s: torch.ones_like(z)):
        for final in ("heuristic", "ddim", "second_order"):
            out = evodiff_sample(den, x, logsnr_sigmas(25), final_step=final)
            assert torch.isfinite(out).all()
    out = evodiff_sample(lambda z, s: torch.zeros_like(z), x, logsnr_sigmas(5), final_step="ddim")
    assert_close(out, x * (0.002 / 80.0), rtol=1e-12, atol=1e-15)  # x_E only: x * t / s0


def test_bad_input():
    den, g = _image_mixture(14)
    x = _start(g, 2, 2, 4, 4)
    for fn in (ddim_sample, dpm_solver_pp_2m, evodiff_sample):
        with pytest.raises(ValueError, match="sigmas"):
            fn(den, x, torch.tensor([], dtype=torch.float64))
        with pytest.raises(ValueError, match="sigmas"):
            fn(den, x, torch.tensor([80.0]))
        with pytest.raises(ValueError, match="decreasing"):
            fn(den, x, torch.tensor([80.0, 1.0, 2.0, 0.1]))
        with pytest.raises(ValueError, match="decreasing"):
            fn(den, x, torch.tensor([80.0, 1.0, 1.0]))
        with pytest.raises(ValueError, match="positive"):
            fn(den, x, torch.tensor([80.0, 1.0, 0.0]))
        with pytest.raises(ValueError, match="positive"):
            fn(den, x, torch.tensor([80.0, float("nan"), 0.1]))
        with pytest.raises(ValueError, match="sigmas"):
            fn(den, x, logsnr_sigmas(4)[None])
        with pytest.raises(TypeError, match="x"):
            fn(den, x.long(), logsnr_sigmas(4))
        with pytest.raises(ValueError, match="x"):
            fn(den, x[0, 0, 0], logsnr_sigmas(4))
        with pytest.raises(ValueError, match="denoiser"):
            fn(lambda z, s: z[:, :1], x, logsnr_sigmas(4))
        with pytest.raises(TypeError, match="denoiser"):
            fn("unet", x, logsnr_sigmas(4))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="final_step"):
        evodiff_sample(den, x, logsnr_sigmas(4), final_step="euler")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="steps"):
        logsnr_sigmas(0)
    with pytest.raises(ValueError, match="sigma_max"):
        karras_sigmas(4, sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="sigma_min"):
        EVODiffSampler(4, sigma_min=0.0)
    with pytest.raises(ValueError, match="rho"):
        karras_sigmas(4, rho=0.0)
