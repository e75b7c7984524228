"""QuantNAS: scheduled architecture-entropy regulariser, quantisation-noise injection and ADQ.

Shvetsov, Osin, Koryakovskiy, Buchnev, Trofimov, Burnaev, "QuantNAS for super resolution:
searching for efficient quantization-friendly architectures against quantization noise", 2022
(IEEE Access 2024), arXiv:2208.14839. Authors' code: ``diff7/QuanToaster`` (``search_sr.py``:
``SparseCrit`` and the search loop; ``sr_models/quant_conv_lsq.py``: ``quant_noise``,
``QuaNoiseConv2d``; ``sr_models/ADN.py``: ADQ).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_choice, check_int, check_number, check_tensor
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import reduce
from inforeg.core.types import Reduction
from inforeg.losses._common import entropy_from_logits

NoiseDistribution = Literal["normal", "uniform"]


def architecture_entropy(
    alpha_logits: Tensor, dim: int = -1, reduction: Reduction = "sum"
) -> Tensor:
    r"""Entropy of the architecture weights, summed over edges (QuantNAS ``SparseCrit``).

    .. math::

        R(\alpha) = \sum_{e} H(\mathrm{softmax}(\alpha_e)), \qquad
        H(w) = -\sum_i w_i \log w_i,

    with one row :math:`\alpha_e` per edge over the joint (operation, bit-width) choices.
    :math:`R = \sum_e \log n_e` at initialisation (:math:`\alpha = 0`) and tends to 0 as every row
    saturates to one-hot. QuantNAS *adds* it to the loss (entropy minimisation, driving the
    architecture toward discrete choices), scaled by :func:`architecture_entropy_weight`.

    Args:
        alpha_logits: (E, n) architecture logits (any shape with the choice axis at ``dim``).
        dim: the choice axis (default -1).
        reduction: ``"sum"`` over edges (default, as in the code), ``"mean"`` or ``"none"``.

    Example:
        >>> round(float(architecture_entropy(torch.zeros(3, 6))), 4)  # 3 log 6
        5.3753
    """
    check_tensor(alpha_logits, "alpha_logits", min_ndim=1, floating=True)
    h = entropy_from_logits(alpha_logits.to(compute_dtype(alpha_logits)), dim=dim)
    return reduce(h, reduction).to(alpha_logits.dtype)


def architecture_entropy_weight(epoch: int, total_epochs: int) -> float:
    r"""The QuantNAS schedule :math:`w_1(t)\,w_2(t)` of the entropy term (0-based epoch t).

    .. math::

        w_1 = \frac{t}{E - 1}, \qquad
        w_2 = \begin{cases} 0 & t < t_w \\
              \dfrac{\log(t - t_w + 2)}{\log(E - t_w + 1)} & t \ge t_w \end{cases},
        \qquad t_w = \lfloor E/4 \rfloor .

    For E = 20: 0.0658 at t = 5, 0.369 at t = 10, 1 at t = 19.
    """
    e = check_int(total_epochs, "total_epochs", low=2)
    t = check_int(epoch, "epoch", low=0, high=e - 1)
    t_w = e // 4
    w1 = t / (e - 1)
    w2 = 0.0 if t < t_w else math.log(t - t_w + 2) / math.log(e - t_w + 1)
    return w1 * w2


class ArchitectureEntropyRegularizer(nn.Module):
    r"""Scheduled architecture-entropy term :math:`c\,w_1(t)\,w_2(t)\,\sum_e H(\mathrm{softmax}(\alpha_e))`.

    Call :meth:`set_epoch` at the start of each search epoch; ``forward`` takes one (E, n) tensor
    or a sequence of them (e.g. normal and reduction cells). The term only changes the
    architecture parameters (weights get no gradient from it).

    Args:
        coefficient: c (1e-3 in the released config).
        total_epochs: number of search epochs E (20).
    """

    def __init__(self, coefficient: float = 1e-3, total_epochs: int = 20) -> None:
        super().__init__()
        self.coefficient = check_number(coefficient, "coefficient", low=0.0)
        self.total_epochs = check_int(total_epochs, "total_epochs", low=2)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        check_int(epoch, "epoch", low=0, high=self.total_epochs - 1)
        self.epoch = epoch

    @property
    def weight(self) -> float:
        """The current :math:`c\\,w_1 w_2`."""
        return self.coefficient * architecture_entropy_weight(self.epoch, self.total_epochs)

    def forward(self, alphas: Tensor | Sequence[Tensor]) -> Tensor:
        tensors = [alphas] if isinstance(alphas, Tensor) else list(alphas)
        if not tensors:
            raise ValueError("alphas: expected at least one tensor of architecture logits")
        for t in tensors:
            check_tensor(t, "alphas", min_ndim=1, floating=True)
        total = architecture_entropy(tensors[0])
        for a in tensors[1:]:
            total = total + architecture_entropy(a)
        return self.weight * total


def quantization_noise(
    x: Tensor,
    bits: int,
    distribution: NoiseDistribution = "normal",
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Quantisation-noise surrogate :math:`\tilde x = x + \frac{\max x - \min x}{2^b - 1}\,\varepsilon`.

    :math:`\varepsilon \sim N(0, (\tfrac12)^2)` (``"normal"``, default) or :math:`U(-\tfrac12, \tfrac12)`
    (``"uniform"``), elementwise; max and min are over the whole tensor. As in the code the result
    is computed on a clone and **detached**: no gradient flows through it (in a QuantNAS mixture
    the weights learn only through the full-precision share, see :class:`QuantizationNoise`).
    """
    check_tensor(x, "x", floating=True)
    b = check_int(bits, "bits", low=1)
    check_choice(distribution, "distribution", ("normal", "uniform"))
    with torch.no_grad():
        xd = x.detach()
        step = (xd.max() - xd.min()) / (2**b - 1)
        if distribution == "normal":
            eps = 0.5 * torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        else:
            eps = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) - 0.5
        return xd + step * eps


