"""Matching noisy rotated 2-D point clouds with few labelled pairs: SW loss and log-Sinkhorn refinement.

Per-point features (an MLP on rotation-invariant descriptors) match two noisy, rotated, shuffled
copies of a 2-D point cloud. Only a few training pairs carry their correspondence; the rest are
unlabelled. 'CE (labelled only)' trains the similarity rows by cross-entropy on the labelled
pairs; 'CE + SW' adds the bidirectional sliced-Wasserstein loss SW(X, P_xy Y) + SW(P_yx X, Y)
on soft permutations (row softmax of the similarity) of unlabelled pairs, the paper's use of SW
as an unsupervised term. Test-time refinement (the paper's adaptive refinement, without the
functional-map terms) fine-tunes a copy of the selected CE + SW net per test pair on the SW loss
with detached log-Sinkhorn plans.

Protocol 2: per seed fresh pairs split into train (labelled + unlabelled) / validation
(labelled) / test. Each arm has a 3-point grid of its own (CE: learning rate; CE + SW: the SW
weight, 1 to 100) and picks the grid point and epoch with the best validation matching accuracy.
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import seed_everything

N_POINTS = 40
N_NEIGH = 8
TAU = 0.07  # the authors' similarity temperature
NOISE = 0.03
N_LABELLED, N_UNLABELLED, N_VAL, N_TEST = 8, 192, 20, 30
PAIRS_PER_STEP = 8
EPOCHS, QUICK_EPOCHS = 15, 2
N_PROJ = 200  # the authors' number of directions
LR = 3e-3  # CE + SW's learning rate (it tunes the SW weight instead)
CE, SW, REFINED = "CE (labelled only)", "CE + SW", "CE + SW + refinement"
GRIDS: dict[str, dict[str, list[Any]]] = {
    CE: {"lr": [1e-3, 3e-3, 1e-2]},
    SW: {"sw_weight": [1.0, 10.0, 100.0]},
}


def _cloud(g: torch.Generator) -> Tensor:
    """A random 2-D shape: points on a few blobs and arcs."""
    n_blobs = 4
    centres = torch.randn(n_blobs, 2, generator=g) * 1.2
    which = torch.randint(0, n_blobs, (N_POINTS,), generator=g)
    ang = torch.rand(N_POINTS, generator=g) * 2 * math.pi
    rad = 0.3 + 0.4 * torch.rand(N_POINTS, generator=g)
    return centres[which] + rad[:, None] * torch.stack([ang.cos(), ang.sin()], -1)


def _pair(g: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(x, y, target) with y = R x[perm] + noise; target[i] = index in y of point i of x."""
    base = _cloud(g)
    theta = float(torch.rand((), generator=g)) * 2 * math.pi
    rot = torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    perm = torch.randperm(N_POINTS, generator=g)
    x = base + NOISE * torch.randn(N_POINTS, 2, generator=g)
    y = (base[perm] + NOISE * torch.randn(N_POINTS, 2, generator=g)) @ rot.T
    target = torch.argsort(perm)  # y[target[i]] = R base[i]
    return x, y, target


def _descriptors(p: Tensor) -> Tensor:
    """Rotation- and permutation-invariant per-point input: sorted k-NN distances and the
    distance to the centroid."""
    d = torch.cdist(p, p)
    knn = d.sort(-1).values[:, 1 : N_NEIGH + 1]
    c = (p - p.mean(0)).norm(dim=-1, keepdim=True)
    return torch.cat([knn, c], -1)


def _similarity(fx: Tensor, fy: Tensor) -> Tensor:
    return F.normalize(fx, dim=-1) @ F.normalize(fy, dim=-1).transpose(-1, -2) / TAU


def _accuracy(net: torch.nn.Module, pairs: list[tuple[Tensor, Tensor, Tensor]]) -> float:
    with torch.no_grad():
        hits = [
            (_similarity(net(_descriptors(x)), net(_descriptors(y))).argmax(-1) == t).float().mean()
            for x, y, t in pairs
        ]
    return float(torch.stack(hits).mean())


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Linear(N_NEIGH + 1, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 32),
    )


