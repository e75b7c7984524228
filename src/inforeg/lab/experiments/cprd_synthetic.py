"""CPRD on synthetic image-text retrieval with a cross-encoder-like (concentrated) teacher.

Paired "image" and "text" views of clustered latents (near-duplicates inside a cluster are the
hard negatives); linear dual-encoder students trained with ITC, ITC + logit distillation (KD) or
ITC + CPRD (ListMLE over the student's K hardest in-batch negatives, in the teacher's order).

The teacher is built to have the property the paper names as the reason logit distillation fails
from a cross-encoder: its scores are concentrated. score = sigmoid(10 (cos(z_i, z_j) + e - 0.8)),
e ~ N(0, 0.02^2), with z the true latents: most pairs sit at the floor (~0), hard negatives
spread over (0, 1), matching pairs near 0.88. The first version of this experiment used the noisy
cosine itself (a dual-encoder-like score distribution, which favours KD) and compared final
epochs of an over-fitting ITC baseline.

Protocol 2: per seed fresh latents, train / validation / test pairs; each arm tunes two of its
own hyper-parameters over a 3 x 3 grid (ITC: temperature and learning rate; KD: teacher
temperature and weight; CPRD: K and beta) and its stopping epoch on validation R@1.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import minibatches

LATENT, FEATURES, EMBED = 16, 64, 32
CLUSTERS = 30
TEMPERATURE, LR = 0.05, 3e-3  # the student's ITC temperature and lr when not tuned
TEACHER_NOISE = 0.02  # teacher test R@1 ~0.96 (0.57-0.66 at 0.05: no better than the student)
N_PAIRS = {"train": 384, "validation": 300, "test": 500}
BATCH = 64
ITC, KD, CPRD = "ITC", "ITC + logit KD", "ITC + CPRD"
GRIDS: dict[str, dict[str, list[Any]]] = {
    ITC: {"temperature": [0.03, 0.05, 0.1], "lr": [1e-3, 3e-3, 1e-2]},
    KD: {"teacher_temperature": [0.02, 0.1, 0.5], "weight": [0.3, 1.0, 3.0]},
    CPRD: {"num_hard": [4, 8, 16], "beta": [0.3, 1.0, 3.0]},
}


def teacher_scores(z_a: Tensor, z_b: Tensor, g: torch.Generator) -> Tensor:
    """Cross-encoder-like scores: a sharp sigmoid of the noisy latent cosine (concentrated)."""
    cos = F.normalize(z_a, dim=1) @ F.normalize(z_b, dim=1).t()
    return torch.sigmoid(10.0 * (cos + TEACHER_NOISE * torch.randn(cos.shape, generator=g) - 0.8))


def _data(seed: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(7000 + seed)
    centres = torch.randn(CLUSTERS, LATENT, generator=g) * 1.5
    mix_v = torch.randn(LATENT, FEATURES, generator=g) / LATENT**0.5
    mix_t = torch.randn(LATENT, FEATURES, generator=g) / LATENT**0.5
    out: dict[str, Any] = {}
    for split, n in N_PAIRS.items():
        z = centres[torch.randint(0, CLUSTERS, (n,), generator=g)] + 0.6 * torch.randn(
            n, LATENT, generator=g
        )
        out[split] = {
            "z": z,
            "img": z @ mix_v + 0.7 * torch.randn(n, FEATURES, generator=g),
            "txt": z @ mix_t + 0.7 * torch.randn(n, FEATURES, generator=g),
        }
    out["teacher"] = teacher_scores(out["train"]["z"], out["train"]["z"], g)
    out["teacher test"] = teacher_scores(out["test"]["z"], out["test"]["z"], g)
    return out


def recall_at_1(sim: Tensor) -> float:
    """Recall@1 averaged over image-to-text and text-to-image (matches on the diagonal)."""
    target = torch.arange(sim.shape[0])
    i2t = (sim.argmax(1) == target).float().mean()
    t2i = (sim.argmax(0) == target).float().mean()
    return float((i2t + t2i) / 2)


def _itc(sim: Tensor, tau: float) -> Tensor:
    target = torch.arange(sim.shape[0])
    return 0.5 * (F.cross_entropy(sim / tau, target) + F.cross_entropy(sim.t() / tau, target))


def _logit_kd(sim: Tensor, teacher: Tensor, tau: float, teacher_tau: float) -> Tensor:
    """KL(softmax(teacher / T) || softmax(student / tau)) in both retrieval directions."""

    def one_way(s: Tensor, t: Tensor) -> Tensor:
        return F.kl_div(
            torch.log_softmax(s / tau, 1), torch.softmax(t / teacher_tau, 1), reduction="batchmean"
        )

    return 0.5 * (one_way(sim, teacher) + one_way(sim.t(), teacher.t()))


def _train(
    arm: str, point: dict[str, Any], data: dict[str, Any], seed: int, epochs: int
) -> Selected:
    from inforeg.losses import partial_ranking_distillation

    torch.manual_seed(seed)  # same initialisation and batch order for every arm and grid point
    gen = torch.Generator().manual_seed(seed)
    tau = point.get("temperature", TEMPERATURE)
    f_img, f_txt = nn.Linear(FEATURES, EMBED), nn.Linear(FEATURES, EMBED)
    params = list(f_img.parameters()) + list(f_txt.parameters())
    opt = torch.optim.Adam(params, lr=point.get("lr", LR))
    train, teacher_all = data["train"], data["teacher"]

    def sim_of(split: dict[str, Tensor]) -> Tensor:
        return F.normalize(f_img(split["img"]), dim=1) @ F.normalize(f_txt(split["txt"]), dim=1).t()

    best = BestOnValidation(higher_is_better=True)
    for epoch in range(epochs):
        for idx in minibatches(N_PAIRS["train"], BATCH, gen):
            sim = sim_of({"img": train["img"][idx], "txt": train["txt"][idx]})
            teacher = teacher_all[idx][:, idx]
            loss = _itc(sim, tau)
            if arm == KD:
                loss = loss + point["weight"] * _logit_kd(
                    sim, teacher, tau, point["teacher_temperature"]
                )
            elif arm == CPRD:
                k = point["num_hard"]
                loss = loss + point["beta"] * 0.5 * (
                    partial_ranking_distillation(sim, teacher, k, tau)
                    + partial_ranking_distillation(sim.t(), teacher.t(), k, tau)
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = recall_at_1(sim_of(data["validation"]))

            def measure() -> dict[str, float]:
                with torch.no_grad():
                    return {"test R@1": recall_at_1(sim_of(data["test"]))}

            best.update(epoch, val, measure)
    return best.result()


def run_seed(seed: int, quick: bool) -> SeedResult:
    data = _data(seed)
    epochs = 4 if quick else 60
    tuned = tune_arms(GRIDS, lambda arm, point: _train(arm, point, data, seed, epochs))
    metrics = tuned.metrics()
    off_diagonal = ~torch.eye(N_PAIRS["train"], dtype=torch.bool)
    regime = {
        "ITC test R@1": metrics[ITC]["test R@1"],
        "teacher test R@1 minus ITC's": recall_at_1(data["teacher test"])
        - metrics[ITC]["test R@1"],
        "teacher negatives at the floor": float(
            (data["teacher"][off_diagonal] < 0.01).float().mean()
        ),
    }
    return SeedResult(
        metrics,
        tuning=tuned.points(),
        regime=regime,
        splits={f"{k} (pairs)": v for k, v in N_PAIRS.items()},
    )


_PAPER = (
    "CPRD (CVPR 2024, arXiv 2407.07479): a cross-encoder's scores are 'more concentrated' than a "
    "dual-encoder's, 'making vanilla logit distillation less effective'; ranking the hard "
    "negatives in the teacher's order 'surpasses other distillation methods and significantly "
    "improves the accuracy of dual-encoder' on MSCOCO and Flickr30K (table values not verified here)"
)

EXPERIMENT = Experiment(
    name="cprd-synthetic",
    summary=(
        "Linear dual-encoder students distilled from a concentrated (cross-encoder-like) teacher: "
        "ITC vs ITC + logit KD vs ITC + CPRD, each tuned on validation"
    ),
    setup=(
        "Latents from 30 Gaussian clusters (16-d, centres N(0, 1.5^2), within-cluster std 0.6); "
        "image and text views = different fixed random projections to 64-d plus N(0, 0.7^2) "
        "noise. Teacher score = sigmoid(10 (cos(z_i, z_j) + N(0, 0.02^2) - 0.8)) on the true "
        "latents (an oracle-based stand-in for a cross-encoder: concentrated at the floor, order "
        "informative among hard negatives). Per seed 384 training, 300 validation and 500 test "
        "pairs. Linear encoders 64 -> 32, cosine similarity, Adam, batch 64 (in-batch "
        "negatives), 60 epochs (4 with --quick). ITC tunes its temperature {0.03, 0.05, 0.1} and "
        "lr {1e-3, 3e-3, 1e-2}; KD (symmetric KL from softmax(teacher / T) to the student's "
        "softmax at temperature 0.05, lr 3e-3) tunes T {0.02, 0.1, 0.5} and its weight "
        "{0.3, 1, 3}; CPRD (temperature 0.05, lr 3e-3) tunes K {4, 8, 16} and beta {0.3, 1, 3}. "
        "Each arm's stopping epoch and grid point are chosen on validation R@1 (mean of both "
        "directions over the 300 validation pairs)."
    ),
    claims=(
        Claim(
            "test R@1",
            CPRD,
            ITC,
            True,
            "CPRD improves the student's recall over ITC alone",
            regime=("ITC below ceiling", "teacher knows more than the student"),
            paper=_PAPER,
        ),
        Claim(
            "test R@1",
            CPRD,
            KD,
            True,
            "CPRD distils a concentrated teacher better than logit distillation",
            regime=(
                "ITC below ceiling",
                "teacher knows more than the student",
                "teacher scores concentrated",
            ),
            paper=_PAPER,
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "ITC below ceiling",
            "ITC test R@1",
            "ITC's test R@1 at its selected point (room to improve)",
            0.9,
            above=False,
        ),
        RegimeCheck(
            "teacher knows more than the student",
            "teacher test R@1 minus ITC's",
            "R@1 of the teacher's own scores on the test pairs minus ITC's test R@1",
            0.05,
        ),
        RegimeCheck(
            "teacher scores concentrated",
            "teacher negatives at the floor",
            "share of the teacher's scores of non-matching training pairs below 0.01 (the "
            "concentrated, cross-encoder-like distribution)",
            0.5,
        ),
    ),
    tuning=GRIDS,
    selection="per seed and arm: the grid point and epoch with the best validation R@1",
    run_seed=run_seed,
)
