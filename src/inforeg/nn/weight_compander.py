r"""Weight compander: a nonlinear reparameterisation that bounds weights and pushes them from 0.

Cakaj, Mehnert, Yang, "Weight Compander: A Simple Weight Reparameterization for
Regularization", 2023, arXiv 2306.16993. No authors' code exists.

**UNVERIFIED**: the paper's exact compander function could not be read. Its abstract says each
weight is replaced by a nonlinear function of a latent weight that limits the magnitude and
pushes it away from zero, with learnable hyper-parameters, combined with ordinary weight decay.
inforeg's default is the :math:`\mu`-law compander below (our choice, labelled as such); a
candidate to check when the paper can be read is :math:`\mathrm{sign}(v)((|v|+\beta)^\alpha -
\beta^\alpha)`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

from inforeg.core.checks import (
    check_broadcastable,
    check_number,
    check_positive,
    check_tensor,
    get_checks,
)
from inforeg.core.dtypes import compute_dtype

__all__ = ["WeightCompander", "apply_weight_compander", "compand"]

# Below this value of mu*|v| the curve uses its linear term mu*v, whose error there is
# (mu|v|)^2/2 < 1e-24 relative: it gives the exact slope at v = 0, where the autograd of
# sign(v) * log1p(mu|v|) would be 0 (the subgradient of |v| at 0).
_LINEAR_BELOW = 1e-12


def _tensor_param(p: Tensor, name: str, v: Tensor) -> None:
    check_tensor(p, name, floating=True)
    check_broadcastable(p, name, v, "v")


def compand(v: Tensor, scale: float | Tensor = 1.0, mu: float | Tensor = 10.0) -> Tensor:
    r""":math:`\mu`-law compander of latent weights (inforeg's UNVERIFIED default, see module).

    .. math::

        f(v) = s\,\mathrm{sign}(v)\,\frac{\log(1 + \mu |v|)}{\log(1 + \mu)}, \qquad
        f'(v) = \frac{s\,\mu}{(1 + \mu|v|)\log(1+\mu)}, \qquad
        f'(0) = \frac{s\,\mu}{\log(1+\mu)}.

    Odd, strictly increasing (for s > 0), logarithmic growth; for s = 1 the fixed points are
    :math:`|v| \in \{0, 1\}`, :math:`|f(v)| > |v|` inside (small weights pushed away from zero)
    and :math:`|f(v)| < |v|` beyond (large weights compressed). The slope at exactly
    :math:`v = 0` is :math:`s\mu/\log(1+\mu)` (4.1703 for the defaults), not 0: near zero the
    linear term :math:`s\mu v/\log(1+\mu)` is used, so exactly-zero weights still train.
    :math:`\mu \to 0` gives :math:`f(v) = s v`.

    Args:
        v: latent weights, any shape.
        scale: :math:`s`, a finite number or a floating tensor broadcastable to ``v``
            (UNVERIFIED default 1).
        mu: :math:`\mu > 0`, a number or a floating tensor broadcastable to ``v``
            (UNVERIFIED default 10). Tensor values are checked for positivity under
            ``inforeg.set_checks("full")`` only (one sync).

    Returns:
        :math:`f(v)` in ``v``'s dtype (computed in float32 for half-precision input).

    Example:
        >>> compand(torch.tensor([-1.0, 0.0, 0.5, 2.0], dtype=torch.float64))
        tensor([-1.0000,  0.0000,  0.7472,  1.2697], dtype=torch.float64)
    """
    check_tensor(v, "v", floating=True, nonempty=False)
    tensors = [v]
    if isinstance(scale, Tensor):
        _tensor_param(scale, "scale", v)
        tensors.append(scale)
    else:
        scale = check_number(scale, "scale")
    if isinstance(mu, Tensor):
        _tensor_param(mu, "mu", v)
        if get_checks() == "full" and bool((mu <= 0).any()):
            raise ValueError(f"mu: expected positive values, got min {float(mu.min())}")
        tensors.append(mu)
    else:
        mu = check_positive(mu, "mu")
    dtype = compute_dtype(*tensors)
    vc = v.to(dtype)
    if isinstance(mu, Tensor):
        mu = mu.to(dtype)
        denom: float | Tensor = torch.log1p(mu)
    else:
        denom = math.log1p(mu)
    if isinstance(scale, Tensor):
        scale = scale.to(dtype)
    arg = mu * vc.abs()
    curve = torch.where(arg < _LINEAR_BELOW, mu * vc, torch.sign(vc) * torch.log1p(arg))
    return (scale * curve / denom).to(v.dtype)


def _inverse(w: Tensor, scale: Tensor, mu: Tensor) -> Tensor:
    """``v`` with ``compand(v, scale, mu) = w`` (for any non-zero scale)."""
    dtype = compute_dtype(w, scale, mu)
    level = w.to(dtype) * torch.log1p(mu.to(dtype)) / scale.to(dtype)
    return (torch.sign(level) * torch.expm1(level.abs()) / mu.to(dtype)).to(w.dtype)


class WeightCompander(nn.Module):
    r"""Weight compander as a ``torch.nn.utils.parametrize`` parametrisation; see :func:`compand`.

    Register it on a layer's weight::

        parametrize.register_parametrization(layer, "weight", WeightCompander())

    (or use :func:`apply_weight_compander` for a whole model). The layer then stores the latent
    weights :math:`v` (``layer.parametrizations.weight.original``) and uses
    :math:`w = f(v)`; :meth:`right_inverse` makes the registration keep the layer's initial
    effective weights (:math:`v = f^{-1}(w) = \mathrm{sign}(w)(e^{|w|\log(1+\mu)/|s|} - 1)/\mu`,
    which overflows float32 only for :math:`|w| > 88|s|/\log(1+\mu)`, 36.7 for the defaults).

    :math:`s` is the parameter ``scale``; :math:`\mu` is kept positive as
    ``softplus(raw_mu)`` (property ``mu``); both are per-layer scalars, ``nn.Parameter`` when
    ``learnable`` (UNVERIFIED default: learned), buffers otherwise, so they follow ``.to()`` and
    ``state_dict()``. Ordinary weight decay then acts on the latent weights; keep ``scale`` and
    ``raw_mu`` out of it (a parameter group with ``weight_decay=0``).

    Args:
        scale: initial :math:`s`, finite and non-zero (UNVERIFIED default 1).
        mu: initial :math:`\mu > 0` (UNVERIFIED default 10).
        learnable: learn :math:`s` and :math:`\mu` (default) or keep them fixed.

    Example:
        >>> layer = nn.Linear(2, 1)
        >>> with torch.no_grad():
        ...     _ = layer.weight.copy_(torch.tensor([[0.5, -1.0]]))
        >>> _ = parametrize.register_parametrization(layer, "weight", WeightCompander())
        >>> layer.weight.detach()
        tensor([[ 0.5000, -1.0000]])
        >>> layer.parametrizations.weight.original.detach()
        tensor([[ 0.2317, -1.0000]])
    """

    scale: Tensor
    raw_mu: Tensor

    def __init__(self, scale: float = 1.0, mu: float = 10.0, learnable: bool = True) -> None:
        super().__init__()
        s = check_number(scale, "scale")
        if s == 0.0:
            raise ValueError("scale: expected a non-zero number (the compander must be invertible)")
        m = check_positive(mu, "mu")
        if not isinstance(learnable, bool):
            raise TypeError(f"learnable: expected a bool, got {type(learnable).__name__}")
        raw = m + math.log(-math.expm1(-m))  # softplus^{-1}(m), stable for large m
        for name, value in (("scale", s), ("raw_mu", raw)):
            t = torch.tensor(value)
            if learnable:
                setattr(self, name, nn.Parameter(t))
            else:
                self.register_buffer(name, t)

    @property
    def mu(self) -> Tensor:
        """:math:`\\mu = \\mathrm{softplus}(\\text{raw\\_mu})`, floored at the dtype's tiny."""
        return F.softplus(self.raw_mu).clamp_min(torch.finfo(self.raw_mu.dtype).tiny)

    def forward(self, v: Tensor) -> Tensor:
        return compand(v, self.scale, self.mu)

    def right_inverse(self, w: Tensor) -> Tensor:
        """Latent weights whose companded value is ``w`` (used at registration)."""
        check_tensor(w, "w", floating=True, nonempty=False)
        return _inverse(w, self.scale.detach(), self.mu.detach())

    def extra_repr(self) -> str:
        return f"learnable={isinstance(self.scale, nn.Parameter)}"


def apply_weight_compander(
    model: nn.Module,
    layer_types: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv2d),
    **kwargs: float | bool,
) -> nn.Module:
    """Register one :class:`WeightCompander` (built with ``**kwargs``) on the ``weight`` of every
    layer of ``model`` that is an instance of ``layer_types``; return ``model``.

    Effective weights are unchanged by the registration. Layers already parametrised on
    ``weight`` are skipped; a model with no matching layer raises ``ValueError``.

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
