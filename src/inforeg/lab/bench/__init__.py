"""Benchmarks against peer libraries: agreement first, then time and peak-memory ratios.

Every module in this package that defines ``BENCHMARK`` (a :class:`Benchmark`) is found by
``inforeg bench NAME``. Results go to ``benchmarks/NAME.json`` and ``benchmarks/NAME.md``.
Benchmarks are never pytest tests with time limits.
"""

from __future__ import annotations

from inforeg.lab.bench.base import Benchmark, BenchResult, measure
from inforeg.lab.plugins import discover, lookup


def registry() -> dict[str, Benchmark]:
    """All benchmarks by name."""
    return discover(__name__, ("BENCHMARK",), skip=("base",))


def get(name: str) -> Benchmark:
    """The benchmark called ``name`` (KeyError with close matches otherwise)."""
    bench: Benchmark = lookup(registry(), name, "benchmark")
    return bench


__all__ = ["BenchResult", "Benchmark", "get", "measure", "registry"]
