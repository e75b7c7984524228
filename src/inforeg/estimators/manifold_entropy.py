r"""Manifold entropy estimation (MEE) against GAN mode collapse.

Liu, Li, Wu, Liang et al., "Combating Mode Collapse in GANs via Manifold Entropy Estimation",
arXiv 2208.12055 (AAAI 2023); authors' code ``HaozheLiu-ST/MEE`` (``train.py``). The
discriminator doubles as an embedding ``e = D(x)`` in R^m. Three terms:

- the entropy term :func:`nearest_neighbor_entropy` (RB-MaEM) against a memory of past embeddings;
- :func:`dlle_loss` (local linear embedding: invariance to a small augmentation);
- :func:`disomap_loss` (isometric mixing: D of a mix equals the mix of the Ds, plus noise).

**Deviation from the authors' code (on purpose).** Their replay buffer of shape (M, N, m) drops N
rows and appends one on every update, so after about M/N updates it holds one batch, and their
nearest-neighbour search is slot-wise (sample j only against slot j of past batches).
:class:`EmbeddingMemory` is a proper FIFO queue of the last ``size`` embeddings and the search runs
over all of them; ``legacy_slotwise=True`` on :class:`ManifoldEntropyLoss` reproduces the code.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.core.checks import (
    check_choice,
    check_int,
    check_number,
    check_positive,
    check_same_shape,
    check_tensor,
)
from inforeg.core.dtypes import upcast
from inforeg.core.pairwise import sqeuclidean

__all__ = [
    "EmbeddingMemory",
    "ManifoldEntropyLoss",
    "disomap_loss",
    "dlle_loss",
    "isometric_mix",
    "nearest_neighbor_entropy",
]

Estimator = Literal["log-mean", "kozachenko"]


def _nn_sqdist(z: Tensor, memory: Tensor | None, k: int, slotwise: bool) -> Tensor:
    """(1/m) * squared distance from each z_j to its k-th nearest memory entry, shape (N,)."""
    m = z.shape[1]
    if slotwise:
        assert memory is not None
        d = ((memory - z.unsqueeze(0)) ** 2).sum(-1) / m  # (M, N)
        return d.kthvalue(k, dim=0).values
    if memory is None:
        d = sqeuclidean(z)
        d = d + torch.diag(torch.full((z.shape[0],), float("inf"), dtype=d.dtype, device=d.device))
    else:
        d = sqeuclidean(z, memory)
    return torch.topk(d, k, dim=1, largest=False).values[:, -1] / m


def nearest_neighbor_entropy(
    z: Tensor,
    memory: Tensor | None = None,
    k: int = 1,
    estimator: Estimator = "log-mean",
    eps: float = 1e-8,
) -> Tensor:
    r"""Nearest-neighbour entropy proxy of the embeddings ``z`` against a memory of past codes.

    With :math:`d_j = \frac1m \min_{b} \|\mathrm{mem}_b - z_j\|^2` (k-th smallest for k > 1):

    .. math::

        \hat H_{\text{log-mean}} = \log\Big(\frac1N\sum_j d_j + \varepsilon\Big), \qquad
        \hat H_{\text{kozachenko}} = \frac{m}{N}\sum_j \log\big(d_j + \varepsilon\big)^{1/2}

    The first is the authors' (the loss is :math:`-\lambda \hat H`); the second is the
    Kozachenko-Leonenko form up to constants. ``eps`` guards ``log 0`` when a code equals a memory
    entry. The memory is a constant (detached); gradients push each :math:`z_j` away from its
    nearest memory entry. Without memory, the batch itself is used (self excluded). Scaling
    codes and memory by c adds :math:`2\log c` to the log-mean form (eps aside).

    Args:
        z: (N, m) embeddings. memory: (M, m) past embeddings or None.
        k: neighbour order. estimator: ``"log-mean"`` (default) or ``"kozachenko"``.
        eps: > 0.

    Returns:
        0-d tensor (the entropy estimate, to be *maximised*).

    Example (nearest memory entry at squared distance 1 in m = 2 dimensions: ``log(1/2)``):

        >>> z = torch.tensor([[0.0, 0.0]], dtype=torch.float64)
        >>> memory = torch.tensor([[1.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
        >>> print(f"{float(nearest_neighbor_entropy(z, memory)):.4f}")
        -0.6931
    """
    check_tensor(z, "z", ndim=2, floating=True, nonempty=True)
    check_choice(estimator, "estimator", ("log-mean", "kozachenko"))
    check_positive(eps, "eps")
    if memory is not None:
        check_tensor(memory, "memory", ndim=2, floating=True, nonempty=True)
        if memory.shape[1] != z.shape[1]:
            raise ValueError(f"memory: expected {z.shape[1]} features, got {memory.shape[1]}")
        memory = memory.detach().to(z.dtype)
        check_int(k, "k", low=1, high=memory.shape[0])
    else:
        check_int(k, "k", low=1, high=z.shape[0] - 1)
    dtype = z.dtype
    x = upcast(z)
    # distances are shift-invariant; moving both sets by x's (detached) mean keeps the float32
    # expansion ||a||^2 - 2 a.b + ||b||^2 from cancelling for codes far from the origin
    centre = x.detach().mean(0)
    mem = memory.to(x.dtype) - centre if memory is not None else None
    d = _nn_sqdist(x - centre, mem, k, slotwise=False)
    if estimator == "log-mean":
        h = torch.log(d.mean() + eps)
    else:
        h = z.shape[1] * 0.5 * torch.log(d + eps).mean()
    return h.to(dtype)


class EmbeddingMemory(nn.Module):
    """FIFO queue of the last ``size`` embeddings (a registered buffer, oldest overwritten first).

    ``init="uniform"`` fills it with U(-1, 1) codes at start (the authors' initialisation) so the
    queue is full from the first step; ``init="empty"`` starts empty and ``values()`` returns only
    what was pushed.
    """

    data: Tensor
    ptr: Tensor
    count: Tensor

    def __init__(self, size: int, dim: int, init: Literal["uniform", "empty"] = "uniform") -> None:
        super().__init__()
        check_int(size, "size", low=1)
        check_int(dim, "dim", low=1)
        check_choice(init, "init", ("uniform", "empty"))
        data = torch.rand(size, dim) * 2 - 1 if init == "uniform" else torch.zeros(size, dim)
        self.register_buffer("data", data)
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.tensor(size if init == "uniform" else 0))

    def push(self, z: Tensor) -> None:
        """Append the rows of ``z`` (detached), overwriting the oldest entries."""
        check_tensor(z, "z", ndim=2)
        if z.shape[1] != self.data.shape[1]:
            raise ValueError(f"z: expected {self.data.shape[1]} features, got {z.shape[1]}")
        z = z.detach().to(self.data.dtype)
        size = self.data.shape[0]
        if z.shape[0] >= size:
            self.data.copy_(z[-size:])
            self.ptr.zero_()
            self.count.fill_(size)
            return
        # Host-side pointer arithmetic (one sync per push; the memory is not in a forward graph).
        p = int(self.ptr)
        idx = (torch.arange(z.shape[0], device=self.data.device) + p) % size
        self.data[idx] = z
        self.ptr.fill_((p + z.shape[0]) % size)
        self.count.fill_(min(size, int(self.count) + z.shape[0]))

    def values(self) -> Tensor:
        """Stored embeddings, oldest first, shape (count, dim)."""
        n, size, p = int(self.count), self.data.shape[0], int(self.ptr)
        if n < size:
            return self.data[:n]
        return torch.cat([self.data[p:], self.data[:p]])


def dlle_loss(
    e: Tensor, e_aug: Tensor, reduction: Literal["mean", "sum", "none"] = "mean"
) -> Tensor:
    r"""DLLE term :math:`\mathrm{MSE}(D(x), \mathrm{sg}\,D(a(x)))` for embeddings of a batch and
    of its augmentation (authors: a flip and 1e-3 Gaussian pixel noise). Apply it to real and
    generated batches and add. ``"none"`` gives per-sample means over the m outputs."""
    check_tensor(e, "e", ndim=2, floating=True)
    check_tensor(e_aug, "e_aug", ndim=2, floating=True)
    check_same_shape(e, e_aug, "e", "e_aug")
    check_choice(reduction, "reduction", ("mean", "sum", "none"))
    per = (e - e_aug.detach()).pow(2).mean(1)
    return per.mean() if reduction == "mean" else per.sum() if reduction == "sum" else per


def isometric_mix(x: Tensor, g: Tensor, alpha: Tensor) -> Tensor:
    """``alpha_i * x_i + (1 - alpha_i) * g_i`` with one alpha per sample (broadcast)."""
    check_tensor(x, "x", min_ndim=1, floating=True)
    check_tensor(g, "g", min_ndim=1, floating=True)
    check_tensor(alpha, "alpha", floating=True)
    check_same_shape(x, g, "x", "g")
    if alpha.numel() not in (1, x.shape[0]):
        raise ValueError(
            f"alpha: expected 1 or {x.shape[0]} values (one per sample), got {alpha.numel()}"
        )
    a = alpha.reshape(-1, *([1] * (x.dim() - 1))).to(x.dtype)
    return a * x + (1 - a) * g


def disomap_loss(
    e_mix: Tensor,
    e_x: Tensor,
    e_g: Tensor,
    alpha: Tensor,
    noise_std: float = 0.05,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""DIsoMap term: :math:`\mathrm{MSE}\big(D(\tilde x), \mathrm{sg}[\alpha D(x) + (1-\alpha)
    D(g) + \xi]\big)`, :math:`\xi \sim N(0, \sigma^2 I)`, :math:`\tilde x` from
    :func:`isometric_mix` with the same ``alpha``. The authors draw :math:`\alpha \sim N(0, 1)`
    (not restricted to [0, 1]); their README suggests U(0, 1) for convex mixing. For an affine D
    the loss equals the noise term only, :math:`E\|\xi\|^2/m = \sigma^2` (0.0025 by default)."""
    check_tensor(e_mix, "e_mix", ndim=2, floating=True)
    check_same_shape(e_mix, e_x, "e_mix", "e_x")
    check_same_shape(e_mix, e_g, "e_mix", "e_g")
    check_tensor(e_x, "e_x", ndim=2, floating=True)
    check_tensor(e_g, "e_g", ndim=2, floating=True)
    check_tensor(alpha, "alpha", floating=True)
    if alpha.numel() not in (1, e_mix.shape[0]):
        raise ValueError(
            f"alpha: expected 1 or {e_mix.shape[0]} values (one per sample), got {alpha.numel()}"
        )
    check_number(noise_std, "noise_std", low=0.0)
    a = alpha.reshape(-1, 1).to(e_mix.dtype)
    noise = torch.randn(e_mix.shape, generator=generator, dtype=e_mix.dtype)
    target = (a * e_x + (1 - a) * e_g + noise_std * noise.to(e_mix.device)).detach()
    return F.mse_loss(e_mix, target)


class ManifoldEntropyLoss(nn.Module):
    r"""Entropy term of MEE with its memory: ``loss = -weight(epoch) * H(z; memory)``.

    Each call computes :func:`nearest_neighbor_entropy` of ``z`` against the memory and then pushes
    ``z`` (detached) into it. ``weight(epoch) = weight * min(epoch / warmup_epochs, 1)``
    (authors: ``entropy_lr`` with a 100-epoch linear warm-up; README value 5e-4, argparse 1.0);
    call :meth:`set_epoch`. Use one instance for real and one for generated codes, as the authors.

    Args:
        dim: embedding size m. memory_size: FIFO length (authors' M = 1024).
        weight: lambda. warmup_epochs: 0 disables the warm-up.
        k, estimator, eps: see :func:`nearest_neighbor_entropy`.
        legacy_slotwise: reproduce the authors' buffer (batches in slots, slot-wise search, and
            the shrinking update). Needs a fixed ``batch_size`` and ``k = 1``.
    """

    legacy_buffer: Tensor

    def __init__(
        self,
        dim: int,
        memory_size: int = 1024,
        weight: float = 1.0,
        warmup_epochs: int = 100,
        k: int = 1,
        estimator: Estimator = "log-mean",
        eps: float = 1e-8,
        legacy_slotwise: bool = False,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        check_number(weight, "weight", low=0.0)
        check_int(warmup_epochs, "warmup_epochs", low=0)
        check_int(k, "k", low=1)
        check_int(memory_size, "memory_size", low=1)
        check_int(dim, "dim", low=1)
        check_choice(estimator, "estimator", ("log-mean", "kozachenko"))
        self.weight, self.warmup_epochs, self.k = weight, warmup_epochs, k
        self.estimator, self.eps, self.legacy = estimator, eps, legacy_slotwise
        self.epoch = 0
        self.memory = EmbeddingMemory(memory_size, dim)
        if legacy_slotwise:
            if batch_size is None:
                raise ValueError("batch_size: legacy_slotwise=True needs the (fixed) batch size")
            if k != 1:  # the authors' slot-wise search takes the nearest neighbour only
                raise ValueError(f"k: legacy_slotwise=True searches k = 1 only, got {k}")
            self.register_buffer("legacy_buffer", torch.rand(memory_size, batch_size, dim) * 2 - 1)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = check_int(epoch, "epoch", low=0)

    def current_weight(self) -> float:
        if self.warmup_epochs == 0:
            return self.weight
        return self.weight * min(self.epoch / self.warmup_epochs, 1.0)

    def forward(self, z: Tensor) -> Tensor:
        if self.legacy:
            buf = self.legacy_buffer
            if z.shape[0] != buf.shape[1] or z.shape[1] != buf.shape[2]:
                raise ValueError(
                    f"z: expected shape ({buf.shape[1]}, {buf.shape[2]}), got {tuple(z.shape)}"
                )
            d = _nn_sqdist(z, buf.detach().to(z.dtype), 1, slotwise=True)
            h = (
                torch.log(d.mean() + self.eps)
                if self.estimator == "log-mean"
                else (z.shape[1] * 0.5 * torch.log(d + self.eps).mean())
            )
            # The authors' update: drop the first N rows (batches) and append one.
            self.legacy_buffer = torch.cat([buf[z.shape[0] :], z.detach()[None].to(buf.dtype)])
        else:
            h = nearest_neighbor_entropy(z, self.memory.values(), self.k, self.estimator, self.eps)
            self.memory.push(z)
        return -self.current_weight() * h
