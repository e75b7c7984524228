"""GPU timings for the training-loop paths (run by hand on a CUDA machine; not part of CI).

    PYTHONPATH=src python benchmarks/gpu_check.py OUT.md

Token entropy / selective log-softmax at (4096, 151936) against the naive form and TRL's
128-row chunking (re-implemented in ``inforeg.lab.bench.references``), and the streamed
pairwise statistics (MMD, HSIC, distance covariance) at n = 100 000, d = 64. Each time is the
median of CUDA-event timings after a warm-up; memory is the peak allocated by torch beyond the
inputs during one call.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch

from inforeg import dependence as dep
from inforeg import rl
from inforeg.lab.bench.references import naive_entropy, naive_logp, trl_entropy, trl_logp


def _time(fn: Callable[[], Any], repeat: int = 5) -> tuple[float, float, Any]:
    out = fn()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(repeat):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop) / 1e3)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    return statistics.median(times), peak, out


def _chunked(fn: Callable[[], Any]) -> Callable[[], Any]:
    """Run ``fn`` on inforeg's chunked PyTorch path (Triton kernels disabled)."""

    def run() -> Any:
        os.environ["INFOREG_DISABLE_TRITON"] = "1"
        try:
            return fn()
        finally:
            os.environ.pop("INFOREG_DISABLE_TRITON")

    return run


def _fwd_bwd(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], Any]:
    def run() -> torch.Tensor:
        xx = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(fn(xx).float().sum(), xx)
        return g

    return run


def token_rows(lines: list[str]) -> None:
    rows, vocab = 4096, 151936
    gen = torch.Generator(device="cuda").manual_seed(0)
    lines += [
        f"## Token entropy / selective log-softmax, logits ({rows}, {vocab})",
        "",
        "| op | dtype | impl | s (median of 5) | extra peak MiB | extra / logits | "
        "max rel. diff vs inforeg |",
        "|---|---|---|---|---|---|---|",
    ]
    for dtype in (torch.float32, torch.bfloat16):
        x = (torch.randn(rows, vocab, device="cuda", generator=gen) * 2.0).to(dtype)
        tok = torch.randint(0, vocab, (rows,), device="cuda", generator=gen)
        _token_dtype(lines, x, tok)
        del x
        torch.cuda.empty_cache()


def _token_dtype(lines: list[str], x: torch.Tensor, tok: torch.Tensor) -> None:
    dtype = x.dtype
    size = x.numel() * x.element_size() / 2**20
    cases: list[tuple[str, str, Callable[[], Any]]] = [
        ("entropy fwd", "inforeg", lambda: rl.token_entropy(x)),
        ("entropy fwd", "inforeg, PyTorch chunks", _chunked(lambda: rl.token_entropy(x))),
        ("entropy fwd", "naive", lambda: naive_entropy(x)),
        ("entropy fwd", "TRL-style (128 rows)", lambda: trl_entropy(x)),
        ("entropy fwd+bwd", "inforeg", _fwd_bwd(rl.token_entropy, x)),
        ("entropy fwd+bwd", "inforeg, PyTorch chunks", _chunked(_fwd_bwd(rl.token_entropy, x))),
        ("entropy fwd+bwd", "naive", _fwd_bwd(naive_entropy, x)),
        ("entropy fwd+bwd", "TRL-style (128 rows)", _fwd_bwd(trl_entropy, x)),
        ("selective fwd", "inforeg", lambda: rl.selective_log_softmax(x, tok)),
        (
            "selective fwd",
            "inforeg, PyTorch chunks",
            _chunked(lambda: rl.selective_log_softmax(x, tok)),
        ),
        ("selective fwd", "naive", lambda: naive_logp(x, tok)),
        ("selective fwd", "TRL-style (per row)", lambda: trl_logp(x, tok)),
        (
            "selective fwd+bwd",
            "inforeg",
            _fwd_bwd(lambda z: rl.selective_log_softmax(z, tok), x),
        ),
        ("selective fwd+bwd", "naive", _fwd_bwd(lambda z: naive_logp(z, tok), x)),
    ]
    ref: dict[str, torch.Tensor] = {}
    for op, impl, fn in cases:
        t, peak, out = _time(fn)
        out = out.double()
        if impl == "inforeg":
            ref[op] = out
        diff = float(((out - ref[op]).abs() / ref[op].abs().clamp_min(1e-6)).max())
        lines.append(
            f"| {op} | {str(dtype)[6:]} | {impl} | {t:.4g} | {peak:.4g} | "
            f"{peak / size:.3g} | {diff:.2e} |"
        )
        print(lines[-1], flush=True)


def pairwise_rows(lines: list[str]) -> None:
    n, d = 100_000, 64
    gen = torch.Generator(device="cuda").manual_seed(1)
    x = torch.randn(n, d, device="cuda", generator=gen)
    y = x[:, :d] * 0.5 + torch.randn(n, d, device="cuda", generator=gen)
    lines += [
        "",
        f"## Streamed pairwise statistics, n = {n}, d = {d}, float32, chunk 4096 rows",
        "",
        "| statistic | s (median of 3) | extra peak MiB | value |",
        "|---|---|---|---|",
    ]
    cases: list[tuple[str, Callable[[], Any]]] = [
        ("MMD^2 unbiased (gaussian, bw 8)", lambda: dep.mmd(x, y, bandwidth=8.0, chunk_size=4096)),
        (
            "HSIC biased (gaussian, bw 8)",
            lambda: dep.hsic(x, y, bandwidth_x=8.0, bandwidth_y=8.0, chunk_size=4096),
        ),
        (
            "dCov^2 V-statistic",
            lambda: dep.distance_covariance_sqr(x, y, chunk_size=4096),
        ),
    ]
    for name, fn in cases:
        t, peak, out = _time(fn, repeat=3)
        lines.append(f"| {name} | {t:.4g} | {peak:.4g} | {float(out):.6g} |")
        print(lines[-1], flush=True)


def main() -> None:
    lines = [
        "# GPU check: training-loop paths on CUDA",
        "",
        f"Device: {torch.cuda.get_device_name()}, torch {torch.__version__}. CUDA-event timings.",
        "",
    ]
    token_rows(lines)
    pairwise_rows(lines)
    text = "\n".join(lines) + "\n"
    if len(sys.argv) > 1:
        with open(sys.argv[1], "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
