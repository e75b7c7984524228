"""Information planes on digits: adaptive (EBAB) vs fixed-range bins, tanh vs ReLU, L2.

Protocol 2: train/validation/test splits; every network tunes its Adam learning rate on final
validation accuracy (the information-plane trajectory is the whole fixed-length run, so there is
no early stopping); the estimator arms of one network share its choice. Compression is read from
the last hidden layer (4 units) after the network has fit its training set.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune
from inforeg.lab.experiments.training import minibatches, seed_everything

WIDTHS = (32, 16, 8, 4)
N_BINS = 6  # 30 bins put the 4-unit layer at the log2 N ceiling (audit A)
L2_PENALTY = 0.015  # the authors' toy setting: penalty * sum ||W||^2 / 2 over hidden weights
TANH_LOW = -1.000001  # lower bin edge for tanh in the authors' code (0 for ReLU)
FIT_FRACTION = 0.95  # the fit phase ends when training accuracy reaches 95% of its final value
SMOOTH = 3  # moving average over snapshots before reading peaks
LR_GRID = {"lr": [4e-4, 1e-3]}
REFERENCE = "no compression (0 bits)"
DROP = "I(X;T) drop after fit (bits)"
# network -> (activation, lower edge, L2 penalty); estimator arms -> (network, estimator)
NETWORKS: dict[str, tuple[type[nn.Module], float, float]] = {
    "ReLU": (nn.ReLU, 0.0, 0.0),
    "tanh": (nn.Tanh, TANH_LOW, 0.0),
    "ReLU + L2": (nn.ReLU, 0.0, L2_PENALTY),
}
ARMS: dict[str, tuple[str, Literal["adaptive", "fixed"]]] = {
    "ReLU, adaptive bins": ("ReLU", "adaptive"),
    "ReLU, fixed run-range bins": ("ReLU", "fixed"),
    "tanh, adaptive bins": ("tanh", "adaptive"),
    "tanh, fixed [-1, 1] bins": ("tanh", "fixed"),
    "ReLU + L2, adaptive bins": ("ReLU + L2", "adaptive"),
}
GRIDS: dict[str, dict[str, list[Any]]] = {arm: LR_GRID for arm in ARMS} | {REFERENCE: {}}
N_TRAIN = 1077  # the training split of load_digits_split(test_size=0.25, val_size=0.15)
CEILING = math.log2(N_TRAIN) - 1.0  # I(X;T) <= log2 N; keep a bit of room below it


def _mlp(d_in: int, k: int, act: type[nn.Module]) -> nn.Sequential:
    """64-32-16-8-4-10 with PyTorch's default initialisation."""
    layers: list[nn.Module] = []
    w = d_in
    for h in WIDTHS:
        layers += [nn.Linear(w, h), act()]
        w = h
    layers.append(nn.Linear(w, k))
    return nn.Sequential(*layers)


def _last_hidden(model: nn.Sequential, x: Tensor) -> Tensor:
    return model[:-1](x)


def _smooth(v: list[float]) -> list[float]:
    return [
        sum(v[max(0, i - SMOOTH + 1) : i + 1]) / len(v[max(0, i - SMOOTH + 1) : i + 1])
        for i in range(len(v))
    ]


