r"""Distance-covariance fairness regularisers: dCov, JdCov, CCdCov, and the JSD calibration helper.

From "Machine Learning with Multitype Protected Attributes: Intersectional Fairness through
Regularisation" (Lee, Antonio, Avanzi, Marchi et al., 2025, arXiv 2509.08163). A model's
prediction :math:`\hat y` should be independent of the protected attributes :math:`Z_1..Z_m`
(continuous or categorical). With U-centred distance matrices
:math:`\tilde U^{(i)}` (Székely & Rizzo 2014, zero diagonal, n >= 4):

.. math::

    \mathrm{dCov}^2_U(\hat y, Z) = \frac{1}{n(n-3)} \sum_{k \neq l} \tilde U^{\hat y}_{kl}
        \tilde U^{Z}_{kl}

    \mathrm{JdCov}^2(X_1, \dots, X_m; c) = \frac{1}{n(n-3)} \sum_{k, l} \prod_{i=1}^m
        \big(\tilde U^{(i)}_{kl} + c\big) - \frac{c^m\, n}{n-3}
    \qquad \text{(Chakraborty \& Zhang 2019; } = \mathrm{dCov}^2_U \text{ for } m = 2)

    \mathrm{CCdCov}^2(\hat y; Z_1, \dots, Z_m) = \mathrm{dCov}^2_U\big(\hat y, [Z_1 | \dots | Z_m]\big)

JdCov sums all pairwise dCov² plus higher-order terms, including attribute-attribute dependence
(constant for the model). CCdCov concatenates the attributes column-wise (categorical ones one-hot,
continuous ones standardised when ``standardize=True``), so independence from every intersection is
penalised without attribute-attribute terms. The sum of marginal dCov² is the baseline
(``kind="dcov"``).

Author code vs paper: (1) the authors' U-centring helper returns *minus* the standard U-centred
matrix; for dCov² (two factors) the sign cancels, but for JdCov with three or more variables it
flips the sign of the odd-order interaction terms. Here the standard sign is used. (2) The authors'
JdCov subtracts n/(n-3) for every c, which is only centred for c = 1; here
:math:`c^m n/(n-3)` is subtracted (identical at the default c = 1).

:func:`generalized_jsd` is the paper's calibration metric: per group g, a Gaussian KDE
(absolute bandwidth 0.15, as sklearn's ``KernelDensity(bandwidth=0.15)`` in the authors' code) of
the predictions evaluated on 1000 points spanning [min, max] of all predictions and normalised to a
pmf :math:`p_g`; then :math:`\mathrm{JSD} = H_2(\sum_g \pi_g p_g) - \sum_g \pi_g H_2(p_g)` in bits
(probabilities clipped at 1e-10), with :math:`\pi_g` the group proportions or equal weights.

Choosing λ: the authors' notebook (``agi-lab/beyond-correlation``,
``python/pg15training/pg15training_application.qmd``) trains λ = 0, 10, ..., 150 over 10 seeds,
plots the seed-averaged validation JSD against λ and the utility, and picks λ by hand (30 for
JdCov, 40 for CCdCov, at about equal JSD). :func:`smallest_lambda_reaching` (the smallest λ whose
JSD is at most a target) is inforeg's rule for that choice, not the authors'.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.core.checks import (
    check_choice,
    check_index_range,
    check_int,
    check_number,
    check_same_length,
    check_tensor,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.core.pairwise import BlockFn, pairwise_reduce
from inforeg.dependence._utils import at_origin, cpu_block_rows
from inforeg.dependence.distance_covariance import distance_covariance_sqr, distance_matrix_blocks

__all__ = [
    "DistanceCovarianceFairness",
    "concatenated_distance_covariance",
    "encode_attributes",
    "generalized_jsd",
    "joint_distance_covariance",
    "smallest_lambda_reaching",
]


def _as_2d(x: Tensor, name: str) -> Tensor:
    check_tensor(x, name, ndim=(1, 2), floating=True)
    return x.unsqueeze(1) if x.dim() == 1 else x


def _widened(block: BlockFn) -> BlockFn:
    """``block`` with its rows in float64."""
    return lambda start, stop: block(start, stop).double()


def joint_distance_covariance(
    xs: Sequence[Tensor], c: float = 1.0, chunk_size: int | None = None
) -> Tensor:
    """Unbiased joint distance covariance JdCov²(X_1, ..., X_m; c) (Chakraborty & Zhang 2019).

    Args:
        xs: m >= 2 tensors, each (n,) or (n, d_i), the same n >= 4 (floating point; encode
            categorical variables first, e.g. with :func:`encode_attributes`).
        c: the constant added to each U-centred matrix (default 1, as the paper).
        chunk_size: rows per block of the two streamed passes (None: chosen from n).

    Returns:
        0-d tensor (can be negative), in the dtype of ``xs[0]``.

    Example (for two variables it is the unbiased dCov²):

        >>> x = torch.tensor([0.0, 1.0, 2.0, 4.0, 7.0], dtype=torch.float64)
        >>> print(f"{float(joint_distance_covariance([x, x ** 2])):.4f}")
        13.2000
    """
    if isinstance(xs, Tensor) or len(xs) < 2:
        raise ValueError("xs: expected a sequence of at least 2 tensors")
    mats = [_as_2d(x, f"xs[{i}]") for i, x in enumerate(xs)]
    n = mats[0].shape[0]
    for i, m in enumerate(mats[1:], 1):
        check_same_length(mats[0], m, "xs[0]", f"xs[{i}]")
    if n < 4:
        raise ValueError(f"xs: the unbiased JdCov needs at least 4 samples, got {n}")
    c = check_number(c, "c", low=0.0)
    if chunk_size is not None:
        check_int(chunk_size, "chunk_size", low=1)
    # Distances in the inputs' precision, centring and products in float64: the n^2 products
    # of U-centred entries cancel to a total ~1e4 times smaller, and in float32 the result was
    # off by 1e-3 (n = 1500) to 1e-2 (n = 6000) of itself.
    dtype = compute_dtype(*mats)
    blocks = [_widened(distance_matrix_blocks(at_origin(m.to(dtype))[0])) for m in mats]
    # Pass 1: row sums r and totals S of every distance matrix.
    chunk = cpu_block_rows(chunk_size, mats[0], n)
    rows = [pairwise_reduce(b, n, "rows", chunk) for b in blocks]
    totals = [r.sum() for r in rows]

    def product_block(start: int, stop: int) -> Tensor:
        out: Tensor | None = None
        dev = rows[0].device
        # the diagonal of this row block, built by comparison (index assignment of a Python
        # scalar would copy it to the device and wait)
        diag = torch.arange(start, stop, device=dev)[:, None] == torch.arange(n, device=dev)
        for b, r, s in zip(blocks, rows, totals):
            u = b(start, stop) - r[start:stop, None] / (n - 2) - r[None, :] / (n - 2)
            u = u + s / ((n - 1) * (n - 2))
            u = torch.where(diag, 0.0 * u, u) + c
            out = u if out is None else out * u
        assert out is not None
        return out

    total = pairwise_reduce(product_block, n, "sum", chunk)
    n_vars = len(mats)
    return (total / (n * (n - 3)) - (c**n_vars) * n / (n - 3)).to(mats[0].dtype)


def encode_attributes(
    attributes: Sequence[Tensor],
    num_classes: Sequence[int | None] | None = None,
    standardize: bool = True,
) -> Tensor:
    """Concatenate protected attributes column-wise: integer tensors one-hot, floats (standardised).

    Args:
        attributes: tensors (n,) or (n, d); integer dtype = categorical (codes 0..K-1).
        num_classes: per attribute, K for categorical ones (None: max code + 1, which syncs).
        standardize: z-score continuous columns (mean 0, std 1; a constant column stays 0).

    Returns:
        (n, D) float tensor (float32 unless a continuous attribute is float64).
    """
    if isinstance(attributes, Tensor) or len(attributes) == 0:
        raise ValueError("attributes: expected a non-empty sequence of tensors")
    cont = [a for a in attributes if a.is_floating_point()]
    dtype = compute_dtype(*cont) if cont else torch.float32
    cols = []
    for i, a in enumerate(attributes):
        check_tensor(a, f"attributes[{i}]", ndim=(1, 2))
        check_same_length(attributes[0], a, "attributes[0]", f"attributes[{i}]")
        if a.is_floating_point():
            col = _as_2d(a, f"attributes[{i}]").to(dtype)
            if standardize:
                sd = col.std(0, keepdim=True)
                col = (col - col.mean(0, keepdim=True)) / torch.where(
                    sd > 0, sd, torch.ones_like(sd)
                )
            cols.append(col)
        else:
            if a.dim() != 1:
                raise ValueError(
                    f"attributes[{i}]: categorical codes must be 1-D, got {tuple(a.shape)}"
                )
            k = None if num_classes is None else num_classes[i]
            if k is None:  # the size comes from the codes (a sync), so check them here too
                lo, hi = int(a.min()), int(a.max())
                if lo < 0:
                    raise ValueError(
                        f"attributes[{i}]: expected categorical codes >= 0, got values in "
                        f"[{lo}, {hi}]"
                    )
                k = hi + 1
            else:
                check_index_range(a, f"attributes[{i}]", k, "categorical codes")
            cols.append(F.one_hot(a.long(), k).to(dtype))
    return torch.cat(cols, dim=1)


def concatenated_distance_covariance(
    pred: Tensor,
    attributes: Sequence[Tensor] | Tensor,
    unbiased: bool = True,
    standardize: bool = True,
    num_classes: Sequence[int | None] | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """CCdCov²: dCov²(pred, [Z_1 | ... | Z_m]) with attributes encoded by :func:`encode_attributes`.

    Args:
        pred: predictions (n,) or (n, k).
        attributes: a sequence of attribute tensors, or one already-encoded (n, D) float tensor.
        unbiased: U-statistic (default, as the paper; needs n >= 4) or V-statistic.
        standardize, num_classes: see :func:`encode_attributes`.
        chunk_size: as in :func:`inforeg.dependence.distance_covariance_sqr`.
    """
    check_tensor(pred, "pred", ndim=(1, 2), floating=True)
    z = (
        attributes
        if isinstance(attributes, Tensor)
        else encode_attributes(attributes, num_classes, standardize)
    )
    check_same_length(pred, z, "pred", "attributes")
    return distance_covariance_sqr(
        pred, z.to(compute_dtype(pred)), unbiased=unbiased, chunk_size=chunk_size
    )


class DistanceCovarianceFairness(nn.Module):
    """Fairness penalty ``weight * R(pred, Z_1..Z_m)`` with R one of three dependence measures.

    Args:
        kind: ``"ccdcov"`` (default, the paper's proposal), ``"jdcov"`` (JdCov²(pred, Z_1..Z_m))
            or ``"dcov"`` (sum over attributes of the marginal dCov²(pred, Z_i)).
        weight: λ.
        c: JdCov constant.
        standardize: z-score continuous attributes before use (all kinds).
        num_classes: per attribute, number of categories of categorical ones.
        clamp_negative: unbiased estimates can be negative and a minimiser may push below 0;
            True returns max(R, 0) (off by default, as the paper).
        chunk_size: streamed block rows.

    ``forward(pred, attributes)`` with ``attributes`` a sequence of tensors (integer = categorical).
    Under DDP wrap the function of already-encoded tensors: e.g.
    ``Gathered(lambda p, z: concatenated_distance_covariance(p, z))``.
    """

    def __init__(
        self,
        kind: Literal["ccdcov", "jdcov", "dcov"] = "ccdcov",
        weight: float = 1.0,
        c: float = 1.0,
        standardize: bool = True,
        num_classes: Sequence[int | None] | None = None,
        clamp_negative: bool = False,
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        check_choice(kind, "kind", ("ccdcov", "jdcov", "dcov"))
        self.kind = kind
        self.weight = check_number(weight, "weight", low=0.0)
        self.c = check_number(c, "c", low=0.0)
        self.standardize = standardize
        self.num_classes = None if num_classes is None else tuple(num_classes)
        self.clamp_negative = clamp_negative
        self.chunk_size = chunk_size

    def forward(self, pred: Tensor, attributes: Sequence[Tensor]) -> Tensor:
        """Return ``weight * R``."""
        if isinstance(attributes, Tensor):
            attributes = [attributes]
        if self.kind == "ccdcov":
            r = concatenated_distance_covariance(
                pred, attributes, True, self.standardize, self.num_classes, self.chunk_size
            )
        else:
            encoded = [
                encode_attributes(
                    [a],
                    None if self.num_classes is None else [self.num_classes[i]],
                    self.standardize,
                )
                for i, a in enumerate(attributes)
            ]
            p = _as_2d(pred, "pred")
            encoded = [e.to(compute_dtype(p)) for e in encoded]
            if self.kind == "jdcov":
                r = joint_distance_covariance([p, *encoded], self.c, self.chunk_size)
            else:
                r = sum(
                    (
                        distance_covariance_sqr(p, e, unbiased=True, chunk_size=self.chunk_size)
                        for e in encoded
                    ),
                    start=torch.zeros((), dtype=p.dtype, device=p.device),
                )
        if self.clamp_negative:
            r = r.clamp_min(0.0)
        return self.weight * r


def generalized_jsd(
    pred: Tensor,
    groups: Tensor,
    weights: Literal["proportion", "equal"] = "proportion",
    bandwidth: float = 0.15,
    grid_size: int = 1000,
) -> Tensor:
    """Generalised Jensen-Shannon divergence (bits) between the per-group prediction densities.

    Args:
        pred: predictions, shape (n,).
        groups: integer group codes (e.g. the intersection of the protected attributes), shape (n,).
        weights: ``"proportion"`` (group frequencies, default) or ``"equal"``.
        bandwidth: absolute Gaussian KDE bandwidth (default 0.15, as the authors' code).
        grid_size: evaluation points over [min pred, max pred].

    Returns:
        0-d tensor in [0, log2(G)] (G = number of groups present); 0 for identical groups.
        An evaluation metric (one host sync for the group set), not a training loss.
    """
    check_tensor(pred, "pred", ndim=1, floating=True)
    check_tensor(groups, "groups", ndim=1, integer=True)
    if groups.shape[0] != pred.shape[0]:
        raise ValueError(
            f"groups: expected {pred.shape[0]} entries to match pred, got {groups.shape[0]}"
        )
    check_choice(weights, "weights", ("proportion", "equal"))
    check_number(bandwidth, "bandwidth", low=0.0, low_inclusive=False)
    check_int(grid_size, "grid_size", low=2)
    p = pred.detach().to(compute_dtype(pred))
    grid = torch.linspace(float(p.min()), float(p.max()), grid_size, dtype=p.dtype, device=p.device)
    codes, counts = torch.unique(groups, return_counts=True)
    pmfs = []
    for code in codes:
        members = p[groups == code]
        logk = -((grid[:, None] - members[None, :]) ** 2) / (2 * bandwidth**2)
        dens = torch.logsumexp(logk, dim=1)
        pmfs.append(torch.softmax(dens, dim=0))
    pm = torch.stack(pmfs)
    if weights == "proportion":
        pi = counts.to(p.dtype) / counts.sum()
    else:
        pi = torch.full((len(codes),), 1.0 / len(codes), dtype=p.dtype, device=p.device)

    def h2(q: Tensor) -> Tensor:
        q = q.clamp_min(1e-10)
        return -(q * torch.log2(q)).sum(-1)

    return h2((pi[:, None] * pm).sum(0)) - (pi * h2(pm)).sum()


def smallest_lambda_reaching(
    lambdas: Sequence[float], jsd: Sequence[float], target: float
) -> float | None:
    """The smallest λ whose JSD is at most ``target`` (None if none reaches it)."""
    if len(lambdas) != len(jsd):
        raise ValueError(f"jsd: expected {len(lambdas)} values to match lambdas, got {len(jsd)}")
    ok = sorted(lam for lam, j in zip(lambdas, jsd) if j <= target)
    return ok[0] if ok else None
