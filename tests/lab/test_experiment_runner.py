"""Protocol 2 in the runner: verdict rules, selection on validation, regime checks, records."""

from __future__ import annotations

import json
import math
import subprocess

import pytest

from inforeg.lab.experiments import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.base import protocol_problems
from inforeg.lab.experiments.protocol import (
    BestOnValidation,
    Selected,
    grid_points,
    paired_interval,
    student_t_quantile,
    tune,
    verdict,
)
from inforeg.lab.experiments.runner import code_commit, judge, run_experiment, summarise

# ------------------------------------------------------------------------------------------
# Statistics
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "expected"),
    # Student-t 0.975 quantiles (standard tables; scipy.stats.t.ppf gives the same to 1e-9)
    [(1, 12.706204736), (2, 4.302652730), (9, 2.262157163), (19, 2.093024054), (30, 2.042272456)],
)
def test_student_t_quantile_matches_tables(df, expected):
    assert student_t_quantile(0.975, df) == pytest.approx(expected, abs=1e-7)
    assert student_t_quantile(0.025, df) == pytest.approx(-expected, abs=1e-7)


def test_student_t_quantile_matches_scipy_when_available():
    stats = pytest.importorskip("scipy.stats")
    for df in (3, 7.5, 50, 200):
        for p in (0.6, 0.9, 0.995):
            assert student_t_quantile(p, df) == pytest.approx(stats.t.ppf(p, df), rel=1e-9)


def test_paired_interval_is_the_t_interval():
    diffs = [0.1, 0.3, 0.2, 0.4, 0.0]
    mean, lo, hi = paired_interval(diffs)
    sd = math.sqrt(sum((d - 0.2) ** 2 for d in diffs) / 4)
    half = student_t_quantile(0.975, 4) * sd / math.sqrt(5)
    assert mean == pytest.approx(0.2)
    assert (lo, hi) == pytest.approx((0.2 - half, 0.2 + half))
    assert paired_interval([0.5]) == (0.5, -math.inf, math.inf)


# ------------------------------------------------------------------------------------------
# Verdicts: each of the four from synthetic per-seed values
# ------------------------------------------------------------------------------------------


def _results(method_acc, base_acc, gap=None):
    out = []
    for i, (m, b) in enumerate(zip(method_acc, base_acc, strict=True)):
        regime = {} if gap is None else {"gap": gap[i]}
        out.append(SeedResult({"method": {"acc": m}, "base": {"acc": b}}, regime=regime))
    return out


CLAIM = Claim("acc", "method", "base", True, "method raises acc", regime=("over-confident",))
CHECK = RegimeCheck("over-confident", "gap", "confidence minus accuracy of base", 0.0)


def _regime(results):
    from inforeg.lab.experiments.runner import check_regime

    return [check_regime(CHECK, results)]


def test_verdict_held():
    base = [0.50, 0.52, 0.49, 0.51, 0.50, 0.53, 0.48, 0.50, 0.51, 0.52]
    method = [b + 0.02 + 0.002 * (i % 3) for i, b in enumerate(base)]
    res = _results(method, base, gap=[0.05] * 10)
    out = judge(CLAIM, res, _regime(res))
    assert out["verdict"] == "held" and out["wins"] == 10
    assert out["ci95"][0] > 0 and "better in 10/10 seeds" in out["wording"]


def test_verdict_did_not_hold():
    base = [0.50 + 0.01 * (i % 4) for i in range(10)]
    method = [b - 0.03 + 0.001 * i for i, b in enumerate(base)]
    res = _results(method, base, gap=[0.05] * 10)
    out = judge(CLAIM, res, _regime(res))
    assert out["verdict"] == "did not hold" and out["ci95"][1] < 0


def test_verdict_inconclusive():
    base = [0.5] * 10
    method = [0.5 + (0.02 if i % 2 else -0.02) for i in range(10)]
    res = _results(method, base, gap=[0.05] * 10)
    out = judge(CLAIM, res, _regime(res))
    assert out["verdict"] == "inconclusive" and out["ci95"][0] < 0 < out["ci95"][1]


