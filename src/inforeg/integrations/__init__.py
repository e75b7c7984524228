"""Optional adapters to training frameworks, each behind its own extra.

- :mod:`~inforeg.integrations.trl`: :class:`~inforeg.integrations.trl.InforegGRPOTrainer`, TRL's
  ``GRPOTrainer`` with an inforeg entropy control added to its loss (``pip install
  'inforeg[trl]'``).

Nothing here is imported by ``import inforeg``; importing a submodule without its framework
raises an ``ImportError`` that names the extra. The names of the adapters:

    >>> import inforeg.integrations
    >>> inforeg.integrations.ADAPTERS
    {'trl': 'inforeg[trl]'}
"""

from __future__ import annotations

#: Adapter module -> the ``pip install`` extra that brings its framework.
ADAPTERS: dict[str, str] = {"trl": "inforeg[trl]"}

__all__ = ["ADAPTERS"]
