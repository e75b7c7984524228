"""The one "did you mean" of the lab: registry keys, experiments, benchmarks and the CLI share it."""

from __future__ import annotations

import pytest

from inforeg.lab import bench, experiments, registry
from inforeg.lab.cli import main
from inforeg.lab.plugins import lookup, unknown_name


def test_unknown_name_lists_close_then_all_names():
    msg = unknown_name("experiment", "dse-digit", ["dse-digits", "pskd-digits", "vne-koopman"])
    assert msg.startswith("no experiment named 'dse-digit' (did you mean dse-digits")
    assert msg.endswith("available: dse-digits, pskd-digits, vne-koopman")
    assert "did you mean" not in unknown_name("benchmark", "zzz", ["dcor", "hsic"])
    assert lookup({"a": 1}, "a", "thing") == 1


@pytest.mark.parametrize(
    ("get", "typo", "close"),
    [
        (registry.get, "pksd", "pskd"),
        (experiments.get, "dse-digit", "dse-digits"),
        (bench.get, "hsci", "hsic"),
    ],
)
def test_every_lookup_suggests_the_close_name(get, typo, close):
    with pytest.raises(KeyError, match=f"did you mean {close}"):
        get(typo)


@pytest.mark.parametrize(
    ("cmd", "typo", "close"), [("run", "dse-digit", "dse-digits"), ("bench", "hsci", "hsic")]
)
def test_cli_suggests_the_close_name(capsys, cmd, typo, close):
    assert main([cmd, typo]) == 2
    err = capsys.readouterr().err
    assert f"did you mean {close}" in err and err.count("\n") == 1
