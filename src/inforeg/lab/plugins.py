"""Find named objects (experiments, benchmarks) declared in the modules of a package, and check
the optional packages they need."""

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


def unknown_name(what: str, name: str, names: Iterable[str]) -> str:
    """The message for a ``name`` not among ``names``: the closest names, then all of them.

    The one "did you mean" of the lab (experiments, benchmarks, registry keys, the CLI).
    """
    names = sorted(names)
    return f"no {what} named {name!r}{suggest(name, names)}; available: {', '.join(names)}"


def suggest(name: str, candidates: Iterable[str]) -> str:
    """``" (did you mean a, b?)"`` for the closest candidates, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(candidates), n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def lookup(found: dict[str, Any], name: str, what: str) -> Any:
    """``found[name]``, or a KeyError naming the closest names (:func:`unknown_name`)."""
    if name not in found:
        raise KeyError(unknown_name(what, name, found))
    return found[name]


# Optional module -> the extra of inforeg that installs it.
EXTRAS = {
    "matplotlib": "plot",
    "rich": "cli",
    "sklearn": "examples",
    "scipy": "ref",
    "ot": "ref",
    "geomloss": "ref",
    "dcor": "ref",
    "hyppo": "ref",
}


def require(name: str, modules: Iterable[str]) -> None:
    """Raise ImportError with the exact ``pip install`` line when one of the optional ``modules``
    that ``name`` (an experiment, a benchmark) needs is not installed; nothing is imported."""
    import importlib.util

    missing = [m for m in dict.fromkeys(modules) if importlib.util.find_spec(m) is None]
    if missing:
        extras = sorted({EXTRAS.get(m, "all") for m in missing})
        raise ImportError(
            f"{name} needs {', '.join(missing)}: pip install 'inforeg[{','.join(extras)}]'"
        )
