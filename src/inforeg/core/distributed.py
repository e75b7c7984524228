"""Batch-statistic losses under ``torch.distributed``: gather with gradients, in rank order.

``all_gather_with_grad(x)`` returns the concatenation of every rank's ``x`` along dim 0, in rank
order on every rank (rank 0's rows first), with this rank's own rows taken from ``x`` itself so
that autograd flows into them. Rows from other ranks are constants here: their gradients are
computed on their own ranks. Uneven first dimensions are padded to the largest for the collective
and trimmed afterwards; this costs one extra all_gather of the sizes (a host sync).

Gradient scaling. Every rank then evaluates the same full-batch loss ``L``, and rank r obtains
``dL/dx_r`` exactly. DDP *averages* parameter gradients over the W ranks, which yields
``(1/W) dL/dtheta``. To get the gradient of one process holding the whole batch, multiply the loss
by W before ``backward()`` (``Gathered(..., scale_by_world_size=True)`` does this); the reported
value is then W times the loss, so log ``loss / W``.

Without an initialised process group (or with world size 1) both functions are the identity.

Example (one process, no process group):

    >>> x = torch.tensor([1.0, 2.0, 3.0])
    >>> all_gather_with_grad(x) is x
    True
    >>> world_size()
    1
    >>> float(Gathered(torch.sum, scale_by_world_size=True)(x))
    6.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn


def _active(group: Any = None) -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def world_size(group: Any = None) -> int:
    """World size of ``group``, or 1 outside torch.distributed."""
    return dist.get_world_size(group) if _active(group) else 1


def all_gather_with_grad(x: Tensor, group: Any = None) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, rank-ordered, keeping autograd for the local slot."""
    if not _active(group):
        return x
    ws = dist.get_world_size(group)
    rank = dist.get_rank(group)
    size = torch.tensor([x.shape[0]], device=x.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(ws)]
    dist.all_gather(sizes, size, group=group)
    counts = [int(s.item()) for s in sizes]
    longest = max(counts)
    padded = x.detach()
    if x.shape[0] < longest:
        pad = x.new_zeros((longest - x.shape[0], *x.shape[1:]))
        padded = torch.cat([padded, pad], dim=0)
    buffers = [torch.empty_like(padded) for _ in range(ws)]
    dist.all_gather(buffers, padded.contiguous(), group=group)
    pieces = [buf[:c] for buf, c in zip(buffers, counts)]
    pieces[rank] = x  # the local rows keep their autograd history
    return torch.cat(pieces, dim=0)


class Gathered(nn.Module):
    """Evaluate a batch-statistic loss on the batch gathered from every rank.

    Every positional tensor argument is gathered along dim 0 with :func:`all_gather_with_grad`;
    keyword arguments are passed through unchanged.

    Args:
        loss_fn: a callable (function or module) computing a loss from full-batch tensors.
        group: the process group (default: the world).
        scale_by_world_size: multiply the loss by the world size so that, after DDP's gradient
            averaging, parameter gradients equal those of one process holding the whole batch.
    """

    def __init__(
        self,
        loss_fn: Callable[..., Tensor],
        group: Any = None,
        scale_by_world_size: bool = False,
    ) -> None:
        super().__init__()
        self.loss_fn = loss_fn
        self.group = group
        self.scale_by_world_size = scale_by_world_size

    def forward(self, *tensors: Any, **kwargs: Any) -> Tensor:
        gathered = [
            all_gather_with_grad(t, self.group) if isinstance(t, Tensor) else t for t in tensors
        ]
        loss = self.loss_fn(*gathered, **kwargs)
        if self.scale_by_world_size:
            loss = loss * world_size(self.group)
        return loss
