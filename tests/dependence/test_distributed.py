"""Two gloo processes through Gathered: same value and gradient as one process with the batch."""

from __future__ import annotations

import os
from functools import partial

import pytest
import torch

from inforeg.core.distributed import Gathered
from inforeg.dependence import distance_correlation_sqr, distance_covariance_sqr, hsic, mmd
from tests.distributed_utils import run_distributed

pytestmark = pytest.mark.distributed

SPLIT = (7, 5)  # uneven shards on purpose

LOSSES = {
    "mmd": partial(mmd, bandwidth=1.3),
    "mmd_median": partial(mmd, estimator="biased"),
    "hsic": partial(hsic, estimator="unbiased"),
    "dcov": partial(distance_covariance_sqr, unbiased=True, chunk_size=4),
    "dcor": distance_correlation_sqr,
}


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(sum(SPLIT), 3, generator=g, dtype=torch.float64)
    y = torch.sin(x) + 0.3 * torch.randn(sum(SPLIT), 3, generator=g, dtype=torch.float64)
    return x, y


def _worker(rank: int, world_size: int, out_dir: str) -> None:
    x, y = _data()
    start = sum(SPLIT[:rank])
    sl = slice(start, start + SPLIT[rank])
    results = {}
    for name, fn in LOSSES.items():
        xl = x[sl].clone().requires_grad_()
        yl = y[sl].clone().requires_grad_()
        loss = Gathered(fn)(xl, yl)
        loss.backward()
        results[name] = (loss.detach(), xl.grad, yl.grad)
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))


def test_gathered_matches_single_process(tmp_path):
    run_distributed(_worker, world_size=2, args=(str(tmp_path),))
    x, y = _data()
    for rank in range(2):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)
        start = sum(SPLIT[:rank])
        sl = slice(start, start + SPLIT[rank])
        for name, fn in LOSSES.items():
            xf = x.clone().requires_grad_()
            yf = y.clone().requires_grad_()
            loss = fn(xf, yf)
            gx, gy = torch.autograd.grad(loss, (xf, yf))
            value, lgx, lgy = got[name]
            torch.testing.assert_close(value, loss.detach(), rtol=0, atol=1e-12, msg=name)
            torch.testing.assert_close(lgx, gx[sl], msg=name)
            torch.testing.assert_close(lgy, gy[sl], msg=name)


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__])
