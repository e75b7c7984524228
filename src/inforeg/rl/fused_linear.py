r"""Per-token log-probabilities and entropies straight from the LM head, without the logits.

RL fine-tuning computes, for every generated token, :math:`\log\pi(o_t)` and the policy entropy
from ``logits = hidden @ weight.T`` with a vocabulary of ~150k: the ``(T, V)`` logits (and their
gradient) are the largest tensors of the step. :func:`fused_linear_logprobs_entropy` never holds
more than one tile of them: a chunk of tokens times a block of the vocabulary goes through the
matmul (a GEMM of a good shape, 4096 x D x 4096 by default) straight into the fused entropy
kernel (the C kernel of :mod:`inforeg.rl._cpu_entropy` on CPU; PyTorch on the tile elsewhere),
and only per-token results are kept: the blocks' log-sum-exp and entropy are merged exactly.
The backward pass recomputes each tile (one more matmul, the price of not storing the logits),
overwrites it with its gradient in one pass for both the log-probability and the entropy, and
folds it into the gradients of ``hidden``, ``weight`` and ``bias`` with accumulating matmuls
(``addmm_``, no temporary). TRL's fused LM head and
Liger-Kernel's fused linear losses (CUDA) avoid the logits the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from inforeg.core.checks import check_index_range, check_int, check_positive, check_tensor
from inforeg.core.dtypes import compute_dtype
from inforeg.rl import _cpu_entropy
from inforeg.rl._lse_ref import lse_ref

__all__ = ["default_lm_head_chunk", "fused_linear_logprobs_entropy"]

# One tile of logits (tokens x a block of the vocabulary) is at most this many float32 bytes;
# forward and backward hold one tile (the backward overwrites the recomputed logits with their
# gradient): 64 MiB, 2.7% of the full float32 logits at T = 4096, V = 151,936.
_TILE_BYTES = 1 << 26
# Tokens per tile at least (vocabularies above _TILE_BYTES / (4 * 4096) = 4096 get blocks of
# the vocabulary instead of fewer tokens): the matmuls then keep the shape of a big GEMM. On
# 2 loaded cores, h @ W_block.T ran at 38-60 GFLOP/s as 4096 x 1024 x {2048, 4096} tiles (as
# fast as one big matmul) against 17-20 for 55 full-vocabulary rows (the previous default) and
# 30-46 for 256 (benchmarks/fused-lm-head.md, analysis).
_TILE_ROWS = 4096
# floor for log p where logits are -inf (p = 0 there; 0 * floor is 0 where 0 * -inf is NaN)
_LOGP_FLOOR = -1.0e4


def default_lm_head_chunk(vocab: int) -> int:
    """Tokens per tile: 4096, or more for vocabularies under 4096 (a 64 MiB float32 tile).

    Each chunk of tokens goes through the vocabulary in blocks of
    ``64 MiB / (4 * tokens)`` entries (all of it when that is larger).

    >>> default_lm_head_chunk(151_936), default_lm_head_chunk(1_000)
    (4096, 16777)
    """
    return max(_TILE_ROWS, _TILE_BYTES // (4 * max(vocab, 1)))


def _vocab_block(rows: int, vocab: int) -> int:
    """Vocabulary entries per tile of ``rows`` tokens: the rest of the 64 MiB budget."""
    return max(1, min(vocab, _TILE_BYTES // (4 * rows)))


def _tiles(rows: int, vocab: int, chunk: int) -> Iterator[tuple[int, int, int, int]]:
    """``(r0, r1, v0, v1)``: chunks of ``chunk`` tokens, each over blocks of the vocabulary."""
    block = _vocab_block(min(chunk, rows), vocab)
    for r0 in range(0, rows, chunk):
        for v0 in range(0, vocab, block):
            yield r0, min(r0 + chunk, rows), v0, min(v0 + block, vocab)


def _logits_into(
    buf: Tensor, h: Tensor, weight: Tensor, bias: Tensor | None, v0: int, v1: int
) -> Tensor:
    """The tile ``h @ weight[v0:v1].T (+ bias[v0:v1])``, written into the front of ``buf``."""
    out = buf[: h.shape[0] * (v1 - v0)].view(h.shape[0], v1 - v0)
    w = weight[v0:v1].T
    if bias is None:
        return torch.mm(h, w, out=out)
    return torch.addmm(bias[v0:v1], h, w, out=out)


def _in_tile(tok: Tensor, v0: int, width: int) -> tuple[Tensor, Tensor]:
    """``(column, inside)``: the chosen token's column in the tile (clamped into it) and whether
    it is there."""
    col = tok - v0
    return col.clamp(0, width - 1).unsqueeze(1), (col >= 0) & (col < width)


def _stats_torch(
    z: Tensor, v0: int, inv_t: float, tok: Tensor, picked: Tensor
) -> tuple[Tensor, Tensor]:
    """``(lse, H)`` of the tile's rows (``(-inf, 0)`` for a block of only ``-inf`` logits),
    lse in float64 and H in the compute dtype, and the chosen logit into ``picked`` where it is
    in the tile: the PyTorch path of :func:`inforeg.rl._cpu_entropy.lm_head_stats`. The logits
    are shifted by the block maximum before the scaling by 1 / T, so that the log-weights near
    the top keep their digits at large logits (as the backward's, see ``inforeg.rl._lse_ref``)."""
    x = z.to(compute_dtype(z))
    top = x.amax(1)
    top = torch.where(top == -math.inf, 0.0, top)  # a masked block: lse -inf, not NaN
    y = (x - top.unsqueeze(1)).mul_(inv_t)
    rel = torch.logsumexp(y, 1)
    q = torch.exp(y - torch.where(rel == -math.inf, 0.0, rel).unsqueeze(1))
    col, inside = _in_tile(tok, v0, z.shape[1])
    picked.copy_(torch.where(inside, z.gather(1, col).squeeze(1).to(picked.dtype), picked))
    return top.double() * inv_t + rel, -torch.xlogy(q, q).sum(1)


def _grad_torch(z: Tensor, v0: int, inv_t: float, *rows: Tensor) -> Tensor:
    """The PyTorch path of :func:`inforeg.rl._cpu_entropy.lm_head_backward` (``rows``: its
    ``tok, lse, ent, g_logp, g_ent``; ``lse`` float64): the tile's gradient
    ``p (-(g_ent / T)(log p + H) - g_logp / T) + (g_logp / T) onehot(tok)``."""
    tok, lse, ent, g_logp, g_ent = rows
    zr, lr = lse_ref(lse, inv_t, ent.dtype)
    logp = (z.to(ent.dtype) - zr.unsqueeze(1)).mul_(inv_t).sub_(lr.unsqueeze(1))
    p = logp.exp()
    k = (g_ent * -inv_t).unsqueeze(1)
    coef = logp.clamp_(min=_LOGP_FLOOR).add_(ent.unsqueeze(1)).mul_(k)
    gz = p.mul_(coef.sub_((g_logp * inv_t).unsqueeze(1)))
    col, inside = _in_tile(tok, v0, z.shape[1])
    gz.scatter_add_(1, col, torch.where(inside, g_logp * inv_t, 0.0).unsqueeze(1))
    return z.copy_(gz)


def _merge(lse: Tensor, ent: Tensor, lse_b: Tensor, ent_b: Tensor) -> None:
    """Fold a vocabulary block's ``(lse_b, H_b)`` into the running ``(lse, H)`` in place: with
    the blocks' shares ``a = exp(lse - lse')`` and ``b = exp(lse_b - lse')`` of the merged
    ``lse'``, ``H' = a H + b H_b - a log a - b log b`` (non-negative terms)."""
    new = torch.logaddexp(lse, lse_b)
    ref = torch.where(new == -math.inf, 0.0, new)  # all masked so far: no -inf - -inf
    a, b = torch.exp(lse - ref), torch.exp(lse_b - ref)
    ent.mul_(a).add_(b * ent_b).sub_(torch.xlogy(a, a)).sub_(torch.xlogy(b, b))
    lse.copy_(new)


class _FusedLinearLogprobsEntropy(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        tokens: Tensor,
        temperature: float,
        chunk: int,
    ) -> tuple[Tensor, Tensor]:
        rows, vocab = hidden.shape[0], weight.shape[0]
        inv_t = 1.0 / temperature
        acc = compute_dtype(hidden)
        # running (lse, H) over the vocabulary blocks in float64: 40 merges lose no digits
        lse = torch.full((rows,), -math.inf, dtype=torch.float64, device=hidden.device)
        ent = torch.zeros(rows, dtype=torch.float64, device=hidden.device)
        # NaN stays where no block held the token (an out-of-range id when checks are off)
        picked = torch.full((rows,), math.nan, dtype=acc, device=hidden.device)
        buf = hidden.new_empty(min(chunk, rows) * _vocab_block(min(chunk, rows), vocab))
        for r0, r1, v0, v1 in _tiles(rows, vocab, chunk):
            z = _logits_into(buf, hidden[r0:r1], weight, bias, v0, v1)
            tok, run = tokens[r0:r1], (lse[r0:r1], ent[r0:r1])
            if acc == torch.float32 and _cpu_entropy.usable(z):  # merges in C: no per-tile ops
                _cpu_entropy.lm_head_stats(z, v0, inv_t, tok, *run, picked[r0:r1])
            else:
                _merge(*run, *_stats_torch(z, v0, inv_t, tok, picked[r0:r1]))
        # every logit -inf: no distribution (NaN, as the fused kernels give)
        dead = lse == -math.inf
        lse = torch.where(dead, math.nan, lse)
        ent = torch.where(dead, math.nan, ent).to(acc)
        # lse stays float64: a log-prob near 0 at logits of 1e3 keeps its digits, and the C
        # backward rebuilds p from it to float32 rounding (a float32 lse of 1e3 is off by 3e-5)
        ctx.save_for_backward(hidden, weight, bias, tokens, lse, ent)
        ctx.inv_t, ctx.chunk = inv_t, chunk
        logp = picked.to(lse.dtype) * inv_t - lse
        return logp.to(hidden.dtype), ent.to(hidden.dtype)

    @staticmethod
    def backward(ctx: Any, g_logp: Tensor, g_ent: Tensor) -> tuple[Tensor | None, ...]:
        hidden, weight, bias, tokens, lse, ent = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        rows, vocab = hidden.shape[0], weight.shape[0]
        inv_t = ctx.inv_t
        acc = ent.dtype  # half precision: matmuls of the gradient and sums in float32
        g_logp = g_logp.to(acc).contiguous()
        g_ent = g_ent.to(acc).contiguous()
        gh = torch.empty(hidden.shape, dtype=acc, device=hidden.device) if need_h else None
        gw = torch.empty(weight.shape, dtype=acc, device=weight.device) if need_w else None
        gb = torch.zeros(vocab, dtype=acc, device=weight.device) if need_b else None
        buf = hidden.new_empty(min(ctx.chunk, rows) * _vocab_block(min(ctx.chunk, rows), vocab))
        h_acc = hidden
        for r0, r1, v0, v1 in _tiles(rows, vocab, ctx.chunk):
            h = hidden[r0:r1]
            if v0 == 0:
                h_acc = h.to(acc)  # once per chunk of tokens (no copy unless half precision)
            z = _logits_into(buf, h, weight, bias, v0, v1)
            tok, rest = tokens[r0:r1], (ent[r0:r1], g_logp[r0:r1], g_ent[r0:r1])
            if acc == torch.float32 and _cpu_entropy.usable(z):
                gz = _cpu_entropy.lm_head_backward(z, v0, inv_t, tok, lse[r0:r1], *rest)
            else:
                gz = _grad_torch(z, v0, inv_t, tok, lse[r0:r1], *rest)
            gz = gz.to(acc)
            if gh is not None:  # over the vocabulary blocks: beta = 0 starts the sum
                gh[r0:r1].addmm_(gz, weight[v0:v1].to(acc), beta=0.0 if v0 == 0 else 1.0)
            if gw is not None:  # over the chunks of tokens
                gw[v0:v1].addmm_(gz.T, h_acc, beta=0.0 if r0 == 0 else 1.0)
            if gb is not None:
                gb[v0:v1] += gz.sum(0)
        return (
            None if gh is None else gh.to(hidden.dtype),
            None if gw is None else gw.to(weight.dtype),
            None if gb is None or bias is None else gb.to(bias.dtype),
            None,
            None,
            None,
        )


def fused_linear_logprobs_entropy(
    hidden: Tensor,
    weight: Tensor,
    tokens: Tensor,
    *,
    bias: Tensor | None = None,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> tuple[Tensor, Tensor]:
    r"""Log-probability of each chosen token and the policy entropy, from the LM head's input.

    With :math:`z_t = W h_t + b` and :math:`p_t = \operatorname{softmax}(z_t / T)`:

    .. math::

        \log\pi(o_t) = z_{t,o_t}/T - \log\sum_v e^{z_{t,v}/T}, \qquad
        H_t = -\sum_v p_{t,v} \log p_{t,v},

    the values of ``selective_log_softmax(hidden @ weight.T + bias, tokens, T)`` and
    ``token_entropy(hidden @ weight.T + bias, T)``, and their gradients with respect to
    ``hidden``, ``weight`` and ``bias``, without the ``(..., V)`` logits. The logits are formed
    one tile at a time: ``chunk_size`` tokens by a block of the vocabulary (at most 64 MiB of
    float32), each tile's row statistics are merged over the blocks (the entropy of a mixture:
    :math:`H = \sum_b a_b H_b - \sum_b a_b \log a_b`, :math:`a_b` the block's probability
    mass), and the backward pass recomputes each tile and overwrites it with its gradient. Extra
    memory is one tile on the C kernel's path (float32 and bfloat16 on CPU; a few tile-sized
    temporaries on the PyTorch path used elsewhere), plus float32 accumulators for the
    gradients of half-precision inputs;
    the weight gradient itself is as large as the weight, as with any LM head. Time: four
    matmuls of the ``T x D x V`` size against three for the unfused path (the recompute).

    Args:
        hidden: ``(..., D)`` floating hidden states (the LM head's input).
        weight: ``(V, D)`` LM-head weight, same dtype and device as ``hidden``.
        tokens: ``(...)`` integer token ids in ``[0, V)``, the leading shape of ``hidden``.
        bias: optional ``(V,)`` bias (default None).
        temperature: ``T > 0``; the logits are divided by it (default 1, TRL's and verl's
            convention for sampling temperature).
        chunk_size: tokens per tile; default :func:`default_lm_head_chunk` (4096 tokens by
            ``64 MiB / (4 * 4096)`` = 4096 vocabulary entries for large vocabularies).

    Returns:
        ``(logp, entropy)``, each of the leading shape of ``hidden``, in its dtype (float32
        accumulation for half precision), in nats. Differentiable once.

    Example:
        A zero LM head gives the uniform policy: ``log 1/4`` and ``log 4`` for every token.

        >>> import torch
        >>> logp, ent = fused_linear_logprobs_entropy(
        ...     torch.randn(2, 3, 5), torch.zeros(4, 5), torch.zeros(2, 3, dtype=torch.long)
        ... )
        >>> round(float(logp[0, 0]), 4), round(float(ent[1, 2]), 4)
        (-1.3863, 1.3863)
    """
    check_tensor(hidden, "hidden", min_ndim=1, floating=True, nonempty=False)
    check_tensor(weight, "weight", ndim=2, floating=True)
    check_tensor(tokens, "tokens", integer=True, nonempty=False)
    vocab, dim = weight.shape
    if hidden.shape[-1] != dim:
        raise ValueError(
            f"hidden: expected a last axis of {dim} (weight is {tuple(weight.shape)}), "
            f"got shape {tuple(hidden.shape)}"
        )
    if hidden.dtype != weight.dtype or hidden.device != weight.device:
        raise TypeError(
            f"weight: expected the dtype and device of hidden ({hidden.dtype}, {hidden.device}), "
            f"got {weight.dtype}, {weight.device}"
        )
    if tuple(tokens.shape) != tuple(hidden.shape[:-1]):
        raise ValueError(
            f"tokens: expected shape {tuple(hidden.shape[:-1])} (the leading shape of hidden), "
            f"got {tuple(tokens.shape)}"
        )
    if bias is not None:
        check_tensor(bias, "bias", ndim=1, floating=True)
        if bias.shape[0] != vocab or bias.dtype != weight.dtype:
            raise ValueError(
                f"bias: expected shape ({vocab},) and dtype {weight.dtype}, "
                f"got {tuple(bias.shape)} {bias.dtype}"
            )
    check_index_range(tokens, "tokens", vocab)
    t = check_positive(temperature, "temperature")
    chunk = (
        default_lm_head_chunk(vocab)
        if chunk_size is None
        else check_int(chunk_size, "chunk_size", low=1)
    )
    lead = hidden.shape[:-1]
    flat = hidden.reshape(-1, dim)
    if flat.shape[0] == 0:
        return hidden.new_zeros(lead), hidden.new_zeros(lead)
    logp, ent = _FusedLinearLogprobsEntropy.apply(
        flat, weight, bias, tokens.reshape(-1).long().contiguous(), t, chunk
    )
    return logp.view(lead), ent.view(lead)
