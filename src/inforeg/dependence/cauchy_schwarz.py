r"""Cauchy-Schwarz divergence, the conditional CS divergence and CS-QMI of CS-IB.

Gaussian kernel :math:`\kappa_\sigma(a, b) = \exp(-\|a-b\|^2 / (2\sigma^2))` (no normalising
constant; it cancels). Sample estimators (Parzen plug-in, V-statistics with diagonals):

.. math::

    D_{CS}(p \| q) = \log \frac{1}{n^2}\sum_{ij}\kappa(x_i,x_j) + \log \frac{1}{m^2}\sum_{ij}
        \kappa(y_i,y_j) - 2 \log \frac{1}{nm}\sum_{ij}\kappa(x_i,y_j) \;\geq 0

    D_{CS}(p(y|x) \| q(\hat y|x)) = \log A(L^{1}) + \log A(L^{2}) - 2 \log A(L^{21}),\quad
    A(L) = \sum_j \frac{\sum_i K_{ji} L_{ji}}{w_j}

with :math:`K = \kappa(x_i, x_j)`, :math:`L^1 = \kappa(y_i, y_j)`, :math:`L^2 =
\kappa(\hat y_i, \hat y_j)`, :math:`L^{21} = \kappa(\hat y_i, y_j)`; the paper's denominator is
:math:`w_j = (\sum_i K_{ji})^2`, the official code's (``legacy_denominator=True``) is
:math:`w_j = \sum_i K_{ji}^2`. Both give 0 when :math:`\hat y = y`.

.. math::

    I_{CS}(x; t) = \log V_J + \log V_M - 2 \log V_C,\quad
    V_J = \tfrac{1}{n^2}\sum_{ij} K^x_{ij} K^t_{ij},\;
    V_M = \tfrac{1}{n^4}\sum_{ij} K^x_{ij}\sum_{ij} K^t_{ij},\;
    V_C = \tfrac{1}{n^3}\sum_i \Big(\sum_j K^x_{ij}\Big)\Big(\sum_j K^t_{ij}\Big)

(:math:`\geq 0` by Cauchy-Schwarz); the training code uses the normalised
:math:`\tilde I = I_{CS}(x;t)/\sqrt{I_{CS}(x;x) I_{CS}(t;t)}` (1 at t = x).

Units: nats by default; ``bits=True`` divides by log 2 (the authors' code uses log2). The CS-IB
loss (:class:`CSIBLoss`) is :math:`D_{CS}(y, \hat y | x) + \beta \tilde I_{CS}(x; t)` with no MSE
term, bits and σ = 1 by default as in the code.

Paper: S. Yu, X. Yu, S. Løkse, R. Jenssen, J. C. Príncipe, "Cauchy-Schwarz Divergence Information
Bottleneck for Regression", ICLR 2024 (arXiv 2404.17951); code
SJYuCNEL/Cauchy-Schwarz-Information-Bottleneck.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_number, check_positive, check_same_length
from inforeg.core.dtypes import compute_dtype
from inforeg.core.pairwise import stream_rows
from inforeg.dependence._utils import as_samples, cpu_block_rows, sq_block_fn

__all__ = [
    "CSIBLoss",
    "cauchy_schwarz_divergence",
    "conditional_cs_divergence",
    "cs_quadratic_mi",
]


def _scale(v: Tensor, bits: bool) -> Tensor:
    return v / math.log(2.0) if bits else v


def _gaussian(d2: Tensor, g: float) -> Tensor:
    """``exp(-g d2)`` in place on a fresh block of squared distances: bitwise ``exp(-d2 * g)``
    (negation is exact) with two temporaries fewer; autograd keeps the result, as exp needs."""
    return d2.mul_(-g).exp_()


def _log_mean_kernel(a: Tensor, b: Tensor | None, sigma: float, chunk_size: int | None) -> Tensor:
    """log of the mean Gaussian kernel value over all pairs, by streamed logsumexp."""
    sq = sq_block_fn(a, b)
    m = a.shape[0] if b is None else b.shape[0]

    def rows(start: int, stop: int) -> Tensor:
        # in place: x / (-c) is bitwise -(x / c), one temporary less
        return torch.logsumexp(sq(start, stop).div_(-2.0 * sigma * sigma), dim=1, keepdim=True)

    lse = torch.logsumexp(
        stream_rows(rows, a.shape[0], cpu_block_rows(chunk_size, a, m))[:, 0], dim=0
    )
    return lse - math.log(a.shape[0] * m)


def cauchy_schwarz_divergence(
    x: Tensor, y: Tensor, sigma: float = 1.0, bits: bool = False, chunk_size: int | None = None
) -> Tensor:
    """Cauchy-Schwarz divergence between the Parzen densities of samples x and y.

    Args:
        x: (n, d) or (n,); y: (m, d) or (m,) with the same d.
        sigma: Gaussian kernel width (> 0).
        bits: log base 2 instead of nats.
        chunk_size: rows per streamed block (logsumexp per block, so no underflow).

    Returns:
        0-d tensor, >= 0 (up to rounding), 0 iff the two Parzen estimates coincide.

    Example (one point each, 1 apart, sigma = 1: ``0 + 0 - 2 log e^{-1/2} = 1``):

        >>> float(cauchy_schwarz_divergence(torch.tensor([0.0]), torch.tensor([1.0])))
        1.0
        >>> x = torch.tensor([0.0, 1.0], dtype=torch.float64)
        >>> print(f"{float(cauchy_schwarz_divergence(x, 2 * x)):.4f}")
        0.2798
        >>> print(f"{float(cauchy_schwarz_divergence(x, 2 * x, bits=True)):.4f}")
        0.4037
    """
    x2, y2 = as_samples(x, "x"), as_samples(y, "y")
    if x2.shape[1] != y2.shape[1]:
        raise ValueError(f"y: expected {x2.shape[1]} features to match x, got {y2.shape[1]}")
    check_positive(sigma, "sigma")
    dt = compute_dtype(x2, y2)
    xc, yc = x2.to(dt), y2.to(dt)
    val = (
        _log_mean_kernel(xc, None, sigma, chunk_size)
        + _log_mean_kernel(yc, None, sigma, chunk_size)
        - 2.0 * _log_mean_kernel(xc, yc, sigma, chunk_size)
    )
    return _scale(val, bits).to(x2.dtype)


def conditional_cs_divergence(
    x: Tensor,
    y: Tensor,
    y_hat: Tensor,
    sigma: float = 1.0,
    sigma_x: float | None = None,
    legacy_denominator: bool = False,
    bits: bool = False,
    chunk_size: int | None = None,
) -> Tensor:
    """Conditional CS divergence D_CS(p(y|x) || q(y_hat|x)) on paired samples (CS-IB's prediction term).

    Args:
        x: inputs (n, d_x) or (n,).
        y: targets (n, d_y) or (n,).
        y_hat: predictions, the same shape as y.
        sigma: kernel width for y and y_hat (and x unless ``sigma_x`` is given).
        sigma_x: kernel width for x (default: ``sigma``).
        legacy_denominator: use the code's w_j = sum_i K_ji^2 instead of the paper's
            (sum_i K_ji)^2.
        bits: log2 instead of natural log.
        chunk_size: rows per streamed block.

    Returns:
        0-d tensor; exactly 0 when y_hat == y.
    """
    x2, y2, h2 = as_samples(x, "x"), as_samples(y, "y"), as_samples(y_hat, "y_hat")
    check_same_length(x2, y2, "x", "y")
    if h2.shape != y2.shape:
        raise ValueError(
            f"y_hat: expected shape {tuple(y2.shape)} to match y, got {tuple(h2.shape)}"
        )
    check_positive(sigma, "sigma")
    sx = sigma if sigma_x is None else check_positive(sigma_x, "sigma_x")
    dt = compute_dtype(x2, y2, h2)
    xc, yc, hc = x2.to(dt), y2.to(dt), h2.to(dt)
    n = xc.shape[0]
    kx, l1, l2, l21 = sq_block_fn(xc), sq_block_fn(yc), sq_block_fn(hc), sq_block_fn(hc, yc)
    gx, gy = 1.0 / (2.0 * sx * sx), 1.0 / (2.0 * sigma * sigma)

    def rows(start: int, stop: int) -> Tensor:
        # In logs: the cross kernel underflows to 0 when y_hat is far from y (a value saturated
        # by a clamp and no gradient pulling y_hat back: float32, y_hat = y + 30 gave 177.7 for
        # 643.1). All three terms alike, so that y_hat = y still gives exactly 0.
        log_k = kx(start, stop).mul_(-gx)
        log_w = (
            torch.logsumexp(2.0 * log_k, dim=1)
            if legacy_denominator
            else 2.0 * torch.logsumexp(log_k, dim=1)
        )
        terms = [torch.logsumexp(log_k - lb(start, stop) * gy, dim=1) for lb in (l1, l2, l21)]
        return torch.stack(terms, dim=1) - log_w.unsqueeze(1)

    log_a = torch.logsumexp(stream_rows(rows, n, cpu_block_rows(chunk_size, xc, n)), dim=0)
    val = log_a[0] + log_a[1] - 2.0 * log_a[2]
    return _scale(val, bits).to(x2.dtype)


def _qmi(x: Tensor, t: Tensor, sx: float, st: float, chunk_size: int | None) -> Tensor:
    n = x.shape[0]
    kx, kt = sq_block_fn(x), sq_block_fn(t)
    gx, gt = 1.0 / (2.0 * sx * sx), 1.0 / (2.0 * st * st)

    def rows(start: int, stop: int) -> Tensor:
        # Kernels and sums in float64: I_CS is a difference of three logs of sums that agree to
        # O(1 / sigma^4) (float32 gave 0 or nonsense, -5.5e11 normalised, at sigma 100 on unit
        # data); the distances themselves keep the inputs' precision.
        a = _gaussian(kx(start, stop).to(torch.float64), gx)
        b = _gaussian(kt(start, stop).to(torch.float64), gt)
        return torch.stack(((a * b).sum(1), a.sum(1), b.sum(1)), dim=1)

    r = stream_rows(rows, n, cpu_block_rows(chunk_size, x, n))
    vj = r[:, 0].sum() / n**2
    vm = r[:, 1].sum() * r[:, 2].sum() / n**4
    vc = (r[:, 1] * r[:, 2]).sum() / n**3
    return vj.log() + vm.log() - 2.0 * vc.log()


def cs_quadratic_mi(
    x: Tensor,
    t: Tensor,
    sigma: float = 1.0,
    sigma_t: float | None = None,
    normalized: bool = False,
    bits: bool = False,
    chunk_size: int | None = None,
) -> Tensor:
    """Cauchy-Schwarz quadratic mutual information I_CS(x; t) (CS-IB's compression term).

    Args:
        x: (n, d_x) or (n,); t: (n, d_t) or (n,).
        sigma: kernel width for x (and t unless ``sigma_t`` is given).
        sigma_t: kernel width for t.
        normalized: return I(x;t)/sqrt(I(x;x) I(t;t)) (the training code's form; 1 at t = x).
        bits: log2 instead of natural log (cancels when normalized).
        chunk_size: rows per streamed block.

    Example:
        >>> x = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
        >>> print(f"{float(cs_quadratic_mi(x, x ** 2)):.4f}")
        0.5046
        >>> print(f"{float(cs_quadratic_mi(x, x, normalized=True)):.4f}")
        1.0000
    """
    x2, t2 = as_samples(x, "x"), as_samples(t, "t")
    check_same_length(x2, t2, "x", "t")
    check_positive(sigma, "sigma")
    st = sigma if sigma_t is None else check_positive(sigma_t, "sigma_t")
    dt = compute_dtype(x2, t2)
    xc, tc = x2.to(dt), t2.to(dt)
    val = _qmi(xc, tc, sigma, st, chunk_size)
    if normalized:
        den = _qmi(xc, xc, sigma, sigma, chunk_size) * _qmi(tc, tc, st, st, chunk_size)
        val = val / den.clamp_min(torch.finfo(den.dtype).tiny).sqrt()
        return val.to(x2.dtype)
    return _scale(val, bits).to(x2.dtype)


class CSIBLoss(nn.Module):
    """CS-IB objective ``D_CS(y, y_hat | x) + beta * I~_CS(x; t)`` (no MSE term, as the paper).

    Args:
        beta: compression weight (code default 0.01).
        sigma: Gaussian kernel width for every variable (code: 1).
        legacy_denominator: the official code's conditional-CS denominator (default: paper's).
        normalized_qmi: use the normalised CS-QMI (the training code's choice, default True).
        bits: log2 (the code's unit, default True).
        chunk_size: rows per streamed block.

    ``forward(x, y, y_hat, t)`` with x inputs (n, d), y targets, y_hat predictions, t the
    representation (n, K).
    """

    def __init__(
        self,
        beta: float = 0.01,
        sigma: float = 1.0,
        legacy_denominator: bool = False,
        normalized_qmi: bool = True,
        bits: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.beta = check_number(beta, "beta", low=0.0)
        self.sigma = check_positive(sigma, "sigma")
        self.legacy_denominator = legacy_denominator
        self.normalized_qmi = normalized_qmi
        self.bits = bits
        self.chunk_size = chunk_size

    def forward(self, x: Tensor, y: Tensor, y_hat: Tensor, t: Tensor) -> Tensor:
        """Return the CS-IB loss."""
        pred = conditional_cs_divergence(
            x, y, y_hat, self.sigma, None, self.legacy_denominator, self.bits, self.chunk_size
        )
        if self.beta == 0:
            return pred
        comp = cs_quadratic_mi(
            x, t, self.sigma, None, self.normalized_qmi, self.bits, self.chunk_size
        )
        return pred + self.beta * comp
