"""MEE against mode collapse: an MLP GAN on 8x8 digits, scored by a digits classifier.

Protocol 2: the baseline GAN (logistic loss) mode-collapses partially on digits (regime check:
the class histogram of its samples is far from uniform); MEE adds the entropy term on D's
embedding (and on G's codes), DLLE and DIsoMap (alpha ~ U(0, 1), small weight). The GAN tunes
its learning rate, MEE its entropy weight (equal grids of 3), each with its stopping point, on a
validation Fréchet distance in the classifier's feature space; coverage (class histogram) and
quality (classifier confidence) are reported separately, on the test split.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.progress import step as report_step
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import seed_everything

Z_DIM, HIDDEN, CODE = 16, 128, 8  # G's noise, hidden width of G and D, D's embedding size m
BATCH = 64
STEPS, QUICK_STEPS = 1200, 50
EVALS = 8
N_SAMPLES = 1000  # generated samples per evaluation
LR = 4e-4  # MEE trains at the middle of the GAN's learning-rate grid
DLLE_NOISE, ISO_WEIGHT, MEMORY = 0.1, 0.1, 1024
GAN, MEE = "GAN", "GAN + MEE"
GRIDS: dict[str, dict[str, list[Any]]] = {
    GAN: {"lr": [2e-4, 4e-4, 8e-4]},
    MEE: {"entropy_weight": [1e-3, 1e-2, 1e-1]},
}


def _digits(seed: int) -> dict[str, Tensor]:
    """Digits in [-1, 1] (pixel / 8 - 1) with the fixed stratified train/validation/test split."""
    from sklearn.datasets import load_digits

    from inforeg.lab.datasets import split_arrays

    d = load_digits()
    sp = split_arrays(d.data / 8.0 - 1.0, d.target, test_size=0.3, val_size=0.15, standardise=False)
    return {
        "x_train": sp.x_train,
        "y_train": sp.y_train,
        "x_val": sp.x_val,
        "y_val": sp.y_val,
        "x_test": sp.x_test,
        "y_test": sp.y_test,
    }


def _mlp(d_in: int, d_out: int, out: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Linear(d_in, HIDDEN),
        nn.LeakyReLU(0.2),
        nn.Linear(HIDDEN, HIDDEN),
        nn.LeakyReLU(0.2),
        nn.Linear(HIDDEN, d_out),
    ]
    return nn.Sequential(*layers, *([out] if out is not None else []))


class Scorer:
    """A digits classifier trained on the real training split: it labels generated samples
    (coverage), gives their confidence (quality) and its hidden layer is the feature space of the
    Fréchet distance (a digits analogue of FID)."""

    def __init__(self, x: Tensor, y: Tensor, seed: int, epochs: int) -> None:
        gen = seed_everything(10_000 + seed)
        self.features = nn.Sequential(nn.Linear(64, 64), nn.ReLU())
        self.head = nn.Linear(64, 10)
        params = list(self.features.parameters()) + list(self.head.parameters())
        opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-4)
        for _ in range(epochs):
            order = torch.randperm(x.shape[0], generator=gen)
            for start in range(0, x.shape[0], 64):
                idx = order[start : start + 64]
                noisy = x[idx] + 0.05 * torch.randn(idx.shape[0], 64, generator=gen)
                loss = F.cross_entropy(self.head(self.features(noisy)), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

    @torch.no_grad()
    def accuracy(self, x: Tensor, y: Tensor) -> float:
        return float((self.head(self.features(x)).argmax(1) == y).float().mean())

    @torch.no_grad()
    def stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(features, class probabilities) of ``x``."""
        f = self.features(x)
        return f, torch.softmax(self.head(f), dim=1)


def frechet_distance(a: Tensor, b: Tensor) -> float:
    r"""Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b`` (FID's formula):
    :math:`\|\mu_a - \mu_b\|^2 + \mathrm{tr}(\Sigma_a + \Sigma_b - 2(\Sigma_a\Sigma_b)^{1/2})`,
    with :math:`\mathrm{tr}(\Sigma_a\Sigma_b)^{1/2}` the sum of the square roots of the
    eigenvalues of :math:`\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2}` (float64)."""
    a, b = a.double(), b.double()
    mu = a.mean(0) - b.mean(0)
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    w, v = torch.linalg.eigh(ca)
    root_a = (v * w.clamp_min(0).sqrt()) @ v.T
    cross = torch.linalg.eigvalsh(root_a @ cb @ root_a).clamp_min(0).sqrt().sum()
    return float(mu @ mu + ca.trace() + cb.trace() - 2 * cross)


