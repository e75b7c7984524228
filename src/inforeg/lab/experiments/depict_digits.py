"""DEPICT on digits: a jointly trained denoising autoencoder + KL clustering head vs k-means.

Protocol 2: train/validation/test splits. Every arm starts from the same pre-trained denoising
autoencoder (per seed) and gets the same number of further epochs; each arm tunes its learning
rate and its stopping epoch on validation NMI. Test NMI/ACC at the selected point.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments._clustering import clustering_accuracy, nmi
from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import minibatches, seed_everything, train_epoch

K = 10
CODE = 10
DROPOUT = 0.1  # the noisy path: dropout on the input and hidden layer (code: 0.1, 0.1, 0)
KMEANS = "AE + k-means"
DEPICT = "DEPICT (p^2/f)"
PAPER_TARGET = "DEPICT, paper target (p/f^1/2)"
RANDOM_INIT = "DEPICT (p^2/f), random head"
NO_NORM = "no normalisation (p^2), random head"
LRS = [1e-3, 3e-4]
GRIDS: dict[str, dict[str, list[Any]]] = {
    arm: {"lr": LRS} for arm in (KMEANS, DEPICT, PAPER_TARGET, RANDOM_INIT, NO_NORM)
}
TARGETS: dict[str, dict[str, Any]] = {
    DEPICT: {"mode": "code"},
    PAPER_TARGET: {"mode": "paper"},
    RANDOM_INIT: {"mode": "code"},
    NO_NORM: {"power": (2.0, 0.0)},
}
KMEANS_EVERY = 5  # epochs between k-means refits of the k-means arm


class DenoisingAE(nn.Module):
    """MLP autoencoder 64-128-10-128-64; the noisy path drops inputs and hidden units."""

    def __init__(self, d_in: int) -> None:
        super().__init__()
        self.enc1, self.enc2 = nn.Linear(d_in, 128), nn.Linear(128, CODE)
        self.decoder = nn.Sequential(nn.Linear(CODE, 128), nn.ReLU(), nn.Linear(128, d_in))

    def encode(self, x: Tensor, noisy: bool = False) -> Tensor:
        drop = DROPOUT if noisy else 0.0
        h = F.relu(self.enc1(F.dropout(x, drop, training=noisy)))
        return self.enc2(F.dropout(h, drop, training=noisy))

    def reconstruction(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Noisy-path code and its reconstruction loss against the clean input."""
        z = self.encode(x, noisy=True)
        return z, F.mse_loss(self.decoder(z), x)


def _kmeans(z: Tensor, seed: int, n_init: int) -> Tensor:
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=K, n_init=n_init, random_state=seed).fit(z.numpy())
    return torch.as_tensor(km.cluster_centers_, dtype=torch.float32)


def _nearest(z: Tensor, centres: Tensor) -> Tensor:
    return torch.cdist(z, centres).argmin(1)


def _assign_nearest(model: DenoisingAE, centres: Tensor, x: Tensor) -> Tensor:
    return _nearest(model.encode(x), centres)


def _assign_head(model: DenoisingAE, head: nn.Module, x: Tensor) -> Tensor:
    return head(model.encode(x)).argmax(1)


