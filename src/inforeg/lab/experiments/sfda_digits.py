"""SFDA on digits with an imbalanced target: entropy vs entropy + KL(class ratio || prior).

Protocol 2. Per seed: digits split into a source half and a target half. The source model (one
per seed, shared by every arm) is trained on 80% of the source half and its epoch selected on
the other 20%. The target half is shifted (rotation, contrast, noise) and made imbalanced (class
ratios 0.7^rank, a random class ranking per seed: 25:1 between the largest and smallest class),
then split into unlabelled adaptation images, a small labelled validation split (selection only)
and a test split. Arms: the source model, entropy minimisation alone, and entropy + KL(batch class
ratio || prior) with the true target ratio (an oracle), the uniform prior (the classical
information-maximisation loss) or a misspecified prior (the true ratio with each class scaled by
1 +- 0.3, renormalised). Every adapting arm tunes Adam's learning rate over the same 3-point grid
and its stopping epoch (epoch 0 = the source model) on validation accuracy.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.metrics import accuracy
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import make_mlp, minibatches, seed_everything, train_epoch

ROTATION_DEG = 15.0
CONTRAST = 0.7
NOISE_STD = 2.0  # on the raw 0..16 pixel scale
DECAY = 0.7  # class ratio of the rank-r class: DECAY**r (relative to the largest class)
MISSPEC = 0.3
K = 10

SOURCE, ENT = "source-only", "entropy"
TRUE_P, UNIF_P, MIS_P = (
    "entropy + KL(true prior)",
    "entropy + KL(uniform)",
    "entropy + KL(±30% prior)",
)
LR_GRID = [1e-4, 3e-4, 1e-3]
GRIDS: dict[str, dict[str, list[Any]]] = {
    SOURCE: {},
    ENT: {"lr": LR_GRID},
    TRUE_P: {"lr": LR_GRID},
    UNIF_P: {"lr": LR_GRID},
    MIS_P: {"lr": LR_GRID},
}


def shift_images(images: Tensor, seed: int) -> Tensor:
    """Target domain: rotate each 8x8 digit by +-ROTATION_DEG, lower the contrast, add noise."""
    g = torch.Generator().manual_seed(seed)
    n = images.shape[0]
    sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    angle = sign * math.radians(ROTATION_DEG)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack(
        [torch.stack([cos, -sin, torch.zeros(n)], 1), torch.stack([sin, cos, torch.zeros(n)], 1)], 1
    )
    grid = F.affine_grid(theta, [n, 1, 8, 8], align_corners=False)
    rotated = F.grid_sample(images.unsqueeze(1), grid, align_corners=False).squeeze(1)
    contrasted = 8.0 + CONTRAST * (rotated - 8.0)
    return contrasted + NOISE_STD * torch.randn(rotated.shape, generator=g)


def load_domains(seed: int) -> dict[str, Tensor]:
    """Source train/validation and imbalanced, shifted target adapt/validation/test splits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_src, x_tgt, y_src, y_tgt = train_test_split(
        x, y, test_size=0.5, stratify=y, random_state=seed
    )
    g = torch.Generator().manual_seed(5000 + seed)
    rank = torch.randperm(K, generator=g)  # rank[c]: 0 = the largest class
    keep: list[int] = []
    for c in range(K):
        idx = [i for i in range(len(y_tgt)) if y_tgt[i] == c]
        keep += idx[: max(2, round(len(idx) * DECAY ** int(rank[c])))]
    x_tgt, y_tgt = x_tgt[keep], y_tgt[keep]
    xs = torch.as_tensor(x_src, dtype=torch.float32)
    xt = shift_images(torch.as_tensor(x_tgt, dtype=torch.float32).view(-1, 8, 8), seed).flatten(1)
    mean, std = xs.mean(0), xs.std(0).clamp_min(1.0)
    xs, xt = (xs - mean) / std, (xt - mean) / std
    ys, yt = torch.as_tensor(y_src), torch.as_tensor(y_tgt)
    s_tr, s_va = train_test_split(
        torch.arange(len(ys)).numpy(), test_size=0.2, stratify=ys.numpy(), random_state=seed
    )
    t_rest, t_te = train_test_split(
        torch.arange(len(yt)).numpy(), test_size=0.3, stratify=yt.numpy(), random_state=seed
    )
    t_ad, t_va = train_test_split(
        t_rest, test_size=0.25, stratify=yt.numpy()[t_rest], random_state=seed
    )
    out = {"xs": xs[s_tr], "ys": ys[s_tr], "xs_val": xs[s_va], "ys_val": ys[s_va]}
    for name, ix in (("adapt", t_ad), ("val", t_va), ("test", t_te)):
        out[f"xt_{name}"], out[f"yt_{name}"] = xt[ix], yt[ix]
    return out


