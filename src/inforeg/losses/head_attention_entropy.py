"""Entropy-guided attention: head-wise attention-entropy regulariser with learnable thresholds.

Jha, Reagen, "Entropy-Guided Attention for Private LLMs", AAAI-25 PPAI workshop,
arXiv:2501.03489. Authors' code: ``Nandan91/entropy-guided-attention-llm``
(``entropy_regularization.py: EntropyRegularization.compute_loss``; ``usage_example.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_choice, check_int, check_number, check_positive, check_tensor
from inforeg.core.dtypes import compute_dtype
from inforeg.losses._common import entropy_from_probs

EntropyReduction = Literal["paper_mean", "code_sum"]
_REDUCTIONS: tuple[str, ...] = ("paper_mean", "code_sum")


def attention_row_entropy(attn_probs: Tensor) -> Tensor:
    r"""Entropy :math:`-\sum_j A_{ij}\log A_{ij}` of each attention row (last axis), 0 log 0 = 0.

    Zero probabilities (causal or padding masks) contribute exactly 0, in value and gradient.
    The code adds 1e-9 inside the log instead; the difference is at most about
    :math:`T_k \cdot 10^{-9}` per row (2e-6 at 2048 keys).
    """
    check_tensor(attn_probs, "attn_probs", min_ndim=1, floating=True)
    return entropy_from_probs(attn_probs.to(compute_dtype(attn_probs)), dim=-1)


def head_attention_entropy_penalty(
    attn_probs: Tensor,
    threshold: Tensor | float = 0.5,
    tolerance: float = 0.2,
    reduction: EntropyReduction = "paper_mean",
    max_entropy: float | Literal["causal"] | None = None,
) -> Tensor:
    r"""Head-wise squared deviation of attention entropy from :math:`\theta_h E_{max}`, with a dead zone.

    .. math::

        e = -\sum_j A_{ij} \log A_{ij}, \qquad
        \delta = e - \theta_h E_{max}, \qquad
        \mathrm{pen}(\delta) = \delta^2\,[\,|\delta| > \gamma E_{max}\,],

        \mathcal L_{layer} = \frac1H \sum_h \mathrm{pen}_h, \qquad E_{max} = \log T.

    ``reduction="paper_mean"`` (default, the paper): the entropy is first averaged over batch and
    queries, giving one :math:`\delta` per head. ``"code_sum"`` (the authors' code): the penalty is
    applied to every (batch, query) entropy and **summed** over batch and queries, so its scale
    grows with B·T (their :math:`\lambda = 10^{-5}` is tuned for that). The dead zone is hard: no
    gradient inside the band; :math:`\theta` gets :math:`-2E_{max}\delta` outside it.

    Under a causal mask query :math:`i` (0-based) sees :math:`i + 1` keys, so its entropy is at
    most :math:`\log(i+1)`, not :math:`\log T`: uniform causal attention has mean entropy of about
    :math:`\log T - 1`, which at T = 128 is :math:`0.80 \log T`, above the default band
    :math:`[0.3, 0.7] \log T`, so the default penalises it.
    ``max_entropy="causal"`` uses the per-query maximum :math:`E_i = \log(i + 1 + T_k - T_q)` (not
    in the paper or the code, which use :math:`\log T`): ``"code_sum"`` compares each query's
    entropy with :math:`\theta_h E_i` and band :math:`\gamma E_i`; ``"paper_mean"`` compares the
    mean entropy with :math:`\theta_h \bar E` and band :math:`\gamma \bar E`,
    :math:`\bar E = \frac1{T_q}\sum_i E_i` (the mean of the per-query deviations, as the mean is
    linear). A query with one key has :math:`E_i = 0` and entropy 0, and adds nothing.

    Args:
        attn_probs: (B, H, T_q, T_k) attention probabilities of one layer (rows sum to 1; masked
            entries 0).
        threshold: :math:`\theta`, a float or an (H,) tensor (learnable in the paper).
        tolerance: :math:`\gamma \ge 0` (default 0.2, the paper's choice).
        reduction: ``"paper_mean"`` or ``"code_sum"``.
        max_entropy: :math:`E_{max}`: a positive float, ``"causal"`` (per query, see above) or
            None for ``log T_k``.

    Returns:
        A scalar in the dtype of ``attn_probs``.

    Example:
        >>> a = torch.full((1, 1, 1, 4), 0.25)
        >>> round(float(head_attention_entropy_penalty(a, 0.5, 0.2)), 4)
        0.4805

        Uniform causal attention over 3 queries: entropies (0, log 2, log 3) are each at
        their query's maximum, so with "causal" and theta = 1 nothing is penalised, while
        E_max = log 3 sees a mean entropy far below theta log 3:

        >>> c = torch.tensor([[1.0, 0, 0], [0.5, 0.5, 0], [1 / 3, 1 / 3, 1 / 3]]).view(1, 1, 3, 3)
        >>> float(head_attention_entropy_penalty(c, 1.0, 0.2, max_entropy="causal"))
        0.0
        >>> round(float(head_attention_entropy_penalty(c, 1.0, 0.2)), 4)
        0.2514
    """
    return _layer_penalty(attn_probs, "attn_probs", threshold, tolerance, reduction, max_entropy)


def _layer_penalty(
    attn_probs: Tensor,
    name: str,
    threshold: Tensor | float,
    tolerance: float,
    reduction: EntropyReduction,
    max_entropy: float | Literal["causal"] | None,
) -> Tensor:
    """:func:`head_attention_entropy_penalty` with ``attn_probs`` named ``name`` in errors."""
    check_tensor(attn_probs, name, ndim=4, floating=True)
    check_choice(reduction, "reduction", _REDUCTIONS)
    gamma = check_number(tolerance, "tolerance", low=0.0)
    heads, t_q, t_k = attn_probs.shape[1], attn_probs.shape[2], attn_probs.shape[3]
    e = entropy_from_probs(attn_probs.to(compute_dtype(attn_probs)), dim=-1)  # (B, H, Tq)
    e_max: Tensor | float  # a scalar, or (Tq,) per query for "causal"
    if max_entropy is None:
        if t_k < 2:
            raise ValueError(f"{name}: expected at least 2 keys for E_max = log T, got {t_k}")
        e_max = math.log(t_k)
    elif isinstance(max_entropy, str):
        check_choice(max_entropy, "max_entropy", ("causal",))
        if t_k < max(t_q, 2):
            raise ValueError(
                f"{name}: max_entropy='causal' needs at least as many keys as queries and "
                f"at least 2, got {t_q} queries and {t_k} keys"
            )
        keys = torch.arange(t_k - t_q + 1, t_k + 1, dtype=e.dtype, device=e.device)
        e_max = keys.log()
    else:
        e_max = check_positive(max_entropy, "max_entropy")
    if isinstance(threshold, Tensor):
        check_tensor(threshold, "threshold", ndim=(0, 1), floating=True)
        if threshold.dim() == 1 and threshold.shape[0] != heads:
            raise ValueError(
                f"threshold: expected {heads} values (one per head), got {threshold.shape[0]}"
            )
        theta = threshold.to(e.dtype).reshape(-1)
        theta = theta.expand(heads) if theta.numel() == 1 else theta
    else:
        theta = torch.full(
            (heads,), check_number(threshold, "threshold"), dtype=e.dtype, device=e.device
        )
    if reduction == "paper_mean":
        mean_max = e_max.mean() if isinstance(e_max, Tensor) else e_max
        delta = e.mean(dim=(0, 2)) - theta * mean_max  # (H,)
        per_head = torch.where(delta.abs() > gamma * mean_max, delta * delta, 0.0)
    else:
        per_query = e_max.view(1, 1, -1) if isinstance(e_max, Tensor) else e_max
        delta = e - theta.view(1, heads, 1) * per_query
        pen = torch.where(delta.abs() > gamma * per_query, delta * delta, 0.0)
        per_head = pen.sum(dim=(0, 2))
    return (per_head.sum() / heads).to(attn_probs.dtype)


class HeadwiseAttentionEntropyRegularizer(nn.Module):
    r"""Entropy-guided attention regulariser over L layers with learnable thresholds Θ ∈ R^{L×H}.

    ``forward(attentions)`` takes the L per-layer (B, H, T_q, T_k) attention probabilities and
    returns :math:`\frac1L\sum_l \mathcal L_{layer}(A_l; \Theta_l)`; the training loss is
    ``ce + lam * reg(attentions)`` (paper: :math:`\lambda = 10^{-5}` with the code's summed
    reduction at T = 128). Θ is a parameter, so pass the module's parameters to the optimiser.
    The authors' HF example uses the first layer's thresholds for every layer; here each layer
    has its own row, as the paper describes. The initial value is not given in the release
    (learned values in the paper are mostly 0.2-0.5); default 0.5.

    Args:
        num_layers: L.
        num_heads: H.
        init_threshold: initial Θ.
        tolerance: γ (0.2).
        reduction: ``"paper_mean"`` (default) or ``"code_sum"``.
        max_entropy: E_max; default log T_k of each layer's input; ``"causal"`` for the per-query
            maximum log(i + 1) of causal attention (see :func:`head_attention_entropy_penalty`).
    """

    def __init__(
        self,
        num_layers: int,
        num_heads: int,
        init_threshold: float = 0.5,
        tolerance: float = 0.2,
        reduction: EntropyReduction = "paper_mean",
        max_entropy: float | Literal["causal"] | None = None,
    ) -> None:
        super().__init__()
        check_int(num_layers, "num_layers", low=1)
        check_int(num_heads, "num_heads", low=1)
        check_choice(reduction, "reduction", _REDUCTIONS)
        self.threshold = nn.Parameter(
            torch.full((num_layers, num_heads), check_number(init_threshold, "init_threshold"))
        )
        self.tolerance = check_number(tolerance, "tolerance", low=0.0)
        self.reduction: EntropyReduction = reduction
        if isinstance(max_entropy, str):
            check_choice(max_entropy, "max_entropy", ("causal",))
        elif max_entropy is not None:
            check_positive(max_entropy, "max_entropy")
        self.max_entropy = max_entropy

    def forward(self, attentions: Sequence[Tensor]) -> Tensor:
        layers, heads = self.threshold.shape
        if len(attentions) != layers:
            raise ValueError(f"attentions: expected {layers} layers, got {len(attentions)}")
        for i, a in enumerate(attentions):  # rank and dtype: checked in _layer_penalty
            if isinstance(a, Tensor) and a.dim() == 4 and a.shape[1] != heads:
                raise ValueError(
                    f"attentions[{i}]: expected {heads} heads (dim 1), got shape {tuple(a.shape)}"
                )
        total = sum(
            _layer_penalty(
                a,
                f"attentions[{i}]",
                self.threshold[i],
                self.tolerance,
                self.reduction,
                self.max_entropy,
            )
            for i, a in enumerate(attentions)
        )
        return total / len(attentions)  # type: ignore[return-value]
