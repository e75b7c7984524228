r"""Maximum mean discrepancy (Gretton et al. 2012) with Gaussian, Laplacian and energy kernels.

For samples :math:`x_1..x_n \sim P`, :math:`y_1..y_m \sim Q` and a kernel k:

.. math::

    \widehat{\mathrm{MMD}}^2_b = \frac{1}{n^2}\sum_{i,j} k(x_i,x_j)
        + \frac{1}{m^2}\sum_{i,j} k(y_i,y_j) - \frac{2}{nm}\sum_{i,j} k(x_i,y_j)
    \quad (\text{biased V-statistic, } \geq 0)

    \widehat{\mathrm{MMD}}^2_u = \frac{1}{n(n-1)}\sum_{i \neq j} k(x_i,x_j)
        + \frac{1}{m(m-1)}\sum_{i \neq j} k(y_i,y_j) - \frac{2}{nm}\sum_{i,j} k(x_i,y_j)
    \quad (\text{unbiased U-statistic, can be negative})

    \widehat{\mathrm{MMD}}^2_{lin} = \frac{1}{\lfloor n/2 \rfloor}\sum_{i} k(x_{2i},x_{2i+1})
        + k(y_{2i},y_{2i+1}) - k(x_{2i},y_{2i+1}) - k(x_{2i+1},y_{2i})
    \quad (\text{linear time, } n = m)

Kernels: ``gaussian`` :math:`\exp(-\|a-b\|^2/(2\sigma^2))`, ``laplacian``
:math:`\exp(-\|a-b\|/\sigma)`, ``energy`` :math:`-\|a-b\|` (then the biased MMD² is the energy
distance :math:`2E\|X-Y\| - E\|X-X'\| - E\|Y-Y'\|`). A sequence of bandwidths sums the kernels
(multi-kernel MMD with equal weights). ``bandwidth=None`` is the median heuristic: the (lower)
median Euclidean distance over distinct pairs of the pooled sample (on a fixed subsample of 2000
points when larger), detached.

Conventions: the functions return the *squared* MMD. geomloss's kernel ``SamplesLoss`` returns
half the biased estimate with ``blur`` = sigma (pinned by a test).

Memory: the three kernel sums are streamed in blocks of ``chunk_size`` rows, O(n * chunk) (also
in the backward pass). With constant bandwidths (given, or the median heuristic) they go through
the tiler of ``dependence/_kernel_sum.py``: one GEMM per tile above 4 features (exact coordinate
differences up to 4, so tied points stay at distance 0), only the upper half of the symmetric
sums, and a closed-form backward; a bandwidth that needs a gradient takes
:func:`inforeg.core.pairwise.pairwise_reduce`.

Shapes: x (n, d) or (n,), y (m, d) or (m,); returns a 0-d tensor in the input dtype.

Reference: A. Gretton, K. Borgwardt, M. Rasch, B. Schölkopf, A. Smola, "A Kernel Two-Sample
Test", JMLR 13, 2012.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_choice, check_int, check_number
from inforeg.core.dtypes import compute_dtype
from inforeg.core.pairwise import pairwise_reduce, safe_root
from inforeg.dependence._kernel_sum import kernel_sum
from inforeg.dependence._utils import (
    Bandwidth,
    as_samples,
    at_origin,
    cpu_block_rows,
    kernel_blocks,
    resolve_bandwidths,
)

MMDKernel = Literal["gaussian", "laplacian", "energy"]
Estimator = Literal["unbiased", "biased", "linear"]

__all__ = ["MMDLoss", "mmd"]


def _validate(
    x: object, y: object, kernel: str, bandwidth: Bandwidth, estimator: str, chunk_size: object
) -> tuple[Tensor, Tensor]:
    x2 = as_samples(x, "x")
    y2 = as_samples(y, "y")
    if x2.shape[1] != y2.shape[1]:
        raise ValueError(f"y: expected {x2.shape[1]} features to match x, got {y2.shape[1]}")
    check_choice(kernel, "kernel", ("gaussian", "laplacian", "energy"))
    check_choice(estimator, "estimator", ("unbiased", "biased", "linear"))
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size", low=1)
    if kernel == "energy" and bandwidth is not None:
        raise ValueError("bandwidth: the energy kernel -||a - b|| has no bandwidth; pass None")
    n, m = x2.shape[0], y2.shape[0]
    if estimator == "unbiased" and (n < 2 or m < 2):
        raise ValueError(
            f"x: the unbiased estimator needs at least 2 samples each, got {n} and {m}"
        )
    if estimator == "linear":
        if n != m:
            raise ValueError(f"y: the linear estimator needs as many samples as x ({n}), got {m}")
        if n < 2:
            raise ValueError(f"x: the linear estimator needs at least 2 samples, got {n}")
    return x2, y2


def _pair_kernel(a: Tensor, b: Tensor, kernel: str, bandwidths: Tensor | None) -> Tensor:
    d2 = (a - b).square().sum(1)
    if kernel == "energy":
        return -safe_root(d2)
    assert bandwidths is not None
    if kernel == "gaussian":
        return torch.exp(-d2.unsqueeze(1) / (2.0 * bandwidths * bandwidths)).sum(1)
    return torch.exp(-safe_root(d2).unsqueeze(1) / bandwidths).sum(1)


def _kernel_sums(
    x: Tensor, y: Tensor, kernel: str, bw: Tensor | None, chunk_size: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """sum k(x, x), sum k(y, y), sum k(x, y).

    The tiler (:mod:`inforeg.dependence._kernel_sum`: symmetric halves, closed-form backward;
    exact coordinate differences up to 4 features) serves constant
    bandwidths; a bandwidth that needs a gradient takes the generic checkpointed path.
    """
    if bw is None or not bw.requires_grad:
        return (
            kernel_sum(x, None, kernel, bw, chunk_size),
            kernel_sum(y, None, kernel, bw, chunk_size),
            kernel_sum(x, y, kernel, bw, chunk_size),
        )
    n, m = x.shape[0], y.shape[0]
    return (
        pairwise_reduce(
            kernel_blocks(x, None, kernel, bw), n, "sum", cpu_block_rows(chunk_size, x, n), m=n
        ),
        pairwise_reduce(
            kernel_blocks(y, None, kernel, bw), m, "sum", cpu_block_rows(chunk_size, y, m), m=m
        ),
        pairwise_reduce(
            kernel_blocks(x, y, kernel, bw), n, "sum", cpu_block_rows(chunk_size, x, m), m=m
        ),
    )


def mmd(
    x: Tensor,
    y: Tensor,
    kernel: MMDKernel = "gaussian",
    bandwidth: float | Sequence[float] | Tensor | None = None,
    estimator: Estimator = "unbiased",
    chunk_size: int | None = None,
) -> Tensor:
    """Squared maximum mean discrepancy between the samples x and y.

    Args:
        x: samples of P, shape (n, d) or (n,).
        y: samples of Q, shape (m, d) or (m,).
        kernel: ``"gaussian"`` (default), ``"laplacian"`` or ``"energy"``.
        bandwidth: sigma > 0, a sequence of them (kernels summed), a tensor of them, or None for
            the median heuristic (not allowed for ``"energy"``).
        estimator: ``"unbiased"`` (default, U-statistic), ``"biased"`` (V-statistic) or
            ``"linear"`` (Gretton's linear-time estimate, n = m; an odd last sample is dropped).
        chunk_size: rows per streamed block (None: chosen from the sizes).

    Returns:
        0-d tensor, the MMD² estimate, in the input dtype.

    Example:
        >>> x = torch.tensor([[0.0], [1.0]])
        >>> y = torch.tensor([[0.0], [3.0]])
        >>> round(float(mmd(x, y, kernel="energy", estimator="biased")), 4)
        1.0
    """
    x2, y2 = _validate(x, y, kernel, bandwidth, estimator, chunk_size)
    dtype = compute_dtype(x2, y2)
    xc, yc = at_origin(x2.to(dtype), y2.to(dtype))
    bw = (
        None
        if kernel == "energy"
        else resolve_bandwidths(bandwidth, "bandwidth", xc, yc, dtype=dtype)
    )
    n, m = xc.shape[0], yc.shape[0]
    if estimator == "linear":
        h = n // 2
        x0, x1 = xc[0 : 2 * h : 2], xc[1 : 2 * h : 2]
        y0, y1 = yc[0 : 2 * h : 2], yc[1 : 2 * h : 2]
        terms = (
            _pair_kernel(x0, x1, kernel, bw)
            + _pair_kernel(y0, y1, kernel, bw)
            - _pair_kernel(x0, y1, kernel, bw)
            - _pair_kernel(x1, y0, kernel, bw)
        )
        return terms.mean().to(x2.dtype)
    kxx, kyy, kxy = _kernel_sums(xc, yc, kernel, bw, chunk_size)
    if estimator == "biased":
        out = kxx / (n * n) + kyy / (m * m) - 2.0 * kxy / (n * m)
    else:
        diag = 0.0 if kernel == "energy" else float(bw.numel()) if bw is not None else 0.0
        out = (kxx - n * diag) / (n * (n - 1)) + (kyy - m * diag) / (m * (m - 1))
        out = out - 2.0 * kxy / (n * m)
    return out.to(x2.dtype)


class MMDLoss(nn.Module):
    """``weight * mmd(x, y, ...)`` as a module (hyper-parameters stored, no state).

    Args:
        kernel, bandwidth, estimator, chunk_size: as in :func:`mmd`.
        weight: multiplier.

    Under DDP wrap it: ``Gathered(MMDLoss(...))`` gathers x and y from every rank.
    """

    def __init__(
        self,
        kernel: MMDKernel = "gaussian",
        bandwidth: float | Sequence[float] | None = None,
        estimator: Estimator = "unbiased",
        chunk_size: int | None = None,
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        check_choice(kernel, "kernel", ("gaussian", "laplacian", "energy"))
        check_choice(estimator, "estimator", ("unbiased", "biased", "linear"))
        self.kernel: MMDKernel = kernel
        self.bandwidth = bandwidth
        self.estimator: Estimator = estimator
        self.chunk_size = chunk_size
        self.weight = check_number(weight, "weight")

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Return ``weight * MMD²(x, y)``."""
        return self.weight * mmd(x, y, self.kernel, self.bandwidth, self.estimator, self.chunk_size)

    def extra_repr(self) -> str:
        """Hyper-parameters for ``repr``."""
        return f"kernel={self.kernel!r}, bandwidth={self.bandwidth}, estimator={self.estimator!r}"
