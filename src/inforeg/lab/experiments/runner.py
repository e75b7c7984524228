"""Run an experiment over paired seeds and write ``results.json``, ``report.md`` and PNG plots.

The statistics follow protocol 2 (``shared/REPRODUCTION.md`` §4-5): per-seed values of every arm,
paired differences, their mean and 95% Student-t interval, regime checks, and one of four
verdicts per claim. The Markdown and plots are built by :mod:`inforeg.lab.experiments.report`.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from inforeg.core.threads import intra_op_threads
from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.progress import listening
from inforeg.lab.experiments.protocol import (
    describe,
    grid_size,
    mean_std,
    paired_interval,
    verdict,
)
from inforeg.lab.plugins import require


def summarise(results: Sequence[SeedResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """``summary[arm][metric] = {"mean", "std", "values"}`` (std over seeds, ddof=1)."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for arm, metrics in results[0].metrics.items():
        summary[arm] = {}
        for metric in metrics:
            values = [float(r.metrics[arm][metric]) for r in results]
            mean, std = mean_std(values)
            summary[arm][metric] = {"mean": mean, "std": std, "values": values}
    return summary


def check_regime(check: RegimeCheck, results: Sequence[SeedResult]) -> dict[str, Any]:
    """The check's per-seed values, their mean, the threshold and whether it passed."""
    per_seed = [float(r.regime[check.measure]) for r in results]
    value, _ = mean_std(per_seed)
    return {
        "name": check.name,
        "measure": check.measure,
        "description": check.description,
        "value": value,
        "threshold": check.threshold,
        "direction": "above" if check.above else "below",
        "passed": check.passed(value),
        "per_seed": per_seed,
    }


def judge(
    claim: Claim, results: Sequence[SeedResult], regime: Sequence[dict[str, Any]] = ()
) -> dict[str, Any]:
    """Paired per-seed comparison of ``claim.method`` against ``claim.baseline``.

    ``mean_diff`` and ``ci95`` are of method − baseline (raw units); the verdict reads the
    interval in the paper's direction. A failed regime check the claim names makes it
    ``not testable here``.
    """
    method = [float(r.metrics[claim.method][claim.metric]) for r in results]
    base = [float(r.metrics[claim.baseline][claim.metric]) for r in results]
    diffs = [m - b for m, b in zip(method, base, strict=True)]
    mean, lo, hi = paired_interval(diffs)
    sign = 1.0 if claim.higher_is_better else -1.0
    imp_lo, imp_hi = sorted((sign * lo, sign * hi))
    wins = sum(sign * d > 0 for d in diffs)
    needed = [c for c in regime if c["name"] in claim.regime]
    regime_ok = all(c["passed"] for c in needed)
    v = verdict(imp_lo, imp_hi, regime_ok)
    _, std = mean_std(diffs)
    return {
        "text": claim.text,
        "kind": claim.kind,
        "paper": claim.paper,
        "metric": claim.metric,
        "method": claim.method,
        "baseline": claim.baseline,
        "direction": "higher" if claim.higher_is_better else "lower",
        "per_seed": {claim.method: method, claim.baseline: base, "diff": diffs},
        "mean_diff": mean,
        "ci95": [lo, hi],
        "improvement": sign * mean,
        "effect_size": (sign * mean / std) if std > 0 else None,
        "wins": wins,
        "seeds": len(diffs),
        "regime": list(claim.regime),
        "regime_passed": regime_ok,
        "verdict": v,
        "wording": describe(sign * mean, imp_lo, imp_hi, wins, len(diffs), v),
    }


def tuning_record(exp: Experiment, results: Sequence[SeedResult]) -> dict[str, Any]:
    """Per arm: the grid searched, its size and the point chosen in each seed."""
    arms = list(dict.fromkeys([*exp.tuning, *(a for r in results for a in r.tuning)]))
    return {
        arm: {
            "grid": {k: list(v) for k, v in exp.tuning.get(arm, {}).items()},
            "grid_size": grid_size(exp.tuning.get(arm, {})),
            "chosen": [r.tuning.get(arm) for r in results],
        }
        for arm in arms
    }


#: Folders the lab writes its own outputs to: changes there are not changes to the code that
#: ran (a chain of ``--record`` runs would otherwise mark every run after the first dirty).
OUTPUT_FOLDERS = ("results", "benchmarks")


