"""Device parity: every public hot-path function gives the same value and gradient on an
accelerator as on the CPU, and the training-loop functions run without a host synchronisation.

The device comes from the ``device`` fixture (``pytest --device cuda``, or ``--device all``); an
unavailable device is skipped. On the default device (the CPU) the module skips, since comparing
the CPU with itself costs minutes on CI; ``pytest --device cpu tests/test_devices.py`` runs the
harness on the CPU (float32 against float64: useful to check the cases themselves).
"""

from __future__ import annotations

import copy
import traceback
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

from inforeg import data as idata
from inforeg import dependence as dep
from inforeg import diffusion as idiff
from inforeg import estimators as est
from inforeg import losses as los
from inforeg import nn as inn
from inforeg import optim as iopt
from inforeg import ot, quant, rl
from inforeg import robust as irob
from tests._helpers import device_given, tensors_in


@pytest.fixture
def accel(device: torch.device, request: pytest.FixtureRequest) -> str:
    """The device under test; the CPU only when ``--device`` names it on the command line."""
    if device.type == "cpu" and not device_given(request.config):
        pytest.skip("compares a device with the CPU: run with --device cuda (or all)")
    return str(device)


Inputs = dict[str, Any]
Case = Callable[[Inputs], Any]


def _make_inputs(dtype: torch.dtype) -> Inputs:
    """Shared CPU inputs (float64 master copies are cast to ``dtype``); integer/bool stay."""
    g = torch.Generator().manual_seed(0)

    def randn(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, dtype=torch.float64).to(dtype)

    n, c = 24, 5
    x = randn(n, 3)
    y = x[:, :2] ** 2 + 0.5 * randn(n, 2)
    mask = torch.ones(4, 7, dtype=torch.bool)
    mask[1, 5:] = False
    mask[3, 2:] = False
    vocab = 50
    probs = torch.softmax(randn(n, c), -1)
    cost = torch.cdist(randn(12, 2).double(), randn(10, 2).double()) ** 2
    return {
        "x": x,
        "y": y,
        "x1": randn(n, 1),
        "y1": randn(n, 1),
        "z": randn(n, 6),
        "logits": randn(n, c, scale=2.0),
        "logits_b": randn(n, c, scale=2.0),
        "targets": torch.randint(0, c, (n,), generator=g),
        "probs": probs,
        "prior": torch.full((c,), 1.0 / c, dtype=dtype),
        "attn_logits": randn(2, 3, 6, 6),
        "bag_logits": randn(4, 9),
        "bag_mask": torch.rand(4, 9, generator=g) > 0.3,
        "scores": randn(8, 20),
        "pos_mask": torch.rand(8, 20, generator=g) > 0.7,
        "alpha_logits": randn(7, 4),
        "mu": randn(n, 4),
        "logvar": randn(n, 4, scale=0.3),
        "groups": torch.randint(0, 2, (n,), generator=g),
        "cost": (cost / cost.max()).to(dtype),
        "a": torch.full((12,), 1 / 12, dtype=dtype),
        "b": torch.full((10,), 1 / 10, dtype=dtype),
        "px": randn(40, 3),
        "py": randn(30, 3) + 0.5,
        "proj": torch.nn.functional.normalize(randn(16, 3), dim=-1),
        "u1": randn(30),
        "v1": randn(20) + 1.0,
        "rl_logits": randn(4, 7, vocab, scale=2.0),
        "rl_tokens": torch.randint(0, vocab, (4, 7), generator=g),
        "rl_logits_small": randn(5, 3, scale=2.0),  # a vocabulary smaller than a kernel block
        "rl_mask": mask,
        "old_logp": -rand(4, 7) * 3.0,
        "ref_logp": -rand(4, 7) * 3.0,
        "logp": -rand(4, 7) * 3.0,
        "adv_tok": randn(4, 7),
        "rewards": rand(8),
        "theta": randn(30, scale=3.0),
        "codebook": torch.linspace(-1.0, 1.0, 5, dtype=dtype),
        "t_act": randn(60, 4),
        # stateful regularisers (fresh state per input set)
        "siren": rl.SelectiveEntropyRegularizer(top_k=20),
        "epo": rl.EntropySmoothingRegularizer(),
        "lp_reg": rl.LowProbabilityRegularizer(),
        "comp_nll": iopt.CompositionalNLL(beta=0.3),
        "y_lab": torch.randint(0, 3, (60,), generator=g),
        # robust / diffusion
        "img": randn(2, 3, 4, 6),
        "img_noise": randn(2, 3, 4, 6),
        "drs_mask": irob.dual_smoothing_masks(4, 6)[0],
        "diff_x": randn(3, 2, 2, 2, scale=5.0),
        "gmm": idiff.gmm_denoiser(randn(4, 2, 2, 2), std=0.3),
        # nn: learned proximal network, latent-query alignment, noise-mask policy
        "lpn": _seeded(lambda: inn.LearnedProximalNet(3, hidden=8, layers=2, alpha=0.1), dtype),
        "lqa": _seeded(lambda: inn.LatentQueryAlignmentLoss(8, num_queries=3, num_heads=2), dtype),
        "lqa_h": randn(4, 7, 8),
        "lqa_g": randn(4, 5, 8),
        "mask_policy": _seeded(lambda: inn.BetaNoiseMaskPolicy(None, 6, grid=2), dtype),
        "cells": rand(n, 4) * 0.98 + 0.01,
        "log_alpha": randn(n, 4),
        "log_beta": randn(n, 4),
        "ce": rand(n) * 2.0,
        # nn: a feature map, scalar hyper-parameter tensors, seeded attention modules
        "fmap": randn(2, 16, 8, 5),
        "eps_t": torch.tensor(0.05, dtype=dtype),
        "c_a": torch.tensor(0.8, dtype=dtype),
        "c_b": torch.tensor(0.6, dtype=dtype),
        "awb_cbam": _seeded(lambda: inn.AttentiveWaveBlock(16, "cbam"), dtype),
        "awb_nonlocal": _seeded(lambda: inn.AttentiveWaveBlock(16, "nonlocal"), dtype),
    }


