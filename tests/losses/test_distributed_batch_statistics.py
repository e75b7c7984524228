"""Batch-statistic regularisers under torch.distributed: Gathered(loss) equals one big batch."""

from __future__ import annotations

import os

import pytest
import torch

from inforeg.core.distributed import Gathered
from inforeg.losses import class_ratio_prior_kl, mean_entropy_regularizer
from tests.distributed_utils import run_distributed

pytestmark = pytest.mark.distributed

PRIOR = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)


def _full_logits() -> torch.Tensor:
    return torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def _losses():
    return {
        "memax": lambda z: mean_entropy_regularizer(z, temperature=0.5),
        "ratio_kl": lambda z: class_ratio_prior_kl(z, PRIOR),
    }


def _worker(rank: int, world_size: int, outdir: str) -> None:
    full = _full_logits()
    local = full.chunk(world_size)[rank].clone().requires_grad_(True)
    out = {}
    for name, fn in _losses().items():
        local.grad = None
        loss = Gathered(fn)(local)
        loss.backward()
        out[name] = (loss.detach(), local.grad.clone())
    torch.save(out, os.path.join(outdir, f"rank{rank}.pt"))


def test_gathered_equals_single_process(tmp_path):
    run_distributed(_worker, world_size=2, args=(str(tmp_path),))
    results = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for name, fn in _losses().items():
        full = _full_logits().requires_grad_(True)
        ref = fn(full)
        ref.backward()
        for r in range(2):
            assert torch.allclose(results[r][name][0], ref.detach()), name
        grads = torch.cat([results[0][name][1], results[1][name][1]])
        assert torch.allclose(grads, full.grad), name
