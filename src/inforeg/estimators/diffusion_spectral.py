r"""Diffusion spectral entropy (DSE) and diffusion spectral mutual information (DSMI).

Liao, Liu, Christensen, Tong et al., "Assessing Neural Network Representations During Training
Using Noise-Resilient Diffusion Spectral Entropy", IEEE CISS 2024 (arXiv 2312.04823; ICML 2023
TAG-ML workshop). Authors' estimator: ``ChenLiu-1996/DiffusionSpectralEntropy`` (``dse-dsmi``).

Units: **bits** by default (``base=2``), as the authors report; pass ``base=math.e`` for nats.
DSE is a monitoring metric; it runs under ``torch.no_grad`` and synchronises with the host
(eigen-solvers, subsampling).
"""

from __future__ import annotations

import math
import random
from typing import Literal

import torch
from torch import Tensor

from inforeg.core.checks import (
    check_choice,
    check_finite,
    check_int,
    check_positive,
    check_same_length,
    check_tensor,
    get_checks,
)
from inforeg.core.pairwise import kernel_block_fn, median_bandwidth
from inforeg.core.state import Accumulator
from inforeg.estimators._common import check_log_base

Method = Literal["exact", "lanczos", "randomized"]

__all__ = [
    "DiffusionSpectralEntropy",
    "diffusion_spectral_entropy",
    "diffusion_spectral_entropy_with_bound",
    "diffusion_spectral_mutual_information",
    "diffusion_eigenvalues",
]

_DENSE_LIMIT = 12_000  # form K densely up to this many points (1.15 GB in float64)


def _resolve_sigma(z: Tensor, sigma: float | str) -> float:
    if isinstance(sigma, str):
        check_choice(sigma, "sigma", ("median",))
        gen = torch.Generator().manual_seed(0)
        return float(median_bandwidth(z, max_points=2000, generator=gen))
    return check_positive(sigma, "sigma")


def _sample_rows(n: int, k: int, seed: int | None) -> list[int]:
    """The authors' draw: ``random.seed(seed); random.sample(range(n), k)`` (a private RNG)."""
    return random.Random(0 if seed is None else seed).sample(range(n), k)


def _subsample(z: Tensor, max_n: int | None, seed: int | None) -> Tensor:
    if max_n is None or z.shape[0] <= max_n:
        return z
    check_int(max_n, "max_n", low=2)
    idx = torch.tensor(_sample_rows(z.shape[0], max_n, seed), device=z.device)
    return z[idx]


