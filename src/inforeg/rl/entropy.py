"""Exact per-token entropy and sampled-token log-probabilities from large-vocabulary logits.

Both functions stream over row chunks of the flattened logits ``(R, V)``: each chunk is upcast to
float32 (for float16/bfloat16 input) into a reused work buffer, and the backward pass recomputes
the chunk's probabilities instead of saving them. Peak extra memory is therefore a few
``chunk_size x V`` float32 buffers, whatever the number of rows; the gradient itself (same shape as
the logits) is the only full-size allocation, and only in backward.

Conventions (as TRL and verl): entropies are in **nats**; the temperature divides the logits
before the softmax, ``p = softmax(z / T)``.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torch import Tensor

from inforeg.core.checks import check_int, check_positive, check_tensor
from inforeg.core.dtypes import compute_dtype
from inforeg.core.threads import intra_op_threads

__all__ = ["default_entropy_chunk", "selective_log_softmax", "token_entropy"]

_CHUNK_BYTES = 1 << 20  # CPU: ~1 MiB of float32 per chunk, stays in the L2 cache
_CHUNK_BYTES_ACCEL = 1 << 25  # GPU and other devices: ~32 MiB, fewer kernel launches


def default_entropy_chunk(vocab: int, device: torch.device | str | None = None) -> int:
    """Rows per chunk: about 1 MiB of float32 on CPU, 32 MiB elsewhere (at least 1 row)."""
    dev = torch.device("cpu") if device is None else torch.device(device)
    budget = _CHUNK_BYTES if dev.type == "cpu" else _CHUNK_BYTES_ACCEL
    return max(1, budget // (4 * max(vocab, 1)))


def _run_rows(
    rows: int, chunk: int, device: torch.device, body: Callable[[int, int], None]
) -> None:
    """Run ``body(lo, hi)`` over ``[0, rows)``.

    On CPU with several intra-op threads, per-op threading on cache-sized chunks mostly adds
    synchronisation, so the rows are split into one contiguous part per thread and each part is
    processed by a Python worker thread (torch releases the GIL inside ops) with intra-op
    threading set to 1 for the duration of the call (restored afterwards).
    """
    threads = torch.get_num_threads()
    parts = min(threads, rows // max(chunk, 1)) if device.type == "cpu" else 1
    if parts <= 1:
        body(0, rows)
        return
    step = -(-rows // parts)
    bounds = [(lo, min(lo + step, rows)) for lo in range(0, rows, step)]

    def work(lo: int, hi: int) -> None:
        with torch.no_grad():  # grad mode is thread-local; the bodies write into buffers
            body(lo, hi)

    with intra_op_threads(1), ThreadPoolExecutor(len(bounds)) as pool:
        for fut in [pool.submit(work, lo, hi) for lo, hi in bounds]:
            fut.result()


_acc_dtype = compute_dtype


def _chunk_shift(z: Tensor, inv_t: float, y: Tensor) -> Tensor:
    """``y <- (z - max z) / T`` in the accumulation dtype; returns ``max z / T`` (rows, 1)."""
    if z.dtype == y.dtype:
        m = z.amax(dim=-1, keepdim=True)
        torch.sub(z, m, out=y)
    else:  # half input: one vectorised upcast, then same-dtype ops (mixed-dtype ops are slow)
        y.copy_(z)
        m = y.amax(dim=-1, keepdim=True)
        y.sub_(m)
    if inv_t != 1.0:
        y.mul_(inv_t)
    return m * inv_t


def _scaled_copy(z: Tensor, inv_t: float, out: Tensor) -> Tensor:
    """``out <- z / T`` in the accumulation dtype."""
    if z.dtype == out.dtype:
        torch.mul(z, inv_t, out=out)
    else:
        out.copy_(z)
        if inv_t != 1.0:
            out.mul_(inv_t)
    return out


def _rowdot(a: Tensor, b: Tensor) -> Tensor:
    """Row-wise dot product ``sum_v a[r, v] * b[r, v]``."""
    return torch.linalg.vecdot(a, b)


class _TokenEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, inv_t: float, chunk: int) -> Tensor:  # type: ignore[override]
        rows, vocab = z.shape
        acc = _acc_dtype(z)
        out = torch.empty(rows, dtype=acc, device=z.device)
        lse = torch.empty(rows, dtype=acc, device=z.device)

        def body(lo: int, hi: int) -> None:
            y = torch.empty(min(chunk, hi - lo), vocab, dtype=acc, device=z.device)
            e = torch.empty_like(y)
            for s in range(lo, hi, chunk):
                n = min(chunk, hi - s)
                yc, ec = y[:n], e[:n]
                shift = _chunk_shift(z[s : s + n], inv_t, yc)
                torch.exp(yc, out=ec)
                total = ec.sum(dim=-1)
                log_total = total.log()
                # H = log S - sum(e * y) / S with y = z/T - max(z/T), e = exp(y), S = sum(e)
                out[s : s + n] = log_total - _rowdot(ec, yc) / total
                lse[s : s + n] = log_total + shift.view(-1)

        _run_rows(rows, chunk, z.device, body)
        ctx.save_for_backward(z, lse, out)
        ctx.inv_t = inv_t
        ctx.chunk = chunk
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        z, lse, ent = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        inv_t, chunk = ctx.inv_t, ctx.chunk
        rows, vocab = z.shape
        acc = _acc_dtype(z)
        gz = torch.empty_like(z)
        g = grad.to(acc)

        def body(lo: int, hi: int) -> None:
            lp = torch.empty(min(chunk, hi - lo), vocab, dtype=acc, device=z.device)
            p = torch.empty_like(lp)
            for s in range(lo, hi, chunk):
                n = min(chunk, hi - s)
                lpc, pc = lp[:n], p[:n]
                # log p = z/T - lse ; dH/dz = -(1/T) p (log p + H)
                _scaled_copy(z[s : s + n], inv_t, lpc)
                lpc.sub_(lse[s : s + n].unsqueeze(1))
                torch.exp(lpc, out=pc)
                lpc.add_(ent[s : s + n].unsqueeze(1))
                pc.mul_(lpc).mul_((-inv_t * g[s : s + n]).unsqueeze(1))
                gz[s : s + n] = pc

        _run_rows(rows, chunk, z.device, body)
        return gz, None, None


def _flatten_logits(logits: Tensor, temperature: float, chunk_size: int | None) -> tuple:
    check_tensor(logits, "logits", min_ndim=1, floating=True, nonempty=False)
    t = check_positive(temperature, "temperature")
    vocab = logits.shape[-1]
    if vocab == 0:
        raise ValueError(
            f"logits: expected a non-empty vocabulary axis, got shape {tuple(logits.shape)}"
        )
    chunk = (
        default_entropy_chunk(vocab, logits.device)
        if chunk_size is None
        else check_int(chunk_size, "chunk_size", low=1)
    )
    return logits.reshape(-1, vocab), 1.0 / t, chunk


def token_entropy(
    logits: Tensor, temperature: float = 1.0, chunk_size: int | None = None
) -> Tensor:
    r"""Exact entropy (nats) of ``softmax(logits / temperature)`` over the last axis.

    .. math::

        H(z) = -\sum_v p_v \log p_v
             = \log \sum_v e^{y_v} - \frac{\sum_v e^{y_v} y_v}{\sum_v e^{y_v}},
        \qquad y = z / T - \max_v z_v / T.

    The rows of the flattened ``(R, V)`` logits are processed ``chunk_size`` at a time; each
    chunk is shifted, exponentiated and reduced inside a reused float32 buffer, so no full-size
    probability tensor ever exists. The backward pass recomputes the chunk's probabilities and
    writes :math:`\partial H/\partial z_v = -\tfrac{1}{T} p_v(\log p_v + H)` into the gradient.
    On CPU the rows are split over ``torch.get_num_threads()`` worker threads, with intra-op
    threading set to 1 during the call (restored after; avoid calling it concurrently with
    other torch work in the same process that relies on the thread setting).
    This is the computation of TRL's ``entropy_from_logits`` (128-row chunks of
    ``log_softmax``) and verl's ``entropy_from_logits_with_chunking`` (2048 rows, float32), with
    cache-sized chunks and no per-chunk allocation.

    Args:
        logits: ``(..., V)`` floating logits (any leading shape, e.g. ``(N, T, V)``).
        temperature: ``T > 0``; the logits are divided by it before the softmax (default 1).
        chunk_size: rows per chunk; default: about 1 MiB of float32 per chunk on CPU, 32 MiB on
            other devices.

    Returns:
        ``(...)`` entropies in nats, in the dtype of ``logits`` (float32 accumulation for
        float16/bfloat16). Differentiable once (the chunked backward does not support double
        backward).

    Example:
        >>> token_entropy(torch.zeros(2)).item()  # ln 2
        0.6931471824645996
    """
    flat, inv_t, chunk = _flatten_logits(logits, temperature, chunk_size)
    lead = logits.shape[:-1]
    if flat.shape[0] == 0:
        return logits.new_zeros(lead)
    out = _TokenEntropy.apply(flat, inv_t, chunk)
    return out.to(logits.dtype).view(lead)


class _SelectiveLogSoftmax(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, tok: Tensor, inv_t: float, chunk: int) -> Tensor:  # type: ignore[override]
        rows, vocab = z.shape
        acc = _acc_dtype(z)
        lse = torch.empty(rows, dtype=acc, device=z.device)

        direct = z.dtype == acc and inv_t == 1.0

        def body(lo: int, hi: int) -> None:
            # torch.logsumexp's fused kernel is the fastest exact row reduction; a reused
            # buffer holds z / T (and the float32 upcast of half input) when it is needed.
            y = (
                None
                if direct
                else torch.empty(min(chunk, hi - lo), vocab, dtype=acc, device=z.device)
            )
            for s in range(lo, hi, chunk):
                n = min(chunk, hi - s)
                zc = z[s : s + n] if y is None else _scaled_copy(z[s : s + n], inv_t, y[:n])
                lse[s : s + n] = torch.logsumexp(zc, dim=-1)

        _run_rows(rows, chunk, z.device, body)
        picked = z.gather(1, tok.unsqueeze(1)).view(-1).to(acc) * inv_t
        ctx.save_for_backward(z, tok, lse)
        ctx.inv_t = inv_t
        ctx.chunk = chunk
        return picked - lse

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        z, tok, lse = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        inv_t, chunk = ctx.inv_t, ctx.chunk
        rows, vocab = z.shape
        acc = _acc_dtype(z)
        gz = torch.empty_like(z)
        g = grad.to(acc) * inv_t

        def body(lo: int, hi: int) -> None:
            p = torch.empty(min(chunk, hi - lo), vocab, dtype=acc, device=z.device)
            for s in range(lo, hi, chunk):
                n = min(chunk, hi - s)
                pc = p[:n]
                # d logp_tok / dz = (onehot(tok) - p) / T
                _scaled_copy(z[s : s + n], inv_t, pc)
                pc.sub_(lse[s : s + n].unsqueeze(1)).exp_().mul_(-g[s : s + n].unsqueeze(1))
                pc.scatter_add_(1, tok[s : s + n].unsqueeze(1), g[s : s + n].unsqueeze(1))
                gz[s : s + n] = pc

        _run_rows(rows, chunk, z.device, body)
        return gz, None, None, None


def selective_log_softmax(
    logits: Tensor, tokens: Tensor, temperature: float = 1.0, chunk_size: int | None = None
) -> Tensor:
    r"""Log-probability of the chosen token, ``log softmax(logits / T)[tokens]``, without a full
    log-softmax tensor.

    .. math::

        \log \pi(o_t) = z_{o_t}/T - \log \sum_v e^{z_v / T}.

    The row-wise log-sum-exp is computed chunk by chunk in float32 (for half-precision input,
    where TRL falls back to a per-row ``log_softmax`` because a bf16 ``logsumexp`` is
    inaccurate); the backward recomputes ``p`` per chunk and writes ``(onehot - p) / T``.

    Args:
        logits: ``(..., V)`` floating logits.
        tokens: ``(...)`` integer token ids in ``[0, V)``, same leading shape as ``logits``.
        temperature: ``T > 0`` (default 1).
        chunk_size: rows per chunk (default as :func:`token_entropy`).

    Returns:
        ``(...)`` log-probabilities in the dtype of ``logits`` (float32 accumulation inside).
    """
    flat, inv_t, chunk = _flatten_logits(logits, temperature, chunk_size)
    check_tensor(tokens, "tokens", integer=True, nonempty=False)
    if tuple(tokens.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"tokens: expected shape {tuple(logits.shape[:-1])} (the leading shape of logits), "
            f"got {tuple(tokens.shape)}"
        )
    lead = logits.shape[:-1]
    if flat.shape[0] == 0:
        return logits.new_zeros(lead)
    out = _SelectiveLogSoftmax.apply(flat, tokens.reshape(-1).long(), inv_t, chunk)
    return out.to(logits.dtype).view(lead)
