"""Every ``>>>`` example in the library's docstrings runs and prints what it claims."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import inforeg

# The lab wing runs experiments and benchmarks on import paths; its docstrings are not examples.
SKIP_PREFIXES = ("inforeg.lab.",)
# ... except the lab's statistics, whose examples are exact values.
INCLUDE = ("inforeg.lab.experiments.protocol",)


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(inforeg.__path__, prefix="inforeg."):
        if not info.name.startswith(SKIP_PREFIXES) or info.name in INCLUDE:
            names.append(info.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest example(s) failed in {name}"