def code_commit(where: Path | None = None) -> str:
    """The git commit of the code that ran (``+dirty`` with local changes outside
    :data:`OUTPUT_FOLDERS`), or ``unknown``; ``where``: a folder in the checkout (default: this
    package's)."""
    here = where or Path(__file__).resolve().parent
    outputs = [f":(top,exclude){folder}" for folder in OUTPUT_FOLDERS]
    try:
        head = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--"]
            + [":(top)"]
            + outputs,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def seed_splits(results: Sequence[SeedResult]) -> dict[str, int | list[int]]:
    """The split sizes the seeds used: one number where every seed used the same, else one per
    seed (0 where a seed did not report that split)."""
    names = dict.fromkeys(name for r in results for name in r.splits)
    sizes = {name: [r.splits.get(name, 0) for r in results] for name in names}
    return {name: n[0] if len(set(n)) == 1 else n for name, n in sizes.items()}


def build_payload(
    exp: Experiment,
    results: Sequence[SeedResult],
    seeds: Sequence[int],
    quick: bool,
    wall_s: float,
    cpu_s: float,
) -> dict[str, Any]:
    """The ``results.json`` content (protocol 2's §5 fields and the per-arm summary)."""
    regime = [check_regime(c, results) for c in exp.regime_checks]
    claims = [judge(c, results, regime) for c in exp.claims]
    return {
        "experiment": exp.name,
        "technique": ", ".join(exp.techniques),
        "protocol": exp.protocol,
        "commit": code_commit(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "quick": quick,
        "wall_time_s": wall_s,
        "cpu_time_s": cpu_s,
        "seeds": list(seeds),
        "splits": seed_splits(results),
        "selection": exp.selection,
        "tuning": tuning_record(exp, results),
        "regime_checks": regime,
        "claims": claims,
        "summary": summarise(results),
        "curves": [r.curves for r in results],
    }


def run_experiment(
    exp: Experiment,
    seeds: int | None = None,
    quick: bool = False,
    out_root: str | Path = "runs",
    record_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Run ``exp`` for seeds ``0 .. seeds-1`` and write its outputs; return the run folder.

    The folder ``out_root/<name>/<UTC stamp>/`` is created only once every seed has finished, so
    a failed run leaves nothing behind. With ``record_dir`` set, ``results.json`` is also copied to
    ``record_dir/<name>.json`` (the repository's ``results/`` keeps the last recorded full run).
    """
    from inforeg.lab.experiments.report import write_report

    n_seeds = seeds if seeds is not None else (exp.quick_seeds if quick else exp.seeds)
    if n_seeds < 1:
        raise ValueError(f"seeds: expected at least 1, got {n_seeds}")
    require(exp.name, ("matplotlib", *exp.requires))  # matplotlib: the report's plots
    seed_list = list(range(n_seeds))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    results: list[SeedResult] = []
    bar = _progress(progress)
    with intra_op_threads(exp.threads), bar as p:
        task = p.add_task(exp.name, total=n_seeds)
        inner = p.add_task("  within seed", total=None)

        def within(done: int, total: int, what: str) -> None:
            p.update(inner, completed=done, total=total, description=f"  {what}")

        with listening(within):
            for seed in seed_list:
                p.update(inner, completed=0, total=None, description=f"  seed {seed}")
                result = exp.run_seed(seed, quick)
                if not result.splits:
                    raise ValueError(
                        f"{exp.name}: run_seed({seed}) reported no split sizes (SeedResult.splits)"
                    )
                results.append(result)
                p.advance(task)
    payload = build_payload(
        exp, results, seed_list, quick, time.perf_counter() - wall0, time.process_time() - cpu0
    )
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    out = Path(out_root) / exp.name / stamp
    out.mkdir(parents=True, exist_ok=False)
    (out / "results.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    write_report(exp, payload, out)
    if record_dir is not None:
        rec = Path(record_dir)
        rec.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "results.json", rec / f"{exp.name}.json")
    return out


class _PlainProgress:
    """Fallback when rich is missing or progress is off: one line per seed when verbose."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.totals: dict[int, tuple[str, int, int | None]] = {}

    def __enter__(self) -> _PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, name: str, total: int | None) -> int:
        self.totals[len(self.totals)] = (name, 0, total)
        return len(self.totals) - 1

    def update(self, task: int, **_: Any) -> None:
        return None

    def advance(self, task: int) -> None:
        name, done, total = self.totals[task]
        self.totals[task] = (name, done + 1, total)
        if self.verbose:
            print(f"{name}: seed {done + 1}/{total} done", flush=True)


def _progress(enabled: bool) -> Any:
    if not enabled:
        return _PlainProgress(False)
    try:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:
        return _PlainProgress(True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