class QuantizationNoise(nn.Module):
    r"""QuantNAS noisy mixture of one tensor over candidate bit-widths.

    .. math::

        y = w_{fp}\,x + \sum_b \hat w_b\,\mathrm{sg}(\tilde x_b), \qquad
        w_{fp} = \frac{1}{n_{bits} + 1}, \quad \hat w_b = \frac{w_b}{\sum_{b'} w_{b'} + w_{fp}},

    with :math:`\tilde x_b` from :func:`quantization_noise` and :math:`w_b` the architecture
    weights of the bit-width candidates (``forward(x, weights)``). The gradient to ``x`` (and so to
    the layer's real weights) flows only through the full-precision share :math:`w_{fp}`; the
    architecture weights get gradient through :math:`\hat w_b`. In training mode the noise is
    injected; in eval mode the input is returned unchanged (the search uses noise only).

    Args:
        bits: candidate bit-widths (default (8, 4), as in the released config).
        distribution: ``"normal"`` (default) or ``"uniform"``.
    """

    def __init__(
        self, bits: Sequence[int] = (8, 4), distribution: NoiseDistribution = "normal"
    ) -> None:
        super().__init__()
        if len(bits) == 0:
            raise ValueError("bits: expected at least one bit-width")
        self.bits = tuple(check_int(b, "bits", low=1) for b in bits)
        check_choice(distribution, "distribution", ("normal", "uniform"))
        self.distribution: NoiseDistribution = distribution

    def forward(self, x: Tensor, weights: Tensor) -> Tensor:
        check_tensor(weights, "weights", ndim=1, floating=True)
        if weights.shape[0] != len(self.bits):
            raise ValueError(
                f"weights: expected {len(self.bits)} entries (one per bit-width), got "
                f"{weights.shape[0]}"
            )
        if not self.training:
            return x
        w_fp = 1.0 / (len(self.bits) + 1)
        norm = weights.sum() + w_fp
        out = w_fp * x
        for i, b in enumerate(self.bits):
            out = out + (weights[i] / norm) * quantization_noise(x, b, self.distribution)
        return out


class AdaptiveDeviationScale(nn.Module):
    r"""ADQ (Adaptive Deviation for Quantization): rescale a residual branch by the skip's spread.

    .. math::

        \mathrm{out} = y \cdot \varphi(\mathrm{std}(\mathrm{skip})) + \mathrm{skip},
        \qquad \varphi(s) = a\,s + b,

    where y = f(BN(x)) is the residual branch output, the standard deviation is taken per sample
    over (C, H, W) (all non-batch axes), and :math:`\varphi` is the code's 1x1 convolution on a
    scalar map, i.e. learnable a (init 1.5) and b (init 0). The output equals ``skip`` when y = 0.
    """

    def __init__(self, init_scale: float = 1.5, init_bias: float = 0.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(check_number(init_scale, "init_scale")))
        self.bias = nn.Parameter(torch.tensor(check_number(init_bias, "init_bias")))

    def forward(self, branch: Tensor, skip: Tensor) -> Tensor:
        check_tensor(branch, "branch", min_ndim=2, floating=True)
        check_tensor(skip, "skip", min_ndim=2, floating=True)
        if branch.shape != skip.shape:
            raise ValueError(
                f"skip: expected the shape of branch {tuple(branch.shape)}, got {tuple(skip.shape)}"
            )
        std = skip.flatten(1).std(dim=1).view(-1, *([1] * (skip.dim() - 1)))
        return branch * (self.scale * std + self.bias) + skip
