"""Comp-sum losses (sum-exponential, cross-entropy, GCE, MAE) and the smooth adversarial variant.

Mao, Mohri, Zhong, "Cross-Entropy Loss Functions: Theoretical Analysis and Applications",
ICML 2023, arXiv:2304.07288. Theory paper: there is no official code.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor, nn

from inforeg.core.checks import (
    check_autograd,
    check_choice,
    check_dim,
    check_int,
    check_labels,
    check_number,
    check_positive,
    check_same_shape,
    check_tensor,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import reduce
from inforeg.core.types import Reduction

CompSumKind = Literal["ce", "gce", "mae", "sum_exp"]
_KINDS: tuple[str, ...] = ("ce", "gce", "mae", "sum_exp")


def comp_sum_tau(kind: CompSumKind, q: float = 0.7) -> float:
    """The exponent ``tau`` of a named comp-sum loss: sum_exp 0, ce 1, gce ``1 + q``, mae 2."""
    check_choice(kind, "kind", _KINDS)
    if kind == "gce":
        q = check_number(q, "q", low=0.0, high=1.0, low_inclusive=False)
        return 1.0 + q
    return {"sum_exp": 0.0, "ce": 1.0, "mae": 2.0}[kind]


def _tau_of(kind: CompSumKind, q: float, tau: float | None) -> float:
    """The exponent the comp-sum functions and Modules use: ``tau`` if given (checked >= 0),
    else the one that ``kind`` (and ``q``) name."""
    return comp_sum_tau(kind, q) if tau is None else check_number(tau, "tau", low=0.0)


def _log_p_target(logits: Tensor, targets: Tensor, dim: int) -> Tensor:
    d = check_dim(dim, logits)
    log_p = torch.log_softmax(logits.to(compute_dtype(logits)), dim=d)
    moved = log_p.movedim(d, -1)
    return moved.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)


def _phi_of_log_p(log_p_y: Tensor, tau: float) -> Tensor:
    # (1 + u)^{1 - tau} = p_y^{tau - 1} = exp((tau - 1) log p_y); Phi = (that - 1) / (1 - tau)
    if tau == 1.0:
        return -log_p_y
    return -torch.expm1((tau - 1.0) * log_p_y) / (tau - 1.0)


def _check_class_input(logits: Tensor, targets: Tensor, dim: int) -> None:
    check_tensor(logits, "logits", min_ndim=2, floating=True)
    d = check_dim(dim, logits)
    moved_shape = logits.movedim(d, -1).shape
    check_tensor(targets, "targets", integer=True, nonempty=False)
    if tuple(targets.shape) != tuple(moved_shape[:-1]):
        raise ValueError(
            f"targets: expected shape {tuple(moved_shape[:-1])} to match logits without the "
            f"class dim, got {tuple(targets.shape)}"
        )
    check_labels(targets.reshape(-1), "targets", int(moved_shape[-1]), targets.numel())


def comp_sum_loss(
    logits: Tensor,
    targets: Tensor,
    kind: CompSumKind = "ce",
    q: float = 0.7,
    tau: float | None = None,
    dim: int = 1,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Comp-sum loss :math:`\Phi^\tau(u)` of the scores (Mao, Mohri & Zhong, 2023).

    With :math:`p = \mathrm{softmax}(h)` and :math:`u = \sum_{y' \ne y} e^{h_{y'} - h_y} = 1/p_y - 1`,

    .. math::

        \ell_\tau(h, y) = \Phi^\tau(u) =
        \begin{cases}
            \log(1 + u) = -\log p_y & \tau = 1,\\
            \dfrac{(1 + u)^{1-\tau} - 1}{1 - \tau}
              = \dfrac{1 - p_y^{\tau - 1}}{\tau - 1} & \tau \ge 0,\ \tau \ne 1,
        \end{cases}

    so :math:`\tau = 0` is the sum-exponential loss :math:`u`, :math:`\tau = 1` cross-entropy,
    :math:`\tau = 1 + q \in (1, 2)` generalized cross-entropy :math:`(1 - p_y^q)/q` and
    :math:`\tau = 2` the mean absolute error :math:`1 - p_y`. Equivalently
    :math:`\Phi^\tau(u) = \int_0^u (1+t)^{-\tau}\,dt`. The value is computed from
    :math:`\log p_y` (``log_softmax``) as ``-expm1((tau - 1) log p_y) / (tau - 1)``, so it is
    finite for any finite logits when ``tau >= 1``. For ``tau < 1`` (e.g. sum-exp) the loss grows
    like :math:`e^{\text{margin}}`: with margins of thousands it overflows to ``inf``, as the
    mathematical value does in floating point.

    Args:
        logits: ``(B, K)`` scores, or ``(B, K, *)`` with the class axis at ``dim``.
        targets: integer labels of the logits' shape without the class axis.
        kind: ``"ce"`` (default), ``"gce"`` (uses ``q``), ``"mae"`` or ``"sum_exp"``.
        q: GCE exponent in (0, 1]; ``tau = 1 + q`` (default 0.7, Zhang & Sabuncu 2018).
        tau: explicit exponent ``tau >= 0``; overrides ``kind`` and ``q`` when given.
        dim: the class axis (default 1).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.

    Returns:
        The loss in the dtype of ``logits`` (computed in float32 for half precision).

    Example:
        >>> h = torch.tensor([[1.0, 0.0, -1.0]])
        >>> round(float(comp_sum_loss(h, torch.tensor([0]), tau=0.5)), 4)
        0.4521
    """
    _check_class_input(logits, targets, dim)
    t = _tau_of(kind, q, tau)
    if math.isinf(t):
        raise ValueError(f"tau: expected a finite value, got {tau}")
    loss = _phi_of_log_p(_log_p_target(logits, targets, dim), t)
    return reduce(loss, reduction).to(logits.dtype)


