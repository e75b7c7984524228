r"""Tsallis entropy and the q-Gaussian distribution (its maximiser under a variance constraint).

Standard definitions (Tsallis 1988; Umarov, Tsallis & Steinberg 2008), as specified for the 2025
thesis "Contributions to Robust and Efficient Methods for Analysis of High Dimensional Data" (the
thesis itself was not located). Natural logarithms: the q -> 1 limit is the Shannon entropy in
nats.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.distributions import Distribution, constraints

from inforeg.core.checks import (
    check_dim,
    check_number,
    check_positive,
    check_probabilities,
    check_tensor,
)
from inforeg.core.dtypes import upcast

__all__ = ["QGaussian", "tsallis_entropy"]


def tsallis_entropy(p: Tensor, q: float, dim: int = -1) -> Tensor:
    r"""Tsallis entropy of discrete distributions ``p`` along ``dim``.

    .. math::

        S_q(p) = \frac{1 - \sum_i p_i^q}{q - 1}, \qquad
        S_1(p) = -\sum_i p_i \log p_i \ \text{(nats)}

    Near ``q = 1`` (``|q - 1| < 1e-6``) the Shannon limit is used. Zero probabilities contribute 0
    for q > 0 (``xlogy`` at q = 1).

    Args:
        p: probabilities (non-negative, summing to 1 along ``dim``; checked in "full" mode).
        q: entropic index, q > 0.
        dim: the category axis.

    Returns:
        ``p`` with ``dim`` reduced; float16/bfloat16 are computed in float32 and cast back.

    Example (``S_2 = 1 - sum p^2``; q = 1 is the Shannon entropy, 0 for a point mass):

        >>> p = torch.tensor([[0.5, 0.25, 0.25], [1.0, 0.0, 0.0]], dtype=torch.float64)
        >>> tsallis_entropy(p, 2.0).tolist()
        [0.625, 0.0]
        >>> round(float(tsallis_entropy(p[0], 1.0)), 4)
        1.0397
    """
    check_tensor(p, "p", floating=True, nonempty=True)
    check_positive(q, "q")
    dim = check_dim(dim, p)
    check_probabilities(p, "p", dim)
    dtype = p.dtype
    x = upcast(p)
    if abs(q - 1.0) < 1e-6:
        out = -torch.special.xlogy(x, x).sum(dim)
    else:
        out = (1.0 - x.clamp_min(0.0).pow(q).sum(dim)) / (q - 1.0)
    return out.to(dtype)


def _log_cq(q: float) -> float:
    if abs(q - 1.0) < 1e-12:
        return 0.5 * math.log(math.pi)
    if q < 1.0:
        return (
            math.log(2.0)
            + 0.5 * math.log(math.pi)
            + math.lgamma(1.0 / (1.0 - q))
            - math.log(3.0 - q)
            - 0.5 * math.log(1.0 - q)
            - math.lgamma((3.0 - q) / (2.0 * (1.0 - q)))
        )
    return (
        0.5 * math.log(math.pi)
        + math.lgamma((3.0 - q) / (2.0 * (q - 1.0)))
        - 0.5 * math.log(q - 1.0)
        - math.lgamma(1.0 / (q - 1.0))
    )


class QGaussian(Distribution):
    r"""The q-Gaussian distribution on the real line (q < 3).

    .. math::

        f(x) = \frac{\sqrt\beta}{C_q}\, e_q\big(-\beta (x - \mu)^2\big), \qquad
        e_q(u) = [1 + (1 - q) u]_+^{1/(1-q)}

    with :math:`C_q = \sqrt\pi` (q = 1, the Gaussian with variance 1/(2 beta)),
    :math:`C_q = \frac{2\sqrt\pi\,\Gamma(1/(1-q))}{(3-q)\sqrt{1-q}\,\Gamma((3-q)/(2(1-q)))}`
    (q < 1, compact support :math:`|x - \mu| < 1/\sqrt{\beta(1-q)}`) and
    :math:`C_q = \frac{\sqrt\pi\,\Gamma((3-q)/(2(q-1)))}{\sqrt{q-1}\,\Gamma(1/(q-1))}`
    (1 < q < 3: a Student-t with :math:`\nu = (3-q)/(q-1)` degrees of freedom scaled by
    :math:`1/\sqrt{\beta(3-q)}`; q = 2 is Cauchy). Variance :math:`1/(\beta(5 - 3q))` for
    q < 5/3, infinite for 5/3 <= q < 2, undefined beyond.

    Sampling: the Student-t link for q > 1, a Gaussian for q = 1, and for q < 1 the
    generalised Box-Muller method (Thistleton et al., IEEE Trans. Inf. Theory 2007), which draws
    a q-Gaussian with index q from uniforms via ``sqrt(-2 ln_q' U1) cos(2 pi U2)`` with
    q' = (1 + q)/(3 - q), then rescales it to the density above.

    Args:
        q: entropic index, q < 3 (a Python float).
        beta: inverse scale, > 0 (float or tensor).
        loc: location (float or tensor).
    """

    arg_constraints = {"beta": constraints.positive, "loc": constraints.real}
    has_rsample = True

    def __init__(
        self, q: float, beta: float | Tensor = 1.0, loc: float | Tensor = 0.0, validate_args=None
    ) -> None:  # type: ignore[no-untyped-def]
        check_number(q, "q", high=3.0, high_inclusive=False)
        # Python numbers are checked here, not by torch's argument validation: that is a global
        # switch, and the first torch.compile in a process turns it off.
        if not isinstance(beta, Tensor):
            check_positive(beta, "beta")
        if not isinstance(loc, Tensor):
            check_number(loc, "loc")
        self.q = float(q)
        self.beta, self.loc = torch.broadcast_tensors(
            torch.as_tensor(beta, dtype=torch.get_default_dtype())
            if not isinstance(beta, Tensor)
            else beta,
            torch.as_tensor(loc, dtype=torch.get_default_dtype())
            if not isinstance(loc, Tensor)
            else loc,
        )
        super().__init__(self.beta.shape, validate_args=validate_args)

    @property
    def support(self):  # type: ignore[no-untyped-def,override]
        return constraints.real

    @property
    def mean(self) -> Tensor:
        if self.q >= 2.0:
            return torch.full_like(self.loc, float("nan"))
        return self.loc

    @property
    def variance(self) -> Tensor:
        q = self.q
        if q < 5.0 / 3.0:
            return 1.0 / (self.beta * (5.0 - 3.0 * q))
        return torch.full_like(self.beta, float("inf") if q < 2.0 else float("nan"))

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density at ``value`` (floating); -inf outside the compact support of q < 1."""
        check_tensor(value, "value", floating=True, nonempty=False)
        q = self.q
        u = -self.beta * (value - self.loc) ** 2
        norm = 0.5 * torch.log(self.beta) - _log_cq(q)
        if abs(q - 1.0) < 1e-12:
            return norm + u
        base = 1.0 + (1.0 - q) * u
        # log e_q(u) = log(base)/(1-q); outside the support (q < 1) the density is 0.
        safe = base.clamp_min(torch.finfo(base.dtype).tiny)
        logeq = torch.log(safe) / (1.0 - q)
        if q < 1.0:
            logeq = torch.where(base > 0, logeq, torch.full_like(logeq, float("-inf")))
        return norm + logeq

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        shape = self._extended_shape(torch.Size(sample_shape))
        q = self.q
        dtype, device = self.beta.dtype, self.beta.device
        if abs(q - 1.0) < 1e-12:
            z = torch.randn(shape, dtype=dtype, device=device) / math.sqrt(2.0)
            return self.loc + z / self.beta.sqrt()
        if q > 1.0:
            nu = (3.0 - q) / (q - 1.0)
            t = torch.distributions.StudentT(torch.tensor(nu, dtype=dtype, device=device)).rsample(
                shape
            )
            return self.loc + t / (self.beta * (3.0 - q)).sqrt()
        # Generalised Box-Muller: Z = sqrt(-2 ln_{q'}(U1)) cos(2 pi U2) is a q-Gaussian with
        # index q and beta_Z = 1/(3 - q); rescale to beta.
        qp = (1.0 + q) / (3.0 - q)
        u1 = torch.rand(shape, dtype=dtype, device=device).clamp_min(torch.finfo(dtype).tiny)
        u2 = torch.rand(shape, dtype=dtype, device=device)
        lnq = (u1.pow(1.0 - qp) - 1.0) / (1.0 - qp)
        z = torch.sqrt(-2.0 * lnq) * torch.cos(2.0 * math.pi * u2)
        return self.loc + z * math.sqrt(1.0 / (3.0 - q)) / self.beta.sqrt()
