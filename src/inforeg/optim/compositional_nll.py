r"""Negative log-likelihood of an unnormalised model by stochastic compositional optimisation.

Jiang, Qin, Wu, Chen, Yang & Zhang, "Learning Unnormalized Statistical Models via Compositional
Optimization", ICML 2023, arXiv 2306.07485. No code has been released.

A noise density :math:`q` turns the log partition function of an energy model
:math:`p_\theta(x) \propto e^{-E_\theta(x)}` into a compositional function,
:math:`\log Z(\theta) = \log \mathbb E_{y\sim q}[e^{-E_\theta(y)}/q(y)]`, whose inner expectation
is tracked across steps by a moving average :math:`u_t` instead of being re-estimated from one
minibatch (which biases the gradient of the logarithm). The moving-average (SCGD-type) estimator
here is inforeg's default; the paper also analyses momentum and variance-reduced variants, and
which one its experiments use was not verified (UNVERIFIED).

Choose :math:`q` wider than the data: the importance weights have relative variance
:math:`\mathbb E_q[(p_\theta/q)^2] - 1` (:math:`e^{\theta^2} - 1` for :math:`N(\theta, 1)`
against :math:`N(0, 1)`), and with :math:`q` far from :math:`p_\theta` the self-normalised weights
collapse onto the largest noise sample, so the gradient stops depending on :math:`\theta`.

Example (the doctest below): energies 0, 1, 2 of noise samples with :math:`\log q = 0` give
:math:`\log u = \log\frac{1 + e^{-1} + e^{-2}}{3}`:

>>> import torch
>>> out = compositional_nll(torch.tensor([1.0, 3.0]), torch.tensor([0.0, 1.0, 2.0]),
...                         torch.zeros(3), beta=1.0)
>>> round(float(out.loss), 3), round(float(out.log_u), 3)
(1.309, -0.691)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_number, check_same_shape, check_tensor
from inforeg.core.dtypes import compute_dtype

__all__ = ["CompositionalNLL", "CompositionalNLLOutput", "compositional_nll"]


class CompositionalNLLOutput(NamedTuple):
    """``loss`` (scalar; value = current NLL estimate, gradient = compositional gradient) and
    ``log_u`` (the updated moving average :math:`\\log u_t`, detached: the caller's state)."""

    loss: Tensor
    log_u: Tensor


def _check_inputs(energy_data: Tensor, energy_noise: Tensor, log_q_noise: Tensor) -> None:
    check_tensor(energy_data, "energy_data", ndim=1, floating=True)
    check_tensor(energy_noise, "energy_noise", ndim=1, floating=True)
    check_tensor(log_q_noise, "log_q_noise", ndim=1, floating=True)
    check_same_shape(energy_noise, log_q_noise, "energy_noise", "log_q_noise")


def _log_inner_mean(energy_noise: Tensor, log_q_noise: Tensor) -> Tensor:
    """:math:`\\log \\hat g = \\mathrm{LSE}_i(-E_i - \\log q_i) - \\log m` from detached inputs."""
    log_ratio = -energy_noise.detach() - log_q_noise.detach()
    return torch.logsumexp(log_ratio, dim=0) - math.log(log_ratio.shape[0])


def _loss(energy_data: Tensor, energy_noise: Tensor, log_q_noise: Tensor, log_u: Tensor) -> Tensor:
    """Value ``mean E_data + log u``; gradient ``mean dE_data - sum_i w_i dE_noise_i``."""
    m = energy_noise.shape[0]
    weights = torch.exp(-energy_noise.detach() - log_q_noise.detach() - log_u) / m
    surrogate = -(weights * energy_noise).sum()
    return energy_data.mean() + log_u + surrogate - surrogate.detach()


def compositional_nll(
    energy_data: Tensor,
    energy_noise: Tensor,
    log_q_noise: Tensor,
    log_u: Tensor | None = None,
    beta: float = 0.1,
) -> CompositionalNLLOutput:
    r"""One step of the compositional NLL of an energy model :math:`p_\theta \propto e^{-E_\theta}`.

    .. math::

        F(\theta) = \frac1N\sum_x E_\theta(x) + \log \mathbb E_{y\sim q}
        \Big[\frac{e^{-E_\theta(y)}}{q(y)}\Big], \qquad
        \hat g_t = \frac1m\sum_{i=1}^m e^{-E_\theta(y_i) - \log q(y_i)},\\
        u_t = (1-\beta)\,u_{t-1} + \beta\,\hat g_t \quad (u_1 = \hat g_1), \qquad
        w_i = \frac{e^{-E_\theta(y_i) - \log q(y_i)}}{m\,u_t},\\
        \text{value} = \frac1N\sum_x E_\theta(x) + \log u_t, \qquad
        \text{gradient} = \frac1N\sum_x \nabla E_\theta(x) - \sum_i w_i \nabla E_\theta(y_i).

    :math:`u` is kept in log space,
    :math:`\log u_t = \mathrm{logaddexp}(\log(1-\beta) + \log u_{t-1}, \log\beta + \log\hat g_t)`,
    and is computed from detached energies (it is state, not part of the graph); the weights are
    detached too, so the loss is ``mean(E_data) + log u_t + S - sg(S)`` with
    :math:`S = -\sum_i w_i E_\theta(y_i)`. With :math:`\beta = 1` (or ``log_u=None``, the first
    step) the gradient is exactly that of the minibatch objective
    :math:`\mathrm{mean}\,E(x) + \log\frac1m\sum_i e^{-E_i - \log q_i}`.

    Args:
        energy_data: (N,) energies :math:`E_\theta(x)` of a data batch.
        energy_noise: (m,) energies :math:`E_\theta(y_i)` of noise samples :math:`y_i \sim q`.
        log_q_noise: (m,) noise log-densities :math:`\log q(y_i)` (no gradient is taken).
        log_u: scalar :math:`\log u_{t-1}` from the previous step, or ``None`` on the first step
            (then :math:`u_1 = \hat g_1` whatever ``beta``).
        beta: moving-average weight in (0, 1]; default 0.1 (inforeg's choice, UNVERIFIED against
            the paper's experiments). ``beta = 1`` is the biased minibatch estimator.

    Returns:
        :class:`CompositionalNLLOutput` ``(loss, log_u)``; ``log_u`` is in the compute dtype
        (float32 for half inputs), ``loss`` in the promoted input dtype.

    Raises:
        ValueError: empty or non-1-D inputs, ``log_q_noise`` not shaped like ``energy_noise``,
            ``beta`` outside (0, 1], ``log_u`` not a scalar.

    >>> import torch
    >>> e_noise = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
    >>> out = compositional_nll(torch.tensor([1.0, 3.0]), e_noise, torch.zeros(3),
    ...                         log_u=torch.tensor(0.0), beta=0.5)
    >>> round(float(out.log_u), 4)  # log(0.5 * 1 + 0.5 * (1 + e^-1 + e^-2) / 3)
    -0.287
    """
    _check_inputs(energy_data, energy_noise, log_q_noise)
    b = check_number(beta, "beta", low=0.0, high=1.0, low_inclusive=False)
    out_dtype = torch.promote_types(energy_data.dtype, energy_noise.dtype)
    dtype = compute_dtype(energy_data, energy_noise, log_q_noise)
    e_data, e_noise, log_q = (t.to(dtype) for t in (energy_data, energy_noise, log_q_noise))
    log_g = _log_inner_mean(e_noise, log_q)
    if log_u is None:
        new_log_u = log_g
    else:
        check_tensor(log_u, "log_u", floating=True)
        if log_u.numel() != 1:
            raise ValueError(f"log_u: expected a scalar tensor, got shape {tuple(log_u.shape)}")
        prev = log_u.detach().reshape(()).to(dtype)
        # beta = 1 keeps nothing of the past (log1p(-1) would raise): the minibatch estimate
        new_log_u = (
            log_g if b == 1.0 else torch.logaddexp(prev + math.log1p(-b), log_g + math.log(b))
        )
    loss = _loss(e_data, e_noise, log_q, new_log_u)
    return CompositionalNLLOutput(loss.to(out_dtype), new_log_u)


class CompositionalNLL(nn.Module):
    r"""Stateful compositional NLL: keeps :math:`\log u_t` between steps (see
    :func:`compositional_nll` for the maths).

    Buffers ``log_u`` (float32 scalar) and ``initialized`` (bool) follow ``.to(device)`` and
    ``state_dict()``. The first call sets :math:`u_1 = \hat g_1`; later calls mix with weight
    ``beta``. The switch is a ``torch.where`` on the ``initialized`` buffer, so ``forward`` never
    synchronises with the device. Call :meth:`reset` to start a new estimate.

    Args:
        beta: moving-average weight in (0, 1]; default 0.1.

    >>> import torch
    >>> crit = CompositionalNLL(beta=0.5)
    >>> e_data, log_q = torch.tensor([1.0, 3.0]), torch.zeros(3)
    >>> round(float(crit(e_data, torch.tensor([0.0, 1.0, 2.0]), log_q)), 4)  # u_1 = g_1
    1.309
    >>> round(float(crit(e_data, torch.zeros(3), log_q)), 4)  # 2 + log(0.5 * 0.5011 + 0.5 * 1)
    1.713
    """

    log_u: Tensor
    initialized: Tensor

    def __init__(self, beta: float = 0.1) -> None:
        super().__init__()
        self.beta = check_number(beta, "beta", low=0.0, high=1.0, low_inclusive=False)
        self.register_buffer("log_u", torch.zeros((), dtype=torch.float32))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def reset(self) -> None:
        """Forget the moving average (the next call sets it from its own batch)."""
        self.log_u.zero_()
        self.initialized.fill_(False)

    def forward(self, energy_data: Tensor, energy_noise: Tensor, log_q_noise: Tensor) -> Tensor:
        """The loss of :func:`compositional_nll`; updates the buffers in place."""
        _check_inputs(energy_data, energy_noise, log_q_noise)
        dtype = compute_dtype(energy_data, energy_noise, log_q_noise)
        log_g = _log_inner_mean(energy_noise.to(dtype), log_q_noise.to(dtype))
        # before the first update the previous value is replaced by this batch's own estimate,
        # so the mix returns log_g whatever beta (no host-side branch on the flag)
        prev = torch.where(self.initialized, self.log_u.to(dtype), log_g)
        out = compositional_nll(energy_data, energy_noise, log_q_noise, prev, self.beta)
        with torch.no_grad():
            self.log_u.copy_(out.log_u)
            self.initialized.fill_(True)
        return out.loss

    def extra_repr(self) -> str:
        return f"beta={self.beta}"
