"""AEM on digit MIL bags with weak, spread-out evidence: ABMIL vs ABMIL + attention-entropy bonus.

Every instance is a corrupted digit (standardised 8x8 pixels, a random half of them zeroed and
Gaussian noise added), so a single instance is weak evidence. A bag holds 20-40 instances; in a
positive bag 20-40% of them are 9s, in a negative bag none. This is the regime the AEM paper
targets (many weakly informative instances, few training bags, attention that over-concentrates on
a few of them), unlike the first version of this experiment (one or two clean 9s per bag, AUC at
its ceiling). Few training bags (80).

Arms: ABMIL (gated attention, as in the AEM code) and ABMIL + AEM (loss CE - lambda H(a)).
Protocol 2: per seed a fresh stratified digits split (train / validation / test instances), bags
drawn from each; each arm tunes its learning rate and its own regulariser over a 3 x 3 grid
(ABMIL: dropout on the instance embeddings; AEM: lambda in {0.01, 0.1, 1}, the audit's sweep
around the README's 0.1) and its stopping epoch on validation bag AUC.

Metrics at the selected point: test bag AUC and accuracy, instance-localisation AUC (inside each
positive test bag, the AUC of the attention scores for the 9s against the other instances,
averaged over bags) and the attention entropy.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import minibatches

MIN_BAG, MAX_BAG = 20, 40
POSITIVE_SHARE = (0.2, 0.4)  # share of 9s in a positive bag
TARGET_DIGIT = 9
MASK_SHARE = 0.5  # share of an instance's pixels zeroed
NOISE_STD = 1.0  # Gaussian noise on the standardised pixels
N_BAGS = {"train": 80, "validation": 80, "test": 200}
LR_GRID = [3e-4, 1e-3, 3e-3]
ABMIL, AEM = "ABMIL", "ABMIL + AEM"
GRIDS: dict[str, dict[str, list[Any]]] = {
    ABMIL: {"lr": LR_GRID, "dropout": [0.0, 0.25, 0.5]},
    AEM: {"lr": LR_GRID, "lambda": [0.01, 0.1, 1.0]},
}


def corrupt(x: Tensor, g: torch.Generator) -> Tensor:
    """Zero a random MASK_SHARE of each instance's features and add N(0, NOISE_STD^2) noise."""
    keep = (torch.rand(x.shape, generator=g) >= MASK_SHARE).float()
    return x * keep + NOISE_STD * torch.randn(x.shape, generator=g)


