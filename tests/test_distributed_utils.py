"""The gloo test harness reports what goes wrong in a worker instead of hiding or hanging on it."""

from __future__ import annotations

import time

import pytest
import torch
import torch.distributed as dist
from torch.multiprocessing import ProcessRaisedException

from tests.distributed_utils import _error_file, _root_cause, run_distributed

pytestmark = pytest.mark.distributed


def _sum_ranks(rank: int, world_size: int, out: str) -> None:
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)
    torch.save(t, f"{out}/rank{rank}.pt")


def _raise_on_rank_one(rank: int, world_size: int) -> None:
    if rank == 1:
        raise ValueError("rank one failed on purpose")


def _hang(rank: int, world_size: int) -> None:
    time.sleep(3600)


def test_runs_a_collective_and_reraises_a_worker_error(tmp_path):
    run_distributed(_sum_ranks, world_size=2, args=(str(tmp_path),))
    for rank in range(2):
        assert float(torch.load(tmp_path / f"rank{rank}.pt", weights_only=True)) == 3.0
    with pytest.raises(ProcessRaisedException, match="rank one failed on purpose"):
        run_distributed(_raise_on_rank_one, world_size=2)


def test_the_worker_error_wins_over_a_peer_consequence(tmp_path):
    # rank 1's worker raised; rank 0 then failed in its barrier and was reported first
    with open(_error_file(str(tmp_path), 1), "w") as f:
        f.write("ValueError: the real cause")
    reset = ProcessRaisedException("RuntimeError: Read error: Connection reset by peer", 0, 10)
    cause = _root_cause(reset, str(tmp_path), [10, 11])
    assert isinstance(cause, ProcessRaisedException) and cause is not reset
    assert (cause.error_index, cause.error_pid) == (1, 11)
    assert "the real cause" in str(cause) and "Connection reset by peer" in str(cause)
    # the reported process is the one whose worker failed: unchanged
    own = ProcessRaisedException("ValueError: the real cause", 1, 11)
    assert _root_cause(own, str(tmp_path), [10, 11]) is own


@pytest.mark.slow
def test_a_hung_worker_times_out():
    start = time.monotonic()
    with pytest.raises(TimeoutError, match="_hang on 2 processes did not finish"):
        run_distributed(_hang, world_size=2, timeout=1.0, grace=1.0)
    assert time.monotonic() - start < 120  # terminated, not left to sleep for an hour