def compression(ixt: list[float], train_acc: list[float]) -> dict[str, float]:
    """Compression of one I(X;T) trajectory after the fit phase (snapshots, init excluded).

    ``fit`` is the first snapshot whose training accuracy reaches 95% of the final one. On the
    smoothed trajectory: ``from peak`` = max after ``fit`` minus the end (the paper's reading;
    reported only: it is >= 0 by construction and grows with the estimate's fluctuation),
    ``after fit`` = the value at ``fit`` minus the end (zero in expectation without compression,
    so it can be tested, alone or between arms).
    """
    s = _smooth(ixt)
    fit = next(i for i, a in enumerate(train_acc) if a >= FIT_FRACTION * train_acc[-1])
    peak = max(s[fit:])
    return {
        "compression from post-fit peak (bits)": peak - s[-1],
        DROP: s[fit] - s[-1],
        "last-layer I(X;T) after fit (bits)": s[fit],
        "last-layer peak I(X;T) after fit (bits)": peak,
        "final last-layer I(X;T) (bits)": s[-1],
        "fit epoch index": float(fit),
    }


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.estimators import adaptive_binning_mutual_information
    from inforeg.lab.datasets import load_digits_split

    data = load_digits_split(test_size=0.25, val_size=0.15)
    if data.sizes["train"] != N_TRAIN:  # the regime check's ceiling is log2(N_TRAIN) - 1
        raise RuntimeError(f"training split has {data.sizes['train']} images, not {N_TRAIN}")
    epochs, every = (20, 2) if quick else (1000, 10)

    def train(net: str, point: dict[str, Any]) -> Selected:
        act, _, l2 = NETWORKS[net]
        gen = seed_everything(seed)
        model = _mlp(data.num_features, data.num_classes, act)
        hidden_weights = [m.weight for m in list(model)[:-1] if isinstance(m, nn.Linear)]
        opt = torch.optim.Adam(model.parameters(), lr=point["lr"])  # constant, as the paper
        best = BestOnValidation(higher_is_better=True)
        snaps: list[Tensor] = []
        train_acc: list[float] = []

        def snapshot() -> None:
            with torch.no_grad():
                snaps.append(_last_hidden(model, data.x_train).clone())
                train_acc.append(
                    float((model(data.x_train).argmax(1) == data.y_train).float().mean())
                )

        for epoch in range(epochs):
            model.train()
            for idx in minibatches(data.x_train.shape[0], 256, gen):
                loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
                if l2 > 0:
                    loss = loss + l2 * sum((w**2).sum() for w in hidden_weights) / 2
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                val = float((model(data.x_val).argmax(1) == data.y_val).float().mean())
                test = float((model(data.x_test).argmax(1) == data.y_test).float().mean())
            at_epoch = {"test accuracy (best validation epoch)": test}
            best.update(epoch, val, functools.partial(dict, at_epoch))
            if (epoch + 1) % every == 0:
                snapshot()
        # lr chosen on the final validation accuracy: the trajectory is the whole run
        return Selected(
            val,
            {"test accuracy (end)": test, **best.metrics},
            epochs - 1,
            {"snaps": snaps, "train_acc": train_acc},
        )

    metrics: dict[str, dict[str, float]] = {
        REFERENCE: {
            "compression from post-fit peak (bits)": 0.0,
            DROP: 0.0,
        }
    }
    chosen: dict[str, dict[str, Any]] = {REFERENCE: {}}
    curves: dict[str, dict[str, list[float]]] = {
        "last-layer I(X;T) (bits)": {},
        "last-layer I(T;Y) (bits)": {},
    }
    regime: dict[str, float] = {}
    for net, (_, low, _) in NETWORKS.items():
        point, sel = tune(LR_GRID, functools.partial(train, net))
        snaps, train_acc = sel.extras["snaps"], sel.extras["train_acc"]
        run_max = max(float(s.max()) for s in snaps)
        for arm, (arm_net, estimator) in ARMS.items():
            if arm_net != net:
                continue
            if estimator == "adaptive":
                kw: dict[str, Any] = {"lower_edge": low}
            else:  # one range for the whole run: [-1, 1] for tanh, [0, run max] for ReLU
                kw = {"value_range": (-1.0, 1.0) if low < 0 else (0.0, run_max)}
            ixt, ity = [], []
            for s in snaps:
                a, b = adaptive_binning_mutual_information(
                    s, data.y_train, n_bins=N_BINS, binning=estimator, base=2.0, **kw
                )
                ixt.append(float(a))
                ity.append(float(b))
            metrics[arm] = {
                **compression(ixt, train_acc),
                "final last-layer I(T;Y) (bits)": ity[-1],
                **sel.metrics,
            }
            chosen[arm] = point
            curves["last-layer I(X;T) (bits)"][arm] = ixt
            curves["last-layer I(T;Y) (bits)"][arm] = ity
            if estimator == "adaptive":
                regime[f"{net} adaptive peak I(X;T)"] = max(ixt)
        regime[f"{net} fit point"] = metrics[f"{net}, adaptive bins"]["fit epoch index"] / len(
            snaps
        )
    return SeedResult(metrics, curves, tuning=chosen, regime=regime, splits=data.sizes)


def _regime_checks(net: str) -> tuple[RegimeCheck, RegimeCheck]:
    return (
        RegimeCheck(
            f"{net}: I(X;T) below ceiling",
            f"{net} adaptive peak I(X;T)",
            f"the {net} network's last-layer I(X;T) under adaptive bins peaks below log2 N - 1 "
            f"= {CEILING:.2f} bits (N = {N_TRAIN} distinct inputs): a drop is measurable",
            CEILING,
            above=False,
        ),
        RegimeCheck(
            f"{net}: fits early",
            f"{net} fit point",
            f"the {net} network ends its fit phase (training accuracy at 95% of its final value) "
            "within the first half of the run (mean fraction of snapshots < 0.5), leaving a "
            "post-fit phase in which compression can show",
            0.5,
            above=False,
        ),
    )


PAPER = (
    "Chelombiev et al. 2019 (12-bit toy task, 4096 inputs, 10-7-5-4-3 tanh/ReLU/... networks, "
    "Adam 4e-4, 8000 epochs): "
)

