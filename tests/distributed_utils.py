"""Run a function in N processes with the gloo backend on CPU (for distributed tests).

Usage in a test module::

    def _worker(rank, world_size, tmpdir):  # module-level, so it pickles
        ...  # torch.distributed is initialised here; write results to tmpdir

    def test_something(tmp_path):
        run_distributed(_worker, world_size=2, args=(str(tmp_path),))

Three things make it robust:

- Rendezvous goes through a ``FileStore`` in a fresh temporary directory, not a TCP port: picking
  a "free" port and binding it later (seconds later under load, once the ranks have imported
  torch) races with every other process on the machine, including other test runs. gloo's own
  connections bind port 0 themselves.
- When one rank's worker raises, its peers fail too ("Connection reset by peer" in their next
  collective), and whichever failure arrives first used to be the one reported. The worker's own
  error is recorded, so the root cause is the one raised.
- A rank that finished its work and its final barrier can still abort while gloo tears down
  ("terminate called without an active exception" from a joinable C++ thread at interpreter
  exit, seen intermittently in CI). Each rank marks itself done after the final barrier and
  leaves with ``os._exit(0)`` after destroying its group, skipping the C++ static destructors;
  a signal death after every rank marked itself done is a teardown crash, not a test failure.
- Every wait is bounded: a collective times out after ``timeout`` seconds and the whole run after
  ``timeout + grace`` (the processes are then terminated), with an error naming the worker.
"""

from __future__ import annotations

import os
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp
from torch.multiprocessing import ProcessExitedException, ProcessRaisedException

TIMEOUT_S = 300.0  # one spawned test takes ~50 s on 2 cores at load 30; a hang fails, slowly


def _error_file(tmp: str, rank: int) -> str:
    return os.path.join(tmp, f"worker-error-{rank}.txt")


def _done_file(tmp: str, rank: int) -> str:
    return os.path.join(tmp, f"worker-done-{rank}")


def _entry(
    rank: int, fn: Callable[..., Any], world_size: int, tmp: str, timeout: float, args: tuple
) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"file://{os.path.join(tmp, 'store')}",  # must not exist yet: fresh dir
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout),
    )
    try:
        try:
            fn(rank, world_size, *args)
        except BaseException:
            # Written (atomically) before this rank tears down its connections, so before any
            # peer can fail because of it.
            path = _error_file(tmp, rank)
            with open(path + ".part", "w") as f:
                f.write(traceback.format_exc())
            os.replace(path + ".part", path)
            raise
        # Every rank finishes its traffic before any tears gloo down: destroying the group while
        # the peer still sends aborts the process ("terminate called without an active
        # exception"), seen intermittently without this barrier.
        dist.barrier()
    except BaseException:
        dist.destroy_process_group()
        raise
    open(_done_file(tmp, rank), "w").close()
    dist.destroy_process_group()
    os._exit(0)  # no interpreter teardown: see the module docstring


def _root_cause(err: ProcessRaisedException, tmp: str, pids: list[int]) -> Exception:
    """The error of a rank whose worker raised, if the reported one is a peer's consequence."""
    failed = [r for r in range(len(pids)) if os.path.exists(_error_file(tmp, r))]
    if not failed or err.error_index in failed:
        return err
    rank = failed[0]
    with open(_error_file(tmp, rank)) as f:
        cause = f.read()
    first = str(err).strip().splitlines()[-1]
    msg = (
        f"\n\n-- Process {rank} terminated with the following error:\n{cause}\n"
        f"(reported first, as a consequence: process {err.error_index}: {first})"
    )
    return ProcessRaisedException(msg, rank, pids[rank])


def run_distributed(
    fn: Callable[..., Any],
    world_size: int = 2,
    args: tuple = (),
    timeout: float = TIMEOUT_S,
    grace: float = 60.0,
) -> None:
    """Spawn ``world_size`` processes running ``fn(rank, world_size, *args)``; raise on failure.

    A worker's exception is re-raised here (``ProcessRaisedException`` with its traceback; the
    worker's own error, not a peer's "connection reset" that follows it), a crashed worker gives
    ``ProcessExitedException``, and a run still going after ``timeout + grace`` seconds (the
    grace lets a timed-out collective raise its own error first) is terminated with a
    ``TimeoutError``.
    """
    with tempfile.TemporaryDirectory(prefix="inforeg-gloo-") as tmp:
        context = mp.start_processes(
            _entry,
            args=(fn, world_size, tmp, timeout, args),
            nprocs=world_size,
            join=False,
            start_method="spawn",
        )
        deadline = time.monotonic() + timeout + grace
        try:
            while not context.join(timeout=1.0):  # raises if a worker failed
                if time.monotonic() > deadline:
                    for process in context.processes:
                        process.terminate()
                    for process in context.processes:
                        process.join()
                    raise TimeoutError(
                        f"run_distributed: {getattr(fn, '__name__', fn)!s} on {world_size} "
                        f"processes did not finish within {timeout + grace:.0f} s"
                    )
        except ProcessExitedException:
            if all(os.path.exists(_done_file(tmp, r)) for r in range(world_size)):
                return  # every rank finished and synchronised: a teardown crash only
            raise
        except ProcessRaisedException as err:
            cause = _root_cause(err, tmp, [p.pid for p in context.processes])
            if cause is err:
                raise
            raise cause from err
