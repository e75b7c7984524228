r"""Entropy proxies of quantised activations and the entropy-driven block partition of Q-VLM.

Wang et al., "Q-VLM: Post-Training Quantization for Large Vision-Language Models", NeurIPS 2024,
arXiv 2410.08119; authors' code ``ChangyuanWang17/QVLM``,
``custom_bitsandbytes/bitsandbytes/quantization_utils/quant_modules.py`` (class ``QuantAct``).

The released code changed on 2024-12-17. The first release decided whether a layer searches its
quantisation range by comparing the previous layer's entropy proxy with a constant, 37; the
current code compares it with the running mean of the proxies recorded so far and adds a
dependency-entropy proxy between consecutive layers. :func:`entropy_block_partition` offers both
thresholds (``threshold=37.0`` reproduces the first release's rule, ``"running_mean"`` the current
one, the default) and a third, the mean over all layers. The code also forces a fresh search in
every third transformer block (``block index % 3 == 1``); that LLaMA-specific rule is not part of
this core. Reading the per-layer search decision as a partition into blocks (a layer whose
predecessor's proxy is high joins its predecessor's block) is inforeg's reading of the code. The
paper's rule (Eq. 7, read in a full-text copy of the camera-ready) is stated differently: layers
:math:`k_r..k_s` form one block when their summed conditional entropy (Eq. 4 and 6, with the
soft assignment of Eq. 5) exceeds :math:`(k_s - k_r) h_0`, blocks hold at most 3 layers, and
:math:`h_0` is not given; inforeg follows the released code.

>>> import torch
>>> entropy_block_partition(torch.tensor([2.0, 5.0, 1.0, 4.0, 0.5, 3.0]))
[0, 0, 0, 1, 1, 2]
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from inforeg.core.checks import check_dim, check_number, check_same_shape, check_tensor
from inforeg.core.dtypes import compute_dtype

__all__ = ["dependency_entropy", "entropy_block_partition", "quantized_activation_entropy"]

# ``torch.nn.functional.normalize``'s floor on the norm: an all-zero slice stays zero, not NaN
_NORM_FLOOR = 1e-12


def _normalize(x: Tensor, dim: int, ord: float) -> Tensor:
    return x / torch.linalg.vector_norm(x, ord=ord, dim=dim, keepdim=True).clamp_min(_NORM_FLOOR)


def _renormalize(x: Tensor, dim: int) -> Tensor:
    """``x / sum(x)`` along ``dim`` for ``x >= 0``; an all-zero slice stays zero (value and
    gradient: the division is masked, not clamped, so no 1/tiny enters the backward pass)."""
    total = x.sum(dim=dim, keepdim=True)
    positive = total > 0
    return torch.where(positive, x / torch.where(positive, total, torch.ones_like(total)), 0.0)


def quantized_activation_entropy(a: Tensor, dim: int = 1, eps: float = 1e-7) -> Tensor:
    r"""Q-VLM's entropy proxy of a (quantised) layer input.

    .. math::

        \hat a = \frac{|a|}{\max(\|a\|_2, 10^{-12})} \ \text{along } T, \qquad
        H = \operatorname*{mean}_{\text{other axes}}\Big[-\sum_T \hat a \log(\hat a + \epsilon)\Big]

    The authors apply it to :math:`Q(a)`, the fake-quantised input of shape
    (batch, tokens T, channels), normalised along the tokens (``dim=1``). :math:`\hat a` is
    L2-normalised, not a probability vector, so :math:`H` is a proxy, not an entropy (it is not
    bounded by :math:`\log T`). Differentiable wherever :math:`a \ne 0`.

    Args:
        a: the quantised activation, at least 1-D.
        dim: the axis normalised over (default 1, the tokens).
        eps: inside the logarithm (default 1e-7, the authors' value).

    Returns:
        A scalar in the dtype of ``a``.

    >>> import torch
    >>> round(float(quantized_activation_entropy(torch.tensor([[3.0, 4.0]]))), 4)  # 0.6, 0.8
    0.485
    """
    check_tensor(a, "a", floating=True)
    d = check_dim(dim, a)
    check_number(eps, "eps", low=0.0, low_inclusive=False)
    ac = a.to(compute_dtype(a))
    p = _normalize(ac.abs(), d, 2.0)
    return (-(p * torch.log(p + eps)).sum(dim=d)).mean().to(a.dtype)


def dependency_entropy(prev: Tensor, cur: Tensor, dim: int = 1, eps: float = 1e-5) -> Tensor:
    r"""Q-VLM's dependency-entropy proxy between consecutive (quantised) layer inputs.

    .. math::

        p = \frac{|a_k|}{\|a_k\|_1},\quad p' = \frac{|a_{k+1}|}{\|a_{k+1}\|_1}\ \text{along } T,
        \qquad J = \frac{p\,p'}{\sum_T p\,p'}, \qquad
        C = \frac{p'/(p + \epsilon)}{\sum_T p'/(p + \epsilon)},\\
        D = \operatorname*{mean}_{\text{other axes}}\Big[-\sum_T J \log(C + \epsilon)\Big]

    — a joint-times-log-conditional cross-entropy of the current layer's activation given the
    previous one's, as in ``QuantAct.compute_DED`` of the current release. Where a sum along
    :math:`T` is zero (an all-zero slice), the normalised vector is taken as zero instead of the
    authors' NaN (which their code then discards).

    Args:
        prev: :math:`Q(a_k)`, the previous layer's quantised input.
        cur: :math:`Q(a_{k+1})`, same shape.
        dim: the axis normalised over (default 1, the tokens).
        eps: in the conditional and the logarithm (default 1e-5, the authors' value).

    Returns:
        A scalar in the promoted dtype of the inputs.

    >>> import torch
    >>> round(float(dependency_entropy(torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 3.0]]))), 4)
    0.5623
    """
    check_tensor(prev, "prev", floating=True)
    check_tensor(cur, "cur", floating=True)
    check_same_shape(prev, cur, "prev", "cur")
    d = check_dim(dim, prev)
    check_number(eps, "eps", low=0.0, low_inclusive=False)
    out_dtype = torch.promote_types(prev.dtype, cur.dtype)
    dtype = compute_dtype(prev, cur)
    p = _normalize(prev.to(dtype).abs(), d, 1.0)
    p_next = _normalize(cur.to(dtype).abs(), d, 1.0)
    joint = _renormalize(p * p_next, d)
    conditional = _renormalize(p_next / (p + eps), d)
    return (-(joint * torch.log(conditional + eps)).sum(dim=d)).mean().to(out_dtype)


def entropy_block_partition(
    entropies: Tensor | Sequence[float], threshold: str | float = "running_mean"
) -> list[int]:
    r"""Group consecutive layers into blocks by their predecessors' entropy proxies.

    Layer 0 starts block 0; layer :math:`i \ge 1` joins the block of layer :math:`i-1` iff

    .. math::

        H_{i-1} \ge t_i, \qquad t_i = \begin{cases}
        \frac1i \sum_{j<i} H_j & \texttt{"running\_mean"} \text{ (current release, default)} \\
        \frac1L \sum_{j<L} H_j & \texttt{"mean"} \\
        t & \text{a number (first release: } t = 37) \end{cases}

    and starts a new block otherwise. A high proxy marks a layer whose output distribution is
    informative for the next one, so the two are calibrated together. The running mean includes
    :math:`H_{i-1}` itself, as in ``search_strategy_judge``.

    Args:
        entropies: (L,) per-layer proxies :math:`H` (from :func:`quantized_activation_entropy` or
            :func:`dependency_entropy`), a tensor or a sequence of numbers, finite, L >= 1. Read
            on the host (a calibration-time function).
        threshold: ``"running_mean"``, ``"mean"`` or a real number.

    Returns:
        The block id of each layer: a list of L non-decreasing ints starting at 0.

    >>> entropy_block_partition([2.0, 5.0, 1.0, 4.0, 0.5, 3.0], threshold=3.0)
    [0, 1, 1, 2, 2, 3]
    """
    if isinstance(entropies, Tensor):
        check_tensor(entropies, "entropies", ndim=1, floating=True)
        values = [float(v) for v in entropies.detach().double().cpu()]
    elif isinstance(entropies, Sequence) and not isinstance(entropies, str):
        values = [check_number(v, f"entropies[{i}]") for i, v in enumerate(entropies)]
        if not values:
            raise ValueError("entropies: expected at least one value, got an empty sequence")
    else:
        raise TypeError(
            f"entropies: expected a tensor or a sequence of numbers, got {type(entropies).__name__}"
        )
    if not all(abs(v) < float("inf") for v in values):  # NaN compares False too
        raise ValueError(f"entropies: expected finite values, got {values}")
    if isinstance(threshold, str):
        if threshold not in ("running_mean", "mean"):
            raise ValueError(
                f"threshold: expected 'running_mean', 'mean' or a number, got {threshold!r}"
            )
        fixed = None
    else:
        fixed = check_number(threshold, "threshold")
    overall = sum(values) / len(values)
    blocks = [0]
    running = values[0]
    for i in range(1, len(values)):
        if threshold == "running_mean":
            t = running / i
        else:
            t = overall if fixed is None else fixed
        blocks.append(blocks[-1] if values[i - 1] >= t else blocks[-1] + 1)
        running += values[i]
    return blocks
