"""Benchmark records, timing and peak-memory measurement, and the JSON/Markdown writer."""

from __future__ import annotations

import gc
import json
import os
import platform
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

#: What :func:`measure` and :func:`measure_once` return: ``(seconds, peak extra bytes, value)``.
Timing = tuple[float, int, Any]
#: A loss value and its gradient with respect to the points (:func:`value_and_grad`).
ValueGrad = tuple[float, torch.Tensor]

#: The row key naming the table a row belongs to (one table per comparison in the Markdown).
TABLE = "table"

RATIOS_NOTE = (
    "speed-up = peer time / inforeg time and memory ratio = peer peak / inforeg peak: above 1, "
    "inforeg is faster (uses less memory)."
)


@dataclass
class BenchResult:
    """Rows of the benchmark's tables (one dict per configuration) and free-text notes.

    A row's ``"table"`` entry (:data:`TABLE`) names its table: :func:`write` gives each table its
    own heading and columns, so different comparisons never share one wide table.
    """

    rows: list[dict[str, Any]]
    notes: str = ""


def compare_row(
    table: str,
    case: str,
    ours: Timing | None,
    peer: Timing | None,
    peer_name: str,
    **cells: Any,
) -> dict[str, Any]:
    """One row of a comparison of inforeg against ``peer_name`` on the same inputs.

    Columns, in this order: ``case``, the ``cells`` (sizes, then agreement: put the agreement
    first among them), ``<peer> s``, ``inforeg s``, ``speed-up`` (peer s / inforeg s),
    ``<peer> MB``, ``inforeg MB`` and ``memory ratio`` (peer peak / inforeg peak). A ``None``
    timing (a side that was not run) leaves its columns and the ratios out; a memory growth of 0
    (below the resolution of the measurement) leaves the memory ratio out.
    """
    row: dict[str, Any] = {TABLE: table, "case": case, **cells}
    if peer is not None:
        row[f"{peer_name} s"] = peer[0]
    if ours is not None:
        row["inforeg s"] = ours[0]
    if peer is not None and ours is not None:
        row["speed-up"] = peer[0] / ours[0]
    if peer is not None:
        row[f"{peer_name} MB"] = peer[1] / 2**20
    if ours is not None:
        row["inforeg MB"] = ours[1] / 2**20
    if peer is not None and ours is not None and peer[1] > 0 and ours[1] > 0:
        row["memory ratio"] = peer[1] / ours[1]
    return row


@dataclass(frozen=True)
class Benchmark:
    """``run(quick)`` measures inforeg against a peer on the same inputs in one process.

    ``requires`` names the optional modules the peer needs (e.g. ``("ot",)``): ``inforeg bench``
    checks them before any work and names the pip extra that installs them. The techniques it
    serves are the registry records that list it in ``Record.benchmarks``.
    """

    name: str
    peer: str
    description: str
    run: Callable[[bool], BenchResult]
    extra: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()

    @property
    def techniques(self) -> list[str]:
        """The keys of the registry records that list this benchmark."""
        from inforeg.lab.registry import records

        return [r.key for r in records() if self.name in r.benchmarks]


def value_and_grad(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> ValueGrad:
    """``(float(fn(x)), d fn / d x)`` through a fresh leaf copy of ``x`` (a loss's forward and
    backward, the unit the gradient benchmarks time)."""
    leaf = x.detach().clone().requires_grad_(True)
    value = fn(leaf)
    (grad,) = torch.autograd.grad(value, leaf)
    return float(value.detach()), grad


def rel_diffs(got: ValueGrad, ref: ValueGrad) -> tuple[float, float]:
    """Relative differences of a value and of its gradient (in norm) from a reference."""
    (value, grad), (ref_value, ref_grad) = got, ref
    grad_diff = (grad.double() - ref_grad.double()).norm() / ref_grad.double().norm()
    return abs(value - ref_value) / abs(ref_value), float(grad_diff)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hwm_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets the peak-RSS (VmHWM) counter to the current RSS
        return True
    except OSError:
        return False


def measure(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, int, Any]:
    """Run ``fn`` once to warm up, then ``repeat`` times.

    Returns ``(best seconds, peak extra resident memory in bytes over the first timed call,
    the last result)``. Memory is the growth of the process's peak RSS (Linux ``VmHWM``, reset
    before the call), so it counts numpy and torch CPU allocations alike.
    """
    out = fn()
    gc.collect()
    base = _rss_bytes()
    can_reset = _reset_peak()
    best = float("inf")
    peak = 0
    for i in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
        if i == 0:
            peak = max(0, _hwm_bytes() - base) if can_reset else -1
    return best, peak, out


def measure_once(fn: Callable[[], Any]) -> tuple[float, int, Any]:
    """One timed call, for runs too long to repeat: ``(seconds, peak extra RSS bytes, result)``."""
    gc.collect()
    base = _rss_bytes()
    can_reset = _reset_peak()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    peak = max(0, _hwm_bytes() - base) if can_reset else -1
    return seconds, peak, out


def big_n(default: int = 100_000) -> int:
    """Size of a large streamed run: ``default``, or ``INFOREG_BENCH_BIG_N`` when set (a loaded
    shared machine may not finish the default size in the time available; rows record the n
    used)."""
    return int(os.environ.get("INFOREG_BENCH_BIG_N", str(default)))


def available_bytes() -> int:
    """``MemAvailable`` from /proc/meminfo (0 if unknown): to skip sizes that cannot fit."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def write(bench: Benchmark, result: BenchResult, out_dir: str | Path = "benchmarks") -> Path:
    """Write ``NAME.json`` and ``NAME.md`` into ``out_dir``; return the Markdown path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    load_1, load_5 = (round(v, 2) for v in os.getloadavg()[:2])
    meta: dict[str, Any] = {
        "benchmark": bench.name,
        "technique": ", ".join(bench.techniques),
        "peer": bench.peer,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "load_average_1_5_min": [load_1, load_5],
    }
    (out / f"{bench.name}.json").write_text(
        json.dumps({**meta, "rows": result.rows, "notes": result.notes}, indent=1), encoding="utf-8"
    )
    lines = [
        f"# bench {bench.name}: inforeg vs {bench.peer}",
        "",
        bench.description,
        "",
        f"Measured {meta['created']} on {meta['cpus']} CPUs ({meta['machine']}), torch "
        f"{meta['torch']} with {meta['threads']} threads; load average at the end "
        f"{load_1} (1 min), {load_5} (5 min): "
        "times are only comparable on a quiet machine. Times are the best of the repeats; "
        f"memory is the growth of peak resident memory during one call. {RATIOS_NOTE}",
    ]
    tables: dict[str, list[dict[str, Any]]] = {}
    for row in result.rows:
        tables.setdefault(str(row.get(TABLE, "results")), []).append(row)
    for title, rows in tables.items():
        cols = [k for k in dict.fromkeys(k for row in rows for k in row) if k != TABLE]
        lines += ["", f"## {title}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        lines += ["| " + " | ".join(_cell(row.get(c, "")) for c in cols) + " |" for row in rows]
    if result.notes:
        lines += ["", result.notes]
    path = out / f"{bench.name}.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
