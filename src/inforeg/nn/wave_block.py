r"""WaveBlock and Attentive WaveBlock: feature "waving" that keeps mutual networks different.

Wang, Zhao, Liao, Shao, "Attentive WaveBlock: Complementarity-enhanced Mutual Networks for
Unsupervised Domain Adaptation in Person Re-identification and Beyond", IEEE TIP 2022,
arXiv 2006.06525. Authors' code: ``WangWenhao0716/Attentive-WaveBlock`` (``waveblock`` inside
``awb/models_pre_a_s2/resnet.py`` and ``awb/models_post_a_s2/resnet.py``).

Where inforeg differs from the authors' code, and why:

- The strip start is drawn with ``torch.randint`` from a ``torch.Generator`` (the global one by
  default), not Python's ``random.randint``, so ``torch.manual_seed`` (or ``generator=``) fixes
  it. The distribution is the same: uniform on ``{0, ..., H - rh}``.
- ``ratio`` and ``factor`` are arguments (the code hard-codes 0.3 and 1.5, the defaults here).
- The mask is built as one row vector broadcast over batch, channels and width instead of a full
  ``ones_like(x)`` tensor; the product is the same.

In the paper's mutual-mean-teaching training the EMA teachers also run in ``train()`` mode, so
the teachers apply WaveBlock too, each with its own strip; reproduce that by keeping the teacher
modules in training mode (the block has no other train/eval-dependent state).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from inforeg.core.checks import (
    check_choice,
    check_int,
    check_matches_module_dtype,
    check_number,
    check_positive,
    check_tensor,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.nn.feature_attention import CBAM, NonLocalBlock2d

__all__ = ["AttentiveWaveBlock", "WaveBlock", "wave_block"]


def _check_hyper(ratio: float, factor: float) -> tuple[float, float]:
    return check_number(ratio, "ratio", low=0.0, high=1.0), check_positive(factor, "factor")


def _check_generator(generator: object) -> None:
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator: expected a torch.Generator or None, got {type(generator).__name__}"
        )


def wave_block(
    x: Tensor,
    ratio: float = 0.3,
    factor: float = 1.5,
    start: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Multiply every row of the feature map by ``factor`` except one strip of ``rh`` rows.

    .. math::

        r_h = \mathrm{round}(\text{ratio}\cdot H),\qquad s \sim \mathcal U\{0, \dots, H - r_h\},
        \qquad
        y_{b,c,h,w} = x_{b,c,h,w}\, M_h,\quad
        M_h = \begin{cases} 1 & s \le h < s + r_h \\ \text{factor} & \text{otherwise.} \end{cases}

    ``round`` is Python's round-half-to-even (H = 8 gives 2 rows, 10 gives 3, 16 gives 5, 32
    gives 10). One strip serves the whole batch (the same rows for every sample, channel and
    column), drawn afresh at each call. The gradient is the incoming gradient times the same
    mask. This function always applies the mask; :class:`WaveBlock` adds the train/eval switch.

    Args:
        x: feature map, shape (B, C, H, W); the strip runs along H.
        ratio: fraction of rows kept at 1, in [0, 1] (paper 0.3).
        factor: multiplier of the other rows, > 0 (paper 1.5; 1 gives the identity).
        start: first row of the strip, an int in [0, H - rh]; ``None`` draws it uniformly.
        generator: the ``torch.Generator`` to draw ``start`` from (default: the global one).
            A CPU generator never synchronises with an accelerator; a CUDA generator draws on
            the device and keeps the draw there.

    Returns:
        ``x * M`` in ``x``'s dtype (computed in float32 for half-precision input).

    Example:
        >>> x = torch.ones(1, 1, 4, 1)
        >>> wave_block(x, ratio=0.5, factor=2.0, start=1).flatten()
        tensor([2., 1., 1., 2.])
    """
    check_tensor(x, "x", ndim=4, floating=True, nonempty=False)
    ratio, factor = _check_hyper(ratio, factor)
    _check_generator(generator)
    height = x.shape[2]
    rh = round(ratio * height)
    first: int | Tensor
    if start is None:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        first = torch.randint(0, height - rh + 1, (), generator=generator, device=gen_device)
        if first.device != x.device:
            first = int(first)  # a CPU draw for a device input: no device synchronisation
    else:
        first = check_int(start, "start", low=0, high=height - rh)
    dtype = compute_dtype(x)
    rows = torch.arange(height, device=x.device)
    in_strip = (rows >= first) & (rows < first + rh)
    mask = torch.full((height, 1), factor, dtype=dtype, device=x.device)
    mask = mask.masked_fill(in_strip[:, None], 1.0)
    return (x.to(dtype) * mask).to(x.dtype)


