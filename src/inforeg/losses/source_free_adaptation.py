"""SFDA: label-free weighted entropy + KL class-ratio prior for source-free domain adaptation.

Bateson, Kervadec, Dolz, Lombaert, Ben Ayed, "Source-Free Domain Adaptation for Image
Segmentation", Medical Image Analysis 2022 (extension of the MICCAI 2020 "source-relaxed"
paper), arXiv:2108.03152. Authors' code: ``mathilde-b/SFDA`` (``losses.py: EntKLProp``,
``utils.py: norm_soft_size``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from inforeg.core.checks import (
    check_choice,
    check_dim,
    check_number,
    check_probabilities,
    check_tensor,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import reduce
from inforeg.core.types import Reduction
from inforeg.losses._common import entropy_terms_from_logits

Normalization = Literal["paper", "code"]
_EPS = 1e-10


def _class_weights(weights: Tensor | None, num_classes: int, like: Tensor) -> Tensor | None:
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=like.dtype, device=like.device)
    if w.dim() != 1 or w.shape[0] != num_classes:
        raise ValueError(
            f"weights: expected a 1-D tensor of {num_classes} class weights, got shape "
            f"{tuple(w.shape)}"
        )
    return w


def entropy_minimization(
    logits: Tensor,
    dim: int = 1,
    weights: Tensor | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""(Class-weighted) Shannon entropy of ``softmax(logits)`` at every position.

    .. math::

        \ell_x = -\sum_c \nu_c\, p_{cx} \log p_{cx}, \qquad p_{\cdot x} = \mathrm{softmax}(z_{\cdot x}),

    averaged over all positions (batch and spatial) for ``reduction="mean"``; this equals the
    authors' ``-sum nu p log(p + 1e-10) / sum p`` since :math:`\sum p` is the number of positions.
    The released configs use :math:`\nu = (0.1, 0.9)` (background, foreground); ``weights=None``
    means :math:`\nu = 1`. Computed from ``log_softmax`` (no epsilon, :math:`0 \log 0 = 0`).

    Args:
        logits: (B, C) or ``(B, C, *spatial)`` scores, class axis ``dim``.
        dim: the class axis (default 1).
        weights: optional (C,) class weights :math:`\nu`.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (the logits' shape without ``dim``).

    Returns:
        The entropy in nats, in the dtype of ``logits``.

    Example:
        >>> round(float(entropy_minimization(torch.zeros(1, 4))), 4)  # log 4
        1.3863
    """
    check_tensor(logits, "logits", min_ndim=1, floating=True)
    d = check_dim(dim, logits)
    z = logits.to(compute_dtype(logits))
    terms = entropy_terms_from_logits(z, dim=d)
    w = _class_weights(weights, logits.shape[d], z)
    if w is not None:
        shape = [1] * z.dim()
        shape[d] = -1
        terms = terms * w.view(shape)
    return reduce(terms.sum(dim=d), reduction).to(logits.dtype)


def predicted_class_ratio(
    logits: Tensor, dim: int = 1, normalization: Normalization = "paper"
) -> Tensor:
    r"""Predicted class proportions :math:`\hat\tau` per image (or for the whole batch).

    ``"paper"``: :math:`\hat\tau_{bc} = \frac{1}{|\Omega|}\sum_x p_{bcx}`.
    ``"code"`` (``norm_soft_size``): each pixel's probabilities are first divided by their
    maximum over classes, :math:`r_{bc} = \sum_x p_{bcx} / (\max_{c'} p_{bc'x} + 10^{-10})`, then
    :math:`\hat\tau_{bc} = r_{bc} / (\sum_c r_{bc} + 10^{-10})`; this sharpens the proportions.

    For 2-D logits (B, C) (classification) the batch plays the role of the pixels of one image
    and the result has shape (1, C); for ``(B, C, *spatial)`` it has shape (B, C).
    """
    check_tensor(logits, "logits", min_ndim=2, floating=True)
    check_choice(normalization, "normalization", ("paper", "code"))
    d = check_dim(dim, logits)
    p = torch.softmax(logits.to(compute_dtype(logits)), dim=d).movedim(d, 1)
    if p.dim() == 2:
        p = p.t().unsqueeze(0)  # (1, C, B): the batch is the pixel set
    p = p.flatten(2)  # (B, C, N)
    if normalization == "paper":
        return p.mean(dim=2)
    r = (p / (p.amax(dim=1, keepdim=True) + _EPS)).sum(dim=2)
    return r / (r.sum(dim=1, keepdim=True) + _EPS)


