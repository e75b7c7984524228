r"""Learned proximal networks (LPN): the gradient of an input-convex network is a proximal operator.

Fang, Buchanan & Sulam, "What's in a Prior? Learned Proximal Networks for Inverse Problems",
ICLR 2024, arXiv 2310.14344. Authors' code: ``ZhenghanFang/learned-proximal-networks``
(``exps/laplacian/network.py`` for the vector network, ``lpn/utils/utils.py`` for the loss and the
gamma schedule, ``lpn/utils/invert_model/invert_cvx_gd.py`` and ``lpn/utils/prior.py`` for the
learned prior).

By a theorem of Gribonval & Nikolova, ``f = ∇ψ`` with ψ convex is the proximal operator of some
(possibly non-convex) function φ. An LPN parametrises ψ by an input-convex network, so its output
is a proximal operator by construction, and *proximal matching* (a loss that tends to a Dirac at
zero as γ → 0) trains it towards the MAP denoiser ``prox_{-log p}`` rather than the MMSE (L2) or
the posterior median (L1).

Where inforeg differs from the authors' code (all numerically equivalent unless stated):

- the vector network only (any ``dim``); the convolutional 28x28 network of ``lpn_mnist.py`` is not
  provided (flatten images, or build a convolutional ICNN with the same constraints);
- the constrained weights are clipped once at construction, so ψ is convex from the first forward
  (the code clips only after the first optimiser step);
- the forward never sets ``requires_grad`` on the caller's tensor (the code does), and builds the
  double-backward graph only when gradients are enabled;
- the loss works on the squared distance, ``1 - exp(-‖d‖²/γ²)``, not on ``sqrt(‖d‖²)`` squared:
  the same value, but a finite gradient at ``pred == target`` (the code's square root gives NaN
  there); the code names γ ``sigma``, inforeg ``gamma`` (σ is the noise level);
- :meth:`LearnedProximalNet.prior` computes with the inverse ``y`` everywhere (the code's
  ``prior.py`` evaluates the network at ``x`` for a returned field it does not use).
"""

from __future__ import annotations

