"""``import inforeg`` loads no family; ``inforeg.robust``/``diffusion``/``data`` load on first use
and without SciPy or the other optional packages."""

from __future__ import annotations

from tests._helpers import python_stdout


def test_new_families_import_lazily_and_without_optional_packages():
    code = (
        "import sys, inforeg\n"
        "fams = ('robust', 'diffusion', 'data')\n"
        "before = [f for f in fams if 'inforeg.' + f in sys.modules]\n"
        "mods = [getattr(inforeg, f) for f in fams]\n"
        "after = [f for f in fams if 'inforeg.' + f in sys.modules]\n"
        "heavy = [m for m in ('scipy', 'sklearn', 'matplotlib', 'statsmodels') if m in sys.modules]\n"
        "print(before, after, heavy)\n"
    )
    out = python_stdout(code)
    assert out == "[] ['robust', 'diffusion', 'data'] []"