def make_bags(x: Tensor, y: Tensor, n_bags: int, g: torch.Generator) -> dict[str, Tensor]:
    """Padded bags of corrupted digits: ``x`` (n, MAX_BAG, D), ``mask``, bag ``label`` and the
    per-instance ``key`` flag (a 9). Half the bags are positive."""
    pos_idx = torch.nonzero(y == TARGET_DIGIT).squeeze(1)
    neg_idx = torch.nonzero(y != TARGET_DIGIT).squeeze(1)
    bags = torch.zeros(n_bags, MAX_BAG, x.shape[1])
    mask = torch.zeros(n_bags, MAX_BAG, dtype=torch.bool)
    key = torch.zeros(n_bags, MAX_BAG, dtype=torch.bool)
    labels = torch.zeros(n_bags, dtype=torch.long)
    labels[torch.randperm(n_bags, generator=g)[: n_bags // 2]] = 1
    for b in range(n_bags):
        size = int(torch.randint(MIN_BAG, MAX_BAG + 1, (1,), generator=g))
        members = neg_idx[torch.randint(0, neg_idx.numel(), (size,), generator=g)]
        if labels[b] == 1:
            share = POSITIVE_SHARE[0] + (POSITIVE_SHARE[1] - POSITIVE_SHARE[0]) * float(
                torch.rand(1, generator=g)
            )
            n_pos = max(1, round(share * size))
            slots = torch.randperm(size, generator=g)[:n_pos]
            members[slots] = pos_idx[torch.randint(0, pos_idx.numel(), (n_pos,), generator=g)]
            key[b, slots] = True
        bags[b, :size] = corrupt(x[members], g)
        mask[b, :size] = True
    return {"x": bags, "mask": mask, "label": labels, "key": key}


def _data(seed: int, quick: bool = False) -> dict[str, dict[str, Tensor]]:
    from inforeg.lab.datasets import load_digits_split

    s = load_digits_split(test_size=0.3, val_size=0.15, split_seed=seed)
    g = torch.Generator().manual_seed(4000 + seed)
    parts = {
        "train": (s.x_train, s.y_train),
        "validation": (s.x_val, s.y_val),
        "test": (s.x_test, s.y_test),
    }
    scale = 2 if quick else 1  # --quick: half the bags
    return {k: make_bags(x, y, N_BAGS[k] // scale, g) for k, (x, y) in parts.items()}


def bag_auc(scores: Tensor, labels: Tensor) -> float:
    """ROC AUC of ``scores`` for binary ``labels`` (ties count one half)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).float().mean()
    ties = (pos[:, None] == neg[None, :]).float().mean()
    return float(greater + 0.5 * ties)


def localisation_auc(attention_logits: Tensor, bags: dict[str, Tensor]) -> float:
    """Mean over positive bags of the AUC of the attention scores for the 9s vs the others."""
    aucs = []
    for b in torch.nonzero(bags["label"] == 1).squeeze(1).tolist():
        m = bags["mask"][b]
        aucs.append(bag_auc(attention_logits[b][m], bags["key"][b][m].long()))
    return sum(aucs) / len(aucs)


def _evaluate(model: Any, bags: dict[str, Tensor]) -> dict[str, Any]:
    from inforeg.losses import attention_entropy, masked_attention_softmax

    model.eval()
    with torch.no_grad():
        logits, scores = model(bags["x"], bags["mask"])
    prob = torch.softmax(logits, 1)[:, 1]
    pos = bags["label"] == 1
    entropy = attention_entropy(scores, bags["mask"], reduction="none")
    # effective number of attended instances over the number of 9s, in positive bags
    a = masked_attention_softmax(scores, bags["mask"])
    n_key = bags["key"].sum(1).clamp_min(1).float()
    return {
        "AUC": bag_auc(prob, bags["label"]),
        "accuracy": float((logits.argmax(1) == bags["label"]).float().mean()),
        "localisation AUC": localisation_auc(scores, bags),
        "attention entropy": float(entropy.mean()),
        "attended / key instances": float((torch.exp(entropy[pos]) / n_key[pos]).mean()),
        "attention on 9s": float((a * bags["key"]).sum(1)[pos].mean()),
    }


def _train(
    arm: str, point: dict[str, Any], data: dict[str, dict[str, Tensor]], seed: int, epochs: int
) -> Selected:
    from inforeg.losses import ABMIL as ABMILNet
    from inforeg.losses import AttentionEntropyMaximization

    torch.manual_seed(seed)  # same initialisation and bag order for every arm and grid point
    gen = torch.Generator().manual_seed(seed)
    train, val, test = data["train"], data["validation"], data["test"]
    model = ABMILNet(
        train["x"].shape[2],
        inner_dim=64,
        attention_dim=64,
        num_classes=2,
        dropout=point.get("dropout", 0.0),
    )
    aem = AttentionEntropyMaximization(point.get("lambda", 0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=point["lr"], weight_decay=1e-5)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    best = BestOnValidation(higher_is_better=True)
    n = train["x"].shape[0]
    for epoch in range(epochs):
        model.train()
        for idx in minibatches(n, 8, gen):
            logits, scores = model(train["x"][idx], train["mask"][idx])
            loss = F.cross_entropy(logits, train["label"][idx]) + aem(scores, train["mask"][idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        sched.step()
        best.update(
            epoch,
            _evaluate(model, val)["AUC"],
            lambda: {f"test {k}": v for k, v in _evaluate(model, test).items()},
        )
    # where training ends (for the regime checks: does the attention concentrate, does the
    # validation AUC fall after its peak?)
    final = {f"final {k}": v for k, v in _evaluate(model, test).items()}
    final["final validation AUC"] = best.history[-1]
    return best.result(**final)


def run_seed(seed: int, quick: bool) -> SeedResult:
    data = _data(seed, quick)
    epochs = 5 if quick else 40
    tuned = tune_arms(GRIDS, lambda arm, point: _train(arm, point, data, seed, epochs))
    _, base = tuned[ABMIL]
    regime = {
        "ABMIL test AUC": base.metrics["test AUC"],
        "ABMIL final attended / key instances": base.extras["final attended / key instances"],
        "ABMIL validation AUC lost after its peak": base.score
        - base.extras["final validation AUC"],
    }
    sizes = {f"{k} (bags)": int(v["label"].shape[0]) for k, v in data.items()}
    return SeedResult(tuned.metrics(), tuning=tuned.points(), regime=regime, splits=sizes)


_PAPER = (
    "AEM (arXiv 2406.15303): MIL 'faces overfitting due to attention over-concentration'; "
    "adding -lambda H(attention) to ABMIL gives 'consistent performance improvements' on "
    "CAMELYON16/17 and LBC (the abstract gives no number; exact table values not verified here)"
)
_PAPER_LOC = (
    "AEM (arXiv 2406.15303, v2 abstract): the penalty 'encourag[es] the model to consider a "
    "broader range of informative regions in WSIs' (tumour localisation is reported for "
    "CAMELYON16; the value was not verified here)"
)

EXPERIMENT = Experiment(
    name="aem-mil-digits",
    summary=(
        "ABMIL vs ABMIL + AEM (-lambda H(attention)) on digit bags in which many corrupted "
        "instances carry weak evidence (20-40% 9s in a positive bag), with 80 training bags"
    ),
    setup=(
        "scikit-learn digits, per seed a fresh stratified split of the images (train / "
        "validation / test), standardised; every instance has a random half of its pixels "
        "zeroed and N(0, 1) noise added. Bags of 20-40 instances; half the bags are positive "
        "and hold 20-40% 9s, negative bags hold none. 80 training, 80 validation and 200 test "
        "bags, each drawn from its own image split. Gated-attention ABMIL (64-d, no-bias "
        "reduction, as in the AEM code), AdamW (weight decay 1e-5), cosine schedule, 8 padded "
        "bags per batch, 40 epochs (--quick: 5 epochs, half the bags). Each arm tunes lr in {3e-4, 1e-3, 3e-3} "
        "and its regulariser (ABMIL: dropout {0, 0.25, 0.5} on the instance embeddings; AEM: "
        "lambda {0.01, 0.1, 1}); the stopping epoch and grid point are chosen on validation "
        "bag AUC. The later paper version's cosine annealing of lambda is not used."
    ),
    claims=(
        Claim(
            "test AUC",
            AEM,
            ABMIL,
            True,
            "AEM improves bag-level test AUC over ABMIL",
            regime=("ABMIL below ceiling", "ABMIL attention over-concentrated", "ABMIL over-fits"),
            paper=_PAPER,
        ),
        Claim(
            "test localisation AUC",
            AEM,
            ABMIL,
            True,
            "AEM's attention ranks the 9s of a positive bag above its other instances better "
            "(instance-localisation AUC)",
            regime=("ABMIL attention over-concentrated",),
            paper=_PAPER_LOC,
        ),
        Claim(
            "test attention entropy",
            AEM,
            ABMIL,
            True,
            "AEM raises the attention entropy (its own objective: cannot fail unless broken)",
            kind="sanity",
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "ABMIL below ceiling",
            "ABMIL test AUC",
            "ABMIL's test bag AUC at its selected point (room to improve)",
            0.95,
            above=False,
        ),
        RegimeCheck(
            "ABMIL attention over-concentrated",
            "ABMIL final attended / key instances",
            "ABMIL (selected grid point) at the end of training, in positive test bags: "
            "exp(attention entropy), the effective number of attended instances, over the "
            "number of 9s; below 1 means its attention covers fewer instances than carry evidence",
            1.0,
            above=False,
        ),
        RegimeCheck(
            "ABMIL over-fits",
            "ABMIL validation AUC lost after its peak",
            "ABMIL's best validation bag AUC minus its final-epoch validation AUC (the "
            "over-fitting the paper attributes to over-concentration; early stopping is how "
            "the baseline avoids it here)",
            0.02,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "per seed and arm: the grid point (lr x dropout or lr x lambda) and epoch with the best "
        "validation bag AUC"
    ),
    run_seed=run_seed,
    requires=("sklearn",),  # the digits data
)