def coverage_and_quality(probs: Tensor) -> dict[str, float]:
    """Class histogram of the classifier's labels: its KL to uniform (nats; 0 = every class
    equally often), classes holding >= 2% of the samples; and the mean top-class confidence."""
    hist = torch.bincount(probs.argmax(1), minlength=10).double() / probs.shape[0]
    kl = float(torch.special.xlogy(hist, hist * 10).sum())
    return {
        "class KL to uniform (nats)": kl,
        "classes covered (>= 2% of samples)": float((hist >= 0.02).sum()),
        "mean classifier confidence": float(probs.max(1).values.mean()),
        "confident samples (>= 0.9)": float((probs.max(1).values >= 0.9).float().mean()),
    }


def affine_r2(d_net: nn.Module, x: Tensor) -> float:
    """Share of the variance of D's outputs on ``x`` that an affine map of ``x`` explains (the
    audit's sign that DIsoMap forced D to be affine in the 2-D toy)."""
    with torch.no_grad():
        e = d_net(x).double()
        design = torch.cat([x.double(), torch.ones(x.shape[0], 1, dtype=torch.float64)], 1)
        coef = torch.linalg.lstsq(design, e).solution
        resid = e - design @ coef
        return float(1 - resid.pow(2).sum() / (e - e.mean(0)).pow(2).sum())


def _test_metrics(
    d_net: nn.Module,
    samples: Tensor,
    feat: Tensor,
    probs: Tensor,
    feat_test: Tensor,
    x_test: Tensor,
) -> dict[str, float]:
    """Test metrics of one evaluation (read only when its validation score is the best)."""
    return {
        "test Fréchet distance (classifier features)": frechet_distance(feat, feat_test),
        **coverage_and_quality(probs),
        "D affine R^2": affine_r2(d_net, torch.cat([x_test, samples[: x_test.shape[0]]])),
        "NN entropy of D's codes of samples": code_entropy(d_net, samples),
    }


@torch.no_grad()
def code_entropy(d_net: nn.Module, samples: Tensor) -> float:
    """MEE's own estimate (log of the mean squared nearest-neighbour distance, per dimension)
    of the entropy of D's codes of ``samples``, each against the others."""
    from inforeg.estimators import nearest_neighbor_entropy

    return float(nearest_neighbor_entropy(d_net(samples)))


