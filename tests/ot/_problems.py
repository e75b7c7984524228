"""Known-answer OT problems and a check of every OTResult field (after geomloss's tests).

geomloss's ``tests/generators`` build problems whose answer is known (Diracs, permutations,
Gaussians) and ``check_ot_result`` inspects every field of a result; these are the inforeg
versions for the solvers that return :class:`inforeg.ot.OTResult`.
"""

from __future__ import annotations

import math

import torch

from inforeg.ot import OTResult
from tests._helpers import assert_close

D64 = torch.float64


def _cloud_cost(n: int, m: int, g: torch.Generator, batch: tuple[int, ...]) -> torch.Tensor:
    """Squared distances between two 2-D Gaussian clouds (the second shifted by 0.5)."""
    x = torch.randn(*batch, n, 2, generator=g, dtype=D64)
    y = torch.randn(*batch, m, 2, generator=g, dtype=D64) + 0.5
    return torch.cdist(x, y) ** 2


def random_problem(
    n: int = 7, m: int = 5, seed: int = 0, batch: tuple[int, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random positive weights and the squared-distance cost of two 2-D Gaussian clouds."""
    g = torch.Generator().manual_seed(seed)
    c = _cloud_cost(n, m, g, batch)
    a = torch.rand(*batch, n, generator=g, dtype=D64) + 0.1
    b = torch.rand(*batch, m, generator=g, dtype=D64) + 0.1
    return a / a.sum(-1, keepdim=True), b / b.sum(-1, keepdim=True), c


def uniform_problem(
    n: int = 12, m: int = 10, seed: int = 0, batch: tuple[int, ...] = ()
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Uniform weights and the squared-distance cost of two 2-D clouds, divided by its maximum."""
    c = _cloud_cost(n, m, torch.Generator().manual_seed(seed), batch)
    a = torch.full((*batch, n), 1.0 / n, dtype=D64)
    b = torch.full((*batch, m), 1.0 / m, dtype=D64)
    return a, b, c / c.amax((-2, -1), keepdim=True)


def permutation_problem(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cost 0 on a random permutation and 1 elsewhere; returns ``(cost, optimal plan)``.

    With uniform weights the optimal (and, for small epsilon, the entropic) plan puts ``1/n``
    on the permutation.
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cost = torch.ones(n, n, dtype=D64)
    cost[torch.arange(n), perm] = 0.0
    plan = torch.zeros(n, n, dtype=D64)
    plan[torch.arange(n), perm] = 1.0 / n
    return cost, plan


def dirac_problem(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` weighted sources and one target: the plan is ``a`` and ``OT_eps = <a, c>``.

    The only coupling is ``a (x) delta``, whose KL to ``a (x) b`` is zero, so the entropic
    value equals the linear cost for every epsilon. Returns ``(a, b, cost)``.
    """
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, generator=g, dtype=D64) + 0.1
    return a / a.sum(), torch.ones(1, dtype=D64), torch.rand(n, 1, generator=g, dtype=D64)


def zero_weight_problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """5 sources and 4 targets with one zero weight on each side (a[1] = b[1] = 0), squared
    Euclidean cost, float64; ``a`` and ``b`` require gradients. Returns ``(a, b, cost)``."""
    g = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(5, 2, generator=g, dtype=D64),
        torch.randn(4, 2, generator=g, dtype=D64),
    )
    a = torch.tensor([0.3, 0.0, 0.2, 0.25, 0.25], dtype=D64, requires_grad=True)
    b = torch.tensor([0.5, 0.0, 0.25, 0.25], dtype=D64, requires_grad=True)
    return a, b, torch.cdist(x, y) ** 2


def gaussian_1d_problem(
    m1: float, s1: float, m2: float, s2: float, n: int = 400, width: float = 7.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """N(m1, s1^2) and N(m2, s2^2) discretised on regular grids of ``n`` points (``width`` sds).

    Returns ``(x, a, y, b, cost)`` with the weights proportional to the densities and the cost
    :math:`|x - y|^2`.
    """
    t = torch.linspace(-width, width, n, dtype=D64)
    w = torch.exp(-0.5 * t * t)
    w = w / w.sum()
    x, y = m1 + s1 * t, m2 + s2 * t
    return x, w, y, w.clone(), (x[:, None] - y[None, :]) ** 2


def gaussian_1d_entropic_ot(m1: float, s1: float, m2: float, s2: float, eps: float) -> float:
    r"""Closed form of :math:`\min_P \int |x-y|^2 dP + \varepsilon\,\mathrm{KL}(P\,\|\,\alpha\otimes\beta)`
    between 1-D Gaussians (Janati et al., NeurIPS 2020, arXiv:2006.02572; Mallasto et al. 2021).

    The optimum is Gaussian with cross-covariance ``c``: with ``A = s1^2``, ``B = s2^2`` the
    objective over ``c`` is :math:`A + B - 2c - \tfrac\varepsilon2\log(1 - c^2/(AB))`, minimised
    at :math:`c = (\sqrt{\varepsilon^2 + 16AB} - \varepsilon)/4`; the means add :math:`(m_1-m_2)^2`.
    """
    a, b = s1 * s1, s2 * s2
    c = (math.sqrt(eps * eps + 16.0 * a * b) - eps) / 4.0
    return (m1 - m2) ** 2 + a + b - 2.0 * c - 0.5 * eps * math.log(1.0 - c * c / (a * b))


def check_ot_result(
    r: OTResult,
    a: torch.Tensor,
    b: torch.Tensor,
    cost: torch.Tensor,
    epsilon: float,
    *,
    max_iter: int,
    marginal_atol: float | None,
) -> None:
    """Check every field of an entropic ``OTResult`` for the problem ``(a, b, cost, epsilon)``.

    * ``plan``: shape, dtype, non-negative, marginals ``a`` and ``b`` to ``marginal_atol`` (not
      checked when ``None``), and
      equal to ``a_i b_j exp((f_i + g_j - C_ij) / eps)`` (the potentials' plan);
    * ``value``: shape, and the entropic dual objective at ``(f, g)``;
    * ``f``, ``g``: shapes and finiteness;
    * ``n_iter``: an int in ``[0, max_iter]``; ``converged``: a bool, and when False the whole
      budget ``max_iter`` was used.
    """
    batch = torch.broadcast_shapes(a.shape[:-1], b.shape[:-1], cost.shape[:-2])
    n, m = cost.shape[-2:]
    assert r.plan.shape == (*batch, n, m) and r.plan.dtype == cost.dtype
    assert r.value.shape == batch and r.f.shape == (*batch, n) and r.g.shape == (*batch, m)
    for name in ("plan", "value", "f", "g"):
        assert torch.isfinite(getattr(r, name)).all(), name
    assert bool((r.plan >= 0).all())
    if marginal_atol is not None:
        assert_close(r.plan.sum(-1), a.expand(*batch, n), atol=marginal_atol, rtol=0)
        assert_close(r.plan.sum(-2), b.expand(*batch, m), atol=marginal_atol, rtol=0)
    f, g = r.f.detach(), r.g.detach()
    kernel = torch.exp((f.unsqueeze(-1) + g.unsqueeze(-2) - cost) / epsilon)
    potential_plan = a.unsqueeze(-1) * b.unsqueeze(-2) * kernel
    assert_close(r.plan.detach(), potential_plan, atol=1e-12, rtol=1e-9)
    dual = (
        (a * f).sum(-1)
        + (b * g).sum(-1)
        - epsilon * (potential_plan.sum((-2, -1)) - a.sum(-1) * b.sum(-1))
    )
    assert_close(r.value.detach(), dual, atol=1e-12, rtol=1e-9)
    assert isinstance(r.n_iter, int) and 0 <= r.n_iter <= max_iter
    assert isinstance(r.converged, bool)
    if not r.converged:
        assert r.n_iter == max_iter  # stopped early only by meeting the tolerance