def _priors(yt: Tensor, seed: int) -> dict[str, Tensor]:
    true = torch.bincount(yt, minlength=K).float() / yt.shape[0]
    g = torch.Generator().manual_seed(9000 + seed)
    sign = torch.where(torch.rand(K, generator=g) < 0.5, -1.0, 1.0)
    mis = true * (1.0 + MISSPEC * sign)
    return {TRUE_P: true, UNIF_P: torch.full((K,), 1.0 / K), MIS_P: mis / mis.sum()}


def _ratio_error(model: torch.nn.Module, x: Tensor, true: Tensor) -> float:
    """L1 distance between the predicted (argmax) class ratio and the true ratio."""
    with torch.no_grad():
        counts = torch.bincount(model(x).argmax(1), minlength=K).float() / x.shape[0]
    return float((counts - true).abs().sum())


def _source_model(d: dict[str, Tensor], seed: int, epochs: int) -> dict[str, Tensor]:
    gen = seed_everything(seed)
    model = make_mlp(d["xs"].shape[1], 128, K, depth=2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    best = BestOnValidation(higher_is_better=True)
    state: dict[str, Tensor] = {}
    for epoch in range(epochs):
        model.train()
        train_epoch(
            opt, len(d["xs"]), 64, gen, lambda i: F.cross_entropy(model(d["xs"][i]), d["ys"][i])
        )
        model.eval()
        with torch.no_grad():
            val = accuracy(model(d["xs_val"]), d["ys_val"])
        if best.update(epoch, val, lambda: {}):
            state = {n: p.detach().clone() for n, p in model.state_dict().items()}
    state["_val"] = torch.tensor(best.score)
    return state


def _adapt(
    arm: str,
    lr: float,
    d: dict[str, Tensor],
    state: dict[str, Tensor],
    prior: Tensor | None,
    true: Tensor,
    seed: int,
    epochs: int,
) -> Selected:
    from inforeg.losses import class_ratio_prior_kl, entropy_minimization

    model = make_mlp(d["xs"].shape[1], 128, K, depth=2)
    model.load_state_dict({k: v for k, v in state.items() if k != "_val"})
    model.eval()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 77)
    best = BestOnValidation(higher_is_better=True)

    def evaluate() -> dict[str, float]:
        with torch.no_grad():
            acc = accuracy(model(d["xt_test"]), d["yt_test"])
        return {
            "target accuracy": acc,
            "class-ratio L1 error": _ratio_error(model, d["xt_test"], true),
        }

    def check(epoch: int) -> None:
        with torch.no_grad():
            val = accuracy(model(d["xt_val"]), d["yt_val"])
        best.update(epoch, val, evaluate)

    check(0)
    for epoch in range(1, epochs + 1):
        model.train()
        for idx in minibatches(d["xt_adapt"].shape[0], 32, gen):
            logits = model(d["xt_adapt"][idx])
            loss = entropy_minimization(logits)
            if prior is not None:
                loss = loss + class_ratio_prior_kl(logits, prior)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        check(epoch)
    final_error = _ratio_error(model, d["xt_test"], true)
    return best.result(final_error=final_error)


def run_seed(seed: int, quick: bool) -> SeedResult:
    d = load_domains(seed)
    src_epochs, adapt_epochs = (8, 4) if quick else (30, 15)
    state = _source_model(d, seed, src_epochs)
    priors = _priors(torch.cat([d["yt_adapt"], d["yt_val"], d["yt_test"]]), seed)
    true = priors[TRUE_P]
    source = make_mlp(d["xs"].shape[1], 128, K, depth=2)
    source.load_state_dict({k: v for k, v in state.items() if k != "_val"})
    source.eval()
    with torch.no_grad():
        src_acc = accuracy(source(d["xt_test"]), d["yt_test"])
    metrics = {
        SOURCE: {
            "target accuracy": src_acc,
            "class-ratio L1 error": _ratio_error(source, d["xt_test"], true),
        }
    }
    tuned = tune_arms(
        {arm: grid for arm, grid in GRIDS.items() if arm != SOURCE},
        lambda arm, point: _adapt(
            arm, point["lr"], d, state, priors.get(arm), true, seed, adapt_epochs
        ),
    )
    metrics.update(tuned.metrics())
    tuning: dict[str, dict[str, Any]] = {SOURCE: {}, **tuned.points("epoch")}
    regime = {
        "accuracy lost to the shift": float(state["_val"]) - src_acc,
        "entropy-only class-ratio drift": tuned[ENT][1].extras["final_error"]
        - metrics[SOURCE]["class-ratio L1 error"],
        "L1 distance of the true ratio from uniform": float((true - priors[UNIF_P]).abs().sum()),
    }
    sizes = {
        "source train": len(d["ys"]),
        "source validation": len(d["ys_val"]),
        "target adaptation (unlabelled)": len(d["yt_adapt"]),
        "target validation": len(d["yt_val"]),
        "target test": len(d["yt_test"]),
    }
    return SeedResult(metrics, tuning=tuning, regime=regime, splits=sizes)


