"""Shared foundations: validation, dtype policy, reductions, pairwise kernels, distributed gather."""

from inforeg.core import checks, distributed, pairwise, reduce
from inforeg.core.checks import get_checks, set_checks

__all__ = ["checks", "distributed", "get_checks", "pairwise", "reduce", "set_checks"]
