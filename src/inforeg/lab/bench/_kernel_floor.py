"""The one-pass floor that bench mmd and bench hsic time their kernel sums against."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from inforeg.core.threads import intra_op_threads
from inforeg.lab.bench.base import Timing, measure_once

#: Gaussian bandwidth of the floor rows.
SIGMA = 4.0
#: torch threads for the floor rows: on the shared, loaded 2-core machine two OpenMP threads
#: stall on each other's preemption, which penalises the many small ops of a blocked loop.
FLOOR_THREADS = 1
#: Rows per block, for inforeg and the floor alike.
CHUNK = 1024

Pair = tuple[torch.Tensor, torch.Tensor]


def one_pass(groups: Sequence[Sequence[Pair]], chunk: int = CHUNK) -> torch.Tensor:
    """For each group of Gram blocks ``exp(a @ b.T)``, ``chunk`` rows at a time: each block by
    a GEMM and exp in place, the entrywise product of the group's blocks, its sum (no
    symmetry, no distances: the least work any kernel sum of these blocks can do)."""
    total = groups[0][0][0].new_zeros(())
    for group in groups:
        for s in range(0, group[0][0].shape[0], chunk):
            block = (group[0][0][s : s + chunk] @ group[0][1].T).exp_()
            for a, b in group[1:]:
                block.mul_((a[s : s + chunk] @ b.T).exp_())
            total = total + block.sum()
    return total


def beside_floor(
    floor: Callable[[], torch.Tensor], *fns: Callable[[], torch.Tensor], rounds: int = 1
) -> tuple[Timing, list[Timing]]:
    """Each of ``fns`` timed once per round, between timings of ``floor`` (before the first
    round and after each), on ``FLOOR_THREADS`` threads; returns the fastest floor and the
    fastest timing of each of ``fns`` (on a loaded machine one timing can be 2x off)."""
    with intra_op_threads(FLOOR_THREADS):
        floors = [measure_once(floor)]
        runs: list[list[Timing]] = [[] for _ in fns]
        for _ in range(rounds):
            for fn, times in zip(fns, runs, strict=True):
                times.append(measure_once(fn))
            floors.append(measure_once(floor))
    fastest = [min(times, key=lambda t: t[0]) for times in runs]
    return min(floors, key=lambda t: t[0]), fastest
