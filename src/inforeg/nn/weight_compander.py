r"""Weight compander: a bounded reparameterisation that steers weights away from zero.

Cakaj, Mehnert, Yang, "Weight Compander: A Simple Weight Reparameterization for
Regularization", IJCNN 2023, arXiv 2306.16993. No authors' code was released. Checked against
the authors' PDF (Sec. III; ``rinorcakaj/rinorcakaj.github.io``, ``files/WC_IJCNN_2023.pdf``):

- Eq. (1): every weight of the network is :math:`w = \psi(v) = a \arctan(v / b)` with
  :math:`a, b > 0`; batch-norm weights and biases are not reparameterised.
- Eq. (4): the latent weights start at :math:`v = b \tan(w / a)`, so the network keeps its usual
  initialisation (this needs :math:`|w| < a\pi/2`; the paper works with :math:`a, b \ge 0.5`).
- :math:`a, b` are hyper-parameters shared by the network, grid-searched per model over
  :math:`\{0.5, \dots, 1.0\}^2` (Table I: e.g. ResNet18 on CIFAR-10 uses a = 1.0, b = 0.6).
  The defaults here, a = b = 1, are the curve of the paper's Fig. 2, not a tuned value.
- Sec. III-B learns :math:`a, b` by SGD, shared by the network ("coarse") or per layer ("fine",
  the one reported); they are learned directly, without a positivity constraint.
- Weight decay: with fixed :math:`a, b` it acts on the effective weights :math:`w = \psi(v)`, not
  on :math:`v`; with learned :math:`a, b` it acts on :math:`v` only, not on :math:`a, b`.
- Optimiser: the experiments use SGD with momentum. Adam rescales the gradient and so undoes
  part of the effect; for adaptive optimisers the paper uses Powerpropagation's modified step
  (the adaptive step of :math:`\partial L/\partial w`, then times :math:`\psi'(v)`), which is not
  part of this module.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from inforeg.core.checks import check_broadcastable, check_positive, check_tensor, get_checks
from inforeg.core.dtypes import compute_dtype

__all__ = ["WeightCompander", "apply_weight_compander", "compand"]


def _positive_param(p: float | Tensor, name: str, v: Tensor) -> float | Tensor:
    if not isinstance(p, Tensor):
        return check_positive(p, name)
    check_tensor(p, name, floating=True)
    check_broadcastable(p, name, v, "v")
    if get_checks() == "full" and bool((p <= 0).any()):
        raise ValueError(f"{name}: expected positive values, got min {float(p.min())}")
    return p


def compand(v: Tensor, a: float | Tensor = 1.0, b: float | Tensor = 1.0) -> Tensor:
    r"""The weight compander :math:`\psi(v) = a \arctan(v / b)` (Eq. 1 of the paper).

    .. math::

        \psi(v) = a \arctan\frac{v}{b}, \qquad
        \psi'(v) = \frac{a}{b\,(1 + v^2 / b^2)}, \qquad
        |\psi(v)| < \frac{a\pi}{2}.

    Odd and strictly increasing. The slope is largest at :math:`v = 0` (:math:`a/b`) and falls
    off for large :math:`|v|`, so small weights move faster than large ones, and every weight is
    bounded by :math:`a\pi/2`.

    Args:
        v: latent weights, any shape.
        a: :math:`a > 0`, the bound's scale: a number or a floating tensor broadcastable to
            ``v`` (default 1; the paper tunes it per model in [0.5, 1]).
        b: :math:`b > 0`, the stretch along :math:`v`: a number or a floating tensor
            broadcastable to ``v`` (default 1; likewise tuned in [0.5, 1]). Tensor values of
            ``a`` and ``b`` are checked for positivity under ``inforeg.set_checks("full")`` only
            (one sync).

    Returns:
        :math:`\psi(v)` in ``v``'s dtype (computed in float32 for half-precision input).

    Example:
        >>> compand(torch.tensor([-1.0, 0.0, 0.5, 2.0], dtype=torch.float64))
        tensor([-0.7854,  0.0000,  0.4636,  1.1071], dtype=torch.float64)
    """
    check_tensor(v, "v", floating=True, nonempty=False)
    a = _positive_param(a, "a", v)
    b = _positive_param(b, "b", v)
    dtype = compute_dtype(v, *(p for p in (a, b) if isinstance(p, Tensor)))
    a_, b_ = (p.to(dtype) if isinstance(p, Tensor) else p for p in (a, b))
    return (a_ * torch.atan(v.to(dtype) / b_)).to(v.dtype)


def _inverse(w: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """``v`` with ``compand(v, a, b) = w`` (Eq. 4); ``w`` must lie inside ``(-a pi/2, a pi/2)``."""
    dtype = compute_dtype(w, a, b)
    angle = w.to(dtype) / a.to(dtype)
    if bool((angle.abs() >= math.pi / 2).any()):  # one sync, at registration only
        bound = float(a) * math.pi / 2
        raise ValueError(
            f"w: the compander's weights lie in (-a pi/2, a pi/2) = (-{bound:.4g}, {bound:.4g}), "
            f"got max |w| = {float(w.abs().max()):.4g}; use a larger a"
        )
    return (b.to(dtype) * torch.tan(angle)).to(w.dtype)


class WeightCompander(nn.Module):
    r"""Weight compander as a ``torch.nn.utils.parametrize`` parametrisation; see :func:`compand`.

    Register it on a layer's weight::

        parametrize.register_parametrization(layer, "weight", WeightCompander(a=1.0, b=0.6))

    (or use :func:`apply_weight_compander` for a whole model). The layer then stores the latent
    weights :math:`v` (``layer.parametrizations.weight.original``) and uses
    :math:`w = a\arctan(v/b)`; :meth:`right_inverse` makes the registration keep the layer's
    effective weights (:math:`v = b\tan(w/a)`, Eq. 4) and raises if a weight is not below
    :math:`a\pi/2` in magnitude.

    :math:`a, b` are per-layer scalars: buffers by default (the paper's method, fixed
    hyper-parameters), ``nn.Parameter`` with ``learnable=True`` (the paper's Sec. III-B, learned
    directly as there, with no positivity constraint). Either way they follow ``.to()`` and
    ``state_dict()``. Weight decay as in the paper: with fixed :math:`a, b`, leave the latent
    weights out of the optimiser's ``weight_decay`` and add
    :math:`\tfrac{\lambda}{2}\sum\|w\|^2` of the effective weights (``layer.weight``) to the loss;
    with ``learnable=True``, decay the latent weights and keep ``a``, ``b`` out of it.

    Args:
        a: :math:`a > 0` (default 1).
        b: :math:`b > 0` (default 1).
        learnable: learn :math:`a` and :math:`b` (default False: fixed, as in the paper's
            main method).

    Example:
        >>> layer = nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[0.5, -1.0]]))
        >>> _ = parametrize.register_parametrization(layer, "weight", WeightCompander())
        >>> layer.weight.detach()
        tensor([[ 0.5000, -1.0000]])
        >>> layer.parametrizations.weight.original.detach()
        tensor([[ 0.5463, -1.5574]])
    """

    a: Tensor
    b: Tensor

    def __init__(self, a: float = 1.0, b: float = 1.0, learnable: bool = False) -> None:
        super().__init__()
        values = {"a": check_positive(a, "a"), "b": check_positive(b, "b")}
        if not isinstance(learnable, bool):
            raise TypeError(f"learnable: expected a bool, got {type(learnable).__name__}")
        for name, value in values.items():
            t = torch.tensor(value)
            if learnable:
                setattr(self, name, nn.Parameter(t))
            else:
                self.register_buffer(name, t)

    def forward(self, v: Tensor) -> Tensor:
        return compand(v, self.a, self.b)

    def right_inverse(self, w: Tensor) -> Tensor:
        """Latent weights whose companded value is ``w`` (used at registration)."""
        check_tensor(w, "w", floating=True, nonempty=False)
        return _inverse(w, self.a.detach(), self.b.detach())

    def extra_repr(self) -> str:
        return f"learnable={isinstance(self.a, nn.Parameter)}"


def apply_weight_compander(
    model: nn.Module,
    layer_types: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d),
    **kwargs: float | bool,
) -> nn.Module:
    """Register one :class:`WeightCompander` (built with ``**kwargs``) on the ``weight`` of every
    layer of ``model`` that is an instance of ``layer_types``; return ``model``.

    One compander per layer: with ``learnable=True`` this is the paper's "fine" version. Effective
    weights are unchanged by the registration. Layers already parametrised on ``weight`` are
    skipped; a model with no matching layer raises ``ValueError``.

    Example:
        >>> net = apply_weight_compander(nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
        >>> sum(isinstance(m, WeightCompander) for m in net.modules())
        2
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected an nn.Module, got {type(model).__name__}")
    if not isinstance(layer_types, tuple) or not all(
        isinstance(t, type) and issubclass(t, nn.Module) for t in layer_types
    ):
        raise TypeError(f"layer_types: expected a tuple of nn.Module classes, got {layer_types!r}")
    layers = [
        m
        for m in model.modules()
        if isinstance(m, layer_types) and isinstance(getattr(m, "weight", None), Tensor)
    ]
    if not layers:
        names = ", ".join(t.__name__ for t in layer_types)
        raise ValueError(f"model: expected at least one layer of type {names} with a weight")
    for layer in layers:
        if not parametrize.is_parametrized(layer, "weight"):
            parametrize.register_parametrization(layer, "weight", WeightCompander(**kwargs))  # type: ignore[arg-type]
    return model
