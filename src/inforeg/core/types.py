"""Shared type aliases.

Example:
    >>> from typing import get_args
    >>> get_args(Reduction)
    ('mean', 'sum', 'none')
"""

from __future__ import annotations

from typing import Literal

Reduction = Literal["mean", "sum", "none"]
