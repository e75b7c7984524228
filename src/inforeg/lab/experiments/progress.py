"""Progress within a seed: experiments report steps, the runner shows them.

An experiment calls :func:`step` (e.g. once per epoch) with how far it is; when no run is
watching, the call does nothing. ``train_classifier`` reports its epochs by itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

_listener: Callable[[int, int, str], None] | None = None


def step(done: int, total: int, what: str = "step") -> None:
    """Report ``done`` of ``total`` units (``what``: "epoch", "iteration", "grid point", ...)."""
    if _listener is not None:
        _listener(done, total, what)


@contextmanager
def listening(listener: Callable[[int, int, str], None]) -> Iterator[None]:
    """Send :func:`step` reports to ``listener`` inside the block."""
    global _listener
    previous, _listener = _listener, listener
    try:
        yield
    finally:
        _listener = previous
