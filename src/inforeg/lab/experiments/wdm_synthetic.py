"""WDM/WPC vs InfoNCE on a high-MI multi-factor task where InfoNCE saturates at log N."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, SeedResult
from inforeg.lab.experiments.training import make_mlp, seed_everything

FACTORS = 8
LEVELS = 4
BATCH = 32
DIM = 24


def make_views(n: int, gen: torch.Generator, proj: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Two noisy views of FACTORS independent categorical factors (MI = 8 log 4 = 11.1 nats)."""
    codes = torch.randint(0, LEVELS, (n, FACTORS), generator=gen)
    onehot = F.one_hot(codes, LEVELS).float().reshape(n, -1)
    x = torch.tanh(onehot @ proj[0]) + 0.3 * torch.randn(n, DIM, generator=gen)
    y = torch.tanh(onehot @ proj[1]) + 0.3 * torch.randn(n, DIM, generator=gen)
    return x, y, codes


def probe_accuracy(feat_tr: Tensor, codes_tr: Tensor, feat_te: Tensor, codes_te: Tensor) -> float:
    """Mean over factors of a ridge-regression linear probe's test accuracy."""

    def design(f: Tensor) -> Tensor:
        return torch.cat([f, torch.ones(f.shape[0], 1)], dim=1)

    a_tr, a_te = design(feat_tr), design(feat_te)
    gram = a_tr.T @ a_tr + 1e-2 * torch.eye(a_tr.shape[1])
    accs = []
    for k in range(FACTORS):
        w = torch.linalg.solve(gram, a_tr.T @ F.one_hot(codes_tr[:, k], LEVELS).float())
        accs.append(float(((a_te @ w).argmax(1) == codes_te[:, k]).float().mean()))
    return sum(accs) / len(accs)


class Critic(nn.Module):
    """Separable critic S = g(x) h(y)^T."""

    def __init__(self) -> None:
        super().__init__()
        self.g = make_mlp(DIM, 64, 16, depth=1)
        self.h = make_mlp(DIM, 64, 16, depth=1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.g(x) @ self.h(y).T


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.dependence import infonce, wasserstein_dependency

    gen = torch.Generator().manual_seed(700 + seed)
    proj = torch.randn(2, FACTORS * LEVELS, DIM, generator=gen)
    x_tr, y_tr, c_tr = make_views(2000, gen, proj)
    x_te, y_te, c_te = make_views(1000, gen, proj)
    steps = 250 if quick else 800
    metrics: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[str, list[float]]] = {"InfoNCE bound on the batch (nats)": {}}
    for method in ("InfoNCE", "WPC (InfoNCE + GP)", "WDM (KR + GP)"):
        g = seed_everything(seed)
        critic = Critic()
        opt = torch.optim.Adam(critic.parameters(), lr=1e-3)
        hist = []
        for step in range(steps):
            idx = torch.randint(0, x_tr.shape[0], (BATCH,), generator=g)
            xb, yb = x_tr[idx], y_tr[idx]
            if method == "InfoNCE":
                loss = F.cross_entropy(critic(xb, yb), torch.arange(BATCH))
            else:
                objective = "infonce" if method.startswith("WPC") else "kr"
                loss = wasserstein_dependency(critic, xb, yb, "gradient_penalty", objective).loss  # type: ignore[arg-type]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if step % 25 == 0:
                with torch.no_grad():
                    s = critic(xb, yb)
                    hist.append(math.log(BATCH) - float(F.cross_entropy(s, torch.arange(BATCH))))
        with torch.no_grad():
            acc = probe_accuracy(critic.g(x_tr), c_tr, critic.g(x_te), c_te)
            s = critic.g(x_te[:BATCH]) @ critic.h(y_te[:BATCH]).T
            bound = math.log(BATCH) - float(
                infonce(critic.g(x_te[:BATCH]), critic.h(y_te[:BATCH]), 1.0, normalize=False)
            )
            del s
        metrics[method] = {"linear-probe factor accuracy": acc, "InfoNCE bound (nats)": bound}
        curves["InfoNCE bound on the batch (nats)"][method] = hist
    return SeedResult(metrics, curves)


EXPERIMENT = Experiment(
    name="wdm-synthetic",
    technique="wasserstein-dependency",
    summary=(
        "Representation learning by maximising a dependence estimate between two views: InfoNCE "
        "(CPC), WPC (InfoNCE with a gradient-penalised critic, lambda 10) and the KR-dual "
        "Wasserstein dependency measure with the same penalty."
    ),
    setup=(
        f"Two noisy nonlinear views of {FACTORS} independent 4-level factors (true MI = "
        f"{FACTORS} log 4 = 11.1 nats, far above log {BATCH} = 3.47, where InfoNCE saturates). "
        "Separable critic g(x) h(y)^T with one-hidden-layer MLP encoders (64 units, 16-D), Adam "
        f"lr 1e-3, batch {BATCH}, 800 steps (250 with --quick). Metric: mean over factors of a "
        "ridge linear probe's test accuracy on g(x) (chance 0.25)."
    ),
    claims=(
        Claim(
            "linear-probe factor accuracy",
            "WPC (InfoNCE + GP)",
            "InfoNCE",
            True,
            "WPC recovers more of the factors than CPC/InfoNCE when the MI is large",
        ),
        Claim(
            "linear-probe factor accuracy",
            "WDM (KR + GP)",
            "InfoNCE",
            True,
            "the Wasserstein dependency measure recovers more factors than InfoNCE",
        ),
    ),
    run_seed=run_seed,
)