def _fit(
    arm: str, point: dict[str, Any], data: dict[str, list], seed: int, epochs: int
) -> Selected:
    from inforeg.ot import SlicedWassersteinLoss

    hp = {"lr": LR, "sw_weight": 0.0, **point}
    gen = seed_everything(seed)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=hp["lr"])
    sw = SlicedWassersteinLoss(
        n_projections=N_PROJ, p=2, bidirectional=True, weight=hp["sw_weight"]
    )
    lab = [(_descriptors(x), _descriptors(y), t) for x, y, t in data["labelled"]]
    unl = torch.stack(
        [torch.stack([_descriptors(x), _descriptors(y)]) for x, y, _ in data["unlabelled"]]
    )
    lab_x, lab_y = torch.stack([p[0] for p in lab]), torch.stack([p[1] for p in lab])
    lab_t = torch.stack([p[2] for p in lab])
    best = BestOnValidation(higher_is_better=True)
    steps = len(unl) // PAIRS_PER_STEP
    for epoch in range(epochs):
        order = torch.randperm(len(unl), generator=gen)
        for s in range(steps):
            # Every step: cross-entropy on the labelled pairs (both arms), SW on a batch of
            # unlabelled pairs (CE + SW only).
            logits = _similarity(net(lab_x), net(lab_y))
            loss = F.cross_entropy(logits.flatten(0, 1), lab_t.flatten())
            if hp["sw_weight"]:
                batch = unl[order[s * PAIRS_PER_STEP : (s + 1) * PAIRS_PER_STEP]]
                fx, fy = net(batch[:, 0]), net(batch[:, 1])
                sim = _similarity(fx, fy)
                p_xy = torch.softmax(sim, -1)
                p_yx = torch.softmax(sim.transpose(1, 2), -1)
                loss = loss + sw(fx, fy, p_xy, p_yx, generator=gen)
            opt.zero_grad()
            loss.backward()
            opt.step()
        best.update(
            epoch,
            _accuracy(net, data["val"]),
            lambda: {"test matching accuracy": _accuracy(net, data["test"])},
        )
        if best.step == epoch:
            best_state = copy.deepcopy(net.state_dict())
    net.load_state_dict(best_state)
    return best.result(net=net)


def _refine(
    net: torch.nn.Module, pairs: list[tuple[Tensor, Tensor, Tensor]], seed: int, steps: int
) -> float:
    """Per pair: fine-tune a copy for a few Adam steps on the bidirectional SW loss with detached
    log-Sinkhorn plans (lr 1e-3, grad-norm clip 1, the authors' settings); accuracy after."""
    from inforeg.ot import SlicedWassersteinLoss, log_sinkhorn_correspondence

    sw = SlicedWassersteinLoss(n_projections=N_PROJ, p=2, bidirectional=True)
    gen = torch.Generator().manual_seed(seed)
    accs = []
    for x, y, t in pairs:
        tuned = copy.deepcopy(net)
        opt = torch.optim.Adam(tuned.parameters(), lr=1e-3)
        dx, dy = _descriptors(x), _descriptors(y)
        for _ in range(steps):
            fx, fy = tuned(dx), tuned(dy)
            p_xy, p_yx = log_sinkhorn_correspondence(
                F.normalize(fx, dim=-1), F.normalize(fy, dim=-1), sigma=0.1, n_iter=10
            )
            loss = sw(fx[None], fy[None], p_xy.detach()[None], p_yx.detach()[None], generator=gen)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tuned.parameters(), 1.0)
            opt.step()
        accs.append(_accuracy(tuned, [(x, y, t)]))
    return sum(accs) / len(accs)


def run_seed(seed: int, quick: bool) -> SeedResult:
    g = torch.Generator().manual_seed(10_000 + seed)
    n_unl = 32 if quick else N_UNLABELLED
    data = {
        "labelled": [_pair(g) for _ in range(N_LABELLED)],
        "unlabelled": [_pair(g) for _ in range(n_unl)],
        "val": [_pair(g) for _ in range(N_VAL)],
        "test": [_pair(g) for _ in range(8 if quick else N_TEST)],
    }
    epochs = QUICK_EPOCHS if quick else EPOCHS
    # --quick: the last grid point of every arm.
    grids = {arm: {k: v[-1:] for k, v in g.items()} for arm, g in GRIDS.items()} if quick else GRIDS
    tuned = tune_arms(grids, functools.partial(_fit, data=data, seed=seed, epochs=epochs))
    metrics = tuned.metrics()
    refined = _refine(tuned[SW][1].extras["net"], data["test"], seed, 4 if quick else 15)
    metrics[REFINED] = {"test matching accuracy": refined}
    return SeedResult(
        metrics,
        tuning={**tuned.points("epoch"), REFINED: {}},
        regime={
            "CE validation accuracy": tuned[CE][1].score,
            "CE + SW test accuracy": metrics[SW]["test matching accuracy"],
        },
        splits={
            "train (labelled pairs)": N_LABELLED,
            "train (unlabelled pairs)": n_unl,
            "validation": N_VAL,
            "test": len(data["test"]),
        },
    )


