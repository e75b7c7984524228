"""The ``inforeg`` command: list techniques, run experiments, the demo, benchmarks.

Bad arguments exit with code 2 and one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from inforeg.lab.plugins import require, suggest, unknown_name
from inforeg.lab.registry import FAMILIES


class UsageError(Exception):
    """A bad argument: reported on one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from inforeg import __version__

    p = _Parser(prog="inforeg", description=__doc__)
    p.add_argument("--version", action="version", version=f"inforeg {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ls = sub.add_parser("list", help="list the techniques in the registry")
    ls.add_argument("--family", choices=FAMILIES, help="only this family")
    ls.add_argument("--markdown", action="store_true", help="print the README's Markdown table")

    show = sub.add_parser("show", help="a technique's record, API, paper and latest verdicts")
    show.add_argument("key", help="technique key (see `inforeg list`) or experiment name")

    run = sub.add_parser("run", help="run an experiment (or --all)")
    run.add_argument(
        "name", nargs="?", help="experiment name or technique key (see `inforeg run --list`)"
    )
    run.add_argument("--all", action="store_true", help="run every experiment")
    run.add_argument("--list", action="store_true", help="list the experiments and exit")
    run.add_argument("--seeds", type=_positive_int, help="number of seeds (default: experiment's)")
    run.add_argument("--quick", action="store_true", help="shortened run")
    run.add_argument("--out", default="runs", help="output root (default: runs)")
    run.add_argument(
        "--record", action="store_true", help="also copy results.json to results/NAME.json"
    )

    sub.add_parser("demo", help="quick runs of every experiment (a few minutes on 2 cores)")

    bench = sub.add_parser("bench", help="benchmark against a peer library")
    bench.add_argument("name", help="benchmark name")
    bench.add_argument("--quick", action="store_true", help="smaller sizes")
    bench.add_argument("--out", default="runs/bench", help="output folder (default: runs/bench)")
    return p


def _cmd_list(args: argparse.Namespace) -> int:
    from inforeg.lab.registry import markdown_table, records

    if args.markdown:
        print(markdown_table(args.family), end="")
        return 0
    recs = records(args.family)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        for r in recs:
            print(f"{r.key:28s} {r.family:11s} {r.status:12s} {r.year} {r.title}")
        return 0
    table = Table(title=f"inforeg techniques ({len(recs)})")
    for col in ("key", "family", "status", "year", "paper", "arXiv / URL"):
        table.add_column(col, overflow="fold")
    for r in recs:
        table.add_row(r.key, r.family, r.status, str(r.year), r.title, r.arxiv or r.url)
    Console(width=160).print(table)
    return 0


def _writable(folder: str, option: str) -> None:
    """Raise a usage error unless ``folder`` exists (it is created) and takes a file: checked
    before any work, so that a run is not lost at the end to a folder it cannot write."""
    import tempfile

    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UsageError(f"{option}: cannot write to {folder!r} ({exc.strerror or exc})") from exc


def _run_one(name: str, seeds: int | None, quick: bool, out: str, record: bool) -> Path:
    from inforeg.lab.experiments import get
    from inforeg.lab.experiments.runner import run_experiment

    exp = get(name)
    path = run_experiment(exp, seeds, quick, out, record_dir="results" if record else None)
    print(f"{name}: report at {path / 'report.md'}")
    return path


def resolve_experiment(name: str, experiments: Sequence[str]) -> str:
    """The experiment called ``name``, or the one of the technique whose key is ``name``."""
    from inforeg.lab.registry import records

    if name in experiments:
        return name
    by_key = {r.key: r.experiment for r in records() if r.experiment}
    if name in by_key and by_key[name] in experiments:
        return by_key[name]
    hint = suggest(name, [*experiments, *by_key]) or "; see `inforeg run --list`"
    raise UsageError(f"run: no experiment or technique named {name!r}{hint}")


def _cmd_run(args: argparse.Namespace) -> int:
    _check_report_extra()
    from inforeg.lab.experiments import registry

    exps = registry()
    if args.list:
        for name, exp in sorted(exps.items()):
            print(f"{name:32s} {', '.join(exp.techniques)}")
        return 0
    if args.all == bool(args.name):
        raise UsageError("run: give one experiment NAME or --all (NAME may be a technique key)")
    names = sorted(exps) if args.all else [resolve_experiment(args.name, list(exps))]
    _writable(args.out, "--out")
    if args.record:
        _writable("results", "--record")
    for name in names:
        _run_one(name, args.seeds, args.quick, args.out, args.record)
    return 0


def _check_report_extra() -> None:
    """Reports need matplotlib: say so before importing torch or running anything."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise ImportError("experiment reports need matplotlib: pip install 'inforeg[plot]'")


def _cmd_demo(args: argparse.Namespace) -> int:
    _check_report_extra()
    from inforeg.lab.experiments import registry
    from inforeg.lab.summary import write_index

    start = time.perf_counter()
    _writable("runs", "demo")
    runs = [_run_one(name, None, True, "runs", False) for name in sorted(registry())]
    index = write_index(runs, Path("runs"))
    print(f"demo: {len(runs)} experiments in {time.perf_counter() - start:.0f} s")
    print(f"summary: {index} (and {index.with_suffix('.html')})")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from inforeg.lab.registry import records
    from inforeg.lab.summary import describe_record

    recs = records()
    chosen = [r for r in recs if r.key == args.key] or [r for r in recs if r.experiment == args.key]
    if not chosen:
        hint = suggest(args.key, [r.key for r in recs]) or "; see `inforeg list`"
        raise UsageError(f"show: no technique named {args.key!r}{hint}")
    print(describe_record(chosen[0]))
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from inforeg.lab.bench import registry
    from inforeg.lab.bench.base import write

    found = registry()
    if args.name not in found:
        raise UsageError(f"bench: {unknown_name('benchmark', args.name, found)}")
    bench = found[args.name]
    require(bench.name, bench.requires)
    _writable(args.out, "--out")
    path = write(bench, bench.run(args.quick), args.out)
    print(path.read_text(encoding="utf-8"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``inforeg`` command; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
        handler = {
            "list": _cmd_list,
            "show": _cmd_show,
            "run": _cmd_run,
            "demo": _cmd_demo,
            "bench": _cmd_bench,
        }
        return handler[args.command](args)
    except UsageError as exc:
        print(f"inforeg: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"inforeg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("inforeg: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`inforeg list | head`): stop quietly, and point stdout at
        # /dev/null so that the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