def test_failing_regime_check_gives_not_testable_here():
    base = [0.50] * 10
    method = [0.60 + 0.001 * i for i in range(10)]  # a clear "win" ...
    res = _results(method, base, gap=[-0.02] * 10)  # ... where the baseline is not over-confident
    regime = _regime(res)
    assert regime[0]["passed"] is False and regime[0]["value"] == pytest.approx(-0.02)
    out = judge(CLAIM, res, regime)
    assert out["verdict"] == "not testable here"
    assert out["regime_passed"] is False


def test_lower_is_better_reads_the_interval_in_the_papers_direction():
    claim = Claim("acc", "method", "base", False, "method lowers it", regime=())
    res = _results([0.4 + 0.001 * i for i in range(10)], [0.5] * 10)
    out = judge(claim, res)
    assert out["mean_diff"] < 0 and out["verdict"] == "held" and out["improvement"] > 0
    assert verdict(-1.0, -0.5) == "did not hold" and verdict(0.1, 0.2, False) == "not testable here"


# ------------------------------------------------------------------------------------------
# Selection on validation and tuning
# ------------------------------------------------------------------------------------------


def test_selection_on_validation_picks_the_best_epoch_not_the_last():
    # A toy over-fitting run: validation accuracy peaks at epoch 3, test accuracy there is 0.80,
    # while the final epoch (9) has worse validation and test accuracy 0.70.
    val = [0.50, 0.60, 0.70, 0.82, 0.80, 0.78, 0.76, 0.75, 0.74, 0.73]
    test = [0.48, 0.58, 0.69, 0.80, 0.79, 0.77, 0.74, 0.73, 0.71, 0.70]
    calls = []
    best = BestOnValidation(higher_is_better=True)
    for epoch, (v, t) in enumerate(zip(val, test, strict=True)):
        best.update(epoch, v, lambda t=t, epoch=epoch: calls.append(epoch) or {"test acc": t})
    sel = best.result()
    assert sel.step == 3 and sel.metrics == {"test acc": 0.80}
    assert sel.step != len(val) - 1
    assert calls == [0, 1, 2, 3]  # the test split is read only at improvements
    low = BestOnValidation(higher_is_better=False)
    for epoch, v in enumerate([3.0, 2.0, float("nan"), 2.5]):
        low.update(epoch, v, lambda: {"x": 1.0})
    assert low.step == 1
    with pytest.raises(RuntimeError, match="no finite"):
        BestOnValidation().result()


def test_tune_selects_on_validation_and_visits_the_whole_grid():
    seen = []

    def fit(point):
        seen.append(point)
        score = -abs(point["lr"] - 0.03) - 0.001 * point["wd"]
        return Selected(score, {"test": point["lr"] * 10})

    point, sel = tune({"lr": [0.1, 0.03, 0.01], "wd": [0, 1]}, fit)
    assert point == {"lr": 0.03, "wd": 0} and sel.metrics == {"test": pytest.approx(0.3)}
    assert len(seen) == 6 == len(grid_points({"lr": [1, 2, 3], "wd": [0, 1]}))


# ------------------------------------------------------------------------------------------
# Protocol validation and the whole run
# ------------------------------------------------------------------------------------------


def _fake_seed(seed: int, quick: bool) -> SeedResult:
    # "method" beats "base" on acc in every seed; on loss it is worse; the regime holds.
    return SeedResult(
        metrics={
            "base": {"acc": 0.5 + 0.01 * seed, "loss": 1.0, "const": 1.0},
            "method": {
                "acc": 0.6 + 0.01 * seed + 0.001 * (seed % 3),
                "loss": 1.2 + 0.01 * seed,
                "const": 1.0,
            },
        },
        curves={"acc per epoch": {"base": [0.1, 0.2], "method": [0.2, 0.3 + seed]}},
        tuning={"base": {"lr": 0.1}, "method": {"lr": 0.1 if seed % 2 else 0.01, "beta": 1}},
        regime={"gap": 0.05},
        splits={"train": 10, "validation": 5, "test": 5},
    )


