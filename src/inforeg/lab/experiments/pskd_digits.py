"""PS-KD vs cross-entropy on digits, in a regime where CE is over-confident at its best epoch.

Protocol 2: train/validation/test splits; each arm tunes its own grid (CE its learning rate,
PS-KD its alpha_T) and its stopping epoch on validation accuracy; test metrics at the selected
point. The calibration claim is judged only if CE is over-confident there (regime check).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.metrics import accuracy, expected_calibration_error, nll
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import make_mlp, seed_everything, train_classifier

N_TRAIN = 300  # a data-poor regime: the deep, wide MLP memorises its training set
WIDTH, DEPTH = 512, 4
PSKD_LR = 0.05  # PS-KD trains at the middle of CE's learning-rate grid and tunes alpha_T
GRIDS: dict[str, dict[str, list[Any]]] = {
    "CE": {"lr": [0.1, 0.05, 0.02]},
    "PS-KD": {"alpha_T": [0.8, 0.6, 0.4]},
}


def confidence_gap(logits: Tensor, y: Tensor) -> float:
    """Mean top-class confidence minus accuracy: > 0 over-confident, < 0 under-confident."""
    probs = torch.softmax(logits.float(), dim=1)
    conf, pred = probs.max(dim=1)
    return float(conf.mean() - (pred == y).float().mean())


def _test_metrics(logits: Tensor, y: Tensor) -> dict[str, float]:
    return {
        "test accuracy": accuracy(logits, y),
        "test NLL": nll(logits, y),
        "test ECE (10 bins)": expected_calibration_error(logits, y, n_bins=10),
        "test confidence gap": confidence_gap(logits, y),
    }


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.lab.datasets import load_digits_split
    from inforeg.losses import ProgressiveSelfDistillation

    data = load_digits_split(test_size=0.3, val_size=0.15)
    k = data.num_classes
    # A different random subset of the training split per seed (paired across arms).
    keep = torch.randperm(data.x_train.shape[0], generator=torch.Generator().manual_seed(seed))
    x_train, y_train = data.x_train[keep[:N_TRAIN]], data.y_train[keep[:N_TRAIN]]
    epochs = 5 if quick else 100

    def fit(arm: str, point: dict[str, Any]) -> Selected:
        gen = seed_everything(seed)  # same initialisation and data order for every arm and point
        model = make_mlp(data.num_features, WIDTH, k, depth=DEPTH)
        pskd = ProgressiveSelfDistillation(
            N_TRAIN, k, alpha_T=point.get("alpha_T", 0.0), total_epochs=epochs
        )
        best = BestOnValidation(higher_is_better=True)

        def loss_fn(logits: Tensor, y: Tensor, idx: Tensor, epoch: int) -> Tensor:
            return F.cross_entropy(logits, y) if arm == "CE" else pskd(logits, y, idx)

        def on_end(epoch: int) -> None:
            model.eval()
            with torch.no_grad():
                val = accuracy(model(data.x_val), data.y_val)
                best.update(epoch, val, lambda: _test_metrics(model(data.x_test), data.y_test))
            model.train()

        train_classifier(
            model,
            x_train,
            y_train,
            loss_fn,
            epochs,
            gen,
            lr=point.get("lr", PSKD_LR),
            weight_decay=0.0,
            on_epoch_start=pskd.set_epoch,
            on_epoch_end=on_end,
        )
        with torch.no_grad():
            final = _test_metrics(model(data.x_test), data.y_test)
        return best.result(final_gap=final["test confidence gap"], history=best.history)

    tuned = tune_arms(GRIDS, fit)
    metrics = tuned.metrics("selected epoch")
    for arm, final_gap in tuned.extras("final_gap").items():
        metrics[arm]["final-epoch test confidence gap"] = final_gap
    curves = {"validation accuracy": tuned.extras("history")}
    _, ce = tuned["CE"]
    regime = {
        "CE confidence gap": ce.metrics["test confidence gap"],
        "CE test accuracy": ce.metrics["test accuracy"],
    }
    splits = dict(data.sizes, train=N_TRAIN)
    return SeedResult(metrics, curves, tuning=tuned.points(), regime=regime, splits=splits)


EXPERIMENT = Experiment(
    name="pskd-digits",
    summary=(
        "PS-KD trains on (1 - alpha_t) * onehot(y) + alpha_t * (the model's own prediction at its "
        "previous visit), alpha_t rising linearly to alpha_T; compared with cross-entropy where CE "
        "is over-confident at its best epoch."
    ),
    setup=(
        "scikit-learn digits, stratified train/validation/test split (fixed; standardised with "
        "training statistics), clean labels; each seed trains on its own random 300 of the 987 "
        "training images, with 270 validation and 540 test images. MLP 64-512-512-512-512-10, "
        "SGD Nesterov momentum 0.9, no weight decay, cosine schedule, batch 64, 100 epochs (5 "
        "with --quick). This is the paper's regime in small: a deep, wide, unregularised network "
        "that fits its training set and is over-confident on test at its best epoch (the paper: "
        "PreAct ResNet-18, CIFAR-100, 300 epochs). The previous set-up (64-256-256-10, 20% label "
        "noise, weight decay) was not: at its validation-selected epoch (epochs 3-8, before the "
        "noisy labels are memorised) CE was under-confident (gap -0.23, 2 seeds), so the set-up "
        "was changed on this regime check alone. Tuning per arm on validation accuracy: CE its "
        "learning rate {0.1, 0.05, 0.02}; PS-KD its alpha_T {0.8, 0.6, 0.4} at lr 0.05; the "
        "stopping epoch by validation accuracy for both; test metrics at the selected point. ECE "
        "with 10 equal-width bins (the official metric) next to the signed confidence gap (mean "
        "confidence - accuracy). Seeds pair the arms: same training subset, initialisation and "
        "data order within a seed. Recorded run (10 seeds): the regime holds (CE gap +0.038 at "
        "its selected epoch); PS-KD lowers NLL (0.444 vs 0.629, 8/10 seeds) but not ECE "
        "(0.041 vs 0.042, 5/10): its own gap stays +0.035, i.e. the self-targets keep most of "
        "CE's over-confidence at this scale; accuracy 0.918 vs 0.925 (3/10)."
    ),
    claims=(
        Claim(
            "test accuracy",
            "PS-KD",
            "CE",
            True,
            "PS-KD raises test accuracy over CE",
            regime=("CE below ceiling",),
            paper="CIFAR-100, PreAct ResNet-18: top-1 error 24.18% (CE) -> 20.82% (PS-KD).",
        ),
        Claim(
            "test NLL",
            "PS-KD",
            "CE",
            False,
            "PS-KD lowers test NLL vs CE",
            regime=("CE over-confident",),
            paper="CIFAR-100: PS-KD lowers NLL along with error and ECE (PreAct ResNet-18).",
        ),
        Claim(
            "test ECE (10 bins)",
            "PS-KD",
            "CE",
            False,
            "PS-KD lowers expected calibration error vs CE",
            regime=("CE over-confident",),
            paper="CIFAR-100, PreAct ResNet-18: ECE 11.84% (CE) -> 1.77% (PS-KD).",
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "CE over-confident",
            "CE confidence gap",
            "CE's test mean confidence minus accuracy at its selected point (> 0.02: clearly "
            "over-confident, the failure PS-KD's soft targets address)",
            0.02,
        ),
        RegimeCheck(
            "CE below ceiling",
            "CE test accuracy",
            "CE's test accuracy at its selected point leaves room to improve (< 0.97)",
            0.97,
            above=False,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "validation accuracy, per arm: best epoch within a run, then best grid point; ties keep "
        "the earlier epoch / first grid point"
    ),
    run_seed=run_seed,
    requires=("sklearn",),  # the digits data
)
