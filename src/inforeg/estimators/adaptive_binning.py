r"""Adaptive mutual-information estimators for information-plane analysis (EBAB and aKDE).

Chelombiev, Houghton & O'Donnell, "Adaptive Estimators Show Information Compression in Deep Neural
Networks", ICLR 2019, arXiv 1902.09037; authors' code ``ivansche/adaptive_estimators``
(``idnns/information/information_process.py``: ``set_up_bins`` maxentropy branch,
``calc_kde_info_for_layer``; ``idnns/information/kde.py``). Nats by default (``base``); the paper
plots bits (``base=2``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from inforeg.core.checks import (
    check_choice,
    check_int,
    check_positive,
    check_same_length,
    check_tensor,
)
from inforeg.core.pairwise import sqeuclidean
from inforeg.estimators._common import check_log_base, plugin_entropy

__all__ = [
    "InformationPlane",
    "KDEInformation",
    "adaptive_bin_edges",
    "adaptive_binning_mutual_information",
    "information_plane",
    "kde_mutual_information",
]


def adaptive_bin_edges(t: Tensor, n_bins: int = 30, lower_edge: float | None = None) -> Tensor:
    r"""Entropy-based adaptive bin edges (equal numbers of *distinct* values per bin).

    All values of ``t`` are pooled; ``u`` = sorted unique values above the lower edge; edges =
    ``[lower, u[floor(k |u| / n_bins)] for k < n_bins, max(u)]``. The lower edge is 0 for ReLU /
    softplus and -1.000001 for tanh in the authors' code; ``None`` uses ``min(t)``. Values equal to
    the lower edge (e.g. ReLU zeros) get their own bin.

    Computed in float64 whatever the input dtype, and returned in float64 (edges rounded to
    the input's half precision would bin values on the wrong side). The edges depend on the
    *distinct* values, so bfloat16 activations, which merge nearby values, give other edges
    than the same activations in float32 (of the order of the spacing between distinct values,
    0.09 for 500 ReLU'd standard normals): that is the input's rounding, not the computation's.
    """
    check_tensor(t, "t", floating=True, nonempty=True)
    check_int(n_bins, "n_bins", low=1)
    v = t.detach().reshape(-1).double()
    lo = float(v.min()) if lower_edge is None else float(lower_edge)
    u = torch.unique(v)
    u = u[u > lo]
    if u.numel() == 0:
        return torch.tensor([lo, lo], dtype=torch.float64)
    k = torch.arange(n_bins)
    inner = u[(k * u.numel()) // n_bins]
    edges = torch.cat([torch.tensor([lo], dtype=torch.float64), inner, u[-1:]])
    return torch.unique(edges)


def _digitise(t: Tensor, edges: Tensor) -> Tensor:
    """Index of the bin (left edge) of each value; values at/below the lower edge go to bin 0."""
    return (torch.searchsorted(edges, t.double().contiguous(), right=True) - 1).clamp(
        0, edges.numel() - 1
    )


def _conditional_entropy(codes: Tensor, cond: Tensor) -> Tensor:
    h = torch.zeros((), dtype=torch.float64)
    for c in torch.unique(cond):
        mask = cond == c
        h = h + mask.double().mean() * plugin_entropy(codes[mask])
    return h


def adaptive_binning_mutual_information(
    t: Tensor,
    y: Tensor,
    x_ids: Tensor | None = None,
    n_bins: int = 30,
    lower_edge: float | None = None,
    binning: Literal["adaptive", "fixed"] = "adaptive",
    base: float = math.e,
    value_range: tuple[float, float] | None = None,
) -> tuple[Tensor, Tensor]:
    r"""EBAB estimates :math:`(I(X;T), I(T;Y))` of one layer's activations.

    Each activation is replaced by the left edge of its bin (:func:`adaptive_bin_edges`, or
    ``n_bins`` equal-width bins for ``"fixed"``); each row becomes one symbol; then, with plug-in
    entropies,

    .. math::

        I(X;T) = H(T) - \sum_x p(x) H(T \mid X=x), \qquad I(T;Y) = H(T) - \sum_y p(y) H(T\mid Y=y)

    With distinct inputs (``x_ids=None``) and a deterministic network :math:`I(X;T) = H(T)`.
    Adaptive binning is invariant to multiplying the activations by c > 0.

    Two fixed-width baselines. Without ``value_range`` the bins span the lower edge to the
    maximum of *this* call's activations, so they rescale with the layer (invariant to c > 0 when
    the lower edge is 0 or the minimum) and are partly adaptive themselves. With
    ``value_range=(lo, hi)`` they span one range given by the caller, as the authors'
    non-adaptive baselines do: :math:`[-1, 1]` for tanh, and for ReLU :math:`[0, \max]` with the
    maximum taken over the whole run (every logged epoch), so the same edges serve every epoch.
    Values below ``lo`` go to the first bin, values at or above ``hi`` to the bin of ``hi``. (The
    authors' code takes ``n_bins`` edges, i.e. one bin fewer.) Bounds:
    :math:`0 \le I(T;Y) \le H(Y)`, :math:`I(X;T) \le \log N`.

    Args:
        t: (N, m) activations. y: (N,) integer labels. x_ids: (N,) input identities (default:
            all distinct). n_bins: 30 (paper). lower_edge: see :func:`adaptive_bin_edges`.
        binning: ``"adaptive"`` (EBAB, default) or ``"fixed"`` (equal width, the baseline).
        base: logarithm base (nats default; 2 for the paper's bits).
        value_range: ``(lo, hi)``, lo < hi: the range of the ``"fixed"`` bins (default: the
            lower edge to the current maximum). Only with ``binning="fixed"`` and without
            ``lower_edge``.

    Returns:
        ``(I(X;T), I(T;Y))`` as 0-d float64 tensors on the device of ``t`` (the binning itself
        runs on the host).

    Example (one bin: edges 0, 1, 3 put the values 0 | 1, 2 | 3 in three bins, so
    ``H(T) = 1.5`` bits and ``H(T|Y) = 1`` bit):

        >>> t = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> i_xt, i_ty = adaptive_binning_mutual_information(t, y, n_bins=1, base=2)
        >>> round(float(i_xt), 4), round(float(i_ty), 4)
        (1.5, 0.5)

    Two fixed bins over this call's range [0, 1], then over a run-wide range [0, 2]:

        >>> t = torch.tensor([[0.0], [0.4], [0.6], [1.0]])
        >>> [round(float(v), 4) for v in adaptive_binning_mutual_information(
        ...     t, y, n_bins=2, binning="fixed", base=2.0)]
        [1.5, 1.0]
        >>> [round(float(v), 4) for v in adaptive_binning_mutual_information(
        ...     t, y, n_bins=2, binning="fixed", base=2.0, value_range=(0.0, 2.0))]
        [0.8113, 0.3113]
    """
    check_tensor(t, "t", ndim=2, floating=True, nonempty=True)
    check_tensor(y, "y", ndim=1, integer=True)
    check_same_length(t, y, "t", "y")
    check_choice(binning, "binning", ("adaptive", "fixed"))
    check_int(n_bins, "n_bins", low=1)
    check_log_base(base)
    if value_range is not None:
        lo, hi = _check_value_range(value_range, binning, lower_edge)
    device = t.device  # binning runs on the host (unique rows); the results go back
    t = t.detach().cpu()
    y = y.detach().cpu()
    if binning == "adaptive":
        edges = adaptive_bin_edges(t, n_bins, lower_edge)
    else:
        if value_range is None:
            lo = float(t.min()) if lower_edge is None else float(lower_edge)
            hi = max(float(t.max()), lo + 1e-12)
        edges = torch.linspace(lo, hi, n_bins + 1, dtype=torch.float64)
    idx = _digitise(t, edges)
    _, codes = torch.unique(idx, dim=0, return_inverse=True)
    h_t = plugin_entropy(codes)
    if x_ids is None:
        h_tx = torch.zeros((), dtype=torch.float64)
    else:
        check_same_length(t, x_ids, "t", "x_ids")
        h_tx = _conditional_entropy(codes, x_ids.detach().cpu())
    h_ty = _conditional_entropy(codes, y)
    scale = math.log(base)
    return ((h_t - h_tx) / scale).to(device), ((h_t - h_ty) / scale).to(device)


def _check_value_range(
    value_range: tuple[float, float], binning: str, lower_edge: float | None
) -> tuple[float, float]:
    if binning != "fixed":
        raise ValueError(f"value_range: only used with binning='fixed', got binning={binning!r}")
    if lower_edge is not None:
        raise ValueError("value_range: give either value_range or lower_edge, not both")
    if len(value_range) != 2:
        raise ValueError(f"value_range: expected (lo, hi), got {value_range!r}")
    lo, hi = float(value_range[0]), float(value_range[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"value_range: expected finite lo < hi, got {value_range!r}")
    return lo, hi


class KDEInformation(NamedTuple):
    """Kolchinsky-Tracey bounds: I(X;T) and I(T;Y) from the upper and from the lower entropy bound."""

    i_xt_upper: Tensor
    i_xt_lower: Tensor
    i_ty_upper: Tensor
    i_ty_lower: Tensor


def _kt_entropy(t: Tensor, var: float, lower: bool) -> Tensor:
    n, d = t.shape
    v = 4.0 * var if lower else var
    lse = torch.logsumexp(-sqeuclidean(t) / (2.0 * v), dim=1)
    h = d / 2.0 - (lse - math.log(n) - (d / 2.0) * math.log(2 * math.pi * v)).mean()
    return h + (d / 2.0) * math.log(0.25) if lower else h


def kde_mutual_information(
    t: Tensor,
    y: Tensor,
    variance: float = 0.01,
    variance_rule: Literal["fixed", "relative_to_max"] = "fixed",
    base: float = math.e,
) -> KDEInformation:
    r"""aKDE: Kolchinsky-Tracey pairwise bounds on the entropy of T + Gaussian noise of variance v.

    .. math::

        H_{\text{up}}(T) = \tfrac d2 - \tfrac1N\sum_i\Big[\log\sum_j
            e^{-\|t_i - t_j\|^2/(2v)} - \log N - \tfrac d2 \log(2\pi v)\Big],\qquad
        H_{\text{lo}}(T) = H_{\text{up}}(T)\big|_{4v} + \tfrac d2\log\tfrac14,

    :math:`H(T\mid X) = \tfrac d2(\log 2\pi v + 1)`, :math:`I(T;X) = H - H(T\mid X)`,
    :math:`I(T;Y) = H - \sum_y p(y) H(T\mid Y=y)`. The paper adapts the noise to the layer's
    activity range; the released code fixes v = 0.01 (and jitters and takes absolute values of
    the activations, which we do not do). ``variance_rule="relative_to_max"`` uses
    ``v = variance * max|T|^2`` (noise std proportional to the largest activation); the paper's
    exact rule is unverified. Streams nothing: O(N^2) memory per class.

    Args:
        t: (N, d) activations. y: (N,) integer labels. variance: v (or its factor).
        variance_rule: ``"fixed"`` (default) or ``"relative_to_max"``. base: nats by default.
    """
    check_tensor(t, "t", ndim=2, floating=True, nonempty=True)
    check_tensor(y, "y", ndim=1, integer=True)
    check_same_length(t, y, "t", "y")
    check_positive(variance, "variance")
    check_log_base(base)
    check_choice(variance_rule, "variance_rule", ("fixed", "relative_to_max"))
    t = t.detach().double()
    v = variance
    if variance_rule == "relative_to_max":
        v = variance * max(float(t.abs().max()) ** 2, 1e-300)
    d = t.shape[1]
    h_cond_x = (d / 2.0) * (math.log(2 * math.pi * v) + 1.0)
    out = []
    for lower in (False, True):
        h = _kt_entropy(t, v, lower)
        h_y = torch.zeros((), dtype=torch.float64)
        for c in torch.unique(y):
            mask = y == c
            h_y = h_y + mask.double().mean() * _kt_entropy(t[mask], v, lower)
        out.append((h - h_cond_x, h - h_y))
    s = math.log(base)
    return KDEInformation(out[0][0] / s, out[1][0] / s, out[0][1] / s, out[1][1] / s)


def information_plane(
    activations: Sequence[Tensor],
    y: Tensor,
    estimator: Literal["adaptive", "fixed", "kde"] = "adaptive",
    x_ids: Tensor | None = None,
    lower_edges: Sequence[float | None] | None = None,
    n_bins: int = 30,
    variance: float = 0.01,
    base: float = math.e,
    value_ranges: Sequence[tuple[float, float] | None] | None = None,
) -> list[tuple[float, float]]:
    """``[(I(X;T_l), I(T_l;Y)) for each layer l]`` with the chosen estimator (KDE: upper bounds).

    ``value_ranges`` gives each layer's fixed-bin range (``estimator="fixed"`` only; see
    ``value_range`` of :func:`adaptive_binning_mutual_information`), e.g. one run-wide range per
    layer so that every epoch is binned with the same edges.
    """
    check_choice(estimator, "estimator", ("adaptive", "fixed", "kde"))
    for name, per_layer in (("lower_edges", lower_edges), ("value_ranges", value_ranges)):
        if per_layer is not None and len(per_layer) != len(activations):
            raise ValueError(
                f"{name}: expected {len(activations)} entries (one per layer), got {len(per_layer)}"
            )
    points = []
    for i, t in enumerate(activations):
        # Checked here under the caller's name: the estimators below would name their own ``t``.
        check_tensor(t, f"activations[{i}]", min_ndim=1, floating=True)
        t2 = t.reshape(t.shape[0], -1)
        if estimator == "kde":
            r = kde_mutual_information(t2, y, variance=variance, base=base)
            points.append((float(r.i_xt_upper), float(r.i_ty_upper)))
        else:
            lo = None if lower_edges is None else lower_edges[i]
            rng = None if value_ranges is None else value_ranges[i]
            ixt, ity = adaptive_binning_mutual_information(
                t2, y, x_ids, n_bins, lo, binning=estimator, base=base, value_range=rng
            )
            points.append((float(ixt), float(ity)))
    return points


class InformationPlane:
    """Logs information-plane coordinates per layer per epoch: ``log(epoch, activations, y)``;
    ``history[layer]`` is a list of ``(epoch, I(X;T), I(T;Y))``. Options as
    :func:`information_plane`."""

    def __init__(
        self, estimator: Literal["adaptive", "fixed", "kde"] = "adaptive", **kwargs: object
    ) -> None:
        check_choice(estimator, "estimator", ("adaptive", "fixed", "kde"))
        self.estimator = estimator
        self.kwargs = kwargs
        self.history: dict[int, list[tuple[int, float, float]]] = {}

    def log(
        self, epoch: int, activations: Sequence[Tensor], y: Tensor
    ) -> list[tuple[float, float]]:
        pts = information_plane(activations, y, self.estimator, **self.kwargs)  # type: ignore[arg-type]
        for layer, (a, b) in enumerate(pts):
            self.history.setdefault(layer, []).append((epoch, a, b))
        return pts
