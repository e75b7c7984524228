r"""Hilbert-Schmidt independence criterion (Gretton et al. 2005; Song et al. 2012) and CKA.

With kernel matrices :math:`K_{ij} = k(x_i, x_j)`, :math:`L_{ij} = l(y_i, y_j)` and
:math:`H = I - \frac{1}{n}\mathbf{1}\mathbf{1}^\top`:

.. math::

    \mathrm{HSIC}_b = \frac{\mathrm{tr}(K H L H)}{(n-1)^2}

    \mathrm{HSIC}_u = \frac{1}{n(n-3)}\Big[\mathrm{tr}(\tilde K \tilde L)
        + \frac{\mathbf{1}^\top \tilde K \mathbf{1}\, \mathbf{1}^\top \tilde L \mathbf{1}}{(n-1)(n-2)}
        - \frac{2}{n-2}\mathbf{1}^\top \tilde K \tilde L \mathbf{1}\Big]
    \quad (\tilde K, \tilde L: \text{diagonals set to } 0;\ n \geq 4)

    \mathrm{CKA}(x, y) = \frac{\mathrm{HSIC}(K, L)}{\sqrt{\mathrm{HSIC}(K, K)\,\mathrm{HSIC}(L, L)}}

Conventions: the biased estimator divides by :math:`(n-1)^2` (Gretton et al. 2005); some code
divides by :math:`n^2` (multiply by :math:`(n-1)^2/n^2` to convert). :func:`hsic` is *raw* HSIC;
:func:`cka` is the normalised one. hyppo's ``Hsic().statistic`` is neither: it is a distance
correlation of the induced distances 1 - K / max K, which equals :func:`cka` (``estimator=
"unbiased"`` for ``bias=False``, and the *square root* of ``estimator="biased"`` for
``bias=True``) when the kernel's maximum is k(x, x) = 1 (pinned by a test). The unbiased estimator equals the U-centred inner product
:math:`\frac{1}{n(n-3)}\sum_{i\neq j} \bar K_{ij} \bar L_{ij}` (Székely & Rizzo's U-centring of
:math:`\tilde K`), which is how it is streamed here.

Kernels: ``gaussian`` exp(-d^2/(2 sigma^2)) (sigma = median heuristic when None, per variable,
detached: no gradient flows through the bandwidth),
``laplacian`` exp(-d/sigma), ``linear`` <a, b>. Sequences of bandwidths sum the kernels.

Memory and speed: K and L are symmetric, so only their tiles on or above the diagonal are
formed, each by one GEMM plus exp (:func:`inforeg.dependence._kernel_sum.centred_kernel_products`,
the tiler MMD uses); one pass gives sum K*L (and K*K, L*L for CKA) and the row sums the centring
needs. Memory is O(n * chunk) with ``chunk_size``; backward streams the tiles again with a
closed-form gradient, which is not itself differentiable (no second derivatives, as with
``mmd``'s fast path). Bandwidths that require a gradient take the
generic path (row blocks checkpointed through autograd), with the same values.

Shapes: x (n, p) or (n,), y (n, q) or (n,); returns a 0-d tensor in the input dtype.

References: A. Gretton, O. Bousquet, A. Smola, B. Schölkopf, "Measuring statistical dependence
with Hilbert-Schmidt norms", ALT 2005; L. Song et al., "Feature selection via dependence
maximization", JMLR 13, 2012; S. Kornblith et al., "Similarity of neural network
representations revisited", ICML 2019 (arXiv 1905.00414).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_choice, check_int, check_number, check_same_length
from inforeg.core.dtypes import compute_dtype
from inforeg.core.pairwise import BlockFn, stream_rows
from inforeg.dependence._centering import centered_sum_from_rows
from inforeg.dependence._kernel_sum import centred_kernel_products
from inforeg.dependence._utils import (
    as_samples,
    at_origin,
    cpu_block_rows,
    kernel_blocks,
    resolve_bandwidths,
    safe_ratio,
)

HSICKernel = Literal["gaussian", "laplacian", "linear"]
HSICEstimator = Literal["biased", "unbiased"]
BW = float | Sequence[float] | Tensor | None

__all__ = ["HSICLoss", "cka", "hsic"]


def _prepare(
    x: object,
    y: object,
    kernel_x: str,
    kernel_y: str,
    bandwidth_x: BW,
    bandwidth_y: BW,
    estimator: str,
    chunk_size: object,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None, Tensor | None]:
    """Checked inputs: the samples as (n, d), both in the compute dtype, and the bandwidths."""
    x2 = as_samples(x, "x")
    y2 = as_samples(y, "y")
    check_same_length(x2, y2, "x", "y")
    check_choice(kernel_x, "kernel_x", ("gaussian", "laplacian", "linear"))
    check_choice(kernel_y, "kernel_y", ("gaussian", "laplacian", "linear"))
    check_choice(estimator, "estimator", ("biased", "unbiased"))
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size", low=1)
    n = x2.shape[0]
    if estimator == "unbiased" and n < 4:
        raise ValueError(f"x: the unbiased HSIC estimator needs at least 4 samples, got {n}")
    if n < 2:
        raise ValueError(f"x: HSIC needs at least 2 samples, got {n}")
    dtype = compute_dtype(x2, y2)
    (xc,), (yc,) = at_origin(x2.to(dtype)), at_origin(y2.to(dtype))
    bx = (
        None
        if kernel_x == "linear"
        else resolve_bandwidths(bandwidth_x, "bandwidth_x", xc, dtype=dtype)
    )
    by = (
        None
        if kernel_y == "linear"
        else resolve_bandwidths(bandwidth_y, "bandwidth_y", yc, dtype=dtype)
    )
    return x2, xc, yc, bx, by


def _generic_products(
    kb: BlockFn, lb: BlockFn, n: int, unbiased: bool, chunk_rows: int | None
) -> Tensor:
    """``[<K, L>, <K, K>, <L, L>]`` centred, from row blocks of K and L checkpointed through
    autograd: the path for bandwidths that need a gradient (the fast path takes constants)."""

    def rows(start: int, stop: int) -> Tensor:
        k = kb(start, stop)
        l_ = lb(start, stop)
        return torch.stack(
            ((k * l_).sum(1), (k * k).sum(1), (l_ * l_).sum(1), k.sum(1), l_.sum(1)), 1
        )

    r = stream_rows(rows, n, chunk_rows)
    rk, rl = r[:, 3], r[:, 4]
    centring: Literal["double", "u"] = "u" if unbiased else "double"
    return torch.stack(
        (
            centered_sum_from_rows(r[:, 0].sum(), rk, rl, n, centring),
            centered_sum_from_rows(r[:, 1].sum(), rk, rk, n, centring),
            centered_sum_from_rows(r[:, 2].sum(), rl, rl, n, centring),
        )
    )


def _statistic(
    x: Tensor,
    y: Tensor,
    options: tuple[str, str, BW, BW, str, int | None],
    normalized: bool,
) -> Tensor:
    """HSIC (``normalized``: CKA) for :func:`hsic` and :func:`cka`; ``options`` are their
    kernel_x, kernel_y, bandwidth_x, bandwidth_y, estimator and chunk_size."""
    kernel_x, kernel_y, bandwidth_x, bandwidth_y, estimator, chunk_size = options
    x2, xc, yc, bx, by = _prepare(x, y, *options)
    unbiased = estimator == "unbiased"
    kernels, bandwidths = (kernel_x, kernel_y), (bx, by)
    n = x2.shape[0]
    if any(b is not None and b.requires_grad for b in bandwidths):
        kb = kernel_blocks(xc, None, kernel_x, bx, zero_diagonal=unbiased)
        lb = kernel_blocks(yc, None, kernel_y, by, zero_diagonal=unbiased)
        sums = _generic_products(kb, lb, n, unbiased, cpu_block_rows(chunk_size, xc, n))
    else:
        sums = centred_kernel_products(
            xc, yc, kernels, bandwidths, unbiased, normalized, chunk_size
        )
    if normalized:
        return safe_ratio(sums[0], sums[1] * sums[2]).to(x2.dtype)
    scale = n * (n - 3) if unbiased else (n - 1) ** 2
    return (sums[0] / scale).to(x2.dtype)


def hsic(
    x: Tensor,
    y: Tensor,
    kernel_x: HSICKernel = "gaussian",
    kernel_y: HSICKernel = "gaussian",
    bandwidth_x: float | Sequence[float] | Tensor | None = None,
    bandwidth_y: float | Sequence[float] | Tensor | None = None,
    estimator: HSICEstimator = "biased",
    chunk_size: int | None = None,
) -> Tensor:
    """Raw HSIC between paired samples x and y.

    Args:
        x: shape (n, p) or (n,).
        y: shape (n, q) or (n,), the same n.
        kernel_x, kernel_y: ``"gaussian"`` (default), ``"laplacian"`` or ``"linear"``.
        bandwidth_x, bandwidth_y: sigma > 0, a sequence of them, or None (median heuristic of
            that variable; detached). Ignored for the linear kernel.
        estimator: ``"biased"`` (default, tr(KHLH)/(n-1)^2) or ``"unbiased"`` (Song et al. 2012,
            n >= 4, can be negative).
        chunk_size: rows per streamed block (None: chosen from n).

    Returns:
        0-d tensor in the input dtype.

    Example:
        >>> x = torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
        >>> round(float(hsic(x, x**2, bandwidth_x=1.0, bandwidth_y=1.0)), 6)
        0.229077
    """
    options = (kernel_x, kernel_y, bandwidth_x, bandwidth_y, estimator, chunk_size)
    return _statistic(x, y, options, normalized=False)


def cka(
    x: Tensor,
    y: Tensor,
    kernel_x: HSICKernel = "gaussian",
    kernel_y: HSICKernel = "gaussian",
    bandwidth_x: float | Sequence[float] | Tensor | None = None,
    bandwidth_y: float | Sequence[float] | Tensor | None = None,
    estimator: HSICEstimator = "biased",
    chunk_size: int | None = None,
) -> Tensor:
    """Centred kernel alignment, HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)); 0 if a variable is constant.

    Arguments as :func:`hsic`. With ``kernel_x = kernel_y = "linear"`` this is linear CKA
    (Kornblith et al. 2019). In [0, 1] for the biased estimator; the unbiased one can be negative.
    """
    options = (kernel_x, kernel_y, bandwidth_x, bandwidth_y, estimator, chunk_size)
    return _statistic(x, y, options, normalized=True)


class HSICLoss(nn.Module):
    """``weight * hsic(x, y, ...)`` (or ``cka`` with ``normalized=True``) as a module.

    Args:
        kernel_x, kernel_y, bandwidth_x, bandwidth_y, estimator, chunk_size: as in :func:`hsic`.
        normalized: use CKA instead of raw HSIC.
        weight: multiplier.
    """

    def __init__(
        self,
        kernel_x: HSICKernel = "gaussian",
        kernel_y: HSICKernel = "gaussian",
        bandwidth_x: float | Sequence[float] | None = None,
        bandwidth_y: float | Sequence[float] | None = None,
        estimator: HSICEstimator = "biased",
        chunk_size: int | None = None,
        normalized: bool = False,
        weight: float = 1.0,
    ) -> None:
        super().__init__()
        check_choice(kernel_x, "kernel_x", ("gaussian", "laplacian", "linear"))
        check_choice(kernel_y, "kernel_y", ("gaussian", "laplacian", "linear"))
        check_choice(estimator, "estimator", ("biased", "unbiased"))
        self.kernel_x: HSICKernel = kernel_x
        self.kernel_y: HSICKernel = kernel_y
        self.bandwidth_x = bandwidth_x
        self.bandwidth_y = bandwidth_y
        self.estimator: HSICEstimator = estimator
        self.chunk_size = chunk_size
        self.normalized = normalized
        self.weight = check_number(weight, "weight")

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """Return ``weight * HSIC(x, y)`` (or CKA)."""
        fn = cka if self.normalized else hsic
        return self.weight * fn(
            x,
            y,
            self.kernel_x,
            self.kernel_y,
            self.bandwidth_x,
            self.bandwidth_y,
            self.estimator,
            self.chunk_size,
        )
