"""CS-IB vs VIB, MSE and the CS prediction term alone, on scikit-learn's diabetes data.

Protocol 2: per seed a fresh random split (60 / 20 / 20 % train / validation / test), inputs and
target standardised on the training part. Every network (encoder 10-64-64-16, decoder 16-64-1,
Adam lr 1e-3, batch 128, up to 300 epochs) is stopped at its best validation-RMSE epoch, and
every arm tunes its own regularisation strength over a 4-point grid on the same validation RMSE:

- ``MSE``: weight decay in {0, 1e-4, 1e-3, 1e-2};
- ``VIB``: MSE + beta * KL(p(t|x) || N(0, I)) with a stochastic encoder (std = softplus(r - 5),
  as Alemi et al.'s code; t = mu in evaluation), beta in {1e-4, 1e-3, 1e-2, 1e-1};
- ``D_CS only (β=0)``: the conditional CS divergence without the compression term, weight decay
  in {0, 1e-4, 1e-3, 1e-2} (its wd = 0 point is CS-IB at beta = 0);
- ``CS-IB``: D_CS(y, y_hat | x) + beta * normalised CS-QMI(x; t), beta in {1e-3, 1e-2, 1e-1, 1}
  (the paper's sweep runs from 0 to 1; default 0.01).

Ordinary least squares on the same split is a reference (no tuning). The first-generation run
compared final epochs of two over-fitted networks after 200 epochs (audit B §3); here no arm is
read at its last epoch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, Selected, tune_arms
from inforeg.lab.experiments.training import make_mlp, minibatches, seed_everything

K = 16
LR = 1e-3
BATCH = 128
MSE, VIB, DCS, CSIB, OLS = "MSE", "VIB", "D_CS only (β=0)", "CS-IB", "linear regression (OLS)"
NETS = (MSE, VIB, DCS, CSIB)
WD_GRID = [0.0, 1e-4, 1e-3, 1e-2]
GRIDS: dict[str, dict[str, list[Any]]] = {
    MSE: {"weight_decay": WD_GRID},
    VIB: {"beta": [1e-4, 1e-3, 1e-2, 1e-1]},
    DCS: {"weight_decay": WD_GRID},
    CSIB: {"beta": [1e-3, 1e-2, 1e-1, 1.0]},
    OLS: {},
}
BETA_CURVE = "test RMSE vs CS-IB beta (0, 1e-3, 1e-2, 0.1, 1)"


class Net(nn.Module):
    """Encoder 10-64-64-K (deterministic t, as the CS-IB code's training path; or mean and raw
    std for VIB) and decoder K-64-1."""

    def __init__(self, stochastic: bool = False) -> None:
        super().__init__()
        self.stochastic = stochastic
        self.encoder = make_mlp(10, 64, 2 * K if stochastic else K, depth=2)
        self.decoder = make_mlp(K, 64, 1, depth=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Prediction, representation t and (VIB) the log variance of t."""
        h = self.encoder(x)
        if not self.stochastic:
            return self.decoder(h), h, None
        mu, raw = h[:, :K], h[:, K:]
        std = F.softplus(raw - 5.0).clamp_min(1e-7)
        t = mu + std * torch.randn_like(std) if self.training else mu
        return self.decoder(t), mu, 2.0 * std.log()


def load(seed: int) -> dict[str, Any]:
    """Random 60/20/20 split of diabetes; x and y standardised with the training statistics."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    xt = torch.tensor(x, dtype=torch.float32)
    yt = torch.tensor(y, dtype=torch.float32).unsqueeze(1)
    perm = torch.randperm(xt.shape[0], generator=torch.Generator().manual_seed(seed))
    n_tr, n_va = int(0.6 * xt.shape[0]), int(0.2 * xt.shape[0])
    idx = {"train": perm[:n_tr], "val": perm[n_tr : n_tr + n_va], "test": perm[n_tr + n_va :]}
    mx, sx = xt[idx["train"]].mean(0), xt[idx["train"]].std(0)
    my, sy = yt[idx["train"]].mean(), yt[idx["train"]].std()
    out: dict[str, Any] = {"scale": float(sy)}
    for part, rows in idx.items():
        out[f"x_{part}"] = (xt[rows] - mx) / sx
        out[f"y_{part}"] = (yt[rows] - my) / sy
    return out


def _errors(pred: Tensor, y: Tensor, scale: float) -> tuple[float, float]:
    """RMSE and MAE in the target's original units."""
    return scale * float(F.mse_loss(pred, y).sqrt()), scale * float((pred - y).abs().mean())


