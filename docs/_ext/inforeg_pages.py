"""Generate the family and technique pages from the package and the method registry.

Runs at ``builder-inited``: writes ``docs/_generated/families/<family>.rst`` (every public name of
the family, documented by autodoc from its docstring) and ``docs/_generated/techniques/<key>.rst``
(the paper, the API with its maths, the latest recorded verdicts with intervals and their plot,
and the benchmark table where one exists). Nothing here is edited by hand.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
OUT = DOCS / "_generated"


def public_names(family: str) -> list[str]:
    """The family's ``__all__`` (its public names), in order."""
    module = importlib.import_module(f"inforeg.{family}")
    return list(getattr(module, "__all__", []))


def _directive(module: str, name: str) -> str:
    obj = getattr(importlib.import_module(module), name)
    if inspect.isclass(obj):
        return "autoclass"
    if callable(obj):
        return "autofunction"
    return "autodata"


def _title(text: str, char: str = "=") -> str:
    return f"{text}\n{char * len(text)}\n"


def family_page(family: str) -> str:
    module = importlib.import_module(f"inforeg.{family}")
    doc = (module.__doc__ or "").strip().splitlines()
    lines = [
        f".. _family-{family}:",
        "",
        _title(f"inforeg.{family}"),
        doc[0] if doc else "",
        "",
        f".. currentmodule:: inforeg.{family}",
        "",
        ".. autosummary::",
        "",
    ]
    names = public_names(family)
    lines += [f"   {n}" for n in names]
    lines.append("")
    for name in names:
        directive = _directive(f"inforeg.{family}", name)
        lines += [f".. {directive}:: {name}"]
        if directive == "autoclass":
            lines += ["   :members:", "   :show-inheritance:"]
        lines.append("")
    return "\n".join(lines)


def rst_escape(text: str) -> str:
    """Plain text for an RST cell: markup characters lose their meaning."""
    for ch in ("\\", "|", "*", "`", "_"):
        text = text.replace(ch, "\\" + ch)
    return text


def _fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


def verdict_section(experiment: str, static: Path) -> list[str]:
    path = ROOT / "results" / f"{experiment}.json"
    lines = [_title("Latest reproduction", "-"), ""]
    if not path.is_file():
        return lines + [f"No recorded run of ``{experiment}`` yet.", ""]
    payload = json.loads(path.read_text(encoding="utf-8"))
    proto = payload.get("protocol", 1)
    seeds = payload.get("seeds")
    n = len(seeds) if isinstance(seeds, list) else seeds
    lines += [
        f"``inforeg run {experiment}``, recorded in ``results/{experiment}.json``: protocol "
        f"{proto}, {n} seeds{' (quick run)' if payload.get('quick') else ''}.",
        "",
    ]
    if proto != 2:
        lines += [
            ".. note::",
            "",
            "   This run predates protocol 2 (no validation-based selection, equal tuning or "
            "regime checks): its verdicts are not evidence of a reproduction.",
            "",
        ]
    for check in payload.get("regime_checks", []):
        op = ">" if check["direction"] == "above" else "<"
        ok = "passed" if check["passed"] else "**failed**"
        lines.append(
            f"- Regime check *{rst_escape(check['name'])}* ({rst_escape(check['description'])}): "
            f"{_fmt(check['value'])} {op} {_fmt(check['threshold'])}, {ok}."
        )
    if payload.get("regime_checks"):
        lines.append("")
    claims = payload.get("claims", [])
    if claims:
        lines += [
            ".. list-table::",
            "   :header-rows: 1",
            "",
            "   * - claim",
            "     - kind",
            "     - metric",
            "     - mean diff (method − baseline)",
            "     - 95% CI",
            "     - verdict",
        ]
        for c in claims:
            ci = c.get("ci95")
            ci_text = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "–"
            mean = c.get("mean_diff", c.get("improvement_mean"))
            lines += [
                f"   * - {rst_escape(c['text'])}",
                f"     - {c.get('kind', 'paper')}",
                f"     - {c['metric']}",
                f"     - {_fmt(mean)}",
                f"     - {ci_text}",
                f"     - {c['verdict']}",
            ]
        lines.append("")
    if proto == 2 and claims:
        from inforeg.lab.experiments.report import plot_paired_differences

        png = static / f"{experiment}-paired.png"
        if plot_paired_differences(claims, png):
            lines += [f".. image:: /_generated/_static/{png.name}", "   :width: 100%", ""]
    return lines


