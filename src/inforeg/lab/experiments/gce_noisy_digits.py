"""Comp-sum losses on digits: the paper's own adversarial claim, and label-noise robustness of GCE
and MAE (claims of the earlier GCE and MAE papers).

Part 1, the comp-sum paper's claim (Mao, Mohri, Zhong, ICML 2023): training with the smooth
adversarial comp-sum loss (ADV-COMP-SUM, tau = 1) beats TRADES in robust accuracy and in clean
accuracy. MLP 64-128-128-10 on digits in [0, 1]; L-inf radius 0.1. TRADES and ADV-COMP-SUM use
the same inner maximisation budget (10 signed-gradient steps of 0.025 from x + 0.001 N(0, 1),
projected to the ball and to [0, 1]): TRADES ascends KL(p(x) || p(x')), ADV-COMP-SUM the
margin-vector distance (:func:`~inforeg.losses.adversarial_comp_sum_loss`). Robust accuracy is
measured with PGD on the cross-entropy (20 steps of 0.0125, uniform random start). Standard CE
training is the reference that shows the vulnerability.

Part 2, noise robustness of comp-sum members (Zhang & Sabuncu 2018 for GCE, Ghosh et al. 2017 for
MAE; not a claim of the comp-sum paper): CE (tau = 1), GCE (tau = 1.7, q = 0.7) and MAE (tau = 2)
trained on 20% / 40% symmetric label noise, each stopped early on the (equally noisy)
validation split, so CE is its own early-stopped baseline; the first version compared final
epochs of CE after 30 epochs of memorisation. The same three losses trained on clean labels
(0% noise) give the clean and PGD accuracy of standard (non-adversarial) training; CE there is
the reference that shows the vulnerability adversarial training fixes.

Protocol 2: per seed a fresh stratified split; each arm tunes one hyper-parameter over a 3-point
grid (learning rate for CE / GCE / MAE, beta for TRADES, nu for ADV-COMP-SUM) and its epoch on
validation (robust accuracy for the adversarial arms, accuracy otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import make_mlp, minibatches

if TYPE_CHECKING:
    from inforeg.losses.comp_sum import CompSumKind

EPSILON = 0.1
INNER_STEPS = 10  # training-time inner maximisation (both adversarial arms)
ATTACK_STEPS = 20  # PGD evaluation
NOISE_RATES = (0.0, 0.2, 0.4)  # 0.0: clean labels (standard training, measured under PGD too)
CE, GCE, MAE = "CE", "GCE", "MAE"
TRADES, ADV = "TRADES", "ADV-COMP-SUM"
LR_GRID = [0.03, 0.1, 0.3]
# TRADES and ADV-COMP-SUM first: every arm reports their two metrics (clean and PGD accuracy),
# the comp-sum members add their label-noise metrics
GRIDS: dict[str, dict[str, list[Any]]] = {
    TRADES: {"beta": [1.0, 3.0, 9.0]},
    ADV: {"nu": [0.1, 0.3, 1.0]},
    CE: {"lr": LR_GRID},
    GCE: {"lr": LR_GRID},
    MAE: {"lr": LR_GRID},
}
KINDS: dict[str, CompSumKind] = {CE: "ce", GCE: "gce", MAE: "mae"}
ADV_LR = 0.1


def _data(seed: int) -> dict[str, Tensor]:
    """Pixels in [0, 1] (the PGD radius is in pixel units) for every split."""
    from sklearn.datasets import load_digits

    from inforeg.lab.datasets import split_arrays

    x, y = load_digits(return_X_y=True)
    s = split_arrays(x / 16.0, y, test_size=0.3, val_size=0.15, split_seed=seed, standardise=False)
    return {
        "x_train": s.x_train,
        "x_val": s.x_val,
        "x_test": s.x_test,
        "y_train": s.y_train,
        "y_val": s.y_val,
        "y_test": s.y_test,
    }


class _Standardise(nn.Module):
    """(x - mean) / std with the training pixels' statistics, so that a model trained on
    standardised inputs still takes (and is attacked in) pixel space."""

    def __init__(self, x_train: Tensor) -> None:
        super().__init__()
        std = x_train.std(0)
        self.register_buffer("mean", x_train.mean(0))
        self.register_buffer("std", torch.where(std > 0, std, torch.ones_like(std)))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.get_buffer("mean")) / self.get_buffer("std")


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def pgd_attack(model: nn.Module, x: Tensor, y: Tensor, g: torch.Generator) -> Tensor:
    """L-inf PGD on the cross-entropy: uniform start in the ball, ATTACK_STEPS signed steps of
    2.5 epsilon / ATTACK_STEPS, projected to the ball and to [0, 1]."""
    step = 2.5 * EPSILON / ATTACK_STEPS
    x_adv = (x + EPSILON * (2 * torch.rand(x.shape, generator=g) - 1)).clamp(0.0, 1.0)
    for _ in range(ATTACK_STEPS):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y), x_adv)
        x_adv = x_adv.detach() + step * grad.sign()
        x_adv = torch.minimum(torch.maximum(x_adv, x - EPSILON), x + EPSILON).clamp(0.0, 1.0)
    return x_adv.detach()


def robust_accuracy(model: nn.Module, x: Tensor, y: Tensor, seed: int) -> float:
    """Accuracy under :func:`pgd_attack` (seeded, so every arm meets the same random starts)."""
    return _accuracy(model, pgd_attack(model, x, y, torch.Generator().manual_seed(seed)), y)


def trades_loss(model: nn.Module, x: Tensor, y: Tensor, beta: float) -> Tensor:
    """TRADES: CE(f(x), y) + beta KL(p(x) || p(x')), x' from INNER_STEPS signed-gradient steps of
    epsilon / 4 on the KL from x + 0.001 N(0, 1), projected to the ball and to [0, 1]."""
    step = 2.5 * EPSILON / INNER_STEPS
    with torch.no_grad():
        p_clean = torch.softmax(model(x), 1)
    x_adv = (x + 1e-3 * torch.randn_like(x)).clamp(0.0, 1.0)
    for _ in range(INNER_STEPS):
        x_adv.requires_grad_(True)
        with torch.enable_grad():
            kl = F.kl_div(torch.log_softmax(model(x_adv), 1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
        x_adv = x_adv.detach() + step * grad.sign()
        x_adv = torch.minimum(torch.maximum(x_adv, x - EPSILON), x + EPSILON).clamp(0.0, 1.0)
    logits = model(x)
    kl = F.kl_div(
        torch.log_softmax(model(x_adv.detach()), 1),
        torch.softmax(logits, 1),
        reduction="batchmean",
    )
    return F.cross_entropy(logits, y) + beta * kl


def _fit(
    arm: str,
    point: dict[str, Any],
    data: dict[str, Tensor],
    y_train: Tensor,
    y_val: Tensor,
    seed: int,
    epochs: int,
    attack: bool,
) -> Selected:
    """Train one arm at one grid point; select the epoch on validation (robust accuracy for the
    adversarial arms, accuracy on ``y_val`` otherwise); ``attack``: also measure PGD accuracy."""
    from inforeg.losses import adversarial_comp_sum_loss, comp_sum_loss

    torch.manual_seed(seed)  # same initialisation and batch order for every arm and grid point
    gen = torch.Generator().manual_seed(seed)
    mlp = make_mlp(64, 128, 10, depth=2)
    adversarial = arm in (TRADES, ADV)
    # the comp-sum members see standardised pixels: in [0, 1] pixels CE barely memorised 40%
    # noise in 30 epochs (one-seed pilot: 0.002 accuracy lost at lr 0.1)
    model = mlp if adversarial else nn.Sequential(_Standardise(data["x_train"]), mlp)
    lr = ADV_LR if adversarial else point["lr"]
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    x, x_val, x_test = data["x_train"], data["x_val"], data["x_test"]
    best = BestOnValidation(higher_is_better=True)
    test_curve: list[float] = []
    for epoch in range(epochs):
        model.train()
        for idx in minibatches(x.shape[0], 64, gen):
            if arm == TRADES:
                loss = trades_loss(model, x[idx], y_train[idx], point["beta"])
            elif arm == ADV:
                loss = adversarial_comp_sum_loss(
                    model,
                    x[idx],
                    y_train[idx],
                    kind="ce",
                    nu=point["nu"],
                    epsilon=EPSILON,
                    steps=INNER_STEPS,
                    clamp=(0.0, 1.0),
                )
            else:
                loss = comp_sum_loss(model(x[idx]), y_train[idx], kind=KINDS[arm], q=0.7)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        model.eval()
        test_curve.append(_accuracy(model, x_test, data["y_test"]))
        if adversarial:
            score = robust_accuracy(model, x_val, y_val, seed + 999)
        else:
            score = _accuracy(model, x_val, y_val)

        def measure() -> dict[str, float]:
            out = {"clean accuracy": test_curve[-1]}
            if attack:
                out["robust accuracy"] = robust_accuracy(model, x_test, data["y_test"], seed + 555)
            return out

        best.update(epoch, score, measure)
    return best.result(final_clean_accuracy=test_curve[-1])


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.lab.datasets import symmetric_label_noise

    data = _data(seed)
    epochs, adv_epochs = (2, 2) if quick else (30, 30)
    metrics: dict[str, dict[str, float]] = {arm: {} for arm in GRIDS}
    tuning: dict[str, dict[str, Any]] = {arm: {} for arm in GRIDS}
    regime: dict[str, float] = {}

    # Part 1: adversarial training (clean labels)
    adversarial = tune_arms(
        {arm: GRIDS[arm] for arm in (TRADES, ADV)},
        lambda arm, point: _fit(
            arm, point, data, data["y_train"], data["y_val"], seed, adv_epochs, True
        ),
    )
    for arm, (point, sel) in adversarial.items():
        tuning[arm]["adversarial"] = point
        metrics[arm] = {f"test {k}": v for k, v in sel.metrics.items()}
    regime["TRADES test robust accuracy"] = metrics[TRADES]["test robust accuracy"]
    # Part 2: standard training of the comp-sum members on clean labels (0% noise; clean and PGD
    # test accuracy) and on symmetric label noise (noisy training and validation labels, clean
    # test labels)
    for rate in NOISE_RATES:
        tag = f"{round(rate * 100)}% noise"
        y_tr = symmetric_label_noise(data["y_train"], rate, 10, seed=2000 + seed)
        y_va = symmetric_label_noise(data["y_val"], rate, 10, seed=3000 + seed)

        def fit_noise(
            arm: str,
            point: dict[str, Any],
            y_tr: Tensor = y_tr,
            y_va: Tensor = y_va,
            attack: bool = rate == 0,
        ) -> Selected:
            return _fit(arm, point, data, y_tr, y_va, seed, epochs, attack)

        noisy = tune_arms({arm: GRIDS[arm] for arm in (CE, GCE, MAE)}, fit_noise)
        for arm, (point, sel) in noisy.items():
            tuning[arm][tag] = point
            last = sel.extras["final_clean_accuracy"]
            if rate == 0:
                metrics[arm]["test clean accuracy"] = sel.metrics["clean accuracy"]
                metrics[arm]["test robust accuracy"] = sel.metrics["robust accuracy"]
                continue
            metrics[arm][f"test accuracy @{tag}"] = sel.metrics["clean accuracy"]
            metrics[arm][f"last-epoch test accuracy @{tag}"] = last
            if arm == CE:
                regime[f"CE accuracy lost to memorisation @{tag}"] = (
                    sel.metrics["clean accuracy"] - last
                )
    ce = metrics[CE]
    regime["CE accuracy lost to PGD"] = ce["test clean accuracy"] - ce["test robust accuracy"]
    sizes = {
        "train": int(data["y_train"].shape[0]),
        "validation": int(data["y_val"].shape[0]),
        "test": int(data["y_test"].shape[0]),
    }
    return SeedResult(metrics, tuning=tuning, regime=regime, splits=sizes)


_PAPER_ADV = (
    "Mao, Mohri, Zhong (ICML 2023, arXiv 2304.07288): minimising the smooth adversarial comp-sum "
    "loss 'outperform[s] the current state-of-the-art, while also achieving a superior "
    "non-adversarial accuracy' (ADV-COMP-SUM vs TRADES on CIFAR-10/100 and SVHN; table values "
    "not verified here)"
)
_PAPER_GCE = (
    "Not the comp-sum paper's claim: Zhang & Sabuncu (NeurIPS 2018, arXiv 1805.07836), GCE "
    "(q = 0.7) is more robust than CE to symmetric label noise on CIFAR-10/100 and "
    "Fashion-MNIST; GCE is the comp-sum member tau = 1 + q"
)
_PAPER_MAE = (
    "Not the comp-sum paper's claim: Ghosh, Kumar, Sastry (AAAI 2017, arXiv 1712.09482), MAE is "
    "robust to symmetric label noise (Zhang & Sabuncu note it trains slowly); MAE is the "
    "comp-sum member tau = 2"
)
_ADV_REGIME = ("standard training is vulnerable", "TRADES below ceiling")

EXPERIMENT = Experiment(
    name="gce-noisy-digits",
    summary=(
        "Comp-sum losses on digits: ADV-COMP-SUM vs TRADES under L-inf PGD (the comp-sum "
        "paper's claim), and GCE / MAE vs early-stopped CE under symmetric label noise (the GCE "
        "and MAE papers' claims)"
    ),
    setup=(
        "scikit-learn digits scaled to [0, 1] (so the radius is in pixel units), per seed a "
        "fresh stratified split. MLP 64-128-128-10, SGD (Nesterov, momentum 0.9, weight decay "
        "5e-4, cosine), batch 64, 30 epochs (--quick: 2). CE, GCE (q = 0.7) and "
        "MAE standardise the pixels with the training statistics inside the model (in [0, 1] "
        "pixels CE barely memorised 40% noise in 30 epochs in a one-seed pilot: 0.002 accuracy "
        "lost at lr 0.1) and each tune lr {0.03, 0.1, 0.3} and the epoch on validation accuracy, "
        "separately for clean labels and for 20% / 40% of the training and validation labels "
        "flipped uniformly to another class (clean test labels); the clean-label models are "
        "also attacked (standard training; CE's PGD loss is the vulnerability check). "
        "Adversarial part (clean labels, L-inf epsilon = 0.1): TRADES (beta {1, 3, 9}) and "
        "ADV-COMP-SUM (tau = 1, rho = 1, nu {0.1, 0.3, 1}; nu and rho of the paper not "
        "verified) train at lr 0.1, their inner maximisation 10 signed steps of 0.025 from "
        "x + 0.001 N(0, 1); their epoch is chosen on validation robust accuracy. Robust "
        "accuracy: PGD-20 on the cross-entropy (steps of 0.0125, uniform random start, seeded "
        "alike for every arm). The paper's setting (ResNets on CIFAR-10/100 and SVHN, its PGD "
        "budget) is out of reach on CPU; this is a small-scale check of the direction. "
        "Recorded run (10 seeds; this sentence added after it): ADV-COMP-SUM's PGD accuracy "
        "was below TRADES's in every seed (0.808 vs 0.836, nu = 0.3 chosen in every seed) at "
        "equal clean accuracy (0.972 vs 0.971); the paper's nu, rho, attack budget and "
        "network scale were not reproduced, so this is a finding at this scale, not a "
        "refutation. GCE beat early-stopped CE by 0.011 / 0.019 (20% / 40% noise), against "
        "0.08 at 40% when CE is taken at its last epoch; MAE was level with early-stopped CE."
    ),
    claims=(
        Claim(
            "test robust accuracy",
            ADV,
            TRADES,
            True,
            "ADV-COMP-SUM has higher PGD robust accuracy than TRADES (epsilon = 0.1)",
            regime=_ADV_REGIME,
            paper=_PAPER_ADV,
        ),
        Claim(
            "test clean accuracy",
            ADV,
            TRADES,
            True,
            "ADV-COMP-SUM has higher clean accuracy than TRADES",
            regime=_ADV_REGIME,
            paper=_PAPER_ADV,
        ),
        Claim(
            "test accuracy @40% noise",
            GCE,
            CE,
            True,
            "GCE beats early-stopped CE under 40% symmetric label noise",
            regime=("CE memorises 40% noise",),
            paper=_PAPER_GCE,
        ),
        Claim(
            "test accuracy @20% noise",
            GCE,
            CE,
            True,
            "GCE beats early-stopped CE under 20% symmetric label noise",
            regime=("CE memorises 20% noise",),
            paper=_PAPER_GCE,
        ),
        Claim(
            "test accuracy @40% noise",
            MAE,
            CE,
            True,
            "MAE beats early-stopped CE under 40% symmetric label noise",
            regime=("CE memorises 40% noise",),
            paper=_PAPER_MAE,
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "standard training is vulnerable",
            "CE accuracy lost to PGD",
            "clean minus PGD-20 robust test accuracy of CE trained on clean labels (the "
            "vulnerability adversarial training fixes)",
            0.2,
        ),
        RegimeCheck(
            "TRADES below ceiling",
            "TRADES test robust accuracy",
            "TRADES's robust test accuracy at its selected point (room to improve)",
            0.9,
            above=False,
        ),
        *(
            RegimeCheck(
                f"CE memorises {round(r * 100)}% noise",
                f"CE accuracy lost to memorisation @{round(r * 100)}% noise",
                "CE's clean test accuracy at its selected epoch minus at its last epoch (the "
                "noise memorisation robust losses resist)",
                0.02,
            )
            for r in NOISE_RATES
            if r > 0
        ),
    ),
    tuning=GRIDS,
    selection=(
        "per seed, arm and setting: the grid point and epoch with the best validation score "
        "(PGD-20 robust accuracy for TRADES and ADV-COMP-SUM, accuracy otherwise; noisy "
        "validation labels in the noisy settings)"
    ),
    run_seed=run_seed,
    requires=("sklearn",),  # the digits data
)