class WaveBlock(nn.Module):
    r"""WaveBlock layer: :func:`wave_block` with a fresh strip per call in ``train()`` mode and
    exactly the identity (the input object itself) in ``eval()`` mode.

    Args:
        ratio: fraction of rows kept at 1, in [0, 1] (paper 0.3).
        factor: multiplier of the other rows, > 0 (paper 1.5).
        generator: optional ``torch.Generator`` for the strip (not saved in ``state_dict()``);
            default the global generator, so ``torch.manual_seed`` fixes the strips.

    Example:
        >>> block = WaveBlock().eval()
        >>> x = torch.randn(2, 3, 8, 4)
        >>> block(x) is x
        True
    """

    def __init__(
        self, ratio: float = 0.3, factor: float = 1.5, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        self.ratio, self.factor = _check_hyper(ratio, factor)
        _check_generator(generator)
        self.generator = generator

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            check_tensor(x, "x", ndim=4, floating=True, nonempty=False)
            return x
        return wave_block(x, self.ratio, self.factor, generator=self.generator)

    def extra_repr(self) -> str:
        return f"ratio={self.ratio}, factor={self.factor}"


class AttentiveWaveBlock(nn.Module):
    r"""WaveBlock combined with an attention module, in the authors' two orders.

    .. math::

        \text{pre-A (cbam)}:\quad x \leftarrow \mathrm{WaveBlock}(\mathrm{CBAM}(x) + x),
        \qquad
        \text{post-A (nonlocal)}:\quad x \leftarrow \mathrm{NonLocal}(\mathrm{WaveBlock}(x)).

    ``attention="cbam"`` follows ``awb/models_pre_a_s2/resnet.py`` (CBAM with a residual, then
    waving); ``attention="nonlocal"`` follows ``awb/models_post_a_s2/resnet.py`` (waving, then a
    non-local block, which carries its own residual). The paper places one block after ResNet-50's
    layer2 (512 channels) and one after layer3 (1024 channels). In ``eval()`` the WaveBlock is the
    identity, so the block reduces to its attention part. ``x`` must have the dtype of the
    block's parameters (``TypeError`` naming ``x`` otherwise: convert with ``.to(dtype)``).

    Args:
        channels: number of input channels C of the (B, C, H, W) feature map.
        attention: ``"cbam"`` (pre-A, default) or ``"nonlocal"`` (post-A).
        ratio: WaveBlock strip fraction (paper 0.3).
        factor: WaveBlock multiplier (paper 1.5).
        generator: optional ``torch.Generator`` for the strips.

    Example:
        >>> block = AttentiveWaveBlock(32, attention="cbam")
        >>> block(torch.randn(2, 32, 8, 8)).shape
        torch.Size([2, 32, 8, 8])
    """

    def __init__(
        self,
        channels: int,
        attention: Literal["cbam", "nonlocal"] = "cbam",
        ratio: float = 0.3,
        factor: float = 1.5,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_int(channels, "channels", low=1)
        check_choice(attention, "attention", ("cbam", "nonlocal"))
        self.attention_kind = attention
        self.attention: nn.Module = (
            CBAM(channels) if attention == "cbam" else NonLocalBlock2d(channels)
        )
        self.wave = WaveBlock(ratio, factor, generator)

    def forward(self, x: Tensor) -> Tensor:
        check_tensor(x, "x", ndim=4, floating=True)
        check_matches_module_dtype(x, self, "x")
        if self.attention_kind == "cbam":
            return self.wave(self.attention(x) + x)
        return self.attention(self.wave(x))
