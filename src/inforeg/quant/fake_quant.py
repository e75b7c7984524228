r"""Asymmetric uniform fake quantisation with per-channel ranges (the quantiser of Q-VLM).

Wang et al., "Q-VLM: Post-Training Quantization for Large Vision-Language Models", NeurIPS 2024,
arXiv 2410.08119; authors' code ``ChangyuanWang17/QVLM``
(``custom_bitsandbytes/bitsandbytes/quantization_utils/quant_modules.py``, ``quant_utils.py``),
itself derived from ZeroQ's quantisation utilities.

>>> import torch
>>> fake_quantize_asymmetric(torch.tensor([-0.4, 1.4, 3.7]), 0.0, 3.0, bits=2)
tensor([0., 1., 3.])
"""

from __future__ import annotations

import torch
from torch import Tensor

from inforeg.core.checks import check_int, check_tensor
from inforeg.core.dtypes import compute_dtype

__all__ = ["fake_quantize_asymmetric"]

# the authors' commented-out guard: a zero-width range (a constant channel, e.g. a dead ReLU
# unit) would make the scale infinite and the output NaN
_MIN_WIDTH = 1e-8


def _as_range(value: Tensor | float, name: str, x: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        check_tensor(value, name, ndim=(0, 1), floating=True)
        if value.dim() == 1 and value.shape[0] not in (1, x.shape[-1]):
            raise ValueError(
                f"{name}: expected a scalar or {x.shape[-1]} values (one per channel on the last "
                f"axis of x), got {value.shape[0]}"
            )
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a tensor or a real number, got {type(value).__name__}")
    return torch.tensor(float(value), dtype=x.dtype, device=x.device)


def fake_quantize_asymmetric(
    x: Tensor, x_min: Tensor | float, x_max: Tensor | float, bits: int
) -> Tensor:
    r"""Quantise ``x`` to ``bits``-bit integers on :math:`[x_\min, x_\max]` and back.

    .. math::

        s = \frac{2^b - 1}{x_\max - x_\min}, \qquad z = \mathrm{round}(s\,x_\min) + 2^{b-1},
        \qquad q = \mathrm{clamp}\big(\mathrm{round}(s\,x - z), -2^{b-1}, 2^{b-1} - 1\big),
        \qquad \hat x = \frac{q + z}{s}

    (round half to even, as ``torch.round``). The grid is :math:`\{(k + \mathrm{round}(s\,x_\min))
    / s\}_{k=0}^{2^b-1}`; inside the range the error is at most :math:`1/(2s)`, outside it the value
    is clamped to the end of the grid. The authors' code writes the clamp as
    :math:`\frac12(|-q-n| - |q-(n-1)| - 1)` with :math:`n = 2^{b-1}`, which equals it. A range of
    width below :math:`10^{-8}` is widened to :math:`10^{-8}` (the guard the authors left commented
    out), so constant channels give finite values. Half-precision inputs are computed in float32.

    The result is piecewise constant in ``x`` (zero gradient almost everywhere); for
    quantisation-aware training wrap it in a straight-through estimator,
    ``x + (fake_quantize_asymmetric(x, ...) - x).detach()``.

    Args:
        x: any shape; channels on the last axis.
        x_min, x_max: range ends, Python numbers, scalar tensors, or (C,) tensors for per-channel
            ranges (C = ``x.shape[-1]``).
        bits: integer width b in [1, 16].

    Returns:
        The fake-quantised tensor, shape and dtype of ``x``.

    >>> import torch
    >>> x = torch.tensor([[0.1, -1.0], [0.6, 2.0]])
    >>> # 1 bit per channel: grid {0, 1} on [0, 1]; on [-1, 2] the zero point round(-1/3) = 0
    >>> # shifts the grid {-1, 2} to {0, 3}
    >>> fake_quantize_asymmetric(x, torch.tensor([0.0, -1.0]), torch.tensor([1.0, 2.0]), bits=1)
    tensor([[0., 0.],
            [1., 3.]])
    """
    check_tensor(x, "x", floating=True)
    lo = _as_range(x_min, "x_min", x)
    hi = _as_range(x_max, "x_max", x)
    b = check_int(bits, "bits", low=1, high=16)
    dtype = compute_dtype(x, lo, hi)
    xc, lo, hi = x.to(dtype), lo.to(dtype), hi.to(dtype)
    half = 2 ** (b - 1)
    scale = (2**b - 1) / (hi - lo).clamp_min(_MIN_WIDTH)
    zero_point = torch.round(scale * lo) + half
    q = torch.round(scale * xc - zero_point).clamp(-half, half - 1)
    return ((q + zero_point) / scale).to(x.dtype)
