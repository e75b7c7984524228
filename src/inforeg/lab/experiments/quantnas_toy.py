"""QuantNAS toy search: does the scheduled architecture-entropy term give a better derived net?

Protocol 2. A toy differentiable search over (kernel, bit-width) per edge with quantisation noise
and a BitOps penalty, with the entropy term at c in {0.01, 0.1, 1} or without it. The derived
network keeps each edge's argmax (kernel, bits) and is evaluated *quantised at those bits*
(weights and edge inputs fake-quantised, min-max per tensor, with
:func:`inforeg.quant.fake_quantize_asymmetric`), inheriting the supernet's weights without
retraining: the supernet-to-discrete step the entropy term is meant to make harmless. Every arm
tunes the architecture learning rate over the same 2-point grid, selected by the derived
(quantised) network's validation MSE.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import Selected, tune_arms

KERNELS = (1, 3, 5)
BITS = (8, 4)
EDGES = 3
CHANNELS, LENGTH = 4, 32
SEARCH_EPOCHS = 20
HW_PENALTY = 0.05  # weight of the normalised expected BitOps on the alpha step (same for all arms)
BASE = "no entropy term"
COEFFICIENTS = {"entropy c=0.01": 0.01, "entropy c=0.1": 0.1, "entropy c=1": 1.0}
ALPHA_LR_GRID = [0.03, 0.1]
GRIDS: dict[str, dict[str, list[Any]]] = {
    arm: {"alpha lr": ALPHA_LR_GRID} for arm in (BASE, *COEFFICIENTS)
}
# BitOps of candidate (k, b): MACs of a CHANNELS->CHANNELS conv of kernel k over LENGTH samples
# times b-bit weights times b-bit activations (the paper's BitOps count).
CANDIDATE_BITOPS = torch.tensor(
    [CHANNELS * CHANNELS * k * LENGTH * b * b for k in KERNELS for b in BITS], dtype=torch.float32
)


def _quant(x: Tensor, bits: int) -> Tensor:
    from inforeg.quant import fake_quantize_asymmetric

    return fake_quantize_asymmetric(x, x.min(), x.max(), bits)


class ToySupernet(nn.Module):
    """A chain of EDGES residual mixed edges; each mixes 3 conv kernels x 2 bit-widths.

    In the search, candidate (k, b) computes conv_k(h + detached b-bit quantisation noise);
    ``derived=True`` runs each edge's argmax candidate with its weights and input fake-quantised
    to its b bits.
    """

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(  # edge-major: index e * len(KERNELS) + k
            nn.Conv1d(CHANNELS, CHANNELS, k, padding=k // 2) for _ in range(EDGES) for k in KERNELS
        )
        self.inp = nn.Conv1d(1, CHANNELS, 1)
        self.out = nn.Conv1d(CHANNELS, 1, 1)
        self.alpha = nn.Parameter(torch.zeros(EDGES, len(KERNELS) * len(BITS)))

    def choice(self) -> list[tuple[int, int]]:
        """Each edge's argmax (kernel index, bit-width)."""
        idx = self.alpha.detach().argmax(dim=1).tolist()
        return [(i // len(BITS), BITS[i % len(BITS)]) for i in idx]

    def forward(self, x: Tensor, derived: bool = False) -> Tensor:
        from inforeg.losses import quantization_noise

        h = self.inp(x)
        if derived:
            for e, (k, bits) in enumerate(self.choice()):
                conv = self.convs[e * len(KERNELS) + k]
                assert isinstance(conv, nn.Conv1d)
                w_q = _quant(conv.weight, bits)
                out = F.conv1d(_quant(h, bits), w_q, conv.bias, padding=KERNELS[k] // 2)
                h = torch.relu(out) + h
            return self.out(h)
        weights = torch.softmax(self.alpha, dim=1)
        for e in range(EDGES):
            # the noisy input depends on the bit-width only: one draw per bit-width and edge
            noisy = [h + (quantization_noise(h, bits) - h.detach()) for bits in BITS]
            mixed = torch.zeros_like(h)
            for k in range(len(KERNELS)):
                conv = self.convs[e * len(KERNELS) + k]
                for b in range(len(BITS)):
                    mixed = mixed + weights[e, k * len(BITS) + b] * conv(noisy[b])
            h = torch.relu(mixed) + h
        return self.out(h)

    def expected_bitops(self) -> Tensor:
        """Mean over edges of the softmax-weighted BitOps, normalised to [0, 1] (min..max)."""
        lo, hi = CANDIDATE_BITOPS.min(), CANDIDATE_BITOPS.max()
        w = torch.softmax(self.alpha, dim=1)
        return ((w @ CANDIDATE_BITOPS - lo) / (hi - lo)).mean()

    def derived_bitops(self) -> float:
        return float(sum(CANDIDATE_BITOPS[k * len(BITS) + BITS.index(b)] for k, b in self.choice()))


def make_task(n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """Smooth 1-D signals; target = a fixed 3-tap filter of the signal, squared, plus noise."""
    x = torch.cumsum(torch.randn(n, 1, LENGTH, generator=g), dim=2) / 4
    kernel = torch.tensor([[[0.25, 0.5, 0.25]]])
    y = F.conv1d(x, kernel, padding=1) ** 2
    return x, y + 0.01 * torch.randn(y.shape, generator=g)


def _search(
    coef: float, alpha_lr: float, data: dict[str, Tensor], seed: int, epochs: int, steps: int
) -> Selected:
    from inforeg.losses import ArchitectureEntropyRegularizer, architecture_entropy

    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(8000 + seed)
    net = ToySupernet()
    reg = ArchitectureEntropyRegularizer(coefficient=coef, total_epochs=epochs)
    weights = [p for n, p in net.named_parameters() if n != "alpha"]
    opt_w = torch.optim.Adam(weights, lr=3e-3)
    opt_a = torch.optim.Adam([net.alpha], lr=alpha_lr)
    x_tr, y_tr = data["x_train"], data["y_train"]
    history: list[float] = []
    for epoch in range(epochs):
        reg.set_epoch(epoch)
        for _ in range(steps):
            idx = torch.randint(0, x_tr.shape[0], (64,), generator=g)
            loss = F.mse_loss(net(x_tr[idx]), y_tr[idx])
            opt_w.zero_grad(set_to_none=True)
            loss.backward()
            opt_w.step()
            idx = torch.randint(0, x_tr.shape[0], (64,), generator=g)  # alpha step
            loss_a = (
                F.mse_loss(net(x_tr[idx]), y_tr[idx])
                + HW_PENALTY * net.expected_bitops()
                + reg(net.alpha)
            )
            opt_a.zero_grad(set_to_none=True)
            loss_a.backward()
            opt_a.step()
        history.append(float(architecture_entropy(net.alpha.detach()) / EDGES))
    with torch.no_grad():
        torch.manual_seed(seed + 1)  # the same noise draws for every arm's supernet evaluation
        mse = {
            f"{part} {kind}": float(
                F.mse_loss(net(data[f"x_{part}"], derived=d), data[f"y_{part}"])
            )
            for part in ("val", "test")
            for kind, d in (("supernet", False), ("derived", True))
        }
        top = float(torch.softmax(net.alpha, 1).amax(1).mean())
    metrics = {
        "derived test MSE (quantised)": mse["test derived"],
        "derived kBitOps": net.derived_bitops() / 1000.0,
        "4-bit edges": float(sum(b == 4 for _, b in net.choice())),
        "supernet test MSE": mse["test supernet"],
        "supernet-to-derived test MSE gap": mse["test derived"] - mse["test supernet"],
        "final entropy per edge (nats)": history[-1],
        "mean top architecture weight": top,
    }
    rel_gap = mse["val derived"] / mse["val supernet"] - 1.0
    return Selected(-mse["val derived"], metrics, extras={"history": history, "rel_gap": rel_gap})


def run_seed(seed: int, quick: bool) -> SeedResult:
    g = torch.Generator().manual_seed(8000 + seed)
    data: dict[str, Tensor] = {}
    for part in ("train", "val", "test"):
        data[f"x_{part}"], data[f"y_{part}"] = make_task(256, g)
    epochs, steps = (6, 1) if quick else (SEARCH_EPOCHS, 5)
    coefficients = {BASE: 0.0, **COEFFICIENTS}
    tuned = tune_arms(
        GRIDS,
        lambda arm, point: _search(coefficients[arm], point["alpha lr"], data, seed, epochs, steps),
    )
    curves = {"architecture entropy per edge, per epoch": tuned.extras("history")}
    regime = {"no-entropy relative discretisation gap": tuned[BASE][1].extras["rel_gap"]}
    sizes = {"train": 256, "validation": 256, "test": 256}
    return SeedResult(tuned.metrics(), curves, tuning=tuned.points(), regime=regime, splits=sizes)


_PAPER = (
    "Shvetsov et al., QuantNAS (arXiv 2208.14839), abstract: 'The entropy regularization "
    "technique prioritizes a single operation within each block of the search space' and "
    "'QuantNAS discovers architectures with better PSNR/BitOps trade-off' (x4 SR on DIV2K, "
    "c = 1e-3 for an L1 loss); the term is there so that the discrete, quantised architecture "
    "matches the supernet (spec losses.md §10)"
)
_GAP = "discretisation hurts without the term"

EXPERIMENT = Experiment(
    name="quantnas-toy",
    summary=(
        "QuantNAS adds c * w1(t) * w2(t) * sum_edges H(softmax(alpha_edge)) to the architecture "
        "loss; the test is the derived network, quantised at its chosen bit-widths, against a "
        "search without the term (c swept over 0.01, 0.1, 1)."
    ),
    setup=(
        "A toy differentiable search: 3 residual edges, each mixing 3 one-dimensional conv "
        "kernels (1, 3, 5) x 2 bit-widths (8, 4) on 4 channels, with detached quantisation noise "
        "on the edge input per bit-width; regression of a squared 3-tap filter of random-walk "
        "signals (length 32); 256 train / 256 validation / 256 test signals per seed. 20 search "
        "epochs of 5 alternating weight / alpha steps (6 epochs of 1 step with --quick), Adam lr 3e-3 (weights), "
        "batch 64; the alpha step adds 0.05 x the softmax-expected BitOps normalised to [0, 1] "
        "(a hardware penalty, so that the bit-width choice matters) and the entropy term with "
        "the paper's schedule (t_w = 5). The paper's c = 1e-3 is relative to an SR L1 loss of a "
        "different scale, hence the sweep. The derived network takes each edge's argmax "
        "(kernel, bits), inherits the supernet's weights (no retraining), and is evaluated with "
        "its conv weights and edge inputs fake-quantised to the chosen bits (per-tensor min-max; "
        "the 1x1 input/output convs stay at full precision). BitOps = MACs x b_w x b_a summed "
        "over the edges. The protocol-1 version's one-hot claim is the term's own objective: "
        "here a sanity claim (and a unit test of the regulariser). Recorded (10 seeds): NOT "
        "TESTABLE HERE. Without the term the derived quantised network is only 3% worse than "
        "its supernet on validation (mean; -6% to +25% by seed), below the pre-set 10%, so "
        "there is little discretisation loss for the term to remove on this toy; the derived "
        "test MSE differences are +0.011 [-0.001, +0.023] (c = 0.01), -0.005 [-0.070, +0.061] "
        "(c = 0.1) and -0.076 [-0.237, +0.085] (c = 1, positive = better with the term). The "
        "term does make the weights near one-hot (top weight 0.64 -> 0.87 at c = 0.1) and, at "
        "c = 1, picks cheaper bits (derived BitOps -66k [-134k, +3k] of 248k)."
    ),
    claims=tuple(
        Claim(
            "derived test MSE (quantised)",
            arm,
            BASE,
            False,
            f"the derived quantised network is better with the entropy term ({arm})",
            regime=(_GAP,),
            paper=_PAPER,
        )
        for arm in COEFFICIENTS
    )
    + (
        Claim(
            "final entropy per edge (nats)",
            "entropy c=0.1",
            BASE,
            False,
            "the entropy term lowers the architecture entropy (its own objective)",
            kind="sanity",
        ),
    ),
    regime_checks=(
        RegimeCheck(
            _GAP,
            "no-entropy relative discretisation gap",
            "validation MSE of the no-entropy search's derived quantised network over its "
            "supernet's, minus 1 (> 0.1: discretising costs the baseline something to fix)",
            0.1,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "per seed and arm: the architecture learning rate whose derived quantised network has "
        "the lowest validation MSE (the search length is fixed by the entropy schedule)"
    ),
    run_seed=run_seed,
)
