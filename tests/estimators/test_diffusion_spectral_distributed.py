"""DiffusionSpectralEntropy under torch.distributed: uneven shards give the one-process value."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.distributed_utils import run_distributed

pytestmark = pytest.mark.distributed


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(50, 3, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (50,), generator=g
    )


def _worker(rank: int, world_size: int, out: str) -> None:
    from inforeg.estimators import DiffusionSpectralEntropy

    z, y = _data()
    cut = 20  # uneven shards: rank 0 holds 20 rows, rank 1 holds 30
    lo, hi = (0, cut) if rank == 0 else (cut, 50)
    m = DiffusionSpectralEntropy(sigma=1.0)
    m.update(z[lo:hi], y[lo:hi])
    torch.save(
        {"dse": m.compute(), "dsmi": m.compute_mutual_information()}, Path(out) / f"r{rank}.pt"
    )


def test_gathered_equals_single_process(tmp_path):
    from inforeg.estimators import (
        diffusion_spectral_entropy,
        diffusion_spectral_mutual_information,
    )

    run_distributed(_worker, world_size=2, args=(str(tmp_path),))
    z, y = _data()
    ref_h = diffusion_spectral_entropy(z, sigma=1.0)
    ref_mi = diffusion_spectral_mutual_information(z, y, sigma=1.0)
    for r in range(2):
        got = torch.load(tmp_path / f"r{r}.pt", weights_only=True)
        assert torch.allclose(got["dse"], ref_h)
        assert torch.allclose(got["dsmi"], ref_mi)
