"""Run a function in N processes with the gloo backend on CPU (for distributed tests).

Usage in a test module::

    def _worker(rank, world_size, tmpdir):  # module-level, so it pickles
        ...  # torch.distributed is initialised here; write results to tmpdir

    def test_something(tmp_path):
        run_distributed(_worker, world_size=2, args=(str(tmp_path),))
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _entry(rank: int, fn: Callable[..., Any], world_size: int, port: int, args: tuple) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        fn(rank, world_size, *args)
        # Every rank finishes its traffic before any tears gloo down: destroying the group while
        # the peer still sends aborts the process ("terminate called without an active
        # exception"), seen intermittently without this barrier.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_distributed(fn: Callable[..., Any], world_size: int = 2, args: tuple = ()) -> None:
    """Spawn ``world_size`` processes running ``fn(rank, world_size, *args)``; raise on failure."""
    mp.spawn(_entry, args=(fn, world_size, _free_port(), args), nprocs=world_size, join=True)
