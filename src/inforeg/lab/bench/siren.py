"""SIREN's full term (inforeg.rl.SelectiveEntropyRegularizer) vs token_entropy, one thread:
the sort-free top-p kernel against the topk path it replaces, in one run."""

from __future__ import annotations

import ctypes
import gc
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

import inforeg.rl.siren as siren_mod
from inforeg.lab.bench.base import Benchmark, BenchResult
from inforeg.rl import SelectiveEntropyRegularizer, _cpu_entropy, token_entropy
from inforeg.rl.siren import _top_p_entropy_sorted, top_p_entropy

TOP_P, TOP_K = 0.8, 10000  # SIREN's defaults


def _topk_top_p_entropy(
    logits: torch.Tensor, top_p: float = TOP_P, top_k: int = TOP_K, temperature: float = 1.0
) -> torch.Tensor:
    """The previous top_p_entropy: ``torch.topk(k=top_k, sorted=True)`` then a cumulative sum."""
    return _top_p_entropy_sorted(logits, top_p, min(top_k, logits.shape[-1]), temperature)


def _topk_top_p_and_full_entropy(
    logits: torch.Tensor, top_p: float, top_k: int, temperature: float, want_full: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """SIREN's entropies before the kernel: the topk path, then (for the module's 'entropy'
    statistic) a separate token_entropy pass."""
    ent = _topk_top_p_entropy(logits, top_p, top_k, temperature)
    return ent, token_entropy(logits.detach(), temperature) if want_full else None


@contextmanager
def _topk_path() -> Iterator[None]:
    """SIREN with the topk path and a separate token_entropy (what the module did before the
    kernel): top_p_entropy and SelectiveEntropyRegularizer both go through
    ``_top_p_and_full_entropy``."""
    before = siren_mod._top_p_and_full_entropy
    siren_mod._top_p_and_full_entropy = _topk_top_p_and_full_entropy
    try:
        yield
    finally:
        siren_mod._top_p_and_full_entropy = before


def _time_all(fns: list[Callable[[], Any]], repeat: int) -> list[tuple[float, float]]:
    """Best wall and best process CPU seconds of each of ``fns``: one warm-up call of each,
    then ``repeat`` rounds calling them in turn (interleaved, so that a change of load or of the
    allocator's state affects all alike). On a shared machine the CPU time of a one-thread call
    is the steadier of the two."""
    for fn in fns:
        fn()
    best = [(float("inf"), float("inf"))] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            gc.collect()
            w, c = time.perf_counter(), time.process_time()
            fn()
            cpu, wall = time.process_time() - c, time.perf_counter() - w
            best[i] = (min(best[i][0], wall), min(best[i][1], cpu))
    return best


def _keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory (no mmap for large blocks, no trimming), so that
    a 65 MB gradient reuses pages instead of faulting in fresh ones; False where unavailable."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(
            libc.mallopt(m_trim_threshold, 1 << 34)
        )
    except (OSError, AttributeError):
        return False


def _fwd_bwd(loss: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], Any]:
    def run() -> torch.Tensor:
        leaf = x.detach().requires_grad_()
        loss(leaf).backward()
        assert leaf.grad is not None
        return leaf.grad

    return run


def _siren_loss(x: torch.Tensor) -> torch.Tensor:
    reg = SelectiveEntropyRegularizer(top_p=TOP_P, top_k=TOP_K)
    reg.set_anchor(1.0)  # a fixed anchor: a non-zero loss and gradient
    return reg(x)[0]


def _agreement(x: torch.Tensor) -> dict[str, Any]:
    """Kernel vs topk path on the same float32 logits, and both vs the sorted float64 path."""
    new = _fwd_bwd(lambda z: top_p_entropy(z, TOP_P, TOP_K).sum(), x)
    old = _fwd_bwd(lambda z: _topk_top_p_entropy(z).sum(), x)
    g_new, g_old = new(), old()
    x64 = x.double()
    ref = _top_p_entropy_sorted(x64, TOP_P, min(TOP_K, x.shape[-1]), 1.0)
    h_new = top_p_entropy(x, TOP_P, TOP_K).double()
    h_old = _topk_top_p_entropy(x).double()
    keep_new = (g_new != 0).sum(-1)
    keep_old = (g_old != 0).sum(-1)
    full = _cpu_entropy.top_p_forward(x.reshape(-1, x.shape[-1]), 1.0, TOP_P, TOP_K, True)[4]
    assert full is not None
    logp = torch.log_softmax(x64, -1)
    full_ref = -(logp.exp() * logp).sum(-1).reshape(-1)
    return {
        "max abs diff H kernel vs topk": float((h_new - h_old).abs().max()),
        "max abs err H kernel vs fp64": float((h_new - ref).abs().max()),
        "max abs err H topk vs fp64": float((h_old - ref).abs().max()),
        "max abs diff grad kernel vs topk": float((g_new - g_old).abs().max()),
        "positions with a different kept-set size": int((keep_new != keep_old).sum()),
        "max abs err full entropy (kernel's 2nd output) vs fp64": float(
            (full.double() - full_ref).abs().max()
        ),
    }