def class_ratio_prior_kl(
    logits: Tensor,
    prior: Tensor,
    dim: int = 1,
    normalization: Normalization = "paper",
    reduction: Reduction = "mean",
) -> Tensor:
    r"""KL divergence from the predicted class proportions to a prior, :math:`KL(\hat\tau \| \tau_e)`.

    .. math::

        \mathcal L_{KL} = \frac1B \sum_b \sum_c \hat\tau_{bc}
            \left(\log(\hat\tau_{bc} + 10^{-10}) - \log(\tau_{e,bc} + 10^{-10})\right),

    with :math:`\hat\tau` from :func:`predicted_class_ratio` (``normalization="paper"``: mean
    probability; ``"code"``: the authors' max-normalised proportions). The gradient flows through
    :math:`\hat\tau`; the prior is a constant. The :math:`10^{-10}` inside the logs follows the code
    and keeps the loss finite for priors with zeros (an absent structure: prior (1, 0)).

    Args:
        logits: (B, C) or ``(B, C, *spatial)`` scores (class axis ``dim``). For (B, C) the batch is
            treated as one image, so the proportions are batch averages.
        prior: (C,) or (B, C) class proportions (rows on the simplex).
        dim: the class axis.
        normalization: ``"paper"`` (default) or ``"code"``.
        reduction: over images; ``"none"`` returns (B,) (or (1,) for 2-D logits).

    Example:
        >>> z = torch.log(torch.tensor([[0.9, 0.1], [0.1, 0.9]]))
        >>> float(class_ratio_prior_kl(z, torch.tensor([0.5, 0.5]))) < 1e-6
        True
    """
    tau_hat = predicted_class_ratio(logits, dim, normalization)
    check_tensor(prior, "prior", ndim=(1, 2), floating=True)
    num_classes = tau_hat.shape[1]
    if prior.shape[-1] != num_classes or (prior.dim() == 2 and prior.shape[0] != tau_hat.shape[0]):
        raise ValueError(
            f"prior: expected shape ({num_classes},) or ({tau_hat.shape[0]}, {num_classes}), got "
            f"{tuple(prior.shape)}"
        )
    check_probabilities(prior, "prior", dim=-1)
    pr = prior.detach().to(tau_hat.dtype)
    kl = (tau_hat * (torch.log(tau_hat + _EPS) - torch.log(pr + _EPS))).sum(dim=1)
    return reduce(kl, reduction).to(logits.dtype)


class SourceFreeAdaptationLoss(nn.Module):
    r"""SFDA objective :math:`\lambda_{ent}\,\mathcal L_{ent} + \lambda_{KL}\,KL(\hat\tau\|\tau_e)`.

    Args:
        prior: optional fixed (C,) class-proportion prior (a buffer); otherwise pass ``prior``
            to :meth:`forward` (e.g. per-image (B, C) priors from image-level tags).
        weights: optional (C,) class weights :math:`\nu` of the entropy (code: (0.1, 0.9)).
        entropy_weight: :math:`\lambda_{ent}` (default 1).
        kl_weight: :math:`\lambda_{KL}` (default 1).
        normalization: proportions as in the ``"paper"`` (mean, default) or the ``"code"``.
        dim: the class axis.
    """

    prior: Tensor | None
    weights: Tensor | None

    def __init__(
        self,
        prior: Tensor | None = None,
        weights: Tensor | None = None,
        entropy_weight: float = 1.0,
        kl_weight: float = 1.0,
        normalization: Normalization = "paper",
        dim: int = 1,
    ) -> None:
        super().__init__()
        check_choice(normalization, "normalization", ("paper", "code"))
        self.entropy_weight = check_number(entropy_weight, "entropy_weight", low=0.0)
        self.kl_weight = check_number(kl_weight, "kl_weight", low=0.0)
        self.normalization: Normalization = normalization
        self.dim = dim
        self.register_buffer("prior", None if prior is None else prior.detach().clone())
        self.register_buffer("weights", None if weights is None else weights.detach().clone())

    def forward(self, logits: Tensor, prior: Tensor | None = None) -> Tensor:
        pr = prior if prior is not None else self.prior
        if pr is None:
            raise ValueError("prior: expected a class-proportion prior (none stored, none passed)")
        ent = entropy_minimization(logits, self.dim, self.weights)
        kl = class_ratio_prior_kl(logits, pr, self.dim, self.normalization)
        return self.entropy_weight * ent + self.kl_weight * kl
