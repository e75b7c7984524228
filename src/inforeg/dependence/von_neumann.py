r"""Von Neumann entropy of a representation's covariance spectrum (Information Koopman, VNE).

For latents :math:`Z \in \mathbb{R}^{N \times H}` (leading dims flattened), with
:math:`\bar Z` the centred latents:

.. math::

    \Sigma = \frac{\bar Z^\top \bar Z}{N - 1} + \epsilon I,\qquad
    \rho = \frac{\Sigma}{\mathrm{tr}\,\Sigma},\qquad
    S(\rho) = -\sum_k \lambda_k \log \lambda_k \in [0, \log H]

(:math:`\lambda_k` the eigenvalues of :math:`\rho`, clamped at ``eps``; nats). S is maximal
(log H) for isotropic latents and 0 for rank-one (collapsed) latents; it is invariant to scaling
and rotation of Z.

The regulariser is meant to be *maximised*: the paper's Lagrangian (Eq. 8) maximises
:math:`\alpha \log I(z_{t-n}; z_t) - \beta I(z_t; x_t \mid z_{t-n}) + \gamma S(C / \mathrm{tr}\,C) +
\log p(x_t \mid z_t)` with :math:`C` the latent covariance, so the loss term is
:math:`-\beta S`. The released code of "Information Shapes
Koopman Representation" adds :math:`+\beta S` (minimising it); :class:`VonNeumannEntropy` makes the
sign explicit: ``entropy_sign="maximize"`` (default, paper) or ``"minimize"`` (code).

``normalize=False`` skips the trace normalisation (use when Σ already has unit trace, e.g. the
autocorrelation of L2-normalised rows with ``center=False``, as in Kim et al.'s VNE, CVPR 2023).

Paper: X. Cheng, W. Yuan et al., "Information Shapes Koopman Representation", ICLR 2026, arXiv
2510.13025; code Wenxuan52/InformationKoopman (``von_neumann_entropy`` in
``model/physical_simulation/base.py``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_choice, check_number, check_tensor
from inforeg.core.dtypes import compute_dtype

__all__ = ["VonNeumannEntropy", "von_neumann_entropy"]


def von_neumann_entropy(
    z: Tensor, normalize: bool = True, center: bool = True, eps: float = 1e-8
) -> Tensor:
    """Von Neumann entropy (nats) of the trace-normalised covariance of ``z``.

    Args:
        z: latents (..., H); all leading dimensions are samples (N = their product >= 2).
        normalize: divide the covariance by its trace (default True).
        center: subtract the mean over samples first (default True).
        eps: ridge added to the covariance and floor for the eigenvalues (code: 1e-8). With
            0, a zero eigenvalue adds 0 to the value and an infinite slope to the gradient.

    Returns:
        0-d tensor in [0, log H], in the input dtype (computed in float32 at least).

    Example (isotropic latents reach ``log H``, collapsed ones 0):

        >>> z = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
        >>> print(f"{float(von_neumann_entropy(z)):.4f}")
        0.6931
        >>> print(f"{float(von_neumann_entropy(z[:2])):.4f}")
        0.0000
    """
    check_tensor(z, "z", min_ndim=2, floating=True)
    check_number(eps, "eps", low=0.0)
    flat = z.reshape(-1, z.shape[-1])
    n, h = flat.shape
    if n < 2:
        raise ValueError(f"z: expected at least 2 samples, got {n}")
    zc = flat.to(compute_dtype(flat))
    if center:
        zc = zc - zc.mean(0, keepdim=True)
    cov = zc.T @ zc / (n - 1) + eps * torch.eye(h, dtype=zc.dtype, device=zc.device)
    if normalize:
        cov = cov / torch.diagonal(cov).sum()
    lam = torch.linalg.eigvalsh(cov).clamp_min(eps)
    # xlogy: 0 log 0 = 0 for eps = 0 (lam * log(lam) was NaN at a zero eigenvalue)
    return -torch.special.xlogy(lam, lam).sum().to(z.dtype)


class VonNeumannEntropy(nn.Module):
    """Loss term ``-weight * S(z)`` (maximise the entropy, paper) or ``+weight * S(z)`` (code).

    Args:
        weight: beta (code: 0.1).
        entropy_sign: ``"maximize"`` (default, the paper's intent) or ``"minimize"`` (the released
            code's ``+beta * S``).
        normalize, center, eps: as in :func:`von_neumann_entropy`.
    """

    def __init__(
        self,
        weight: float = 0.1,
        entropy_sign: Literal["maximize", "minimize"] = "maximize",
        normalize: bool = True,
        center: bool = True,
        eps: float = 1e-8,
    ) -> None:
        super().__init__()
        check_choice(entropy_sign, "entropy_sign", ("maximize", "minimize"))
        self.weight = check_number(weight, "weight", low=0.0)
        self.entropy_sign = entropy_sign
        self.normalize = normalize
        self.center = center
        self.eps = eps

    def forward(self, z: Tensor) -> Tensor:
        """Return the signed, weighted entropy term to add to a loss."""
        s = von_neumann_entropy(z, self.normalize, self.center, self.eps)
        return (-self.weight if self.entropy_sign == "maximize" else self.weight) * s
