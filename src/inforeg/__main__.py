"""``python -m inforeg``: the ``inforeg`` command (the lab wing's CLI)."""

import sys

from inforeg.lab.cli import main

sys.exit(main())
