r"""Noise-level schedules for diffusion ODE samplers (EDM parameterisation, :math:`x_\sigma = x_0 + \sigma\varepsilon`).

>>> [round(s, 12) for s in logsnr_sigmas(4, sigma_min=0.01, sigma_max=100.0).tolist()]
[100.0, 10.0, 1.0, 0.1, 0.01]
>>> [round(s, 4) for s in karras_sigmas(2, sigma_min=0.002, sigma_max=80.0).tolist()]
[80.0, 2.5152, 0.002]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from inforeg.core.checks import check_int, check_positive

__all__ = ["karras_sigmas", "logsnr_sigmas"]


def _check_range(sigma_min: float, sigma_max: float) -> tuple[float, float]:
    lo = check_positive(sigma_min, "sigma_min")
    hi = check_positive(sigma_max, "sigma_max")
    if hi <= lo:
        raise ValueError(f"sigma_max: expected a value above sigma_min = {lo}, got {hi}")
    return lo, hi


def logsnr_sigmas(steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> Tensor:
    r"""Noise levels equally spaced in log-SNR (``skip_type="logSNR"`` of DPM-Solver and EVODiff).

    .. math::

        \sigma_i = \exp\Bigl(\log\sigma_{\max} + \tfrac{i}{N}(\log\sigma_{\min} - \log\sigma_{\max})
        \Bigr), \qquad i = 0, \dots, N.

    Defaults: EDM's range [0.002, 80] (EVODiff's ``sample.py``).

    Args:
        steps: N >= 1 solver steps.
        sigma_min, sigma_max: the end points, 0 < sigma_min < sigma_max.

    Returns:
        float64 tensor of shape (N + 1,), strictly decreasing.
    """
    steps = check_int(steps, "steps", low=1)
    lo, hi = _check_range(sigma_min, sigma_max)
    return torch.linspace(math.log(hi), math.log(lo), steps + 1, dtype=torch.float64).exp()


def karras_sigmas(
    steps: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
) -> Tensor:
    r"""Karras et al. (EDM, arXiv 2206.00364) noise levels.

    .. math::

        \sigma_i = \Bigl(\sigma_{\max}^{1/\rho} + \tfrac{i}{N}\bigl(\sigma_{\min}^{1/\rho} -
        \sigma_{\max}^{1/\rho}\bigr)\Bigr)^{\rho}, \qquad i = 0, \dots, N.

    Unlike EDM's sampler, no final :math:`\sigma = 0` is appended (the data-prediction solvers
    here need :math:`\sigma > 0`; use ``denoise_to_zero`` for the last jump).

    Args:
        steps: N >= 1. sigma_min, sigma_max: the end points. rho: > 0 (default 7, EDM).

    Returns:
        float64 tensor of shape (N + 1,), strictly decreasing.
    """
    steps = check_int(steps, "steps", low=1)
    lo, hi = _check_range(sigma_min, sigma_max)
    rho = check_positive(rho, "rho")
    ramp = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    # the same levels as sigma_max * (1 - t + t r) ** rho, r = (sigma_min / sigma_max) ** (1 / rho):
    # the formula's sigma_max ** (1 / rho) overflows for rho < 0.0062 (sigma_max = 80), and at
    # rho = 0.05 its last level a + (b - a) cancelled to 0 instead of sigma_min
    r = math.exp(math.log(lo / hi) / rho)
    sigmas = hi * (1.0 - ramp + ramp * r) ** rho
    # as rho -> 0 every level but the last tends to sigma_max and r underflows
    if not (r > 0.0 and bool((sigmas[1:] < sigmas[:-1]).all())):
        raise ValueError(f"rho: {rho} is too small for {steps + 1} distinct levels in [{lo}, {hi}]")
    return sigmas
