"""Two gloo processes on CPU: Gathered gives one-process values and, after DDP, gradients."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from inforeg.core.distributed import Gathered, all_gather_with_grad, world_size
from tests.distributed_utils import run_distributed

pytestmark = pytest.mark.distributed

SIZES = (5, 3)  # uneven local batches


def mean_entropy_gap(logits: torch.Tensor) -> torch.Tensor:
    """log K - H(mean softmax): a batch statistic, not a mean of per-sample terms."""
    p_bar = torch.softmax(logits, dim=1).mean(0)
    return math.log(logits.shape[1]) + (p_bar * torch.log(p_bar)).sum()


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(sum(SIZES), 4, generator=g, dtype=torch.float64)
    torch.manual_seed(1)
    model = nn.Linear(4, 3).double()
    return x, model


def _local_slice(rank: int) -> slice:
    start = sum(SIZES[:rank])
    return slice(start, start + SIZES[rank])


def _worker(rank: int, ws: int, out: str) -> None:
    x, model = _data()
    ddp = nn.parallel.DistributedDataParallel(model)
    # Rank order, uneven sizes, local slot keeps autograd.
    tagged = torch.full((SIZES[rank], 2), float(rank), requires_grad=True)
    gathered = all_gather_with_grad(tagged)
    assert gathered.shape == (sum(SIZES), 2)
    assert torch.equal(gathered[:, 0], torch.tensor([0.0] * SIZES[0] + [1.0] * SIZES[1]))
    gathered.sum().backward()
    assert torch.equal(tagged.grad, torch.ones_like(tagged))
    assert world_size() == ws

    loss_fn = Gathered(mean_entropy_gap, scale_by_world_size=True)
    loss = loss_fn(ddp(x[_local_slice(rank)]))
    loss.backward()  # DDP averages the gradient over ranks here
    torch.save(
        {"value": (loss / ws).detach(), "grad_w": model.weight.grad, "grad_b": model.bias.grad},
        Path(out) / f"rank{rank}.pt",
    )
    dist.barrier()


def test_gathered_matches_single_process(tmp_path):
    run_distributed(_worker, world_size=2, args=(str(tmp_path),))
    x, model = _data()
    ref = mean_entropy_gap(model(x))
    ref.backward()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        torch.testing.assert_close(got["value"], ref.detach(), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got["grad_w"], model.weight.grad, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got["grad_b"], model.bias.grad, rtol=1e-10, atol=1e-12)


def test_identity_without_process_group():
    x = torch.randn(4, 2, requires_grad=True)
    assert all_gather_with_grad(x) is x
    assert world_size() == 1
    assert Gathered(lambda t: t.sum(), scale_by_world_size=True)(x) == x.sum()