EXPERIMENT = Experiment(
    name="sliced-point-clouds",
    summary=(
        "Learn per-point features that match two noisy, rotated, shuffled copies of a 2-D point "
        "cloud from few labelled pairs; add the sliced-Wasserstein loss SW(X, P_xy Y) + "
        "SW(P_yx X, Y) on soft permutations of unlabelled pairs (Le et al., CVPR 2024), and "
        "test-time refinement with detached log-Sinkhorn plans."
    ),
    setup=(
        "Per seed: random 2-D shapes of 40 points (4 blobs of arcs); y = R x[perm] + N(0, 0.03^2) "
        "noise on both copies, uniform random rotation. Input per point: sorted distances to its "
        "8 nearest neighbours and to the centroid (rotation invariant). MLP 9-64-64-32, "
        "similarity = cosine / 0.07, soft permutations = row softmax. Training pairs: "
        f"{N_LABELLED} labelled + {N_UNLABELLED} unlabelled (32 with --quick); validation "
        f"{N_VAL} and test {N_TEST} (8 with --quick) labelled pairs. Each step: cross-entropy of "
        "the similarity rows of all labelled pairs against the true correspondence, plus (CE + "
        f"SW) the bidirectional SW loss ({N_PROJ} directions, p = 2, the authors' L) on "
        f"{PAIRS_PER_STEP} unlabelled pairs; {N_UNLABELLED // PAIRS_PER_STEP} steps per epoch "
        f"for both arms, {EPOCHS} epochs (2 and one grid point with --quick), Adam. Refinement: "
        "per test pair, 15 Adam steps (lr 1e-3, clip 1; 4 with --quick) on the SW loss with "
        "log-Sinkhorn plans (sigma 0.1, 10 iterations, detached), from the selected CE + SW net. "
        "Metric: fraction of points of x whose most similar point in y is the true one. Changed "
        "from the audit's finding that full supervision leaves SW nothing to add (SW: -0.003 "
        "+- 0.006): labels are scarce here and SW sees the unlabelled pairs; the weight is swept "
        "up to the paper's 100. Findings (full run, 10 seeds): CE on 8 labelled pairs over-fits "
        "at once (selected epoch 0 in 8/10 seeds, validation 0.76); SW on unlabelled pairs does "
        "not add to it (test 0.758 vs 0.761, -0.003 [-0.013, +0.006]; weight 100 chosen in 8/10 "
        "seeds); refinement gives +0.011 [-0.005, +0.027] (6/10), inconclusive. Without the "
        "functional-map terms of the paper's pipeline, SW on soft permutations is a weak "
        "training signal at this scale."
    ),
    claims=(
        Claim(
            "test matching accuracy",
            SW,
            CE,
            True,
            "the SW loss on unlabelled pairs improves matching accuracy when labels are scarce",
            regime=("few labels leave room",),
            paper=(
                "Le et al. (CVPR 2024) train unsupervised (functional-map losses + 100 x SW, no "
                "correspondence labels) and report that adding the SW loss lowers the mean "
                "geodesic error on FAUST / SCAPE / SHREC'19 (ablation table). Analogue: 8 "
                "labelled + 192 unlabelled 2-D cloud pairs, SW on the unlabelled ones."
            ),
        ),
        Claim(
            "test matching accuracy",
            REFINED,
            SW,
            True,
            "test-time refinement with log-Sinkhorn plans improves matching accuracy further",
            regime=("CE + SW below ceiling",),
            paper=(
                "Le et al. (CVPR 2024): the adaptive refinement with entropic OT plans lowers the "
                "geodesic error further at test time (ablation table). Analogue: 15 SW steps per "
                "test pair from the selected CE + SW net."
            ),
        ),
    ),
    regime_checks=(
        RegimeCheck(
            "few labels leave room",
            "CE validation accuracy",
            "CE on the labelled pairs alone, validation matching accuracy at its selected point: "
            "scarce labels must leave it short of the ceiling",
            0.9,
            above=False,
        ),
        RegimeCheck(
            "CE + SW below ceiling",
            "CE + SW test accuracy",
            "CE + SW test matching accuracy: refinement needs room to improve",
            0.95,
            above=False,
        ),
    ),
    tuning={**GRIDS, REFINED: {}},
    selection=(
        "per seed and arm: the grid point and epoch with the best validation matching accuracy; "
        "refinement starts from the selected CE + SW net"
    ),
    run_seed=run_seed,
)
