r"""Contrastive and variational dependence estimators: InfoNCE, MINE (DV / NWJ) and the
Wasserstein dependency measure (WDM / WPC).

InfoNCE (CPC; van den Oord et al. 2018) with scores :math:`s_{ij} = \langle x_i, y_j\rangle /
\tau` (cosine similarity when ``normalize=True``):

.. math::

    \mathcal{L}_{NCE} = -\frac{1}{N}\sum_i \Big[s_{ii} - \log \sum_j e^{s_{ij}}\Big],
    \qquad \hat I = \log N - \mathcal{L}_{NCE} \leq \log N

(the denominator includes the positive; ``symmetric=True`` averages the x→y and y→x directions,
CLIP-style). MINE (Belghazi et al. 2018) lower bounds from critic values on joint pairs
:math:`T_i = T(x_i, y_i)` and on marginal pairs :math:`\bar T_i = T(x_i, y_{\pi(i)})`:

.. math::

    \hat I_{DV} = \frac{1}{n}\sum_i T_i - \log \frac{1}{n}\sum_i e^{\bar T_i},\qquad
    \hat I_{NWJ} = \frac{1}{n}\sum_i T_i - \frac{1}{n}\sum_i e^{\bar T_i - 1}\ (\text{MINE-f})

:class:`MINE` replaces the batch mean in the DV gradient by an exponential moving average of
:math:`\frac{1}{n}\sum e^{\bar T}` (rate 0.01), the paper's bias correction; its value is still
the DV estimate.

Wasserstein dependency measure (Ozair et al., NeurIPS 2019, arXiv 1903.11780):
:math:`I_W(X;Y) = W_1(p_{XY}, p_X p_Y) = \sup_{\|f\|_L \leq 1} E_{p_{XY}} f - E_{p_X p_Y} f`.
With a score matrix :math:`S_{ij} = f(x_i, y_j)`:

.. math::

    \hat I_W = \frac{1}{N}\sum_i S_{ii} - \frac{1}{N(N-1)}\sum_{i\neq j} S_{ij}\ (\text{KR dual})

WPC uses the InfoNCE objective on :math:`S` with the critic made Lipschitz, by a gradient penalty
:math:`\lambda_{GP} E[(\|\nabla_u f(u)\|_2 - 1)^2]` at positive and negative pairs
(two-sided, λ = 10 by default: the paper's exact weight and form could not be verified; both are
configurable) or by spectral normalisation of the critic's layers
(:func:`spectral_normalize`). No official code exists.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.core.checks import (
    check_autograd,
    check_choice,
    check_number,
    check_positive,
    check_same_length,
    check_same_shape,
    check_tensor,
)
from inforeg.core.dtypes import upcast
from inforeg.core.reduce import reduce

__all__ = [
    "MINE",
    "InfoNCELoss",
    "WDMOutput",
    "gradient_penalty",
    "infonce",
    "mine_lower_bound",
    "spectral_normalize",
    "wasserstein_dependency",
]

Critic = Callable[[Tensor, Tensor], Tensor]


def infonce(
    x: Tensor,
    y: Tensor,
    temperature: float = 0.1,
    symmetric: bool = False,
    normalize: bool = True,
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> Tensor:
    """InfoNCE loss with in-batch negatives (row i of y is the positive of row i of x).

    Args:
        x: (N, d) embeddings; y: (N, d) embeddings.
        temperature: tau > 0 dividing the scores.
        symmetric: average the x->y and y->x losses.
        normalize: L2-normalise rows first (cosine scores, default), else raw dot products.
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per-anchor losses, (N,)).

    Returns:
        The loss; ``log N - loss`` (mean reduction) is the InfoNCE MI lower bound in nats.

    Example (orthonormal pairs, tau = 1: each row scores 1 against its positive, 0 otherwise,
    so the loss is ``log(e + 1) - 1``):

        >>> e = torch.eye(2)
        >>> print(f"{float(infonce(e, e, temperature=1.0)):.4f}")
        0.3133
    """
    check_tensor(x, "x", ndim=2, floating=True)
    check_tensor(y, "y", ndim=2, floating=True)
    check_same_shape(x, y, "x", "y")
    check_positive(temperature, "temperature")
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    xf = upcast(x)
    yf = y.to(xf.dtype)
    if normalize:
        xf, yf = F.normalize(xf, dim=1), F.normalize(yf, dim=1)
    s = xf @ yf.T / temperature
    target = torch.arange(s.shape[0], device=s.device)
    per = F.cross_entropy(s, target, reduction="none")
    if symmetric:
        per = 0.5 * (per + F.cross_entropy(s.T, target, reduction="none"))
    return reduce(per, reduction).to(x.dtype)


class InfoNCELoss(nn.Module):
    """``weight * infonce(x, y, ...)`` as a module (MambaRec uses tau = 0.2, one direction)."""

    def __init__(
        self,
        temperature: float = 0.1,
        symmetric: bool = False,
        normalize: bool = True,
        weight: float = 1.0,
        reduction: Literal["mean", "sum", "none"] = "mean",
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.symmetric = symmetric
        self.normalize = normalize
        self.weight = check_number(weight, "weight")
        self.reduction: Literal["mean", "sum", "none"] = reduction

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Return the weighted InfoNCE loss."""
        return self.weight * infonce(
            x, y, self.temperature, self.symmetric, self.normalize, self.reduction
        )