def fit(arm: str, point: dict[str, Any], data: dict[str, Any], seed: int, epochs: int) -> Selected:
    """Train one arm at one grid point; keep the epoch with the best validation RMSE.

    ``extras``: the validation RMSE at the last epoch (how much the network over-fits when not
    stopped) and the test RMSE at the selected epoch.
    """
    from inforeg.dependence import CSIBLoss, vib_kl

    gen = seed_everything(seed)
    net = Net(stochastic=arm == VIB)
    wd = point.get("weight_decay", 0.0)
    opt = torch.optim.Adam(net.parameters(), lr=LR, weight_decay=wd)
    csib = CSIBLoss(beta=point.get("beta", 0.0) if arm == CSIB else 0.0)
    x, y, scale = data["x_train"], data["y_train"], data["scale"]
    best = BestOnValidation(higher_is_better=False)
    val_rmse = float("nan")
    for epoch in range(epochs):
        net.train()
        for idx in minibatches(x.shape[0], BATCH, gen):
            if idx.shape[0] < 32:  # a remainder batch too small for the kernel estimators
                continue
            pred, t, logvar = net(x[idx])
            if arm in (MSE, VIB):
                loss = F.mse_loss(pred, y[idx])
                if logvar is not None:
                    loss = loss + point["beta"] * vib_kl(t, logvar)
            else:
                loss = csib(x[idx], y[idx], pred, t)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        net.eval()
        with torch.no_grad():
            val_rmse = _errors(net(data["x_val"])[0], data["y_val"], scale)[0]

            def evaluate() -> dict[str, float]:
                rmse, mae = _errors(net(data["x_test"])[0], data["y_test"], scale)
                return {"test RMSE": rmse, "test MAE": mae}

            best.update(epoch, val_rmse, evaluate)
    return best.result(final_val_rmse=val_rmse)


def least_squares(data: dict[str, Any]) -> dict[str, float]:
    """Ordinary least squares with an intercept, fitted on the training split."""

    def design(x: Tensor) -> Tensor:
        return torch.cat([x, torch.ones(x.shape[0], 1)], dim=1).double()

    coef = torch.linalg.lstsq(design(data["x_train"]), data["y_train"].double()).solution
    pred = (design(data["x_test"]) @ coef).float()
    rmse, mae = _errors(pred, data["y_test"], data["scale"])
    return {"test RMSE": rmse, "test MAE": mae}


def run_seed(seed: int, quick: bool) -> SeedResult:
    data = load(seed)
    epochs = 25 if quick else 300
    metrics: dict[str, dict[str, float]] = {OLS: least_squares(data)}
    tuning: dict[str, dict[str, Any]] = {OLS: {}}
    per_point: dict[str, dict[float, Selected]] = {arm: {} for arm in NETS}
    regime: dict[str, float] = {}

    def fit_point(arm: str, point: dict[str, Any]) -> Selected:
        sel = fit(arm, point, data, seed, epochs)
        per_point[arm][next(iter(point.values()))] = sel  # every grid point, for the curves
        return sel

    tuned = tune_arms({arm: GRIDS[arm] for arm in NETS}, fit_point, higher_is_better=False)
    for arm, (chosen, sel) in tuned.items():
        metrics[arm] = {**sel.metrics, "validation RMSE": sel.score, "selected epoch": sel.step}
        tuning[arm] = chosen
    plain = per_point[MSE][0.0]  # MSE without weight decay: does it over-fit when not stopped?
    regime["MSE net over-fitting (final / best validation RMSE - 1)"] = (
        plain.extras["final_val_rmse"] / plain.score - 1.0
    )
    curve = [per_point[DCS][0.0].metrics["test RMSE"]]
    curve += [per_point[CSIB][b].metrics["test RMSE"] for b in GRIDS[CSIB]["beta"]]
    splits = {part: int(data[f"y_{part}"].shape[0]) for part in ("train", "val", "test")}
    return SeedResult(
        metrics,
        curves={BETA_CURVE: {CSIB: curve}},
        tuning=tuning,
        regime=regime,
        splits={"train": splits["train"], "validation": splits["val"], "test": splits["test"]},
    )


