"""Weight compander on a small-data MLP (spec remaining.md §7 (5)), protocol 2.

An MLP 64-256-256-10 is trained with Adam on 200 digits, plain or with inforeg's (UNVERIFIED)
mu-law :class:`~inforeg.nn.WeightCompander` on every Linear weight (s = 1, mu = 10, both learned,
kept out of weight decay; the decay acts on the latent weights). Both arms are tuned over the same
weight-decay grid and stopped at their best validation epoch; the seed fixes the split, the
initial effective weights (identical across arms) and the data order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments._digit_images import digit_images, stratified_split
from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import decay_groups, make_mlp, train_epoch
from inforeg.nn import WeightCompander, apply_weight_compander

SPLITS = {"train": 200, "validation": 300, "test": 1297}
EPOCHS, QUICK_EPOCHS = 150, 4
BATCH = 32
LR = 1e-3
WD_GRID = [1e-4, 1e-3, 1e-2]
ARMS = ("plain", "compander")
GRIDS = {arm: {"weight_decay": WD_GRID} for arm in ARMS}
NEAR_ZERO = 0.01  # |w| below this fraction of the layer's max |w|


def _weights(model: nn.Module) -> list[Tensor]:
    return [m.weight.detach() for m in model.modules() if isinstance(m, nn.Linear)]


def _weight_stats(model: nn.Module) -> dict[str, float]:
    ws = _weights(model)
    near = sum(int((w.abs() < NEAR_ZERO * w.abs().max()).sum()) for w in ws)
    total = sum(w.numel() for w in ws)
    return {
        "near-zero weight fraction": near / total,
        "max |w|": max(float(w.abs().max()) for w in ws),
    }


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    model.train()
    return acc


def _fit(
    arm: str, wd: float, seed: int, data: dict[str, tuple[Tensor, Tensor]], epochs: int
) -> Selected:
    torch.manual_seed(seed)
    model = make_mlp(64, 256, 10, depth=2)
    if arm == "compander":  # the registration keeps the initial effective weights
        apply_weight_compander(model)
    hyper = [p for m in model.modules() if isinstance(m, WeightCompander) for p in m.parameters()]
    opt = torch.optim.Adam(decay_groups(model, wd, exempt=hyper), lr=LR)
    order = torch.Generator().manual_seed(seed)
    x_tr, y_tr = data["train"]
    x_va, y_va = data["validation"]
    x_te, y_te = data["test"]

    def measure() -> dict[str, float]:
        return {
            "test accuracy": _accuracy(model, x_te, y_te),
            "train accuracy": _accuracy(model, x_tr, y_tr),
            "validation accuracy": _accuracy(model, x_va, y_va),
            **_weight_stats(model),
        }

    best = BestOnValidation(higher_is_better=True)
    for epoch in range(epochs):
        train_epoch(
            opt, len(x_tr), BATCH, order, lambda i: F.cross_entropy(model(x_tr[i]), y_tr[i])
        )
        best.update(epoch, _accuracy(model, x_va, y_va), measure)
    return best.result()


def run_seed(seed: int, quick: bool) -> SeedResult:
    x, y = digit_images()
    x = x.reshape(-1, 64)
    idx = stratified_split(y, SPLITS, seed)
    mean, std = x[idx["train"]].mean(), x[idx["train"]].std()
    data = {k: ((x[v] - mean) / std, y[v]) for k, v in idx.items()}
    epochs = QUICK_EPOCHS if quick else EPOCHS
    tuned = tune_arms(
        GRIDS, lambda arm, point: _fit(arm, point["weight_decay"], seed, data, epochs)
    )
    metrics = tuned.metrics("selected epoch")
    plain = metrics["plain"]
    regime = {"plain generalisation gap": plain["train accuracy"] - plain["validation accuracy"]}
    return SeedResult(metrics, tuning=tuned.points("epoch"), regime=regime, splits=dict(SPLITS))


_PAPER = (
    "Abstract (the paper text and code are not available to us): weight compander 'improves "
    "the performance' of standard networks when combined with standard regularisation, by "
    "limiting weight magnitudes and pushing weights away from zero. Small-scale analogue: an MLP "
    "on 200 digits with inforeg's UNVERIFIED mu-law compander."
)

EXPERIMENT = Experiment(
    name="compander-digits",
    summary="Weight compander (mu-law, UNVERIFIED form) vs a plain MLP trained on 200 digits.",
    setup=(
        f"MLP 64-256-256-10 (ReLU), Adam lr {LR}, batch {BATCH}, {EPOCHS} epochs; "
        "train/validation/test = 200/300/1297 stratified per seed; each arm picks its weight "
        f"decay from {WD_GRID} and its epoch on validation accuracy. Compander: s = 1, mu = 10 "
        "learned per layer (no weight decay on them)."
    ),
    claims=(
        Claim(
            "test accuracy",
            "compander",
            "plain",
            True,
            "the weight compander raises test accuracy (generalisation) over the plain MLP",
            kind="paper",
            regime=("plain MLP over-fits",),
            paper=_PAPER,
        ),
        Claim(
            "near-zero weight fraction",
            "compander",
            "plain",
            False,
            "the compander leaves fewer near-zero effective weights (|w| < 0.01 max|w|)",
            kind="paper",
            regime=("plain MLP over-fits",),
            paper=_PAPER,
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "plain MLP over-fits",
            "plain generalisation gap",
            "train minus validation accuracy of the tuned plain MLP at its selected epoch",
            0.05,
        ),
    ),
    tuning=GRIDS,
    selection="validation accuracy: the best epoch and weight decay per arm and seed",
    run_seed=run_seed,
    quick_seeds=1,
    requires=("sklearn",),
)
