"""``report.md`` and its plots for one run: regime checks, claims with intervals, tuning grids.

Plots (matplotlib, Agg), each a grid of small panels with labelled axes and limits fitted to the
data (never bars from zero):

- ``paired_differences.png``: one panel per claim, the per-seed improvement of the method over its
  baseline (positive = the paper's direction), the mean with its 95% interval, and a zero line;
- ``metrics.png``: one panel per metric that varies, every seed's value per arm with mean ± std;
- ``curves.png``: one panel per recorded curve, mean ± std over seeds per arm.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from inforeg.lab.experiments.base import Experiment


def _fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return f"{x:.{digits}g}"


def _grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = min(max_cols, max(n, 1))
    return math.ceil(max(n, 1) / cols), cols


def _axes(n: int, width: float = 3.6, height: float = 3.0) -> tuple[Any, list[Any]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = _grid(n)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _save(fig: Any, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_paired_differences(claims: Sequence[dict[str, Any]], path: Path) -> bool:
    """One panel per claim: per-seed improvements, mean with 95% interval, zero line."""
    if not claims:
        return False
    fig, axes = _axes(len(claims))
    for ax, c in zip(axes, claims, strict=True):
        sign = 1.0 if c["direction"] == "higher" else -1.0
        imp = [sign * d for d in c["per_seed"]["diff"]]
        n = len(imp)
        xs = [0.15 * ((i % 7) - 3) / 3 for i in range(n)]  # deterministic jitter
        ax.axhline(0.0, color="0.4", lw=1, ls="--", zorder=1)
        ax.scatter(xs, imp, s=18, color="tab:blue", alpha=0.7, zorder=2, label="seed")
        lo, hi = sorted((sign * c["ci95"][0], sign * c["ci95"][1]))
        mean = sign * c["mean_diff"]
        if math.isfinite(lo) and math.isfinite(hi):
            ax.errorbar(
                [0.45],
                [mean],
                yerr=[[mean - lo], [hi - mean]],
                fmt="o",
                color="tab:red",
                capsize=5,
                zorder=3,
                label="mean, 95% CI",
            )
        else:
            ax.plot([0.45], [mean], "o", color="tab:red", zorder=3, label="mean")
        ax.set_xlim(-0.4, 0.8)
        ax.set_xticks([])
        ax.set_xlabel(f"{n} paired seeds")
        ax.set_ylabel(f"Δ {c['metric']}\n(+ = {c['direction']} is better)", fontsize=8)
        title = textwrap.fill(f"[{c['kind']}] {c['text']}", 42)
        ax.set_title(f"{title}\n{c['verdict']}", fontsize=8)
        ax.legend(fontsize=7, loc="best")
    _save(fig, path)
    return True


def metric_names(summary: dict[str, dict[str, Any]]) -> list[str]:
    """Every metric any arm reports, in first-seen order (arms may report different metrics)."""
    return list(dict.fromkeys(m for arm in summary.values() for m in arm))


def plot_metrics(summary: dict[str, dict[str, dict[str, Any]]], path: Path) -> list[str]:
    """One panel per varying metric: each seed's value per arm, mean ± std; returns the metrics
    plotted (constant ones are skipped). Arms may report different metrics: a panel shows the
    arms that have its metric."""
    arms = list(summary)
    metrics = [
        m
        for m in metric_names(summary)
        if len({round(v, 12) for a in arms if m in summary[a] for v in summary[a][m]["values"]}) > 1
    ]
    if not metrics:
        return []
    fig, axes = _axes(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        for i, arm in enumerate(arms):
            if metric not in summary[arm]:
                continue
            vals = summary[arm][metric]["values"]
            xs = [i + 0.12 * ((j % 7) - 3) / 3 for j in range(len(vals))]
            ax.scatter(xs, vals, s=12, alpha=0.5, color=f"C{i}")
            ax.errorbar(
                [i + 0.3],
                [summary[arm][metric]["mean"]],
                yerr=[summary[arm][metric]["std"]],
                fmt="o",
                color=f"C{i}",
                capsize=4,
            )
        ax.set_xticks(range(len(arms)))
        ax.set_xticklabels(arms, rotation=25, ha="right", fontsize=8)
        ax.set_xlabel("arm")
        ax.set_ylabel(metric, fontsize=8)
        ax.set_title(metric, fontsize=9)
    _save(fig, path)
    return metrics


def plot_curves(curves: Sequence[dict[str, dict[str, list[float]]]], path: Path) -> bool:
    """One panel per curve: mean ± std over seeds for each arm."""
    if not curves or not curves[0]:
        return False
    names = list(curves[0])
    fig, axes = _axes(len(names), width=4.2)
    for ax, name in zip(axes, names, strict=True):
        for i, arm in enumerate(curves[0][name]):
            runs = [c[name][arm] for c in curves if arm in c.get(name, {})]
            length = min(len(r) for r in runs)
            if length == 0:
                continue
            cols = [[r[t] for r in runs] for t in range(length)]
            means = [sum(c) / len(c) for c in cols]
            stds = [
                math.sqrt(sum((v - m) ** 2 for v in c) / (len(c) - 1)) if len(c) > 1 else 0.0
                for c, m in zip(cols, means, strict=True)
            ]
            xs = list(range(1, length + 1))
            ax.plot(xs, means, color=f"C{i}", label=arm)
            ax.fill_between(
                xs,
                [m - s for m, s in zip(means, stds, strict=True)],
                [m + s for m, s in zip(means, stds, strict=True)],
                color=f"C{i}",
                alpha=0.2,
            )
        ax.set_xlabel("step (as recorded)")
        ax.set_ylabel(name, fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    _save(fig, path)
    return True


def _claims_table(claims: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| claim | metric | arms | mean diff (method − baseline) | 95% CI | better in | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in claims:
        lo, hi = c["ci95"]
        lines.append(
            f"| {c['text']} | {c['metric']} ({c['direction']} is better) | "
            f"{c['method']} vs {c['baseline']} | {_fmt(c['mean_diff'])} | "
            f"[{_fmt(lo)}, {_fmt(hi)}] | {c['wins']}/{c['seeds']} | **{c['verdict']}** |"
        )
    return lines


def _techniques_line(keys: Sequence[str]) -> str:
    if not keys:
        return "No registry record names this experiment."
    named = ", ".join(f"`{k}`" for k in keys)
    return f"Technique{'s' if len(keys) > 1 else ''}: {named}."


def render_markdown(exp: Experiment, payload: dict[str, Any], plots: Sequence[str]) -> str:
    """The report's Markdown."""
    run = "quick" if payload["quick"] else "full"
    lines = [
        f"# {exp.name}",
        "",
        f"{_techniques_line(exp.techniques)} {exp.summary}",
        "",
        "## Set-up",
        "",
        exp.setup,
        "",
        f"Protocol {payload['protocol']}; {len(payload['seeds'])} paired seeds ({run} run); "
        f"{payload['wall_time_s']:.1f} s wall, {payload['cpu_time_s']:.1f} s CPU; "
        f"torch {payload['torch']}; commit `{payload['commit']}`.",
    ]
    if payload["splits"]:
        sizes = ", ".join(
            f"{k} {v}" if isinstance(v, int) else f"{k} {min(v)} to {max(v)} (by seed)"
            for k, v in payload["splits"].items()
        )
        lines += ["", f"Splits: {sizes}. Selection: {payload['selection'] or 'not stated'}."]
    if payload["regime_checks"]:
        lines += [
            "",
            "## Regime checks",
            "",
            "Is the failure the technique fixes present in the baseline? A claim whose check fails "
            "is `not testable here`.",
            "",
            "| check | measure | value | threshold | passed |",
            "|---|---|---|---|---|",
        ]
        for r in payload["regime_checks"]:
            op = ">" if r["direction"] == "above" else "<"
            lines.append(
                f"| {r['name']} | {r['description']} | {_fmt(r['value'])} | {op} "
                f"{_fmt(r['threshold'])} | {'yes' if r['passed'] else '**no**'} |"
            )
    for kind, heading in (("paper", "The paper's claims"), ("sanity", "Sanity checks")):
        chosen = [c for c in payload["claims"] if c["kind"] == kind]
        if not chosen:
            continue
        lines += ["", f"## {heading}", ""]
        if kind == "sanity":
            lines += [
                "These follow from the regulariser's own objective: they check the code, they are "
                "not reproductions.",
                "",
            ]
        lines += _claims_table(chosen)
        lines.append("")
        for c in chosen:
            quote = f" Paper: {c['paper']}" if c.get("paper") else ""
            lines.append(f"- {c['text']}: **{c['verdict']}**, {c['wording']}.{quote}")
    if any(t["grid"] for t in payload["tuning"].values()):
        lines += [
            "",
            "## Tuning (per arm, on validation)",
            "",
            "| arm | grid | points | chosen (count over seeds) |",
            "|---|---|---|---|",
        ]
        for arm, t in payload["tuning"].items():
            grid = "; ".join(f"{k} ∈ {v}" for k, v in t["grid"].items()) or "nothing to tune"
            counts: dict[str, int] = {}
            for choice in t["chosen"]:
                key = ", ".join(f"{k}={v}" for k, v in (choice or {}).items()) or "–"
                counts[key] = counts.get(key, 0) + 1
            picks = "; ".join(f"{k} ×{n}" for k, n in counts.items())
            lines.append(f"| {arm} | {grid} | {t['grid_size']} | {picks} |")
    summary = payload["summary"]
    arms = list(summary)
    metrics = metric_names(summary)
    lines += [
        "",
        "## Measured (mean ± std over seeds, at each arm's selected point)",
        "",
        "| arm | " + " | ".join(metrics) + " |",
        "|---|" + "---|" * len(metrics),
    ]
    for a in arms:
        cells = [
            f"{summary[a][m]['mean']:.4f} ± {summary[a][m]['std']:.4f}" if m in summary[a] else "—"
            for m in metrics
        ]
        lines.append(f"| {a} | " + " | ".join(cells) + " |")
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_report(exp: Experiment, payload: dict[str, Any], out: Path) -> list[str]:
    """Write the plots and ``report.md`` into ``out``; return the plot file names."""
    plots = []
    if plot_paired_differences(payload["claims"], out / "paired_differences.png"):
        plots.append("paired_differences.png")
    if plot_metrics(payload["summary"], out / "metrics.png"):
        plots.append("metrics.png")
    if plot_curves(payload["curves"], out / "curves.png"):
        plots.append("curves.png")
    (out / "report.md").write_text(render_markdown(exp, payload, plots), encoding="utf-8")
    return plots
