"""Shared helpers of :mod:`inforeg.ot`: the result type and marginal/cost validation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from inforeg.core.checks import check_probabilities, check_tensor, get_checks
from inforeg.core.dtypes import compute_dtype

__all__ = ["OTResult"]


@dataclass
class OTResult:
    """What an OT solver returns.

    Attributes:
        plan: transport plan, shape ``(*batch, n, m)``.
        value: optimal value of the solver's objective, shape ``batch`` (see each solver's
            docstring for which objective: regularised cost, not the linear cost ``<P, C>``).
        f: dual potential on the first marginal, shape ``(*batch, n)`` (in cost units).
        g: dual potential on the second marginal, shape ``(*batch, m)`` (in cost units).
        n_iter: number of iterations run (for a batch, the most that any of its problems ran).
        converged: whether the stopping criterion was met before ``max_iter`` (for a batch, by
            every problem).
    """

    plan: Tensor
    value: Tensor
    f: Tensor
    g: Tensor
    n_iter: int
    converged: bool


def prepare_problem(
    a: Tensor | None, b: Tensor | None, cost: Tensor, normalize: bool
) -> tuple[Tensor, Tensor, Tensor, torch.dtype]:
    """Validate and broadcast ``(a, b, cost)``; returns them in the working dtype + input dtype.

    ``a`` is ``(*batch_a, n)``, ``b`` is ``(*batch_b, m)``, ``cost`` is ``(*batch_c, n, m)``;
    batch shapes broadcast. ``None`` marginals are uniform. Non-negativity and unit mass are
    checked in ``"full"`` mode only (they need a host sync); ``normalize=True`` divides by the sum.
    ``b`` is then rescaled to the mass of ``a`` (:func:`_mass_ratio`).

    Example:
        Uniform ``a`` and a shared ``b`` broadcast to the cost's batch of four 3 x 2 problems.

        >>> a, b, cost, dtype = prepare_problem(None, torch.tensor([0.25, 0.75]), torch.zeros(4, 3, 2), False)
        >>> a.shape, b[0], cost.shape, dtype
        (torch.Size([4, 3]), tensor([0.2500, 0.7500]), torch.Size([4, 3, 2]), torch.float32)
    """
    check_tensor(cost, "cost", min_ndim=2, floating=True)
    n, m = cost.shape[-2], cost.shape[-1]
    # Uniform weights in the working dtype: 1/3 rounded to bfloat16 sums to 1.002, an
    # unbalanced problem whose dual potentials diverge.
    work = compute_dtype(cost)
    # the result dtype follows the inputs given (default weights take the cost's dtype)
    in_dtype = torch.promote_types(getattr(a, "dtype", cost.dtype), getattr(b, "dtype", cost.dtype))
    in_dtype = torch.promote_types(in_dtype, cost.dtype)
    if a is None:
        a = torch.full((n,), 1.0 / n, dtype=work, device=cost.device)
    if b is None:
        b = torch.full((m,), 1.0 / m, dtype=work, device=cost.device)
    check_tensor(a, "a", min_ndim=1, floating=True)
    check_tensor(b, "b", min_ndim=1, floating=True)
    if get_checks() != "off":
        if a.shape[-1] != n:
            raise ValueError(
                f"a: expected {n} entries to match cost of shape {tuple(cost.shape)}, "
                f"got shape {tuple(a.shape)}"
            )
        if b.shape[-1] != m:
            raise ValueError(
                f"b: expected {m} entries to match cost of shape {tuple(cost.shape)}, "
                f"got shape {tuple(b.shape)}"
            )
    try:
        batch = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1], cost.shape[:-2])
    except RuntimeError as exc:
        raise ValueError(
            f"cost: batch shapes of a {tuple(a.shape[:-1])}, b {tuple(b.shape[:-1])} and cost "
            f"{tuple(cost.shape[:-2])} do not broadcast"
        ) from exc
    dt = compute_dtype(a, b, cost)
    a, b, cost = a.to(dt), b.to(dt), cost.to(dt)
    if normalize:
        if get_checks() == "full" and (bool((a < 0).any()) or bool((b < 0).any())):
            raise ValueError("a, b: normalize=True needs non-negative weights")
        a = a / a.sum(-1, keepdim=True)
        b = b / b.sum(-1, keepdim=True)
    else:
        check_probabilities(a, "a", dim=-1, atol=1e-5 if dt == torch.float64 else 1e-4)
        check_probabilities(b, "b", dim=-1, atol=1e-5 if dt == torch.float64 else 1e-4)
    b = b * _mass_ratio(a, b)
    a = a.expand(*batch, n)
    b = b.expand(*batch, m)
    cost = cost.expand(*batch, n, m)
    return a, b, cost, in_dtype


def _mass_ratio(a: Tensor, b: Tensor) -> Tensor:
    """``sum(a) / sum(b)`` per problem (1 where ``b`` has no mass), detached: the factor that gives
    ``b`` the mass of ``a``.

    The balanced problem needs equal masses. Weights that each summed to one before rounding to
    bfloat16 differ in mass by up to ~1e-3, and even 1e-6 in float64 is enough: the dual
    objectives of smooth and sparse OT are then unbounded (the potentials run off along
    ``(alpha + t, beta - t)``; a bfloat16 problem returned a zero plan and a value of 1e8) and
    Sinkhorn never meets its tolerance. POT's ``emd`` rescales ``b`` in the same way. Detached,
    so that a gradient with respect to ``b`` stays the dual potential (times this factor).

    Example:
        >>> _mass_ratio(torch.tensor([0.5, 0.5]), torch.tensor([0.25, 0.5]))
        tensor([1.3333])
    """
    mass_a, mass_b = a.detach().sum(-1, keepdim=True), b.detach().sum(-1, keepdim=True)
    return torch.where(mass_b > 0, mass_a / mass_b, torch.ones_like(mass_b))


def log_weights(w: Tensor) -> Tensor:
    """``log w`` with ``-inf`` and a zero gradient (not ``0 * inf = NaN``) where ``w == 0``.

    Example:
        >>> w = torch.tensor([0.5, 0.0], requires_grad=True)
        >>> log_weights(w).exp().sum().backward()
        >>> w.grad
        tensor([1., 0.])
    """
    positive = w > 0
    return torch.where(positive, torch.log(torch.where(positive, w, 1.0)), float("-inf"))
