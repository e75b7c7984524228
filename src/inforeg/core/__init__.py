"""Shared foundations: validation, reductions, pairwise kernels, distributed gather, registry."""

from inforeg.core import checks, distributed, pairwise, reduce, registry
from inforeg.core.checks import get_checks, set_checks

__all__ = ["checks", "distributed", "get_checks", "pairwise", "reduce", "registry", "set_checks"]
