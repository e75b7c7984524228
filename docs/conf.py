"""Sphinx configuration of the inforeg documentation (``make docs``).

Family and technique pages are generated from the package and the method registry by
``_ext/inforeg_pages.py``; maths renders offline with a bundled MathJax (sphinx-mathjax-offline).
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))

import inforeg  # noqa: E402

project = "inforeg"
author = "the inforeg developers"
copyright = "2026, the inforeg developers"
release = version = inforeg.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",
    "myst_parser",
    "inforeg_pages",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]
templates_path: list[str] = []

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"undoc-members": False}
autosummary_generate = False
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True  # dataclass fields as :ivar:, not duplicate attribute entries
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]

html_theme = "furo"
html_title = f"inforeg {release}"
html_static_path: list[str] = []
