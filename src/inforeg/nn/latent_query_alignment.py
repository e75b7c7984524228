r"""Latent-query alignment: pool two sequences with shared learnable queries and match the pools.

The representation-level regulariser of MDS-S² — Chen, Song, Wei, Nie & Chua, "Dual Semantic
Knowledge Composed Multimodal Dialog Systems", SIGIR 2023, arXiv 2305.09990. The abstract says
that "a set of latent query variables" distils the semantic information of the composed
(predicted-side) response representation and of the ground-truth response representation, and the
two are aligned as a regulariser on the generation loss. No authors' repository was found (the
first author's homepage links a web page, ``dialogdk2r.wixsite.com/anonymous7357``, not reachable
here).

**UNVERIFIED — everything beyond that sentence is inforeg's design**: the attention pooling
(single-layer cross-attention from M learnable queries, no positional terms, no output
projection), the distances, the defaults ``M = 8``, ``distance="mse"``, ``detach_target=True`` and
the suggested weight λ = 0.1 in ``L = NLL + λ·L_align``. Each is an option, so a reading of the
paper that differs can be plugged in.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.core.checks import check_choice, check_int, check_same_shape, check_tensor
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import reduce
from inforeg.core.types import Reduction

__all__ = ["LatentQueryAlignmentLoss", "LatentQueryPooling", "latent_query_alignment"]

Distance = Literal["mse", "cosine", "kl"]
_DISTANCES = ("mse", "cosine", "kl")


class LatentQueryPooling(nn.Module):
    r"""Attention pooling of a variable-length sequence into M vectors by learnable queries.

    .. math::

        K = hW_K + b_K,\quad V = hW_V + b_V,\quad
        A = \operatorname{softmax}_L\!\big(QK^\top/\sqrt{d_h}\big),\quad P = AV \in
        \mathbb R^{M\times d},

    per head (``d`` split into ``num_heads`` slices of ``d_h = d / num_heads``, results
    concatenated; no output projection). Masked positions get weight exactly 0, so padding never
    changes the result; a sample with no valid position pools to zeros. With no positional terms
    P is invariant to the order of the tokens. (inforeg's design, UNVERIFIED: see the module.)

    Args:
        dim: feature size d.
        num_queries: M.
        num_heads: heads (must divide ``dim``).

    Shape:
        ``forward(h, mask=None)``: h (B, L, d), mask (B, L) bool with True = valid →
        (B, M, d) in ``h``'s dtype (float32 compute for half inputs).

    Example:
        >>> pool = LatentQueryPooling(2, num_queries=1)
        >>> with torch.no_grad():
        ...     _ = pool.value.weight.copy_(torch.eye(2))
        ...     _ = pool.value.bias.zero_()
        >>> h = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
        >>> pool(h, torch.tensor([[True, False]])).detach()  # one valid token: its value vector
        tensor([[[1., 2.]]])
    """

    def __init__(self, dim: int, num_queries: int = 8, num_heads: int = 1) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim", low=1)
        self.num_queries = check_int(num_queries, "num_queries", low=1)
        self.num_heads = check_int(num_heads, "num_heads", low=1)
        if dim % num_heads:
            raise ValueError(f"num_heads: expected a divisor of dim = {dim}, got {num_heads}")
        self.queries = nn.Parameter(torch.randn(num_queries, dim) / math.sqrt(dim))
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)

    def forward(self, h: Tensor, mask: Tensor | None = None) -> Tensor:
        check_tensor(h, "h", ndim=3, floating=True)
        if h.shape[2] != self.dim:
            raise ValueError(f"h: expected shape (B, L, {self.dim}), got {tuple(h.shape)}")
        if mask is not None:
            check_tensor(mask, "mask", ndim=2)
            if mask.dtype != torch.bool:
                raise TypeError(f"mask: expected a bool tensor (True = valid), got {mask.dtype}")
            if tuple(mask.shape) != tuple(h.shape[:2]):
                raise ValueError(
                    f"mask: expected shape {tuple(h.shape[:2])} (B, L), got {tuple(mask.shape)}"
                )
        dtype = compute_dtype(h, self.queries)
        hc = h.to(dtype)
        b, length, d = hc.shape
        heads, dh = self.num_heads, d // self.num_heads
        k = F.linear(hc, self.key.weight.to(dtype), self.key.bias.to(dtype))
        v = F.linear(hc, self.value.weight.to(dtype), self.value.bias.to(dtype))
        k = k.view(b, length, heads, dh).transpose(1, 2)  # (B, H, L, dh)
        v = v.view(b, length, heads, dh).transpose(1, 2)
        q = self.queries.to(dtype).view(self.num_queries, heads, dh).transpose(0, 1)  # (H, M, dh)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(dh)  # (B, H, M, L)
        if mask is not None:
            valid = mask[:, None, None, :]
            # a finite fill keeps an all-masked row NaN-free; exp(fill - max) is exactly 0 when a
            # valid position exists, and the product with `valid` zeroes the all-masked rows.
            # Zeroing V at padding too keeps whatever the padding holds (even inf) out of P.
            scores = scores.masked_fill(~valid, torch.finfo(scores.dtype).min)
            attn = torch.softmax(scores, dim=-1) * valid
            v = v.masked_fill(~mask[:, None, :, None], 0.0)
        else:
            attn = torch.softmax(scores, dim=-1)
        pooled = torch.matmul(attn, v)  # (B, H, M, dh)
        return pooled.transpose(1, 2).reshape(b, self.num_queries, d).to(h.dtype)


def _check_options(distance: str, detach_target: object, reduction: str) -> None:
    """The option checks shared by :func:`latent_query_alignment` and its Module."""
    check_choice(distance, "distance", _DISTANCES)
    if not isinstance(detach_target, bool):
        raise TypeError(f"detach_target: expected a bool, got {type(detach_target).__name__}")
    check_choice(reduction, "reduction", ("mean", "sum", "none"))


def latent_query_alignment(
    pooled_pred: Tensor,
    pooled_gold: Tensor,
    distance: Distance = "mse",
    detach_target: bool = True,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Distance between two pooled summaries (B, M, d), per sample.

    .. math::

        \text{mse: } \tfrac{1}{Md}\sum_{m,j}(P^{\text{pred}}_{mj} - P^{\text{gold}}_{mj})^2,
        \quad \text{cosine: } \tfrac1M\sum_m 1 - \cos(P^{\text{pred}}_m, P^{\text{gold}}_m),
        \quad \text{kl: } \tfrac1M\sum_m \mathrm{KL}\big(\operatorname{softmax}(P^{\text{gold}}_m)
        \,\|\, \operatorname{softmax}(P^{\text{pred}}_m)\big).

    With ``detach_target`` (default) the gold side is a constant: no gradient reaches the gold
    encoder or the shared queries through it, which prevents both sides collapsing to one constant
    when nothing else trains the gold encoder. Distances and defaults are inforeg's design
    (UNVERIFIED against the paper; see the module docstring). Cosine uses ``eps = 1e-8``.

    Args:
        pooled_pred: (B, M, d) pooled predicted-side representation.
        pooled_gold: (B, M, d) pooled gold-side representation.
        distance: ``"mse"`` (default), ``"cosine"`` or ``"kl"``.
        detach_target: stop the gradient through ``pooled_gold``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"`` (shape (B,)).

    Example:
        >>> p = torch.tensor([[[1.0, 0.0]]])
        >>> g = torch.tensor([[[0.0, 1.0]]])
        >>> latent_query_alignment(p, g), latent_query_alignment(p, g, distance="cosine")
        (tensor(1.), tensor(1.))
    """
    check_tensor(pooled_pred, "pooled_pred", ndim=3, floating=True)
    check_tensor(pooled_gold, "pooled_gold", ndim=3, floating=True)
    check_same_shape(pooled_pred, pooled_gold, "pooled_pred", "pooled_gold")
    _check_options(distance, detach_target, reduction)
    dtype = compute_dtype(pooled_pred, pooled_gold)
    pred = pooled_pred.to(dtype)
    gold = pooled_gold.to(dtype)
    if detach_target:
        gold = gold.detach()
    if distance == "mse":
        per_sample = (pred - gold).pow(2).mean(dim=(1, 2))
    elif distance == "cosine":
        per_sample = (1.0 - F.cosine_similarity(pred, gold, dim=2, eps=1e-8)).mean(1)
    else:
        log_gold = F.log_softmax(gold, dim=2)
        kl = (log_gold.exp() * (log_gold - F.log_softmax(pred, dim=2))).sum(2)
        per_sample = kl.mean(1)
    return reduce(per_sample, reduction).to(pooled_pred.dtype)


class LatentQueryAlignmentLoss(nn.Module):
    r"""MDS-S²-style alignment regulariser: shared latent queries pool both sides, then a distance.

    ``forward(h_pred, h_gold, mask_pred=None, mask_gold=None)`` returns
    ``latent_query_alignment(pool(h_pred, mask_pred), pool(h_gold, mask_gold))`` with **one**
    :class:`LatentQueryPooling` shared by both sides. Add it to the generation loss as
    ``loss = nll + lam * align`` (λ = 0.1 suggested, UNVERIFIED). With ``detach_target`` the gold
    side is pooled under ``torch.no_grad()``, so the queries are trained through the predicted side
    only. Everything here beyond "latent queries distil both representations, which are then
    aligned" is inforeg's design (UNVERIFIED; see the module docstring). Paper: Chen, Song, Wei,
    Nie & Chua, "Dual Semantic Knowledge Composed Multimodal Dialog Systems", SIGIR 2023, arXiv
    2305.09990 (no authors' code found).

    Args:
        dim: feature size d of both sides.
        num_queries: M (default 8).
        distance: ``"mse"`` (default), ``"cosine"`` or ``"kl"``.
        detach_target: stop gradients through the gold side (default True).
        num_heads: attention heads of the pooling.
        reduction: over the batch.

    Shape:
        h_pred (B, L_pred, d), h_gold (B, L_gold, d), masks (B, L) bool → scalar (or (B,)).

    Example:
        >>> _ = torch.manual_seed(0)
        >>> loss = LatentQueryAlignmentLoss(4, num_queries=2)
        >>> h = torch.randn(3, 5, 4)
        >>> loss(h, h)
        tensor(0., grad_fn=<MeanBackward0>)
        >>> loss(h, torch.zeros(3, 5, 4)).shape
        torch.Size([])
    """

    def __init__(
        self,
        dim: int,
        num_queries: int = 8,
        distance: Distance = "mse",
        detach_target: bool = True,
        num_heads: int = 1,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        _check_options(distance, detach_target, reduction)
        self.pool = LatentQueryPooling(dim, num_queries=num_queries, num_heads=num_heads)
        self.distance: Distance = distance
        self.detach_target = detach_target
        self.reduction: Reduction = reduction

    def forward(
        self,
        h_pred: Tensor,
        h_gold: Tensor,
        mask_pred: Tensor | None = None,
        mask_gold: Tensor | None = None,
    ) -> Tensor:
        check_tensor(h_pred, "h_pred", ndim=3, floating=True)
        check_tensor(h_gold, "h_gold", ndim=3, floating=True)
        if isinstance(h_pred, Tensor) and isinstance(h_gold, Tensor):
            if h_pred.dim() == 3 and h_gold.dim() == 3 and h_pred.shape[0] != h_gold.shape[0]:
                raise ValueError(
                    f"h_gold: expected {h_pred.shape[0]} sequences to match h_pred, "
                    f"got {h_gold.shape[0]}"
                )
        pooled_pred = self.pool(h_pred, mask_pred)
        if self.detach_target:
            with torch.no_grad():
                pooled_gold = self.pool(h_gold, mask_gold)
        else:
            pooled_gold = self.pool(h_gold, mask_gold)
        return latent_query_alignment(
            pooled_pred, pooled_gold, self.distance, self.detach_target, self.reduction
        )
