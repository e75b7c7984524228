"""Every ``>>>`` example in the library's docstrings runs and prints what it claims, and every
public library module has one."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil

import pytest

import inforeg

# The lab wing runs experiments and benchmarks on import paths; its docstrings are not examples.
# ``inforeg.__main__`` runs the CLI (and exits) when imported.
SKIP_PREFIXES = ("inforeg.lab.", "inforeg.__main__")
# ... except the lab's statistics, whose examples are exact values.
INCLUDE = ("inforeg.lab.experiments.protocol",)

# Public library modules allowed to have no example yet, each with its reason. A listed module
# that gains one fails the test below, so the list cannot go stale.
NO_EXAMPLE: dict[str, str] = {}


# Adapter modules and the framework each imports (installed by its extra; CI installs them).
FRAMEWORK = {"inforeg.integrations.trl": "trl"}


def _modules() -> list[str]:
    names = ["inforeg"]
    for info in pkgutil.walk_packages(inforeg.__path__, prefix="inforeg."):
        if info.name.endswith(".__main__"):
            continue  # `python -m inforeg`: importing it runs the CLI
        if info.name in FRAMEWORK and importlib.util.find_spec(FRAMEWORK[info.name]) is None:
            continue  # its extra is not installed here
        if not info.name.startswith(SKIP_PREFIXES) or info.name in INCLUDE:
            names.append(info.name)
    return sorted(names)


def _public_library(name: str) -> bool:
    """Not the lab, not a ``_private`` module (package ``__init__`` modules are public)."""
    parts = name.split(".")[1:]
    return parts[:1] != ["lab"] and not any(part.startswith("_") for part in parts)


def _has_example(module: object) -> bool:
    return any(t.examples for t in doctest.DocTestFinder().find(module))


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"


def test_every_public_library_module_has_an_example():
    public = [n for n in _modules() if _public_library(n)]
    assert len(public) > 40 and "inforeg" in public and "inforeg.rl.grpo" in public
    without = {n for n in public if not _has_example(importlib.import_module(n))}
    missing = sorted(without - set(NO_EXAMPLE))
    assert not missing, f"public modules without a >>> example: {missing}"
    stale = sorted(set(NO_EXAMPLE) - without)
    assert not stale, f"these now have an example: remove them from NO_EXAMPLE: {stale}"