def _seeded(build: Callable[[], torch.nn.Module], dtype: torch.dtype) -> torch.nn.Module:
    """The same weights for every dtype and device; its WaveBlock strips come from its own CPU
    generator (seed 0), so the reference and the device run wave the same rows."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build()
    for m in module.modules():
        if isinstance(m, inn.WaveBlock):
            m.generator = torch.Generator().manual_seed(0)
        if isinstance(m, torch.nn.BatchNorm2d):  # the non-local output BN starts at zero
            torch.nn.init.constant_(m.weight, 0.5)
    return module.to(dtype)


def _sample_weights(x: torch.Tensor) -> torch.Tensor:
    return torch.ones(x.shape[0], dtype=x.dtype, device=x.device) / x.shape[0]


# name -> (function of the inputs, differentiable input names, runs without a host sync)
CASES: dict[str, tuple[Case, tuple[str, ...], bool]] = {
    # losses
    "entropy_minimization": (lambda i: los.entropy_minimization(i["logits"]), ("logits",), True),
    "generalized_cross_entropy": (
        lambda i: los.generalized_cross_entropy(i["logits"], i["targets"]),
        ("logits",),
        True,
    ),
    "comp_sum_loss": (
        lambda i: los.comp_sum_loss(i["logits"], i["targets"], kind="gce"),
        ("logits",),
        True,
    ),
    "progressive_self_distillation": (
        lambda i: los.progressive_self_distillation(i["logits"], i["targets"], i["probs"], 0.4),
        ("logits",),
        True,
    ),
    "dual_view_kl": (lambda i: los.dual_view_kl(i["logits"], i["logits_b"]), ("logits",), True),
    "mean_entropy_regularizer": (
        lambda i: los.mean_entropy_regularizer(i["logits"]),
        ("logits",),
        True,
    ),
    "class_ratio_prior_kl": (
        lambda i: los.class_ratio_prior_kl(i["logits"], i["prior"]),
        ("logits",),
        True,
    ),
    "attention_entropy": (
        lambda i: los.attention_entropy(i["bag_logits"], i["bag_mask"], reduction="mean"),
        ("bag_logits",),
        True,
    ),
    "head_attention_entropy_penalty": (
        lambda i: los.head_attention_entropy_penalty(torch.softmax(i["attn_logits"], -1)),
        ("attn_logits",),
        True,
    ),
    "decoupled_softmax_loss": (
        lambda i: los.decoupled_softmax_loss(i["scores"], i["pos_mask"]),
        ("scores",),
        True,
    ),
    "soft_top_k_loss": (
        lambda i: los.soft_top_k_loss(i["scores"], i["pos_mask"], k=3),
        ("scores",),
        True,
    ),
    "partial_ranking_distillation": (
        lambda i: los.partial_ranking_distillation(
            i["scores"], i["scores"].detach() ** 2, 4, positive_mask=i["pos_mask"]
        ),
        ("scores",),
        True,
    ),
    "depict_clustering_loss": (
        lambda i: los.depict_clustering_loss(
            i["logits"], los.depict_target_distribution(i["probs"])
        ),
        ("logits",),
        True,
    ),
    "architecture_entropy": (
        lambda i: los.architecture_entropy(i["alpha_logits"]),
        ("alpha_logits",),
        True,
    ),
    # dependence
    "mmd_unbiased": (lambda i: dep.mmd(i["x"], i["y"][:, :1] + i["x"]), ("x",), True),
    "mmd_chunked": (
        lambda i: dep.mmd(i["x"], i["x"] + 0.3, bandwidth=1.0, chunk_size=7),
        ("x",),
        True,
    ),
    "hsic": (
        lambda i: dep.hsic(i["x"], i["y"], bandwidth_x=1.0, bandwidth_y=1.0),
        ("x", "y"),
        True,
    ),
    "hsic_median": (lambda i: dep.hsic(i["x"], i["y"]), ("x", "y"), True),
    "cka": (lambda i: dep.cka(i["x"], i["y"], kernel_x="linear", kernel_y="linear"), ("x",), True),
    "distance_covariance_sqr": (
        lambda i: dep.distance_covariance_sqr(i["x"], i["y"]),
        ("x", "y"),
        True,
    ),
    "distance_covariance_sqr_unbiased_chunked": (
        lambda i: dep.distance_covariance_sqr(i["x"], i["y"], unbiased=True, chunk_size=5),
        ("x", "y"),
        True,
    ),
    "distance_correlation_sqr_1d_fast": (
        lambda i: dep.distance_correlation_sqr(i["x1"], i["y1"], method="fast"),
        ("x1", "y1"),
        True,
    ),
    "joint_distance_covariance": (
        lambda i: dep.joint_distance_covariance([i["x"], i["y"], i["x1"]]),
        ("x",),
        True,
    ),
    "cauchy_schwarz_divergence": (
        lambda i: dep.cauchy_schwarz_divergence(i["x"], i["x"] * 0.5 + 1.0),
        ("x",),
        True,
    ),
    "cs_quadratic_mi": (lambda i: dep.cs_quadratic_mi(i["x"], i["y"]), ("x",), True),
    "conditional_cs_divergence": (
        lambda i: dep.conditional_cs_divergence(i["x"], i["y"], i["y"] * 0.9),
        ("y",),
        True,
    ),
    # eigvalsh checks the solver's status on the host (torch.linalg has no non-checking eigh)
    "von_neumann_entropy": (lambda i: dep.von_neumann_entropy(i["z"]), ("z",), False),
    "infonce": (lambda i: dep.infonce(i["x"], i["x"] + 0.1 * i["z"][:, :3]), ("x",), True),
    "mine_lower_bound": (lambda i: dep.mine_lower_bound(i["u1"], i["v1"]), ("u1", "v1"), True),
    "vib_kl": (lambda i: dep.vib_kl(i["mu"], i["logvar"]), ("mu", "logvar"), True),
    "jensen_shannon_logits": (
        lambda i: dep.jensen_shannon_logits(i["logits"], i["logits_b"]),
        ("logits",),
        True,
    ),
    "generalized_jsd": (
        lambda i: dep.generalized_jsd(torch.sigmoid(i["x1"][:, 0]), i["groups"]),
        ("x1",),
        False,  # an evaluation metric: the group set is read on the host
    ),
    # estimators
    "kl_entropy": (lambda i: est.kl_entropy(i["x"]), (), False),
    "ksg_mutual_information": (lambda i: est.ksg_mutual_information(i["x"], i["y"]), (), False),
    "nearest_neighbor_entropy": (lambda i: est.nearest_neighbor_entropy(i["z"]), ("z",), True),
    "diffusion_spectral_entropy": (lambda i: est.diffusion_spectral_entropy(i["z"]), (), False),
    "tsallis_entropy": (lambda i: est.tsallis_entropy(i["probs"], 1.5), ("probs",), True),
    "adaptive_binning_mutual_information": (
        lambda i: est.adaptive_binning_mutual_information(torch.tanh(i["t_act"]), i["y_lab"]),
        (),
        False,
    ),
    "kde_mutual_information": (
        lambda i: est.kde_mutual_information(torch.tanh(i["t_act"]), i["y_lab"]),
        (),
        False,
    ),
    "dlle_loss": (lambda i: est.dlle_loss(i["z"], i["z"] * 1.1), ("z",), True),
    # optimal transport
    "sinkhorn": (
        lambda i: ot.sinkhorn(i["a"], i["b"], i["cost"], 0.05).value,
        ("cost",),
        False,
    ),
    "sinkhorn_plan": (lambda i: ot.sinkhorn(i["a"], i["b"], i["cost"], 0.05).plan, (), False),
    "sinkhorn_divergence": (
        lambda i: ot.sinkhorn_divergence(i["px"], i["py"], blur=0.1),
        ("px", "py"),
        False,  # the epsilon schedule's length depends on the data's diameter (one host read)
    ),
    "sinkhorn_divergence_given_diameter": (
        lambda i: ot.sinkhorn_divergence(i["px"], i["py"], blur=0.1, diameter=8.0),
        ("px", "py"),
        True,
    ),
    "sinkhorn_divergence_online": (
        lambda i: ot.sinkhorn_divergence(
            i["px"], i["py"], blur=0.1, diameter=8.0, backend="online"
        ),
        ("px", "py"),
        True,
    ),
    "sinkhorn_divergence_online_p1": (
        lambda i: ot.sinkhorn_divergence(
            i["px"], i["py"], p=1, blur=0.1, diameter=8.0, backend="online"
        ),
        ("px", "py"),
        True,
    ),
    "sliced_wasserstein": (
        lambda i: ot.sliced_wasserstein(i["px"], i["py"], projections=i["proj"].T),
        ("px", "py"),
        True,
    ),
    "wasserstein_1d": (lambda i: ot.wasserstein_1d(i["u1"], i["v1"]), ("u1", "v1"), True),
    "smooth_ot": (lambda i: ot.smooth_ot(i["a"], i["b"], i["cost"], 0.5).plan, (), False),
    "sparse_ot": (lambda i: ot.sparse_ot(i["a"], i["b"], i["cost"], 5, 0.5).plan, (), False),
    # k = 3 binds: the solver stops at a kink of the semi-dual, where the plan depends on the
    # last bits of the cost (it moves by ~5e-4 for a 1e-15 change) but the value does not
    "sparse_ot_binding_value": (
        lambda i: ot.sparse_ot(i["a"], i["b"], i["cost"], 3, 0.5).value,
        (),
        False,
    ),
    "projection_sparse_simplex": (
        lambda i: ot.projection_sparse_simplex(i["scores"], 3),
        ("scores",),
        True,
    ),
    "delta_k": (lambda i: ot.delta_k(i["scores"], 3), ("scores",), True),
    # rl
    "token_entropy": (lambda i: rl.token_entropy(i["rl_logits"]), ("rl_logits",), True),
    "token_entropy_chunked_temp": (
        lambda i: rl.token_entropy(i["rl_logits"], temperature=0.7, chunk_size=3),
        ("rl_logits",),
        True,
    ),
    "token_entropy_small_vocab": (
        lambda i: rl.token_entropy(i["rl_logits_small"], temperature=1.3),
        ("rl_logits_small",),
        True,
    ),
    "selective_log_softmax": (
        lambda i: rl.selective_log_softmax(i["rl_logits"], i["rl_tokens"], chunk_size=5),
        ("rl_logits",),
        True,
    ),
    "grpo_advantages": (lambda i: rl.grpo_advantages(i["rewards"], 4), (), True),
    "clipped_surrogate": (
        lambda i: rl.clipped_surrogate(
            i["logp"], i["old_logp"], i["adv_tok"], i["rl_mask"], dual_clip=3.0
        ),
        ("logp",),
        True,
    ),
    "kl_k3": (lambda i: rl.kl_k3(i["logp"], i["ref_logp"]), ("logp",), True),
    "aggregate_seq_mean_token_sum_norm": (
        lambda i: rl.aggregate(i["logp"], i["rl_mask"], "seq-mean-token-sum-norm"),
        ("logp",),
        True,
    ),
    "top_p_entropy": (lambda i: rl.top_p_entropy(i["rl_logits"], top_k=20), ("rl_logits",), True),
    "selective_entropy": (
        lambda i: rl.selective_entropy(i["rl_logits"], i["rl_mask"], top_k=20),
        ("rl_logits",),
        True,
    ),
    "min_p_proxy_logprobs": (
        lambda i: rl.min_p_proxy_logprobs(i["rl_logits"], i["rl_tokens"]),
        ("rl_logits",),
        True,
    ),
    "reinforce_loss": (
        lambda i: rl.reinforce_loss(i["logp"], i["rl_mask"], i["adv_tok"]),
        ("logp",),
        True,
    ),
    "SelectiveEntropyRegularizer": (
        lambda i: i["siren"](i["rl_logits"], i["rl_mask"]),
        ("rl_logits",),
        True,
    ),
    "EntropySmoothingRegularizer": (
        lambda i: i["epo"](i["rl_logits"], i["rl_mask"]),
        ("rl_logits",),
        True,
    ),
    "LowProbabilityRegularizer": (
        lambda i: i["lp_reg"](
            i["rl_logits"], i["rl_tokens"], i["old_logp"], i["adv_tok"], i["rl_mask"]
        ),
        ("rl_logits",),
        False,
    ),
    # nn / optim
    "scalar_quantize": (
        lambda i: inn.scalar_quantize(i["z"], i["codebook"].expand(6, -1)),
        ("z",),
        True,
    ),
    "LearnedProximalNet": (lambda i: i["lpn"](i["x"]), ("x",), True),
    "proximal_matching_loss": (
        lambda i: inn.proximal_matching_loss(i["x"], i["z"][:, :3], 0.7),
        ("x",),
        True,
    ),
    "LatentQueryAlignmentLoss": (
        lambda i: i["lqa"](i["lqa_h"], i["lqa_g"], mask_pred=i["rl_mask"]),
        ("lqa_h",),
        True,
    ),
    "BetaNoiseMaskPolicy": (lambda i: i["mask_policy"](i["z"]), ("z",), True),
    "beta_mask_log_prob": (
        lambda i: inn.beta_mask_log_prob(i["cells"], i["log_alpha"], i["log_beta"]),
        ("log_alpha", "log_beta"),
        True,
    ),
    "reinforce_mask_loss": (
        lambda i: inn.reinforce_mask_loss(i["log_alpha"], i["ce"]),
        ("log_alpha",),
        True,
    ),
    "reinforce_mask_loss_code": (
        lambda i: inn.reinforce_mask_loss(i["log_alpha"], i["ce"], mode="code"),
        ("log_alpha", "ce"),
        True,
    ),
    "noise_mask_from_cells": (
        lambda i: inn.noise_mask_from_cells(i["cells"], 8, blur_kernel=3, blur_sigma=1.0),
        ("cells",),
        True,
    ),
    "scad_penalty": (lambda i: iopt.scad_penalty(i["theta"], 0.5), ("theta",), True),
    "mcp_prox": (lambda i: iopt.mcp_prox(i["theta"], 0.5), (), True),
    "compositional_nll": (
        lambda i: iopt.compositional_nll(i["u1"], i["v1"], -0.5 * i["v1"].detach() ** 2, beta=1.0),
        ("u1", "v1"),
        True,
    ),
    "CompositionalNLL": (
        lambda i: [
            i["comp_nll"](i["u1"], i["v1"] + s, -0.5 * i["v1"].detach() ** 2) for s in (0, 1)
        ],
        ("u1", "v1"),
        True,
    ),
    # quant (the quantiser is piecewise constant: value parity only)
    "fake_quantize_asymmetric": (
        lambda i: quant.fake_quantize_asymmetric(i["z"], -1.5, i["z"].amax(0), 4),
        (),
        True,
    ),
    "quantized_activation_entropy": (
        lambda i: quant.quantized_activation_entropy(i["t_act"][None]),
        ("t_act",),
        True,
    ),
    "dependency_entropy": (
        lambda i: quant.dependency_entropy(i["x"][None], i["z"][None, :, :3]),
        ("x", "z"),
        True,
    ),
    # robust / diffusion / data
    "dual_subimage": (
        lambda i: irob.dual_subimage(i["img"], i["drs_mask"], 0.3, noise=i["img_noise"]),
        ("img",),
        True,
    ),
    "certify_constant_base": (
        lambda i: _certify_constant(i["img"][0]),
        (),
        False,  # certification reads the vote counts on the host
    ),
    "dpm_solver_pp_2m": (
        lambda i: idiff.dpm_solver_pp_2m(i["gmm"], i["diff_x"], idiff.logsnr_sigmas(5, 0.01, 5.0)),
        ("diff_x",),
        True,
    ),
    "evodiff_sample": (
        lambda i: idiff.evodiff_sample(i["gmm"], i["diff_x"], idiff.logsnr_sigmas(6, 0.01, 5.0)),
        ("diff_x",),
        True,
    ),
    "evodiff_sample_22_steps_second_order": (
        lambda i: idiff.evodiff_sample(
            i["gmm"], i["diff_x"], idiff.logsnr_sigmas(22, 0.01, 5.0), final_step="second_order"
        ),
        ("diff_x",),
        True,
    ),
    "static_entropy": (lambda i: idata.static_entropy(i["z"], bins=5), (), True),
    "crrelu": (lambda i: inn.crrelu(i["x"], i["eps_t"]), ("x", "eps_t"), True),
    "wave_block": (
        lambda i: inn.wave_block(i["fmap"], generator=torch.Generator().manual_seed(0)),
        ("fmap",),
        True,
    ),
    "attentive_wave_block_cbam": (lambda i: i["awb_cbam"](i["fmap"]), ("fmap",), True),
    "attentive_wave_block_nonlocal": (lambda i: i["awb_nonlocal"](i["fmap"]), ("fmap",), True),
    "gaussian_latent_loss": (
        lambda i: inn.gaussian_latent_loss(i["z"], convention="nll"),
        ("z",),
        True,
    ),
    "dual_latent_prior": (
        lambda i: inn.DualLatentPrior(1.0, 0.5)(i["z"], i["x"]),
        ("z", "x"),
        True,
    ),
    "compand": (
        lambda i: inn.compand(i["theta"], i["c_a"], i["c_b"]),
        ("theta", "c_a", "c_b"),
        True,
    ),
}


def _certify_constant(x: torch.Tensor) -> torch.Tensor:
    """DRS and Cohen certificates of a constant base classifier (exact, noise-independent)."""

    def base(batch: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(
            torch.full((batch.shape[0],), 2, device=batch.device), 4
        ).to(batch.dtype)

    drs = irob.DualRandomizedSmoothing(base, base, 4, 0.25).certify(x, 10, 100, 1e-3, 64)
    cohen = irob.RandomizedSmoothing(base, 4, 0.25).certify(x, 10, 100, 1e-3, 64)
    return torch.tensor([*drs, *cohen], dtype=x.dtype, device=x.device)


# solvers / estimators whose float32 result is only as accurate as their stopping rule
ITERATIVE = {"smooth_ot", "sparse_ot", "sinkhorn", "sinkhorn_plan", "diffusion_spectral_entropy"}
# stopped at a non-smooth point short of convergence in any precision: the value agrees to ~1e-6
NONSMOOTH = {"sparse_ot_binding_value"}


def _tolerance(name: str, dtype: torch.dtype) -> tuple[float, float]:
    """``(rtol, atol)`` for case ``name`` computed in ``dtype`` against float64."""
    if name in NONSMOOTH:
        return 1e-4, 1e-6
    if dtype == torch.float64:
        return 1e-9, 1e-10
    if name in ITERATIVE:
        return 1e-2, 2e-4  # float32 solvers stop at a float32-sized tolerance
    return 2e-4, 2e-5


def _run(case: Case, inputs: Inputs, grad_names: tuple[str, ...]) -> tuple[list, list]:
    for name in grad_names:
        inputs[name] = inputs[name].detach().requires_grad_(True)
    outs = [t for t in tensors_in(case(inputs)) if t.is_floating_point()]
    grads: list[torch.Tensor] = []
    diff = [t for t in outs if t.requires_grad]
    if grad_names and diff:
        total = sum((t.float().sum() if t.dtype == torch.bfloat16 else t.sum()) for t in diff)
        leaves = [inputs[n] for n in grad_names]
        got = torch.autograd.grad(total, leaves, allow_unused=True)  # type: ignore[arg-type]
        grads = [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(got, leaves)]
    return [o.detach() for o in outs], grads


def _to(inputs: Inputs, device: str) -> Inputs:
    """Tensors and stateful modules on ``device`` (moving a module's buffers is a host-device
    copy, so it happens here, before any timing or sync check)."""
    return {k: v.to(device) for k, v in inputs.items()}


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_device_matches_cpu(name: str, dtype: torch.dtype, accel: str) -> None:
    case, grad_names, _ = CASES[name]
    ref_out, ref_grad = _run(case, _make_inputs(torch.float64), grad_names)
    out, grad = _run(case, _to(_make_inputs(dtype), accel), grad_names)
    assert len(out) == len(ref_out) and len(grad) == len(ref_grad)
    rtol, atol = _tolerance(name, dtype)
    if grad_names:  # a differentiable term keeps the input's precision
        assert out[0].dtype == dtype
    for got, ref in zip(out + grad, ref_out + ref_grad):
        assert got.device.type == torch.device(accel).type
        assert not torch.isnan(got).any()
        torch.testing.assert_close(got.cpu().double(), ref.double(), rtol=rtol, atol=atol)


@pytest.mark.parametrize(
    "name",
    [
        "token_entropy",
        "selective_log_softmax",
        "mmd_chunked",
        "hsic",
        "sinkhorn",
        "proximal_matching_loss",
        "reinforce_mask_loss_code",
        "crrelu",
        "wave_block",
        "gaussian_latent_loss",
        "compand",
    ],
)
def test_device_bfloat16(name: str, accel: str) -> None:
    """bfloat16 on the device: finite, float32-accurate accumulation (close to float64)."""
    case, grad_names, _ = CASES[name]
    ref_out, _ = _run(case, _make_inputs(torch.float64), ())
    out, grad = _run(case, _to(_make_inputs(torch.bfloat16), accel), grad_names)
    for got, ref in zip(out, ref_out):
        assert torch.isfinite(got.float()).all()
        torch.testing.assert_close(got.cpu().double(), ref.double(), rtol=5e-2, atol=5e-2)
    for g in grad:
        assert torch.isfinite(g.float()).all()


def _float64_copy(inputs: Inputs) -> Inputs:
    """The same inputs in float64 (tensors and Modules): low-precision values, exactly."""
    out: Inputs = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            out[key] = value.double()
        elif isinstance(value, torch.nn.Module):
            out[key] = copy.deepcopy(value).double()
        else:
            out[key] = value
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_bfloat16_on_cpu_matches_float64_on_the_same_values(name: str) -> None:
    """bfloat16 on the CPU, every case: the same finite entries as float64 on the bf16-rounded
    inputs (rounding the inputs moves bins and neighbour counts; that is not the computation's
    error), values within 5% of the result's scale, finite gradients. A zero plan from a
    diverged solver (entries 0.03 where float64 has them) fails here."""
    case, grad_names, _ = CASES[name]
    inputs = _make_inputs(torch.bfloat16)
    ref_out, _ = _run(case, _float64_copy(inputs), ())
    out, grad = _run(case, _make_inputs(torch.bfloat16), grad_names)
    assert len(out) == len(ref_out)
    for got, ref in zip(out, ref_out):
        finite = torch.isfinite(ref)
        assert torch.equal(torch.isfinite(got.float()), finite)
        scale = float(ref[finite].abs().max()) if bool(finite.any()) else 1.0
        torch.testing.assert_close(
            got.double(), ref.double(), rtol=5e-2, atol=5e-2 * scale, equal_nan=True
        )
    for g in grad:
        assert torch.isfinite(g.float()).all()


def _strided(value: object) -> object:
    """The same values in a non-contiguous tensor (every other element of a buffer twice as
    wide); other inputs as they are."""
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return value
    wide = value.new_empty(*value.shape[:-1], 2 * value.shape[-1])
    wide[..., ::2] = value
    return wide[..., ::2]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_non_contiguous_inputs(name: str, dtype: torch.dtype) -> None:
    """Strided inputs give the contiguous result, forward and backward (the fused C and Triton
    kernels read raw memory, so a missed stride would read the wrong values)."""
    case, grad_names, _ = CASES[name]
    ref_out, ref_grad = _run(case, _make_inputs(dtype), grad_names)
    strided = {key: _strided(value) for key, value in _make_inputs(dtype).items()}
    assert not strided["logits"].is_contiguous()
    out, grad = _run(case, strided, grad_names)
    rtol, atol = _tolerance(name, dtype)
    for got, ref in zip(out + grad, ref_out + ref_grad, strict=True):
        torch.testing.assert_close(got, ref, rtol=rtol, atol=atol, equal_nan=True)


SYNC_FREE = sorted(name for name, (_, _, free) in CASES.items() if free)


def _sync_site(case: Case, inputs: Inputs, grad_names: tuple[str, ...]) -> str:
    """Where the first host synchronisation happens (innermost inforeg frame)."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        _run(case, dict(inputs), grad_names)
    except RuntimeError as err:
        frames = [
            f"{f.filename.split('src/')[-1]}:{f.lineno} {f.line}"
            for f in traceback.extract_tb(err.__traceback__)
            if "inforeg" in f.filename
        ]
        # no inforeg frame: raised inside the backward pass (anomaly mode would locate it, but
        # it synchronises itself)
        where = frames[-1] if frames else "in the backward pass"
        return f"{where} ({str(err).splitlines()[0]})"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return "not raised in error mode"


