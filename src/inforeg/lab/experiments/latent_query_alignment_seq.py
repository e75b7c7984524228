"""Latent-query alignment (MDS-S²'s regulariser, inforeg's reading) on a synthetic composed task.

Chen et al. (SIGIR 2023) align, through shared latent queries, the representation of the response
the model composes with the representation of the ground-truth response, as a regulariser on the
generation loss. Here a GRU encoder-decoder composes a response from a context and a piece of
"knowledge" (which of four permutations to apply to the context tokens); the alignment pulls the
decoder's hidden states, pooled by 8 latent queries, towards the same encoder's pooled encoding of
the gold response.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import minibatches

VOCAB, CONTEXT, KNOWLEDGE, N_PERMS = 12, 4, 4, 4  # spec: 6 context tokens (see setup)
BOS, SEP = VOCAB, VOCAB + 1
DIM, BATCH, LAMBDA = 64, 50, 0.1
N_TRAIN, N_VAL, N_TEST = 1000, 500, 1000
CE, ALIGN = "CE", "CE + latent-query alignment"
TUNING = {CE: {"lr": [2e-3, 5e-3]}, ALIGN: {"lr": [2e-3, 5e-3]}}
TOKEN, EXACT = "test token accuracy", "test exact-sequence accuracy"


def make_task(seed: int) -> dict[str, tuple[Tensor, Tensor]]:
    """``split -> (source, response)``: source = 4 knowledge tokens, SEP, 4 context tokens; the
    knowledge string is one of 4 fixed strings with one position replaced by a random token, and
    selects the permutation applied token-wise to the context to give the response."""
    g = torch.Generator().manual_seed(seed)
    perms = torch.stack([torch.randperm(VOCAB, generator=g) for _ in range(N_PERMS)])
    strings = torch.randint(0, VOCAB, (N_PERMS, KNOWLEDGE), generator=g)
    total = N_TRAIN + N_VAL + N_TEST
    which = torch.randint(0, N_PERMS, (total,), generator=g)
    context = torch.randint(0, VOCAB, (total, CONTEXT), generator=g)
    knowledge = strings[which].clone()
    noisy_pos = torch.randint(0, KNOWLEDGE, (total,), generator=g)
    knowledge[torch.arange(total), noisy_pos] = torch.randint(0, VOCAB, (total,), generator=g)
    source = torch.cat([knowledge, torch.full((total, 1), SEP), context], 1)
    response = perms[which[:, None], context]
    cuts = {"train": (0, N_TRAIN), "validation": (N_TRAIN, N_TRAIN + N_VAL)}
    cuts["test"] = (N_TRAIN + N_VAL, total)
    return {k: (source[a:b], response[a:b]) for k, (a, b) in cuts.items()}


class Seq2Seq(nn.Module):
    """Shared embedding, GRU encoder, GRU decoder started from the encoder's last state."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB + 2, DIM)
        self.encoder = nn.GRU(DIM, DIM, batch_first=True)
        self.decoder = nn.GRU(DIM, DIM, batch_first=True)
        self.head = nn.Linear(DIM, VOCAB)

    def encode(self, tokens: Tensor) -> tuple[Tensor, Tensor]:
        return self.encoder(self.embed(tokens))  # (B, L, d), (1, B, d)

    def teacher_forced(self, source: Tensor, response: Tensor) -> tuple[Tensor, Tensor]:
        """Logits (B, T, V) and decoder hidden states (B, T, d) under teacher forcing."""
        _, state = self.encode(source)
        prev = torch.cat([torch.full_like(response[:, :1], BOS), response[:, :-1]], 1)
        hidden, _ = self.decoder(self.embed(prev), state)
        return self.head(hidden), hidden

    @torch.no_grad()
    def greedy(self, source: Tensor, length: int = CONTEXT) -> Tensor:
        _, state = self.encode(source)
        token = torch.full((source.shape[0], 1), BOS, dtype=torch.long)
        out = []
        for _ in range(length):
            hidden, state = self.decoder(self.embed(token), state)
            token = self.head(hidden).argmax(-1)
            out.append(token)
        return torch.cat(out, 1)


def accuracies(model: Seq2Seq, source: Tensor, response: Tensor) -> tuple[float, float]:
    """(token accuracy, exact-sequence accuracy) of greedy decoding."""
    pred = model.greedy(source, response.shape[1])
    hit = pred == response
    return float(hit.float().mean()), float(hit.all(1).float().mean())


