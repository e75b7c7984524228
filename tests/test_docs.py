"""The documentation site has a page for every public name and every registry record."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

import inforeg
from inforeg.lab.registry import records

DOCS = Path(__file__).resolve().parents[1] / "docs"
sys.path.insert(0, str(DOCS / "_ext"))
inforeg_pages = importlib.import_module("inforeg_pages")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated")
    inforeg_pages.generate(out)
    return out


@pytest.mark.parametrize("family", inforeg.FAMILIES)
def test_every_public_name_is_documented(generated, family):
    page = (generated / "families" / f"{family}.rst").read_text(encoding="utf-8")
    names = importlib.import_module(f"inforeg.{family}").__all__
    assert names, family
    for name in names:
        assert f":: {name}\n" in page, f"inforeg.{family}.{name} has no entry"


def test_every_record_has_a_technique_page(generated):
    index = (generated / "techniques.rst").read_text(encoding="utf-8")
    for rec in records():
        page = generated / "techniques" / f"{rec.key}.rst"
        assert page.is_file(), rec.key
        assert f"techniques/{rec.key}\n" in index
        text = page.read_text(encoding="utf-8")
        assert rec.title in text
        for name in rec.api:
            assert f":: {name}\n" in text, name


def test_verdicts_and_plot_come_from_the_recorded_result(generated):
    with_result = [r for r in records() if r.experiment]
    assert with_result
    text = (generated / "techniques" / f"{with_result[0].key}.rst").read_text(encoding="utf-8")
    assert "Latest reproduction" in text and "95% CI" in text


BUILT = DOCS / "_build" / "html"


@pytest.mark.skipif(not BUILT.is_dir(), reason="site not built (make docs builds it first)")
def test_built_site_renders_maths_offline():
    page = (BUILT / "_generated" / "families" / "ot.html").read_text(encoding="utf-8")
    assert "math notranslate" in page  # the docstrings' .. math:: blocks
    assert "cdn.jsdelivr" not in page and "mathjax" in page.lower()
    scripts = [line for line in page.splitlines() if "mathjax" in line.lower() and "src=" in line]
    assert scripts and all("http" not in s for s in scripts), scripts