@pytest.mark.parametrize("name", SYNC_FREE)
def test_no_host_sync(name: str, accel: str) -> None:
    """Forward and backward of a training-loop term never wait for the device (no ``.item()``,
    no data-dependent shapes, no host-device copies)."""
    if not accel.startswith("cuda"):
        pytest.skip("host-sync detection needs CUDA")
    case, grad_names, _ = CASES[name]
    inputs = _to(_make_inputs(torch.float32), accel)
    _run(case, dict(inputs), grad_names)  # warm-up: lazy CUDA init, kernel caches
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            _run(case, dict(inputs), grad_names)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "called a synchronizing" in str(w.message)]
    if syncs:
        site = _sync_site(case, inputs, grad_names)
        pytest.fail(f"{name}: {len(syncs)} host synchronisation(s), first at {site}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def test_fused_entropy_kernels_match_float64(
    dtype: torch.dtype, accel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Triton path (default on CUDA) and the chunked PyTorch path (INFOREG_DISABLE_TRITON=1)
    both equal a float64 reference on a 151,936-token vocabulary, including a peaked row, -inf
    logits and a temperature; gradients too (zero on -inf logits)."""
    if not accel.startswith("cuda"):
        pytest.skip("the fused kernels are CUDA-only")
    g = torch.Generator().manual_seed(5)
    z = torch.randn(24, 151_936, generator=g, dtype=torch.float64) * 2
    z[0, 7] += 60.0  # entropy ~1e-20: relative accuracy of the small term
    z[1, ::3] = float("-inf")
    z = z.to(dtype).double()
    tok = torch.randint(0, z.shape[1], (24,), generator=g)
    tok[1] = 1  # a finite logit
    ref_z = z.clone().requires_grad_(True)
    logp = torch.log_softmax(ref_z / 0.8, -1)
    ref_h = -(logp.exp() * logp.masked_fill(torch.isinf(z), 0.0)).sum(-1)
    ref_lp = logp.gather(1, tok[:, None]).squeeze(1)
    (ref_gh,) = torch.autograd.grad(ref_h.sum(), ref_z, retain_graph=True)
    (ref_gl,) = torch.autograd.grad(ref_lp.sum(), ref_z)
    for disable in ("0", "1"):
        monkeypatch.setenv("INFOREG_DISABLE_TRITON", disable)
        x = z.to(dtype).to(accel).requires_grad_(True)
        h = rl.token_entropy(x, temperature=0.8)
        lp = rl.selective_log_softmax(x, tok.to(accel), temperature=0.8)
        (gh,) = torch.autograd.grad(h.float().sum(), x)
        (gl,) = torch.autograd.grad(lp.float().sum(), x)
        out_tol = 1e-5 if dtype == torch.float32 else 8e-3  # bf16 outputs are rounded
        for got, ref in ((h, ref_h), (lp, ref_lp)):
            torch.testing.assert_close(got.double().cpu(), ref.detach(), rtol=out_tol, atol=1e-6)
        assert h[0].item() < 1e-6
        for got, ref in ((gh, ref_gh), (gl, ref_gl)):
            assert torch.isfinite(got.float()).all()
            got = got.double().cpu()
            torch.testing.assert_close(got[1:], ref[1:], rtol=out_tol, atol=1e-9)
            # the peaked row: float32 rounding of z/T at the peak logit (75: ulp ~ 8e-6)
            torch.testing.assert_close(got[0], ref[0], rtol=out_tol, atol=2e-5)
        assert (gh[1, ::3] == 0).all()
