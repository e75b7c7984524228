"""MCR vs plain late fusion on synthetic two-modality data where one modality dominates."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, SeedResult
from inforeg.lab.experiments.training import make_mlp, minibatches, seed_everything

D = 16


def make_data(n: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """4 classes y = 2 b1 + b2. View a shows b1 cleanly and b2 faintly (strong, easy); view v
    shows b2 through a nonlinear, noisier code (weak but complementary)."""
    b1 = torch.randint(0, 2, (n,), generator=gen)
    b2 = torch.randint(0, 2, (n,), generator=gen)
    y = 2 * b1 + b2
    a = torch.randn(n, 8, generator=gen)
    a[:, 0] += 3.0 * (2 * b1 - 1)
    a[:, 1] += 0.4 * (2 * b2 - 1)
    v = torch.randn(n, 8, generator=gen)
    v[:, 0] += 1.2 * (2 * b2 - 1) * torch.sign(v[:, 1])
    return a, v, y


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc_a = make_mlp(8, 32, D, depth=1)
        self.enc_v = make_mlp(8, 32, D, depth=1)
        self.fuse_a = nn.Linear(D, 4, bias=False)
        self.fuse_v = nn.Linear(D, 4, bias=False)
        self.bias = nn.Parameter(torch.zeros(4))
        self.uni_a = nn.Linear(D, 4)
        self.uni_v = nn.Linear(D, 4)

    def forward(self, a: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        za, zv = self.enc_a(a), self.enc_v(v)
        fused = self.fuse_a(za) + self.fuse_v(zv) + self.bias
        return fused, self.uni_a(za.detach()), self.uni_v(zv.detach()), za, zv


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.dependence import MCRRegularizer

    gen = torch.Generator().manual_seed(900 + seed)
    a_tr, v_tr, y_tr = make_data(2000, gen)
    a_te, v_te, y_te = make_data(2000, gen)
    epochs = 8 if quick else 25
    metrics: dict[str, dict[str, float]] = {}
    for method in ("plain", "MCR (greedy)"):
        g = seed_everything(seed)
        model = Model()
        mcr = MCRRegularizer(weight=0.1, num_samples=8, game="greedy")
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(epochs):
            model.train()
            for idx in minibatches(a_tr.shape[0], 64, g):
                fused, ua, uv, za, zv = model(a_tr[idx], v_tr[idx])
                y = y_tr[idx]
                loss = F.cross_entropy(fused, y) + F.cross_entropy(ua, y) + F.cross_entropy(uv, y)
                if method != "plain":
                    loss = loss + mcr(za, zv, model.fuse_a, model.fuse_v, model.bias)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        model.eval()
        with torch.no_grad():
            fused, ua, uv, _, _ = model(a_te, v_te)
        metrics[method] = {
            "fused test accuracy": float((fused.argmax(1) == y_te).float().mean()),
            "v-only head accuracy": float((uv.argmax(1) == y_te).float().mean()),
            "a-only head accuracy": float((ua.argmax(1) == y_te).float().mean()),
        }
    return SeedResult(metrics)


EXPERIMENT = Experiment(
    name="mcr-two-modalities",
    technique="mcr",
    summary=(
        "Late-fusion two-encoder classifier trained with fused + unimodal cross-entropies (plain) "
        "or plus the MCR permutation game (greedy, lambda 0.1, 8 permutations per step)."
    ),
    setup=(
        "Synthetic 4-class data (2000 train / 2000 test): view a reveals one bit cleanly and the "
        "other faintly (dominant); view v carries the second bit through a sign-modulated code "
        "(weak but complementary). MLP encoders 8-32-16, linear fusion halves, linear unimodal "
        "probes on detached latents (they measure what each encoder learned), Adam lr 1e-3, batch "
        "64, 25 epochs (8 with --quick)."
    ),
    claims=(
        Claim(
            "fused test accuracy", "MCR (greedy)", "plain", True, "MCR raises the fused accuracy"
        ),
        Claim(
            "v-only head accuracy",
            "MCR (greedy)",
            "plain",
            True,
            "MCR makes the weak modality's encoder more informative on its own",
        ),
    ),
    run_seed=run_seed,
)
