"""The method registry: one record per published technique.

Records live in :mod:`inforeg.lab.records`, one module per family, so that work on one family
touches one file. A record's ``status`` says how far the technique has come:

- ``planned``: not built yet.
- ``implemented``: the public API exists and has tests.
- ``verified``: in addition, a test compares it with an independent reference (closed form,
  brute force or a peer library); the record names that test file in ``reference_tests``.
- ``reproduced``: in addition, the experiment's recorded result in ``results/<experiment>.json``
  shows the paper's direction.

``tests/lab/test_registry.py`` enforces these promises.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Literal, get_args

from inforeg import FAMILIES  # the library lists its families; records name one of them
from inforeg.lab.plugins import lookup

Status = Literal["planned", "implemented", "verified", "reproduced"]

STATUSES: tuple[Status, ...] = get_args(Status)


@dataclass(frozen=True)
class Record:
    """One technique: the paper, where it lives in inforeg, and how far it has come."""

    key: str
    title: str
    authors: str
    year: int
    venue: str
    family: str
    spec: str
    arxiv: str = ""
    url: str = ""
    code: str = ""
    api: tuple[str, ...] = ()
    experiment: str = ""
    # The peer benchmarks of this technique (``inforeg bench NAME``).
    benchmarks: tuple[str, ...] = ()
    status: Status = "planned"
    reference_tests: tuple[str, ...] = ()
    notes: str = ""
    extra_families: tuple[str, ...] = field(default=())

    @property
    def short_api(self) -> list[str]:
        """The public names without their module path."""
        return [name.rpartition(".")[2] for name in self.api]

    @property
    def family_module(self) -> str:
        """Where the names live, e.g. ``inforeg.losses`` (the module of the first API name)."""
        return self.api[0].rpartition(".")[0] if self.api else f"inforeg.{self.family}"

    @property
    def link(self) -> str:
        """arXiv abstract URL when there is an arXiv id, else the URL."""
        return f"https://arxiv.org/abs/{self.arxiv}" if self.arxiv else self.url

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"{self.key}: status must be one of {STATUSES}, got {self.status!r}")
        if self.family not in FAMILIES:
            raise ValueError(f"{self.key}: family must be one of {FAMILIES}, got {self.family!r}")
        if self.status != "planned" and not self.api:
            raise ValueError(f"{self.key}: a {self.status} record must name its public API")


def _load() -> dict[str, Record]:
    from inforeg.lab import records

    out: dict[str, Record] = {}
    for info in sorted(pkgutil.iter_modules(records.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{records.__name__}.{info.name}")
        for rec in getattr(module, "RECORDS", ()):
            if rec.key in out:
                raise ValueError(f"duplicate registry key {rec.key!r} in {module.__name__}")
            out[rec.key] = rec
    return out


_REGISTRY: dict[str, Record] | None = None


def records(family: str | None = None) -> list[Record]:
    """All records (sorted by family, then key), optionally of one family."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _load()
    if family is not None and family not in FAMILIES:
        raise ValueError(f"family: expected one of {FAMILIES}, got {family!r}")
    chosen = [
        r
        for r in _REGISTRY.values()
        if family is None or r.family == family or family in r.extra_families
    ]
    return sorted(chosen, key=lambda r: (FAMILIES.index(r.family), r.key))


def get(key: str) -> Record:
    """The record of ``key``; KeyError names the closest keys."""
    found: Record = lookup({r.key: r for r in records()}, key, "technique")
    return found


def markdown_table(family: str | None = None) -> str:
    """The registry as a Markdown table (the README's table of techniques)."""
    lines = [
        "| key | paper | year | family | Python names | status |",
        "|---|---|---|---|---|---|",
    ]
    for r in records(family):
        paper = f"[{r.title}]({r.link})" if r.link else r.title
        short = ", ".join(f"`{n}`" for n in r.short_api)
        names = f"`{r.family_module}`: {short}" if short else "–"
        lines.append(f"| `{r.key}` | {paper} | {r.year} | {r.family} | {names} | {r.status} |")
    return "\n".join(lines) + "\n"
