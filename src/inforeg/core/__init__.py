"""Shared foundations: validation, dtype policy, reductions, pairwise kernels, distributed gather.

Example:
    >>> import torch
    >>> from inforeg import core
    >>> core.get_checks()
    'shapes'
    >>> v = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
    >>> m = torch.tensor([[1, 1, 1], [1, 0, 0]])
    >>> float(core.reduce.masked_aggregate(v, m, "token-mean"))  # (6 + 4) / 4 tokens
    2.5
"""

from inforeg.core import checks, distributed, pairwise, reduce
from inforeg.core.checks import get_checks, set_checks

__all__ = ["checks", "distributed", "get_checks", "pairwise", "reduce", "set_checks"]
