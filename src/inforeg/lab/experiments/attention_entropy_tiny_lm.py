"""Entropy-guided attention on a LayerNorm-free softmax-only character LM (the paper's regime).

Protocol 2: a 4-layer causal transformer without LayerNorm and without FFN nonlinearity (softmax
is its only nonlinearity: the paper's SM(t) + ScFuFFN design) learns next-character prediction on
documents from a known stochastic grammar (:mod:`._synthetic_text`), whose loss floor is known
exactly per character. The baseline tunes its learning rate, the penalty arm its weight lambda
(equal grids of 3), each on the validation loss averaged over the last evaluations; a pre-LN
GPT-2-style model (LayerNorm and GELU) is the reference for what the nonlinearities buy.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments._synthetic_text import VOCAB, sample_documents
from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.progress import step as report_step
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import seed_everything

CONTEXT = 128  # characters of context (the paper: T = 128 on CodeParrot)
WIDTH, LAYERS, HEADS = 32, 4, 4
BATCH = 4
N_TRAIN, N_VAL, N_TEST = 4096, 48, 128  # documents of CONTEXT + 1 characters
STEPS, QUICK_STEPS = 280, 9
EVALS, WINDOW = 7, 3  # evaluations per run; selection reads the mean of the last WINDOW of them
LR = 2e-2  # the penalty arm and the LN reference train at the middle of the baseline's grid
OVERLOAD = 0.75  # a head is overloaded when its mean normalised entropy is >= 3/4 (the paper)
COLLAPSE = 0.1  # ... and collapsed when it is <= 0.1
BASELINE, PENALTY, REFERENCE = "LN-free", "LN-free + entropy penalty", "LN reference"
GRIDS: dict[str, dict[str, list[Any]]] = {
    BASELINE: {"lr": [1e-2, 2e-2, 4e-2]},
    PENALTY: {"lam": [0.1, 1.0, 10.0]},
    REFERENCE: {},
}


POS_SCALE = 0.1


def sinusoids(length: int, width: int) -> Tensor:
    """The Transformer's sinusoidal position codes (a learnable initialisation here): relative
    offsets are rotations, so attention to "the previous few characters" is quick to learn."""
    pos = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(-math.log(1000.0) * torch.arange(0, width, 2, dtype=torch.float32) / width)
    out = torch.zeros(length, width)
    out[:, 0::2], out[:, 1::2] = torch.sin(pos * freq), torch.cos(pos * freq)
    return out


class TinyLM(nn.Module):
    """A causal transformer returning logits and every layer's attention probabilities.

    ``layer_norm=False`` is the paper's softmax-only design: no LayerNorm anywhere, the FFN is one
    linear map (its two linear layers fused, as nothing sits between them) scaled by a learnable
    scalar (ScFuFFN), and the softmax has a learnable temperature per head and query position
    (SM(t)). ``layer_norm=True`` is a pre-LN GPT-2 block with a GELU MLP and a final LayerNorm.
    """

    causal: Tensor  # additive mask

    def __init__(self, layer_norm: bool) -> None:
        super().__init__()
        self.layer_norm = layer_norm
        self.embed = nn.Embedding(VOCAB, WIDTH)
        self.pos = nn.Parameter(sinusoids(CONTEXT, WIDTH) * POS_SCALE)
        self.qkv = nn.ModuleList(nn.Linear(WIDTH, 3 * WIDTH) for _ in range(LAYERS))
        self.proj = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS))
        if layer_norm:
            self.ln1 = nn.ModuleList(nn.LayerNorm(WIDTH) for _ in range(LAYERS))
            self.ln2 = nn.ModuleList(nn.LayerNorm(WIDTH) for _ in range(LAYERS))
            self.ffn = nn.ModuleList(
                nn.Sequential(nn.Linear(WIDTH, 4 * WIDTH), nn.GELU(), nn.Linear(4 * WIDTH, WIDTH))
                for _ in range(LAYERS)
            )
            self.ln_f = nn.LayerNorm(WIDTH)
        else:
            self.ffn = nn.ModuleList(nn.Linear(WIDTH, WIDTH) for _ in range(LAYERS))
            self.ffn_scale = nn.Parameter(torch.ones(LAYERS))
            self.log_temperature = nn.Parameter(torch.zeros(LAYERS, HEADS, CONTEXT, 1))
        self.out = nn.Linear(WIDTH, VOCAB)
        # 0 on and below the diagonal, -inf above: added to the scores inside one baddbmm.
        mask = torch.full((CONTEXT, CONTEXT), float("-inf")).triu(1)
        self.register_buffer("causal", mask)
        # GPT-2 initialisation: N(0, 0.02), residual projections scaled by 1/sqrt(2 L).
        for name, p in self.named_parameters():
            if name == "pos":
                continue
            if name.endswith("weight") and p.dim() == 2:
                std = 0.02 / math.sqrt(2 * LAYERS) if name.startswith(("proj", "ffn")) else 0.02
                nn.init.normal_(p, std=std)
            elif name.endswith("bias") and not name.startswith(("ln", "ln_f")):
                nn.init.zeros_(p)

    def forward(self, tokens: Tensor) -> tuple[Tensor, list[Tensor]]:
        b, t = tokens.shape
        d = WIDTH // HEADS
        x = self.embed(tokens) + self.pos[:t]
        attns = []
        for i in range(LAYERS):
            h = self.ln1[i](x) if self.layer_norm else x
            q, k, v = self.qkv[i](h).view(b, t, 3, HEADS, d).permute(2, 0, 3, 1, 4)
            # 1/sqrt(d) and the temperature of each (head, query) scale the query: the same as
            # scaling the (T x T) scores, at T x d cost.
            q = q / math.sqrt(d)
            if not self.layer_norm:
                q = q * torch.exp(-self.log_temperature[i, :, :t])
            scores = torch.baddbmm(
                self.causal[:t, :t],
                q.reshape(b * HEADS, t, d),
                k.reshape(b * HEADS, t, d).transpose(1, 2),
            )
            a = torch.softmax(scores, dim=-1).view(b, HEADS, t, t)
            attns.append(a)
            x = x + self.proj[i]((a @ v).transpose(1, 2).reshape(b, t, WIDTH))
            if self.layer_norm:
                x = x + self.ffn[i](self.ln2[i](x))
            else:
                x = x + self.ffn_scale[i] * self.ffn[i](x)
        if self.layer_norm:
            x = self.ln_f(x)
        return self.out(x), attns


def lm_loss(logits: Tensor, docs: Tensor) -> Tensor:
    """Mean next-character cross-entropy (nats) of characters 1..T given their prefix."""
    return F.cross_entropy(logits.reshape(-1, VOCAB), docs[:, 1:].reshape(-1))


def head_entropy(attns: list[Tensor]) -> Tensor:
    """(L, H): each head's attention entropy divided by its query's maximum log(i + 1) (query 0,
    with one key, is left out), averaged over documents and queries. 1 is uniform attention."""
    from inforeg.losses import attention_row_entropy

    t = attns[0].shape[-1]
    e_max = torch.arange(2, t + 1, dtype=torch.float32).log()
    return torch.stack(
        [(attention_row_entropy(a)[..., 1:] / e_max).mean(dim=(0, 2)) for a in attns]
    )


@torch.no_grad()
def evaluate(model: TinyLM, docs: Tensor, chunk: int = 64) -> tuple[float, Tensor]:
    """Mean loss (nats per character) on ``docs`` and the (L, H) normalised head entropies."""
    model.eval()
    losses, ents = [], []
    for start in range(0, docs.shape[0], chunk):
        part = docs[start : start + chunk]
        logits, attns = model(part[:, :-1])
        losses.append(lm_loss(logits, part) * part.shape[0])
        ents.append(head_entropy(attns) * part.shape[0])
    model.train()
    return float(sum(losses)) / docs.shape[0], sum(ents) / docs.shape[0]  # type: ignore[return-value]


def _lr_at(step: int, steps: int, lr: float) -> float:
    """Linear warm-up over the first 5% of steps, then cosine decay to lr / 10."""
    warm = max(1, steps // 20)
    if step < warm:
        return lr * (step + 1) / warm
    progress = (step - warm) / max(1, steps - warm)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def fit(
    arm: str, point: dict[str, Any], seed: int, data: dict[str, Tensor], steps: int, evals: int
) -> Selected:
    """Train one arm at one grid point; select the evaluation with the best validation loss
    averaged over the last ``WINDOW`` evaluations, and report the test metrics averaged over the
    same window (measured afterwards on snapshots, so the test split is read only there)."""
    from inforeg.losses import HeadwiseAttentionEntropyRegularizer

    gen = seed_everything(seed)  # same initialisation and batches for every arm and grid point
    model = TinyLM(layer_norm=arm == REFERENCE)
    reg = HeadwiseAttentionEntropyRegularizer(
        LAYERS, HEADS, init_threshold=0.5, tolerance=0.2, max_entropy="causal"
    )
    lam = float(point.get("lam", 0.0))
    lr = float(point.get("lr", LR))
    params = list(model.parameters()) + (list(reg.parameters()) if arm == PENALTY else [])
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    best = BestOnValidation(higher_is_better=False)
    val_hist: list[float] = []
    snapshots: list[dict[str, Tensor]] = []
    every = max(1, steps // evals)
    train = data["train"]
    for s in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(s, steps, lr)
        docs = train[torch.randint(0, train.shape[0], (BATCH,), generator=gen)]
        logits, attns = model(docs[:, :-1])
        loss = lm_loss(logits, docs)
        if arm == PENALTY:
            loss = loss + lam * reg(attns)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (s + 1) % every:
            continue
        report_step(s + 1, steps, f"{arm} {point or ''} step")
        val_hist.append(evaluate(model, data["val"])[0])
        snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        window = val_hist[-WINDOW:]
        score = sum(window) / WINDOW if len(window) == WINDOW else math.nan
        best.update(len(val_hist) - 1, score, dict)
    if best.step < 0:  # diverged (non-finite validation loss) at every evaluation
        return Selected(math.nan, {})
    tests = []
    for j in range(best.step - WINDOW + 1, best.step + 1):
        model.load_state_dict(snapshots[j])
        tests.append(evaluate(model, data["test"]))
    test_loss = sum(t for t, _ in tests) / WINDOW
    ents = tests[-1][1]  # head entropies at the selected evaluation
    theta = reg.threshold.detach() if arm == PENALTY else torch.full_like(ents, 0.5)
    metrics = _metrics(test_loss, ents, theta, data["floor"])
    return Selected(best.score, metrics, (best.step + 1) * every, {"val_history": val_hist})


def _metrics(window_test: float, ents: Tensor, theta: Tensor, floor: Tensor) -> dict[str, float]:
    return {
        "test perplexity": math.exp(window_test),
        "test loss (nats/char)": window_test,
        "test excess loss over the floor": window_test - float(floor),
        "overloaded heads (fraction)": float((ents >= OVERLOAD).float().mean()),
        "overloaded heads in layers 1-2 (fraction)": float(
            (ents[: LAYERS // 2] >= OVERLOAD).float().mean()
        ),
        "collapsed heads in layers 3-4 (fraction)": float(
            (ents[LAYERS // 2 :] <= COLLAPSE).float().mean()
        ),
        "mean normalised head entropy": float(ents.mean()),
        "heads outside theta +- 0.2 (fraction)": float(((ents - theta).abs() > 0.2).float().mean()),
    }


def run_seed(seed: int, quick: bool) -> SeedResult:
    steps, evals = (QUICK_STEPS, WINDOW) if quick else (STEPS, EVALS)
    n_train = 64 if quick else N_TRAIN
    n_val, n_test = (8, 8) if quick else (N_VAL, N_TEST)
    docs, nll = sample_documents(n_train + n_val + n_test, CONTEXT + 1, seed=1000 + seed)
    data = {
        "train": docs[:n_train],
        "val": docs[n_train : n_train + n_val],
        "test": docs[n_train + n_val :],
        "floor": nll[n_train + n_val :, 1:].mean(),
    }
    tuned = tune_arms(
        GRIDS,
        functools.partial(fit, seed=seed, data=data, steps=steps, evals=evals),
        higher_is_better=False,
    )
    metrics = tuned.metrics("selected step")
    curves = {"validation loss per evaluation": tuned.extras("val_history")}
    base, ref = metrics[BASELINE], metrics[REFERENCE]
    early = "overloaded heads in layers 1-2 (fraction)"
    regime = {
        "LN-free early overload": base[early],
        "early overload, LN-free minus LN": base[early] - ref[early],
        "LN-free excess loss": base["test excess loss over the floor"],
    }
    splits = {"train": n_train, "validation": n_val, "test": n_test}
    return SeedResult(metrics, curves, tuning=tuned.points(), regime=regime, splits=splits)


EXPERIMENT = Experiment(
    name="attention-entropy-tiny-lm",
    summary=(
        "Head-wise attention-entropy penalty: each head's mean attention entropy is pulled into a "
        "band theta_h * E_max +- 0.2 E_max (learnable theta), added to the LM loss of a "
        "LayerNorm-free softmax-only transformer whose heads overload (near-uniform attention)."
    ),
    setup=(
        "Character-level next-token prediction on documents from a known stochastic grammar "
        "(inforeg.lab.experiments._synthetic_text: a header of 3 random names, then a body from a "
        "first-order Markov chain over 24 words, name slots that repeat a header name, and full "
        "stops; 55 characters). The grammar is unifilar, so the generator's own -log p of each "
        "character is the Bayes-optimal loss: the loss floor (about 0.58 nats/char; n-gram "
        "models reach 1.43 at best, order 3) is known exactly on the test documents, and 'excess "
        "loss' is the model's loss above it. Generated text instead of a shipped corpus: the "
        "floor is exact, nothing is stored, and predicting it needs both local attention (the "
        "previous word) and long-range look-ups (a name's letters, up to a whole context back). "
        "Per seed: 4096 training, 48 validation and 128 test documents of 129 characters "
        "(context T = 128). Models: 4 layers, 4 heads, width 32, position embeddings learnable "
        "from a sinusoidal start (random ones left every head uniform at this budget). LN-free: "
        "no LayerNorm, FFN = one fused linear map with a learnable scale, learnable softmax "
        "temperature per head and query position (the paper's SM(t) + ScFuFFN). LN reference: "
        "pre-LN GPT-2 blocks with a GELU MLP (4x) and a final LayerNorm. AdamW (0.9, 0.95), no "
        "weight decay, batch 4, 280 steps (9 with --quick), 5% warm-up then cosine to lr/10, "
        "gradient norm clipped at 1: about 0.14M training characters per run, which is what 10 "
        "seeds x 7 runs allow in 15 CPU minutes (the paper: 2.1B tokens; the design had 400 "
        "steps and 64 validation documents, cut before the first full run when a timing put "
        "that at about 17 CPU minutes). Penalty: "
        "HeadwiseAttentionEntropyRegularizer, paper_mean reduction, gamma = 0.2, theta "
        "initialised at 0.5 and trained with the model (as the authors), per-query causal "
        "E_max = log(i + 1). Tuning on validation, equal grids of 3: the baseline's learning "
        "rate {1e-2, 2e-2, 4e-2}; the penalty's lambda {0.1, 1, 10} at lr 2e-2 (paper_mean "
        "scale; the authors' 1e-5 is for the reduction summed over batch and queries); the LN "
        "reference is not tuned (lr 2e-2). Evaluations every 40 steps; the score is the "
        "validation loss averaged over the last 3 evaluations, and the test metrics are the same "
        "window's average at the evaluation with the best score (stopping point and grid point "
        "per arm). Head entropy is normalised per query by log(i + 1) and averaged over queries "
        "and documents; a head is overloaded at >= 0.75 (the paper's 3/4 of the maximum) and "
        "collapsed at <= 0.1. Full run (10 seeds, 538 s CPU): the regime checks pass (early "
        "overload 0.99, 0.83 above the LN model's; excess loss 1.22 nats/char), but the claim is "
        "not testable in substance at this budget: every arm in every seed was selected at its "
        "last evaluation (still improving; 1.80 nats/char, worse than the order-3 n-gram's "
        "1.43), the baseline chose lr 4e-2 in 9/10 seeds while the penalty arm trains at 2e-2, "
        "and the learnable theta rose into the overload band (0% of penalised heads outside "
        "theta +- 0.2 against 97% for the baseline at theta = 0.5), so the penalty left the heads "
        "overloaded (0.97 vs 0.96). Perplexity 6.22 vs 6.05, penalty worse in 8/10 seeds, "
        "+0.17 [-0.01, +0.36]: inconclusive."
    ),
    claims=(
        Claim(
            "test perplexity",
            PENALTY,
            BASELINE,
            False,
            "the entropy penalty lowers the test perplexity of the LN-free softmax-only model",
            regime=(
                "entropic overload",
                "overload from the missing nonlinearities",
                "room above the floor",
            ),
            paper=(
                "Softmax-only GPT-2 (SM(t) + ScFuFFN, no LayerNorm), CodeParrot, T = 128: entropy "
                "regularisation improves perplexity by 7.8%. Small analogue: 4-layer LN-free "
                "character LM, perplexity on held-out generated documents."
            ),
        ),
        Claim(
            "overloaded heads (fraction)",
            PENALTY,
            BASELINE,
            False,
            "the penalty lowers the fraction of overloaded heads (its own target)",
            kind="sanity",
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "entropic overload",
            "LN-free early overload",
            "fraction of the LN-free baseline's heads in layers 1-2 whose normalised entropy is "
            ">= 0.75 at its selected point (> 0.5: most early heads overloaded, the failure the "
            "penalty targets)",
            0.5,
        ),
        RegimeCheck(
            "overload from the missing nonlinearities",
            "early overload, LN-free minus LN",
            "the same fraction for the LN-free baseline minus the LN reference's (> 0: removing "
            "LayerNorm and the FFN nonlinearity is what overloads the early heads, as in the paper)",
            0.0,
        ),
        RegimeCheck(
            "room above the floor",
            "LN-free excess loss",
            "LN-free baseline's test loss minus the exact loss floor, nats/char (> 0.05: not at "
            "the ceiling)",
            0.05,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "validation loss averaged over the last 3 evaluations, per arm: best evaluation within a "
        "run, then best grid point; test metrics averaged over the same 3 evaluations"
    ),
    run_seed=run_seed,
)