def bench_section(names: Sequence[str]) -> list[str]:
    from inforeg.lab.bench import registry as benches

    lines: list[str] = []
    for name in names:
        bench = benches()[name]
        md = ROOT / "benchmarks" / f"{bench.name}.md"
        if not md.is_file():
            continue
        lines += [
            _title(f"Benchmark: {bench.name} (vs {bench.peer})", "-"),
            "",
            f"``inforeg bench {bench.name}``; the committed result ``benchmarks/{bench.name}.md``:",
            "",
            ".. include:: " + f"../../../benchmarks/{bench.name}.md",
            "   :parser: myst_parser.sphinx_",
            "",
        ]
    return lines


def family_link(family: str) -> str:
    import inforeg

    return f":ref:`family-{family}`" if family in inforeg.FAMILIES else f"``{family}`` (not built)"


def technique_page(rec: Any, static: Path) -> str:
    lines = [f".. _technique-{rec.key}:", "", _title(f"{rec.key}: {rec.title}"), ""]
    lines += [
        f"*{rec.authors}* ({rec.venue}, {rec.year}).",
        "",
        f"- Paper: {rec.link or '–'}",
        f"- Authors' code: {'https://github.com/' + rec.code if rec.code else '–'}",
        f"- Family: {family_link(rec.family)}; status: **{rec.status}**",
    ]
    if rec.reference_tests:
        tests = ", ".join(f"``{t}``" for t in rec.reference_tests)
        lines.append(f"- Reference tests: {tests}")
    lines.append("")
    if rec.notes:
        lines += [_title("Notes", "-"), "", rst_escape(rec.notes), ""]
    if rec.api:
        lines += [
            _title("API", "-"),
            "",
            "The maths, defaults, the paper and where inforeg follows the authors' code are in "
            "each docstring.",
            "",
        ]
        for full in rec.api:
            module, _, name = full.rpartition(".")
            directive = _directive(module, name)
            lines += [f".. {directive}:: {full}", "   :no-index:"]
            if directive == "autoclass":
                lines.append("   :members:")
            lines.append("")
    else:
        lines += ["Not built yet.", ""]
    if rec.experiment:
        lines += verdict_section(rec.experiment, static)
    lines += bench_section(rec.benchmarks)
    return "\n".join(lines)


def _write(path: Path, text: str) -> None:
    """Write only when the content changes (keeps Sphinx's incremental build honest)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.write_text(text, encoding="utf-8")


def generate(out: Path = OUT) -> dict[str, list[str]]:
    """Write every generated page under ``out``; return the families and technique keys."""
    import inforeg
    from inforeg.lab.registry import records

    static = out / "_static"
    static.mkdir(parents=True, exist_ok=True)
    families = list(inforeg.FAMILIES)
    for family in families:
        _write(out / "families" / f"{family}.rst", family_page(family))
    recs = records()
    for rec in recs:
        _write(out / "techniques" / f"{rec.key}.rst", technique_page(rec, static))
    keys = [r.key for r in recs]
    _write(
        out / "families.rst",
        _title("Families")
        + "\n.. toctree::\n   :maxdepth: 1\n\n"
        + "".join(f"   families/{f}\n" for f in families),
    )
    by_family: dict[str, list[str]] = {}
    for r in recs:
        by_family.setdefault(r.family, []).append(r.key)
    body = _title("Techniques") + "\nOne page per technique of the method registry.\n"
    for family, fam_keys in by_family.items():
        body += "\n" + _title(family, "-") + "\n.. toctree::\n   :maxdepth: 1\n\n"
        body += "".join(f"   techniques/{k}\n" for k in fam_keys)
    _write(out / "techniques.rst", body)
    return {"families": families, "techniques": keys}


def setup(app: Any) -> dict[str, Any]:
    app.connect("builder-inited", lambda _app: generate())
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