def generalized_cross_entropy(
    logits: Tensor,
    targets: Tensor,
    q: float = 0.7,
    dim: int = 1,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Generalized cross-entropy :math:`(1 - p_y^q)/q` (Zhang & Sabuncu, NeurIPS 2018).

    The comp-sum loss with :math:`\tau = 1 + q`; ``q -> 0`` gives cross-entropy and ``q = 1`` the
    MAE :math:`1 - p_y`. See :func:`comp_sum_loss`.

    Args:
        logits: (B, K) scores (class axis ``dim``).
        targets: (B,) integer labels.
        q: exponent in (0, 1] (default 0.7).
        dim: the class axis.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    q = check_number(q, "q", low=0.0, high=1.0, low_inclusive=False)
    return comp_sum_loss(logits, targets, tau=1.0 + q, dim=dim, reduction=reduction)


class CompSumLoss(nn.Module):
    """Module form of :func:`comp_sum_loss` (``kind``, ``q``, ``tau``, ``dim``, ``reduction``)."""

    def __init__(
        self,
        kind: CompSumKind = "ce",
        q: float = 0.7,
        tau: float | None = None,
        dim: int = 1,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.tau = _tau_of(kind, q, tau)
        self.dim = dim
        self.reduction: Reduction = reduction

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return comp_sum_loss(logits, targets, tau=self.tau, dim=self.dim, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, reduction={self.reduction!r}"


def margin_vector_distance(logits_adv: Tensor, logits_clean: Tensor, targets: Tensor) -> Tensor:
    r"""Per-sample :math:`\|\bar\Delta_h(x', y) - \bar\Delta_h(x, y)\|_2` of the margin vectors.

    The margin vector is :math:`\bar\Delta_h(x, y) = (h(x, y) - h(x, y'))_{y' \in \mathcal Y}`, so

    .. math::

        \bar\Delta_h(x', y) - \bar\Delta_h(x, y) = (d_y - d_{y'})_{y'}, \qquad d = h(x') - h(x).

    It is 0 when :math:`x' = x` and invariant to adding a constant to all scores of either input.
    The norm uses a safe square root (zero gradient at 0).

    Args:
        logits_adv: (B, K) scores at the perturbed inputs.
        logits_clean: (B, K) scores at the clean inputs.
        targets: (B,) labels.

    Returns:
        (B,) distances in the dtype of ``logits_adv``.
    """
    check_tensor(logits_adv, "logits_adv", ndim=2, floating=True)
    check_tensor(logits_clean, "logits_clean", ndim=2, floating=True)
    check_same_shape(logits_adv, logits_clean, "logits_adv", "logits_clean")
    check_labels(targets, "targets", logits_adv.shape[1], logits_adv.shape[0])
    d = logits_adv.to(compute_dtype(logits_adv)) - logits_clean.to(compute_dtype(logits_adv))
    d_y = d.gather(1, targets.long().unsqueeze(1))
    diff = d_y - d
    sq = (diff * diff).sum(dim=1)
    positive = sq > 0
    safe = torch.where(positive, sq, torch.ones_like(sq))
    return torch.where(positive, safe.sqrt(), torch.zeros_like(sq)).to(logits_adv.dtype)


def adversarial_comp_sum_loss(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    targets: Tensor,
    kind: CompSumKind = "ce",
    q: float = 0.7,
    tau: float | None = None,
    nu: float = 1.0,
    rho: float = 1.0,
    epsilon: float = 0.1,
    step_size: float | None = None,
    steps: int = 10,
    init_std: float = 1e-3,
    clamp: tuple[float, float] | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    r"""Smooth adversarial comp-sum loss (ADV-COMP-SUM), with the inner max solved by L-inf PGD.

    .. math::

        \tilde\ell(h, x, y) = \ell_\tau(h/\rho, x, y)
            + \nu \max_{\|x' - x\|_\infty \le \epsilon}
              \|\bar\Delta_h(x', y) - \bar\Delta_h(x, y)\|_2 .

    The maximiser :math:`x'` is found TRADES-style without gradient to the model: start at
    ``x + init_std * N(0, 1)``, take ``steps`` signed-gradient ascent steps of ``step_size``
    (default ``2.5 * epsilon / steps``) on :func:`margin_vector_distance`, projecting to the
    epsilon-ball (and to ``clamp``, the data range, when given). The outer loss is then evaluated
    with gradient at the fixed :math:`x'`. The model's train/eval mode is left as it is.

    UNVERIFIED: the form above (the 1/rho scaling inside the comp-sum term, the L2 norm of the
    margin-vector difference, the PGD schedule) follows the spec's reading of the paper; the
    constants ``nu`` and ``rho`` used in the paper's experiments were not checked, so the defaults
    (1, 1) are placeholders. The paper's experiments use ``tau = 1`` (cross-entropy).

    Args:
        model: maps a batch of inputs to (B, K) scores.
        x: (B, ...) inputs.
        targets: (B,) labels.
        kind, q, tau: the comp-sum loss (see :func:`comp_sum_loss`).
        nu: weight of the smooth adversarial term (>= 0).
        rho: margin scale (> 0) dividing the scores in the comp-sum term.
        epsilon: L-inf radius (>= 0).
        step_size: PGD step (default ``2.5 * epsilon / steps``).
        steps: PGD iterations (>= 0; 0 keeps the random start).
        init_std: standard deviation of the random start.
        clamp: optional (low, high) range of valid inputs.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """
    check_tensor(x, "x", min_ndim=1, floating=True)
    nu = check_number(nu, "nu", low=0.0)
    rho = check_positive(rho, "rho")
    epsilon = check_number(epsilon, "epsilon", low=0.0)
    steps = check_int(steps, "steps", low=0)
    init_std = check_number(init_std, "init_std", low=0.0)
    alpha = (
        2.5 * epsilon / max(steps, 1)
        if step_size is None
        else check_positive(step_size, "step_size")
    )
    t = _tau_of(kind, q, tau)

    def project(z: Tensor) -> Tensor:
        z = torch.maximum(torch.minimum(z, x + epsilon), x - epsilon)
        if clamp is not None:
            z = z.clamp(clamp[0], clamp[1])
        return z

    check_autograd("adversarial_comp_sum_loss")
    with torch.no_grad():
        clean_ref = model(x).detach()
        check_tensor(clean_ref, "model(x)", ndim=2, floating=True)  # (B, K) scores
        check_labels(targets, "targets", clean_ref.shape[1], clean_ref.shape[0])
        x_adv = project(x.detach() + init_std * torch.randn_like(x))
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        with torch.enable_grad():
            dist = margin_vector_distance(model(x_adv), clean_ref, targets).sum()
            (grad,) = torch.autograd.grad(dist, x_adv)
        x_adv = project(x_adv.detach() + alpha * grad.sign())
    x_adv = x_adv.detach()
    logits_clean = model(x)
    logits_adv = model(x_adv)
    base = comp_sum_loss(logits_clean / rho, targets, tau=t, reduction="none")
    reg = margin_vector_distance(logits_adv, logits_clean, targets)
    return reduce(base + nu * reg, reduction)


class AdversarialCompSumLoss(nn.Module):
    """Module form of :func:`adversarial_comp_sum_loss`; ``forward(model, x, targets)``."""

    def __init__(
        self,
        kind: CompSumKind = "ce",
        q: float = 0.7,
        tau: float | None = None,
        nu: float = 1.0,
        rho: float = 1.0,
        epsilon: float = 0.1,
        step_size: float | None = None,
        steps: int = 10,
        init_std: float = 1e-3,
        clamp: tuple[float, float] | None = None,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        self.tau = _tau_of(kind, q, tau)
        self.nu = check_number(nu, "nu", low=0.0)
        self.rho = check_positive(rho, "rho")
        self.epsilon = check_number(epsilon, "epsilon", low=0.0)
        self.step_size = step_size
        self.steps = check_int(steps, "steps", low=0)
        self.init_std = init_std
        self.clamp = clamp
        self.reduction: Reduction = reduction

    def forward(self, model: Callable[[Tensor], Tensor], x: Tensor, targets: Tensor) -> Tensor:
        return adversarial_comp_sum_loss(
            model,
            x,
            targets,
            tau=self.tau,
            nu=self.nu,
            rho=self.rho,
            epsilon=self.epsilon,
            step_size=self.step_size,
            steps=self.steps,
            init_std=self.init_std,
            clamp=self.clamp,
            reduction=self.reduction,
        )
