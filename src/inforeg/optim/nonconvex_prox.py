r"""Proximal maps of the SCAD and MCP penalties (elementwise, closed form).

SCAD: Fan & Li, "Variable selection via nonconcave penalized likelihood and its oracle
properties", JASA 2001. MCP: Zhang, "Nearly unbiased variable selection under minimax concave
penalty", Annals of Statistics 2010. Used for penalised regression after MI screening
(:func:`inforeg.estimators.mutual_information_screening`), following the spec of the 2025 thesis
"Contributions to Robust and Efficient Methods for Analysis of High Dimensional Data" (not
located; standard definitions).
"""

from __future__ import annotations

import torch
from torch import Tensor

from inforeg.core.checks import check_number, check_positive, check_tensor

__all__ = ["mcp_penalty", "mcp_prox", "scad_penalty", "scad_prox"]


def scad_penalty(theta: Tensor, lam: float, a: float = 3.7) -> Tensor:
    r"""SCAD penalty, elementwise.

    .. math::

        p(\theta) = \begin{cases} \lambda|\theta| & |\theta| \le \lambda \\
        \frac{2a\lambda|\theta| - \theta^2 - \lambda^2}{2(a-1)} & \lambda < |\theta| \le a\lambda
        \\ \lambda^2 (a+1)/2 & |\theta| > a\lambda \end{cases}
    """
    check_tensor(theta, "theta", floating=True)
    check_positive(lam, "lam")
    check_number(a, "a", low=2.0, low_inclusive=False)
    t = theta.abs()
    mid = (2 * a * lam * t - t * t - lam * lam) / (2 * (a - 1))
    return torch.where(
        t <= lam, lam * t, torch.where(t <= a * lam, mid, lam * lam * (a + 1) / 2 + 0 * t)
    )


def scad_prox(z: Tensor, lam: float, a: float = 3.7, step: float = 1.0) -> Tensor:
    r"""Proximal map of ``step * SCAD``: :math:`\arg\min_\theta \tfrac12(\theta - z)^2 + t\,p(\theta)`.

    .. math::

        \mathrm{prox}(z) = \begin{cases}
        \mathrm{sign}(z)(|z| - t\lambda)_+ & |z| \le (1 + t)\lambda \\
        \frac{(a-1)z - \mathrm{sign}(z)\,a t \lambda}{a - 1 - t} & (1+t)\lambda < |z| \le a\lambda \\
        z & |z| > a\lambda \end{cases}

    Requires ``a > 1 + step`` (the objective is then strictly convex). Defaults: a = 3.7 (Fan &
    Li), step t = 1. Differentiable almost everywhere (gradient 0, 1 or (a-1)/(a-1-t)).

    Args:
        z: any shape. lam: lambda > 0. a: > 1 + step (Fan & Li's a > 2 at step 1; the
            SCAD penalty itself, :func:`scad_penalty`, checks a > 2). step: t > 0.

    Example (lambda = 1, a = 3.7: soft threshold up to 2, ``(2.7 z - 3.7) / 1.7`` up to 3.7,
    then the identity):

        >>> z = torch.tensor([0.5, 1.5, 3.0, 6.0], dtype=torch.float64)
        >>> [round(v, 4) for v in scad_prox(z, 1.0).tolist()]
        [0.0, 0.5, 2.5882, 6.0]
        >>> [round(v, 4) for v in scad_penalty(z, 1.0).tolist()]
        [0.5, 1.4537, 2.2593, 2.35]
    """
    check_tensor(z, "z", floating=True)
    check_positive(lam, "lam")
    check_positive(step, "step")
    check_number(a, "a", low=1.0 + step, low_inclusive=False)
    t = z.abs()
    soft = torch.sign(z) * (t - step * lam).clamp_min(0.0)
    mid = ((a - 1) * z - torch.sign(z) * a * step * lam) / (a - 1 - step)
    return torch.where(t <= (1 + step) * lam, soft, torch.where(t <= a * lam, mid, z))


def mcp_penalty(theta: Tensor, lam: float, gamma: float = 3.0) -> Tensor:
    r"""MCP penalty: :math:`\lambda|\theta| - \theta^2/(2\gamma)` for :math:`|\theta| \le \gamma\lambda`, else :math:`\gamma\lambda^2/2`."""
    check_tensor(theta, "theta", floating=True)
    check_positive(lam, "lam")
    check_number(gamma, "gamma", low=1.0, low_inclusive=False)
    t = theta.abs()
    return torch.where(
        t <= gamma * lam, lam * t - t * t / (2 * gamma), gamma * lam * lam / 2 + 0 * t
    )


def mcp_prox(z: Tensor, lam: float, gamma: float = 3.0, step: float = 1.0) -> Tensor:
    r"""Proximal map of ``step * MCP`` (firm thresholding).

    .. math::

        \mathrm{prox}(z) = \begin{cases}
        \frac{\mathrm{sign}(z)(|z| - t\lambda)_+}{1 - t/\gamma} & |z| \le \gamma\lambda \\
        z & |z| > \gamma\lambda \end{cases}

    Requires ``gamma > step``. Defaults: gamma = 3 (Zhang), t = 1.
    """
    check_tensor(z, "z", floating=True)
    check_positive(lam, "lam")
    check_positive(step, "step")
    check_number(gamma, "gamma", low=step, low_inclusive=False)
    t = z.abs()
    firm = torch.sign(z) * (t - step * lam).clamp_min(0.0) / (1 - step / gamma)
    return torch.where(t <= gamma * lam, firm, z)