def fit(
    arm: str,
    point: dict[str, Any],
    seed: int,
    data: dict[str, Tensor],
    scorer: Scorer,
    steps: int,
) -> Selected:
    """Train one arm at one grid point; keep the evaluation with the lowest validation Fréchet
    distance and report test metrics there."""
    from inforeg.estimators import ManifoldEntropyLoss, disomap_loss, dlle_loss, isometric_mix

    gen = seed_everything(seed)  # same initialisation, batches and noise for every arm and point
    g_net, d_net = _mlp(Z_DIM, 64, nn.Tanh()), _mlp(64, CODE)
    lr = float(point.get("lr", LR))
    opt_g = torch.optim.Adam(g_net.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d_net.parameters(), lr=lr, betas=(0.5, 0.999))
    weight = float(point.get("entropy_weight", 0.0))
    warm = steps // 5  # linear warm-up of the entropy weight (authors: over 100 epochs)
    ent_real = ManifoldEntropyLoss(CODE, memory_size=MEMORY, weight=weight, warmup_epochs=warm)
    ent_fake = ManifoldEntropyLoss(CODE, memory_size=MEMORY, weight=weight, warmup_epochs=warm)
    x_train = data["x_train"]
    feat_val, _ = scorer.stats(data["x_val"])
    feat_test, _ = scorer.stats(data["x_test"])
    eval_z = torch.randn(N_SAMPLES, Z_DIM, generator=torch.Generator().manual_seed(seed + 1))
    best = BestOnValidation(higher_is_better=False)
    history: list[float] = []
    every = max(1, steps // EVALS)
    for s in range(steps):
        x = x_train[torch.randint(0, x_train.shape[0], (BATCH,), generator=gen)]
        z = torch.randn(BATCH, Z_DIM, generator=gen)
        fake = g_net(z).detach()
        inputs = [x, fake]
        if arm == MEE:
            alpha = torch.rand(BATCH, generator=gen)  # U(0, 1): convex mixes only
            inputs += [
                x + DLLE_NOISE * torch.randn(x.shape, generator=gen),
                fake + DLLE_NOISE * torch.randn(x.shape, generator=gen),
                isometric_mix(x, fake, alpha),
            ]
        # One forward pass over every batch D sees in this step (D has no batch statistics, so
        # this is the same as one pass per batch, at a fraction of the per-call overhead).
        codes = d_net(torch.cat(inputs)).split(BATCH)
        e_x, e_g = codes[0], codes[1]
        loss_d = F.softplus(-e_x.mean(1)).mean() + F.softplus(e_g.mean(1)).mean()
        if arm == MEE:
            ent_real.set_epoch(s)
            ent_fake.set_epoch(s)
            e_x_aug, e_g_aug, e_mix = codes[2:]
            loss_d = loss_d + ent_real(e_x) + dlle_loss(e_x, e_x_aug) + dlle_loss(e_g, e_g_aug)
            loss_d = loss_d + ISO_WEIGHT * disomap_loss(e_mix, e_x, e_g, alpha, generator=gen)
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        e_fake = d_net(g_net(z))  # G reuses z, as the authors
        loss_g = F.softplus(-e_fake.mean(1)).mean()
        if arm == MEE:
            loss_g = loss_g + ent_fake(e_fake)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        if (s + 1) % every:
            continue
        report_step(s + 1, steps, f"{arm} {point} step")
        with torch.no_grad():
            samples = g_net(eval_z)
        feat, probs = scorer.stats(samples)
        val_fd = frechet_distance(feat, feat_val)
        history.append(val_fd)
        measure = functools.partial(
            _test_metrics, d_net, samples, feat, probs, feat_test, data["x_test"]
        )
        best.update(s + 1, val_fd, measure)
    if best.step < 0:
        return Selected(math.nan, {})
    return best.result(history=history)


def run_seed(seed: int, quick: bool) -> SeedResult:
    data = _digits(seed)
    scorer = Scorer(data["x_train"], data["y_train"], seed, epochs=5 if quick else 60)
    steps = QUICK_STEPS if quick else STEPS
    fit_arm = functools.partial(fit, seed=seed, data=data, scorer=scorer, steps=steps)
    tuned = tune_arms(GRIDS, fit_arm, higher_is_better=False)
    metrics = tuned.metrics("selected step")
    curves = {"validation Fréchet distance": tuned.extras("history")}
    feat_train, _ = scorer.stats(data["x_train"])
    feat_test, _ = scorer.stats(data["x_test"])
    real_fd = frechet_distance(feat_train, feat_test)
    gan = metrics[GAN]
    regime = {
        "GAN class KL to uniform": gan["class KL to uniform (nats)"],
        "GAN Fréchet distance over real data's": (
            gan["test Fréchet distance (classifier features)"] - real_fd
        ),
        "scorer test accuracy": scorer.accuracy(data["x_test"], data["y_test"]),
    }
    splits = {
        k: int(data[f"x_{s}"].shape[0])
        for k, s in (("train", "train"), ("validation", "val"), ("test", "test"))
    }
    return SeedResult(metrics, curves, tuning=tuned.points(), regime=regime, splits=splits)


EXPERIMENT = Experiment(
    name="mee-digits-gan",
    summary=(
        "MEE adds to the discriminator a nearest-neighbour entropy term on its embedding (against "
        "a FIFO memory of past codes, -log of the mean squared NN distance), DLLE (invariance to "
        "a small perturbation) and DIsoMap (D of a convex mix = mix of the Ds + noise); the "
        "generator gets the entropy term on its codes. Here on an MLP GAN over 8x8 digits, whose "
        "plain version produces the classes unevenly."
    ),
    setup=(
        "scikit-learn digits scaled to [-1, 1], fixed stratified split (987 train / 270 "
        "validation / 540 test). G: MLP 16-128-128-64 with tanh; D: MLP 64-128-128-8 (m = 8, "
        "LeakyReLU 0.2); logistic (non-saturating) GAN loss on the mean of D's 8 outputs (the "
        "authors' unconstrained critic loss made even the plain GAN fail on the audit's toy); "
        "Adam betas (0.5, 0.999), batch 64, one G step per D step with the same z (as the "
        "authors), 1200 steps (50 with --quick). MEE: entropy term on real codes (D) and "
        "generated codes (G), memory 1024 codes, weight warmed up linearly over the first 20% of "
        "steps; DLLE with Gaussian pixel noise 0.1 as the neighbourhood (flips, the authors' "
        "augmentation for CIFAR, do not preserve digits), weight 1 as the authors; DIsoMap with "
        "alpha ~ U(0, 1) (convex mixes, the README's suggestion) at weight 0.1 (the audit found "
        "the code's N(0, 1) at weight 1 forces D to be affine on a 2-D toy; D's affine R^2 on "
        "test and generated images is reported). Scorer: a 64-64-10 MLP classifier trained per "
        "seed on the real training split (test accuracy about 0.97, a regime measurement); its "
        "hidden layer is the feature space of a Fréchet distance (a digits FID) against the "
        "real validation (selection) or test (reported) images, over 1000 samples from fixed "
        "noise. Coverage: KL of the samples' class histogram to uniform (1000 uniform samples "
        "give about 9/2000 = 0.0045 from sampling alone) and classes with >= 2% of the samples; "
        "quality: mean classifier confidence and the share of samples with confidence >= 0.9 "
        "(real test digits: 0.96 and 0.88). Tuning on validation, equal grids of 3: the GAN's "
        "learning rate {2e-4, 4e-4, 8e-4}; MEE's entropy weight {1e-3, 1e-2, 1e-1} (the audit's "
        "range; README 5e-4) at lr 4e-4; stopping point per arm among 8 evaluations (every 150 "
        "steps) by validation Fréchet distance; test metrics there. Design changes made from "
        "baseline-only pilots, before any MEE result was seen: the GAN's grid was {1e-4, 2e-4, "
        "4e-4} with 2500 steps, but at 1e-4 and 2e-4 it was still far from converged (seed 0: "
        "validation Fréchet distance 22 and 24 vs 11.5 at 4e-4), so the grid moved up one step "
        "and MEE trains at its middle, 4e-4; steps were cut from 2500 to 1200 to fit the CPU "
        "budget (MEE's step costs about 2.3 GAN steps); the collapse threshold is 0.05 nats "
        "(ten times the sampling level), as the plain GAN covers all 10 classes but unevenly "
        "(pilot KL 0.11-0.31). Full run (10 seeds, 316 s CPU): the regime checks pass (GAN class "
        "KL 0.136, Fréchet distance 14.5 above real data's, scorer accuracy 0.97), and all "
        "three paper claims did not hold: class KL 0.285 vs 0.136 (+0.149 [0.034, 0.264]), "
        "Fréchet distance 28.0 vs 14.9 (+13.1 [8.5, 17.8], worse in 10/10 seeds), confidence "
        "0.757 vs 0.783 (-0.026 [-0.048, -0.004]). Two caveats, found after the run and not "
        "acted on: the GAN chose lr 8e-4 (the top of its grid) in 10/10 seeds while MEE trains "
        "at 4e-4, so part of the gap is the learning rate; and D's affine R^2 is 0.89 with MEE "
        "against 0.67 without, so DIsoMap (with DLLE) still pulls D towards an affine map in "
        "64-D at weight 0.1. The sanity claim held: MEE raises the entropy estimate of D's "
        "codes of samples, +0.69 [0.04, 1.35]."
    ),
    claims=(
        Claim(
            "class KL to uniform (nats)",
            MEE,
            GAN,
            False,
            "MEE samples cover the classes more evenly (lower KL of the class histogram to "
            "uniform)",
            regime=("GAN produces the classes unevenly", "scorer is accurate"),
            paper=(
                "Abstract: 'our pipeline effectively reduces the mode collapse without "
                "sacrificing the quality of generated samples' (CIFAR-10, CelebA, ANIME-FACE; "
                "diversity via FID and Inception score). Small analogue: evenness of the class "
                "histogram of 1000 generated digits under a digits classifier."
            ),
        ),
        Claim(
            "test Fréchet distance (classifier features)",
            MEE,
            GAN,
            False,
            "MEE lowers the Fréchet distance to real test digits",
            regime=("GAN above the real-data distance", "scorer is accurate"),
            paper=(
                "Abstract: 'outperforms the GAN baseline, MaF-GAN on CelebA (9.13 vs. 12.43 in "
                "FID)'. Small analogue: Fréchet distance in a digits classifier's feature space."
            ),
        ),
        Claim(
            "mean classifier confidence",
            MEE,
            GAN,
            True,
            "MEE does not lower sample quality (mean classifier confidence; 'inconclusive' "
            "means no detectable change, 'did not hold' a loss of quality)",
            regime=("scorer is accurate",),
            paper=(
                "Abstract: 'reduces the mode collapse without sacrificing the quality of "
                "generated samples'. Small analogue: the digits classifier's mean confidence on "
                "generated digits."
            ),
        ),
        Claim(
            "NN entropy of D's codes of samples",
            MEE,
            GAN,
            True,
            "MEE spreads D's codes of generated samples (higher nearest-neighbour entropy "
            "estimate: the quantity its entropy term maximises)",
            kind="sanity",
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "GAN produces the classes unevenly",
            "GAN class KL to uniform",
            "KL (nats) of the class histogram of the GAN's 1000 samples to uniform at its "
            "selected point (> 0.05: ten times what sampling alone gives, some classes clearly "
            "under- or over-produced)",
            0.05,
        ),
        RegimeCheck(
            "GAN above the real-data distance",
            "GAN Fréchet distance over real data's",
            "the GAN's test Fréchet distance minus that of the real training images to the "
            "test images (> 0: room to improve)",
            0.0,
        ),
        RegimeCheck(
            "scorer is accurate",
            "scorer test accuracy",
            "test accuracy of the digits classifier that labels the samples (> 0.9)",
            0.9,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "validation Fréchet distance (classifier features, 1000 samples vs the real validation "
        "split), per arm: best evaluation within a run, then best grid point"
    ),
    run_seed=run_seed,
    requires=("sklearn",),
)