def _with_topk_path(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with _topk_path():
            return fn()

    return run


def _runs(x: torch.Tensor) -> list[tuple[str, Callable[[], Any]]]:
    flat = x.reshape(-1, x.shape[-1])
    return [
        ("token_entropy fwd+bwd (the unit)", _fwd_bwd(lambda z: token_entropy(z).sum(), x)),
        ("SIREN full term, sort-free kernel", _fwd_bwd(_siren_loss, x)),
        ("SIREN full term, topk path (before)", _with_topk_path(_fwd_bwd(_siren_loss, x))),
        (
            "top_p_entropy fwd+bwd, sort-free kernel",
            _fwd_bwd(lambda z: top_p_entropy(z, TOP_P, TOP_K).sum(), x),
        ),
        (
            "top_p_entropy fwd+bwd, topk path (before)",
            _fwd_bwd(lambda z: _topk_top_p_entropy(z).sum(), x),
        ),
        ("token_entropy forward only", lambda: token_entropy(x)),
        ("top_p_entropy forward only, sort-free kernel", lambda: top_p_entropy(x, TOP_P, TOP_K)),
        (
            "kernel forward with the full entropy (SIREN's call)",
            lambda: _cpu_entropy.top_p_forward(flat, 1.0, TOP_P, TOP_K, True),
        ),
    ]


def _time_rows(
    runs: list[tuple[str, Callable[[], Any]]], repeat: int, table: str
) -> list[dict[str, Any]]:
    times = _time_all([fn for _, fn in runs], repeat)
    base_wall, base_cpu = times[0]  # token_entropy
    return [
        {
            "table": table,
            "case": name,
            "CPU s": cpu,
            "x token_entropy (CPU)": cpu / base_cpu,
            "wall s": wall,
            "x token_entropy (wall)": wall / base_wall,
        }
        for (name, _), (wall, cpu) in zip(runs, times, strict=True)
    ]


def run(quick: bool) -> BenchResult:
    shape = (2, 64, 32000) if quick else (4, 128, 32000)
    repeat = 2 if quick else 8
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    try:
        gen = torch.Generator().manual_seed(0)
        inputs = [(scale, torch.randn(*shape, generator=gen) * scale) for scale in (2.0, 4.0)]
        for scale, x in inputs:
            case = f"logits {shape} ~ N(0, {scale:g}^2), float32"
            rows.append({"table": "agreement (float32 logits)", "case": case, **_agreement(x)})
        for regime in ("default allocator", "allocator keeps freed memory"):
            if regime != "default allocator" and not _keep_freed_memory():
                break  # (set last: it changes the process's allocator for good)
            for scale, x in inputs:
                case = f"logits {shape} ~ N(0, {scale:g}^2), float32"
                rows += _time_rows(_runs(x), repeat, f"time, one thread, {case}, {regime}")
    finally:
        torch.set_num_threads(threads)
    notes = (
        "One intra-op thread. 'SIREN full term' = SelectiveEntropyRegularizer(top_p=0.8, "
        "top_k=10000) forward (top-p entropies, per-response quantile mask, aggregate, anchored "
        "penalty, and the detached full entropy for its 'entropy' statistic) + backward; the "
        "unit is token_entropy forward + backward on the same logits. Each call makes a fresh "
        "leaf, so every row includes allocating the (N, T, V) gradient (65 MB): with the "
        "default allocator (glibc malloc) a block that large is a fresh mapping each call, and "
        "its page faults can cost more than token_entropy's arithmetic on a loaded machine; the "
        "tables 'allocator keeps freed memory' (mallopt: no mmap, no trimming, set after the "
        "default tables) measure the arithmetic alone. The functions are called in turn, "
        "repeat after repeat (best of the repeats). 'CPU s' is the best process CPU time of the "
        "repeats (the machine is shared by several sessions: wall times include waiting for a "
        "core, CPU times do not); 'wall s' the best wall time. The topk path is the previous "
        "implementation (torch.topk(k=10000, sorted=True), a cumulative sum, a log-softmax "
        "over the kept values; in the full term, plus a separate token_entropy forward for "
        "the statistic), run in the same process. The kernel reads each row twice: "
        "token_entropy's forward pass (maximum, sum of exponentials and, for SIREN, the full "
        "entropy: the statistic costs no extra pass), then the values above a bound the "
        "nucleus cannot lie below (the logit with p = 0.9 (1 - top_p) / V) are compacted, "
        "without a branch, and only their exponentials computed. The nucleus is found by "
        "bisection over those (value midpoints; a vectorised pass per step: count and mass "
        "above the pivot), compacted again whenever at most half of them remain between the "
        "bounds; the compactions sum the mass and the entropy terms of what they drop above "
        "the interval, so the kept set's entropy needs no further pass over the row. The <= 32 "
        "values left between the bounds are sorted and scanned as the topk path does. "
        "'positions with a different kept-set size' counts rows where the two paths keep a "
        "different number of tokens (crossings within float32 rounding of top_p; the kernel "
        "sums the masses in double). Where the time goes: the top-p backward is "
        "token_entropy's (one read, one write per row); the row 'kernel forward with the full "
        "entropy' minus 'token_entropy forward only' is the cost of the second read, the "
        "exponentials of the candidates and the search; the full term's remaining "
        "difference to 'top_p_entropy fwd+bwd' is the small tensor work of the module "
        "(quantile mask, aggregates, penalty, statistics)."
    )
    return BenchResult(rows, notes)


BENCHMARK = Benchmark(
    name="siren",
    peer="inforeg's previous topk-based top-p entropy; token_entropy as the unit",
    description="SIREN's full regulariser term, forward + backward on (4, 128, 32000) float32 "
    "logits with one thread: the sort-free top-p kernel vs the topk path, as a multiple of "
    "token_entropy forward + backward.",
    run=run,
)
