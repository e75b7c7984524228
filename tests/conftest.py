"""Shared pytest options and fixtures (after Kornia's root ``conftest.py``).

``--device`` and ``--dtype`` choose what the ``device`` and ``dtype`` fixtures run over, so a test
written once with those fixtures covers CPU and CUDA, float64 to bfloat16::

    pytest --device all --dtype float32,float64,bfloat16

Defaults: ``cpu`` and ``--dtype float32,float64`` (``tests._helpers.device_given`` tells a test
whether ``--device`` was given). ``--device all`` means every device available here (CPU, and
CUDA when present). A requested device that is not available is skipped, not failed, so the same
command runs on CPU-only CI. A test that parametrizes ``device`` or ``dtype`` itself
(``@pytest.mark.parametrize("dtype", [...])``) keeps its own list.
"""

from __future__ import annotations

import collections
import sys
from typing import Any

import pytest
import torch

DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--device",
        default=None,
        help="comma-separated devices for the `device` fixture (cpu, cuda, all); default cpu",
    )
    parser.addoption(
        "--dtype",
        default="float32,float64",
        help=f"comma-separated dtypes for the `dtype` fixture ({', '.join(DTYPES)}, all)",
    )


def _devices(option: str | None) -> list[str]:
    if option is None:
        return ["cpu"]
    if option == "all":
        return ["cpu", "cuda"]
    return [d.strip() for d in option.split(",") if d.strip()]


def _dtypes(option: str) -> list[str]:
    names = list(DTYPES) if option == "all" else [d.strip() for d in option.split(",") if d.strip()]
    unknown = [n for n in names if n not in DTYPES]
    if unknown:
        raise pytest.UsageError(f"--dtype: unknown {unknown}; expected some of {list(DTYPES)}")
    return names


def _parametrized_by_test(metafunc: pytest.Metafunc, name: str) -> bool:
    """True when the test parametrizes ``name`` itself (its own list wins over the option)."""
    for marker in metafunc.definition.iter_markers("parametrize"):
        names = marker.args[0] if marker.args else marker.kwargs.get("argnames", ())
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",")]
        if name in names:
            return True
    return False


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    options = {"device": ("--device", _devices), "dtype": ("--dtype", _dtypes)}
    for name, (option, parse) in options.items():
        if name in metafunc.fixturenames and not _parametrized_by_test(metafunc, name):
            metafunc.parametrize(name, parse(metafunc.config.getoption(option)), indirect=True)


@pytest.fixture
def device(request: pytest.FixtureRequest) -> torch.device:
    """A device from ``--device``; skipped when it is not available on this machine."""
    name = request.param
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip(f"device {name!r} not available")
    return torch.device(name)


@pytest.fixture
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """A floating dtype from ``--dtype``."""
    return DTYPES[request.param]


# The bad-input harness's summary line (tests/test_bad_input.py, issue 18), written in the
# terminal summary so that it shows under -q (a print inside a passing test is captured).
# Under xdist every worker sends its counts to the controller (workeroutput).
_WORKER_STATS = pytest.StashKey[list[dict[str, Any]]]()


def _local_harness_stats() -> dict[str, Any] | None:
    """The harness module's counts in this process (whatever name the import mode gave it)."""
    for name, module in list(sys.modules.items()):
        if name.rpartition(".")[2] == "test_bad_input" and hasattr(module, "harness_stats"):
            return module.harness_stats()  # type: ignore[no-any-return]
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_WORKER_STATS] = []


def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    stats = _local_harness_stats()
    if workeroutput is not None and stats is not None:
        workeroutput["bad_input_harness"] = stats


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    stats = getattr(node, "workeroutput", {}).get("bad_input_harness")
    if stats is not None:
        node.config.stash[_WORKER_STATS].append(stats)


def harness_summary(parts: list[dict[str, Any]]) -> str:
    """One line from the harness counts of one or more processes."""
    callables = set().union(*(p["callables"] for p in parts))
    containers = set().union(*(p["containers"] for p in parts))
    kinds: collections.Counter[str] = collections.Counter()
    for p in parts:
        kinds.update(p["kinds"])
    by_kind = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
    return (
        f"bad-input harness: {len(callables)} of {parts[0]['public']} public callables "
        f"({len(containers)} result containers through their producers), "
        f"{sum(kinds.values())} cases: {by_kind}; {parts[0]['known_failures']} known failures"
    )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    parts = list(config.stash.get(_WORKER_STATS, []))
    local = _local_harness_stats()
    if local is not None:
        parts.append(local)
    if parts:
        terminalreporter.write_line(harness_summary(parts))
