"""MambaRec's modality alignment (MMD + InfoNCE) in a small two-modality recommender.

Generated data: users and items have 8-D latent tastes; each user interacts with 20 items drawn
by a softmax of (taste affinity + item popularity); every item has an "image" feature
(tanh of a random linear map of its latent, 32-D, noisy) and a "text" feature (ReLU of another
map, 24-D, noisier, shifted): two views of the same item that no one has aligned.

Model: a scaled-down MambaRec (``rkl71/MambaRec``, ``src/models/mambarec.py``) without DREAM:
user/item ID embeddings propagated by LightGCN (content view); modality projections (linear +
LayerNorm + dropout 0.2, DREAM on a 1x1 map being a pointwise network) gate the item ID
embeddings, which are propagated on each modality's item-item kNN graph (k = 10, symmetric
normalisation, one layer) and fused by the code's common/specific attention (side view); the score
is the dot product of content + side embeddings. Loss: BPR + 1e-4 embedding L2, plus the
alignment terms of :class:`inforeg.dependence.ModalityAlignmentLoss`: weight x MMD² between the
L2-normalised image and text projections of the batch's positive items (Gaussian kernel σ), and
0.01 x InfoNCE(side, content) for the batch's positive items and users (τ 0.2).

Protocol 2; each arm tunes 3 points and its stopping epoch on validation Recall@20:

- ``no alignment``: BPR + L2, L2 weight in {1e-5, 1e-4, 1e-3};
- ``InfoNCE only``: + the contrastive term, weight in {0.003, 0.01, 0.03};
- ``MMD + InfoNCE``: + the contrastive term (0.01) and the MMD term, (weight, σ) in
  {(0.1, 1), (0.15, 1.5), (0.2, 2)} (the diagonal of the code's 3 x 3 grid).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms

N_USERS, N_ITEMS, LATENT, PER_USER = 400, 300, 8, 20
IMG_DIM, TXT_DIM = 32, 24
D, UI_LAYERS, KNN_K = 32, 2, 10
BATCH, LR, TOP_K = 1024, 1e-2, 20
EPOCHS, QUICK_EPOCHS = 20, 1
NONE, NCE, MMD = "no alignment", "InfoNCE only", "MMD + InfoNCE"
GRIDS: dict[str, dict[str, list[Any]]] = {
    NONE: {"reg_weight": [1e-5, 1e-4, 1e-3]},
    NCE: {"cl_weight": [0.003, 0.01, 0.03]},
    MMD: {"mmd": [(0.1, 1.0), (0.15, 1.5), (0.2, 2.0)]},
}


def make_data(seed: int) -> dict[str, Any]:
    """Interactions (per user 16 train / 2 validation / 2 test items) and item features."""
    g = torch.Generator().manual_seed(30_000 + seed)
    users = torch.randn(N_USERS, LATENT, generator=g)
    items = torch.randn(N_ITEMS, LATENT, generator=g)
    popularity = 0.7 * torch.randn(N_ITEMS, generator=g)
    logits = 2.0 * users @ items.T / math.sqrt(LATENT) + popularity
    gumbel = -torch.log(-torch.log(torch.rand(N_USERS, N_ITEMS, generator=g).clamp_min(1e-12)))
    chosen = (logits + gumbel).topk(PER_USER, dim=1).indices  # sampling without replacement
    order = torch.argsort(torch.rand(N_USERS, PER_USER, generator=g), dim=1)
    chosen = chosen.gather(1, order)
    a = torch.randn(LATENT, IMG_DIM, generator=g) / math.sqrt(LATENT)
    b = torch.randn(LATENT, TXT_DIM, generator=g) / math.sqrt(LATENT)
    img = torch.tanh(1.5 * items @ a) + 0.1 * torch.randn(N_ITEMS, IMG_DIM, generator=g)
    txt = F.relu(items @ b + 0.5) + 0.3 * torch.randn(N_ITEMS, TXT_DIM, generator=g)
    return {
        "train": chosen[:, :16],
        "val": chosen[:, 16:18],
        "test": chosen[:, 18:],
        "img": img,
        "txt": txt,
        "oracle": logits,
    }


def _mask(rows: Tensor) -> Tensor:
    """(N_USERS, N_ITEMS) boolean matrix of the given per-user item lists."""
    m = torch.zeros(N_USERS, N_ITEMS, dtype=torch.bool)
    m.scatter_(1, rows, True)
    return m


def knn_graph(features: Tensor) -> Tensor:
    """Symmetrically normalised item-item kNN graph on cosine similarity (the code's
    ``build_knn_normalized_graph``, dense)."""
    f = F.normalize(features, dim=1)
    sim = f @ f.T
    top = sim.topk(KNN_K, dim=1).indices
    adj = torch.zeros_like(sim).scatter_(1, top, 1.0)
    deg = adj.sum(1).pow(-0.5)
    return deg[:, None] * adj * deg[None, :]


def bipartite_graph(train: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetrically normalised user-item adjacency ((U+I) x (U+I)) and its user-item block."""
    r = _mask(train).float()
    n = N_USERS + N_ITEMS
    adj = torch.zeros(n, n)
    adj[:N_USERS, N_USERS:] = r
    adj[N_USERS:, :N_USERS] = r.T
    d = adj.sum(1).pow(-0.5)
    d[torch.isinf(d)] = 0.0
    norm = d[:, None] * adj * d[None, :]
    return norm, norm[:N_USERS, N_USERS:]


