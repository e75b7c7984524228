"""Benchmarks against peer libraries: agreement first, then time and peak-memory ratios.

Every module in this package that defines ``BENCHMARK`` (a :class:`Benchmark`) is found by
``inforeg bench NAME``. Results go to ``benchmarks/NAME.json`` and ``benchmarks/NAME.md``.
Benchmarks are never pytest tests with time limits.
"""

from __future__ import annotations

import importlib
import pkgutil

from inforeg.bench.base import Benchmark, BenchResult, measure

_INFRASTRUCTURE = {"base"}


def registry() -> dict[str, Benchmark]:
    """All benchmarks by name."""
    found: dict[str, Benchmark] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name in _INFRASTRUCTURE or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "BENCHMARK"):
            b = module.BENCHMARK
            if b.name in found:
                raise ValueError(f"duplicate benchmark name {b.name!r}")
            found[b.name] = b
    return found


def get(name: str) -> Benchmark:
    """The benchmark called ``name`` (KeyError with close matches otherwise)."""
    found = registry()
    if name not in found:
        import difflib

        close = difflib.get_close_matches(name, found, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise KeyError(f"no benchmark {name!r}{hint}; available: {', '.join(sorted(found))}")
    return found[name]


__all__ = ["BenchResult", "Benchmark", "get", "measure", "registry"]