def _degrees(z: Tensor, sigma: float, chunk_size: int | None) -> Tensor:
    fn = kernel_block_fn(z, None, "gaussian", sigma)
    n = z.shape[0]
    step = chunk_size or max(1, (1 << 24) // max(n, 1))
    return torch.cat([fn(s, min(s + step, n)).sum(1) for s in range(0, n, step)])


def _dense_kernel(z: Tensor, sigma: float) -> Tensor:
    """Gaussian kernel matrix built in place (one n x n buffer), exact ones on the diagonal."""
    sq = (z * z).sum(1)
    k = torch.addmm(sq[:, None], z, z.T, beta=1.0, alpha=-2.0)
    k.add_(sq[None, :]).clamp_(min=0.0)
    k.diagonal().zero_()
    return k.mul_(-0.5 / (sigma * sigma)).exp_()


def _matvec_factory(z: Tensor, sigma: float, chunk_size: int | None):  # type: ignore[no-untyped-def]
    """Return (matmul(V) = K V, trace K, a function giving trace K^2) for K = Q^-1/2 G Q^-1/2."""
    n = z.shape[0]
    if n <= _DENSE_LIMIT and chunk_size is None:
        k = _dense_kernel(z, sigma)
        d = k.sum(1)
        dinv = d.rsqrt()
        k.mul_(dinv[:, None]).mul_(dinv[None, :])

        def mm(v: Tensor) -> Tensor:
            return k @ v

        def tr2_dense() -> Tensor:
            return (k * k).sum().double()

        return mm, (1.0 / d.double()).sum(), tr2_dense
    d = _degrees(z, sigma, chunk_size)
    dinv = d.rsqrt()
    fn = kernel_block_fn(z, None, "gaussian", sigma)
    step = chunk_size or max(1, (1 << 24) // max(n, 1))

    def mm_stream(v: Tensor) -> Tensor:
        w = dinv[:, None] * v
        out = torch.cat([fn(s, min(s + step, n)) @ w for s in range(0, n, step)])
        return dinv[:, None] * out

    def tr2_stream() -> Tensor:
        tr2 = torch.zeros((), dtype=torch.float64, device=z.device)
        for s in range(0, n, step):
            e = min(s + step, n)
            blk = fn(s, e) * dinv[s:e, None] * dinv[None, :]
            tr2 = tr2 + (blk * blk).sum().double()
        return tr2

    return mm_stream, (1.0 / d.double()).sum(), tr2_stream


def _top_randomized(mm, n: int, r: int, iters: int, gen: torch.Generator, like: Tensor) -> Tensor:  # type: ignore[no-untyped-def]
    p = min(n, r + 10)
    y = mm(torch.randn(n, p, generator=gen, dtype=like.dtype).to(like.device))
    for _ in range(iters):
        q, _ = torch.linalg.qr(y)
        y = mm(q)
    q, _ = torch.linalg.qr(y)
    b = q.T @ mm(q)
    vals = torch.linalg.eigvalsh(0.5 * (b + b.T))
    return vals.flip(0)[:r]


def _top_lanczos(mm, n: int, r: int, steps: int, gen: torch.Generator, like: Tensor) -> Tensor:  # type: ignore[no-untyped-def]
    # Block Lanczos (block size b) with full re-orthogonalisation; Ritz values of the projection.
    b = min(n, 32)
    m = min(n, max(r + 2 * b, steps))
    v, _ = torch.linalg.qr(torch.randn(n, b, generator=gen, dtype=like.dtype).to(like.device))
    basis = [v]
    cols = b
    while cols < m:
        w = mm(basis[-1])
        big = torch.cat(basis, dim=1)
        for _ in range(2):  # twice is enough (Kahan-Parlett)
            w = w - big @ (big.T @ w)
        v, _ = torch.linalg.qr(w)
        v = v - big @ (big.T @ v)  # QR of a (nearly) exhausted block: orthogonalise again
        v, _ = torch.linalg.qr(v)
        v = v[:, : min(b, m - cols)]
        basis.append(v)
        cols += v.shape[1]
    big = torch.cat(basis, dim=1)
    t = big.T @ mm(big)
    vals = torch.linalg.eigvalsh(0.5 * (t + t.T))
    return vals.flip(0)[:r]


def diffusion_eigenvalues(
    z: Tensor,
    sigma: float | str = 10.0,
    method: Method = "exact",
    rank: int | None = None,
    seed: int | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""Eigenvalues of the symmetric diffusion matrix :math:`K = Q^{-1/2} G Q^{-1/2}`.

    Returns ``(eigenvalues, trace K, trace K^2)`` in float64, eigenvalues in decreasing order
    (all ``n`` for ``"exact"``, the top ``rank`` Ritz values otherwise).
    """
    check_choice(method, "method", ("exact", "lanczos", "randomized"))
    check_tensor(z, "z", ndim=2, floating=True)
    z = z.detach().to(torch.float64)
    # at the origin: the kernel is shift-invariant, but its float32 products below expand
    # ||a||^2 - 2 a.b + ||b||^2, which cancels for data far from it (6.83 became 7.30 bits)
    z = z - z.mean(0)
    s = _resolve_sigma(z, sigma)
    n = z.shape[0]
    if method == "exact":
        k = kernel_block_fn(z, None, "gaussian", s)(0, n)
        d = k.sum(1)
        dinv = d.rsqrt()
        k = k * dinv[:, None] * dinv[None, :]
        vals = torch.linalg.eigvalsh(k).flip(0)
        return vals, (1.0 / d).sum(), (k * k).sum()
    r = min(n, 256 if rank is None else check_int(rank, "rank", low=1))
    # Kernel products in float32 (half the memory traffic; the Ritz values are then accurate to
    # about 1e-6 relative), traces and the small projected problems in float64.
    mm32, tr1, tr2_fn = _matvec_factory(z.to(torch.float32), s, chunk_size)

    def mm(v: Tensor) -> Tensor:
        return mm32(v.to(torch.float32)).to(torch.float64)

    gen = torch.Generator().manual_seed(0 if seed is None else seed)
    if method == "randomized":
        vals = _top_randomized(mm, n, r, 3, gen, z)
    else:
        vals = _top_lanczos(mm, n, r, 2 * r, gen, z)
    return vals, tr1, tr2_fn()


def _entropy_from_spectrum(
    vals: Tensor, n: int, t: int, tr1: Tensor, tr2: Tensor, exact: bool
) -> tuple[Tensor, Tensor]:
    """Entropy (nats) of alpha = |lambda|^t / sum |lambda|^t and a bound on the tail error."""
    eps = torch.finfo(torch.float64).eps
    lam = vals.abs().clamp_max(1.0)
    w = lam.pow(t)
    if exact:
        a = w / w.sum()
        h = -((a + eps) * torch.log(a + eps)).sum()
        return h, torch.zeros_like(h)
    # K is positive semi-definite (Gaussian kernel), so sum_i lambda_i^t is a trace for t = 1, 2;
    # for t > 2, lambda^t <= lambda^2 * lambda_r^(t-2) on the tail bounds it.
    r = vals.shape[0]
    lam_r = lam[-1]
    top = w.sum()
    if t == 1:
        tail = (tr1 - lam.sum()).clamp_min(0.0)
        tail_hi = tail
    else:
        tail2 = (tr2 - lam.pow(2).sum()).clamp_min(0.0)
        tail_hi = tail2 * lam_r.pow(t - 2)
        tail = tail_hi if t == 2 else 0.5 * tail_hi
    m = max(n - r, 1)
    total = top + tail
    a_top = w / total
    h_top = -(a_top * torch.log(a_top.clamp_min(1e-300))).sum()
    mass = tail / total
    cap = (lam_r.pow(t) / total).clamp_min(1e-300)
    # Tail part of -sum a log a: at least -mass*log(cap) (each a <= cap), at most
    # -mass*log(mass/m) (uniform over the m remaining eigenvalues).
    lo = -mass * torch.log(cap)
    hi = -mass * torch.log((mass / m).clamp_min(1e-300))
    # The tail's eigenvalues cannot exceed lambda_r, so mass / m <= cap once the Ritz values
    # have converged; otherwise nothing is known about the error: the bound is inf, not the 0
    # that hi = max(hi, lo) would give.
    unconverged = mass / m > cap
    hi = torch.maximum(hi, lo)
    h = h_top + 0.5 * (lo + hi)
    bound = 0.5 * (hi - lo)
    if t > 2:  # unknown tail mass in [0, tail_hi]: widen by its whole effect
        bound = bound + tail_hi / total * (1.0 + math.log(m))
    return h, torch.where(unconverged, torch.full_like(bound, math.inf), bound)


def diffusion_spectral_entropy(
    z: Tensor,
    sigma: float | str = 10.0,
    t: int = 1,
    base: float = 2.0,
    max_n: int | None = None,
    method: Method = "exact",
    seed: int | None = None,
    *,
    rank: int | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    r"""Diffusion spectral entropy of the rows of ``z`` (bits by default).

    .. math::

        G_{ij} = e^{-\|z_i - z_j\|^2 / (2\sigma^2)},\quad q_i = \textstyle\sum_j G_{ij},\quad
        K = Q^{-1/2} G Q^{-1/2},\\
        \alpha_i = \frac{|\lambda_i(K)|^t}{\sum_j |\lambda_j(K)|^t},\qquad
        \mathrm{DSE} = -\sum_i (\alpha_i + \epsilon) \log_b (\alpha_i + \epsilon)

    with :math:`\epsilon` the float64 machine epsilon (as in the authors' code). :math:`K` has the
    spectrum of the diffusion operator :math:`P = Q^{-1}G` (largest eigenvalue 1). The
    normalising constant :math:`1/(\sigma\sqrt{2\pi})` of the authors' kernel cancels in K.
    This is the packaged estimator (``dse/dse.py`` of the authors' repository, PyPI ``dse-dsmi``),
    which keeps the trivial eigenvalue 1; an older script of theirs (``api/dse.py``) dropped it.
    Limits: :math:`\sigma \to 0` gives :math:`K = I` and :math:`\log_2 N`; :math:`\sigma \to
    \infty` gives a rank-one K and 0. Invariant to rotation, translation and row order, and
    :math:`\mathrm{DSE}(cZ, \sigma) = \mathrm{DSE}(Z, \sigma / c)`.

    Methods:

    - ``"exact"``: dense float64 ``eigvalsh`` (O(N^2) memory, O(N^3) time).
    - ``"lanczos"`` (block Lanczos, full re-orthogonalisation) / ``"randomized"`` (subspace
      iteration, 3 power steps): the top ``rank`` (default 256) eigenvalues, from products with
      K that stream in row blocks when ``chunk_size`` is set or N > 12 000 (O(N * chunk)
      memory). The rest of the spectrum enters through the exact trace: K is positive
      semi-definite, so :math:`\sum_i \lambda_i = \mathrm{tr} K = \sum_i 1/q_i` (t = 1) and
      :math:`\sum_i \lambda_i^2 = \|K\|_F^2` (t = 2). The missing mass :math:`a` is spread over
      the other :math:`m = N - r` eigenvalues, each at most :math:`\lambda_r^t`; its entropy
      contribution lies in :math:`[-a\log(\lambda_r^t/S),\,-a\log(a/m)]`. The estimate takes the
      midpoint and :func:`diffusion_spectral_entropy_with_bound` also returns the half-width
      (in the output base), a bound on the error when the Ritz values have converged, and
      ``inf`` when the tail mass shows they have not (its mean eigenvalue would exceed
      :math:`\lambda_r`). Choose ``rank`` so that the bound is below your tolerance.

    Args:
        z: representations, shape (N, D) (or (N,)).
        sigma: kernel bandwidth; 10.0 is the authors' default (tuned for embeddings with pairwise
            distances of order 10), ``"median"`` uses the median pairwise distance.
        t: diffusion time (>= 1). Default 1.
        base: logarithm base; 2 (bits, default, as the authors) or ``math.e``.
        max_n: if set and N > max_n, use ``max_n`` rows drawn without replacement exactly as the
            authors (``random.seed(seed); random.sample(range(N), max_n)``, seed 0). The authors'
            default is 10 000; ours is None (all rows).
        method: ``"exact"`` (default), ``"lanczos"`` or ``"randomized"``.
        seed: seed of the subsample and of the random start vectors (default 0).
        rank: number of eigenvalues the approximate methods compute.
        chunk_size: rows per block of the streamed kernel products.

    Returns:
        0-d float64 tensor.

    Example (well-separated points, ``K = I``: ``log2 N``; two points 1 apart with
    ``sigma = 1``: eigenvalues 1 and ``(1 - g) / (1 + g)``, ``g = exp(-1/2)``):

        >>> print(f"{float(diffusion_spectral_entropy(torch.eye(4), sigma=0.01)):.4f}")
        2.0000
        >>> z = torch.tensor([[0.0], [1.0]])
        >>> print(f"{float(diffusion_spectral_entropy(z, sigma=1.0)):.4f}")
        0.7153
    """
    return diffusion_spectral_entropy_with_bound(
        z, sigma, t, base, max_n, method, seed, rank=rank, chunk_size=chunk_size
    )[0]


def diffusion_spectral_entropy_with_bound(
    z: Tensor,
    sigma: float | str = 10.0,
    t: int = 1,
    base: float = 2.0,
    max_n: int | None = None,
    method: Method = "exact",
    seed: int | None = None,
    *,
    rank: int | None = None,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    """:func:`diffusion_spectral_entropy` and the half-width of its tail error range (0 if exact)."""
    check_tensor(z, "z", ndim=(1, 2), floating=True, nonempty=True)
    if get_checks() == "full":
        check_finite(z, "z")
    check_int(t, "t", low=1)
    check_log_base(base)
    check_choice(method, "method", ("exact", "lanczos", "randomized"))
    with torch.no_grad():
        z = z.unsqueeze(1) if z.dim() == 1 else z
        z = _subsample(z, max_n, seed)
        if z.shape[0] < 2:
            raise ValueError(f"z: DSE needs at least 2 samples, got {z.shape[0]}")
        vals, tr1, tr2 = diffusion_eigenvalues(
            z, sigma, method, rank=rank, seed=seed, chunk_size=chunk_size
        )
        h, bound = _entropy_from_spectrum(vals, z.shape[0], t, tr1, tr2, method == "exact")
        scale = math.log(base)
        h, bound = h / scale, bound / scale
    return h, bound


def _discretise(y: Tensor, n_clusters: int) -> Tensor:
    if not y.is_floating_point():
        if y.dim() == 2 and y.shape[1] == 1:
            y = y[:, 0]
        check_tensor(y, "y", ndim=1)
        return y
    if y.dim() == 1 or y.shape[1] == 1:
        v = y.reshape(-1).to(torch.float64)
        lo, hi = v.min(), v.max()
        scaled = (v - lo) / (hi - lo).clamp_min(torch.finfo(torch.float64).tiny)
        return (scaled * n_clusters).floor().clamp_max(n_clusters - 1).long()
    try:
        from sklearn.cluster import SpectralClustering
    except ImportError as exc:  # pragma: no cover
        raise ImportError(
            "vector-valued y needs scikit-learn (spectral clustering): pip install 'inforeg[ref]'"
        ) from exc
    labels = SpectralClustering(
        n_clusters=n_clusters,
        affinity="nearest_neighbors",
        assign_labels="cluster_qr",
        random_state=0,
    ).fit_predict(y.detach().cpu().numpy())
    return torch.as_tensor(labels, device=y.device)


def diffusion_spectral_mutual_information(
    z: Tensor,
    y: Tensor,
    sigma: float | str = 10.0,
    t: int = 1,
    base: float = 2.0,
    max_n: int | None = None,
    method: Method = "exact",
    seed: int | None = None,
    *,
    n_repetitions: int = 5,
    n_clusters: int = 10,
    rank: int | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    r"""Diffusion spectral mutual information :math:`I_D(Z; Y)` (bits by default).

    .. math::

        \mathrm{DSMI}(Z;Y) = \sum_c p_c \Big[\frac1R \sum_{r=1}^R \mathrm{DSE}(Z_{S_{c,r}})
            - \mathrm{DSE}(Z_{Y=c})\Big]

    with :math:`p_c = n_c/N` and :math:`S_{c,r}` random subsets of size :math:`n_c` of all rows
    (``R = n_repetitions = 5``), so each conditional term is compared at its own sample size (DSE
    grows with N). The subsets are the authors' exactly: Python's ``random`` reseeded with
    ``seed`` (default 0) for every class, then ``random.sample(range(N), n_c)`` R times, so
    classes of equal size share their subsets. ``y`` is discretised as the
    authors do: integer labels as they are; a float scalar is min-max scaled into ``n_clusters``
    equal-width bins; a float vector is clustered by sklearn's ``SpectralClustering``
    (nearest-neighbour affinity, ``cluster_qr``, ``random_state=0``). ``sigma="median"`` is
    resolved once on the whole of ``z`` and shared by all terms. Classes with one sample
    contribute 0.

    Args:
        z: (N, D). y: (N,) or (N, 1) labels / values, or (N, d) vectors.
        Other arguments: see :func:`diffusion_spectral_entropy`.

    Returns:
        0-d float64 tensor.
    """
    check_tensor(z, "z", ndim=(1, 2), floating=True, nonempty=True)
    check_tensor(y, "y", ndim=(1, 2))
    check_same_length(z, y, "z", "y")
    check_int(n_repetitions, "n_repetitions", low=1)
    check_int(n_clusters, "n_clusters", low=2)
    with torch.no_grad():
        z = z.unsqueeze(1) if z.dim() == 1 else z
        z = z.detach().to(torch.float64)
        if max_n is not None and z.shape[0] > max_n:
            check_int(max_n, "max_n", low=2)
            idx = torch.tensor(_sample_rows(z.shape[0], max_n, seed))
            z, y = z[idx.to(z.device)], y[idx.to(y.device)]
        s = _resolve_sigma(z, sigma)
        labels = _discretise(y, n_clusters).to(z.device)
        n = z.shape[0]
        total = torch.zeros((), dtype=torch.float64, device=z.device)
        for c in torch.unique(labels).tolist():
            mask = labels == c
            n_c = int(mask.sum())
            if n_c < 2:
                continue
            h_cond = diffusion_spectral_entropy(
                z[mask], s, t, base, None, method, seed, rank=rank, chunk_size=chunk_size
            )
            rng = random.Random(0 if seed is None else seed)  # reseeded per class, as the authors
            h_all = torch.zeros((), dtype=torch.float64, device=z.device)
            for _ in range(n_repetitions):
                idx = torch.tensor(rng.sample(range(n), n_c), device=z.device)
                h_all = h_all + diffusion_spectral_entropy(
                    z[idx], s, t, base, None, method, seed, rank=rank, chunk_size=chunk_size
                )
            total = total + (n_c / n) * (h_all / n_repetitions - h_cond)
    return total


class DiffusionSpectralEntropy(Accumulator):
    """Accumulates representations over batches and computes DSE (and DSMI) for monitoring.

    ``update(z, y=None)`` appends detached copies to two declared ``"cat"`` states
    (:mod:`inforeg.core.state`): ``z`` (rows of representations) and ``y`` (their labels).
    The spectrum is not a sum over batches, so the rows themselves are kept: memory grows with
    the number of rows, and ``compute()`` gathers every rank's rows in rank order when
    torch.distributed is initialised (one collective per state, plus one for the sizes), so each
    rank then holds all of them; ``max_n`` bounds the cost of the eigen-solver, not the storage.
    ``compute()`` returns DSE; ``compute_mutual_information()`` returns DSMI(Z; Y) when labels
    were given to every update. ``reset()`` clears the states; ``state_dict()`` saves them.
    Arguments as in :func:`diffusion_spectral_entropy`.
    """

    z: list[Tensor]
    y: list[Tensor]

    def __init__(
        self,
        sigma: float | str = 10.0,
        t: int = 1,
        base: float = 2.0,
        max_n: int | None = None,
        method: Method = "exact",
        seed: int | None = None,
        n_repetitions: int = 5,
    ) -> None:
        super().__init__()
        if not isinstance(sigma, str):
            check_positive(sigma, "sigma")
        check_int(t, "t", low=1)
        check_choice(method, "method", ("exact", "lanczos", "randomized"))
        self.sigma, self.t, self.base, self.max_n = sigma, t, base, max_n
        self.method, self.seed, self.n_repetitions = method, seed, n_repetitions
        self.add_state("z", "cat")
        self.add_state("y", "cat")

    def update(self, z: Tensor, y: Tensor | None = None) -> None:
        check_tensor(z, "z", ndim=2, floating=True)
        if self.z and z.shape[1] != self.z[0].shape[1]:
            raise ValueError(f"z: expected {self.z[0].shape[1]} features, got {z.shape[1]}")
        if y is not None:
            check_same_length(z, y, "z", "y")
            self.y.append(y.detach())
        self.z.append(z.detach())

    def _gathered(self) -> tuple[Tensor, Tensor | None]:
        z = self.synced("z")
        y = None
        if self.y:
            if len(self.y) != len(self.z):
                raise ValueError("y: labels were given to some update() calls but not all")
            y = self.synced("y")
        return z, y

    def compute(self) -> Tensor:
        z, _ = self._gathered()
        return diffusion_spectral_entropy(
            z, self.sigma, self.t, self.base, self.max_n, self.method, self.seed
        )

    def compute_mutual_information(self) -> Tensor:
        z, y = self._gathered()
        if y is None:
            raise ValueError("y: DSMI needs labels passed to update(z, y)")
        return diffusion_spectral_mutual_information(
            z,
            y,
            self.sigma,
            self.t,
            self.base,
            self.max_n,
            self.method,
            self.seed,
            n_repetitions=self.n_repetitions,
        )

    def forward(self, z: Tensor) -> Tensor:
        """DSE of one batch (does not touch the accumulated state)."""
        return diffusion_spectral_entropy(
            z, self.sigma, self.t, self.base, self.max_n, self.method, self.seed
        )
