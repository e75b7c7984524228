"""Helpers shared by the dependence benchmarks (single timed call, available memory)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any


def available_bytes() -> int:
    """MemAvailable from /proc/meminfo (0 if unknown)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def single(fn: Callable[[], Any]) -> tuple[float, int, Any]:
    """One timed call (for runs too long to repeat): (seconds, peak extra RSS bytes, result)."""
    from inforeg.bench import base

    gc.collect()
    start_rss = base._rss_bytes()
    can_reset = base._reset_peak()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = max(0, base._hwm_bytes() - start_rss) if can_reset else -1
    return seconds, peak, out