def _test_scores(assign: Callable[[Tensor], Tensor], x: Tensor, y: Tensor) -> dict[str, float]:
    pred = assign(x)
    return {
        "test NMI": nmi(pred, y),
        "test ACC": clustering_accuracy(pred, y, K),
        "test clusters used": float(torch.unique(pred).numel()),
    }


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.lab.datasets import load_digits_split
    from inforeg.losses import DEPICTClusteringLoss

    data = load_digits_split(test_size=0.25, val_size=0.15)
    x, xv, xt = data.x_train, data.x_val, data.x_test
    pre_epochs, epochs = (3, 5) if quick else (50, 100)
    n_init = 2 if quick else 10

    # Pre-train one denoising AE per seed (reconstruction only); every arm starts from it.
    gen = seed_everything(seed)
    ae = DenoisingAE(x.shape[1])
    opt = torch.optim.Adam(ae.parameters(), lr=1e-3)
    for _ in range(pre_epochs):
        train_epoch(opt, x.shape[0], 100, gen, lambda i: ae.reconstruction(x[i])[1])
    pretrained = {k: v.clone() for k, v in ae.state_dict().items()}
    with torch.no_grad():
        z0 = ae.encode(x)
    centres0 = _kmeans(z0, seed, n_init)
    # softmax head from the centroids: logits = -|z - c|^2 / (2 s^2) up to a per-row constant
    s2 = float(((z0 - centres0[_nearest(z0, centres0)]) ** 2).sum(1).mean()) / CODE

    def fit(arm: str, point: dict[str, Any]) -> Selected:
        gen = seed_everything(seed)
        model = DenoisingAE(x.shape[1])
        model.load_state_dict(pretrained)
        head = nn.Linear(CODE, K)  # random init (seeded): the same in every random-head arm
        if arm in (DEPICT, PAPER_TARGET):
            with torch.no_grad():
                head.weight.copy_(centres0 / s2)
                head.bias.copy_(-0.5 * (centres0**2).sum(1) / s2)
        crit = DEPICTClusteringLoss(**TARGETS[arm]) if arm != KMEANS else None
        params = list(model.parameters()) + ([] if crit is None else list(head.parameters()))
        opt = torch.optim.Adam(params, lr=point["lr"])
        best = BestOnValidation(higher_is_better=True)
        used: list[float] = []
        for epoch in range(epochs):
            target = None
            if crit is not None:
                with torch.no_grad():  # clean path, whole training split, fixed for the epoch
                    target = crit.target(torch.softmax(head(model.encode(x)), 1))
            model.train()
            for idx in minibatches(x.shape[0], 100, gen):
                z, loss = model.reconstruction(x[idx])
                if crit is not None and target is not None:
                    loss = loss + crit(head(z), target[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            model.eval()
            with torch.no_grad():
                if crit is None:
                    if (epoch + 1) % KMEANS_EVERY:
                        continue
                    centres = _kmeans(model.encode(x), seed, n_init)
                    assign = functools.partial(_assign_nearest, model, centres)
                else:
                    assign = functools.partial(_assign_head, model, head)
                used.append(float(torch.unique(assign(x)).numel()))
                test_scores = functools.partial(_test_scores, assign, xt, data.y_test)
                best.update(epoch, nmi(assign(xv), data.y_val), test_scores)
        return best.result(final_clusters_used=used[-1], used=used)

    tuned = tune_arms(GRIDS, fit)
    regime = {
        "k-means test NMI": tuned[KMEANS][1].metrics["test NMI"],
        "p^2 clusters used (final epoch)": tuned[NO_NORM][1].extras["final_clusters_used"],
    }
    curves = {"clusters used on the training split": tuned.extras("used")}
    return SeedResult(
        tuned.metrics("selected epoch"),
        curves,
        tuning=tuned.points(),
        regime=regime,
        splits=data.sizes,
    )


EXPERIMENT = Experiment(
    name="depict-digits",
    summary=(
        "DEPICT trains a denoising autoencoder jointly with a softmax clustering head: each epoch "
        "a target Q is computed from the clean-path predictions (p^2/f in the authors' code, "
        "which produced the published numbers; p/f^1/2 in the paper) and the noisy path is "
        "trained toward it with cross-entropy, plus the reconstruction loss (weights 1 and 1)."
    ),
    setup=(
        "scikit-learn digits pixels, stratified train/validation/test split 1077/270/450 (fixed), "
        "standardised. Per seed, one denoising MLP autoencoder 64-128-10-128-64 (noisy path: "
        "dropout 0.1 on the input and hidden layer, as the code's encoder) is pre-trained on the "
        "training split for 50 epochs with reconstruction MSE (Adam 1e-3, batch 100); every arm "
        "starts from it and trains 100 more epochs (3 and 5 with --quick). AE + k-means: "
        "reconstruction only, k-means (10 inits) on the codes every 5 epochs, points assigned to "
        "the nearest centroid. DEPICT: softmax head on the clean code, initialised from the "
        "k-means centroids of the pre-trained codes (the paper initialises from a clustering), "
        "target recomputed once per epoch on the clean path of the training split, clustering "
        "CE on the noisy path plus reconstruction MSE. Paper target: the same with p/f^1/2. "
        "Normalisation claim: p^2/f vs the unnormalised p^2, both from the same random head "
        "(a k-means-initialised head never degenerates within the budget, audit A). Tuning per "
        "arm: Adam learning rate {1e-3, 3e-4} and the stopping epoch (every epoch; every 5th for "
        "k-means) on validation NMI; test NMI/ACC at the selected point. Differences from the "
        "paper: MLP instead of a convolutional AE, input-level instead of layer-wise "
        "reconstruction, no hard-label warm-up, 100 epochs at lr >= 3e-4 instead of up to 4000 "
        "at 1e-4, selection on labelled validation NMI instead of the stopping rule "
        "MSE(Q_t, Q_t-1) < 1e-7. Recorded run (10 seeds): trained jointly with the autoencoder, "
        "DEPICT does not beat k-means on the autoencoder's own features at this scale: NMI "
        "0.633 vs 0.653 (5/10 seeds, inconclusive), ACC 0.605 vs 0.656 (1/10, did not hold); "
        "the paper's target does no better (0.620 / 0.617). The normalisation claim holds: from "
        "the same random head p^2/f reaches NMI 0.614 with all 10 clusters in use, p^2 0.498 "
        "with 6.1 (10/10 seeds)."
    ),
    claims=(
        Claim(
            "test NMI",
            DEPICT,
            KMEANS,
            True,
            "DEPICT improves NMI over k-means on the autoencoder's features",
            regime=("k-means below ceiling",),
            paper="MNIST-full: DEPICT NMI 0.917 / ACC 0.965 (USPS 0.927 / 0.964), well above "
            "k-means and autoencoder + k-means baselines.",
        ),
        Claim(
            "test ACC",
            DEPICT,
            KMEANS,
            True,
            "DEPICT improves clustering accuracy over k-means on the autoencoder's features",
            regime=("k-means below ceiling",),
            paper="MNIST-full: DEPICT ACC 0.965 (USPS 0.964).",
        ),
        Claim(
            "test NMI",
            RANDOM_INIT,
            NO_NORM,
            True,
            "the cluster-frequency normalisation prevents degenerate clusters (higher NMI than "
            "the unnormalised p^2 target from the same random head)",
            regime=("p^2 degenerates",),
            paper="The KL(f || u) prior term (the 1/f normalisation of the target) is there to "
            "avoid degenerate solutions that put most samples in a few clusters.",
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "k-means below ceiling",
            "k-means test NMI",
            "NMI of AE + k-means at its selected point leaves room to improve (< 0.9)",
            0.9,
            above=False,
        ),
        RegimeCheck(
            "p^2 degenerates",
            "p^2 clusters used (final epoch)",
            "without the normalisation, training from the random head ends with fewer than 9.5 "
            "of 10 clusters used on the training split (mean over seeds)",
            9.5,
            above=False,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "validation NMI (labels of the validation split), per arm: best epoch within a run, "
        "then best learning rate; ties keep the earlier epoch / first grid point"
    ),
    run_seed=run_seed,
    requires=("sklearn", "scipy"),  # digits, k-means and NMI; Hungarian matching
)