def _fake(**overrides):
    kw = dict(
        name="fake",
        summary="A fake experiment.",
        setup="None.",
        claims=(
            Claim("acc", "method", "base", True, "method raises acc", regime=("over-confident",)),
            Claim(
                "loss", "method", "base", False, "method lowers loss", regime=("over-confident",)
            ),
            Claim("acc", "method", "base", True, "method moves its own target", kind="sanity"),
        ),
        regime_checks=(RegimeCheck("over-confident", "gap", "base's confidence gap", 0.0),),
        tuning={"base": {"lr": [0.1, 0.01]}, "method": {"lr": [0.1, 0.01], "beta": [1]}},
        selection="validation acc, best epoch and grid point per arm",
        run_seed=_fake_seed,
    )
    kw.update(overrides)
    return Experiment(**kw)


def test_protocol_2_is_validated_on_construction():
    exp = _fake()  # protocol 2 with 10 seeds (2 with --quick) are the defaults
    assert (exp.protocol, exp.seeds, exp.quick_seeds) == (2, 10, 2)
    assert protocol_problems(exp) == []
    with pytest.raises(ValueError, match="at least 10"):
        _fake(seeds=5)
    with pytest.raises(ValueError, match="must name a regime check"):
        _fake(claims=(Claim("acc", "method", "base", True, "no regime"),))
    with pytest.raises(ValueError, match="differ in size"):
        _fake(tuning={"base": {"lr": [0.1]}, "method": {"lr": [0.1, 0.01]}})
    with pytest.raises(ValueError, match="no grid for arm"):
        _fake(tuning={"method": {"lr": [0.1, 0.01]}})
    # An arm with nothing to tune declares an empty grid.
    assert protocol_problems(_fake(tuning={"base": {}, "method": {"lr": [0.1, 0.01]}})) == []


def test_splits_are_the_sizes_the_seeds_report(tmp_path):
    def varying(seed: int, quick: bool) -> SeedResult:
        result = _fake_seed(seed, quick)
        result.splits = {"train": 10, "test": 5 + seed % 2}
        return result

    out = run_experiment(
        _fake(run_seed=varying), seeds=3, out_root=tmp_path, record_dir=None, progress=False
    )
    payload = json.loads((out / "results.json").read_text())
    assert payload["splits"] == {"train": 10, "test": [5, 6, 5]}
    assert "test 5 to 6 (by seed)" in (out / "report.md").read_text()

    def silent(seed: int, quick: bool) -> SeedResult:
        result = _fake_seed(seed, quick)
        result.splits = {}
        return result

    with pytest.raises(ValueError, match=r"run_seed\(0\) reported no split sizes"):
        run_experiment(_fake(run_seed=silent), seeds=2, out_root=tmp_path, progress=False)
    with pytest.raises(ValueError, match="selection"):
        _fake(selection="")