_PAPER = (
    "Bateson et al., Source-Free Domain Adaptation for Image Segmentation (MedIA 2022, arXiv "
    "2108.03152), abstract: 'minimizing a label-free entropy loss defined over target-domain "
    "data, which we further guide with a domain-invariant prior ... a class-ratio prior is "
    "estimated from anatomical knowledge and integrated in the form of a Kullback-Leibler (KL) "
    "divergence'; the prior-aware entropy minimisation 'yields comparable results to several "
    "state-of-the-art adaptation techniques' (Dice on spine, prostate and cardiac segmentation)"
)
_SHIFT, _DRIFT, _IMBALANCED = "shift costs accuracy", "entropy alone drifts", "target imbalanced"

EXPERIMENT = Experiment(
    name="sfda-digits",
    summary=(
        "Source-free adaptation of a digits classifier to a shifted, imbalanced target domain: "
        "entropy minimisation alone, or with KL(batch class ratio || prior) for the true (oracle), "
        "uniform or misspecified prior."
    ),
    setup=(
        "scikit-learn digits split 50/50 (stratified, per seed) into source and target halves. "
        "Source: MLP 64-128-128-10, Adam lr 1e-3, batch 64, 30 epochs (8 with --quick), epoch "
        "selected on a 20% source validation split; one source model per seed for every arm. "
        "Target: rotated by +-15 degrees, contrast 0.7, Gaussian noise (std 2 on the 0-16 "
        "scale), and subsampled to class ratios 0.7^rank (random ranking per seed; about 25:1, "
        "~280 images), then split 52.5/17.5/30 into unlabelled adaptation, labelled validation "
        "(selection only) and test images. Adaptation: Adam, batch 32, 15 epochs (4 with "
        "--quick), loss = entropy (+ KL(mean batch softmax || prior), the paper's mean form). "
        "The true prior is the target's exact class ratio: an ORACLE (the paper's prior is an "
        "anatomical size estimate); the misspecified prior scales each class of it by 1 + 0.3 "
        "or 1 - 0.3 (random signs per seed) and renormalises; the uniform prior makes the loss "
        "the classical information-maximisation loss (the protocol-1 experiment tested only "
        "that case, on a balanced target). Metrics on the target test split: accuracy and the "
        "L1 distance between the predicted (argmax) class ratio and the true one. Recorded (10 "
        "seeds): source 0.408, entropy alone 0.407 (its selection stops it at epoch 0-2: "
        "left alone it collapses, +0.52 class-ratio L1), true prior 0.662, uniform 0.585, "
        "misspecified 0.630 (vs uniform +0.044 [-0.004, +0.092]; vs true -0.032 [-0.069, "
        "+0.005]): a +-30% prior keeps most of the oracle's gain, not all of it."
    ),
    claims=(
        Claim(
            "target accuracy",
            TRUE_P,
            ENT,
            True,
            "adding the class-ratio KL prior (true ratio) to entropy minimisation gives better "
            "target accuracy than entropy alone",
            regime=(_SHIFT, _DRIFT),
            paper=_PAPER,
        ),
        Claim(
            "target accuracy",
            TRUE_P,
            SOURCE,
            True,
            "entropy + class-ratio prior adaptation improves over the source-only model",
            regime=(_SHIFT,),
            paper=_PAPER,
        ),
        Claim(
            "target accuracy",
            TRUE_P,
            UNIF_P,
            True,
            "an informative (true-ratio) prior beats the uniform prior (information "
            "maximisation) on an imbalanced target",
            regime=(_SHIFT, _IMBALANCED),
            paper=_PAPER,
        ),
        Claim(
            "class-ratio L1 error",
            TRUE_P,
            ENT,
            False,
            "the KL prior keeps the predicted class ratio closer to the true ratio than entropy "
            "alone (the KL term's own target)",
            kind="sanity",
        ),
    ),
    regime_checks=(
        RegimeCheck(
            _SHIFT,
            "accuracy lost to the shift",
            "source validation accuracy minus the source model's target test accuracy (> 0.1)",
            0.1,
        ),
        RegimeCheck(
            _DRIFT,
            "entropy-only class-ratio drift",
            "increase of the class-ratio L1 error after 15 epochs of entropy alone (its selected "
            "learning rate) over the source model's (> 0.05: the collapse the prior fixes)",
            0.05,
        ),
        RegimeCheck(
            _IMBALANCED,
            "L1 distance of the true ratio from uniform",
            "how far the target's class ratio is from uniform (> 0.3; by design about 0.6)",
            0.3,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "per seed and adapting arm: Adam learning rate and adaptation epoch (0 = the source "
        "model) with the best accuracy on the labelled target validation split (the same small "
        "labelled set for every arm); the source model's epoch on source validation accuracy"
    ),
    run_seed=run_seed,
    requires=("sklearn",),
)
