"""Helpers shared by the ``losses`` family's experiments (not an experiment itself)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def single_threaded(fn: Callable[..., T]) -> Callable[..., T]:
    """Run ``fn`` with one intra-op torch thread, restoring the previous setting afterwards.

    The experiments train tiny models whose steps take well under a millisecond; on a shared
    2-core machine torch's default intra-op parallelism makes each step tens of times slower.
    """

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> T:
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(previous)

    return wrapper
