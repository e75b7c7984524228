"""MCR vs joint training and the multi-loss baseline where the strong view starves the weak one.

The first-generation data had no modality competition: the weak view's encoder learned as much
in joint training as alone (audit B §9). Here, as the audit suggests, view ``a`` fits the small
training set by itself (a linear code that gives the label ~70 % of the time, plus a per-sample
random code the encoder can memorise), while view ``v`` is more accurate (~95 %) but nonlinear
(two sign-XORs). In joint training the fused loss falls once ``a`` has memorised the training set,
and ``v`` stops getting a gradient: its encoder ends up worse than when it is trained alone. The
regime check measures exactly that, with a linear probe of each encoder's latent.

Arms (protocol 2; each tunes 3 points and its stopping epoch on validation fused accuracy):

- ``joint``: fused cross-entropy only; learning rate in {3e-4, 1e-3, 3e-3};
- ``multi-loss``: fused + unimodal cross-entropies (heads trained into the encoders, the MCR
  config's 1/1/1 weights); same learning-rate grid;
- ``MCR``: multi-loss + λ L_MIPD (greedy game, 32 permutations) + the supervised NT-Xent on
  [z_a; z_v] (``contr_coeff`` 1, τ 0.5, as the repo); λ in {0.01, 0.1, 1}, learning rate 1e-3.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import make_mlp, minibatches, seed_everything, train_epoch

C = 4  # classes: y = 2 b1 + b2
D = 16  # latent width per modality
A_DIM, A_CODE, V_DIM = 32, 1.5, 8
N = {"train": 300, "val": 1000, "test": 2000}
BATCH, LR = 32, 1e-3
JOINT, MULTI, MCR = "joint", "multi-loss", "MCR"
LR_GRID = [3e-4, 1e-3, 3e-3]
GRIDS: dict[str, dict[str, list[Any]]] = {
    JOINT: {"lr": LR_GRID},
    MULTI: {"lr": LR_GRID},
    MCR: {"lam": [0.01, 0.1, 1.0]},
}


def make_data(n: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Views a (n, 32), v (n, 8) and labels y (n,).

    a: the label's one-hot code times 1.5 in the first 4 dims plus N(0, 1) noise in all 32 (the
    28 noise dims are a per-sample random code, memorisable at small n). v: N(0, I) with the
    signs of (v0, v1) and (v2, v3) set so that sign(v0 v1) and sign(v2 v3) give the label's two
    bits (for 5 % of the samples two random bits instead).
    """
    y = torch.randint(0, C, (n,), generator=gen)
    a = torch.randn(n, A_DIM, generator=gen)
    a[:, :C] += A_CODE * F.one_hot(y, C).float()
    bits = torch.stack((y // 2, y % 2), dim=1)
    noisy = torch.rand(n, generator=gen) < 0.05
    bits[noisy] = torch.randint(0, 2, (int(noisy.sum()), 2), generator=gen)
    v = torch.randn(n, V_DIM, generator=gen)
    for j in range(2):
        mag0, mag1 = v[:, 2 * j].abs(), v[:, 2 * j + 1].abs()
        first = torch.where(torch.rand(n, generator=gen) < 0.5, 1.0, -1.0)
        same = 2.0 * bits[:, j].float() - 1.0  # +1: same signs, -1: opposite signs
        v[:, 2 * j], v[:, 2 * j + 1] = first * mag0, first * same * mag1
    return a, v, y


class Model(nn.Module):
    """Two MLP encoders, a late linear fusion (halves + bias) and unimodal linear heads."""

    def __init__(self) -> None:
        super().__init__()
        self.enc_a = make_mlp(A_DIM, 64, D, depth=1)
        self.enc_v = make_mlp(V_DIM, 64, D, depth=1)
        self.fuse_a = nn.Linear(D, C, bias=False)
        self.fuse_v = nn.Linear(D, C, bias=False)
        self.bias = nn.Parameter(torch.zeros(C))
        self.head_a = nn.Linear(D, C)
        self.head_v = nn.Linear(D, C)

    def forward(self, a: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        za, zv = self.enc_a(a), self.enc_v(v)
        return self.fuse_a(za) + self.fuse_v(zv) + self.bias, za, zv


def supervised_ntxent(z: Tensor, labels: Tensor, tau: float = 0.5) -> Tensor:
    """Supervised NT-Xent (pytorch-metric-learning's ``NTXentLoss`` with labels): cosine / tau;
    every ordered pair (i, j), i != j, of the same label is a positive whose denominator holds the
    pair and i's negatives (other labels); the mean over positive pairs."""
    zn = F.normalize(z, dim=1)
    s = zn @ zn.T / tau
    same = labels[:, None] == labels[None, :]
    pos = same & ~torch.eye(len(labels), dtype=torch.bool)
    neg_lse = torch.logsumexp(s.masked_fill(same, float("-inf")), dim=1, keepdim=True)
    per_pair = torch.logaddexp(s, neg_lse) - s  # -log(e^s_ij / (e^s_ij + sum_neg e^s_ik))
    return per_pair[pos].mean() if bool(pos.any()) else z.new_zeros(())


def linear_probe(z_fit: Tensor, y_fit: Tensor, z_eval: Tensor, y_eval: Tensor) -> float:
    """Accuracy of a logistic-regression probe (standardised inputs, L-BFGS, weight 1e-3 L2)."""
    z_fit, z_eval = z_fit.detach(), z_eval.detach()
    mean, std = z_fit.mean(0), z_fit.std(0).clamp_min(1e-6)
    xf, xe = (z_fit - mean) / std, (z_eval - mean) / std
    lin = nn.Linear(xf.shape[1], C)
    opt = torch.optim.LBFGS(lin.parameters(), max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(lin(xf), y_fit) + 1e-3 * lin.weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():  # callers may hold no_grad
        opt.step(closure)
    with torch.no_grad():
        return float((lin(xe).argmax(1) == y_eval).float().mean())


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def fit(
    arm: str, point: dict[str, Any], data: dict[str, Tensor], seed: int, epochs: int
) -> Selected:
    """Train one arm; keep the epoch with the best validation fused accuracy and report the test
    fused accuracy and linear-probe accuracies of both encoders there."""
    from inforeg.dependence import MCRRegularizer

    gen = seed_everything(seed)
    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=point.get("lr", LR))
    mcr = MCRRegularizer(weight=point.get("lam", 0.0), num_samples=32, game="greedy")
    a, v, y = data["a_train"], data["v_train"], data["y_train"]
    best = BestOnValidation(higher_is_better=True)
    saved: dict[str, Tensor] = {}
    for epoch in range(epochs):
        model.train()
        for idx in minibatches(a.shape[0], BATCH, gen):
            fused, za, zv = model(a[idx], v[idx])
            loss = F.cross_entropy(fused, y[idx])
            if arm != JOINT:
                loss = loss + F.cross_entropy(model.head_a(za), y[idx])
                loss = loss + F.cross_entropy(model.head_v(zv), y[idx])
            if arm == MCR:
                loss = loss + mcr(za, zv, model.fuse_a, model.fuse_v, model.bias)
                loss = loss + supervised_ntxent(torch.cat([za, zv]), torch.cat([y[idx], y[idx]]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val = _accuracy(model(data["a_val"], data["v_val"])[0], data["y_val"])
            if best.update(epoch, val, dict):
                saved = copy.deepcopy(model.state_dict())
    model.load_state_dict(saved)  # the selected epoch; probes are fitted once, there
    with torch.no_grad():
        sel = best.result()
        sel.metrics = probe_metrics(model, data)
    return sel


def probe_metrics(model: Model, data: dict[str, Tensor]) -> dict[str, float]:
    """Test fused accuracy, and linear probes of each encoder fitted on validation latents."""
    fused, za_te, zv_te = model(data["a_test"], data["v_test"])
    _, za_va, zv_va = model(data["a_val"], data["v_val"])
    yv, yt = data["y_val"], data["y_test"]
    return {
        "fused test accuracy": _accuracy(fused, yt),
        "v-encoder probe accuracy": linear_probe(zv_va, yv, zv_te, yt),
        "a-encoder probe accuracy": linear_probe(za_va, yv, za_te, yt),
    }


def solo_v_probe(data: dict[str, Tensor], seed: int, epochs: int) -> float:
    """The v encoder trained alone (its head's cross-entropy, Adam 1e-3, stopped on validation
    accuracy): linear-probe test accuracy of its latent."""
    gen = seed_everything(seed)
    enc, head = make_mlp(V_DIM, 64, D, depth=1), nn.Linear(D, C)
    opt = torch.optim.Adam([*enc.parameters(), *head.parameters()], lr=LR)
    v, y = data["v_train"], data["y_train"]
    best = BestOnValidation(higher_is_better=True)
    saved: dict[str, Tensor] = {}
    for epoch in range(epochs):
        train_epoch(opt, v.shape[0], BATCH, gen, lambda i: F.cross_entropy(head(enc(v[i])), y[i]))
        with torch.no_grad():
            if best.update(epoch, _accuracy(head(enc(data["v_val"])), data["y_val"]), dict):
                saved = copy.deepcopy(enc.state_dict())
    enc.load_state_dict(saved)
    with torch.no_grad():
        return linear_probe(enc(data["v_val"]), data["y_val"], enc(data["v_test"]), data["y_test"])


def run_seed(seed: int, quick: bool) -> SeedResult:
    gen = torch.Generator().manual_seed(900 + seed)
    data: dict[str, Tensor] = {}
    for part, n in N.items():
        data[f"a_{part}"], data[f"v_{part}"], data[f"y_{part}"] = make_data(n, gen)
    epochs = 8 if quick else 100
    metrics: dict[str, dict[str, float]] = {}
    tuning: dict[str, dict[str, Any]] = {}
    tuned = tune_arms(GRIDS, lambda arm, point: fit(arm, point, data, seed, epochs))
    for arm, (tuning[arm], sel) in tuned.items():
        metrics[arm] = {**sel.metrics, "validation fused accuracy": sel.score}
    solo = solo_v_probe(data, seed, epochs)
    regime = {
        "v starvation (solo - joint v probe)": solo - metrics[JOINT]["v-encoder probe accuracy"],
        "solo v probe accuracy": solo,
    }
    return SeedResult(
        metrics,
        tuning=tuning,
        regime=regime,
        splits={"train": N["train"], "validation": N["val"], "test": N["test"]},
    )


_PAPER = (
    "Kontras et al., NeurIPS 2025 (arXiv 2411.07335): MCR gives consistent gains in fused accuracy "
    "over joint training and over balancing baselines (multi-loss, OGM-GE, AGM, MLB, ...) on "
    "CREMA-D, AVE, UCF101, CMU-MOSI/MOSEI and Something-Something v2, by making each encoder "
    "carry its own task information (numbers not verified). Analogue: a memorisable strong view "
    "and a nonlinear, more accurate weak view, 300 training samples"
)
_STARVED = "joint training starves the weak view"


EXPERIMENT = Experiment(
    name="mcr-two-modalities",
    summary=(
        "Late-fusion two-encoder classifier where view a memorises the training set and starves "
        "view v: joint training, multi-loss (fused + unimodal CE) and MCR (multi-loss + greedy "
        "permutation game + supervised NT-Xent), each tuned and stopped on validation."
    ),
    setup=(
        "Synthetic 4-class data per seed (300 train / 1000 validation / 2000 test): view a = "
        "1.5 x one-hot(label) in 4 of 32 dims plus N(0, 1) noise (Bayes accuracy about 0.70 "
        "alone; the noise is a per-sample code an MLP memorises at n = 300); view v (8 dims) "
        "carries the label's two bits as the sign agreements of (v0, v1) and (v2, v3) (95% of "
        "samples; about 0.95 alone, nonlinear). Encoders MLP 32-64-16 and 8-64-16, linear fusion "
        "halves + bias, linear unimodal heads; Adam, batch 32, up to 100 epochs (8 with --quick), "
        "each arm at its best validation fused accuracy. MCR: library MCRRegularizer (greedy, 32 "
        "permutations, bias in the shuffled logits) plus the supervised NT-Xent of the code "
        "(contr_coeff 1, τ 0.5); the CEB feature-reconstruction term (lib) is off, as in the "
        "README command. Encoder quality: a logistic-regression probe of each latent fitted on "
        "the validation split, accuracy on the test split. Regime: the v encoder trained alone "
        "(stopped on validation) must probe at least 0.05 better than v's encoder after joint "
        "training. The first-generation data had no starvation (joint 0.413-0.451 vs solo "
        "0.421-0.442, at the Bayes ceiling; audit B §9)."
    ),
    claims=(
        Claim(
            "fused test accuracy",
            MCR,
            JOINT,
            True,
            "MCR raises the fused test accuracy over joint training",
            regime=(_STARVED,),
            paper=_PAPER,
        ),
        Claim(
            "fused test accuracy",
            MCR,
            MULTI,
            True,
            "MCR raises the fused test accuracy over the multi-loss baseline",
            regime=(_STARVED,),
            paper=_PAPER,
        ),
        Claim(
            "v-encoder probe accuracy",
            MCR,
            JOINT,
            True,
            "MCR makes the weak view's encoder more informative (linear probe) than joint training",
            regime=(_STARVED,),
            paper=_PAPER,
        ),
    ),
    regime_checks=(
        RegimeCheck(
            _STARVED,
            "v starvation (solo - joint v probe)",
            "linear-probe test accuracy of v's encoder trained alone minus after joint training",
            0.05,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "per seed and arm: the grid point and epoch with the best validation fused accuracy "
        "(probes fitted on validation latents, read on test)"
    ),
    run_seed=run_seed,
)
