r"""Policy-gradient-driven noise masks (PGNM): a Beta policy that masks a classifier's input.

Yavuz & Yang, "Policy Gradient-Driven Noise Mask", 2024, arXiv 2406.14568. Authors' code:
``ogrenenmakine/Policy-Gradient-Driven-Noise-Mask`` (now ``convergedmachine/…``):
``create_model.py`` (``MaskGenerator``), ``train_one_epoch.py``, ``_policy_gradient/evaluate.py``,
``train.py``.

A policy network looks at the image and outputs, per cell of a G×G grid, the log-concentrations of
a Beta distribution. A mask is sampled cell-wise, upsampled (nearest) to the image size, blurred,
and multiplied into the classifier's input; the classifier's cross-entropy is the policy's
(negative) reward. After training, the policy is dropped and the "heated" classifier fine-tuned on
clean data.

Where inforeg differs from the authors' code:

- the loss: the paper describes REINFORCE; the code back-propagates one scalar
  ``mean_b[log Σ_j π(m_bj)] · mean_b CE_b`` into both networks — no baseline, no per-sample
  credit, the log-sum of *densities* over cells rather than the sum of log-densities, and the
  classifier receives CE times a factor that can be negative (then it *ascends* CE).
  :func:`reinforce_mask_loss` defaults to ``mode="reinforce"`` (classifier and policy losses
  separate, baseline = batch-mean CE) and keeps ``mode="code"`` for reproduction, computed with
  ``logsumexp`` (the code's ``log(sum(exp))`` overflows for sharp Betas);
- each head is run once per forward; its detached batch mean feeds the base EMA (the code runs each
  head twice, so its BatchNorm running statistics are updated twice per step);
- the base EMA runs only in ``train()`` mode (the code threads it by hand through the training
  loop only, so the same);
- log-concentrations are clamped to ``[-10, 10]`` (concentrations ``e^{±10}``) in sampling and in
  the density, and cells to ``[tiny, 1 - eps]`` of the compute dtype, so that extreme logits and
  samples that round to 0 or 1 give finite values (the code's ``exp`` overflows to inf → NaN).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.core.checks import (
    check_choice,
    check_int,
    check_matches_module_dtype,
    check_number,
    check_positive,
    check_probability,
    check_same_length,
    check_tensor,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import reduce
from inforeg.core.types import Reduction

__all__ = [
    "BetaNoiseMaskPolicy",
    "beta_mask_log_prob",
    "noise_mask_from_cells",
    "reinforce_mask_loss",
    "sample_mask_cells",
]

LOG_CONCENTRATION_BOUND = 10.0


def _check_log_concentrations(log_alpha: Tensor, log_beta: Tensor) -> None:
    check_tensor(log_alpha, "log_alpha", ndim=2, floating=True)
    check_tensor(log_beta, "log_beta", ndim=2, floating=True)
    if log_alpha.shape != log_beta.shape:
        raise ValueError(
            f"log_beta: expected the shape of log_alpha {tuple(log_alpha.shape)}, "
            f"got {tuple(log_beta.shape)}"
        )


def _concentrations(
    log_alpha: Tensor, log_beta: Tensor, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    bound = LOG_CONCENTRATION_BOUND
    a = log_alpha.to(dtype).clamp(-bound, bound).exp()
    b = log_beta.to(dtype).clamp(-bound, bound).exp()
    return a, b


def beta_mask_log_prob(
    cells: Tensor, log_alpha: Tensor, log_beta: Tensor, per_cell: bool = False
) -> Tensor:
    r"""Log-density of mask cells under independent Beta(e^{log α}, e^{log β}) distributions.

    .. math::

        \log\pi(m) = \sum_j (\alpha_j - 1)\log m_j + (\beta_j - 1)\log(1 - m_j)
                     - \log B(\alpha_j, \beta_j), \qquad \alpha_j = e^{a_j},\ \beta_j = e^{b_j},

    :math:`\log B(\alpha, \beta) = \log\Gamma(\alpha) + \log\Gamma(\beta) - \log\Gamma(\alpha+\beta)`.
    Differentiable in ``log_alpha`` and ``log_beta`` (the score function of REINFORCE); cells are
    treated as constants. Log-concentrations are clamped to ±10 and cells to
    ``[tiny, 1 - eps]`` (see the module docstring), so the value stays finite.

    Args:
        cells: (B, G²) samples in [0, 1].
        log_alpha, log_beta: (B, G²), or (1, G²) broadcast over the batch (the unconditional
            base distribution).
        per_cell: return the (B, G²) per-cell log-densities instead of their sum.

    Returns:
        (B,) summed log-density (or (B, G²)), in the dtype of ``log_alpha`` (float32 compute for
        half inputs).

    Example:
        >>> m = torch.tensor([[0.25, 0.5]])
        >>> beta_mask_log_prob(m, torch.zeros(1, 2), torch.zeros(1, 2))  # Beta(1, 1) = uniform
        tensor([0.])
        >>> beta_mask_log_prob(m, torch.tensor([[math.log(2.0)] * 2]), torch.zeros(1, 2))  # 2m
        tensor([-0.6931])
    """
    check_tensor(cells, "cells", ndim=2, floating=True)
    _check_log_concentrations(log_alpha, log_beta)
    if log_alpha.shape[1] != cells.shape[1] or log_alpha.shape[0] not in (1, cells.shape[0]):
        raise ValueError(
            f"log_alpha: expected shape ({cells.shape[0]}, {cells.shape[1]}) or "
            f"(1, {cells.shape[1]}) to match cells, got {tuple(log_alpha.shape)}"
        )
    dtype = compute_dtype(log_alpha, log_beta)
    a, b = _concentrations(log_alpha, log_beta, dtype)
    info = torch.finfo(dtype)
    m = cells.detach().to(dtype).clamp(info.tiny, 1.0 - info.eps)
    log_norm = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
    lp = (a - 1.0) * torch.log(m) + (b - 1.0) * torch.log1p(-m) - log_norm
    out = lp if per_cell else lp.sum(1)
    return out.to(log_alpha.dtype)


def _log_gamma_sample(c: Tensor) -> Tensor:
    """``log G`` for ``G ~ Gamma(c, 1)``, exact also for tiny ``c``: ``G = Gamma(c + 1) U^(1/c)``
    (Marsaglia & Tsang's boost), taken in logs, where ``U^(1/c)`` underflows nothing."""
    u = torch.rand_like(c).clamp_min(torch.finfo(c.dtype).tiny)
    return torch.distributions.Gamma(c + 1.0, torch.ones_like(c)).sample().log() + u.log() / c


@torch.no_grad()
def sample_mask_cells(log_alpha: Tensor, log_beta: Tensor) -> Tensor:
    """Draw cells ``m ~ Beta(e^{log α}, e^{log β})`` (no gradient; global RNG), in the
    concentrations' dtype. Pass the (1, G²) base to get one mask for a whole batch (the authors'
    evaluation).

    ``m = sigmoid(log G_a - log G_b)`` with the two Gamma draws taken in log space: for small
    concentrations ``torch.distributions.Beta`` underflows both draws and returns exactly 0.5
    (94% of draws at log α = log β = -10, where nearly all mass lies near 0 and 1)."""
    _check_log_concentrations(log_alpha, log_beta)
    dtype = compute_dtype(log_alpha, log_beta)
    sample_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    a, b = _concentrations(log_alpha, log_beta, sample_dtype)
    return torch.sigmoid(_log_gamma_sample(a) - _log_gamma_sample(b)).to(log_alpha.dtype)


def noise_mask_from_cells(
    cells: Tensor, size: int, blur_kernel: int = 13, blur_sigma: float = 6.0
) -> Tensor:
    r"""Turn (B, G²) cells into a (B, 1, size, size) image mask: nearest upsampling, Gaussian blur.

    .. math::

        M = g_\sigma * \operatorname{up}_{\text{nearest}}(m_{[B,1,G,G]}), \qquad
        g_\sigma(t) \propto e^{-t^2/(2\sigma^2)},\ t \in \{-\tfrac{k-1}2, \dots, \tfrac{k-1}2\},

    a separable, normalised k-tap kernel with reflect padding — torchvision's ``gaussian_blur``,
    which the authors use (defaults: kernel 13, σ 6 for 224-pixel crops). ``blur_kernel=1`` skips
    the blur.

    Args:
        cells: (B, G²) mask values; G² must be a perfect square.
        size: output side length (the image size).
        blur_kernel: odd kernel size k with ``k // 2 < size`` (reflect padding).
        blur_sigma: Gaussian σ > 0.

    Example:
        >>> noise_mask_from_cells(torch.tensor([[0.0, 1.0, 1.0, 0.0]]), 4, blur_kernel=1)
        tensor([[[[0., 0., 1., 1.],
                  [0., 0., 1., 1.],
                  [1., 1., 0., 0.],
                  [1., 1., 0., 0.]]]])
    """
    check_tensor(cells, "cells", ndim=2, floating=True)
    grid = math.isqrt(cells.shape[1])
    if grid * grid != cells.shape[1]:
        raise ValueError(f"cells: expected G*G columns for a G x G grid, got {cells.shape[1]}")
    check_int(size, "size", low=1)
    check_int(blur_kernel, "blur_kernel", low=1)
    if blur_kernel % 2 == 0:
        raise ValueError(f"blur_kernel: expected an odd kernel size, got {blur_kernel}")
    if blur_kernel // 2 >= size:
        raise ValueError(
            f"blur_kernel: expected blur_kernel // 2 < size = {size} (reflect padding), "
            f"got {blur_kernel}"
        )
    sigma = check_positive(blur_sigma, "blur_sigma")
    dtype = compute_dtype(cells)
    img = cells.to(dtype).reshape(-1, 1, grid, grid)
    img = F.interpolate(img, size=(size, size), mode="nearest")
    if blur_kernel > 1:
        half = blur_kernel // 2
        t = torch.arange(blur_kernel, dtype=dtype, device=cells.device) - (blur_kernel - 1) / 2
        w = torch.exp(-0.5 * (t / sigma) ** 2)
        w = w / w.sum()
        img = F.pad(img, (half, half, half, half), mode="reflect")
        img = F.conv2d(img, w.view(1, 1, 1, -1))
        img = F.conv2d(img, w.view(1, 1, -1, 1))
    return img.to(cells.dtype)


def reinforce_mask_loss(
    log_prob_cells: Tensor,
    ce: Tensor,
    mode: Literal["reinforce", "code"] = "reinforce",
    baseline: Literal["mean"] | float | None = "mean",
    reduction: Reduction = "mean",
) -> Tensor:
    r"""The policy's loss from per-cell log-densities and the classifier's per-sample CE.

    .. math::

        \text{reinforce: } \ell_b = \big(\mathrm{sg}(\mathrm{CE}_b) - c\big)\sum_j \log\pi(m_{bj}),
        \qquad
        \text{code: } \ell_b = \Big(\operatorname{LSE}_j \log\pi(m_{bj})\Big)\cdot
        \tfrac1B\textstyle\sum_{b'} \mathrm{CE}_{b'},

    with baseline :math:`c` = the batch mean of CE (``"mean"``), a given float, or 0 (``None``).
    ``"reinforce"`` (default, the paper's estimator): CE receives no gradient — add
    ``ce.mean()`` for the classifier yourself; minimising ℓ lowers the probability of masks that
    gave above-baseline CE. ``"code"`` (the authors' released objective; ``baseline`` unused):
    one scalar for both networks, CE not detached (see the module docstring for why it is not the
    default). ``reduction="mean"`` gives the code's value ``mean(LSE)·mean(CE)``.

    Args:
        log_prob_cells: (B, G²) per-cell log-densities, e.g.
            ``beta_mask_log_prob(cells, log_alpha, log_beta, per_cell=True)``.
        ce: (B,) per-sample cross-entropy of the classifier on the masked input.
        mode: ``"reinforce"`` or ``"code"``.
        baseline: ``"mean"``, a float, or None (no baseline); reinforce only.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape (B,)).

    Example:
        >>> lp = torch.tensor([[-1.0, 0.0], [1.0, 2.0]])
        >>> ce = torch.tensor([1.0, 3.0])
        >>> reinforce_mask_loss(lp, ce)  # ((1-2)(-1) + (3-2)(3)) / 2
        tensor(2.)
    """
    check_tensor(log_prob_cells, "log_prob_cells", ndim=2, floating=True)
    check_tensor(ce, "ce", ndim=1, floating=True)
    check_same_length(log_prob_cells, ce, "log_prob_cells", "ce")
    check_choice(mode, "mode", ("reinforce", "code"))
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    if not (baseline is None or baseline == "mean"):
        check_number(baseline, "baseline")
    dtype = compute_dtype(log_prob_cells, ce)
    lp = log_prob_cells.to(dtype)
    cost = ce.to(dtype)
    if mode == "code":
        per_sample = torch.logsumexp(lp, dim=1) * cost.mean()
    else:
        reward = cost.detach()
        if baseline == "mean":
            reward = reward - reward.mean()
        elif baseline is not None:
            reward = reward - float(baseline)
        per_sample = reward * lp.sum(1)
    return reduce(per_sample, reduction).to(log_prob_cells.dtype)


def _head(feature_dim: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(feature_dim, feature_dim),
        nn.BatchNorm1d(feature_dim),
        nn.ReLU(),
        nn.Linear(feature_dim, feature_dim),
        nn.BatchNorm1d(feature_dim),
        nn.ReLU(),
        nn.Linear(feature_dim, out),
    )


class BetaNoiseMaskPolicy(nn.Module):
    r"""PGNM's mask policy: per-cell Beta log-concentrations from image features, mixed with a base.

    .. math::

        a' = d\, b_\alpha + (1-d)\, h_\alpha(\phi(x)), \qquad
        b' = d\, b_\beta + (1-d)\, h_\beta(\phi(x)),

    and, in ``train()`` mode only, after computing them,
    :math:`b_\alpha \leftarrow \mu b_\alpha + (1-\mu)\,\overline{\mathrm{sg}(h_\alpha(\phi(x)))}`
    (batch mean; same for β). Cells are :math:`m_j \sim \mathrm{Beta}(e^{a'_j}, e^{b'_j})`
    (:func:`sample_mask_cells`), whose mean is :math:`e^{a'}/(e^{a'} + e^{b'}) = \sigma(a' - b')`.
    ``φ`` is ``features``; each head is Linear-BN-ReLU, Linear-BN-ReLU, Linear(→G²), as in the
    code. The bases ``base_alpha``, ``base_beta`` (1, G²) are buffers initialised U(0, 1) (they
    follow ``.to()`` and ``state_dict()``); :meth:`unconditional` returns them for evaluation
    (one mask per batch, as the authors evaluate). Gradients reach the heads (and ``features``)
    through a', b'. Paper: Yavuz & Yang, "Policy Gradient-Driven Noise Mask", 2024, arXiv
    2406.14568; code ``ogrenenmakine/Policy-Gradient-Driven-Noise-Mask`` (``MaskGenerator``;
    differences listed in the module docstring).

    Args:
        features: module mapping the input to (B, feature_dim) (the paper: a resnet10t, 512-d);
            ``None`` means the input already is the feature vector.
        feature_dim: width of the features and of the heads.
        grid: G (the paper: 64 for 224-pixel images).
        decay: d, weight of the base in a', b' (code: 0.9).
        base_momentum: μ of the base EMA (code: 0.99).
        generator: optional generator for the U(0, 1) initial bases.

    ``forward(x)`` raises ``TypeError`` when the features of ``x`` are not floating or not in
    the heads' dtype (convert the module with ``.to(dtype)``; autocast is fine), and
    ``ValueError`` for a one-sample batch in ``train()`` mode (BatchNorm needs two samples).

    Example:
        >>> policy = BetaNoiseMaskPolicy(None, feature_dim=3, grid=2)
        >>> log_alpha, log_beta = policy(torch.randn(5, 3))
        >>> log_alpha.shape, policy.unconditional()[0].shape
        (torch.Size([5, 4]), torch.Size([1, 4]))
    """

    base_alpha: Tensor
    base_beta: Tensor

    def __init__(
        self,
        features: nn.Module | None,
        feature_dim: int,
        grid: int,
        decay: float = 0.9,
        base_momentum: float = 0.99,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if features is not None and not isinstance(features, nn.Module):
            raise TypeError(
                f"features: expected an nn.Module or None, got {type(features).__name__}"
            )
        self.feature_dim = check_int(feature_dim, "feature_dim", low=1)
        self.grid = check_int(grid, "grid", low=1)
        self.decay = check_probability(decay, "decay")
        self.base_momentum = check_probability(base_momentum, "base_momentum")
        self.features = features if features is not None else nn.Identity()
        cells = grid * grid
        self.alpha_head = _head(feature_dim, cells)
        self.beta_head = _head(feature_dim, cells)
        self.register_buffer("base_alpha", torch.rand(1, cells, generator=generator))
        self.register_buffer("base_beta", torch.rand(1, cells, generator=generator))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_tensor(x, "x", min_ndim=1)
        feats = self.features(x)
        if feats.dim() != 2 or feats.shape[1] != self.feature_dim:
            raise ValueError(
                f"x: expected features of shape (B, {self.feature_dim}) from `features`, "
                f"got {tuple(feats.shape)}"
            )
        if not feats.is_floating_point():
            raise TypeError(
                f"x: expected floating-point features from `features` (the heads are "
                f"{self.base_alpha.dtype} layers), got dtype {feats.dtype}"
            )
        check_matches_module_dtype(feats, self.alpha_head, "x")
        if self.training and feats.shape[0] == 1:
            raise ValueError(
                "x: a batch of 1 sample in training mode: the heads' BatchNorm needs at least 2 "
                "samples per batch (use .eval() to score single samples)"
            )
        head_a = self.alpha_head(feats)
        head_b = self.beta_head(feats)
        d = self.decay
        log_alpha = d * self.base_alpha + (1.0 - d) * head_a
        log_beta = d * self.base_beta + (1.0 - d) * head_b
        if self.training:
            mu = self.base_momentum
            with torch.no_grad():
                mean_a = head_a.detach().mean(0, keepdim=True).to(self.base_alpha.dtype)
                mean_b = head_b.detach().mean(0, keepdim=True).to(self.base_beta.dtype)
                self.base_alpha.mul_(mu).add_((1.0 - mu) * mean_a)
                self.base_beta.mul_(mu).add_((1.0 - mu) * mean_b)
        return log_alpha, log_beta

    def unconditional(self) -> tuple[Tensor, Tensor]:
        """Copies of the base log-concentrations ``(base_alpha, base_beta)``, each (1, G²)."""
        return self.base_alpha.clone(), self.base_beta.clone()
