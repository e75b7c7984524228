r"""Fast streamed kernel sums with closed-form backwards: MMD's :math:`\sum_{ij} k(x_i, y_j)` and
HSIC/CKA's centred products :math:`\sum_{ij} \bar K_{ij} \bar L_{ij}`.

Why this exists: the generic streaming path (:func:`inforeg.core.pairwise.pairwise_reduce`) forms
each block as ``xx + yy - 2 x @ y.T`` (three passes over the block besides the GEMM), clamps and
exponentiates out of place, and checkpoints every block, so backward recomputes the block and
then runs autograd through every elementwise op. Here one tiler serves both:

- one GEMM of augmented rows gives the exponent directly: ``[x, |x|^2, 1] @ [-2y, 1, |y|^2]^T``
  is ``||x_i - y_j||^2``, with the Gaussian's ``-1/(2 s^2)`` folded into the right factor, and
  the elementwise work is done in place on column tiles small enough to stay in cache (up to
  ``DIRECT_MAX_FEATURES`` features the squared differences are summed directly instead, so tied
  points stay at distance exactly 0);
- a symmetric matrix (``y`` None) is visited only in tiles on or above the diagonal, counting
  off-diagonal tiles twice (and adding their column sums to the lower rows' row sums);
- gradients use the closed form
  :math:`\partial_{x_i} \sum_{j} W_{ij} f(d^2_{ij}) = 2 (x_i \sum_j G_{ij} - \sum_j G_{ij} y_j)`
  with :math:`G = W \odot f'(d^2)` (and :math:`\sum_j W_{ij} y_j` for the linear kernel): two
  GEMMs per tile against ``[y, 1]``, no autograd graph through any tile.

MMD's sum has the constant weight W = 1, so its gradient is formed in the forward pass while
each tile exists. A centred product :math:`\sum_{ij} \bar K_{ij} L_{ij}` has the weight
:math:`W = \bar L` (centred L), which needs L's row sums, known only after the pass: its
backward streams the tiles once more.

Memory stays O(chunk * tile) per step, plus O(n * d) for the gradient.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from inforeg.core.pairwise import default_chunk_size
from inforeg.dependence._centering import centered_sum_from_rows
from inforeg.dependence._utils import DIRECT_MAX_FEATURES

#: Columns per tile: a (chunk, TILE_COLS) float32 tile of 1024 rows is 8 MiB, near cache size,
#: so the in-place passes after the GEMM do not go back to main memory.
TILE_COLS = 2048
#: Rows per tile on the CPU when no chunk_size is given (the generic row-block rule of
#: core.pairwise gave n rows up to n = 4096: tiles of 32 MiB, 2x-3x slower for HSIC, MMD and
#: dCor's gradient at n = 4000). Other devices take that rule: fewer, larger kernel launches.
TILE_ROWS = 1024


def _augment(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """``a, b`` with ``a @ b.T = ||x_i - y_j||^2`` (before clamping)."""
    ones_x = torch.ones_like(x[:, :1])
    ones_y = torch.ones_like(y[:, :1])
    a = torch.cat((x, x.square().sum(1, keepdim=True), ones_x), dim=1)
    b = torch.cat((-2.0 * y, ones_y, y.square().sum(1, keepdim=True)), dim=1)
    return a, b


def _tiles(n: int, m: int, chunk: int, same: bool) -> list[tuple[int, int, int, int]]:
    """Row-block x column-tile index ranges; only tiles on or above the diagonal when ``same``."""
    out = []
    for i0 in range(0, n, chunk):
        i1 = min(i0 + chunk, n)
        j = i0 if same else 0
        while j < m:
            # the first tile of a symmetric row block is its diagonal square
            j1 = i1 if same and j == i0 else min(j + TILE_COLS, m)
            out.append((i0, i1, j, j1))
            j = j1
    return out


def _exp_sum(t: Tensor, inv: Tensor, slope: bool = False) -> Tensor:
    """``sum_c exp(-c t)`` over the entries c of ``inv`` (times ``-c`` when ``slope``)."""
    out = torch.zeros_like(t)
    for c in inv.unbind():
        out += torch.exp(t * -c) * -c if slope else torch.exp(t * -c)
    return out


def _sq_dist(a: Tensor, b: Tensor) -> Tensor:
    """``||a_i - b_j||^2`` summed over coordinates (exact 0 for tied points)."""
    out = (a[:, :1] - b[:, 0]).square_()
    for k in range(1, a.shape[1]):
        out += (a[:, k : k + 1] - b[:, k]).square_()
    return out


class _Gram:
    """Tiles of the kernel matrix k(x_i, y_j) (y None: y = x) and of its slope.

    ``kernel``: ``gaussian`` (exp(-d^2/(2 s^2))) or ``laplacian`` (exp(-d/s)) summed over
    bandwidths, ``energy`` (-d) or ``linear`` (<x_i, y_j>); ``inv`` holds 1/(2 s^2) (Gaussian) or
    1/s (Laplacian) per bandwidth. The slope is ``dk/d(d^2)`` for the distance kernels, 0 where
    d = 0 for the root kernels as with ``safe_root``. With one Gaussian bandwidth the GEMM gives
    the exponent and the slope is the tile itself times ``factor`` = -1/(2 s^2) (the caller
    multiplies once, at the end); the linear kernel's slope dk/d<x_i, y_j> is 1 (None).
    """

    def __init__(self, x: Tensor, y: Tensor | None, kernel: str, inv: Tensor | None) -> None:
        self.x, self.y = x, x if y is None else y
        self.kernel = kernel
        self.factor: Tensor | None = None
        if kernel == "gaussian" and inv is not None and inv.numel() == 1:
            self.factor, inv = -inv[0], None
        self.inv = inv
        self.direct = kernel != "linear" and x.shape[1] <= DIRECT_MAX_FEATURES
        self.a, self.b = self.x, self.y
        if kernel != "linear" and not self.direct:
            self.a, self.b = _augment(self.x, self.y)
            if self.factor is not None:
                self.b = self.b * self.factor

    def rhs(self, z: Tensor) -> Tensor:
        """Right factor of the gradient GEMMs: ``[z, 1]`` (also gives G's row sums), or z."""
        return z if self.kernel == "linear" else torch.cat((z, torch.ones_like(z[:, :1])), 1)

    def grad(self, z: Tensor, acc: Tensor, scale: float) -> Tensor:
        """Gradient wrt z from ``acc = sum_tiles G @ rhs``: ``scale`` for each pair's weight."""
        if self.kernel == "linear":
            return acc * (0.5 * scale)
        out = (z * acc[:, -1:] - acc[:, :-1]) * scale
        return out if self.factor is None else out * self.factor

    def tile(
        self, i0: int, i1: int, j0: int, j1: int, diag: bool, slope: bool, zero_diag: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Rows i0:i1, columns j0:j1 of k (its diagonal 0 on a ``diag`` tile with
        ``zero_diag``) and, when ``slope``, of the slope. The slope may be the tile itself."""
        a, b = self.a[i0:i1], self.b[j0:j1]
        if self.kernel == "linear":
            k = a @ b.T
            if zero_diag:
                k.diagonal().zero_()
            return k, None
        if self.direct:
            t = _sq_dist(a, b)
            if self.factor is not None:
                t.mul_(self.factor)
        else:
            t = a @ b.T
            if self.factor is not None:
                t.clamp_max_(0.0)
            else:
                t.clamp_min_(0.0)
            if diag:
                t.diagonal().zero_()
        if self.factor is not None:
            t.exp_()
            if zero_diag:
                t.diagonal().zero_()
            return t, t if slope else None
        if self.kernel == "gaussian":
            assert self.inv is not None
            k = _exp_sum(t, self.inv)
            g = _exp_sum(t, self.inv, slope=True) if slope else None
        else:
            d = t.sqrt_()
            g = None
            if slope:
                positive = d > 0
                g = 0.5 / d.clamp_min(torch.finfo(d.dtype).tiny)  # d(d)/d(d^2)
                if self.kernel == "energy":
                    g.neg_()
                else:
                    assert self.inv is not None
                    g.mul_(_exp_sum(d, self.inv, slope=True))
                g.masked_fill_(~positive, 0.0)
            if self.kernel == "energy":
                k = d.neg_()
            else:
                assert self.inv is not None
                k = _exp_sum(d, self.inv)
        if zero_diag:
            k.diagonal().zero_()
        return k, g


def _accumulate(
    acc_i: Tensor, acc_j: Tensor, g: Tensor, rhs_i: Tensor, rhs_j: Tensor, both: bool
) -> None:
    """``acc_i += g @ rhs_j`` and, when ``both`` (the tile stands for its transpose too, or y's
    gradient is wanted), ``acc_j += g.T @ rhs_i``."""
    acc_i += g @ rhs_j
    if both:
        acc_j += (rhs_i.T @ g).T


class _KernelSum(torch.autograd.Function):
    """Forward also accumulates the gradient when an input needs one.

    The output is a scalar, so its gradient is a fixed (n, d) tensor times the incoming scalar:
    forming it while each tile exists costs two GEMMs per tile and avoids recomputing the tile
    in backward (memory O(n * d) extra).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, x: Tensor, y: Tensor, same: bool, kernel: str, inv: Tensor | None, chunk: int
    ) -> Tensor:
        gram = _Gram(x, None if same else y, kernel, inv)
        slope = any(ctx.needs_input_grad[:2])
        x1, y1 = gram.rhs(x), gram.rhs(y)
        acc_x = torch.zeros_like(x1)
        acc_y = acc_x if same else torch.zeros_like(y1)
        # the running total is float64: hundreds of float32 tile sums added in sequence would
        # lose ~sqrt(tiles) ulps, and MMD is a small difference of such totals
        total = x.new_zeros((), dtype=torch.float64)
        # energy distances are a small difference of mean distances: tile sums in float64 too
        wide = torch.float64 if kernel == "energy" else None
        for i0, i1, j0, j1 in _tiles(x.shape[0], y.shape[0], chunk, same):
            diag = same and i0 == j0
            k, g = gram.tile(i0, i1, j0, j1, diag, slope)
            s = k.sum(dtype=wide)
            total += s if diag or not same else 2.0 * s
            if g is not None:
                _accumulate(acc_x[i0:i1], acc_y[j0:j1], g, x1[i0:i1], y1[j0:j1], not diag)
        if slope:
            # each pair's gradient is 2 f'(d^2) (x_i - y_j); a symmetric sum counts each pair
            # as (i, j) and (j, i): 4 instead of 2
            scale = 4.0 if same else 2.0
            ctx.save_for_backward(
                gram.grad(x, acc_x, scale), None if same else gram.grad(y, acc_y, scale)
            )
        ctx.same = same
        return total.to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[no-untyped-def, override]
        gx, gy = ctx.saved_tensors
        return grad * gx, None if ctx.same else grad * gy, None, None, None, None


def _inverse_bandwidths(kernel: str, bandwidths: Tensor | None) -> Tensor | None:
    if bandwidths is None:
        return None
    return 1.0 / (2.0 * bandwidths * bandwidths) if kernel == "gaussian" else 1.0 / bandwidths


def _chunk(n: int, m: int, chunk_size: int | None, device: torch.device) -> int:
    if chunk_size is not None:
        return min(chunk_size, n)
    return min(n, TILE_ROWS) if device.type == "cpu" else default_chunk_size(n, m)


def kernel_sum(
    x: Tensor, y: Tensor | None, kernel: str, bandwidths: Tensor | None, chunk_size: int | None
) -> Tensor:
    """``sum_ij k(x_i, y_j)`` (y None: y = x with an exact-zero distance diagonal).

    ``kernel`` is ``gaussian`` (exp(-d^2/(2 s^2))), ``laplacian`` (exp(-d/s)), summed over
    ``bandwidths``, or ``energy`` (-d). Bandwidths are treated as constants (callers keep the
    generic path when they need a gradient).
    """
    same = y is None
    y_ = x if y is None else y
    n, m = x.shape[0], y_.shape[0]
    inv = _inverse_bandwidths(kernel, bandwidths)
    out: Tensor = _KernelSum.apply(x, y_, same, kernel, inv, _chunk(n, m, chunk_size, x.device))
    return out


def _centre(t: Tensor, u: Tensor, c: Tensor, inplace: bool = False) -> Tensor:
    """``t_ij - u_i - c_j`` (in place on t when ``inplace``)."""
    out = t.sub_(u[:, None]) if inplace else t - u[:, None]
    return out.sub_(c)


class _CentredProducts(torch.autograd.Function):
    """``[<K, L>_c]`` or ``[<K, L>_c, <K, K>_c, <L, L>_c]`` for the symmetric kernel matrices
    of x and y, double- or U-centred (:func:`centered_sum_from_rows`), in one pass over the
    upper-triangle tiles: per tile the sums of K*L (K*K, L*L) and the row (and column) sums of
    K and L. Backward streams the tiles again: the weight of k(x_i, x_j) in <K, L>_c is the
    centred L_ij, which needs all of L's row sums.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: Tensor,
        y: Tensor,
        kernels: tuple[str, str],
        inv_x: Tensor | None,
        inv_y: Tensor | None,
        unbiased: bool,
        self_products: bool,
        chunk: int,
    ) -> Tensor:
        n = x.shape[0]
        gk, gl = _Gram(x, None, kernels[0], inv_x), _Gram(y, None, kernels[1], inv_y)
        f64 = torch.float64
        rk, rl = x.new_zeros(n, dtype=f64), x.new_zeros(n, dtype=f64)
        sums = x.new_zeros(3 if self_products else 1, dtype=f64)  # K*L, K*K, L*L
        # The distance kernels' centring subtracts terms up to ~1000x the result (dCov), so
        # their tile sums accumulate in float64 (in float32 they cost 1e-4 of the result at
        # n = 4000, d = 64); the bounded kernels keep float32 tile sums, 2x faster for HSIC.
        wide = f64 if "energy" in kernels else None
        for i0, i1, j0, j1 in _tiles(n, n, chunk, True):
            diag = i0 == j0
            k, _ = gk.tile(i0, i1, j0, j1, diag, False, unbiased and diag)
            l_, _ = gl.tile(i0, i1, j0, j1, diag, False, unbiased and diag)
            rk[i0:i1] += k.sum(1, dtype=wide)
            rl[i0:i1] += l_.sum(1, dtype=wide)
            if not diag:
                rk[j0:j1] += k.sum(0, dtype=wide)
                rl[j0:j1] += l_.sum(0, dtype=wide)
            w = 1.0 if diag else 2.0
            # the tiles are not needed after their sums: square / multiply in place
            if self_products:
                kl = (k * l_).sum(dtype=wide)
                kk, ll = k.square_().sum(dtype=wide), l_.square_().sum(dtype=wide)
                sums += w * torch.stack((kl, kk, ll))
            else:
                sums += w * l_.mul_(k).sum(dtype=wide)
        centring: Literal["double", "u"] = "u" if unbiased else "double"
        out = [centered_sum_from_rows(sums[0], rk, rl, n, centring)]
        if self_products:
            out += [
                centered_sum_from_rows(sums[1], rk, rk, n, centring),
                centered_sum_from_rows(sums[2], rl, rl, n, centring),
            ]
        ctx.save_for_backward(x, y, rk, rl, inv_x, inv_y)
        ctx.kernels, ctx.unbiased, ctx.self_products, ctx.chunk = (
            kernels,
            unbiased,
            self_products,
            chunk,
        )
        return torch.stack(out).to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[no-untyped-def, override]
        x, y, rk, rl, inv_x, inv_y = ctx.saved_tensors
        need_x, need_y = ctx.needs_input_grad[:2]
        n, unbiased, both = x.shape[0], ctx.unbiased, ctx.self_products
        gk, gl = _Gram(x, None, ctx.kernels[0], inv_x), _Gram(y, None, ctx.kernels[1], inv_y)
        # centred M_ij = M_ij - u_i - c_j with c = r / m1 and u = c - sum(r) / m2 (as in
        # centered_sum_from_rows); it is the weight of the other kernel's entry (i, j)
        m1, m2 = (n - 2, (n - 1) * (n - 2)) if unbiased else (n, n * n)
        ck, cl = (rk / m1).to(x.dtype), (rl / m1).to(x.dtype)
        uk, ul = ((r / m1 - r.sum() / m2).to(x.dtype) for r in (rk, rl))  # in float64 first
        x1, y1 = gk.rhs(x), gl.rhs(y)
        acc_x, acc_y = torch.zeros_like(x1), torch.zeros_like(y1)
        for i0, i1, j0, j1 in _tiles(n, n, ctx.chunk, True):
            diag = i0 == j0
            zero = unbiased and diag
            k, sk = gk.tile(i0, i1, j0, j1, diag, need_x, zero)
            l_, sl = gl.tile(i0, i1, j0, j1, diag, need_y, zero)
            if both:
                kc, lc = _centre(k, uk[i0:i1], ck[j0:j1]), _centre(l_, ul[i0:i1], cl[j0:j1])
                wx = lc * grad[0] + kc * (2.0 * grad[1]) if need_x else None
                wy = kc * grad[0] + lc * (2.0 * grad[2]) if need_y else None
            else:
                # y's weight first: x's is formed in place on L, which y's slope may be
                wy = _centre(k, uk[i0:i1], ck[j0:j1]) if need_y else None
                if wy is not None and sl is not None:
                    wy.mul_(sl)
                    sl = None
                wx = _centre(l_, ul[i0:i1], cl[j0:j1], inplace=True) if need_x else None
            for w, s, acc, z1 in ((wx, sk, acc_x, x1), (wy, sl, acc_y, y1)):
                if w is None:
                    continue
                if s is not None:
                    w.mul_(s)
                if zero:
                    w.diagonal().zero_()  # the zeroed diagonal does not depend on the inputs
                _accumulate(acc[i0:i1], acc[j0:j1], w, z1[i0:i1], z1[j0:j1], not diag)
        a = 1.0 if both else grad[0]
        gx = gk.grad(x, acc_x, 4.0) * a if need_x else None
        gy = gl.grad(y, acc_y, 4.0) * a if need_y else None
        return gx, gy, None, None, None, None, None, None


def centred_kernel_products(
    x: Tensor,
    y: Tensor,
    kernels: tuple[str, str],
    bandwidths: tuple[Tensor | None, Tensor | None],
    unbiased: bool,
    self_products: bool,
    chunk_size: int | None,
) -> Tensor:
    """Centred products of the kernel matrices K of x and L of y (:class:`_CentredProducts`).

    ``kernels``: ``gaussian``, ``laplacian`` or ``linear`` each; ``bandwidths`` as in
    :func:`kernel_sum` (None for linear). Returns ``[<K, L>]`` or, with ``self_products``,
    ``[<K, L>, <K, K>, <L, L>]`` of the double-centred matrices (``unbiased``: U-centred, zero
    diagonals), not yet divided by (n-1)^2 or n(n-3).
    """
    n = x.shape[0]
    inv = tuple(_inverse_bandwidths(k, b) for k, b in zip(kernels, bandwidths, strict=True))
    out: Tensor = _CentredProducts.apply(
        x, y, kernels, inv[0], inv[1], unbiased, self_products, _chunk(n, n, chunk_size, x.device)
    )
    return out
