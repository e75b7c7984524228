"""QLAE vs an autoencoder on generated sprites: InfoM and InfoE on held-out images.

Protocol 2: every seed draws its own train/validation/test sprites (continuous sub-pixel jitter,
so no image repeats); both arms tune their AdamW weight decay on the same grid and pick the point
with the best validation (InfoM + InfoE) / 2; test metrics at that point. Both models' InfoM is
read with one estimator (plug-in MI on 10-valued codes: QLAE's codebook indices, the AE's latents
cut at the deciles of the probe-fit images), and InfoE's probes are fitted on training images and
scored on other images.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.progress import step
from inforeg.lab.experiments.protocol import Selected, tune_arms

SIDE = 16
SIZES = (1.5, 2.0, 2.5, 3.0, 3.5)  # half-widths in pixels
N_SHAPES, N_POSITIONS = 3, 8  # square, disc, plus; centres 4..12 px on each axis
POS_JITTER, SIZE_JITTER = 0.3, 0.1  # uniform +-, in pixels: below half a factor step
SPLITS = {"train": 6000, "validation": 2000, "test": 5000}
QUICK_SPLITS = {"train": 600, "validation": 200, "test": 400}
PROBE_FIT = 3000  # training images whose latents fit InfoE's probes (and the AE's deciles)
N_VALUES = 10  # codebook values per QLAE latent, deciles per AE latent
STEPS, QUICK_STEPS, BATCH, LR = 4000, 60, 128, 1e-3
# AdamW weight decay: 0.1 is the paper's rate (lr * wd * steps = 20 over its 2e5 steps); 5.0
# gives the paper's total decay, lr * wd * steps = 20, within our 4000 steps.
GRID = {"weight_decay": [0.1, 5.0]}
ARMS = ("AE", "QLAE")
GRIDS = {arm: GRID for arm in ARMS}
BIAS_FLOOR = 0.02  # largest NMI of the codes with a shuffled source: half the n = 200 floor
CEILING = 0.9


def sprites(n: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` anti-aliased 16x16 sprites and their factors (shape, size, x, y) as integers.

    Factors are drawn uniformly (3 x 5 x 8 x 8 = 960 combinations); every image adds uniform
    sub-pixel jitter to its centre (+-0.3 px, a factor step is 8/7 px) and size (+-0.1 px, a
    step is 0.5 px), so images do not repeat. Pixel value = clip(0.5 - signed distance, 0, 1).
    """
    shape = torch.randint(0, N_SHAPES, (n,), generator=generator)
    size = torch.randint(0, len(SIZES), (n,), generator=generator)
    px = torch.randint(0, N_POSITIONS, (n,), generator=generator)
    py = torch.randint(0, N_POSITIONS, (n,), generator=generator)
    jitter = torch.rand(n, 3, generator=generator) * 2 - 1
    step_ = 8.0 / (N_POSITIONS - 1)
    cx = (4.0 + step_ * px + POS_JITTER * jitter[:, 0]).view(n, 1, 1)
    cy = (4.0 + step_ * py + POS_JITTER * jitter[:, 1]).view(n, 1, 1)
    r = (torch.tensor(SIZES)[size] + SIZE_JITTER * jitter[:, 2]).view(n, 1, 1)
    u = torch.arange(SIDE, dtype=torch.float32) + 0.5
    dx, dy = (u.view(1, 1, SIDE) - cx).abs(), (u.view(1, SIDE, 1) - cy).abs()
    arm = (r / 3).clamp_min(0.5)
    sdf = torch.stack(
        [
            torch.maximum(dx, dy) - r,  # square
            torch.sqrt(dx**2 + dy**2) - r,  # disc
            torch.minimum(torch.maximum(dx - r, dy - arm), torch.maximum(dx - arm, dy - r)),  # plus
        ]
    )
    sdf = sdf.gather(0, shape.view(1, n, 1, 1).expand(1, n, SIDE, SIDE))[0]
    images = (0.5 - sdf).clamp(0.0, 1.0).reshape(n, SIDE * SIDE)
    return images, torch.stack([shape, size, px, py], 1)