def test_run_writes_protocol_2_fields_report_and_plots(tmp_path):
    exp = _fake()
    out = run_experiment(
        exp, seeds=10, out_root=tmp_path / "runs", record_dir=tmp_path / "results", progress=False
    )
    payload = json.loads((out / "results.json").read_text())
    for key in (
        "protocol",
        "commit",
        "torch",
        "wall_time_s",
        "cpu_time_s",
        "quick",
        "seeds",
        "splits",
        "selection",
        "tuning",
        "regime_checks",
        "claims",
    ):
        assert key in payload, key
    assert payload["protocol"] == 2 and payload["seeds"] == list(range(10))
    assert payload["splits"] == {"train": 10, "validation": 5, "test": 5}  # what the seeds used
    assert payload["tuning"]["method"]["grid_size"] == 2
    assert payload["tuning"]["method"]["chosen"][1] == {"lr": 0.1, "beta": 1}
    assert payload["regime_checks"][0]["passed"] is True
    claims = {c["text"]: c for c in payload["claims"]}
    assert claims["method raises acc"]["verdict"] == "held"
    assert claims["method lowers loss"]["verdict"] == "did not hold"
    assert claims["method moves its own target"]["kind"] == "sanity"
    for c in payload["claims"]:
        assert set(c) >= {
            "text",
            "kind",
            "metric",
            "direction",
            "per_seed",
            "mean_diff",
            "ci95",
            "verdict",
        }
        assert len(c["per_seed"]["diff"]) == 10
    report = (out / "report.md").read_text()
    assert "## Regime checks" in report and "## The paper's claims" in report
    assert "## Sanity checks" in report and "## Tuning" in report
    assert "better in 10/10 seeds" in report and "lr ∈ [0.1, 0.01]" in report
    for png in ("paired_differences.png", "metrics.png", "curves.png"):
        assert (out / png).stat().st_size > 5000, png
    assert "const" not in _metric_panels(out)  # constant metrics are not plotted
    assert json.loads((tmp_path / "results" / "fake.json").read_text()) == payload
    # A second run never overwrites the first.
    out2 = run_experiment(exp, seeds=2, out_root=tmp_path / "runs", progress=False)
    assert out2 != out and (out / "results.json").is_file()
    with pytest.raises(ValueError, match="seeds"):
        run_experiment(exp, seeds=0, out_root=tmp_path)


def _metric_panels(out):
    from inforeg.lab.experiments.report import plot_metrics

    summary = json.loads((out / "results.json").read_text())["summary"]
    return plot_metrics(summary, out / "m.png")


def test_failed_run_leaves_no_folder(tmp_path):
    def boom(seed, quick):
        raise RuntimeError("diverged")

    with pytest.raises(RuntimeError, match="diverged"):
        run_experiment(_fake(run_seed=boom), seeds=1, out_root=tmp_path / "runs", progress=False)
    assert not (tmp_path / "runs").exists()


def test_summary_statistics():
    s = summarise([_fake_seed(seed, False) for seed in range(3)])
    assert s["base"]["acc"]["mean"] == pytest.approx(0.51)
    assert s["base"]["acc"]["std"] == pytest.approx(0.01)  # ddof = 1


def test_arms_may_report_different_metrics(tmp_path):
    """A metric only some arms report is plotted and tabulated for those arms (the report
    raised a KeyError, losing a finished full run)."""

    def seed_fn(seed: int, quick: bool) -> SeedResult:
        result = _fake_seed(seed, quick)
        result.metrics["method"]["beta"] = 0.1 * (seed + 1)
        return result

    run = run_experiment(_fake(run_seed=seed_fn), seeds=2, out_root=tmp_path, progress=False)
    summary = json.loads((run / "results.json").read_text())["summary"]
    assert "beta" not in summary["base"]
    assert "beta" in _metric_panels(run)
    report = (run / "report.md").read_text()
    assert any(
        line.startswith("| base |") and line.endswith("| — |") for line in report.splitlines()
    )


def test_code_commit_ignores_the_labs_own_outputs(tmp_path):
    """A chain of --record runs rewrites results/ between runs; that must not mark the later
    runs' code as dirty (all but the first of eight re-records said '+dirty'), while a change
    to a source file must."""

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    git("config", "user.email", "t@example.com")
    git("config", "user.name", "t")
    (tmp_path / "src").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "src" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "exp.json").write_text("{}\n")
    git("add", "-A")
    git("commit", "-qm", "init")
    clean = code_commit(tmp_path / "src")
    assert len(clean) == 40 and not clean.endswith("+dirty")
    (tmp_path / "results" / "exp.json").write_text('{"new": 1}\n')
    assert code_commit(tmp_path / "src") == clean
    (tmp_path / "src" / "code.py").write_text("x = 2\n")
    assert code_commit(tmp_path / "src") == clean + "+dirty"