_PAPER = (
    "Yu et al., ICLR 2024: CS-IB has the lowest test RMSE among deep IB regressors (VIB, NIB, "
    "square/exp-NIB, HSIC bottleneck) and MSE-based regression on six real-world regression tasks "
    "(e.g. California housing, encoder 8-128-128-128, Adam 1e-4, 200 epochs; abstract and Table 2; "
    "per-table numbers not re-checked here). Analogue: diabetes (442 patients), every arm stopped "
    "and tuned on validation"
)
_OVERFIT = "networks over-fit when not stopped"


def _claim(baseline: str, text: str) -> Claim:
    return Claim("test RMSE", CSIB, baseline, False, text, regime=(_OVERFIT,), paper=_PAPER)


EXPERIMENT = Experiment(
    name="csib-diabetes",
    summary=(
        "Regression on diabetes with CS-IB (D_CS(y, y_hat | x) + beta * normalised CS-QMI(x; t), "
        "no MSE term, sigma 1, log2) against VIB, MSE and D_CS alone, every arm early-stopped and "
        "tuned on validation; OLS as a reference."
    ),
    setup=(
        "scikit-learn diabetes (442 patients, 10 features), a different random 60/20/20 split per "
        f"seed, inputs and target standardised on the training part. Encoder 10-64-64-{K} "
        f"(deterministic t as the CS-IB code's training path; VIB: mean and std heads), decoder "
        f"{K}-64-1; Adam lr {LR} (the paper's 1e-4 with StepLR(10, 0.6) is made for ~100 steps "
        "per epoch; diabetes gives 2), batch 128 (remainder batches under 32 skipped), 300 epochs "
        "(25 with --quick), every arm read at its best validation-RMSE epoch and grid point. "
        "RMSE/MAE in the target's original units. The curve is the test RMSE of CS-IB over its "
        "beta sweep with beta = 0 taken from D_CS alone without weight decay. Regime: the MSE "
        "network without weight decay must over-fit when not stopped (final validation RMSE at "
        "least 5% above its best), i.e. generalisation is at stake. The first-generation run "
        "(final epochs after 200, no validation split) credited CS-IB with 71.4 vs 76.6; the audit "
        "found both nets over-fitted and beta = 0 better than beta = 0.01."
    ),
    claims=(
        _claim(VIB, "CS-IB lowers test RMSE vs VIB (the paper's deep-IB comparison)"),
        _claim(MSE, "CS-IB lowers test RMSE vs the same network trained with MSE"),
        _claim(
            DCS,
            "the compression term helps: CS-IB (beta > 0) lowers test RMSE vs D_CS alone "
            "(beta = 0, weight decay tuned instead)",
        ),
    ),
    regime_checks=(
        RegimeCheck(
            _OVERFIT,
            "MSE net over-fitting (final / best validation RMSE - 1)",
            "MSE network without weight decay: validation RMSE at the last epoch over its best, "
            "minus 1 (over-fitting is what an information bottleneck should curb)",
            0.05,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "per seed and arm: the grid point and epoch with the lowest validation RMSE (OLS: none)"
    ),
    run_seed=run_seed,
    requires=("sklearn",),  # the diabetes data
)