def mine_lower_bound(
    t_joint: Tensor, t_marginal: Tensor, kind: Literal["dv", "nwj"] = "dv"
) -> Tensor:
    """MINE lower bound on I(X;Y) in nats from critic values on joint and marginal pairs.

    Args:
        t_joint: (n,) critic values T(x_i, y_i).
        t_marginal: (m,) critic values on shuffled pairs T(x_i, y_pi(i)).
        kind: ``"dv"`` (Donsker-Varadhan, log-mean-exp computed as logsumexp - log m) or
            ``"nwj"`` (MINE-f: mean T - mean exp(T - 1)).

    Example (DV: ``2 - log((1 + e) / 2)``; NWJ: ``2 - (e^-1 + 1) / 2``):

        >>> tj = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)
        >>> tm = torch.tensor([0.0, 1.0], dtype=torch.float64)
        >>> print(f"{float(mine_lower_bound(tj, tm)):.4f}")
        1.3799
        >>> print(f"{float(mine_lower_bound(tj, tm, 'nwj')):.4f}")
        1.3161
    """
    check_tensor(t_joint, "t_joint", ndim=1, floating=True)
    check_tensor(t_marginal, "t_marginal", ndim=1, floating=True)
    check_choice(kind, "kind", ("dv", "nwj"))
    if kind == "dv":
        return t_joint.mean() - (torch.logsumexp(t_marginal, 0) - math.log(t_marginal.shape[0]))
    return t_joint.mean() - torch.exp(t_marginal - 1.0).mean()


