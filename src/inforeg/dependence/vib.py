r"""Variational information bottleneck head and KL penalty (MID defence against model inversion).

MID (Wang, Zhang & Jia, "Improving Robustness to Model Inversion Attacks via Mutual Information
Regularization", AAAI 2021, arXiv 2009.05241) penalises :math:`I(X; \hat Y) \leq I(X; Z) \leq
E_x \mathrm{KL}(p(z|x) \| \mathcal N(0, I))` with a stochastic head on backbone features f(x):

.. math::

    [\mu, r] = W f(x) + b,\quad \sigma = \mathrm{softplus}(r - 5),\quad z = \mu + \sigma \odot
    \epsilon,\quad \text{logits} = V z + c

    \mathcal{L} = \mathrm{CE}(\text{logits}, y) + \beta \cdot \frac{1}{B}\sum_b \tfrac12
    \sum_k \big(\mu_{bk}^2 + \sigma_{bk}^2 - 1 - \log \sigma_{bk}^2\big)

Defaults as the authors' code (``gmi/target/model.py``): bottleneck K = D/2, offset 5 (initial
σ ≈ 0.0067), log σ computed from σ clamped at 1e-7 (one variant of their code adds 1e-7; without
it log σ can reach -inf). Differences from the code, on purpose: in ``eval()`` mode the head is
deterministic (z = μ; the code samples noise at test time, set ``sample_in_eval=True`` for that),
and no softmax sits inside the classifier (the IR152/IR50 heads of the code apply Softmax and then
CrossEntropyLoss, a double softmax).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.core.checks import (
    check_choice,
    check_int,
    check_labels,
    check_module_input,
    check_number,
    check_same_shape,
    check_tensor,
)
from inforeg.core.dtypes import upcast
from inforeg.core.reduce import reduce

__all__ = ["MIDLoss", "VIBHead", "VIBOutput", "vib_kl"]


def vib_kl(
    mu: Tensor, logvar: Tensor, reduction: Literal["mean", "sum", "none"] = "mean"
) -> Tensor:
    """KL(N(mu, diag exp(logvar)) || N(0, I)) per sample, summed over the last dim (nats).

    ``logvar`` is clamped above at half the log of the compute dtype's largest value (44.4 in
    float32, 354.9 in float64), where ``exp(logvar)`` would otherwise overflow to inf (as it does
    in float64 beyond 709.8): value and gradient are exact below the bound; above it the value is
    the bound's and the gradient with respect to ``logvar`` is zero. (A variance of e^44 is far
    outside any trained head's range: VIBHead's log-variance is 2 log softplus(.).)

    Args:
        mu: means (B, K); logvar: log variances, the same shape.
        reduction: over the batch: ``"mean"`` (default, as the code), ``"sum"`` or ``"none"``.

    Example (``(1 + 1 - 1 - 0) / 2 + (0 + 2 - 1 - log 2) / 2``):

        >>> import math
        >>> mu = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
        >>> logvar = torch.tensor([[0.0, math.log(2.0)]], dtype=torch.float64)
        >>> print(f"{float(vib_kl(mu, logvar)):.4f}")
        0.6534
    """
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    return reduce(_kl_per_sample(mu, logvar, "mu", "logvar"), reduction).to(mu.dtype)


def _kl_per_sample(mu: Tensor, logvar: Tensor, name_mu: str, name_logvar: str) -> Tensor:
    """vib_kl's per-sample KL in the compute dtype, the arguments checked under the given names."""
    check_tensor(mu, name_mu, min_ndim=1, floating=True)
    check_tensor(logvar, name_logvar, min_ndim=1, floating=True)
    check_same_shape(mu, logvar, name_mu, name_logvar)
    m = upcast(mu)
    lv = logvar.to(m.dtype).clamp_max(0.5 * math.log(torch.finfo(m.dtype).max))
    return 0.5 * (m * m + lv.exp() - 1.0 - lv).sum(-1)


class VIBOutput(NamedTuple):
    """What :class:`VIBHead` returns."""

    logits: Tensor
    mu: Tensor
    logvar: Tensor


class VIBHead(nn.Module):
    """Stochastic bottleneck head: features (B, D) -> logits (B, C), mu and logvar (B, K).

    Args:
        in_features: D.
        num_classes: C.
        bottleneck: K (default D // 2, as the code).
        std_offset: subtracted before softplus (default 5).
        sample_in_eval: also sample z in eval mode (the code's behaviour); default False (z = mu).
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        bottleneck: int | None = None,
        std_offset: float = 5.0,
        sample_in_eval: bool = False,
    ) -> None:
        super().__init__()
        check_int(in_features, "in_features", low=1)
        check_int(num_classes, "num_classes", low=1)
        k = (
            max(1, in_features // 2)
            if bottleneck is None
            else check_int(bottleneck, "bottleneck", low=1)
        )
        self.k = k
        self.std_offset = check_number(std_offset, "std_offset")
        self.sample_in_eval = sample_in_eval
        self.encoder = nn.Linear(in_features, 2 * k)
        self.classifier = nn.Linear(k, num_classes)

    def forward(self, features: Tensor) -> VIBOutput:
        """Return logits, mu and logvar. ``features`` (..., D) must have the dtype of the head's
        parameters (convert the head with ``.to()``)."""
        check_module_input(features, "features", self, self.encoder.in_features)
        h = self.encoder(features)
        mu, raw = h[..., : self.k], h[..., self.k :]
        std = F.softplus(raw - self.std_offset).clamp_min(1e-7)
        logvar = 2.0 * std.log()
        if self.training or self.sample_in_eval:
            z = mu + std * torch.randn_like(std)
        else:
            z = mu
        return VIBOutput(self.classifier(z), mu, logvar)


class MIDLoss(nn.Module):
    """``CE(logits, y) + beta * vib_kl(mu, logvar)`` (MID; code beta 0.003 to 0.01)."""

    def __init__(self, beta: float = 0.01) -> None:
        super().__init__()
        self.beta = check_number(beta, "beta", low=0.0)

    def forward(self, output: VIBOutput, target: Tensor) -> Tensor:
        """Return the MID training loss: ``output`` from :class:`VIBHead`, ``target`` (B,)
        class indices."""
        if not isinstance(output, VIBOutput):
            raise TypeError(f"output: expected a VIBOutput, got {type(output).__name__}")
        logits = check_tensor(output.logits, "output.logits", ndim=2, floating=True)
        check_labels(target, "target", logits.shape[1], logits.shape[0])
        kl = _kl_per_sample(output.mu, output.logvar, "output.mu", "output.logvar").mean()
        ce = F.cross_entropy(upcast(logits), target)
        return (ce + self.beta * kl).to(logits.dtype)
