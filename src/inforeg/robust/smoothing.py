r"""Randomised smoothing (Cohen et al.) and dual randomised smoothing (DRS) certifiers.

Cohen, Rosenfeld & Kolter, "Certified Adversarial Robustness via Randomized Smoothing", ICML 2019,
arXiv 1902.02918, code ``locuslab/smoothing`` (``code/core.py``). Xia, Yu, Jiang & Ding,
"Mitigating the Curse of Dimensionality for Certified Robustness via Dual Randomized Smoothing",
ICLR 2024, arXiv 2404.09586, code ``xiasong0501/DRS`` (``core1_lowres_2.py``,
``certify_resnet110_lowres_2.py``).

DRS splits an image into two complementary pixel sets (masks), smooths a separate base classifier
on each half-image with Gaussian noise, and certifies the summed vote. Where inforeg follows the
authors' code rather than the paper, it says so: the masks keep the code's flipped first column
pair (``quirk=True``) and the sub-image post-processing is the code's max-pool-and-add. The
default radius is the paper's (its Eq. 11, ``combine="conservative"``), which holds for the
summed vote; the CIFAR code's ``sqrt(R_l^2 + R_r^2)`` (``combine="official"``) over-claims when
the branches' bounds differ and is kept to reproduce the released numbers (see
:func:`dual_certified_radius`).

Reproducibility: every Monte Carlo draw comes from the ``generator`` passed to ``certify`` /
``predict`` (on the input's device), so a seeded generator gives the same certificate.

>>> masks = dual_smoothing_masks(4, 4)
>>> masks[0].int().tolist()
[[1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 0, 1], [0, 1, 1, 0]]
>>> x = torch.arange(16.0).reshape(1, 4, 4)
>>> dual_subimage(x, masks[0], sigma=0.0)[0].tolist()
[[5.0, 0.0, 0.0, 9.0], [0.0, 10.0, 12.0, 0.0], [21.0, 0.0, 0.0, 25.0], [0.0, 26.0, 28.0, 0.0]]
>>> smoothed = RandomizedSmoothing(lambda b: torch.ones(b.shape[0], 3) * torch.tensor([0, 1.0, 0]), 3, 0.25)
>>> cls, radius = smoothed.certify(torch.zeros(1, 4, 4), n0=10, n=100, alpha=1e-3, batch_size=50)
>>> cls, round(radius, 7)
(1, 0.3751188)
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from inforeg.core.checks import (
    check_choice,
    check_int,
    check_number,
    check_positive,
    check_same_shape,
    check_tensor,
)
from inforeg.robust.certification import (
    _check_alpha,
    binomial_test_half,
    certified_radius,
    clopper_pearson_lower,
    dual_certified_radius,
)

__all__ = [
    "DualRandomizedSmoothing",
    "RandomizedSmoothing",
    "dual_smoothing_masks",
    "dual_subimage",
]

ABSTAIN = -1


def dual_smoothing_masks(height: int, width: int, quirk: bool = True) -> tuple[Tensor, Tensor]:
    r"""The two complementary pixel masks of dual randomised smoothing.

    .. math::

        m_l[r, c] = \bigl((r + c) \bmod 2 = 1\bigr) \oplus \bigl(c < 2 \text{ and quirk}\bigr),
        \qquad m_r = \lnot m_l.

    A checkerboard: the paper (revised Sec. 4.2) slides two 2x2 kernels, each keeping one
    diagonal of the block, with stride 2, which is ``quirk=False``. With ``quirk=True`` (default,
    the released code's ``get_res_index``, which produced the published numbers) the first column
    pair is flipped, because the authors' loop over pixel pairs updates its row parity one pair
    late. Either way every row and every 2x2 block has half its pixels in each mask, and the
    same mask applies to all channels.

    Args:
        height, width: even image sizes (the sub-images are max-pooled in 2x2 blocks).
        quirk: reproduce the released code's flipped first column pair.

    Returns:
        ``(mask_l, mask_r)``, bool tensors of shape (height, width) on the CPU.
    """
    for value, name in ((height, "height"), (width, "width")):
        check_int(value, name, low=2)
        if value % 2:
            raise ValueError(f"{name}: expected an even size (2x2 pooling), got {value}")
    r = torch.arange(height)[:, None]
    c = torch.arange(width)[None, :]
    mask_l = (r + c) % 2 == 1
    if quirk:
        mask_l = mask_l ^ (c < 2)
    return mask_l, ~mask_l


def _check_mask(mask: Tensor, name: str, x: Tensor) -> None:
    check_tensor(mask, name, ndim=2)
    if mask.dtype != torch.bool:
        raise TypeError(f"{name}: expected a bool tensor, got dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(x.shape[-2:]):
        raise ValueError(
            f"{name}: expected shape {tuple(x.shape[-2:])} (the image's height, width), "
            f"got {tuple(mask.shape)}"
        )


def _pool_up(v: Tensor) -> Tensor:
    """Nearest-neighbour upsampling of the 2x2 max-pool of ``v`` over its last two axes."""
    *lead, h, w = v.shape
    blocks = v.reshape(*lead, h // 2, 2, w // 2, 2).amax(dim=(-3, -1), keepdim=True)
    return blocks.expand(*lead, h // 2, 2, w // 2, 2).reshape(v.shape)


def dual_subimage(
    x: Tensor,
    mask: Tensor,
    sigma: float,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    pool: bool = True,
) -> Tensor:
    r"""A noisy DRS sub-image: keep one mask's pixels, add noise there, max-pool and add.

    .. math::

        v = m \odot (x + \sigma\varepsilon), \qquad
        \text{out} = v + m \odot \mathrm{up}_2\bigl(\mathrm{maxpool}_2(v)\bigr)

    with :math:`\varepsilon \sim N(0, I)`, noise only on kept pixels, and the max-pool seeing the
    zeros of the other half (released ``get_low_res_data_mn``). The full H x W layout is kept. The
    post-processing is deterministic, so it does not change what is certified.

    Args:
        x: images, shape (..., H, W) (e.g. (B, C, H, W)), H and W even when ``pool``.
        mask: bool (H, W), the pixels kept (one of :func:`dual_smoothing_masks`).
        sigma: noise standard deviation, >= 0.
        noise: optional standard-normal draws of ``x``'s shape (else drawn from ``generator``).
        generator: random generator for the noise (on ``x``'s device).
        pool: apply the max-pool-and-add post-processing (released code: always).

    Returns:
        Tensor of ``x``'s shape and dtype; differentiable in ``x``.
    """
    check_tensor(x, "x", min_ndim=2, floating=True)
    _check_mask(mask, "mask", x)
    sigma = check_number(sigma, "sigma", low=0.0)
    if noise is None:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
    else:
        check_tensor(noise, "noise", floating=True)
        check_same_shape(x, noise, "x", "noise")
    if pool and (x.shape[-1] % 2 or x.shape[-2] % 2):
        raise ValueError(
            f"x: expected an even height and width for pool=True, got {tuple(x.shape)}"
        )
    m = mask.to(device=x.device, dtype=x.dtype)
    v = m * (x + sigma * noise)
    return v + m * _pool_up(v) if pool else v


def _check_generator(generator: torch.Generator | None, x: Tensor) -> None:
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(
            f"generator: expected a generator on {x.device.type} (the input's device), "
            f"got one on {generator.device.type}"
        )


class _Smoothed(nn.Module, abc.ABC):
    """Shared Monte Carlo machinery: branch vote counts, CERTIFY's selection, PREDICT."""

    ABSTAIN = ABSTAIN

    def __init__(self, num_classes: int, sigma: float) -> None:
        super().__init__()
        self.num_classes = check_int(num_classes, "num_classes", low=2)
        self.sigma = check_positive(sigma, "sigma")

    @abc.abstractmethod
    def _branch_logits(self, batch: Tensor, generator: torch.Generator | None) -> list[Tensor]:
        """The base classifiers' logits on noisy copies of ``batch``, one tensor per branch."""

    def _counts(
        self, x: Tensor, num: int, batch_size: int, generator: torch.Generator | None
    ) -> list[list[int]]:
        """Per branch, the vote counts of ``num`` noisy draws (one host read at the end)."""
        counts: Tensor | None = None
        remaining = num
        while remaining > 0:
            this = min(batch_size, remaining)
            remaining -= this
            batch = x.unsqueeze(0).expand(this, *x.shape)
            votes = []
            for logits in self._branch_logits(batch, generator):
                if logits.dim() != 2 or logits.shape != (this, self.num_classes):
                    raise ValueError(
                        f"base: expected logits of shape ({this}, {self.num_classes}), "
                        f"got {tuple(logits.shape)}"
                    )
                votes.append(torch.bincount(logits.argmax(1), minlength=self.num_classes))
            step = torch.stack(votes)
            counts = step if counts is None else counts + step
        assert counts is not None
        return counts.tolist()

    def _check_call(
        self,
        x: Tensor,
        alpha: float,
        batch_size: int,
        generator: torch.Generator | None,
        **nums: int,
    ) -> None:
        check_tensor(x, "x", ndim=3, floating=True)
        for name, value in nums.items():
            check_int(value, name, low=1)
        _check_alpha(alpha)
        check_int(batch_size, "batch_size", low=1)
        _check_generator(generator, x)
        self._check_input(x)

    def _check_input(self, x: Tensor) -> None:
        """Checks of the image ``x`` that a certifier adds to the shared ones (none here)."""

    @abc.abstractmethod
    def _radius(self, n_a: list[int], n: int, alpha: float) -> float:
        """The certified radius from the top class's counts ``n_a`` (one per branch) of ``n``."""

    @torch.no_grad()
    def certify(
        self,
        x: Tensor,
        n0: int = 100,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[int, float]:
        """CERTIFY: guess the top class from ``n0`` draws, bound its probability from ``n`` fresh
        draws, and return ``(class, radius)``, or ``(-1, 0.0)`` when abstaining.

        The base classifiers run in eval mode (their previous mode is restored).

        Args:
            x: one image, shape (C, H, W).
            n0: draws for selecting the class. n: draws for the bound.
            alpha: failure probability in (0, 1). batch_size: draws per base-classifier call.
            generator: random generator on ``x``'s device (reproducible certificates).
        """
        self._check_call(x, alpha, batch_size, generator, n0=n0, n=n)
        with _eval_mode(self):
            selection = self._counts(x, n0, batch_size, generator)
            total = [sum(col) for col in zip(*selection)]
            c_hat = max(range(self.num_classes), key=lambda k: (total[k], -k))
            estimation = self._counts(x, n, batch_size, generator)
        radius = self._radius([row[c_hat] for row in estimation], n, alpha)
        return (c_hat, radius) if radius >= 0.0 else (ABSTAIN, 0.0)

    @torch.no_grad()
    def predict(
        self,
        x: Tensor,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 1000,
        *,
        generator: torch.Generator | None = None,
    ) -> int:
        """PREDICT (Cohen et al.): the top class of ``n`` draws (DRS: both branches' votes summed),
        or -1 when the two-sided binomial test of the top two counts has p-value > alpha."""
        self._check_call(x, alpha, batch_size, generator, n=n)
        with _eval_mode(self):
            counts = self._counts(x, n, batch_size, generator)
        total = [sum(col) for col in zip(*counts)]
        order = sorted(range(self.num_classes), key=lambda k: (-total[k], k))
        n1, n2 = total[order[0]], total[order[1]]
        return ABSTAIN if binomial_test_half(n1, n1 + n2) > alpha else order[0]

    def forward(self, x: Tensor, n: int = 100_000, alpha: float = 0.001) -> int:
        """Alias of :meth:`predict`."""
        return self.predict(x, n, alpha)


class _eval_mode:
    """Put a module's children in eval mode for a block, then restore their modes."""

    def __init__(self, module: nn.Module) -> None:
        self.modes = [(m, m.training) for m in module.modules()]

    def __enter__(self) -> None:
        for m, _ in self.modes:
            m.training = False

    def __exit__(self, *exc: object) -> None:
        for m, mode in self.modes:
            m.training = mode


def _check_callable(base: object, name: str) -> None:
    if not callable(base):
        raise TypeError(f"{name}: expected a callable mapping (B, C, H, W) to logits (B, K)")


class RandomizedSmoothing(_Smoothed):
    r"""Gaussian randomised smoothing of a base classifier (Cohen et al. 2019).

    .. math::

        g(x) = \arg\max_c P_{\varepsilon \sim N(0, \sigma^2 I)}\bigl(f(x + \varepsilon) = c\bigr),
        \qquad R = \sigma\,\Phi^{-1}(\underline{p}_A)

    ``certify`` follows Cohen's CERTIFY: :math:`\hat c` = the top count of ``n0`` draws,
    :math:`\underline p_A` = :func:`clopper_pearson_lower` of its count among ``n`` fresh draws at
    level alpha; abstain if :math:`\underline p_A < 1/2`. Defaults follow Cohen's ``certify.py``:
    n0 = 100, n = 100 000, alpha = 0.001, batch 1000.

    Args:
        base: maps (B, C, H, W) to logits (B, num_classes) (an ``nn.Module`` is registered, so
            ``.to(device)`` moves it).
        num_classes: K >= 2.
        sigma: noise standard deviation, > 0.
    """

    def __init__(self, base: Callable[[Tensor], Tensor], num_classes: int, sigma: float) -> None:
        super().__init__(num_classes, sigma)
        _check_callable(base, "base")
        self.base = base

    def _branch_logits(self, batch: Tensor, generator: torch.Generator | None) -> list[Tensor]:
        noise = torch.randn(
            batch.shape, generator=generator, dtype=batch.dtype, device=batch.device
        )
        return [self.base(batch + self.sigma * noise)]

    def _radius(self, n_a: list[int], n: int, alpha: float) -> float:
        p_lower = clopper_pearson_lower(n_a[0], n, alpha)
        return certified_radius(p_lower, self.sigma) if p_lower >= 0.5 else -1.0


class DualRandomizedSmoothing(_Smoothed):
    r"""Dual randomised smoothing (Xia et al., ICLR 2024): two half-image smoothed classifiers.

    .. math::

        g(x) = \arg\max_c \bigl[P(f_l(s_l(x)) = c) + P(f_r(s_r(x)) = c)\bigr],\qquad
        R = \tfrac{\sigma}{\sqrt2}\bigl(\Phi^{-1}\underline p_l + \Phi^{-1}\underline p_r\bigr)

    with :math:`s_i` = :func:`dual_subimage` on mask :math:`i` at noise :math:`\sigma`. CERTIFY
    (released ``core1_lowres_2.py``): ``n0`` draws per branch, :math:`\hat c` = argmax of the summed
    counts; ``n`` fresh draws per branch give :math:`\underline p_l, \underline p_r` for
    :math:`\hat c` at level alpha each; the radius is :func:`dual_certified_radius` with
    ``combine``; abstain if it is below 1e-5. The two bounds hold jointly with probability
    :math:`1 - 2\alpha`. Defaults follow ``certify_resnet110_lowres_2.py``: n0 = 200,
    n = 100 000, alpha = 0.001, batch 2000; the paper uses :math:`\sigma \in \{0.18, 0.36\}`
    (about :math:`0.25/\sqrt2, 0.5/\sqrt2`, so that :math:`\sigma\sqrt2` matches Cohen's sigma).
    ``predict`` sums the two branches' votes (the released ``predict`` refers to a single base
    classifier that does not exist, so inforeg uses Cohen's PREDICT on the summed counts).

    Args:
        base_l, base_r: base classifiers of the two sub-images, (B, C, H, W) -> (B, K).
        num_classes: K >= 2.
        sigma: per-branch noise standard deviation, > 0.
        masks: ``(mask_l, mask_r)``, disjoint bool (H, W) masks; default
            :func:`dual_smoothing_masks` of the image's size (with the released quirk).
        combine: ``"conservative"`` (default, sound for the summed vote) or ``"official"``
            (the released CIFAR code's radius, larger than what holds when the branches' bounds
            differ; see :func:`dual_certified_radius`).
    """

    def __init__(
        self,
        base_l: Callable[[Tensor], Tensor],
        base_r: Callable[[Tensor], Tensor],
        num_classes: int,
        sigma: float,
        masks: tuple[Tensor, Tensor] | None = None,
        combine: Literal["official", "conservative"] = "conservative",
    ) -> None:
        super().__init__(num_classes, sigma)
        _check_callable(base_l, "base_l")
        _check_callable(base_r, "base_r")
        self.base_l, self.base_r = base_l, base_r
        check_choice(combine, "combine", ("official", "conservative"))
        self.combine = combine
        self.masks: tuple[Tensor, Tensor] | None = None
        if masks is not None:
            if not isinstance(masks, (tuple, list)) or len(masks) != 2:
                raise TypeError("masks: expected a pair (mask_l, mask_r) of bool tensors")
            mask_l, mask_r = masks
            for m, name in ((mask_l, "masks[0]"), (mask_r, "masks[1]")):
                check_tensor(m, name, ndim=2)
                if m.dtype != torch.bool:
                    raise TypeError(f"{name}: expected a bool tensor, got dtype {m.dtype}")
            check_same_shape(mask_l, mask_r, "masks[0]", "masks[1]")
            if bool((mask_l & mask_r).any()):
                raise ValueError("masks: expected disjoint masks (each pixel in at most one half)")
            self.masks = (mask_l, mask_r)

    def certify(
        self,
        x: Tensor,
        n0: int = 200,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 2000,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[int, float]:
        """CERTIFY with the released defaults (n0 = 200, batch 2000); see the class docstring."""
        return super().certify(x, n0, n, alpha, batch_size, generator=generator)

    def predict(
        self,
        x: Tensor,
        n: int = 100_000,
        alpha: float = 0.001,
        batch_size: int = 2000,
        *,
        generator: torch.Generator | None = None,
    ) -> int:
        """PREDICT on the summed votes of the two branches (batch 2000 by default)."""
        return super().predict(x, n, alpha, batch_size, generator=generator)

    def _masks_for(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if self.masks is None:
            return dual_smoothing_masks(x.shape[-2], x.shape[-1])
        return self.masks

    def _check_input(self, x: Tensor) -> None:
        for i, m in enumerate(self._masks_for(x)):
            _check_mask(m, f"masks[{i}]", x)

    def _branch_logits(self, batch: Tensor, generator: torch.Generator | None) -> list[Tensor]:
        mask_l, mask_r = self._masks_for(batch)
        sub_l = dual_subimage(batch, mask_l, self.sigma, generator=generator)
        sub_r = dual_subimage(batch, mask_r, self.sigma, generator=generator)
        return [self.base_l(sub_l), self.base_r(sub_r)]

    def _radius(self, n_a: list[int], n: int, alpha: float) -> float:
        p_l, p_r = (clopper_pearson_lower(k, n, alpha) for k in n_a)
        radius = dual_certified_radius(p_l, p_r, self.sigma, self.combine)
        return radius if radius >= 1e-5 and not math.isnan(radius) else -1.0
