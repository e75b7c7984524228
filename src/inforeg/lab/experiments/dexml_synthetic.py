"""DEXML on a synthetic extreme multi-label retrieval set: multi-label softmax vs decoupled softmax
vs soft top-k, each with its own temperature tuned on validation.

The regime the paper targets: many labels (4000), many positives per query (10-50) and sampled
negatives. A dual encoder (linear query encoder, linear label encoder over label features) is
trained on in-batch candidates: the union of the batch's positives plus 512 labels drawn
uniformly. The first version of this experiment had 200 labels, 2-8 positives and one shared
temperature (0.05, the decoupled loss's preferred value); tuned per loss, the gap shrank from
0.052 to 0.007 P@1 (audit B).

Protocol 2: per seed a fresh label set and train / validation / test queries; every loss tunes
its temperature over the same 5-point grid and its stopping epoch on validation P@1; P@1 and P@5
are measured on test queries against all 4000 labels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import minibatches

NUM_LABELS = 4000
POSITIVES = (10, 50)  # per query, uniform
LATENT, FEATURES, EMBED = 128, 192, 128
QUERY_NOISE, LABEL_NOISE = 0.5, 0.5
N_QUERIES = {"train": 2000, "validation": 500, "test": 1000}
BATCH, SAMPLED_NEGATIVES, LR = 64, 512, 3e-3
TOP_K, ALPHA = 5, 2.0
INFONCE, DECOUPLED, SOFT_TOPK = "multi-label softmax (InfoNCE)", "decoupled softmax", "soft top-5"
TAU_GRID = [0.02, 0.05, 0.1, 0.2, 0.4]
GRIDS: dict[str, dict[str, list[Any]]] = {
    arm: {"temperature": TAU_GRID} for arm in (INFONCE, DECOUPLED, SOFT_TOPK)
}


def precision_at(scores: Tensor, relevant: Tensor, k: int) -> float:
    """Mean over queries of the share of relevant labels among the top ``k`` scores."""
    top = scores.topk(k, dim=1).indices
    return float(relevant.gather(1, top).float().sum(1).div(k).mean())


def _data(seed: int, quick: bool = False) -> dict[str, Any]:
    """Label latents and features; queries whose features project the mean of their labels'
    latents (plus noise)."""
    g = torch.Generator().manual_seed(6000 + seed)
    latent = torch.randn(NUM_LABELS, LATENT, generator=g)
    mix_q = torch.randn(LATENT, FEATURES, generator=g) / LATENT**0.5
    mix_l = torch.randn(LATENT, FEATURES, generator=g) / LATENT**0.5
    label_x = latent @ mix_l + LABEL_NOISE * torch.randn(NUM_LABELS, FEATURES, generator=g)
    out: dict[str, Any] = {"label_x": label_x}
    for split, n in N_QUERIES.items():
        n = n // 4 if quick else n
        y = torch.zeros(n, NUM_LABELS, dtype=torch.bool)
        sizes = torch.randint(POSITIVES[0], POSITIVES[1] + 1, (n,), generator=g)
        for i in range(n):
            y[i, torch.randperm(NUM_LABELS, generator=g)[: int(sizes[i])]] = True
        z = (y.float() @ latent) / sizes.unsqueeze(1).float()
        x = z @ mix_q + QUERY_NOISE * torch.randn(n, FEATURES, generator=g) / LATENT**0.5
        out[split] = {"x": x, "y": y}
    mean, std = out["train"]["x"].mean(0), out["train"]["x"].std(0) + 1e-6
    for split in N_QUERIES:
        out[split]["x"] = (out[split]["x"] - mean) / std
    lm, ls = label_x.mean(0), label_x.std(0) + 1e-6
    out["label_x"] = (label_x - lm) / ls
    return out


class DualEncoder(nn.Module):
    """Linear query and label encoders; cosine scores."""

    def __init__(self) -> None:
        super().__init__()
        self.query = nn.Linear(FEATURES, EMBED)
        self.label = nn.Linear(FEATURES, EMBED)

    def forward(self, x: Tensor, label_x: Tensor) -> Tensor:
        return F.normalize(self.query(x), dim=1) @ F.normalize(self.label(label_x), dim=1).t()


def _loss(arm: str, cos: Tensor, pos: Tensor, tau: float, g: torch.Generator) -> Tensor:
    from inforeg.losses import decoupled_softmax_loss, multilabel_softmax_loss, soft_top_k_loss

    if arm == INFONCE:
        return multilabel_softmax_loss(cos, pos, temperature=tau)
    if arm == DECOUPLED:
        return decoupled_softmax_loss(cos, pos, temperature=tau)
    # soft top-k as in the DEXML code: k positives sampled per query, the other positives masked
    # out of the candidates (score -100)
    keys = torch.rand(pos.shape, generator=g).masked_fill(~pos, 2.0)
    kth = keys.kthvalue(TOP_K, dim=1, keepdim=True).values
    sampled = pos & (keys <= kth)
    s = (cos / tau).masked_fill(pos & ~sampled, -100.0)
    return soft_top_k_loss(s, sampled, k=TOP_K, alpha=ALPHA)


def _train(arm: str, tau: float, data: dict[str, Any], seed: int, epochs: int) -> Selected:
    torch.manual_seed(seed)  # same initialisation, batches and negatives for every arm and tau
    gen = torch.Generator().manual_seed(seed)
    model = DualEncoder()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    train, label_x = data["train"], data["label_x"]
    n = train["x"].shape[0]
    best = BestOnValidation(higher_is_better=True)

    def scores(split: dict[str, Tensor]) -> Tensor:
        with torch.no_grad():
            return model(split["x"], label_x)

    for epoch in range(epochs):
        for idx in minibatches(n, BATCH, gen):
            y = train["y"][idx]
            sampled = torch.zeros(NUM_LABELS, dtype=torch.bool)
            sampled[torch.randint(0, NUM_LABELS, (SAMPLED_NEGATIVES,), generator=gen)] = True
            cand = torch.nonzero(y.any(0) | sampled).squeeze(1)
            loss = _loss(arm, model(train["x"][idx], label_x[cand]), y[:, cand], tau, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        val = precision_at(scores(data["validation"]), data["validation"]["y"], 1)

        def measure() -> dict[str, float]:
            s, y = scores(data["test"]), data["test"]["y"]
            return {"P@1": precision_at(s, y, 1), "P@5": precision_at(s, y, 5)}

        best.update(epoch, val, measure)
    return best.result()


def run_seed(seed: int, quick: bool) -> SeedResult:
    data = _data(seed, quick)
    epochs = 2 if quick else 8
    tuned = tune_arms(
        GRIDS, lambda arm, point: _train(arm, point["temperature"], data, seed, epochs)
    )
    metrics = tuned.metrics()
    regime = {
        "InfoNCE test P@1": metrics[INFONCE]["P@1"],
        "InfoNCE test P@5": metrics[INFONCE]["P@5"],
        "mean positives per training query": float(data["train"]["y"].sum(1).float().mean()),
    }
    sizes = {f"{k} (queries)": int(data[k]["y"].shape[0]) for k in N_QUERIES}
    return SeedResult(metrics, tuning=tuned.points(), regime=regime, splits=sizes)


_PAPER = (
    "DEXML (ICLR 2024, arXiv 2310.10636): 'existing multi-label contrastive training losses are "
    "not appropriate' for dual encoders in XMC; the decoupled softmax 'overcomes [their] "
    "limitations' and soft top-k is 'tailored to optimize top-k prediction performance'; DE + "
    "decoupled softmax reaches P@1 86.78 on EURLex-4K (README; the paper's loss-ablation values "
    "were not verified here)"
)
_REGIME = ("InfoNCE below ceiling", "many positives per query")

EXPERIMENT = Experiment(
    name="dexml-synthetic",
    summary=(
        "Dual-encoder extreme multi-label retrieval (4000 labels, 10-50 positives per query, "
        "sampled negatives): multi-label softmax vs decoupled softmax vs soft top-5, each with "
        "its own temperature tuned on validation"
    ),
    setup=(
        "Synthetic: 4000 labels with N(0, I) 128-d latents; label features = a fixed random "
        "projection of the latent to 192-d + N(0, 0.5^2) noise; each query has 10-50 relevant "
        "labels (uniform) and features = another projection of the mean of its labels' latents "
        "+ noise (std 0.5/sqrt(128) per feature), standardised. Per seed 2000 training, 500 validation and "
        "1000 test queries (a quarter with --quick). Linear query and label encoders (192 -> 128), "
        "cosine scores / temperature, Adam lr 3e-3, batch 64; the candidates of a batch are the "
        "union of its queries' positives and 512 labels drawn uniformly (sampled negatives). "
        "Soft top-k: k = 5, alpha = 2 on the scaled scores, 5 positives sampled per query and "
        "the others masked (score -100), as in the DEXML code; the two softmax losses average "
        "over all positives. Every loss tunes its temperature over {0.02, 0.05, 0.1, 0.2, 0.4} "
        "and its epoch (of 8; 2 with --quick) on validation P@1; P@1 and P@5 on test queries "
        "over all 4000 labels."
    ),
    claims=(
        Claim(
            "P@1",
            DECOUPLED,
            INFONCE,
            True,
            "decoupled softmax improves P@1 over the multi-label softmax (each tuned)",
            regime=_REGIME,
            paper=_PAPER,
        ),
        Claim(
            "P@5",
            DECOUPLED,
            INFONCE,
            True,
            "decoupled softmax improves P@5 over the multi-label softmax (each tuned)",
            regime=_REGIME,
            paper=_PAPER,
        ),
        Claim(
            "P@5",
            SOFT_TOPK,
            INFONCE,
            True,
            "soft top-5 improves P@5 over the multi-label softmax (each tuned)",
            regime=_REGIME,
            paper=_PAPER,
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "InfoNCE below ceiling",
            "InfoNCE test P@1",
            "the multi-label softmax's test P@1 at its selected point (room to improve)",
            0.9,
            above=False,
        ),
        RegimeCheck(
            "many positives per query",
            "mean positives per training query",
            "mean number of relevant labels per training query (the positives that compete in "
            "the multi-label softmax's denominator)",
            10.0,
        ),
    ),
    tuning=GRIDS,
    selection="per seed and loss: the temperature and epoch with the best validation P@1",
    run_seed=run_seed,
)
