"""Run an experiment over seeds and write ``results.json``, ``report.md`` and PNG plots."""

from __future__ import annotations

import json
import math
import platform
import shutil
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from inforeg.core.threads import intra_op_threads
from inforeg.lab.experiments.base import Claim, Experiment, SeedResult


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


def summarise(results: Sequence[SeedResult]) -> dict[str, dict[str, dict[str, Any]]]:
    """``summary[method][metric] = {"mean", "std", "values"}`` (std over seeds, ddof=1)."""
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for method, metrics in results[0].metrics.items():
        summary[method] = {}
        for metric in metrics:
            values = [r.metrics[method][metric] for r in results]
            mean, std = _mean_std(values)
            summary[method][metric] = {"mean": mean, "std": std, "values": values}
    return summary


def judge(claim: Claim, results: Sequence[SeedResult]) -> dict[str, Any]:
    """Did the claim's direction hold on average, and in how many seeds?"""
    sign = 1.0 if claim.higher_is_better else -1.0
    diffs = [
        sign * (r.metrics[claim.method][claim.metric] - r.metrics[claim.baseline][claim.metric])
        for r in results
    ]
    mean, std = _mean_std(diffs)
    wins = sum(d > 0 for d in diffs)
    held = mean > 0
    se = std / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    if not held:
        verdict = "did not hold"
    elif wins == len(diffs) and (math.isnan(se) or mean > 2 * se):
        verdict = "held"
    else:
        verdict = "held on average, not consistently"
    return {
        "text": claim.text,
        "metric": claim.metric,
        "method": claim.method,
        "baseline": claim.baseline,
        "higher_is_better": claim.higher_is_better,
        "improvement_mean": mean,
        "improvement_std": std,
        "seeds_improved": wins,
        "seeds": len(diffs),
        "held": held,
        "verdict": verdict,
    }


def _fmt(stats: dict[str, Any]) -> str:
    return f"{stats['mean']:.4f} ± {stats['std']:.4f}"


def _report(exp: Experiment, payload: dict[str, Any], plots: list[str]) -> str:
    summary = payload["summary"]
    methods = list(summary)
    metrics = list(summary[methods[0]])
    lines = [
        f"# {exp.name}",
        "",
        f"Technique: `{exp.technique}`. {exp.summary}",
        "",
        "## Set-up",
        "",
        exp.setup,
        "",
        f"Seeds: {payload['seeds']} ({'quick' if payload['quick'] else 'full'} run), "
        f"{payload['duration_s']:.1f} s, torch {payload['torch']}.",
        "",
        "## Measured (mean ± std over seeds)",
        "",
        "| method | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for m in methods:
        lines.append(f"| {m} | " + " | ".join(_fmt(summary[m][k]) for k in metrics) + " |")
    lines += ["", "## The paper's claims", ""]
    for c in payload["claims"]:
        lines.append(
            f"- {c['text']}: **{c['verdict']}** (improvement {c['improvement_mean']:+.4f} ± "
            f"{c['improvement_std']:.4f} on {c['metric']}, better in {c['seeds_improved']}/"
            f"{c['seeds']} seeds)"
        )
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def _plots(exp: Experiment, results: Sequence[SeedResult], out: Path, summary: dict) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'inforeg[plot]'") from exc
    names: list[str] = []
    methods = list(summary)
    metrics = list(summary[methods[0]])
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        means = [summary[m][metric]["mean"] for m in methods]
        stds = [summary[m][metric]["std"] for m in methods]
        ax.bar(range(len(methods)), means, yerr=stds, capsize=4, color="tab:blue", alpha=0.8)
        ax.set_xticks(range(len(methods)))
        ax.set_xticklabels(methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric, fontsize=9)
    fig.suptitle(f"{exp.name}: mean ± std over {len(results)} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "metrics.png", dpi=110)
    plt.close(fig)
    names.append("metrics.png")
    for curve in results[0].curves:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for method in results[0].curves[curve]:
            runs = torch.tensor([r.curves[curve][method] for r in results], dtype=torch.float64)
            mean = runs.mean(0)
            std = runs.std(0) if runs.shape[0] > 1 else torch.zeros_like(mean)
            xs = range(1, mean.shape[0] + 1)
            ax.plot(xs, mean.numpy(), label=method)
            ax.fill_between(xs, (mean - std).numpy(), (mean + std).numpy(), alpha=0.2)
        ax.set_title(curve)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fname = f"curve_{curve.replace(' ', '_').replace('/', '_')}.png"
        fig.savefig(out / fname, dpi=110)
        plt.close(fig)
        names.append(fname)
    return names


def run_experiment(
    exp: Experiment,
    seeds: int | None = None,
    quick: bool = False,
    out_root: str | Path = "runs",
    record_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Run ``exp`` for ``seeds`` seeds (0..seeds-1) and write its outputs; return the run folder.

    With ``record_dir`` set, a copy of ``results.json`` is also written to
    ``record_dir/<name>.json`` (the repository's ``results/`` keeps the last recorded result).
    """
    n_seeds = seeds if seeds is not None else (exp.quick_seeds if quick else exp.seeds)
    if n_seeds < 1:
        raise ValueError(f"seeds: expected at least 1, got {n_seeds}")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    out = Path(out_root) / exp.name / stamp
    out.mkdir(parents=True, exist_ok=False)
    start = time.perf_counter()
    results: list[SeedResult] = []
    bar = _progress(progress)
    with intra_op_threads(exp.threads), bar as p:
        task = p.add_task(exp.name, total=n_seeds)
        for seed in range(n_seeds):
            results.append(exp.run_seed(seed, quick))
            p.advance(task)
    duration = time.perf_counter() - start
    summary = summarise(results)
    payload: dict[str, Any] = {
        "experiment": exp.name,
        "technique": exp.technique,
        "seeds": n_seeds,
        "quick": quick,
        "duration_s": duration,
        "created": stamp,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "summary": summary,
        "claims": [judge(c, results) for c in exp.claims],
        "curves": [r.curves for r in results],
    }
    payload["all_claims_held"] = all(c["held"] for c in payload["claims"])
    (out / "results.json").write_text(json.dumps(payload, indent=1), encoding="utf-8")
    plots = _plots(exp, results, out, summary)
    (out / "report.md").write_text(_report(exp, payload, plots), encoding="utf-8")
    if record_dir is not None:
        rec = Path(record_dir)
        rec.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "results.json", rec / f"{exp.name}.json")
    return out


class _PlainProgress:
    """Fallback when rich is missing or progress is off: one line per step when verbose."""

    def __init__(self, verbose: bool) -> None:
        self.verbose = verbose
        self.totals: dict[int, tuple[str, int, int]] = {}

    def __enter__(self) -> _PlainProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, name: str, total: int) -> int:
        self.totals[len(self.totals)] = (name, 0, total)
        return len(self.totals) - 1

    def advance(self, task: int) -> None:
        name, done, total = self.totals[task]
        self.totals[task] = (name, done + 1, total)
        if self.verbose:
            print(f"{name}: seed {done + 1}/{total} done", flush=True)


def _progress(enabled: bool) -> Any:
    if not enabled:
        return _PlainProgress(False)
    try:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    except ImportError:
        return _PlainProgress(True)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} seeds"),
        TimeElapsedColumn(),
    )