def _model(n_z: int) -> nn.ModuleList:
    from inforeg.nn import ScalarCodebookQuantizer

    d = SIDE * SIDE
    enc = nn.Sequential(nn.Linear(d, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU())
    enc.append(nn.Linear(64, n_z))
    dec = nn.Sequential(nn.Linear(n_z, 64), nn.ReLU(), nn.Linear(64, 128), nn.ReLU())
    dec.append(nn.Linear(128, d))
    return nn.ModuleList([enc, dec, ScalarCodebookQuantizer(n_z, N_VALUES)])


def _forward(model: nn.ModuleList, arm: str, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(reconstruction logits, auxiliary loss, latent codes: indices for QLAE, z for AE)."""
    enc, dec, quant = model
    z = enc(x)
    if arm == "AE":
        return dec(z), z.new_zeros(()), z
    out = quant(z)
    return dec(out.z_hat), 0.01 * (out.quantization_loss + out.commitment_loss), out.indices


def _codes(arm: str, z: Tensor, z_fit: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Active latents' 10-valued codes on the scored and probe-fit images, and the mask.

    QLAE: codebook indices, active when they take more than one value (the authors' rule).
    AE: active when its range exceeds 1/20 of the largest range (the authors' rule), cut at
    the deciles of the probe-fit images.
    """
    rng = (z.max(0).values - z.min(0).values).double()
    active = rng > 0 if arm == "QLAE" else rng > rng.max() / 20
    if not active.any():  # a collapsed code: keep the constant latents, InfoMEC scores them 0
        active = torch.ones_like(active)
    if arm == "QLAE":
        return z[:, active], z_fit[:, active], active
    q = torch.linspace(0, 1, N_VALUES + 1)[1:-1]
    edges = torch.quantile(z_fit[:, active], q, dim=0).T.contiguous()  # (n_active, 9)
    zs, zf = z[:, active].T.contiguous(), z_fit[:, active].T.contiguous()
    return torch.searchsorted(edges, zs).T, torch.searchsorted(edges, zf).T, active


def _evaluate(
    model: nn.ModuleList,
    arm: str,
    x: Tensor,
    s: Tensor,
    x_fit: Tensor,
    s_fit: Tensor,
    gen: torch.Generator,
) -> dict[str, float]:
    from threadpoolctl import threadpool_limits

    from inforeg.estimators import infomec, normalized_mutual_information_matrix

    model.eval()
    with torch.no_grad():
        logits, _, z = _forward(model, arm, x)
        _, _, z_fit = _forward(model, arm, x_fit)
        bce = float(F.binary_cross_entropy_with_logits(logits, x))
    codes, codes_fit, active = _codes(arm, z, z_fit)
    model.train()
    with threadpool_limits(1):  # the experiment runs single-threaded, BLAS included
        res = infomec(codes, s, discrete_latents=True, infoe_fit=(codes_fit, s_fit))
        shuffled = s[torch.randperm(s.shape[0], generator=gen)]
        floor = normalized_mutual_information_matrix(codes, shuffled, True).max()
        out = {
            "InfoM": res.infom,
            "InfoC": res.infoc,
            "InfoE": res.infoe,
            "InfoE (one-hot 10-valued codes)": res.infoe,
            "InfoM (paper's estimators: k-NN MI for the AE)": res.infom,
            "reconstruction BCE": bce,
            "active latents": float(active.sum()),
            "NMI with a shuffled source (max)": float(floor),
        }
        if arm == "AE":  # the paper's AE scores: continuous latents, k-NN MI, linear probes
            cont = infomec(z.double(), s, discrete_latents=False, infoe_fit=(z_fit.double(), s_fit))
            out["InfoE"] = cont.infoe
            out["InfoM (paper's estimators: k-NN MI for the AE)"] = cont.infom
    return out


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.nn import qlae_param_groups

    sizes = QUICK_SPLITS if quick else SPLITS
    steps = QUICK_STEPS if quick else STEPS
    n_fit = min(PROBE_FIT, sizes["train"] // 2)
    data_gen = torch.Generator().manual_seed(1000 + seed)
    x_tr, s_tr = sprites(sizes["train"], data_gen)
    x_val, s_val = sprites(sizes["validation"], data_gen)
    x_te, s_te = sprites(sizes["test"], data_gen)
    x_fit, s_fit = x_tr[:n_fit], s_tr[:n_fit]
    n_z = 2 * s_tr.shape[1]  # twice the number of sources, as the paper

    def fit(arm: str, point: dict[str, Any]) -> Selected:
        torch.manual_seed(seed)  # same initialisation and batches for every arm and point
        gen = torch.Generator().manual_seed(seed)
        model = _model(n_z)
        groups = qlae_param_groups(model, point["weight_decay"])
        opt = torch.optim.AdamW(groups, lr=LR, fused=True)  # one kernel per step on CPU
        decayed = groups[0]["params"]
        for it in range(steps):
            idx = torch.randint(0, x_tr.shape[0], (BATCH,), generator=gen)
            logits, aux, _ = _forward(model, arm, x_tr[idx])
            loss = F.binary_cross_entropy_with_logits(logits, x_tr[idx]) + aux
            opt.zero_grad(set_to_none=True)
            loss.backward()
            # the authors clip the weight-decayed group elementwise to [-1, 1] (optax.clip)
            grads = [p.grad for p in decayed if p.grad is not None]
            torch._foreach_clamp_min_(grads, -1.0)
            torch._foreach_clamp_max_(grads, 1.0)
            opt.step()
            if (it + 1) % 500 == 0:
                step(it + 1, steps, "step")
        val = _evaluate(model, arm, x_val, s_val, x_fit, s_fit, gen)
        score = (val["InfoM"] + val["InfoE"]) / 2
        return Selected(score, {f"validation {k}": v for k, v in val.items()}, steps, {"m": model})

    tuned = tune_arms(GRIDS, fit)
    metrics: dict[str, dict[str, float]] = {}
    for arm, (_, sel) in tuned.items():
        gen = torch.Generator().manual_seed(seed)
        test = _evaluate(sel.extras["m"], arm, x_te, s_te, x_fit, s_fit, gen)
        metrics[arm] = {**test, "validation (InfoM + InfoE) / 2": sel.score}
    floor = max(metrics[a]["NMI with a shuffled source (max)"] for a in ARMS)
    regime = {
        "AE test InfoM": metrics["AE"]["InfoM"],
        "AE test InfoE": metrics["AE"]["InfoE"],
        "plug-in bias floor": floor,
    }
    return SeedResult(metrics, tuning=tuned.points(), regime=regime, splits=dict(sizes))


PAPER = (
    "Hsu et al. 2023 (Shapes3D, MPI3D, Falcor3D, Isaac3D; conv AE with n_z = 2 n_s latents, "
    "10 values each, AdamW lr 1e-3 wd 0.1, batch 128, 2e5 steps; InfoMEC on 10k validation "
    "images, QLAE by plug-in MI, AE by k-NN MI): 'latent quantization dramatically improves "
    "the modularity and explicitness of learned representations'; 'QLAE consistently "
    "outperforms strong methods from prior work in these key disentanglement properties "
    "without compromising data reconstruction' (abstract; the vanilla AE is the ablation "
    "without quantisation). "
)
REGIME_BIAS = "plug-in bias negligible"

EXPERIMENT = Experiment(
    name="qlae-synthetic",
    summary=(
        "QLAE quantises each latent dimension to a learnable 10-value scalar codebook "
        "(straight-through, quantisation and commitment losses at weight 0.01) and trains with "
        "high AdamW weight decay on every weight except biases and codebooks; compared with "
        "the same autoencoder without quantiser, on InfoM (modularity) and InfoE "
        "(explicitness) of held-out images."
    ),
    setup=(
        "Generated 16x16 sprites, 4 factors: shape (square, disc, plus), size (half-width "
        "1.5-3.5 px, 5 values), x and y centre (8 values each, 4-12 px); factors drawn "
        "uniformly, with uniform sub-pixel jitter (+-0.3 px on the centre, +-0.1 px on the "
        "size) so no image repeats; anti-aliased grey levels. Each seed draws its own "
        "6000 / 2000 / 5000 train / validation / test images (600 / 200 / 400 with --quick). "
        "MLP encoder 256-128-64-8 and decoder 8-64-128-256 (ReLU), 8 = 2 x 4 latents, BCE "
        "with logits, AdamW lr 1e-3 with weight decay on weights only (biases and codebooks "
        "undecayed), the decayed group's gradients clipped elementwise to [-1, 1] (the "
        "authors' code), batch 128 drawn with replacement, 4000 steps (60 with --quick). "
        "QLAE: 10-value codebooks from linspace(-0.5, 0.5), quantisation and commitment "
        "losses at 0.01. AE: the same network without the quantiser. Both arms tune the "
        "weight decay over {0.1 (the paper's rate), 5.0 (the paper's total decay lr x wd x "
        "steps = 20 within 4000 steps)} and keep the point with the best validation "
        "(InfoM + InfoE) / 2; no early stopping (weight decay acts over the whole run). "
        "InfoM and InfoC: plug-in MI on 10-valued codes for both models (QLAE's codebook "
        "indices; the AE's active latents cut at the deciles of the probe-fit images), "
        "normalised by H(s), active latents by the authors' rules (a QLAE code taking more "
        "than one value; an AE latent whose range exceeds 1/20 of the largest). InfoE: "
        "unpenalised balanced logistic regressions fitted on the latents of 3000 training "
        "images and scored on the evaluation images, on each model's own latents as in the "
        "paper (one-hot codes for QLAE, standardised continuous latents for the AE). The "
        "paper's mixed estimators (k-NN MI for the AE's InfoM) and the AE's InfoE from "
        "one-hot decile codes are reported beside them. The earlier version (all 200 images "
        "of a 12x12 set, scored in-sample, 3000 steps, QLAE by plug-in and AE by k-NN MI) "
        "could not tell the estimators' bias from the models (audit A). The design was "
        "fixed before a one-seed pilot that measured the CPU time (about 60 s per seed); "
        "after it only the optimiser's kernel (fused AdamW, the same update), the --quick "
        "sizes and a guard for fully collapsed codes (scored 0) changed. Recorded (10 seeds, "
        "419 s CPU): the regime is present (AE test InfoM 0.46, InfoE 0.71; shuffled-source "
        "NMI 0.004); both arms chose weight decay 0.1 in every seed and QLAE kept all 8 "
        "latents active (no pruning). InfoM: QLAE 0.49 vs AE 0.46, +0.03 [-0.04, 0.10] "
        "(6/10, inconclusive; with the paper's mixed estimators the AE reads 0.40). InfoE: "
        "QLAE 0.60 vs AE 0.71, -0.12 [-0.14, -0.10] (0/10, did not hold): a linear probe "
        "reads the AE's continuous latents better than QLAE's one-hot codes here (the AE's "
        "decile codes read 0.48). At 4000 steps of an MLP on 16x16 sprites the strong weight "
        "decay that drives QLAE's parsimony lost on validation, so the paper's mechanism "
        "(2e5 steps, conv nets) was not reached at this scale."
    ),
    claims=(
        Claim(
            "InfoM",
            "QLAE",
            "AE",
            True,
            "QLAE latents are more modular (InfoM) than an AE's",
            regime=("AE InfoM below ceiling", REGIME_BIAS),
            paper=PAPER + "Here: test InfoM, one plug-in estimator for both models.",
        ),
        Claim(
            "InfoE",
            "QLAE",
            "AE",
            True,
            "QLAE latents are more explicit (InfoE) than an AE's",
            regime=("AE InfoE below ceiling",),
            paper=PAPER + "Here: test InfoE from probes fitted on training images.",
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "AE InfoM below ceiling",
            "AE test InfoM",
            f"the AE's latents are entangled: its test InfoM is below {CEILING}",
            CEILING,
            above=False,
        ),
        RegimeCheck(
            "AE InfoE below ceiling",
            "AE test InfoE",
            f"the AE's latents are not already linearly explicit: its test InfoE is below "
            f"{CEILING}",
            CEILING,
            above=False,
        ),
        RegimeCheck(
            REGIME_BIAS,
            "plug-in bias floor",
            "the plug-in estimator's bias is small on the test set: the largest NMI between "
            f"either model's codes and a shuffled source is below {BIAS_FLOOR} (at 200 images "
            "it was 0.03-0.06 in every cell, audit A)",
            BIAS_FLOOR,
            above=False,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "per arm, the weight decay with the best (InfoM + InfoE) / 2 on the validation images "
        "(InfoE probes fitted on training images); no early stopping"
    ),
    run_seed=run_seed,
    requires=("sklearn",),  # InfoE's logistic regressions
)
