"""Every public Module exposes the same hyper-parameters as the function(s) it calls.

For each Module/function pair of every family's ``__all__``, the Module constructor's keyword
parameters must equal the functions' hyper-parameters -- their parameters minus the inputs
(what the Module's ``forward`` and other public methods take) -- with the same defaults, up to
the explicit, commented exceptions below. A Module that drifts from its function (a new solver
option added to the function only, a changed default) fails here. Every public Module is either
paired or listed in ``NOT_PAIRED`` with the reason, so a new Module must be classified.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest
import torch

import inforeg

# Module (family.Name) -> the public functions of the same family it calls.
PAIRS: dict[str, tuple[str, ...]] = {
    # losses
    "losses.AdversarialCompSumLoss": ("adversarial_comp_sum_loss",),
    "losses.AttentionEntropyMaximization": ("attention_entropy",),
    "losses.ArchitectureEntropyRegularizer": (
        "architecture_entropy",
        "architecture_entropy_weight",
    ),
    "losses.CompSumLoss": ("comp_sum_loss",),
    "losses.ContrastivePartialRankingDistillation": ("partial_ranking_distillation",),
    "losses.DEPICTClusteringLoss": ("depict_clustering_loss", "depict_target_distribution"),
    "losses.DecoupledSoftmaxLoss": ("decoupled_softmax_loss",),
    "losses.HeadwiseAttentionEntropyRegularizer": ("head_attention_entropy_penalty",),
    "losses.ProgressiveSelfDistillation": ("progressive_self_distillation", "pskd_alpha"),
    "losses.QuantizationNoise": ("quantization_noise",),
    "losses.SoftTopKLoss": ("soft_top_k_loss",),
    "losses.SourceFreeAdaptationLoss": ("entropy_minimization", "class_ratio_prior_kl"),
    # dependence
    "dependence.CSIBLoss": ("conditional_cs_divergence", "cs_quadratic_mi"),
    "dependence.DistanceCorrelationLoss": ("distance_correlation_sqr", "distance_covariance_sqr"),
    "dependence.HSICLoss": ("hsic", "cka"),
    "dependence.InfoNCELoss": ("infonce",),
    "dependence.MINE": ("mine_lower_bound",),
    "dependence.MMDLoss": ("mmd",),
    "dependence.VonNeumannEntropy": ("von_neumann_entropy",),
    # estimators
    "estimators.DiffusionSpectralEntropy": (
        "diffusion_spectral_entropy",
        "diffusion_spectral_mutual_information",
    ),
    "estimators.ManifoldEntropyLoss": ("nearest_neighbor_entropy",),
    # ot
    "ot.LogSinkhorn": ("log_sinkhorn_correspondence",),
    "ot.Sinkhorn": ("sinkhorn",),
    "ot.SinkhornDivergence": ("sinkhorn_divergence",),
    "ot.SlicedWassersteinLoss": ("sliced_wasserstein",),
    "ot.SmoothOT": ("smooth_ot",),
    "ot.SparsityConstrainedOT": ("sparse_ot",),
    # rl
    "rl.LowProbabilityRegularizer": (
        "low_probability_loss",
        "min_p_proxy_logprobs",
        "selective_log_softmax",
    ),
    "rl.SelectiveEntropyRegularizer": ("selective_entropy", "anchored_penalty"),
    # nn
    "nn.ScalarCodebookQuantizer": ("scalar_quantize",),
    "nn.ProximalMatchingLoss": ("proximal_matching_loss",),
    "nn.LatentQueryAlignmentLoss": ("latent_query_alignment",),
    "nn.WaveBlock": ("wave_block",),
    "nn.CRReLU": ("crrelu",),
    "nn.DualLatentPrior": ("gaussian_latent_loss",),
    "nn.WeightCompander": ("compand",),
    # optim
    "optim.CompositionalNLL": ("compositional_nll",),
}

# Public Modules without a function counterpart, and why.
NOT_PAIRED: dict[str, str] = {
    "losses.ABMIL": "a network (gated attention MIL pooling with learned weights)",
    "losses.AdaptiveDeviationScale": "a layer with learned scale and bias, no functional form",
    "losses.LegoGCDLoss": "composite objective: SimGCD's terms + DKL + LER with its own state",
    "losses.SimGCDLoss": "composite objective: four SimGCD terms with a teacher schedule",
    "dependence.DistanceCovarianceFairness": "switches between three dependence measures",
    "dependence.MCRRegularizer": "a permutation game over several JSD estimates",
    "dependence.MIDLoss": "cross-entropy + beta * vib_kl on a VIBHead output",
    "dependence.ModalityAlignmentLoss": "MMD + a sum of InfoNCE terms with their own weights",
    "dependence.VIBHead": "a network (stochastic bottleneck head)",
    "estimators.EmbeddingMemory": "a state container (FIFO buffer of embeddings)",
    "rl.ArbitraryEntropyController": "AEPO's controller: temperature state + REINFORCE term",
    "rl.EntropyBonus": "-coef * aggregate(token_entropy(logits, temperature), mask, mode)",
    "rl.EntropySmoothingRegularizer": "EPO's composite term with a per-turn entropy history",
    "rl.TurnEntropyHistory": "a state container (per-turn entropy means)",
    "nn.AttentiveWaveBlock": "a network (WaveBlock after a learned CBAM/non-local attention)",
    "nn.CBAM": "a network (channel and spatial attention with learned weights)",
    "nn.NonLocalBlock2d": "a network (non-local self-attention with learned projections)",
    "nn.ICNNPotential": "a network (input-convex potential with learned weights)",
    "nn.LearnedProximalNet": "a network (gradient of a learned convex potential)",
    "nn.LatentQueryPooling": "a network (learned queries attending over a sequence)",
    "nn.BetaNoiseMaskPolicy": "a network (policy head emitting Beta parameters)",
    "robust.RandomizedSmoothing": "a certification wrapper around the user's classifier",
    "robust.DualRandomizedSmoothing": "a certification wrapper around two classifiers",
    "diffusion.GaussianMixtureDenoiser": "a model (the exact denoiser of a Gaussian mixture)",
    "quant.EntropyBlockPTQ": "a calibration procedure over a model's blocks, with state",
}

# Genuine differences, each with its reason.
# Constructor parameters the functions do not have:
MODULE_ONLY: dict[str, dict[str, str]] = {
    "losses.AttentionEntropyMaximization": {"weight": "lambda of the AEM term"},
    "losses.ArchitectureEntropyRegularizer": {"coefficient": "multiplier c of the schedule"},
    "losses.ContrastivePartialRankingDistillation": {
        "weight": "beta of the CPRD term",
        "include_itc": "adds the ITC loss of the same similarities",
    },
    "losses.HeadwiseAttentionEntropyRegularizer": {
        "num_layers": "state size: the learnable threshold matrix is (L, H)",
        "num_heads": "state size",
        "init_threshold": "initial value of the learnable thresholds",
    },
    "losses.ProgressiveSelfDistillation": {
        "num_samples": "state size: per-sample prediction memory",
        "num_classes": "state size",
    },
    "losses.SourceFreeAdaptationLoss": {
        "prior": "a stored prior, used when forward is given none",
        "entropy_weight": "weight of the entropy term of the objective",
        "kl_weight": "weight of the KL term of the objective",
    },
    "dependence.CSIBLoss": {
        "beta": "compression weight of the CS-IB objective",
        "normalized_qmi": "cs_quadratic_mi's normalized, named for the objective",
    },
    "dependence.DistanceCorrelationLoss": {
        "statistic": "selects distance_correlation_sqr or distance_covariance_sqr",
        "weight": "loss multiplier",
    },
    "dependence.HSICLoss": {"normalized": "selects cka instead of hsic", "weight": "multiplier"},
    "dependence.InfoNCELoss": {"weight": "loss multiplier"},
    "dependence.MINE": {
        "critic": "the critic network that produces t_joint and t_marginal",
        "ema_rate": "state: moving average of the bias-corrected DV gradient",
    },
    "dependence.MMDLoss": {"weight": "loss multiplier"},
    "dependence.VonNeumannEntropy": {
        "weight": "loss multiplier",
        "entropy_sign": "maximise (paper) or minimise (code) the entropy",
    },
    "estimators.ManifoldEntropyLoss": {
        "dim": "state size: the embedding memory",
        "memory_size": "state size",
        "weight": "lambda of the entropy term",
        "warmup_epochs": "linear warm-up of the weight",
        "legacy_slotwise": "the authors' slot-wise memory (a memory layout, not an estimator)",
        "batch_size": "slot size of the legacy memory",
    },
    "ot.SlicedWassersteinLoss": {
        "bidirectional": "Le et al.'s second (P_yx X, Y) term",
        "weight": "loss multiplier",
        "reduction": "over the batch of shape pairs",
    },
    "nn.ScalarCodebookQuantizer": {
        "n_latents": "state size: the learnable codebook is (n_latents, n_values)",
        "n_values": "state size",
        "low": "initial codebook range",
        "high": "initial codebook range",
    },
    "nn.CRReLU": {"learnable": "eps is a learned parameter (the paper's) or a buffer"},
    "nn.DualLatentPrior": {
        "up_weight": "weight of the upscaling latent's term",
        "down_weight": "weight of the downscaling latent's term",
    },
    "nn.WeightCompander": {"learnable": "a and b are learned parameters or buffers"},
    "nn.LatentQueryAlignmentLoss": {
        "dim": "state size: the learned queries pool (B, T, dim) sequences",
        "num_queries": "state size of the pooling",
        "num_heads": "attention heads of the pooling",
    },
}

# Function hyper-parameters the Module does not expose:
FUNCTION_ONLY: dict[str, dict[str, str]] = {
    "losses.AttentionEntropyMaximization": {"reduction": "the AEM term is the mean over bags"},
    "losses.ArchitectureEntropyRegularizer": {
        "alpha_logits": "input, one tensor per edge of forward's alphas",
        "dim": "architecture logits are given with the candidates last",
        "reduction": "the term sums the edges' entropies (the paper's)",
    },
    "losses.ContrastivePartialRankingDistillation": {
        "student_scores": "input, named student_sim in forward",
        "teacher_scores": "input, named teacher_sim in forward",
        "positive_mask": "in-batch retrieval: the positives are the diagonal",
        "reduction": "the term is a mean over queries",
    },
    "losses.HeadwiseAttentionEntropyRegularizer": {
        "attn_probs": "input, one tensor per layer of forward's attentions",
        "threshold": "state: the learnable (L, H) thresholds",
    },
    "losses.ProgressiveSelfDistillation": {
        "past_probs": "state: read from the prediction memory",
        "alpha": "computed by pskd_alpha from the epoch (set_epoch)",
    },
    "losses.QuantizationNoise": {"generator": "the noise is drawn from torch's global RNG"},
    "losses.SourceFreeAdaptationLoss": {"reduction": "the objective is a mean over the batch"},
    "dependence.CSIBLoss": {
        "sigma_x": "one kernel width sigma for every variable (None)",
        "sigma_t": "one kernel width sigma for every variable (None)",
        "normalized": "exposed as normalized_qmi",
    },
    "dependence.MINE": {
        "t_joint": "critic output computed by the Module",
        "t_marginal": "critic output computed by the Module",
    },
    "estimators.DiffusionSpectralEntropy": {
        # Known drift, not fixed here: exposing them touches forward, compute and
        # compute_mutual_information, beyond a constructor change in a family others edit.
        "rank": "not yet exposed (drift)",
        "chunk_size": "not yet exposed (drift)",
        "n_clusters": "not yet exposed (drift)",
    },
    "estimators.ManifoldEntropyLoss": {"memory": "state: the Module's embedding memory"},
    "ot.SlicedWassersteinLoss": {
        "a": "the loss uses uniform weights",
        "b": "the loss uses uniform weights",
        "projections": "fresh directions per forward and batch element (the authors' code)",
        "seed": "directions come from forward's generator",
    },
    "rl.LowProbabilityRegularizer": {
        "logp": "computed from forward's logits and tokens",
        "proxy_logp": "computed from the old logits by min_p_proxy_logprobs",
        "chunk_size": "not exposed: the proxy and log-probs use their default chunking",
    },
    "rl.SelectiveEntropyRegularizer": {
        "anchor": "state: the anchor buffer set at the first call",
    },
    "nn.ScalarCodebookQuantizer": {"codebook": "state: the learnable codebook parameter"},
    "nn.LatentQueryAlignmentLoss": {
        "pooled_pred": "computed by the Module's pooling from forward's h_pred",
        "pooled_gold": "computed by the Module's pooling from forward's h_gold",
    },
    "nn.DualLatentPrior": {"z": "input: forward's z_up and z_down, one call each"},
    "nn.WaveBlock": {"start": "each forward draws its strip from the Module's generator"},
    "optim.CompositionalNLL": {"log_u": "state: the moving average kept in a buffer"},
}

# Defaults that differ on purpose: (Module default, function default) and why.
DEFAULTS_DIFFER: dict[str, dict[str, str]] = {
    "losses.ArchitectureEntropyRegularizer": {
        "total_epochs": "QuantNAS's 20 search epochs; the schedule function requires it"
    },
    "losses.ProgressiveSelfDistillation": {
        "total_epochs": "PS-KD's 300 epochs; pskd_alpha requires it"
    },
    "losses.QuantizationNoise": {
        "bits": "the candidate bit-widths (one call per entry) vs one bit-width (no default)"
    },
    "dependence.CSIBLoss": {"bits": "the objective in bits, as the authors' training code"},
    "ot.SlicedWassersteinLoss": {"n_projections": "200, the authors' value; POT's 50 for SW"},
    "rl.LowProbabilityRegularizer": {
        "eps_low": "Lp-Reg's recipe (ratio clamped to [0, 10]); the function keeps PPO's 0.2",
        "eps_high": "Lp-Reg's recipe; the function keeps PPO's 0.2",
    },
}

FAMILIES = inforeg.FAMILIES


def _public_modules() -> list[str]:
    out = []
    for fam in FAMILIES:
        mod = importlib.import_module(f"inforeg.{fam}")
        for name in mod.__all__:
            obj = getattr(mod, name)
            if inspect.isclass(obj) and issubclass(obj, torch.nn.Module):
                out.append(f"{fam}.{name}")
    return out


def _resolve(key: str) -> Any:
    fam, name = key.split(".")
    return getattr(importlib.import_module(f"inforeg.{fam}"), name)


def _params(fn: Any) -> dict[str, Any]:
    return {
        n: p.default
        for n, p in inspect.signature(fn).parameters.items()
        if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _inputs(cls: type) -> set[str]:
    """Parameters of the Module's forward and other public methods: the data it is called on."""
    names: set[str] = set()
    for attr, member in vars(cls).items():
        if callable(member) and (attr == "forward" or not attr.startswith("_")):
            names |= set(_params(member))
    return names


