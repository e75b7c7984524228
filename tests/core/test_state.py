"""Declared accumulator states: reset, state_dict, .to(), and the cross-rank reductions."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from inforeg.core.state import Accumulator
from tests.distributed_utils import run_distributed


class _Counter(Accumulator):
    total: torch.Tensor
    avg: torch.Tensor
    rows: list[torch.Tensor]

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", "sum", torch.zeros(2))
        self.add_state("avg", "mean", torch.zeros(()))
        self.add_state("rows", "cat")

    def update(self, x: torch.Tensor) -> None:
        self.total += x.sum(0)
        self.avg += x.mean()
        self.rows.append(x)


def test_reset_state_dict_and_to():
    m = _Counter()
    m.update(torch.ones(3, 2))
    m.update(2 * torch.ones(1, 2))
    assert m.total.tolist() == [5.0, 5.0] and torch.equal(
        m.synced("rows"), m.rows[0].new_tensor([[1.0, 1.0]] * 3 + [[2.0, 2.0]])
    )
    fresh = _Counter()
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.total, m.total) and torch.equal(fresh.synced("rows"), m.synced("rows"))
    fresh.double()
    assert fresh.total.dtype == torch.float64 and fresh.rows[0].dtype == torch.float64
    m.reset()
    assert m.total.tolist() == [0.0, 0.0] and float(m.avg) == 0.0 and m.rows == []
    with pytest.raises(ValueError, match="before any update"):
        m.synced("rows")
    with pytest.raises(ValueError, match="reduce"):
        m.add_state("bad", "max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="default"):
        m.add_state("bad", "sum")


def _worker(rank: int, world_size: int, out: str) -> None:
    m = _Counter()
    m.update(torch.full((rank + 1, 2), float(rank + 1)))  # rank 0: one row of 1s, rank 1: two of 2s
    torch.save({n: m.synced(n) for n in ("total", "avg", "rows")}, Path(out) / f"r{rank}.pt")


def test_cross_rank_reductions(tmp_path):
    run_distributed(_worker, world_size=2, args=(str(tmp_path),))
    for rank in range(2):
        got = torch.load(tmp_path / f"r{rank}.pt", weights_only=True)
        assert got["total"].tolist() == [5.0, 5.0]  # 1 + 2 * 2 per column, summed
        assert float(got["avg"]) == 1.5  # the mean over ranks of (1, 2)
        assert got["rows"].tolist() == [[1.0, 1.0], [2.0, 2.0], [2.0, 2.0]]  # rank order


def test_diffusion_spectral_entropy_states_survive_state_dict():
    from inforeg.estimators import DiffusionSpectralEntropy

    g = torch.Generator().manual_seed(0)
    z, y = (
        torch.randn(40, 3, generator=g, dtype=torch.float64),
        torch.randint(0, 2, (40,), generator=g),
    )
    m = DiffusionSpectralEntropy(sigma=1.0)
    m.update(z[:25], y[:25])
    m.update(z[25:], y[25:])
    fresh = DiffusionSpectralEntropy(sigma=1.0)
    fresh.load_state_dict(m.state_dict())
    assert torch.equal(fresh.compute(), m.compute())
    assert torch.equal(fresh.compute_mutual_information(), m.compute_mutual_information())
    m.reset()
    with pytest.raises(ValueError, match="before any update"):
        m.compute()
