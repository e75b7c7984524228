r"""The exact denoiser of an isotropic Gaussian mixture (for tests and experiments).

If :math:`x_0 \sim \sum_k w_k N(\mu_k, s^2 I)` and :math:`x_\sigma = x_0 + \sigma\varepsilon`, then
:math:`x_\sigma \sim \sum_k w_k N(\mu_k, (s^2 + \sigma^2) I)` and the posterior mean (the ideal
data-prediction model of a diffusion ODE) has the closed form

.. math::

    \hat x_0(x, \sigma) = \frac{s^2 x + \sigma^2 \sum_k \gamma_k(x)\,\mu_k}{s^2 + \sigma^2}, \qquad
    \gamma_k(x) = \mathrm{softmax}_k\Bigl(\log w_k - \frac{\|x - \mu_k\|^2}{2(s^2 + \sigma^2)}\Bigr).

>>> den = gmm_denoiser(torch.tensor([[-1.0], [1.0]]), std=0.5)
>>> den(torch.tensor([[0.0], [3.0]]), torch.tensor([1.0, 0.0])).tolist()
[[0.0], [3.0]]
>>> round(float(den(torch.tensor([[2.0]]), torch.tensor([1.0]))), 6)
1.137335
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_number, check_positive, check_tensor
from inforeg.core.dtypes import compute_dtype

__all__ = ["GaussianMixtureDenoiser", "gmm_denoiser"]


class GaussianMixtureDenoiser(nn.Module):
    r"""Posterior mean :math:`E[x_0 \mid x_0 + \sigma\varepsilon = x]` of an isotropic Gaussian mixture.

    Call it as ``denoiser(x, sigma)`` with ``x`` of shape (B, \*event) and ``sigma`` a float, a
    0-d tensor or a (B,) tensor. Memory O(B·K·D). Also gives the mixture's mean and covariance
    (for Fréchet distances) and exact samples.

    Args:
        means: (K, \*event) component means.
        std: the common component standard deviation s > 0.
        weights: (K,) mixture weights (non-negative, summing to 1); default uniform.
    """

    means: Tensor
    log_weights: Tensor

    def __init__(self, means: Tensor, std: float, weights: Tensor | None = None) -> None:
        super().__init__()
        check_tensor(means, "means", min_ndim=2, floating=True)
        self.std = check_positive(std, "std")
        k = means.shape[0]
        if weights is None:
            weights = torch.full((k,), 1.0 / k, dtype=means.dtype, device=means.device)
        check_tensor(weights, "weights", ndim=1, floating=True)
        if weights.shape[0] != k:
            raise ValueError(
                f"weights: expected {k} weights (one per mean), got {weights.shape[0]}"
            )
        if bool((weights < 0).any()) or abs(float(weights.sum()) - 1.0) > 1e-6:
            raise ValueError("weights: expected non-negative weights summing to 1")
        self.register_buffer("means", means.detach().clone())
        self.register_buffer("log_weights", weights.detach().log())

    def forward(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        check_tensor(x, "x", floating=True, min_ndim=2)
        if isinstance(sigma, Tensor):
            check_tensor(sigma, "sigma", floating=True)
            if sigma.numel() not in (1, x.shape[0]):
                raise ValueError(
                    f"sigma: expected 1 or {x.shape[0]} noise levels (one per sample), "
                    f"got {sigma.numel()}"
                )
        else:
            check_number(sigma, "sigma", low=0.0)
        if tuple(x.shape[1:]) != tuple(self.means.shape[1:]):
            raise ValueError(
                f"x: expected samples of shape {tuple(self.means.shape[1:])} (the means' event "
                f"shape), got {tuple(x.shape[1:])}"
            )
        dtype = compute_dtype(x)
        xs = x.to(dtype).flatten(1)
        mu = self.means.to(dtype).flatten(1)
        sig = torch.as_tensor(sigma, dtype=dtype, device=x.device).reshape(-1, 1)
        var = self.std**2 + sig * sig  # (B or 1, 1)
        sq = ((xs[:, None, :] - mu[None, :, :]) ** 2).sum(-1)  # (B, K)
        gamma = torch.softmax(self.log_weights.to(dtype) - sq / (2 * var), dim=1)
        out = (self.std**2 * xs + sig * sig * (gamma @ mu)) / var
        return out.reshape(x.shape).to(x.dtype)

    def mean(self) -> Tensor:
        """The mixture's mean, flattened to (D,)."""
        return self.log_weights.exp() @ self.means.flatten(1)

    def covariance(self) -> Tensor:
        r"""The mixture's covariance :math:`s^2 I + \sum_k w_k (\mu_k - m)(\mu_k - m)^\top`, (D, D)."""
        w = self.log_weights.exp()
        centred = self.means.flatten(1) - self.mean()
        eye = torch.eye(centred.shape[1], dtype=centred.dtype, device=centred.device)
        return self.std**2 * eye + (centred.T * w) @ centred

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact draws of :math:`x_0`, shape (n, \\*event)."""
        idx = torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)
        noise = torch.randn(
            (n, *self.means.shape[1:]),
            generator=generator,
            dtype=self.means.dtype,
            device=self.means.device,
        )
        return self.means[idx] + self.std * noise


def gmm_denoiser(
    means: Tensor, std: float, weights: Tensor | None = None
) -> GaussianMixtureDenoiser:
    """The exact denoiser of an isotropic Gaussian mixture; see :class:`GaussianMixtureDenoiser`."""
    return GaussianMixtureDenoiser(means, std, weights)
