"""AEM: attention-entropy maximisation for attention-based multiple-instance learning (ABMIL).

Zhang, Li, Sun, Shui, et al., "AEM: Attention Entropy Maximization for Multiple Instance
Learning based Whole Slide Image Classification", 2024, arXiv:2406.15303. Authors' code:
``dazhangyu123/AEM`` (``main.py: train_one_epoch``; ``architecture/transformer.py: ABMIL``,
``Attention_Gated``; ``architecture/network.py``). ABMIL: Ilse, Tomczak, Welling, "Attention-based
Deep Multiple Instance Learning", ICML 2018, arXiv:1802.04712.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_int, check_module_input, check_number, check_tensor
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import reduce
from inforeg.core.types import Reduction
from inforeg.losses._common import entropy_from_logits


def _masked_logits(attention_logits: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor | None]:
    z = attention_logits.to(compute_dtype(attention_logits))
    if mask is None:
        return z, None
    check_tensor(mask, "mask", nonempty=False)
    if mask.shape != attention_logits.shape:
        raise ValueError(
            f"mask: expected the shape of attention_logits {tuple(attention_logits.shape)}, got "
            f"{tuple(mask.shape)}"
        )
    m = mask.bool()
    any_valid = m.any(dim=-1, keepdim=True)
    # padded instances get -inf; a bag with no valid instance gets zeros (its entropy is zeroed)
    z = torch.where(m, z, torch.full_like(z, float("-inf")))
    z = torch.where(any_valid, z, torch.zeros_like(z))
    return z, any_valid.squeeze(-1)


def masked_attention_softmax(attention_logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """Softmax over the last axis (instances), with padded instances (``mask`` False) at 0."""
    check_tensor(attention_logits, "attention_logits", min_ndim=1, floating=True)
    z, any_valid = _masked_logits(attention_logits, mask)
    a = torch.softmax(z, dim=-1)
    if any_valid is not None:
        a = a * any_valid.unsqueeze(-1).to(a.dtype)
    return a.to(attention_logits.dtype)


def attention_entropy(
    attention_logits: Tensor, mask: Tensor | None = None, reduction: Reduction = "none"
) -> Tensor:
    r"""Entropy of the attention distribution over the instances of each bag.

    .. math::

        a = \mathrm{softmax}_N(s), \qquad H(a) = -\sum_{i=1}^N a_i \log a_i \in [0, \log N],

    computed from the *pre-softmax* scores as ``softmax * log_softmax`` (as in the code), with
    :math:`0 \log 0 = 0`. Its gradient is
    :math:`\partial H/\partial s_j = -a_j(\log a_j + H)`, zero at uniform attention. AEM adds
    :math:`-\lambda H(a)` to the bag loss (:class:`AttentionEntropyMaximization`).

    Args:
        attention_logits: (N,) scores of one bag, or (B, N) for B padded bags.
        mask: optional bool tensor of the same shape, True for real instances; padded instances
            are excluded (a bag with no real instance has entropy 0).
        reduction: ``"none"`` (default: per bag, shape (B,) or scalar), ``"mean"`` or ``"sum"``.

    Example:
        >>> s = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4]))
        >>> round(float(attention_entropy(s)), 4)
        1.2799
    """
    check_tensor(attention_logits, "attention_logits", ndim=(1, 2), floating=True)
    z, any_valid = _masked_logits(attention_logits, mask)
    h = entropy_from_logits(z, dim=-1)
    if any_valid is not None:
        h = h * any_valid.to(h.dtype)
    return reduce(h, reduction).to(attention_logits.dtype)


class AttentionEntropyMaximization(nn.Module):
    r"""The AEM term :math:`\lambda \sum_i a_i \log a_i = -\lambda H(a)`, to add to the bag loss.

    ``forward`` returns :math:`-\lambda` times the mean (over bags) attention entropy, so
    ``loss = ce + aem(attention_logits)`` maximises the entropy. ``weight=0`` is plain ABMIL;
    the README example uses 0.1. For multi-head attention pass (B·heads, N) scores: the mean
    then divides by the number of heads, as the code does. The later paper version's cosine
    annealing of :math:`\lambda` is not implemented (it was not in the version read).

    Args:
        weight: :math:`\lambda \ge 0` (default 0.1).
    """

    def __init__(self, weight: float = 0.1) -> None:
        super().__init__()
        self.weight = check_number(weight, "weight", low=0.0)

    def forward(self, attention_logits: Tensor, mask: Tensor | None = None) -> Tensor:
        return -self.weight * attention_entropy(attention_logits, mask, reduction="mean")


class ABMIL(nn.Module):
    r"""Gated attention-based MIL pooling (ABMIL) as in the AEM code.

    .. math::

        h_i = \mathrm{ReLU}(W_1 x_i), \quad
        s_i = w_a^\top(\tanh(V h_i) \odot \sigma(U h_i)), \quad
        a = \mathrm{softmax}_i(s), \quad
        \hat y = W_c \sum_i a_i h_i + b_c.

    :math:`W_1` has no bias (code's ``DimReduction``); V, U, w_a have biases.

    Args:
        in_dim: instance feature size.
        inner_dim: size of h (128 for 384-d ViT-S features in the code).
        attention_dim: hidden size of the gated attention (128).
        num_classes: number of bag classes.
        dropout: dropout on h (0).

    ``forward(x, mask=None)`` takes (N, D) for one bag or (B, N, D) with an optional (B, N) mask
    and returns ``(logits, attention_logits)``: (C,)/(B, C) and (N,)/(B, N) pre-softmax scores.
    ``x`` must have the dtype of the Module's parameters (convert the Module with ``.to()``).
    """

    def __init__(
        self,
        in_dim: int,
        inner_dim: int = 128,
        attention_dim: int = 128,
        num_classes: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_int(in_dim, "in_dim", low=1)
        check_int(inner_dim, "inner_dim", low=1)
        check_int(attention_dim, "attention_dim", low=1)
        check_int(num_classes, "num_classes", low=1)
        self.reduce = nn.Linear(in_dim, inner_dim, bias=False)
        self.dropout = nn.Dropout(check_number(dropout, "dropout", low=0.0, high=1.0))
        self.attention_v = nn.Linear(inner_dim, attention_dim)
        self.attention_u = nn.Linear(inner_dim, attention_dim)
        self.attention_w = nn.Linear(attention_dim, 1)
        self.classifier = nn.Linear(inner_dim, num_classes)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        check_tensor(x, "x", ndim=(2, 3), floating=True)
        check_module_input(x, "x", self, self.reduce.in_features)
        single = x.dim() == 2
        xb = x.unsqueeze(0) if single else x
        mb = None if mask is None else (mask.unsqueeze(0) if single else mask)
        h = self.dropout(torch.relu(self.reduce(xb)))
        gate = torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))
        scores = self.attention_w(gate).squeeze(-1)  # (B, N)
        a = masked_attention_softmax(scores, mb)
        pooled = torch.einsum("bn,bnd->bd", a, h)
        logits = self.classifier(pooled)
        if single:
            return logits.squeeze(0), scores.squeeze(0)
        return logits, scores
