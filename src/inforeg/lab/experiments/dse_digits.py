"""DSMI(Z;Y) and DSE of an MLP's penultimate layer on digits: generalising vs memorising.

Protocol 2. Per seed a fresh stratified split of the digits (train/validation/test). Three arms
share the initialisation: the untrained network, the network trained on the true labels, and the
network trained on a fixed random permutation of the training labels (memorisation). The trained
arms each tune the SGD learning rate over the same 3-point grid; the true-label arm selects the
learning rate and the checkpoint by validation accuracy, the shuffled-label arm by training
accuracy on its own labels (the regime it must reach is memorisation; validation accuracy is at
chance by design), the earliest checkpoint at its best. At the selected checkpoint: DSMI(Z;Y)
and DSE(Z) of the test inputs' representations against their true labels, a kNN probe (k = 5,
fitted on the training representations with the true labels) and the test accuracy.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import seed_everything, train_classifier

TRUE, SHUFFLED, INIT = "true labels", "shuffled labels", "untrained"
LR_GRID = [0.01, 0.03, 0.1]
GRIDS: dict[str, dict[str, list[Any]]] = {
    TRUE: {"lr": LR_GRID},
    SHUFFLED: {"lr": LR_GRID},
    INIT: {},
}
EVERY = 10  # epochs between checkpoints


def _mlp(d_in: int, k: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, k)
    )


def _knn_accuracy(z_train: Tensor, y_train: Tensor, z_test: Tensor, y_test: Tensor) -> float:
    """Accuracy of a 5-nearest-neighbour majority vote (Euclidean) on the representations."""
    nearest = torch.cdist(z_test, z_train).topk(5, largest=False).indices
    votes = F.one_hot(y_train[nearest], 10).sum(1)
    return float((votes.argmax(1) == y_test).double().mean())


def _measure(model: nn.Sequential, data: Any) -> dict[str, float]:
    from inforeg.estimators import diffusion_spectral_entropy, diffusion_spectral_mutual_information

    with torch.no_grad():
        z_test = model[:4](data.x_test).double()
        z_train = model[:4](data.x_train).double()
        acc = float((model(data.x_test).argmax(1) == data.y_test).double().mean())
        dsmi = diffusion_spectral_mutual_information(
            z_test, data.y_test, sigma="median", n_repetitions=3, seed=0
        )
        return {
            "test DSMI(Z;Y) bits": float(dsmi),
            "test DSE(Z) bits": float(diffusion_spectral_entropy(z_test, sigma="median")),
            "test kNN-probe accuracy": _knn_accuracy(z_train, data.y_train, z_test, data.y_test),
            "test accuracy": acc,
        }


def _fit(arm: str, lr: float, data: Any, labels: Tensor, seed: int, epochs: int) -> Selected:
    gen = seed_everything(seed)
    model = _mlp(data.num_features, 10)
    best = BestOnValidation(higher_is_better=True)
    curve: dict[str, list[float]] = {"DSMI": [], "kNN probe": []}

    def checkpoint(epoch: int) -> None:
        if (epoch + 1) % EVERY:
            return
        with torch.no_grad():
            model.eval()
            own_train = float((model(data.x_train).argmax(1) == labels).double().mean())
            val = float((model(data.x_val).argmax(1) == data.y_val).double().mean())
        now = _measure(model, data)
        now["train accuracy (own labels)"] = own_train
        curve["DSMI"].append(now["test DSMI(Z;Y) bits"])
        curve["kNN probe"].append(now["test kNN-probe accuracy"])
        best.update(epoch + 1, val if arm == TRUE else own_train, lambda: now)
        model.train()

    train_classifier(
        model,
        data.x_train,
        labels,
        lambda logits, y, idx, epoch: F.cross_entropy(logits, y),
        epochs,
        gen,
        lr=lr,
        weight_decay=0.0,
        on_epoch_end=checkpoint,
    )
    return best.result(curve=curve)


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.lab.datasets import load_digits_split

    data = load_digits_split(val_size=0.15, split_seed=seed)
    epochs = 10 if quick else 100
    g = torch.Generator().manual_seed(10_000 + seed)
    shuffled = data.y_train[torch.randperm(data.y_train.shape[0], generator=g)]
    seed_everything(seed)
    untrained = _mlp(data.num_features, 10)  # the initialisation both trained arms start from
    initial = _measure(untrained, data)
    with torch.no_grad():  # its own labels: the true ones
        hits = untrained(data.x_train).argmax(1) == data.y_train
        initial["train accuracy (own labels)"] = float(hits.double().mean())
    labels = {TRUE: data.y_train, SHUFFLED: shuffled}
    tuned = tune_arms(
        {arm: GRIDS[arm] for arm in labels},
        lambda arm, point: _fit(arm, point["lr"], data, labels[arm], seed, epochs),
    )
    metrics = {INIT: {**initial, "selected epoch": 0.0}, **tuned.metrics("selected epoch")}
    tuning: dict[str, dict[str, Any]] = {INIT: {}, **tuned.points("epoch")}
    curve = tuned.extras("curve")
    curves = {
        f"test DSMI(Z;Y) every {EVERY} epochs": {arm: c["DSMI"] for arm, c in curve.items()},
        f"test kNN-probe accuracy every {EVERY} epochs": {
            arm: c["kNN probe"] for arm, c in curve.items()
        },
    }
    regime = {
        "shuffled arm's own-label train accuracy": metrics[SHUFFLED]["train accuracy (own labels)"],
        "true-label test accuracy": metrics[TRUE]["test accuracy"],
    }
    return SeedResult(metrics, curves, tuning=tuning, regime=regime, splits=data.sizes)


_PAPER = (
    "Liao, Liu et al. (arXiv 2312.04823), abstract: 'DSE of neural representations increases "
    "during training' and 'DSMI with the class label increases during generalizable learning "
    "but stays stagnant during overfitting' (MNIST/CIFAR-10/STL-10 networks trained on true "
    "vs random labels; no single number)"
)
_GENERALISES = "true-label net generalises"
_MEMORISES = "shuffled-label net memorises"

EXPERIMENT = Experiment(
    name="dse-digits",
    summary=(
        "Diffusion spectral entropy (bits) and DSMI(Z;Y) of the penultimate layer: generalising "
        "(true labels) vs memorising (shuffled labels) vs the shared untrained network, beside "
        "a kNN probe on the same representations."
    ),
    setup=(
        "scikit-learn digits, per seed a stratified 55/15/30 train/validation/test split "
        "(standardised with training statistics). MLP 64-128-64-10 (ReLU), SGD Nesterov, "
        "momentum 0.9, no weight decay, cosine schedule, batch 64, 100 epochs (10 with --quick); "
        "checkpoints every 10 epochs. The shuffled arm trains on one fixed permutation of the "
        "training labels. Measured on the 540 test inputs: DSMI(Z;Y) against the true labels "
        "and DSE(Z) of the 64-d penultimate layer (sigma = median pairwise distance, exact "
        "eigendecomposition, 3 repetitions for DSMI), a 5-NN probe fitted on the training "
        "representations with the true labels, and the test accuracy. The protocol-1 version "
        "counted one number twice (final DSMI and its rise from a shared start differ by a "
        "constant) and its shuffled arm never memorised (train accuracy 0.33); here the rise "
        "is the 'true labels vs untrained' claim, the comparison with memorisation is one "
        "claim, and the shuffled arm must reach >= 0.95 of its own labels. The kNN probe's "
        "sanity claim gives the effect size a simple probe reaches on the same comparison. "
        "Recorded (10 seeds): DSMI rises 0.56 -> 1.45 bits with true labels and stays at 0.52 "
        "after memorisation (shuffled minus untrained -0.036 [-0.098, +0.026]: stagnant, as the "
        "paper says); standardised effect of true vs shuffled 11.8 for DSMI against 3.8 for the "
        "5-NN probe (0.971 vs 0.893; the untrained net's probe is already 0.909). DSE did NOT "
        "rise: 3.58 -> 2.52 bits in 10/10 seeds. A likely reason: with sigma = the median "
        "distance, a representation that concentrates into 10 class clusters has fewer large "
        "diffusion eigenvalues; the paper's rise is with a fixed sigma on larger networks, "
        "which is not tested here."
    ),
    claims=(
        Claim(
            "test DSMI(Z;Y) bits",
            TRUE,
            INIT,
            True,
            "DSMI(Z;Y) rises during generalisable learning (true labels vs the untrained net)",
            regime=(_GENERALISES,),
            paper=_PAPER,
        ),
        Claim(
            "test DSMI(Z;Y) bits",
            TRUE,
            SHUFFLED,
            True,
            "DSMI(Z;Y) ends higher after generalisable learning than after memorisation",
            regime=(_GENERALISES, _MEMORISES),
            paper=_PAPER,
        ),
        Claim(
            "test DSE(Z) bits",
            TRUE,
            INIT,
            True,
            "DSE(Z) rises during training (true labels vs the untrained net)",
            regime=(_GENERALISES,),
            paper=_PAPER,
        ),
        Claim(
            "test kNN-probe accuracy",
            TRUE,
            SHUFFLED,
            True,
            "a 5-NN probe separates the generalising from the memorising representation "
            "(the comparison DSMI is measured against)",
            kind="sanity",
        ),
    ),
    regime_checks=(
        RegimeCheck(
            _GENERALISES,
            "true-label test accuracy",
            "test accuracy of the true-label net at its selected checkpoint (> 0.9)",
            0.9,
        ),
        RegimeCheck(
            _MEMORISES,
            "shuffled arm's own-label train accuracy",
            "training accuracy of the shuffled-label net on its own labels (> 0.95: memorised)",
            0.95,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "per seed: true labels: learning rate and checkpoint (every 10 epochs) with the best "
        "validation accuracy; shuffled labels: learning rate and earliest checkpoint with the "
        "best training accuracy on its own labels (memorisation is its regime; validation "
        "accuracy is at chance by design); untrained: nothing to select"
    ),
    run_seed=run_seed,
    requires=("sklearn",),
)
