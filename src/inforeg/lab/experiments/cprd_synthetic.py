"""CPRD on synthetic image-text retrieval: ITC vs ITC + logit distillation vs ITC + CPRD."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, SeedResult
from inforeg.lab.experiments.training import minibatches, seed_everything

LATENT, FEATURES, EMBED = 16, 64, 32
CLUSTERS = 30
TEMPERATURE = 0.05
TEACHER_NOISE = 0.05


def make_pairs(n: int, g: torch.Generator, mix_v: Tensor, mix_t: Tensor, centres: Tensor):  # type: ignore[no-untyped-def]
    """Paired views of clustered latents (near-duplicates inside a cluster are hard negatives)."""
    z = centres[torch.randint(0, CLUSTERS, (n,), generator=g)] + 0.6 * torch.randn(
        n, LATENT, generator=g
    )
    x_img = z @ mix_v + 0.7 * torch.randn(n, FEATURES, generator=g)
    x_txt = z @ mix_t + 0.7 * torch.randn(n, FEATURES, generator=g)
    return z, x_img, x_txt


def recall_at_1(sim: Tensor) -> float:
    target = torch.arange(sim.shape[0])
    i2t = (sim.argmax(1) == target).float().mean()
    t2i = (sim.argmax(0) == target).float().mean()
    return float((i2t + t2i) / 2)


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.losses import ContrastivePartialRankingDistillation

    g = torch.Generator().manual_seed(7000 + seed)
    centres = torch.randn(CLUSTERS, LATENT, generator=g) * 1.5
    mix_v = torch.randn(LATENT, FEATURES, generator=g) / LATENT**0.5
    mix_t = torch.randn(LATENT, FEATURES, generator=g) / LATENT**0.5
    n_train = 400
    z_tr, xi_tr, xt_tr = make_pairs(n_train, g, mix_v, mix_t, centres)
    z_te, xi_te, xt_te = make_pairs(500, g, mix_v, mix_t, centres)
    zn = F.normalize(z_tr, dim=1)
    teacher_all = zn @ zn.t() + TEACHER_NOISE * torch.randn(n_train, n_train, generator=g)
    epochs = 15 if quick else 60
    cprd = ContrastivePartialRankingDistillation(num_hard=8, temperature=TEMPERATURE, weight=1.0)
    metrics: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, list[float]]] = {"test R@1 per epoch": {}}
    for method in ("ITC", "ITC + logit KD", "ITC + CPRD"):
        gen = seed_everything(seed)
        f_img, f_txt = nn.Linear(FEATURES, EMBED), nn.Linear(FEATURES, EMBED)
        opt = torch.optim.Adam(list(f_img.parameters()) + list(f_txt.parameters()), lr=3e-3)
        history: list[float] = []
        for _ in range(epochs):
            for idx in minibatches(n_train, 64, gen):
                sim = (
                    F.normalize(f_img(xi_tr[idx]), dim=1)
                    @ F.normalize(f_txt(xt_tr[idx]), dim=1).t()
                )
                teacher = teacher_all[idx][:, idx]
                if method == "ITC + CPRD":
                    loss = cprd(sim, teacher)
                else:
                    target = torch.arange(idx.shape[0])
                    loss = 0.5 * (
                        F.cross_entropy(sim / TEMPERATURE, target)
                        + F.cross_entropy(sim.t() / TEMPERATURE, target)
                    )
                    if method == "ITC + logit KD":
                        log_s = torch.log_softmax(sim / TEMPERATURE, dim=1)
                        p_t = torch.softmax(teacher / TEMPERATURE, dim=1)
                        loss = loss + F.kl_div(log_s, p_t, reduction="batchmean")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            with torch.no_grad():
                sim_te = F.normalize(f_img(xi_te), dim=1) @ F.normalize(f_txt(xt_te), dim=1).t()
            history.append(recall_at_1(sim_te))
        curves["test R@1 per epoch"][method] = history
        metrics[method] = {"test R@1": history[-1]}
    return SeedResult(metrics, curves)


EXPERIMENT = Experiment(
    name="cprd-synthetic",
    technique="cprd",
    summary=(
        "A noisy 'cross-encoder' teacher (true latent cosine + noise) distils into a linear "
        "dual-encoder student, either by matching its softmax (logit KD) or by CPRD: ListMLE over "
        "the student's 8 hardest in-batch negatives ordered by the teacher, added to ITC."
    ),
    setup=(
        "Latents from 30 Gaussian clusters (16-d, within-cluster std 0.6, so near-duplicate "
        "hard negatives exist); image and text views = different fixed random projections to 64-d "
        "plus Gaussian noise (std 0.7). Teacher score = cosine of the true latents + N(0, 0.05^2) "
        "noise. 400 training pairs, 500 test pairs. Linear encoders 64 -> 32, cosine / 0.05, "
        "Adam lr 3e-3, batch 64, 60 epochs (15 with --quick); CPRD K = 8, beta = 1 (not verified "
        "against the paper); logit KD = KL(softmax(teacher / 0.05) || softmax(student / 0.05)). "
        "Recall@1 averaged over both directions."
    ),
    claims=(
        Claim("test R@1", "ITC + CPRD", "ITC", True, "CPRD improves the student's recall over ITC"),
        Claim(
            "test R@1",
            "ITC + CPRD",
            "ITC + logit KD",
            True,
            "CPRD distils better than plain logit distillation",
        ),
    ),
    run_seed=run_seed,
)