def fit(
    arm: str, lr: float, seed: int, data: dict[str, tuple[Tensor, Tensor]], epochs: int
) -> Selected:
    from inforeg.nn import LatentQueryAlignmentLoss

    torch.manual_seed(seed)  # same initialisation in every arm
    model = Seq2Seq()
    align = LatentQueryAlignmentLoss(DIM, num_queries=8, distance="mse", detach_target=True)
    params = list(model.parameters()) + (list(align.parameters()) if arm == ALIGN else [])
    opt = torch.optim.Adam(params, lr=lr)
    order = torch.Generator().manual_seed(1_000 + seed)  # same data order in every arm
    src, resp = data["train"]
    best = BestOnValidation(higher_is_better=True)

    def evaluate() -> dict[str, float]:
        token, exact = accuracies(model, *data["test"])
        return {TOKEN: token, EXACT: exact}

    for epoch in range(epochs):
        model.train()
        for idx in minibatches(src.shape[0], BATCH, order):
            logits, hidden = model.teacher_forced(src[idx], resp[idx])
            loss = F.cross_entropy(logits.reshape(-1, VOCAB), resp[idx].reshape(-1))
            if arm == ALIGN:
                # gold side: the same encoder on the gold response (detached by the loss)
                gold, _ = model.encode(resp[idx])
                loss = loss + LAMBDA * align(hidden, gold)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        best.update(epoch, accuracies(model, *data["validation"])[0], evaluate)
    return best.result()


def run_seed(seed: int, quick: bool) -> SeedResult:
    data = make_task(seed)
    epochs = 4 if quick else 60
    tuned = tune_arms(TUNING, lambda arm, point: fit(arm, point["lr"], seed, data, epochs))
    metrics = tuned.metrics()
    return SeedResult(
        metrics,
        tuning=tuned.points(),
        regime={"CE test token error": 1.0 - metrics[CE][TOKEN]},
        splits={"train": N_TRAIN, "validation": N_VAL, "test": N_TEST},
    )


_PAPER = (
    "Chen et al. (SIGIR 2023), MDS-S²: the representation-level regularisation (latent queries "
    "aligning composed and gold response representations) improves response generation on "
    "MMConv (their ablation removes it and loses BLEU/NIST); at this scale: greedy-decoding "
    "accuracy of a composed synthetic response."
)

EXPERIMENT = Experiment(
    name="latent-query-alignment-seq",
    summary=(
        "Shared learnable latent queries attention-pool the decoder's hidden states and the "
        "gold response's encoding into 8 vectors each; their mean squared distance (gold side "
        "detached) is added to the generation loss with weight 0.1. The pooling, distance and "
        "weight are inforeg's reading of the abstract (UNVERIFIED: no authors' code found)."
    ),
    setup=(
        "Synthetic knowledge-composed responses (new per seed): source = a 4-token knowledge "
        "string (one of 4 fixed strings with one position randomised), a separator and 4 "
        "context tokens (vocabulary 12); the knowledge selects one of 4 fixed permutations and "
        "the response is the context mapped token-wise through it. The spec's 6 context tokens "
        "after the knowledge left CE near chance (0.19-0.22 greedy token accuracy in a pilot, "
        "chance 0.08), so 4 tokens, knowledge first. 1000 train / 500 validation / 1000 test "
        "pairs. Shared embedding, GRU encoder and decoder (dim 64), teacher forcing, Adam, "
        "batch 50, 60 epochs (4 with --quick). Predicted side: decoder hidden states; gold side: "
        "the same encoder on the gold response (trained only by CE through the source). Each "
        "arm tunes lr over {2e-3, 5e-3} and keeps the epoch with the best validation token "
        "accuracy (greedy decoding); λ = 0.1 and M = 8 as in the spec (not tuned)."
    ),
    claims=(
        Claim(
            TOKEN,
            ALIGN,
            CE,
            True,
            "latent-query alignment improves generation (token accuracy)",
            kind="paper",
            regime=("CE is not at the ceiling",),
            paper=_PAPER,
        ),
        Claim(
            EXACT,
            ALIGN,
            CE,
            True,
            "latent-query alignment improves generation (exact-sequence accuracy)",
            kind="paper",
            regime=("CE is not at the ceiling",),
            paper=_PAPER,
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "CE is not at the ceiling",
            "CE test token error",
            "greedy test token error of the CE-only model (room to improve)",
            0.02,
        ),
    ),
    tuning=TUNING,
    selection="per arm: lr and epoch with the best validation token accuracy (greedy decoding)",
    run_seed=run_seed,
)
