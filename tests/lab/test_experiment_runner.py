from __future__ import annotations

import json

import pytest

from inforeg.lab.experiments import Claim, Experiment, SeedResult
from inforeg.lab.experiments.runner import judge, run_experiment, summarise


def _fake_seed(seed: int, quick: bool) -> SeedResult:
    # method beats baseline on "acc" in every seed; on "loss" it is worse.
    return SeedResult(
        metrics={
            "base": {"acc": 0.5 + 0.01 * seed, "loss": 1.0},
            "method": {"acc": 0.6 + 0.01 * seed, "loss": 1.2 + 0.01 * seed},
        },
        curves={"acc per epoch": {"base": [0.1, 0.2], "method": [0.2, 0.3 + seed]}},
    )


FAKE = Experiment(
    name="fake",
    technique="pskd",
    summary="A fake experiment.",
    setup="None.",
    claims=(
        Claim("acc", "method", "base", True, "method raises acc"),
        Claim("loss", "method", "base", False, "method lowers loss"),
    ),
    run_seed=_fake_seed,
)


def test_summary_and_judgement():
    results = [_fake_seed(s, False) for s in range(3)]
    s = summarise(results)
    assert s["base"]["acc"]["mean"] == pytest.approx(0.51)
    assert s["base"]["acc"]["std"] == pytest.approx(0.01)  # ddof = 1
    up = judge(FAKE.claims[0], results)
    assert up["held"] and up["verdict"] == "held" and up["seeds_improved"] == 3
    assert up["improvement_mean"] == pytest.approx(0.1)
    down = judge(FAKE.claims[1], results)
    assert not down["held"] and down["verdict"] == "did not hold"


def test_run_writes_everything_and_records(tmp_path):
    out = run_experiment(
        FAKE, seeds=3, out_root=tmp_path / "runs", record_dir=tmp_path / "results", progress=False
    )
    payload = json.loads((out / "results.json").read_text())
    assert payload["all_claims_held"] is False and payload["seeds"] == 3
    report = (out / "report.md").read_text()
    assert "0.5100 ± 0.0100" in report and "**did not hold**" in report
    assert (out / "metrics.png").is_file() and (out / "curve_acc_per_epoch.png").is_file()
    assert json.loads((tmp_path / "results" / "fake.json").read_text()) == payload
    # A second run never overwrites the first.
    out2 = run_experiment(FAKE, seeds=1, out_root=tmp_path / "runs", progress=False)
    assert out2 != out and (out / "results.json").is_file()
    with pytest.raises(ValueError, match="seeds"):
        run_experiment(FAKE, seeds=0, out_root=tmp_path)
