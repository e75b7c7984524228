"""Information planes of tanh vs ReLU MLPs on digits with adaptive (EBAB) and fixed-width bins."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inforeg.lab.experiments.base import Claim, Experiment, SeedResult
from inforeg.lab.experiments.training import seed_everything, train_classifier

WIDTHS = (32, 16, 8, 4)


def _mlp(d_in: int, k: int, act: type[nn.Module]) -> nn.Sequential:
    layers: list[nn.Module] = []
    w = d_in
    for h in WIDTHS:
        layers += [nn.Linear(w, h), act()]
        w = h
    layers.append(nn.Linear(w, k))
    return nn.Sequential(*layers)


def _hidden(model: nn.Sequential, x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    h = x
    for layer in model:
        h = layer(h)
        if isinstance(layer, (nn.ReLU, nn.Tanh)):
            out.append(h)
    return out


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.estimators import information_plane
    from inforeg.lab.datasets import load_digits_split

    data = load_digits_split()
    epochs = 8 if quick else 60
    metrics: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    for act_name, act, lower in (("tanh", nn.Tanh, -1.000001), ("ReLU", nn.ReLU, 0.0)):
        gen = seed_everything(seed)
        model = _mlp(data.num_features, data.num_classes, act)
        traj: dict[str, list[list[tuple[float, float]]]] = {"adaptive": [], "fixed": []}

        def log(epoch: int, model: nn.Sequential = model, traj=traj, lower=lower) -> None:  # type: ignore[no-untyped-def]
            with torch.no_grad():
                acts = _hidden(model, data.x_train)
            edges = [lower] * len(acts)
            for est in ("adaptive", "fixed"):
                traj[est].append(
                    information_plane(acts, data.y_train, est, lower_edges=edges, base=2.0)  # type: ignore[arg-type]
                )
            model.train()

        log(-1)
        train_classifier(
            model,
            data.x_train,
            data.y_train,
            lambda logits, y, idx, epoch: F.cross_entropy(logits, y),
            epochs,
            gen,
            lr=0.02,
            weight_decay=0.0,
            on_epoch_end=log,
        )
        for est in ("adaptive", "fixed"):
            method = f"{act_name}, {est} bins"
            last = [pts[-1] for pts in traj[est]]  # last hidden layer (4 units) per epoch
            ixt = [a for a, _ in last]
            ity = [b for _, b in last]
            metrics[method] = {
                "last-layer compression bits": max(ixt) - ixt[-1],
                "final I(T;Y) bits": ity[-1],
                "final I(X;T) bits": ixt[-1],
            }
            for layer in range(len(WIDTHS)):
                curves.setdefault(f"I(X;T) layer {layer + 1} (bits)", {})[method] = [
                    pts[layer][0] for pts in traj[est]
                ]
                curves.setdefault(f"I(T;Y) layer {layer + 1} (bits)", {})[method] = [
                    pts[layer][1] for pts in traj[est]
                ]
    return SeedResult(metrics, curves)


EXPERIMENT = Experiment(
    name="information-plane-digits",
    technique="adaptive-mi",
    summary=(
        "Entropy-based adaptive binning (EBAB, 30 bins holding equal numbers of distinct "
        "activation values) vs 30 fixed-width bins for I(X;T) and I(T;Y) of every hidden layer "
        "during training, for tanh and ReLU networks."
    ),
    setup=(
        "scikit-learn digits training split (1257 distinct inputs, so I(X;T) = H(T)). MLP "
        "64-32-16-8-4-10 with tanh or ReLU, SGD Nesterov lr 0.02, cosine schedule, batch 64, 60 "
        "epochs (8 with --quick); information plane after every epoch, bits. Lower bin edge "
        "-1.000001 (tanh) or 0 (ReLU), as the authors. Compression = peak minus final I(X;T) "
        "of the last hidden layer (4 units)."
    ),
    claims=(
        Claim(
            "last-layer compression bits",
            "ReLU, adaptive bins",
            "ReLU, fixed bins",
            True,
            "adaptive binning reveals compression in ReLU layers that fixed bins hide",
        ),
        Claim(
            "last-layer compression bits",
            "tanh, adaptive bins",
            "tanh, fixed bins",
            True,
            "adaptive binning also shows (at least as much) compression for tanh",
        ),
    ),
    run_seed=run_seed,
)
