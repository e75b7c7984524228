"""Generalized category discovery on digits: SimGCD vs LegoGCD (LER + dual-view KL).

Protocol 2: train/validation/test splits; each arm tunes its own grid (SimGCD its mean-entropy
weight, LegoGCD its LER threshold) and its stopping epoch on validation; the paper's metric is
transductive: All/Old/New accuracy on the unlabelled part of the training split.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments._clustering import gcd_accuracy
from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import minibatches, seed_everything

NUM_KNOWN = 5
NUM_CLASSES = 10
LABELLED_FRACTION = 0.5  # of the known-class training images (the GCD benchmarks' default)
VIEW_NOISE = 0.5
# LegoGCD's LER threshold from the authors' K = 10 script (CIFAR-10: --thr 0.95) and a step below
# it; SimGCD tunes its own sensitive weight (the scripts use 1 or 2) over a grid of the same size.
GRIDS: dict[str, dict[str, list[Any]]] = {
    "SimGCD": {"memax_weight": [1.0, 2.0]},
    "LegoGCD": {"threshold": [0.9, 0.95]},
}
FORGETTING_MIN = 0.01


class CosineGCDNet(nn.Module):
    """MLP backbone, a projector for contrastive features and a weight-normed cosine head."""

    def __init__(self, in_dim: int, hidden: int = 128, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )
        self.projector = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 64))
        self.head = nn.Linear(hidden, num_classes, bias=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = F.normalize(self.backbone(x), dim=1)
        w = F.normalize(self.head.weight, dim=1)  # weight norm fixed to 1, as in DINOHead
        return h @ w.t(), self.projector(h)


def _scores(model: CosineGCDNet, x: Tensor, y: Tensor) -> tuple[float, float, float]:
    with torch.no_grad():
        pred = model(x)[0].argmax(1)
    return gcd_accuracy(pred, y, y < NUM_KNOWN, NUM_CLASSES)


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.lab.datasets import load_digits_split
    from inforeg.losses import LegoGCDLoss, SimGCDLoss

    data = load_digits_split(test_size=0.25, val_size=0.15)
    g = torch.Generator().manual_seed(3000 + seed)
    known = data.y_train < NUM_KNOWN
    labelled = known & (torch.rand(data.y_train.shape[0], generator=g) < LABELLED_FRACTION)
    x_unl, y_unl = data.x_train[~labelled], data.y_train[~labelled]
    epochs = 6 if quick else 60
    warmup = max(1, int(0.15 * epochs))  # 30 of 200 epochs in the paper's schedule

    def fit(arm: str, point: dict[str, Any]) -> Selected:
        gen = seed_everything(seed)  # same initialisation and data order for every arm and point
        model = CosineGCDNet(data.num_features)
        loss_mod: SimGCDLoss
        if arm == "SimGCD":
            loss_mod = SimGCDLoss(warmup_epochs=warmup, memax_weight=point["memax_weight"])
        else:
            loss_mod = LegoGCDLoss(
                NUM_CLASSES,
                NUM_KNOWN,
                threshold=point["threshold"],
                warmup_epochs=warmup,
                dkl_form="code",  # the published numbers come from the code's DKL
            )
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-5)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs, eta_min=1e-4)
        best = BestOnValidation(higher_is_better=True)
        old_curve: list[float] = []
        selected_share: list[float] = []
        for epoch in range(epochs):
            model.train()
            loss_mod.train()
            passed, rows = 0.0, 0
            for idx in minibatches(data.x_train.shape[0], 128, gen):
                x = data.x_train[idx]
                views = torch.cat(
                    [x + VIEW_NOISE * torch.randn_like(x), x + VIEW_NOISE * torch.randn_like(x)]
                )
                logits, feats = model(views)
                loss = loss_mod(logits, data.y_train[idx], labelled[idx], feats, epoch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if arm == "LegoGCD":  # share of rows the LER selects (unlabelled, confident, old)
                    with torch.no_grad():
                        conf, top = torch.softmax(logits / 0.1, 1).max(1)
                        unl = ~torch.cat([labelled[idx], labelled[idx]])
                        mask = unl & (conf >= point["threshold"]) & (top < NUM_KNOWN)
                        passed, rows = passed + float(mask.sum()), rows + mask.numel()
            sched.step()
            model.eval()
            selected_share.append(passed / max(rows, 1))
            old_curve.append(_scores(model, x_unl, y_unl)[1])
            val_all = _scores(model, data.x_val, data.y_val)[0]

            def evaluate(model: CosineGCDNet = model) -> dict[str, float]:
                a, o, n = _scores(model, x_unl, y_unl)
                ta, to, tn = _scores(model, data.x_test, data.y_test)
                return {
                    "All accuracy": a,
                    "Old accuracy": o,
                    "New accuracy": n,
                    "test-split All accuracy": ta,
                    "test-split Old accuracy": to,
                    "test-split New accuracy": tn,
                }

            best.update(epoch, val_all, evaluate)
        forgetting = max(old_curve) - old_curve[-1]
        return best.result(old_curve=old_curve, forgetting=forgetting, share=selected_share)

    tuned = tune_arms(GRIDS, fit)
    (_, sim), (_, lego) = tuned["SimGCD"], tuned["LegoGCD"]
    metrics = tuned.metrics("selected epoch")
    metrics["LegoGCD"]["LER selected share (last epoch)"] = lego.extras["share"][-1]
    curves = {
        "unlabelled-train Old accuracy per epoch": tuned.extras("old_curve"),
        "LER selected share of rows per epoch": {"LegoGCD": lego.extras["share"]},
    }
    regime = {
        "SimGCD Old forgetting": sim.extras["forgetting"],
        "SimGCD New accuracy": sim.metrics["New accuracy"],
    }
    splits = dict(data.sizes, **{"unlabelled train (scored)": int(y_unl.shape[0])})
    return SeedResult(metrics, curves, tuning=tuned.points(), regime=regime, splits=splits)


CUB = "CUB (DINO ViT-B/16): All/Old/New 63.8/71.9/59.8 for LegoGCD vs 60.3/65.6/57.7 for SimGCD"

EXPERIMENT = Experiment(
    name="legogcd-digits",
    summary=(
        "Generalized category discovery: SimGCD (supervised CE + cross-view self-distillation + "
        "mean-entropy regulariser + InfoNCE + SupCon) vs LegoGCD (SimGCD + dual-view KL + local "
        "entropy regularisation of confident known-class unlabelled samples, with a logit-adjusted "
        "class prior)."
    ),
    setup=(
        "scikit-learn digits, stratified train/validation/test split 1077/270/450 (fixed), "
        "standardised. Classes 0-4 are known and about 50% of their training images are labelled "
        "(a different draw per seed); classes 5-9 are novel. The paper's metric is transductive: "
        "All/Old/New accuracy on the unlabelled part of the training split (about 810 images), "
        "with one Hungarian matching over all of it (the GCD 'v2' convention); the same on the "
        "test split is reported as well. Two views = Gaussian pixel noise (std 0.5). MLP 64-128-"
        "128 backbone, L2-normalised features, weight-normed cosine head (10 classes), projector "
        "128-128-64, trained from scratch. The paper's regime, SimGCD forgetting known classes "
        "of a pre-trained backbone, is checked on SimGCD's own Old curve; a probe with the "
        "audit's suggestion (backbone pre-trained self-supervised with InfoNCE for 30 epochs, "
        "first layer frozen) showed no forgetting either (peak minus final Old 0.000-0.007, "
        "Old 0.975-0.989, 2 seeds), so it was not adopted. SGD lr 0.1 (cosine to 1e-4), momentum 0.9, wd 5e-5, batch "
        "128, 60 epochs (6 with --quick); teacher temperature warm-up over the first 15% of "
        "epochs; LER beta 2, DKL in the official code's form (log_softmax of the probabilities), "
        "which produced the published numbers. The LER threshold follows the number of classes: "
        "the authors' K = 10 script (CIFAR-10) uses 0.95, CUB's (K = 200) 0.7; the earlier run "
        "used 0.7 here, which let about half the novel unlabelled rows into LER (48% of rows "
        "selected against a 25% share of unlabelled known-class rows, audit A). Tuning on "
        "validation, per arm, grids of 2: SimGCD its mean-entropy weight {1, 2}; LegoGCD its "
        "threshold {0.9, 0.95} (mean-entropy weight 1, the CIFAR-10 script's); stopping epoch "
        "for both by validation All accuracy (Hungarian on the 270 validation images, novel "
        "classes included: an oracle a GCD user lacks, given to both arms alike). Recorded run "
        "(10 seeds): SimGCD does not forget here (peak minus final Old 0.004, Old 0.974 near "
        "the ceiling), so All and Old are not testable; New is inconclusive and leans the other "
        "way (LegoGCD 0.805 vs 0.854, 3/10 seeds). At the last epoch LER selects 25% of the "
        "rows, the share of unlabelled known-class rows, so the threshold no longer admits "
        "novel rows wholesale, yet the seed spread of New doubles (0.092 vs 0.036)."
    ),
    claims=(
        Claim(
            "All accuracy",
            "LegoGCD",
            "SimGCD",
            True,
            "LegoGCD improves All accuracy over SimGCD",
            regime=("SimGCD forgets known classes",),
            paper=CUB + " (All: +3.5 points).",
        ),
        Claim(
            "Old accuracy",
            "LegoGCD",
            "SimGCD",
            True,
            "LegoGCD improves Old (known-class) accuracy: less forgetting",
            regime=("SimGCD forgets known classes",),
            paper=CUB + " (Old: +6.3 points, the forgetting LegoGCD targets).",
        ),
        Claim(
            "New accuracy",
            "LegoGCD",
            "SimGCD",
            True,
            "LegoGCD improves New (novel-class) accuracy",
            regime=("SimGCD New below ceiling",),
            paper=CUB + " (New: +2.1 points).",
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "SimGCD forgets known classes",
            "SimGCD Old forgetting",
            "peak minus final Old accuracy (unlabelled training split) over SimGCD's epochs, at "
            f"its selected grid point: known-class accuracy is lost during training (> "
            f"{FORGETTING_MIN})",
            FORGETTING_MIN,
        ),
        RegimeCheck(
            "SimGCD New below ceiling",
            "SimGCD New accuracy",
            "SimGCD's New accuracy at its selected point leaves room to improve (< 0.95)",
            0.95,
            above=False,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "validation All accuracy (Hungarian-matched, validation split), per arm: best epoch "
        "within a run, then best grid point; ties keep the earlier epoch / first grid point"
    ),
    run_seed=run_seed,
    requires=("sklearn", "scipy"),  # the digits data; Hungarian matching
)
