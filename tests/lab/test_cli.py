from __future__ import annotations

import json
import subprocess
import sys

from inforeg.lab.cli import main


def _one_line_error(capsys, argv, fragment):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("inforeg: error:") and fragment in err[0]


def test_bad_arguments_exit_2_with_one_line(capsys):
    _one_line_error(
        capsys, ["run", "no-such-thing"], "no experiment or technique named 'no-such-thing'"
    )
    _one_line_error(capsys, ["run", "pskd-digits", "--seeds", "-1"], "positive integer")
    _one_line_error(capsys, ["run", "pskd-digits", "--seeds", "two"], "positive integer")
    _one_line_error(capsys, ["run"], "NAME or --all")
    _one_line_error(capsys, ["run", "pskd-digits", "--all"], "NAME or --all")
    _one_line_error(capsys, ["frobnicate"], "invalid choice")
    _one_line_error(capsys, ["list", "--family", "nope"], "invalid choice")
    _one_line_error(capsys, ["bench", "no-such-bench"], "no benchmark named")
    _one_line_error(capsys, [], "required")


def test_console_script_exit_code_and_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "inforeg.lab.cli", "run", "no-such-thing"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_list_prints_all_41(capsys):
    assert main(["list", "--markdown"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    assert len(rows) == 41
    assert main(["list", "--family", "rl", "--markdown"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| `")]
    assert rows and all("| rl |" in r for r in rows)
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "pskd" in out and "sparse-ot" in out


def test_run_writes_report_results_and_plots(tmp_path, capsys):
    assert main(["run", "pskd-digits", "--quick", "--seeds", "2", "--out", str(tmp_path)]) == 0
    (run_dir,) = (tmp_path / "pskd-digits").iterdir()
    report = (run_dir / "report.md").read_text()
    assert "±" in report and "PS-KD" in report and "CE" in report
    results = json.loads((run_dir / "results.json").read_text())
    assert results["seeds"] == [0, 1] and len(results["claims"]) == 3
    assert len(results["summary"]["PS-KD"]["test NLL"]["values"]) == 2
    assert (run_dir / "metrics.png").stat().st_size > 1000
    assert "report at" in capsys.readouterr().out


def test_run_list(capsys):
    assert main(["run", "--list"]) == 0
    assert "pskd-digits" in capsys.readouterr().out


def test_import_inforeg_keeps_optional_packages_out():
    # Every family, and the experiment and benchmark registries, import without the extras.
    optional = ["rich", "matplotlib", "sklearn", "scipy", "ot", "geomloss", "dcor", "hyppo"]
    code = (
        "import sys, importlib, inforeg\n"
        "for f in inforeg.FAMILIES + ('lab.datasets',):\n"
        "    importlib.import_module('inforeg.' + f)\n"
        "import inforeg.lab.experiments, inforeg.lab.bench\n"
        "inforeg.lab.experiments.registry(); inforeg.lab.bench.registry()\n"
        f"loaded = [m for m in {optional!r} if m in sys.modules]\n"
        "print(loaded); sys.exit(bool(loaded))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_version_and_python_dash_m(capsys):
    import inforeg

    proc = subprocess.run(
        [sys.executable, "-m", "inforeg", "--version"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and proc.stdout.strip() == f"inforeg {inforeg.__version__}"


def test_run_accepts_a_technique_key(capsys):
    from inforeg.lab.cli import resolve_experiment

    assert resolve_experiment("pskd", ["pskd-digits", "dse-digits"]) == "pskd-digits"
    assert resolve_experiment("dse-digits", ["pskd-digits", "dse-digits"]) == "dse-digits"
    _one_line_error(capsys, ["run", "pskdd"], "did you mean pskd")


def test_show_prints_record_api_and_verdicts(capsys):
    assert main(["show", "pskd"]) == 0
    out = capsys.readouterr().out
    assert (
        "Self-Knowledge Distillation" in out and "inforeg.losses.ProgressiveSelfDistillation" in out
    )
    assert "arxiv.org/abs/2006.12000" in out and "latest verdicts" in out
    assert "benchmark:" not in out  # pskd has no peer benchmark
    assert main(["show", "sparse-ot"]) == 0
    assert "benchmark: sparse-ot (inforeg bench sparse-ot" in capsys.readouterr().out
    _one_line_error(capsys, ["show", "nope-nope"], "no technique named 'nope-nope'")


def test_missing_matplotlib_fails_fast_with_the_install_line(capsys, monkeypatch, tmp_path):
    import importlib.util
    import time

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    start = time.perf_counter()
    _one_line_error(
        capsys, ["run", "pskd", "--quick", "--out", str(tmp_path)], "pip install 'inforeg[plot]'"
    )
    assert time.perf_counter() - start < 1.0
    assert not any(tmp_path.iterdir())  # no empty run folder


def test_bench_missing_peer_fails_fast_with_the_install_line(capsys, monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "ot" else real(name, *a)
    )
    _one_line_error(
        capsys,
        ["bench", "sinkhorn", "--quick", "--out", str(tmp_path)],
        "sinkhorn needs ot: pip install 'inforeg[ref]'",
    )
    assert not any(tmp_path.iterdir())  # failed before any work or output


def test_demo_index_lists_every_run(tmp_path):
    from inforeg.lab.experiments.runner import run_experiment
    from inforeg.lab.summary import write_index
    from tests.lab.test_experiment_runner import _fake

    runs = [run_experiment(_fake(), seeds=2, out_root=tmp_path, progress=False) for _ in range(2)]
    index = write_index(runs, tmp_path)
    md, page = index.read_text(), index.with_suffix(".html").read_text()
    assert md.count("| fake | ") == 2 and "paired_differences.png" in md
    assert page.count("<tr><td>fake</td>") == 2 and "report.md" in page
    for run in runs:
        rel = run.relative_to(tmp_path).as_posix()
        assert f"../{rel}/report.md" in md


def test_a_closed_pipe_ends_the_command_quietly():
    """`inforeg run --list | head -1`: the reader has gone; no traceback, exit 141 like a shell."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # every write of the child now fails with EPIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "inforeg", "run", "--list"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert proc.returncode == 141, proc.stderr
    assert proc.stderr == ""


def test_an_output_folder_that_cannot_be_written_fails_before_any_work(
    capsys, monkeypatch, tmp_path
):
    # Regression: `run --out` under a path that cannot hold a folder ran the whole experiment,
    # then ended in a FileNotFoundError traceback and lost the results.
    from inforeg.lab.experiments import runner

    def no_run(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the experiment ran")

    monkeypatch.setattr(runner, "run_experiment", no_run)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    bad = str(blocker / "runs")  # a folder inside a file: cannot be created, even as root
    _one_line_error(capsys, ["run", "pskd", "--quick", "--out", bad], "--out: cannot write to")
    _one_line_error(capsys, ["bench", "dse", "--quick", "--out", bad], "--out: cannot write to")
