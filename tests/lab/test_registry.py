"""The registry keeps its promises: 41 techniques, honest statuses, README in sync."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

from inforeg.lab import registry
from inforeg.lab.readme import render

ROOT = Path(__file__).resolve().parents[2]
SPEC_TABLE = ROOT.parent / "shared" / "specs" / "techniques.md"


def test_registry_has_all_41_techniques():
    recs = registry.records()
    assert len(recs) == 41
    assert len({r.key for r in recs}) == 41


@pytest.mark.skipif(not SPEC_TABLE.exists(), reason="shared specs not beside the checkout")
def test_registry_keys_match_the_spec_table():
    keys = set(re.findall(r"^\| ([a-z0-9-]+) \|", SPEC_TABLE.read_text(), flags=re.M)) - {"key"}
    assert keys == {r.key for r in registry.records()}


@pytest.mark.parametrize("rec", registry.records(), ids=lambda r: r.key)
def test_record_is_complete_and_honest(rec):
    assert rec.title and rec.year >= 1990 and rec.venue and rec.spec
    if rec.key != "high-dim-thesis":  # the thesis has no arXiv id (see its notes)
        assert rec.link, f"{rec.key}: needs an arXiv id or URL"
    if rec.status == "planned":
        return
    for name in rec.api:  # every public name resolves
        module, _, attr = name.rpartition(".")
        assert hasattr(importlib.import_module(module), attr), name
    if rec.status in ("verified", "reproduced"):
        assert rec.reference_tests, f"{rec.key}: verified needs a reference test"
        for path in rec.reference_tests:
            assert (ROOT / path).is_file(), path
    if rec.status == "reproduced":
        assert rec.experiment, f"{rec.key}: reproduced needs an experiment"
        result = ROOT / "results" / f"{rec.experiment}.json"
        assert result.is_file(), f"{rec.key}: no recorded result {result.name}"
        problems = reproduction_problems(json.loads(result.read_text()))
        assert not problems, f"{rec.key}: {problems}"


def reproduction_problems(payload: dict) -> list[str]:
    """Why a recorded result cannot back the status ``reproduced`` (protocol 2, §5)."""
    problems = []
    if payload.get("protocol") != 2:
        problems.append("not recorded under protocol 2")
    if payload.get("quick", True):
        problems.append("a quick run")
    if len(payload.get("seeds", [])) < 10:
        problems.append("fewer than 10 seeds")
    held = [
        c for c in payload.get("claims", []) if c.get("kind") == "paper" and c["verdict"] == "held"
    ]
    if not held:
        problems.append("no paper claim held")
    return problems


def _payload(**changes):
    claim = {"kind": "paper", "verdict": "held"}
    payload = {"protocol": 2, "quick": False, "seeds": list(range(10)), "claims": [claim]}
    payload.update(changes)
    return payload


def test_reproduced_needs_a_held_paper_claim_under_protocol_2():
    assert reproduction_problems(_payload()) == []
    sanity_only = [
        {"kind": "sanity", "verdict": "held"},
        {"kind": "paper", "verdict": "inconclusive"},
    ]
    assert reproduction_problems(_payload(claims=sanity_only)) == ["no paper claim held"]
    assert "not recorded under protocol 2" in reproduction_problems(_payload(protocol=1))
    assert "fewer than 10 seeds" in reproduction_problems(_payload(seeds=[0, 1]))
    assert "a quick run" in reproduction_problems(_payload(quick=True))
    not_testable = [{"kind": "paper", "verdict": "not testable here"}]
    assert reproduction_problems(_payload(claims=not_testable)) == ["no paper claim held"]


def test_experiments_name_registered_techniques():
    from inforeg.lab.experiments import registry as experiments

    for name, exp in experiments().items():
        assert exp.techniques, f"{name}: no registry record names it"
    for rec in registry.records():
        if rec.experiment:
            assert rec.experiment in experiments(), rec.key


def test_records_name_existing_benchmarks():
    from inforeg.lab.bench import registry as benchmarks

    named = [(rec.key, b) for rec in registry.records() for b in rec.benchmarks]
    assert named, "no record names a benchmark"
    for key, bench in named:
        assert bench in benchmarks(), f"{key}: no benchmark named {bench!r}"


def test_readme_table_is_generated_from_the_registry():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert render(readme) == readme, "README table is stale: run `make readme-table`"


def test_get_and_family_filter():
    assert registry.get("pskd").family == "losses"
    assert all(r.family == "ot" or "ot" in r.extra_families for r in registry.records("ot"))
    with pytest.raises(KeyError, match="pskd"):
        registry.get("pskdd")
    with pytest.raises(ValueError, match="family"):
        registry.records("nonsense")