class MINE(nn.Module):
    r"""MINE estimator with a critic network and the EMA bias-corrected DV gradient.

    Args:
        critic: module mapping row-aligned (x, y) batches to (n,) or (n, 1) scores.
        kind: ``"dv"`` (default) or ``"nwj"``.
        ema_rate: EMA rate of mean exp(T_marginal) for the DV gradient (paper ~0.01).

    ``forward(x, y)`` shuffles y with ``torch.randperm`` for the marginal pairs and returns the
    lower-bound estimate (maximise it, i.e. minimise its negative). For ``"dv"`` in training
    mode the returned value equals the DV bound but its gradient divides by the EMA instead of
    the batch mean (state: the ``log_ema`` buffer, updated under no_grad).

    Everything runs in log space, so critic scores of any size give finite values and
    gradients: with :math:`\ell = \log\frac1n\sum_i e^{\bar T_i}` (logsumexp - log n),
    the EMA is kept as its log, :math:`\log m \leftarrow \operatorname{logaddexp}(\log(1-r) +
    \log m,\ \log r + \ell)`, and the gradient surrogate :math:`\frac1n\sum_i T_i -
    e^{\ell - \log m}` has the gradient of :math:`\frac1n\sum_i T_i - \frac{\frac1n\sum_i
    e^{\bar T_i}}{m}` (the paper's). A state dict saved with the former ``ema`` buffer (the
    EMA itself) still loads.
    """

    log_ema: Tensor

    def __init__(
        self, critic: nn.Module, kind: Literal["dv", "nwj"] = "dv", ema_rate: float = 0.01
    ) -> None:
        super().__init__()
        check_choice(kind, "kind", ("dv", "nwj"))
        self.critic = critic
        self.kind = kind
        self.ema_rate = check_number(ema_rate, "ema_rate", low=0.0, high=1.0, low_inclusive=False)
        self.register_buffer("log_ema", torch.tensor(float("nan")))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        old = state_dict.pop(prefix + "ema", None)  # the EMA itself, before log space
        if old is not None and prefix + "log_ema" not in state_dict:
            state_dict[prefix + "log_ema"] = torch.log(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _scores(self, x: Tensor, y: Tensor) -> Tensor:
        return self.critic(x, y).reshape(-1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Return the MI lower-bound estimate (nats) for the batch."""
        check_tensor(x, "x", min_ndim=1, floating=True)
        check_tensor(y, "y", min_ndim=1, floating=True)
        check_same_length(x, y, "x", "y")
        perm = torch.randperm(y.shape[0], device=y.device)
        tj, tm = self._scores(x, y), self._scores(x, y[perm])
        value = mine_lower_bound(tj, tm, self.kind)
        if self.kind == "nwj" or not self.training:
            return value
        log_batch_mean = torch.logsumexp(tm, 0) - math.log(tm.shape[0])
        with torch.no_grad():
            r = self.ema_rate
            keep = math.log1p(-r) if r < 1 else -math.inf  # log(1 - r)
            decayed = self.log_ema.to(log_batch_mean.dtype) + keep
            new = torch.where(
                torch.isnan(self.log_ema),
                log_batch_mean,
                torch.logaddexp(decayed, log_batch_mean + math.log(r)),
            )
            self.log_ema.copy_(new.to(self.log_ema.dtype))
        # exp(l - log m) has the gradient (grad of mean e^T) / m: the paper's EMA correction
        surrogate = tj.mean() - torch.exp(log_batch_mean - self.log_ema.to(log_batch_mean.dtype))
        return value.detach() + surrogate - surrogate.detach()


def gradient_penalty(critic: Critic, x: Tensor, y: Tensor, two_sided: bool = True) -> Tensor:
    """``E[(||grad_u f(u)||_2 - 1)^2]`` (two-sided) or ``E[relu(||grad|| - 1)^2]`` at pairs u = (x_i, y_i).

    ``critic(x, y)`` returns the (n, n) score matrix; the diagonal f(x_i, y_i) is differentiated
    with respect to both x_i and y_i (a graph is kept so the penalty itself can be trained;
    under ``torch.no_grad`` only its value is computed). An empty batch raises ``ValueError``
    (the mean over no pairs is undefined).
    """
    check_tensor(x, "x", min_ndim=1, floating=True)
    check_tensor(y, "y", min_ndim=1, floating=True)
    check_same_length(x, y, "x", "y")
    check_autograd("gradient_penalty")
    train = torch.is_grad_enabled()
    with torch.enable_grad():  # the critic's input gradient, also for an evaluation under no_grad
        xg = x if x.requires_grad else x.detach().requires_grad_()
        yg = y if y.requires_grad else y.detach().requires_grad_()
        scores = torch.diagonal(critic(xg, yg))
        gx, gy = torch.autograd.grad(scores.sum(), (xg, yg), create_graph=train)
    n = gx.shape[0]  # the norm over all of a pair's coordinates, for inputs of any shape
    norm = (gx.reshape(n, -1).pow(2).sum(1) + gy.reshape(n, -1).pow(2).sum(1) + 1e-12).sqrt()
    gap = norm - 1.0
    return (gap.pow(2) if two_sided else F.relu(gap).pow(2)).mean()


def spectral_normalize(module: nn.Module) -> nn.Module:
    """Apply spectral normalisation to every Linear layer of ``module`` (in place); return it."""
    from torch.nn.utils.parametrizations import spectral_norm

    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            setattr(module, name, spectral_norm(child))
        else:
            spectral_normalize(child)
    return module


class WDMOutput(NamedTuple):
    """Result of :func:`wasserstein_dependency`."""

    estimate: Tensor  # KR estimate of I_W, or the InfoNCE bound log N - L_NCE
    penalty: Tensor  # gradient penalty (0 without it)
    loss: Tensor  # what to minimise: -estimate (KR) or L_NCE (infonce), + gp_weight * penalty


def wasserstein_dependency(
    critic: Critic,
    x: Tensor,
    y: Tensor,
    lipschitz: Literal["gradient_penalty", "spectral_norm", "none"] = "gradient_penalty",
    objective: Literal["kr", "infonce"] = "kr",
    gp_weight: float = 10.0,
    two_sided: bool = True,
) -> WDMOutput:
    """Wasserstein dependency measure (KR dual) or WPC (Lipschitz InfoNCE) on a batch.

    Args:
        critic: callable ``critic(x, y) -> (N, N)`` scores S_ij = f(x_i, y_j) (e.g. a separable
            critic g(x) W h(y)^T).
        x, y: paired batches, (N, ...) each, N >= 2.
        lipschitz: ``"gradient_penalty"`` (the mean of the penalty at the positive pairs and at
            the pairs shuffled by one position: inforeg's choice; WGAN-GP evaluates it at random
            interpolates between the two, and the paper's form, its weight and one- or
            two-sidedness could not be read), ``"spectral_norm"`` (the critic is assumed spectrally normalised, see
            :func:`spectral_normalize`; no penalty) or ``"none"``.
        objective: ``"kr"`` (WDM) or ``"infonce"`` (WPC).
        gp_weight: lambda_GP (default 10, unverified).
        two_sided: (||grad|| - 1)^2 (default) or only penalise norms above 1.
    """
    check_choice(lipschitz, "lipschitz", ("gradient_penalty", "spectral_norm", "none"))
    check_choice(objective, "objective", ("kr", "infonce"))
    check_number(gp_weight, "gp_weight", low=0.0)
    check_tensor(x, "x", min_ndim=1, floating=True)
    check_tensor(y, "y", min_ndim=1, floating=True)
    check_same_length(x, y, "x", "y")
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"x: expected at least 2 samples, got {n}")
    s = critic(x, y)
    if s.shape != (n, n):
        raise ValueError(f"critic: expected an ({n}, {n}) score matrix, got {tuple(s.shape)}")
    diag = torch.diagonal(s)
    if objective == "kr":
        estimate = diag.mean() - (s.sum() - diag.sum()) / (n * (n - 1))
        main = -estimate
    else:
        nce = F.cross_entropy(s, torch.arange(n, device=s.device))
        estimate = math.log(n) - nce
        main = nce
    if lipschitz == "gradient_penalty":
        shifted = torch.roll(y, 1, dims=0)
        penalty = 0.5 * (
            gradient_penalty(critic, x, y, two_sided)
            + gradient_penalty(critic, x, shifted, two_sided)
        )
    else:
        penalty = s.new_zeros(())
    return WDMOutput(estimate, penalty, main + gp_weight * penalty)