def test_every_public_module_is_classified():
    modules = _public_modules()
    unclassified = [m for m in modules if m not in PAIRS and m not in NOT_PAIRED]
    assert not unclassified, (
        f"pair these Modules with their functions or say why not: {unclassified}"
    )
    both = [m for m in modules if m in PAIRS and m in NOT_PAIRED]
    assert not both, both
    stale = [m for m in (*PAIRS, *NOT_PAIRED) if m not in modules]
    assert not stale, f"no such public Module: {stale}"
    for table in (MODULE_ONLY, FUNCTION_ONLY, DEFAULTS_DIFFER):
        stale = [m for m, entries in table.items() if m not in PAIRS or not entries]
        assert not stale, f"exceptions for Modules that are not paired, or empty: {stale}"


@pytest.mark.parametrize("key", sorted(PAIRS))
def test_module_exposes_the_function_hyper_parameters(key):
    cls = _resolve(key)
    fam = key.split(".")[0]
    init = _params(cls.__init__)
    inputs = _inputs(cls)
    hyper: dict[str, Any] = {}
    for name in PAIRS[key]:
        fn = _resolve(f"{fam}.{name}")
        for p, default in _params(fn).items():
            if p not in inputs:
                hyper.setdefault(p, default)
    module_only = MODULE_ONLY.get(key, {})
    function_only = FUNCTION_ONLY.get(key, {})
    extra = sorted(set(init) - set(hyper) - set(module_only))
    missing = sorted(set(hyper) - set(init) - set(function_only))
    assert not extra, f"{key}: constructor parameters the function lacks: {extra}"
    assert not missing, f"{key}: function hyper-parameters the Module lacks: {missing}"
    # Listed exceptions must be real: a fixed drift leaves a stale entry that would hide nothing.
    assert not set(module_only) - (set(init) - set(hyper)), f"{key}: stale MODULE_ONLY entry"
    assert not set(function_only) - (set(hyper) - set(init)), f"{key}: stale FUNCTION_ONLY entry"
    differ = DEFAULTS_DIFFER.get(key, {})
    for p in sorted(set(init) & set(hyper)):
        same = repr(init[p]) == repr(hyper[p])
        if p in differ:
            assert not same, f"{key}: stale DEFAULTS_DIFFER entry for {p!r}"
        else:
            assert same, (
                f"{key}: default of {p!r} is {init[p]!r} in the Module, {hyper[p]!r} in the function"
            )


def test_added_parameters_reach_the_function():
    # The constructor parameters added to fix drifts outside ot/ (ot/ has its own tests).
    from inforeg.dependence import InfoNCELoss, infonce
    from inforeg.losses import AdversarialCompSumLoss, adversarial_comp_sum_loss

    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    y = torch.randn(6, 4, generator=g, dtype=torch.float64)
    per_row = InfoNCELoss(weight=2.0, reduction="none")(x, y)
    assert per_row.shape == (6,)
    torch.testing.assert_close(per_row, 2.0 * infonce(x, y, reduction="none"))

    model = torch.nn.Linear(4, 3).double()
    targets = torch.tensor([0, 1, 2, 0, 1, 2])
    values = []
    for init_std in (1e-3, 0.5):
        torch.manual_seed(1)
        m = AdversarialCompSumLoss(steps=0, init_std=init_std)(model, x, targets)
        torch.manual_seed(1)
        f = adversarial_comp_sum_loss(model, x, targets, steps=0, init_std=init_std)
        torch.testing.assert_close(m, f)
        values.append(float(m.detach()))
    assert values[0] != values[1]  # the setting took effect
