"""The README's quick start runs as written: one block per family, each executed here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import inforeg

README = Path(__file__).resolve().parents[1] / "README.md"
# A quick-start block is a python block whose first line names its family.
BLOCK = re.compile(r"```python\n# inforeg\.(\w+): (.*?)```", re.S)


def _blocks() -> dict[str, str]:
    return {fam: f"# {rest}" for fam, rest in BLOCK.findall(README.read_text())}


def test_every_family_has_a_quick_start():
    assert sorted(_blocks()) == sorted(inforeg.FAMILIES)


@pytest.mark.parametrize("family", sorted(inforeg.FAMILIES))
def test_quick_start_runs(family: str) -> None:
    code = _blocks()[family]
    assert len(code.splitlines()) <= 8, f"{family}: keep the quick start short"
    exec(compile(code, f"README quick start ({family})", "exec"), {})
