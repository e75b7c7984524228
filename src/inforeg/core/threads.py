"""Torch intra-op threads: set them for a block (restored on exit), or split CPU work over threads."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import torch


@contextmanager
def intra_op_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, then restore the previous count.

    The setting is process-wide: do not rely on it while other threads run torch work.

    Example:
        >>> before = torch.get_num_threads()
        >>> with intra_op_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_in_parts(total: int, parts: int, body: Callable[[int, int], None]) -> None:
    """Run ``body(lo, hi)`` over ``[0, total)`` split into ``parts`` contiguous parts.

    For CPU work in cache-sized blocks: per-op intra-op threading on small blocks mostly adds
    synchronisation (and, on a loaded machine, waits at every op for a descheduled thread), so
    each part runs in its own Python worker thread (torch releases the GIL inside ops) with
    intra-op threading set to 1 meanwhile. The parts run under ``no_grad`` (or the caller's
    ``inference_mode``: both are thread-local) and write into preallocated outputs.
    ``parts <= 1`` calls ``body(0, total)`` in the calling thread.
    """
    if parts <= 1:
        body(0, total)
        return
    step = -(-total // parts)
    bounds = [(lo, min(lo + step, total)) for lo in range(0, total, step)]
    inference = torch.is_inference_mode_enabled()

    def work(lo: int, hi: int) -> None:
        with torch.inference_mode() if inference else torch.no_grad():
            body(lo, hi)

    with intra_op_threads(1), ThreadPoolExecutor(len(bounds)) as pool:
        for fut in [pool.submit(work, lo, hi) for lo, hi in bounds]:
            fut.result()
