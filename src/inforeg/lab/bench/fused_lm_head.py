"""inforeg.rl.fused_linear_logprobs_entropy vs "matmul, then the fused kernels" (the logits
materialised): values, gradients, time and peak memory of forward + backward in one run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from inforeg.lab.bench.base import Benchmark, BenchResult, compare_row, measure, measure_once
from inforeg.rl import fused_linear_logprobs_entropy, selective_log_softmax, token_entropy

Grads = tuple[torch.Tensor, torch.Tensor]


def _step(
    fused: bool,
    hidden: torch.Tensor,
    weight: torch.Tensor,
    tokens: torch.Tensor,
    w_logp: torch.Tensor,
    w_ent: torch.Tensor,
) -> Callable[[], Grads]:
    """Forward + backward of sum(w_logp * logp + w_ent * H); returns (grad hidden, grad weight)."""

    def run() -> Grads:
        h = hidden.detach().requires_grad_(True)
        w = weight.detach().requires_grad_(True)
        if fused:
            logp, ent = fused_linear_logprobs_entropy(h, w, tokens)
        else:
            z = h @ w.T
            logp, ent = selective_log_softmax(z, tokens), token_entropy(z)
        torch.autograd.backward([logp, ent], [w_logp, w_ent])
        assert h.grad is not None and w.grad is not None
        return h.grad, w.grad

    return run


def _case(tokens_n: int, vocab: int, dim: int, full: bool) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    hidden = torch.randn(tokens_n, dim, generator=gen)
    weight = torch.randn(vocab, dim, generator=gen) / dim**0.5
    tokens = torch.randint(0, vocab, (tokens_n,), generator=gen)
    w_logp, w_ent = torch.randn(tokens_n, generator=gen), torch.randn(tokens_n, generator=gen)
    timer = measure_once if full else (lambda fn: measure(fn, repeat=3))
    # inforeg first: pages the unfused path frees stay with the allocator and would hide growth
    ours = timer(_step(True, hidden, weight, tokens, w_logp, w_ent))
    peer = timer(_step(False, hidden, weight, tokens, w_logp, w_ent))
    diff_h = float((ours[2][0] - peer[2][0]).abs().max() / peer[2][0].abs().max())
    diff_w = float((ours[2][1] - peer[2][1]).abs().max() / peer[2][1].abs().max())
    logits_mb = tokens_n * vocab * 4 / 2**20
    grads_mb = (hidden.numel() + weight.numel()) * 4 / 2**20
    row = compare_row(
        "forward + backward, float32",
        f"T={tokens_n}, V={vocab}, D={dim}",
        ours,
        peer,
        "matmul+kernels",
        **{
            "max rel. diff grad hidden": diff_h,
            "max rel. diff grad weight": diff_w,
            "logits MB": logits_mb,
        },
    )
    row["inforeg extra beyond grads / logits"] = (ours[1] / 2**20 - grads_mb) / logits_mb
    row["time ratio inforeg / matmul+kernels"] = ours[0] / peer[0]
    return row


def run(quick: bool) -> BenchResult:
    _case(64, 1000, 32, full=False)  # warm-up: builds the C kernel, fills the allocator
    sizes = [(256, 32000, 256)] if quick else [(1024, 32000, 512), (4096, 151936, 1024)]
    rows = [_case(*s, full=not quick and s[0] == 4096) for s in sizes]
    notes = (
        "Both sides compute per-token log-probabilities and entropies (nats) from hidden @ W.T "
        "and backpropagate sum(a * logp + b * H) with random a, b to hidden and W. "
        "'matmul+kernels' materialises the (T, V) logits and runs inforeg's fused C kernels on "
        "them (token_entropy, selective_log_softmax); inforeg's fused LM head runs the same "
        "kernels on chunks of default_lm_head_chunk(V) tokens (55 at V = 151,936) and recomputes "
        "each chunk's logits in backward. Its forward + backward does four matmuls of the "
        "T x D x V size against three for the unfused path (the recompute is the price of not "
        "storing the logits), so the time ratio's floor is about 4/3 where matmuls dominate. "
        "'extra beyond grads / logits' is inforeg's peak memory growth minus the gradients of "
        "hidden and W (which any path returns), over the size of the float32 logits. The T = 4096 "
        "row is one timed call per side (after a warm-up at a small size); the other rows the "
        "best of 3. Memory is the growth of peak resident memory; below ~32 MB per "
        "allocation glibc may serve it from pages kept by earlier calls, so the small rows' "
        "memory columns are not meaningful (the T = 4096 row's are). CPU only here (no GPU lent; Liger-Kernel's fused linear path is CUDA-only)."
    )
    return BenchResult(rows, notes)


BENCHMARK = Benchmark(
    name="fused-lm-head",
    technique="siren",
    peer="matmul, then inforeg's fused entropy/log-softmax kernels (logits materialised)",
    description="Per-token log-probabilities and entropies from the LM head's input without the "
    "(T, V) logits (fused_linear_logprobs_entropy) against materialising them.",
    run=run,
)