from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.core.checks import (
    check_autograd,
    check_choice,
    check_int,
    check_number,
    check_positive,
    check_same_shape,
    check_tensor,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import reduce
from inforeg.core.types import Reduction

__all__ = [
    "ICNNPotential",
    "LearnedProximalNet",
    "ProximalMatchingLoss",
    "prox_matching_gamma",
    "proximal_matching_loss",
]


def _linear(layer: nn.Linear, x: Tensor) -> Tensor:
    """``layer(x)`` with the weights cast to ``x``'s dtype (float32 compute for half inputs)."""
    bias = None if layer.bias is None else layer.bias.to(x.dtype)
    return F.linear(x, layer.weight.to(x.dtype), bias)


class ICNNPotential(nn.Module):
    r"""Input-convex network ψ: R^dim → R, the potential of a learned proximal network.

    .. math::

        z_1 = s(W_0 y), \qquad z_{k+1} = s(W_k z_k + H_k y + b_k)\ (k = 1..L), \qquad
        \psi(y) = w_{\text{out}}^\top z_{L+1} + h_{\text{out}}^\top y + c + \alpha\|y\|^2,

    with :math:`s = \mathrm{Softplus}_\beta(t) = \log(1 + e^{\beta t})/\beta` (convex,
    increasing). ψ is convex whenever ``W_1..W_L`` and ``w_out`` are non-negative; they are clipped
    to 0 at construction and must be clipped again after every optimiser step
    (:meth:`clip_weights`), as the authors do. ``W_0``, the input skips ``H_k`` (which hold the
    biases ``b_k``) and ``h_out, c`` are free.

    Args:
        dim: input dimension.
        hidden: width of each hidden layer (1-D paper experiment: 50).
        layers: number of constrained hidden-to-hidden layers L (paper: 4; 0 allowed).
        beta: Softplus sharpness β > 0 (paper: 10).
        alpha: weight α ≥ 0 of the strongly convex term α‖y‖² (1-D: 0; MNIST: 0.01).

    Shape:
        ``forward(y)``: y (B, dim) → ψ (B,), in the dtype of ``y`` (float32 compute for half).

    Example:
        >>> net = ICNNPotential(2, hidden=3, layers=1)
        >>> net(torch.zeros(4, 2)).shape
        torch.Size([4])
    """

    def __init__(
        self, dim: int, hidden: int = 50, layers: int = 4, beta: float = 10.0, alpha: float = 0.0
    ) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim", low=1)
        self.hidden = check_int(hidden, "hidden", low=1)
        self.layers = check_int(layers, "layers", low=0)
        self.beta = check_positive(beta, "beta")
        self.alpha = check_number(alpha, "alpha", low=0.0)
        self.input_layer = nn.Linear(dim, hidden, bias=False)  # W_0 (free)
        self.hidden_layers = nn.ModuleList(  # W_1..W_L (non-negative)
            nn.Linear(hidden, hidden, bias=False) for _ in range(layers)
        )
        self.input_skips = nn.ModuleList(nn.Linear(dim, hidden) for _ in range(layers))  # H_k, b_k
        self.output_layer = nn.Linear(hidden, 1, bias=False)  # w_out (non-negative)
        self.output_skip = nn.Linear(dim, 1)  # h_out, c
        self.clip_weights()

    def constrained_weights(self) -> list[Tensor]:
        """The weights that must stay non-negative for ψ to be convex."""
        return [cast(nn.Linear, lay).weight for lay in self.hidden_layers] + [
            self.output_layer.weight
        ]

    @torch.no_grad()
    def clip_weights(self) -> None:
        """Clamp the constrained weights to ≥ 0 (call after every optimiser step)."""
        for w in self.constrained_weights():
            w.clamp_(min=0.0)

    @torch.no_grad()
    def init_weights(
        self, mean: float = -10.0, std: float = 0.1, generator: torch.Generator | None = None
    ) -> None:
        """Set the constrained weights to ``exp(N(mean, std²))`` (authors' image-model init;
        the 1-D experiment keeps PyTorch's default init, clipped)."""
        check_number(mean, "mean")
        check_number(std, "std", low=0.0)
        for w in self.constrained_weights():
            w.copy_(torch.randn(w.shape, generator=generator).mul_(std).add_(mean).exp_())

    def _check_input(self, y: Tensor, name: str) -> None:
        check_tensor(y, name, ndim=2, floating=True)
        if y.shape[1] != self.dim:
            raise ValueError(f"{name}: expected shape (B, {self.dim}), got {tuple(y.shape)}")

    def _compute(self, y: Tensor) -> Tensor:
        """ψ(y) for ``y`` already in the compute dtype (no checks)."""
        act = lambda t: F.softplus(t, beta=self.beta)  # noqa: E731
        z = act(_linear(self.input_layer, y))
        for core, skip in zip(self.hidden_layers, self.input_skips, strict=True):
            z = act(_linear(cast(nn.Linear, core), z) + _linear(cast(nn.Linear, skip), y))
        psi = (_linear(self.output_layer, z) + _linear(self.output_skip, y)).squeeze(1)
        if self.alpha:
            psi = psi + self.alpha * y.pow(2).sum(1)
        return psi

    def compute_dtype(self, y: Tensor) -> torch.dtype:
        """The dtype ψ is evaluated in for input ``y``."""
        return compute_dtype(y, self.input_layer.weight)

    def forward(self, y: Tensor) -> Tensor:
        self._check_input(y, "y")
        return self._compute(y.to(self.compute_dtype(y))).to(y.dtype)


class LearnedProximalNet(nn.Module):
    r"""Learned proximal network: :math:`f(y) = \nabla_y \psi(y)` for an input-convex ψ.

    .. math::

        f(y) = \nabla\psi(y) = \operatorname{prox}_{\varphi}(y)
             = \arg\min_x \tfrac12\|y - x\|^2 + \varphi(x), \qquad
        \varphi(x) = \langle y, x\rangle - \tfrac12\|x\|^2 - \psi(y)\ \text{ at } y = f^{-1}(x),

    ψ being :class:`ICNNPotential` (φ is defined up to a constant, on the range of f). The
    gradient is taken by autograd with ``create_graph=True`` when gradients are enabled, so f is
    differentiable in its parameters (training) and in ``y`` (Jacobians, unrolled solvers); under
    ``torch.no_grad()`` the result carries no graph. Its Jacobian is the Hessian of ψ: symmetric
    positive semi-definite.

    Paper: Fang, Buchanan & Sulam, "What's in a Prior? Learned Proximal Networks for Inverse
    Problems", ICLR 2024, arXiv 2310.14344; code ``ZhenghanFang/learned-proximal-networks``
    (differences listed in the module docstring).

    Training as in the paper: L1 (or L2) pre-training, then :class:`ProximalMatchingLoss` with γ
    decreasing (:func:`prox_matching_gamma`), calling :meth:`clip_weights` after every step.
    1-D Laplace experiment of the paper: ``dim=1, hidden=50, layers=4, beta=10, alpha=0``, batch
    2000, noise σ = 1, Adam; MNIST: a convolutional ψ, ``alpha=0.01`` (not provided here).

    Args:
        dim, hidden, layers, beta, alpha: those of :class:`ICNNPotential`.

    Shape:
        ``forward(y)``: (B, dim) → (B, dim), in ``y``'s dtype.

    Example:
        >>> lpn = LearnedProximalNet(1, hidden=4, layers=1, alpha=0.5)
        >>> with torch.no_grad():
        ...     for p in lpn.parameters():
        ...         _ = p.zero_()
        >>> lpn(torch.tensor([[2.0]])).detach()  # ψ = α y² + const, so f(y) = 2 α y
        tensor([[2.]])
    """

    def __init__(
        self, dim: int, hidden: int = 50, layers: int = 4, beta: float = 10.0, alpha: float = 0.0
    ) -> None:
        super().__init__()
        self.icnn = ICNNPotential(dim, hidden=hidden, layers=layers, beta=beta, alpha=alpha)

    @property
    def dim(self) -> int:
        return self.icnn.dim

    def potential(self, y: Tensor) -> Tensor:
        """ψ(y), shape (B,)."""
        return self.icnn(y)

    def clip_weights(self) -> None:
        """Clamp the constrained weights to ≥ 0 (call after every optimiser step)."""
        self.icnn.clip_weights()

    def init_weights(
        self, mean: float = -10.0, std: float = 0.1, generator: torch.Generator | None = None
    ) -> None:
        """Constrained weights ← ``exp(N(mean, std²))`` (see :meth:`ICNNPotential.init_weights`)."""
        self.icnn.init_weights(mean, std, generator)

    def _gradient(self, y: Tensor, create_graph: bool) -> Tensor:
        check_autograd("LearnedProximalNet")
        with torch.enable_grad():
            y_in = y if y.requires_grad else y.detach().requires_grad_(True)
            psi = self.icnn._compute(y_in.to(self.icnn.compute_dtype(y)))
            (grad,) = torch.autograd.grad(psi.sum(), y_in, create_graph=create_graph)
        return grad

    def forward(self, y: Tensor) -> Tensor:
        self.icnn._check_input(y, "y")
        return self._gradient(y, create_graph=torch.is_grad_enabled())

    @torch.no_grad()
    def invert(
        self,
        x: Tensor,
        method: Literal["gd", "mse"] = "gd",
        steps: int = 2000,
        lr: float = 1e-2,
    ) -> Tensor:
        r"""Find ``y`` with ``f(y) ≈ x`` by Adam from ``y = 0`` (not differentiable).

        ``"gd"`` minimises the convex :math:`\psi(y) - \langle x, y\rangle` (gradient
        ``f(y) - x``; authors' ``invert_cvx_gd``, 2000 steps at lr 1e-2); ``"mse"`` minimises
        :math:`\|f(y) - x\|^2` (their 1-D notebook, 1000 steps), which needs second derivatives.
        A fixed number of steps, no stopping test, so no host synchronisation.
        """
        self.icnn._check_input(x, "x")
        check_choice(method, "method", ("gd", "mse"))
        check_int(steps, "steps", low=0)
        check_positive(lr, "lr")
        target = x.to(self.icnn.compute_dtype(x))
        y = torch.zeros_like(target, requires_grad=True)
        opt = torch.optim.Adam([y], lr=lr)
        for _ in range(steps):
            if method == "gd":
                g = self._gradient(y, create_graph=False) - target
            else:
                with torch.enable_grad():
                    resid = self._gradient(y, create_graph=True) - target
                    (g,) = torch.autograd.grad(resid.pow(2).sum(), y)
            y.grad = g
            opt.step()
        return y.detach().to(x.dtype)

    @torch.no_grad()
    def prior(
        self,
        x: Tensor,
        inverse: Literal["gd", "mse"] = "gd",
        steps: int = 2000,
        lr: float = 1e-2,
    ) -> Tensor:
        r"""The learned regulariser φ(x), up to an additive constant (not differentiable).

        :math:`\varphi(x) = \langle y, x\rangle - \tfrac12\|x\|^2 - \psi(y)` with
        ``y = self.invert(x, inverse, steps, lr)``. Exact only where ``x`` lies in the range of
        f and the inversion converged; shape (B,).
        """
        y = self.invert(x, method=inverse, steps=steps, lr=lr)
        dtype = self.icnn.compute_dtype(x)
        xc, yc = x.to(dtype), y.to(dtype)
        phi = (xc * yc).sum(1) - 0.5 * xc.pow(2).sum(1) - self.icnn._compute(yc)
        return phi.to(x.dtype)


def proximal_matching_loss(
    pred: Tensor, target: Tensor, gamma: float, reduction: Reduction = "mean"
) -> Tensor:
    r"""Proximal matching loss: a smoothed 0-1 loss on the per-sample distance.

    .. math::

        \ell_b = 1 - \exp\!\big(-\|\hat x_b - x_b\|_2^2 / \gamma^2\big),

    the L2 norm taken over all non-batch dimensions of a sample. As γ → 0 its minimiser over
    denoisers tends to the MAP estimate (the prox of -log p), which is what the paper's theorem
    needs; train with γ decreasing (:func:`prox_matching_gamma`). Computed as ``-expm1(-d²/γ²)``
    from the squared distance, so the gradient is finite at ``pred == target``.

    Args:
        pred: (B, ...) the network output ``f(y)``.
        target: the clean signal, same shape.
        gamma: width γ > 0 (paper, 1-D: 0.5 down to 0.1; MNIST: 17.92 down to 2.24).
        reduction: ``"mean"`` (default, the paper's), ``"sum"`` or ``"none"`` (shape (B,)).

    Returns:
        The loss in ``pred``'s dtype (float32 compute for half inputs).

    Example:
        >>> pred, target = torch.tensor([[3.0, 4.0]]), torch.zeros(1, 2)
        >>> proximal_matching_loss(pred, target, gamma=5.0)  # 1 - exp(-1)
        tensor(0.6321)
    """
    check_tensor(pred, "pred", min_ndim=1, floating=True)
    check_tensor(target, "target", min_ndim=1, floating=True)
    check_same_shape(pred, target, "pred", "target")
    g = check_positive(gamma, "gamma")
    dtype = compute_dtype(pred, target)
    diff = (pred.to(dtype) - target.to(dtype)).reshape(pred.shape[0], -1)
    loss = -torch.expm1(-diff.pow(2).sum(1) / (g * g))
    return reduce(loss, reduction).to(pred.dtype)


class ProximalMatchingLoss(nn.Module):
    """Module form of :func:`proximal_matching_loss`; set ``.gamma`` as the schedule moves.

    Args:
        gamma: width γ > 0.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def __init__(self, gamma: float, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.gamma = check_positive(gamma, "gamma")
        check_choice(reduction, "reduction", ("mean", "sum", "none"))
        self.reduction: Reduction = reduction

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, reduction={self.reduction!r}"

    def forward(self, pred: Tensor, target: Tensor) -> Tensor:
        return proximal_matching_loss(pred, target, self.gamma, self.reduction)


def prox_matching_gamma(
    step: int, total_steps: int, pretrain_steps: int, gamma_min: float, num_stages: int = 4
) -> float | None:
    r"""The authors' γ schedule for image training (``get_loss_hparams_and_lr``).

    .. math::

        \text{stage} = \min\!\Big(\Big\lfloor \frac{t - T_0}{\lfloor (T - T_0)/S\rfloor}
            \Big\rfloor,\ S - 1\Big), \qquad \gamma = \gamma_{\min}\, 2^{S - 1 - \text{stage}},

    and ``None`` for ``t < T_0`` (the L1 pre-training phase: mean absolute error, lr 1e-3; the
    code uses lr 1e-4 afterwards). MNIST: T = 40 000, T₀ = 20 000, S = 4,
    ``gamma_min = 0.08·sqrt(28·28) = 2.24``. Steps past ``total_steps`` stay at ``gamma_min``.

    Args:
        step: current step t ≥ 0.
        total_steps: T, with ``T - T0 >= num_stages``.
        pretrain_steps: T₀ ≥ 0.
        gamma_min: final γ > 0.
        num_stages: S ≥ 1, the number of halvings plus one.

    Example:
        >>> [prox_matching_gamma(t, 40_000, 20_000, 2.24) for t in (19_999, 20_000, 35_000)]
        [None, 17.92, 2.24]
    """
    check_int(step, "step", low=0)
    check_int(total_steps, "total_steps", low=1)
    check_int(pretrain_steps, "pretrain_steps", low=0)
    check_int(num_stages, "num_stages", low=1)
    g = check_positive(gamma_min, "gamma_min")
    per_stage = (total_steps - pretrain_steps) // num_stages
    if per_stage < 1:
        raise ValueError(
            f"total_steps: expected at least pretrain_steps + num_stages = "
            f"{pretrain_steps + num_stages}, got {total_steps}"
        )
    if step < pretrain_steps:
        return None
    stage = min((step - pretrain_steps) // per_stage, num_stages - 1)
    return g * 2.0 ** (num_stages - 1 - stage)
