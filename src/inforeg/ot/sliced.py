"""1-D Wasserstein, sliced and max-sliced Wasserstein distances, and the SW correspondence loss.

References: J. Rabin, G. Peyre, J. Delon, M. Bernot, "Wasserstein Barycenter and its Application
to Texture Mixing", SSVM 2011 (sliced Wasserstein); I. Deshpande et al., "Max-Sliced Wasserstein
Distance and its use for GANs", CVPR 2019 (arXiv:1904.05877); T. Le, K. Nguyen, S. Sun, N. Ho,
X. Xie, "Integrating Efficient Optimal Transport and Functional Maps For Unsupervised Shape
Correspondence Learning", CVPR 2024 (arXiv:2403.01781; code Tungthanhlee/EOT-Correspondence).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from inforeg.core.checks import (
    check_int,
    check_number,
    check_positive,
    check_tensor,
    get_checks,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.core.pairwise import safe_root, sqeuclidean
from inforeg.core.reduce import reduce
from inforeg.ot._sinkhorn_loop import MatrixSoftmin, sinkhorn_loop

__all__ = [
    "LogSinkhorn",
    "SlicedWassersteinLoss",
    "log_sinkhorn_correspondence",
    "max_sliced_wasserstein",
    "random_projections",
    "sliced_wasserstein",
    "wasserstein_1d",
]


def _quantiles(qs: Tensor, cw: Tensor, values: Tensor) -> Tensor:
    idx = torch.searchsorted(cw.contiguous(), qs.contiguous(), right=False)
    idx = idx.clamp_max(values.shape[-1] - 1)
    return torch.gather(values, -1, idx)


def wasserstein_1d(
    u: Tensor,
    v: Tensor,
    u_weights: Tensor | None = None,
    v_weights: Tensor | None = None,
    p: float = 2,
) -> Tensor:
    r"""``p``-th power of the 1-D Wasserstein distance, batched over leading dimensions.

    .. math::
        W_p^p(\mu, \nu) = \int_0^1 |F_\mu^{-1}(t) - F_\nu^{-1}(t)|^p \, dt

    computed exactly from the quantile functions on the merged grid of cumulative weights (as
    POT's ``ot.wasserstein_1d``, which also returns :math:`W_p^p`, not :math:`W_p`). For equal
    sizes and uniform weights it reduces to :math:`\frac1n\sum_i |u_{(i)} - v_{(i)}|^p` (sorted
    samples), which is the path taken then.

    Convention: samples lie along the **last** dimension (POT uses the first); leading
    dimensions are batch dimensions and broadcast.

    Args:
        u: values ``(*batch, n)``.
        v: values ``(*batch, m)``.
        u_weights: non-negative weights ``(*batch, n)`` summing to one (default uniform).
        v_weights: non-negative weights ``(*batch, m)`` summing to one (default uniform).
        p: exponent, >= 1.

    Returns:
        :math:`W_p^p`, shape ``batch``; differentiable w.r.t. the values (through the sort) and
        the weights.

    Example:
        Sorted samples pair up as (0, 1) and (1, 3): :math:`(1^2 + 2^2) / 2`.

        >>> wasserstein_1d(torch.tensor([0.0, 1.0]), torch.tensor([3.0, 1.0]))
        tensor(2.5000)
    """
    check_tensor(u, "u", min_ndim=1, floating=True)
    check_tensor(v, "v", min_ndim=1, floating=True)
    p = check_number(p, "p", low=1.0)
    if u_weights is None and v_weights is None and u.shape[-1] == v.shape[-1]:
        diff = torch.sort(u, dim=-1).values - torch.sort(v, dim=-1).values
        if p == 2.0:
            return (diff * diff).mean(-1)
        return (diff.abs() ** p).mean(-1)
    n, m = u.shape[-1], v.shape[-1]
    if u_weights is None:
        u_weights = torch.full_like(u, 1.0 / n)
    else:
        check_tensor(u_weights, "u_weights", floating=True)
        if get_checks() != "off" and u_weights.shape[-1] != n:
            raise ValueError(
                f"u_weights: expected {n} weights to match u, got {u_weights.shape[-1]}"
            )
    if v_weights is None:
        v_weights = torch.full_like(v, 1.0 / m)
    else:
        check_tensor(v_weights, "v_weights", floating=True)
        if get_checks() != "off" and v_weights.shape[-1] != m:
            raise ValueError(
                f"v_weights: expected {m} weights to match v, got {v_weights.shape[-1]}"
            )
    batch = torch.broadcast_shapes(
        u.shape[:-1], v.shape[:-1], u_weights.shape[:-1], v_weights.shape[:-1]
    )
    u, u_weights = u.expand(*batch, n), u_weights.expand(*batch, n)
    v, v_weights = v.expand(*batch, m), v_weights.expand(*batch, m)
    u_sorted, ui = torch.sort(u, dim=-1)
    v_sorted, vi = torch.sort(v, dim=-1)
    ucw = torch.cumsum(torch.gather(u_weights, -1, ui), -1)
    vcw = torch.cumsum(torch.gather(v_weights, -1, vi), -1)
    qs = torch.sort(torch.cat([ucw, vcw], -1), dim=-1).values
    uq = _quantiles(qs, ucw.detach(), u_sorted)
    vq = _quantiles(qs, vcw.detach(), v_sorted)
    delta = torch.diff(qs, dim=-1, prepend=torch.zeros_like(qs[..., :1]))
    return (delta * (uq - vq).abs() ** p).sum(-1)


def random_projections(
    d: int,
    n_projections: int,
    seed: int | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """``(d, n_projections)`` matrix of directions uniform on the sphere (normalised Gaussians).

    ``seed`` seeds a private ``torch.Generator`` (draws differ from POT's numpy draws; pass the
    same ``projections`` to both to compare).
    """
    d = check_int(d, "d", low=1)
    n_projections = check_int(n_projections, "n_projections", low=1)
    gen = None
    if seed is not None:
        gen = torch.Generator(device=device if device is not None else "cpu").manual_seed(seed)
    theta = torch.randn(d, n_projections, generator=gen, dtype=dtype, device=device)
    return theta / theta.norm(dim=0, keepdim=True)


def _projected_wpp(
    x: Tensor,
    y: Tensor,
    a: Tensor | None,
    b: Tensor | None,
    n_projections: int,
    p: float,
    projections: Tensor | None,
    seed: int | None,
) -> Tensor:
    """Per-direction ``W_p^p``, shape ``(*batch, L)``."""
    check_tensor(x, "x", min_ndim=2, floating=True)
    check_tensor(y, "y", min_ndim=2, floating=True)
    p = check_number(p, "p", low=1.0)
    if get_checks() != "off" and x.shape[-1] != y.shape[-1]:
        raise ValueError(f"y: expected {x.shape[-1]} features to match x, got {y.shape[-1]}")
    dt = compute_dtype(x, y)
    d = x.shape[-1]
    if projections is None:
        projections = random_projections(d, n_projections, seed, dtype=dt, device=x.device)
    else:
        check_tensor(projections, "projections", min_ndim=2, floating=True)
        if get_checks() != "off" and projections.shape[-2] != d:
            raise ValueError(
                f"projections: expected shape (d={d}, L) of unit directions, "
                f"got {tuple(projections.shape)}"
            )
    proj = projections.to(dt)
    proj_t = proj.transpose(-2, -1)
    xp = torch.matmul(proj_t, x.to(dt).transpose(-2, -1))  # (*batch, L, n), contiguous rows
    yp = torch.matmul(proj_t, y.to(dt).transpose(-2, -1))
    aw = None if a is None else a.to(dt).unsqueeze(-2)
    bw = None if b is None else b.to(dt).unsqueeze(-2)
    return wasserstein_1d(xp, yp, aw, bw, p=p)


def sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    n_projections: int = 50,
    p: float = 2,
    projections: Tensor | None = None,
    seed: int | None = None,
) -> Tensor:
    r"""Monte-Carlo sliced Wasserstein distance (POT's ``sliced_wasserstein_distance``).

    .. math::
        SW_p(\mu, \nu) = \Big(\frac1L \sum_{l=1}^L W_p^p(\theta_l^\top \# \mu,
        \theta_l^\top \# \nu)\Big)^{1/p}, \qquad \theta_l \sim \mathcal U(S^{d-1})

    Args:
        x: source points ``(*batch, n, d)``.
        y: target points ``(*batch, m, d)``.
        a: source weights ``(*batch, n)`` (default uniform).
        b: target weights ``(*batch, m)`` (default uniform).
        n_projections: number ``L`` of random directions (ignored when ``projections`` given).
        p: exponent, >= 1.
        projections: ``(d, L)`` matrix of unit directions (POT's convention), or ``(*batch, d,
            L)`` for one set per problem. Pass the same matrix to POT to get the same value.
        seed: seed of the directions' generator (``None``: torch's global RNG).

    Returns:
        :math:`SW_p` (the root, like POT), shape ``batch``; differentiable w.r.t. the points,
        with gradient 0 where :math:`SW_p = 0` (POT's root gives NaN there).

    Example:
        Along the first axis :math:`W_2^2 = 9`, along the second :math:`0.5`, so
        :math:`SW_2 = \sqrt{(9 + 0.5) / 2}`.

        >>> x = torch.tensor([[0.0, 0.0], [1.0, 0.0]])
        >>> y = torch.tensor([[3.0, 0.0], [4.0, 1.0]])
        >>> sliced_wasserstein(x, y, projections=torch.eye(2))
        tensor(2.1794)
    """
    wpp = _projected_wpp(x, y, a, b, n_projections, p, projections, seed)
    return safe_root(wpp.mean(-1), p)  # gradient 0, not NaN, at SW = 0 (e.g. y = x)


def max_sliced_wasserstein(
    x: Tensor,
    y: Tensor,
    a: Tensor | None = None,
    b: Tensor | None = None,
    n_projections: int = 50,
    p: float = 2,
    projections: Tensor | None = None,
    seed: int | None = None,
) -> Tensor:
    r"""Max-sliced Wasserstein over a finite set of directions (POT's
    ``max_sliced_wasserstein_distance``): :math:`\max_l W_p(\theta_l^\top\#\mu, \theta_l^\top\#\nu)`.

    The maximum is over the ``L`` given or sampled directions (no optimisation of the direction;
    the gradient flows through the maximising direction only). Arguments as
    :func:`sliced_wasserstein`.
    """
    wpp = _projected_wpp(x, y, a, b, n_projections, p, projections, seed)
    return safe_root(wpp.amax(-1), p)


def _batched_sqeuclidean(fx: Tensor, fy: Tensor) -> Tensor:
    """``(*batch, N1, N2)`` squared distances; the leading dimensions broadcast (as cdist)."""
    if fx.dim() == 2 and fy.dim() == 2:
        return sqeuclidean(fx, fy)
    try:
        batch = torch.broadcast_shapes(fx.shape[:-2], fy.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"feat_y: expected batch dimensions broadcastable with feat_x's "
            f"{tuple(fx.shape[:-2])}, got {tuple(fy.shape[:-2])}"
        ) from None
    fx = fx.expand(*batch, *fx.shape[-2:]).reshape(-1, *fx.shape[-2:])
    fy = fy.expand(*batch, *fy.shape[-2:]).reshape(-1, *fy.shape[-2:])
    return torch.vmap(sqeuclidean)(fx, fy).reshape(*batch, fx.shape[-2], fy.shape[-2])


def log_sinkhorn_correspondence(
    feat_x: Tensor, feat_y: Tensor, sigma: float = 0.1, n_iter: int = 10
) -> tuple[Tensor, Tensor]:
    r"""Entropic soft correspondences of the refinement step of Le et al. (CVPR 2024).

    With :math:`d_{ij} = \|x_i - y_j\|^2 / \mathrm{mean}(d)` and
    :math:`\log P = -d / (2\sigma^2)`, run ``n_iter`` rounds of (row log-normalisation, column
    log-normalisation) -- Sinkhorn with unit row and column sums -- then return

    * ``p_xy``: the plan after one more row normalisation (rows sum to one), ``(*, N1, N2)``;
    * ``p_yx``: that plan column-normalised and transposed (rows sum to one), ``(*, N2, N1)``,

    as the authors' ``adaptive_refinement_one.py``. The authors detach both before the SW loss
    (do so with ``.detach()``; here they stay differentiable).

    The rounds are the Sinkhorn loop of :func:`inforeg.ot.sinkhorn` (alternating updates in log
    space) at temperature :math:`2\sigma^2` on the cost :math:`d`, with unit marginals.

    Args:
        feat_x: features ``(*batch, N1, D)``.
        feat_y: features ``(*batch, N2, D)``; the batch dimensions broadcast with feat_x's
            (as in ``torch.cdist``).
        sigma: temperature (default 0.1, the authors' value).
        n_iter: Sinkhorn rounds (default 10).

    Example:
        Reversed features: each point corresponds to its mirror image.

        >>> fx = torch.tensor([[0.0], [1.0], [2.0]])
        >>> p_xy, p_yx = log_sinkhorn_correspondence(fx, fx.flip(0))
        >>> p_xy.argmax(-1), p_xy.sum(-1)
        (tensor([2, 1, 0]), tensor([1., 1., 1.]))
    """
    check_tensor(feat_x, "feat_x", min_ndim=2, floating=True)
    check_tensor(feat_y, "feat_y", min_ndim=2, floating=True)
    if get_checks() != "off" and feat_x.shape[-1] != feat_y.shape[-1]:
        raise ValueError(
            f"feat_y: expected {feat_x.shape[-1]} features to match feat_x, got {feat_y.shape[-1]}"
        )
    sigma = check_positive(sigma, "sigma")
    n_iter = check_int(n_iter, "n_iter", low=0)
    in_dtype = torch.promote_types(feat_x.dtype, feat_y.dtype)
    dt = compute_dtype(feat_x, feat_y)
    fx, fy = feat_x.to(dt), feat_y.to(dt)
    d = _batched_sqeuclidean(fx, fy)
    # Sinkhorn on the cost d / mean(d) at temperature 2 sigma^2 (log P = -d / (2 sigma^2)) with
    # unit marginals (log-weights 0): n_iter alternating updates at a constant temperature.
    softmin = MatrixSoftmin(d / d.mean((-2, -1), keepdim=True))
    eps = 2.0 * sigma**2
    zero_x, zero_y = d.new_zeros(d.shape[:-1]), d.new_zeros(d.shape[:-2] + d.shape[-1:])
    g = sinkhorn_loop(softmin, zero_x, zero_y, [eps] * n_iter, eps).potentials.g
    f = softmin(eps, "xy", g / eps)  # one more row normalisation
    p_xy = torch.exp(softmin.log_plan(eps, zero_x, zero_y, f, g))
    g_col = softmin(eps, "yx", f / eps)  # that plan column-normalised
    p_yx = torch.exp(softmin.log_plan(eps, zero_x, zero_y, f, g_col)).transpose(-2, -1)
    return p_xy.to(in_dtype), p_yx.to(in_dtype)


class LogSinkhorn(torch.nn.Module):
    """Module form of :func:`log_sinkhorn_correspondence` (stores ``sigma`` and ``n_iter``)."""

    def __init__(self, sigma: float = 0.1, n_iter: int = 10) -> None:
        super().__init__()
        self.sigma = check_positive(sigma, "sigma")
        self.n_iter = check_int(n_iter, "n_iter", low=0)

    def forward(self, feat_x: Tensor, feat_y: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(p_xy, p_yx)``."""
        return log_sinkhorn_correspondence(feat_x, feat_y, self.sigma, self.n_iter)


class SlicedWassersteinLoss(torch.nn.Module):
    r"""Sliced-Wasserstein correspondence loss of Le et al. (CVPR 2024), class ``SW`` of the code.

    For features :math:`X \in \mathbb R^{B\times N_1\times D}`, :math:`Y \in
    \mathbb R^{B\times N_2\times D}` and a soft permutation :math:`P_{xy}` (rows sum to one),

    .. math::
        \mathcal L = w \cdot \frac1B \sum_b SW_p(X_b, P_{xy,b} Y_b)
        \quad\big(+\, SW_p(P_{yx,b} X_b, Y_b) \text{ if bidirectional}\big),

    with :math:`SW_p = (\frac1L\sum_l W_p^p)^{1/p}` over ``L`` fresh unit directions drawn per
    forward pass and per batch element (shape ``(B, L, D)``), and uniform weights. Defaults are
    the authors': ``L=200``, ``p=2``; the paper trains with ``weight=100`` and
    ``bidirectional=False`` and uses ``bidirectional=True`` in test-time refinement (with plans
    from :func:`log_sinkhorn_correspondence`, detached). ``weight`` defaults to 1 here.

    Args:
        n_projections: ``L``.
        p: exponent.
        bidirectional: add the ``(P_yx X, Y)`` term (summed, as in the code).
        weight: multiplier of the loss.
        reduction: ``"mean"`` (over the batch, the paper's), ``"sum"`` or ``"none"``.
    """

    def __init__(
        self,
        n_projections: int = 200,
        p: float = 2,
        bidirectional: bool = False,
        weight: float = 1.0,
        reduction: Literal["mean", "sum", "none"] = "mean",
    ) -> None:
        super().__init__()
        self.n_projections = check_int(n_projections, "n_projections", low=1)
        self.p = check_number(p, "p", low=1.0)
        self.bidirectional = bidirectional
        self.weight = check_number(weight, "weight")
        self.reduction: Literal["mean", "sum", "none"] = reduction

    def forward(
        self,
        x: Tensor,
        y: Tensor,
        p_xy: Tensor,
        p_yx: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Loss for features ``x (B, N1, D)``, ``y (B, N2, D)`` and plans ``p_xy (B, N1, N2)``,
        ``p_yx (B, N2, N1)`` (required when bidirectional)."""
        check_tensor(x, "x", ndim=3, floating=True)
        check_tensor(y, "y", ndim=3, floating=True)
        check_tensor(p_xy, "p_xy", ndim=3, floating=True)
        bsz, n1, d = x.shape
        n2 = y.shape[1]
        if get_checks() != "off":
            if y.shape[0] != bsz or y.shape[2] != d:
                raise ValueError(f"y: expected shape ({bsz}, N2, {d}), got {tuple(y.shape)}")
            if p_xy.shape != (bsz, n1, n2):
                raise ValueError(f"p_xy: expected shape {(bsz, n1, n2)}, got {tuple(p_xy.shape)}")
        if self.bidirectional:
            if p_yx is None:
                raise ValueError("p_yx: required when bidirectional=True")
            check_tensor(p_yx, "p_yx", ndim=3, floating=True)
            if get_checks() != "off" and p_yx.shape != (bsz, n2, n1):
                raise ValueError(f"p_yx: expected shape {(bsz, n2, n1)}, got {tuple(p_yx.shape)}")
        dt = compute_dtype(x, y, p_xy)
        theta = torch.randn(
            bsz, self.n_projections, d, generator=generator, dtype=dt, device=x.device
        )
        theta = (theta / theta.norm(dim=-1, keepdim=True)).transpose(-2, -1)  # (B, D, L)
        xd, yd = x.to(dt), y.to(dt)
        y_hat = torch.bmm(p_xy.to(dt), yd)
        loss = sliced_wasserstein(xd, y_hat, p=self.p, projections=theta)
        if self.bidirectional:
            assert p_yx is not None
            x_hat = torch.bmm(p_yx.to(dt), xd)
            loss = loss + sliced_wasserstein(x_hat, yd, p=self.p, projections=theta)
        return (self.weight * reduce(loss, self.reduction)).to(x.dtype)
