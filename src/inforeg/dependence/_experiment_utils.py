"""Helpers for the dependence family's experiments."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def single_thread() -> Iterator[None]:
    """Run with one torch thread, then restore the previous setting.

    The experiments train tiny models on batches of a few hundred points; there, intra-op threads
    only add synchronisation, and on a shared, loaded machine OpenMP's barriers made each small op
    up to 100x slower with 2 threads than with 1.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