EXPERIMENT = Experiment(
    name="information-plane-digits",
    summary=(
        "Entropy-based adaptive binning (EBAB: bins holding equal numbers of distinct activation "
        "values) vs equal-width bins over one fixed range for the whole run (the authors' "
        "non-adaptive baseline), on the last hidden layer of tanh and ReLU MLPs, with and "
        "without L2 regularisation."
    ),
    setup=(
        "scikit-learn digits, stratified train/validation/test split 1077/270/450 (fixed); the "
        "information plane is measured on the 1077 distinct training inputs, so I(X;T) = H(T) "
        "<= log2 1077 = 10.07 bits. MLP 64-32-16-8-4-10 (tanh or ReLU, PyTorch's default "
        "init: the authors' truncated normal with std 2/sqrt(fan_in) for ReLU left one ReLU "
        "network still fitting at epoch 900 of 1000 in a 1-seed full run, and He's sqrt(2) at "
        "epoch 600 in a probe, with no post-fit phase to measure), Adam at a constant learning rate, batch 256, 1000 epochs (20 with "
        "--quick); snapshots of the last hidden layer (4 units) every 10 epochs (2). L2: "
        "0.015 * sum ||W||^2 / 2 over the hidden weights (the authors' toy setting). Each network "
        "tunes its learning rate {4e-4 (the paper's), 1e-3} on final validation accuracy (no "
        "early stopping: the trajectory is the whole run); the estimator arms of one network "
        "share its choice. 6 bins for every estimator (with 30 the 4-unit layer sits at the "
        "log2 N ceiling, audit A). Adaptive bins: lower edge 0 (ReLU) or -1.000001 (tanh), as "
        "the authors. Fixed bins: one range for the whole run, [-1, 1] for tanh and [0, the "
        "largest activation of the layer over all snapshots] for ReLU, as the authors' "
        "baselines (the earlier run used each epoch's own maximum, which rescales with the "
        "layer). The fit phase ends at the first snapshot whose training accuracy reaches 95% "
        "of the final one (the initialisation is excluded). On the trajectory smoothed over 3 "
        "snapshots: compression from the post-fit peak = max after the fit minus the end (>= 0 "
        "by construction and inflated by fluctuation: reported only), and the I(X;T) drop "
        "after the fit = "
        "value at the fit minus the end (zero in expectation without compression, so a single "
        "arm can be tested against the 0-bit reference). Every claim reads the drop after the "
        "fit. A first full run also judged 'adaptive bins reveal ReLU compression that fixed "
        "run-range bins hide' on the peak-based measure; it came out +0.097 bits [0.025, 0.168] "
        "(10/10 seeds), but that is the adaptive estimate's snapshot-to-snapshot fluctuation "
        "against a fixed-range curve that only rises (peak-based 0.001): the same ReLU layers' "
        "drop after the fit is -0.076 bits. That claim was replaced by the single-arm ReLU "
        "claim, and the L2 claim moved to the drop measure too (it was -0.044 [-0.149, 0.060] "
        "on the peak measure), after that run; the metrics are unchanged. Recorded (10 seeds, "
        "440 s CPU; the same numbers as that first run): tanh layers compress under adaptive "
        "bins, drop after the fit +0.41 bits [0.10, 0.72] (8/10 seeds; fixed [-1, 1] bins "
        "+0.38); ReLU layers do not show it here, -0.08 bits [-0.25, 0.10] (4/10, "
        "inconclusive; fixed run-range bins: I(X;T) rises by 2.98 bits after the fit); L2 vs "
        "none -0.06 bits [-0.34, 0.22] (5/10, inconclusive). The paper's ReLU finding is not "
        "reproduced at this scale (1077 inputs, a 4-unit layer, 1000 epochs; the paper: 4096 "
        "inputs, 8000 epochs)."
    ),
    claims=(
        Claim(
            DROP,
            "ReLU, adaptive bins",
            REFERENCE,
            True,
            "ReLU layers compress under adaptive bins: saturation is not needed for compression",
            regime=("ReLU: I(X;T) below ceiling", "ReLU: fits early"),
            paper=PAPER + "'saturation of the activation function is not required for "
            "compression': ReLU layers compress under the adaptive estimators, where fixed bins "
            "(Saxe et al.) show none.",
        ),
        Claim(
            DROP,
            "tanh, adaptive bins",
            REFERENCE,
            True,
            "tanh layers compress under adaptive bins (I(X;T) falls after the fit)",
            regime=("tanh: I(X;T) below ceiling", "tanh: fits early"),
            paper=PAPER + "saturating (tanh) layers compress under the adaptive estimators.",
        ),
        Claim(
            DROP,
            "ReLU + L2, adaptive bins",
            "ReLU, adaptive bins",
            True,
            "L2 regularisation increases compression",
            regime=(
                "ReLU: I(X;T) below ceiling",
                "ReLU: fits early",
                "ReLU + L2: I(X;T) below ceiling",
                "ReLU + L2: fits early",
            ),
            paper=PAPER + "'L2 regularization leads to significantly increased compression' "
            "(penalty 0.015).",
        ),
    ),
    regime_checks=tuple(c for net in NETWORKS for c in _regime_checks(net)),
    tuning=GRIDS,
    selection=(
        "final validation accuracy, per network: best learning rate (the estimator arms of a "
        "network share it); no early stopping, the information plane needs the whole run"
    ),
    run_seed=run_seed,
    requires=("sklearn",),  # the digits data
)
