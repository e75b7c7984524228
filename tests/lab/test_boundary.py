"""The library tier (``core`` and the technique families) never imports the lab wing."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

import inforeg
from tests._helpers import python_stdout

PACKAGE = Path(inforeg.__file__).parent
# ``python -m inforeg`` (``__main__.py``) is the command line, not imported by ``import inforeg``.
LIBRARY_FILES = sorted(
    p
    for p in PACKAGE.rglob("*.py")
    if "lab" not in p.relative_to(PACKAGE).parts and p.name != "__main__.py"
)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "inforeg":
                names.update(f"inforeg.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant):
                names.add(str(node.args[0].value))
    return names


def _is_lab(name: str) -> bool:
    return name == "inforeg.lab" or name.startswith("inforeg.lab.")


def test_scan_sees_library_files():
    assert len(LIBRARY_FILES) > 40
    assert any(p.name == "checks.py" for p in LIBRARY_FILES)


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_library_module_does_not_import_lab(path):
    offending = sorted(n for n in _imported_modules(path) if _is_lab(n))
    assert not offending, f"{path.relative_to(PACKAGE)} imports the lab wing: {offending}"


def test_scan_catches_a_lab_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from inforeg.lab.registry import records\nfrom inforeg import lab\n")
    assert {"inforeg.lab.registry", "inforeg.lab"} <= {n for n in _imported_modules(bad)}


def test_importing_every_family_loads_no_lab_module():
    code = (
        "import sys, inforeg\n"
        "for f in inforeg.FAMILIES + ('core',):\n"
        "    getattr(inforeg, f)\n"
        "bad = sorted(m for m in sys.modules if m == 'inforeg.lab' or m.startswith('inforeg.lab.'))\n"
        "print(','.join(bad))\n"
    )
    out = python_stdout(code)
    assert out == ""


@pytest.mark.parametrize("family", inforeg.FAMILIES)
def test_every_listed_family_imports(family):
    module = getattr(inforeg, family)
    assert module is importlib.import_module(f"inforeg.{family}")
    assert module.__doc__


def test_unlisted_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'not_a_family'"):
        inforeg.not_a_family  # noqa: B018


def test_core_is_foundations_only():
    core = PACKAGE / "core"
    lines = sum(len(p.read_text(encoding="utf-8").splitlines()) for p in core.rglob("*.py"))
    assert lines < 1000, f"core/ has {lines} lines"
    assert not (core / "records").exists() and not (core / "registry.py").exists()