class MambaRecLite(nn.Module):
    """MambaRec's two views (LightGCN content; gated, kNN-propagated, attention-fused side)."""

    img: Tensor
    txt: Tensor
    img_adj: Tensor
    txt_adj: Tensor
    adj: Tensor
    r: Tensor

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()
        self.user = nn.Parameter(nn.init.xavier_uniform_(torch.empty(N_USERS, D)))
        self.item = nn.Parameter(nn.init.xavier_uniform_(torch.empty(N_ITEMS, D)))
        self.img_proj, self.txt_proj = nn.Linear(IMG_DIM, D), nn.Linear(TXT_DIM, D)
        self.norm, self.dropout = nn.LayerNorm(D), nn.Dropout(0.2)
        self.gate_v = nn.Sequential(nn.Linear(D, D), nn.Sigmoid())
        self.gate_t = nn.Sequential(nn.Linear(D, D), nn.Sigmoid())
        self.query = nn.Sequential(nn.Linear(D, D), nn.Tanh(), nn.Linear(D, 1, bias=False))
        self.prefer_v = nn.Sequential(nn.Linear(D, D), nn.Sigmoid())
        self.prefer_t = nn.Sequential(nn.Linear(D, D), nn.Sigmoid())
        self.register_buffer("img", data["img"])
        self.register_buffer("txt", data["txt"])
        self.register_buffer("img_adj", knn_graph(data["img"]))
        self.register_buffer("txt_adj", knn_graph(data["txt"]))
        adj, r = bipartite_graph(data["train"])
        self.register_buffer("adj", adj)
        self.register_buffer("r", r)

    def projections(self) -> tuple[Tensor, Tensor]:
        """Image and text features of every item in the shared space (what MMD aligns)."""
        return self.img_proj(self.img), self.txt_proj(self.txt)

    def forward(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """User and item embeddings (content + side), and the side and content views."""
        img, txt = self.projections()
        img, txt = self.dropout(self.norm(img)), self.dropout(self.norm(txt))
        ego = torch.cat([self.user, self.item])
        layers = [ego]
        for _ in range(UI_LAYERS):
            layers.append(self.adj @ layers[-1])
        content = torch.stack(layers).mean(0)
        views = []
        for feat, gate, adj in ((img, self.gate_v, self.img_adj), (txt, self.gate_t, self.txt_adj)):
            item_side = adj @ (self.item * gate(feat))
            views.append(torch.cat([self.r @ item_side, item_side]))
        att = torch.softmax(torch.cat([self.query(v) for v in views], dim=1), dim=1)
        common = att[:, :1] * views[0] + att[:, 1:] * views[1]
        sep_v = self.prefer_v(content) * (views[0] - common)
        sep_t = self.prefer_t(content) * (views[1] - common)
        side = (sep_v + sep_t + common) / 3
        full = content + side
        return full[:N_USERS], full[N_USERS:], side, content


def ranking_metrics(scores: Tensor, known: Tensor, target: Tensor) -> dict[str, float]:
    """Recall@K and NDCG@K of the ``target`` items (per user, (U, m)); ``known`` items masked."""
    scores = scores.masked_fill(known, float("-inf"))
    top = scores.topk(TOP_K, dim=1).indices
    hit = (top[:, :, None] == target[:, None, :]).any(2).float()  # (U, K)
    discount = 1.0 / torch.log2(torch.arange(2, TOP_K + 2).float())
    ideal = discount[: target.shape[1]].sum()
    return {
        f"Recall@{TOP_K}": float(hit.sum(1).div(target.shape[1]).mean()),
        f"NDCG@{TOP_K}": float((hit * discount).sum(1).div(ideal).mean()),
    }


def modality_mmd_z(model: MambaRecLite, perms: int = 50) -> float:
    """How misaligned the image and text projections of all items are: the biased MMD² between
    the L2-normalised projections (median-heuristic bandwidth) as a z-score against random
    re-splits of the pooled rows (a permutation null)."""
    from inforeg.dependence import mmd

    with torch.no_grad():
        img, txt = (F.normalize(f, dim=1) for f in model.projections())
        pooled = torch.cat([img, txt])
        sigma = float(torch.cdist(pooled, pooled).median())

        def stat(x: Tensor, y: Tensor) -> float:
            return float(mmd(x, y, "gaussian", sigma, "biased"))

        g = torch.Generator().manual_seed(0)
        null = []
        for _ in range(perms):
            p = torch.randperm(pooled.shape[0], generator=g)
            null.append(stat(pooled[p[:N_ITEMS]], pooled[p[N_ITEMS:]]))
        mean, std = sum(null) / perms, float(torch.tensor(null).std())
        return (stat(img, txt) - mean) / max(std, 1e-12)


def fit(arm: str, point: dict[str, Any], data: dict[str, Any], seed: int, epochs: int) -> Selected:
    """BPR training with one sampled negative per positive; validation Recall@20 every epoch."""
    from inforeg.dependence import ModalityAlignmentLoss, modality_alignment_mmd

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = MambaRecLite(data)
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    reg = point.get("reg_weight", 1e-4)
    w_mmd, sigma = point.get("mmd", (0.0, 1.0))
    align = ModalityAlignmentLoss(sigma, w_mmd, point.get("cl_weight", 0.01), 0.2)
    train = data["train"]
    users = torch.arange(N_USERS).repeat_interleave(train.shape[1])
    pos_all = train.reshape(-1)
    seen = _mask(train)
    best = BestOnValidation(higher_is_better=True)
    saved: dict[str, Tensor] = {}
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(users.shape[0], generator=gen)
        for start in range(0, order.shape[0], BATCH):
            b = order[start : start + BATCH]
            u, pos = users[b], pos_all[b]
            neg = torch.randint(0, N_ITEMS, (b.shape[0],), generator=gen)
            clash = seen[u, neg]
            while bool(clash.any()):  # resample negatives the user interacted with
                neg[clash] = torch.randint(0, N_ITEMS, (int(clash.sum()),), generator=gen)
                clash = seen[u, neg]
            ue, ie, side, content = model()
            eu, ep, en = ue[u], ie[pos], ie[neg]
            loss = -F.logsigmoid((eu * ep).sum(1) - (eu * en).sum(1)).mean()
            loss = loss + reg * 0.5 * (eu.pow(2).sum() + ep.pow(2).sum() + en.pow(2).sum()) / len(b)
            if arm != NONE:
                img, txt = model.projections()
                pairs = (
                    (side[N_USERS:][pos], content[N_USERS:][pos]),
                    (side[:N_USERS][u], content[:N_USERS][u]),
                )
                loss = loss + align(img[pos], txt[pos], pairs)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            ue, ie, _, _ = model()
            scores = ue @ ie.T
            val = ranking_metrics(scores, seen, data["val"])[f"Recall@{TOP_K}"]

            def evaluate(scores: Tensor = scores) -> dict[str, float]:
                known = seen | _mask(data["val"])
                return ranking_metrics(scores, known, data["test"])

            if best.update(epoch, val, evaluate):
                saved = copy.deepcopy(model.state_dict())
    model.load_state_dict(saved)
    model.eval()
    with torch.no_grad():
        img, txt = model.projections()
        mmd1 = float(modality_alignment_mmd(img, txt, 1.0))
    return best.result(model=model, mmd=mmd1)


def run_seed(seed: int, quick: bool) -> SeedResult:
    data = make_data(seed)
    epochs = QUICK_EPOCHS if quick else EPOCHS
    metrics: dict[str, dict[str, float]] = {}
    tuning: dict[str, dict[str, Any]] = {}
    regime: dict[str, float] = {}
    tuned = tune_arms(GRIDS, lambda arm, point: fit(arm, point, data, seed, epochs))
    for arm, (chosen, sel) in tuned.items():
        tuning[arm] = {k: list(v) if isinstance(v, tuple) else v for k, v in chosen.items()}
        metrics[arm] = {
            **sel.metrics,
            "validation Recall@20": sel.score,
            "modality MMD² (σ=1)": sel.extras["mmd"],
        }
        if arm == NONE:
            regime["misalignment z"] = modality_mmd_z(sel.extras["model"])
            oracle = ranking_metrics(
                data["oracle"], _mask(data["train"]) | _mask(data["val"]), data["test"]
            )
            regime["room below the oracle"] = (
                oracle[f"Recall@{TOP_K}"] - sel.metrics[f"Recall@{TOP_K}"]
            )
    sizes = {"train": N_USERS * 16, "validation": N_USERS * 2, "test": N_USERS * 2}
    return SeedResult(metrics, tuning=tuning, regime=regime, splits=sizes)


_PAPER = (
    "Ren, Ju & Lee, CIKM 2025 (arXiv 2509.09114), abstract: 'we apply Maximum Mean Discrepancy "
    "(MMD) and contrastive loss functions to constrain global modality alignment, enhancing "
    "semantic consistency. This dual regularization reduces mode-specific deviations and boosts "
    "robustness'; MambaRec is reported to beat multimodal-recommendation baselines in Recall@K / "
    "NDCG@K (K = 10, 20) on Amazon Baby, Sports and Clothing (the ablation table's numbers were "
    "not available offline and are not quoted). Analogue: 400 users x 300 items with generated "
    "image/text features, Recall@20 / NDCG@20 on 2 held-out items per user"
)
_MISALIGNED, _ROOM = "modalities misaligned without alignment", "ranking below the oracle"
_REGIME = (_MISALIGNED, _ROOM)


EXPERIMENT = Experiment(
    name="mambarec-alignment",
    summary=(
        "A scaled-down MambaRec on generated interactions with item image and text features: "
        "BPR alone, + InfoNCE(side, content), or + InfoNCE + MMD between the image and text "
        "projections; does aligning the modalities raise Recall@20 / NDCG@20?"
    ),
    setup=(
        "Per seed: 400 users and 300 items with 8-D latent tastes; each user's 20 items are drawn "
        "without replacement by softmax(2 u.v / sqrt(8) + popularity, popularity ~ N(0, 0.7²)); "
        "per user 16 train / 2 validation / 2 test items. Item image feature tanh(1.5 v A) + "
        "N(0, 0.1²) (32-D), text feature relu(v B + 0.5) + N(0, 0.3²) (24-D), A and B random. "
        "Model (no DREAM): ID embeddings 32-D, LightGCN 2 layers (content); linear + LayerNorm + "
        "dropout 0.2 projections gating the item embeddings, one layer on each modality's "
        "item-item 10-NN graph, the code's common/specific attention fusion (side); score = dot "
        "product of content + side. Adam lr 1e-2 (the code's 1e-3 needs > 80 epochs here; at 1e-2 "
        "the no-alignment model's validation Recall@20 plateaus by epoch ~15, seed 0, chosen "
        "before any alignment arm was compared), batch 1024, one sampled negative per positive, "
        "up to 20 epochs (1 with --quick), validation Recall@20 every epoch; test metrics "
        "mask train and validation items. MMD² as the code: biased, between L2-normalised image "
        "and text projections of the batch's positive items; InfoNCE τ 0.2 on items and users. "
        "Regime: the no-alignment model's image and text projections must differ in "
        "distribution (MMD² z-score against a permutation null > 3) and its test Recall@20 "
        "must be at least 0.05 below the oracle's (ranking by the generating logits). The sanity claim checks that the MMD term lowers the modality MMD. "
        "Finding (full run, 10 seeds): the MMD term closes the modality gap (MMD² 1.05 -> 0.002, "
        "10/10) but ranking does not improve: Recall@20 0.487 without alignment, 0.484 InfoNCE "
        "only, 0.479 MMD + InfoNCE (differences inconclusive, 2/10 and 3/10 seeds better). Here "
        "both views are functions of the same item latent, so aligning their distributions adds "
        "no information the ID embeddings and kNN graphs do not already carry."
    ),
    claims=(
        Claim(
            f"Recall@{TOP_K}",
            MMD,
            NONE,
            True,
            "modality alignment (MMD + InfoNCE) raises test Recall@20 over no alignment",
            regime=_REGIME,
            paper=_PAPER,
        ),
        Claim(
            f"NDCG@{TOP_K}",
            MMD,
            NONE,
            True,
            "modality alignment (MMD + InfoNCE) raises test NDCG@20 over no alignment",
            regime=_REGIME,
            paper=_PAPER,
        ),
        Claim(
            f"Recall@{TOP_K}",
            MMD,
            NCE,
            True,
            "the MMD term (distribution alignment) raises test Recall@20 over InfoNCE alone",
            regime=_REGIME,
            paper=_PAPER,
        ),
        Claim(
            "modality MMD² (σ=1)",
            MMD,
            NONE,
            False,
            "the MMD term lowers the image-text MMD² (its own objective)",
            kind="sanity",
        ),
    ),
    regime_checks=(
        RegimeCheck(
            _MISALIGNED,
            "misalignment z",
            "no-alignment model: biased MMD² (median-heuristic bandwidth) between its L2-"
            "normalised image and text projections of all items, as a z-score against 50 random "
            "re-splits of the pooled rows",
            3.0,
        ),
        RegimeCheck(
            _ROOM,
            "room below the oracle",
            "oracle test Recall@20 (items ranked by the generating logits) minus the "
            "no-alignment model's (room to improve)",
            0.05,
        ),
    ),
    tuning=GRIDS,
    selection="per seed and arm: the grid point and epoch with the best validation Recall@20",
    run_seed=run_seed,
)
