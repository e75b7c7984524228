"""Find named objects (experiments, benchmarks) declared in the modules of a package."""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Iterable
from typing import Any


def discover(package: str, attrs: Iterable[str], skip: Iterable[str] = ()) -> dict[str, Any]:
    """Import every module of ``package`` (but ``skip`` and ``_private`` ones) and collect the
    objects it binds to any of ``attrs`` (a single object, or a list/tuple of them), by ``.name``.
    """
    pkg = importlib.import_module(package)
    skipped = set(skip)
    found: dict[str, Any] = {}
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda i: i.name):
        if info.name in skipped or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        for attr in attrs:
            value = getattr(module, attr, None)
            items = value if isinstance(value, (list, tuple)) else [] if value is None else [value]
            for item in items:
                if item.name in found:
                    raise ValueError(f"duplicate name {item.name!r} in {module.__name__}")
                found[item.name] = item
    return found


def suggest(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean a, b?"`` for the closest candidates, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(candidates), n=3)
    return f"; did you mean {', '.join(close)}?" if close else ""


def lookup(found: dict[str, Any], name: str, what: str) -> Any:
    """``found[name]``, or a KeyError naming the closest names."""
    if name not in found:
        hint = suggest(name, found)
        raise KeyError(f"no {what} {name!r}{hint}; available: {', '.join(sorted(found))}")
    return found[name]
