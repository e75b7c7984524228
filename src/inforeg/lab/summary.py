"""Pages that summarise: one technique's record (``inforeg show``) and the demo's index page."""

from __future__ import annotations

import html
import json
import os
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from inforeg.lab.registry import Record


def results_dir() -> Path:
    """``results/`` of the working directory, else the one beside the package's source tree."""
    here = Path("results")
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "results"


def latest_result(experiment: str) -> dict[str, Any] | None:
    """The recorded ``results/<experiment>.json``, if any."""
    path = results_dir() / f"{experiment}.json"
    if not path.is_file():
        return None
    payload: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return payload


def verdict_lines(payload: dict[str, Any]) -> list[str]:
    """One line per claim: kind, text, verdict and what happened."""
    lines = []
    for c in payload.get("claims", []):
        wording = c.get("wording", "")
        lines.append(
            f"[{c.get('kind', 'paper')}] {c['text']}: {c['verdict']}"
            + (f" ({wording})" if wording else "")
        )
    return lines


def describe_record(rec: Record) -> str:
    """What ``inforeg show KEY`` prints."""
    lines = [
        f"{rec.key}: {rec.title}",
        f"  {rec.authors} ({rec.venue}, {rec.year})",
        f"  paper: {rec.link or '–'}",
        f"  authors' code: {'https://github.com/' + rec.code if rec.code else '–'}",
        f"  family: {rec.family}; status: {rec.status}",
        "  API:",
    ]
    lines += [f"    {name}" for name in rec.api] or ["    (not built yet)"]
    if rec.experiment:
        lines.append(f"  experiment: {rec.experiment} (inforeg run {rec.experiment})")
        payload = latest_result(rec.experiment)
        if payload is None:
            lines.append("  latest verdicts: no recorded run")
        else:
            proto = payload.get("protocol", 1)
            seeds = payload.get("seeds")
            n = len(seeds) if isinstance(seeds, list) else seeds
            lines.append(f"  latest verdicts (protocol {proto}, {n} seeds):")
            lines += [f"    {line}" for line in verdict_lines(payload)]
    for name in rec.benchmarks:
        lines.append(
            f"  benchmark: {name} (inforeg bench {name}; last run in benchmarks/{name}.md)"
        )
    if rec.notes:
        lines.append(f"  notes: {rec.notes}")
    return "\n".join(lines)


def _run_summary(run: Path) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((run / "results.json").read_text(encoding="utf-8"))
    return payload


def write_index(runs: Sequence[Path], root: Path) -> Path:
    """``root/demo-<stamp>/index.md`` and ``index.html``: every run's verdicts and a thumbnail of
    its paired-difference plot linking to its report. Returns the Markdown path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = root / f"demo-{stamp}"
    out.mkdir(parents=True, exist_ok=False)
    md = [
        f"# inforeg demo ({len(runs)} experiments, quick runs)",
        "",
        "Quick runs use few seeds and short schedules: they show that every experiment runs, not "
        "what it concludes. The recorded full runs are in `results/`.",
        "",
        "| experiment | technique | claims (kind: verdict) | time | report |",
        "|---|---|---|---|---|",
    ]
    cells = []
    for run in runs:
        p = _run_summary(run)
        rel = Path(os.path.relpath(run, out))
        verdicts = "; ".join(f"{c['kind']}: {c['verdict']}" for c in p["claims"]) or "–"
        md.append(
            f"| {p['experiment']} | {p['technique']} | {verdicts} | {p['wall_time_s']:.1f} s | "
            f"[report]({(rel / 'report.md').as_posix()}) |"
        )
        cells.append((p, rel))
    md += ["", "## Paired differences", ""]
    for (p, rel), run in zip(cells, runs, strict=True):
        if (run / "paired_differences.png").is_file():
            md.append(
                f"[![{p['experiment']}]({(rel / 'paired_differences.png').as_posix()})]"
                f"({(rel / 'report.md').as_posix()})"
            )
    (out / "index.md").write_text("\n".join(md) + "\n", encoding="utf-8")
    rows = "\n".join(
        "<tr><td>{e}</td><td>{t}</td><td>{v}</td><td>{s:.1f} s</td>"
        '<td><a href="{r}/report.md"><img src="{r}/paired_differences.png" width="320" '
        'alt="{e}"></a></td></tr>'.format(
            e=html.escape(p["experiment"]),
            t=html.escape(p["technique"]),
            v="<br>".join(
                html.escape(f"[{c['kind']}] {c['text']}: {c['verdict']}") for c in p["claims"]
            ),
            s=p["wall_time_s"],
            r=html.escape(rel.as_posix()),
        )
        for p, rel in cells
    )
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>inforeg demo</title>"
        "<style>body{font-family:sans-serif}td{vertical-align:top;padding:4px;"
        "border-bottom:1px solid #ddd}</style></head><body>"
        f"<h1>inforeg demo ({len(runs)} experiments, quick runs)</h1>"
        "<p>Quick runs show that every experiment runs, not what it concludes; the recorded full "
        "runs are in <code>results/</code>.</p>"
        "<table><tr><th>experiment</th><th>technique</th><th>claims</th><th>time</th>"
        f"<th>paired differences (links to the report)</th></tr>{rows}</table></body></html>\n"
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    return out / "index.md"
