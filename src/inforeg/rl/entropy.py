"""Exact per-token entropy and sampled-token log-probabilities from large-vocabulary logits.

Three back ends compute the same values, chosen per call from the logits' device and dtype:

* **CPU, float32/bfloat16, contiguous rows of at least 64 logits** (the default there): a fused
  C kernel (:mod:`inforeg.rl._cpu_entropy`, compiled at first use) reads each row once in the
  forward pass (an online softmax) and, in the backward pass, reads the logits once and writes
  the gradient once; no work buffers. ``INFOREG_DISABLE_CPU_KERNEL=1`` selects the chunked path.
* **CUDA, float32/float16/bfloat16, Triton importable**: fused Triton kernels
  (:mod:`inforeg.rl._triton_entropy`) with the same single-pass structure.
  ``INFOREG_DISABLE_TRITON=1`` selects the chunked path instead.
* **Everything else** (float64, float16 on CPU, strided rows, vocabularies under 64 on CPU, no
  C compiler, other devices): a chunked PyTorch path that streams over row chunks of the
  flattened logits ``(R, V)``: each chunk is upcast to float32 (for half input) into a reused
  work buffer, and the backward pass recomputes the chunk's probabilities instead of saving
  them. Peak extra memory is a few ``chunk_size x V`` float32 buffers whatever the number of
  rows.

``chunk_size`` only affects the chunked path. The gradient (same shape as the logits) is the
only full-size allocation, and only in backward. Logits of ``-inf`` (masked vocabulary entries)
are allowed on every path: they get probability 0 and gradient 0. A row with a NaN or ``+inf``
logit, or with every logit ``-inf``, gives NaN.

Conventions (as TRL and verl): entropies are in **nats**; the temperature divides the logits
before the softmax, ``p = softmax(z / T)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import torch
from torch import Tensor

from inforeg.core.checks import check_index_range, check_int, check_positive, check_tensor
from inforeg.core.dtypes import compute_dtype
from inforeg.core.threads import run_in_parts
from inforeg.rl import _cpu_entropy, _triton_entropy
from inforeg.rl._lse_ref import lse_ref


class FusedKernels(Protocol):
    """A fused back end: one read of each row forward, one read and one write backward.

    Implemented by the modules :mod:`inforeg.rl._triton_entropy` (CUDA) and
    :mod:`inforeg.rl._cpu_entropy` (CPU, a C kernel); ``_BACKENDS`` below makes mypy check that
    both modules satisfy this protocol. Results are float32 (forward; lse is float64, see
    ``inforeg.rl._lse_ref``) or the dtype of ``z`` (gradients); ``inv_t`` is 1 / temperature.
    """

    def usable(self, z: Tensor) -> bool:
        """Whether this back end handles ``z`` (device, dtype, layout, availability)."""
        ...

    def entropy_forward(self, z: Tensor, inv_t: float) -> tuple[Tensor, Tensor]:
        """``(H, lse)`` per row of ``z (R, V)`` (lse float64: the backward rebuilds p from it,
        and a float32 lse of 1e3 is off by 3e-5)."""
        ...

    def lse_forward(self, z: Tensor, inv_t: float) -> Tensor:
        """``logsumexp(z * inv_t)`` per row."""
        ...

    def entropy_backward(
        self, z: Tensor, lse: Tensor, ent: Tensor, grad: Tensor, inv_t: float
    ) -> Tensor:
        """``grad * dH/dz``."""
        ...

    def selective_backward(
        self, z: Tensor, tok: Tensor, lse: Tensor, grad: Tensor, inv_t: float
    ) -> Tensor:
        """``grad * d log p_tok / dz``."""
        ...


_BACKENDS: tuple[FusedKernels, ...] = (_triton_entropy, _cpu_entropy)  # tried in this order


def _fused_kernels(z: Tensor) -> FusedKernels | None:
    """The fused back end for ``z`` (Triton on CUDA, the C kernel on CPU), or None for the
    chunked PyTorch path."""
    for backend in _BACKENDS:
        if backend.usable(z):
            return backend
    return None


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
    """Run ``body(lo, hi)`` over ``[0, rows)``: on CPU, one part per intra-op thread when there
    are enough chunks (:func:`inforeg.core.threads.run_in_parts`)."""
    parts = min(torch.get_num_threads(), rows // max(chunk, 1)) if device.type == "cpu" else 1
    run_in_parts(rows, parts, body)


# Fast-path window for selective_log_softmax: S = sum_v exp(z_v / T) with no shift is accepted
# when _S_LOW <= S <= _S_HIGH. Then the row maximum m satisfies -23 - log V <= m <= log S <= 69,
# so no term overflows (exp(69) ~ 1e30 < float32 max) and every term within exp(-50) of the
# largest is a normal float32; otherwise the row is redone with the exact max shift.
_S_LOW = 1e-10
_S_HIGH = 1e30


# floor for y = z/T - max (and log p) where logits are -inf: exp(-1e4) is 0 in every float
# dtype, so the sums are unchanged, and 0 * floor is 0 where 0 * -inf would be NaN
_Y_FLOOR = -1.0e4


def _any_nan(v: Tensor) -> bool:
    """Host check on a CPU tensor of per-row results (a 0-d slot: a Python comparison)."""
    if v.dim() == 0:
        x = v.item()
        return x != x
    return bool(torch.isnan(v).any())


def _rows(t: Tensor, s: int, n: int) -> Tensor:
    """Rows ``[s, s + n)`` of ``t``: a 1-D view (one vocabulary row) when ``n == 1``, else 2-D.

    Single rows use 1-D ops: ``torch.dot`` (BLAS) is about 3x faster than a one-row
    ``linalg.vecdot`` on a 150k-long row, and a 0-dim ``out=`` slot avoids per-row allocations.
    """
    return t[s] if n == 1 else t[s : s + n]


def _dot(a: Tensor, b: Tensor, out: Tensor) -> None:
    if a.dim() == 1:
        torch.dot(a, b, out=out)
    else:
        torch.linalg.vecdot(a, b, out=out)


def _col(v: Tensor) -> Tensor:
    """A per-row scalar slot shaped to broadcast against its row(s)."""
    return v.unsqueeze(-1)


def _shift_max(z: Tensor, inv_t: float, y: Tensor, m: Tensor) -> None:
    """``m <- max(z / T)`` and ``y <- z / T - m`` (``y``, ``m`` in the accumulation dtype).

    The max is taken on ``z`` (or on its float32 copy for half input: mixed-dtype ops are slow),
    then a single ``add(-m/T, z, alpha=1/T)`` writes the scaled, shifted row; ``max(z/T) =
    max(z)/T`` exactly since rounding is monotone.
    """
    src = z
    if z.dtype != y.dtype:  # half input: one vectorised upcast into the work buffer
        y.copy_(z)
        src = y
    torch.amax(src, -1, out=m)
    if inv_t == 1.0:
        torch.sub(src, _col(m), out=y)
    else:
        m.mul_(inv_t)
        torch.add(_col(-m), src, alpha=inv_t, out=y)


def _log_p_into(z: Tensor, zr: Tensor, neg_lr: Tensor, inv_t: float, out: Tensor) -> None:
    """``out <- (z - zr) / T - lr`` for rows ``z`` (``zr``, ``neg_lr``: their per-row slots)."""
    torch.sub(z, _col(zr), out=out)
    torch.add(_col(neg_lr), out, alpha=inv_t, out=out)


def _scale_into(z: Tensor, inv_t: float, y: Tensor) -> Tensor:
    """``y <- z / T`` in the accumulation dtype (``z`` itself when no copy is needed)."""
    if z.dtype == y.dtype:
        if inv_t == 1.0:
            return z
        return torch.mul(z, inv_t, out=y)
    y.copy_(z)
    if inv_t != 1.0:
        y.mul_(inv_t)
    return y


class _TokenEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, z: Tensor, inv_t: float, chunk: int) -> Tensor:  # type: ignore[override]
        ctx.inv_t, ctx.chunk, ctx.fused = inv_t, chunk, _fused_kernels(z)
        if ctx.fused is not None:  # one fused pass per row (Triton or C)
            out, lse = ctx.fused.entropy_forward(z, inv_t)
            ctx.save_for_backward(z, lse, out)
            return out
        rows, vocab = z.shape
        acc = compute_dtype(z)
        # per-row reductions, written in place by the workers: max of z/T, S = sum e, D = sum e*y
        m = torch.empty(rows, dtype=acc, device=z.device)
        tot = torch.empty(rows, dtype=acc, device=z.device)
        dot = torch.empty(rows, dtype=acc, device=z.device)

        on_cpu = z.device.type == "cpu"
        # rows holding -inf logits (y = -inf, e = 0, so e * y is NaN): their y is clamped to
        # _Y_FLOOR (exp of it is 0 too) and the backward clamps log p likewise
        inf_rows = torch.zeros(rows, dtype=torch.bool, device=z.device)

        def body(lo: int, hi: int) -> None:
            # two work buffers (y = z/T - max, e = exp y): 2 x 0.6 MB per 151,936-long float32
            # row, which with the row itself fits a 2 MB L2
            y = torch.empty(min(chunk, hi - lo), vocab, dtype=acc, device=z.device)
            e = torch.empty_like(y)
            for s in range(lo, hi, chunk):
                n = min(chunk, hi - s)
                yc, ec, dc = _rows(y, 0, n), _rows(e, 0, n), _rows(dot, s, n)
                _shift_max(_rows(z, s, n), inv_t, yc, _rows(m, s, n))
                torch.exp(yc, out=ec)
                torch.sum(ec, -1, out=_rows(tot, s, n))
                if not on_cpu:  # no host check off the CPU: always clamp (one more pass)
                    yc.clamp_(min=_Y_FLOOR)
                _dot(ec, yc, dc)
                if on_cpu and _any_nan(dc):  # rare: redo the dot with y clamped
                    _rows(inf_rows, s, n).copy_(torch.isnan(dc))
                    yc.clamp_(min=_Y_FLOOR)
                    _dot(ec, yc, dc)

        _run_rows(rows, chunk, z.device, body)
        ctx.inf_rows = set(inf_rows.nonzero().flatten().tolist()) if on_cpu else None
        # H = log S - sum(e * y) / S: both terms are >= 0 (y <= 0), so no cancellation
        log_tot = tot.log()
        out = log_tot - dot.div_(tot)
        lse = m.double().add_(log_tot)  # float64: see inforeg.rl._lse_ref
        ctx.save_for_backward(z, lse, out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None]:  # type: ignore[override]
        z, lse, ent = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None
        inv_t, chunk = ctx.inv_t, ctx.chunk
        if ctx.fused is not None:
            return ctx.fused.entropy_backward(z, lse, ent, grad, inv_t), None, None
        rows, vocab = z.shape
        acc = compute_dtype(z)
        gz = torch.empty_like(z)
        # dH/dz = -(1/T) p (log p + H) = p * (k log p + k H) with k = -g/T, log p = z/T - lse
        zr, lr = lse_ref(lse, inv_t, acc)
        neg_lr = lr.neg_()
        k = grad.to(acc) * -inv_t
        kh = k * ent
        same = z.dtype == acc
        inf_rows: set[int] = ctx.inf_rows or set()
        clamp_all = ctx.inf_rows is None

        def body(lo: int, hi: int) -> None:
            lp = torch.empty(min(chunk, hi - lo), vocab, dtype=acc, device=z.device)
            p = None if same else torch.empty_like(lp)
            for s in range(lo, hi, chunk):
                n = min(chunk, hi - s)
                zc, lpc, gzc = _rows(z, s, n), _rows(lp, 0, n), _rows(gz, s, n)
                if not same:
                    lpc.copy_(zc)
                    zc = lpc
                _log_p_into(zc, _rows(zr, s, n), _rows(neg_lr, s, n), inv_t, lpc)
                # exp written straight into the gradient row where it has the dtype
                pc = gzc if same else _rows(p, 0, n)  # type: ignore[arg-type]
                torch.exp(lpc, out=pc)
                if clamp_all or any(r in inf_rows for r in range(s, s + n)):
                    lpc.clamp_(min=_Y_FLOOR)  # -inf logits: p = 0, gradient 0 (not 0 * inf)
                torch.addcmul(_col(_rows(kh, s, n)), lpc, _col(_rows(k, s, n)), out=lpc)
                pc.mul_(lpc)
                if not same:
                    gzc.copy_(pc)

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

    No full-size probability tensor ever exists. For float32/bfloat16 logits on CPU (and on CUDA
    with Triton) a fused kernel reads each row once, keeping running sums relative to the running
    maximum (see the module docstring); otherwise the rows of the flattened ``(R, V)`` logits are
    processed ``chunk_size`` at a time, each chunk shifted, exponentiated and reduced inside a
    reused float32 buffer. The backward pass recomputes the probabilities and writes
    :math:`\partial H/\partial z_v = -\tfrac{1}{T} p_v(\log p_v + H)` into the gradient.
    On CPU the rows are split over ``torch.get_num_threads()`` threads (on the chunked path,
    with intra-op threading set to 1 during the call and restored after; avoid calling it
    concurrently with other torch work in the same process that relies on the thread setting).
    This is the computation of TRL's ``entropy_from_logits`` (128-row chunks of
    ``log_softmax``) and verl's ``entropy_from_logits_with_chunking`` (2048 rows, float32),
    without their per-chunk full-size intermediates.

    Args:
        logits: ``(..., V)`` floating logits (any leading shape, e.g. ``(N, T, V)``).
        temperature: ``T > 0``; the logits are divided by it before the softmax (default 1).
            Limit: the CPU paths scale in float32 with the row maximum rounded separately, so
            once :math:`\max|z|/T` exceeds about :math:`2^{30}` (T below ~1e-9 for logits of
            order 1) the results are wrong; divide such logits yourself in float64 first.
        chunk_size: rows per chunk of the chunked path; default: about 1 MiB of float32 per
            chunk on CPU, 32 MiB on other devices (unused by the fused kernels).

    Returns:
        ``(...)`` entropies in nats, in the dtype of ``logits`` (float32 accumulation for
        float16/bfloat16). Differentiable once (the chunked backward does not support double
        backward). A row whose logits are all ``-inf`` has no distribution: its entropy and
        gradient are NaN. A zero mask hides the value from the masked aggregations but not the
        gradient (0 * NaN is NaN, as with ``torch.log_softmax``), so replace such rows' logits
        (e.g. by zeros) before the call.

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
        ctx.inv_t, ctx.chunk, ctx.fused = inv_t, chunk, _fused_kernels(z)
        picked = z.gather(1, tok.unsqueeze(1)).view(-1)
        if ctx.fused is not None:  # one fused pass per row (Triton or C)
            lse = ctx.fused.lse_forward(z, inv_t)
            ctx.save_for_backward(z, tok, lse)
            # in lse's precision (float64): a log-prob near 0 at logits of 1e3 keeps its
            # digits (float32 z / T alone is off by |z / T| * 6e-8)
            return (picked.to(lse.dtype) * inv_t - lse).to(compute_dtype(z))
        rows, vocab = z.shape
        acc = compute_dtype(z)
        tot = torch.empty(rows, dtype=acc, device=z.device)
        shift = torch.zeros(rows, dtype=acc, device=z.device)
        # the no-shift fast path needs a host-side range check: CPU only (off the CPU it would
        # wait for the device once per chunk)
        fast = z.device.type == "cpu"

        def body(lo: int, hi: int) -> None:
            y = torch.empty(min(chunk, hi - lo), vocab, dtype=acc, device=z.device)
            for s in range(lo, hi, chunk):
                n = min(chunk, hi - s)
                zc, yc, tc = _rows(z, s, n), _rows(y, 0, n), _rows(tot, s, n)
                ok = False
                if fast:  # no max pass: S = sum exp(z/T); the exp reads the row from memory
                    torch.exp(_scale_into(zc, inv_t, yc), out=yc)
                    torch.sum(yc, -1, out=tc)
                    if n == 1:
                        ok = _S_LOW <= tc.item() <= _S_HIGH
                    else:
                        ok = bool(((tc >= _S_LOW) & (tc <= _S_HIGH)).all())
                if not ok:  # large or very negative logits: exact max shift for this chunk
                    _shift_max(zc, inv_t, yc, _rows(shift, s, n))
                    yc.exp_()
                    torch.sum(yc, -1, out=tc)

        _run_rows(rows, chunk, z.device, body)
        lse = shift.double().add_(tot.log_())  # float64: see inforeg.rl._lse_ref
        ctx.save_for_backward(z, tok, lse)
        return (picked.to(lse.dtype) * inv_t - lse).to(acc)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        z, tok, lse = ctx.saved_tensors
        if not ctx.needs_input_grad[0]:
            return None, None, None, None
        inv_t, chunk = ctx.inv_t, ctx.chunk
        if ctx.fused is not None:
            return ctx.fused.selective_backward(z, tok, lse, grad, inv_t), None, None, None
        rows, vocab = z.shape
        acc = compute_dtype(z)
        gz = torch.empty_like(z)
        # d logp_tok / dz = (onehot(tok) - p) / T, p = exp(z/T - lse)
        g = grad.to(acc) * inv_t
        neg_g = -g
        zr, lr = lse_ref(lse, inv_t, acc)
        neg_lr = lr.neg_()
        same = z.dtype == acc

        def body(lo: int, hi: int) -> None:
            p = (
                None
                if same
                else torch.empty(min(chunk, hi - lo), vocab, dtype=acc, device=z.device)
            )
            for s in range(lo, hi, chunk):
                n = min(chunk, hi - s)
                zc, gzc = _rows(z, s, n), _rows(gz, s, n)
                # computed in place in the gradient row where it has the dtype
                pc = gzc if same else _rows(p, 0, n)  # type: ignore[arg-type]
                if not same:
                    pc.copy_(zc)
                    zc = pc
                _log_p_into(zc, _rows(zr, s, n), _rows(neg_lr, s, n), inv_t, pc)
                pc.exp_().mul_(_col(_rows(neg_g, s, n)))
                # the one-hot term in the accumulation dtype, before any rounding to half
                pc.scatter_add_(-1, _col(_rows(tok, s, n)), _col(_rows(g, s, n)))
                if not same:
                    gzc.copy_(pc)

        _run_rows(rows, chunk, z.device, body)
        return gz, None, None, None


def check_token_ids(tokens: Tensor, logits: Tensor) -> None:
    """Raise unless ``tokens`` holds integer ids in ``[0, V)`` with the leading shape of the
    ``(..., V)`` ``logits`` (the chosen-token argument of the functions that take both)."""
    check_tensor(tokens, "tokens", integer=True, nonempty=False)
    if tuple(tokens.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"tokens: expected shape {tuple(logits.shape[:-1])} (the leading shape of logits), "
            f"got {tuple(tokens.shape)}"
        )
    check_index_range(tokens, "tokens", logits.shape[-1])


def selective_log_softmax(
    logits: Tensor, tokens: Tensor, temperature: float = 1.0, chunk_size: int | None = None
) -> Tensor:
    r"""Log-probability of the chosen token, ``log softmax(logits / T)[tokens]``, without a full
    log-softmax tensor.

    .. math::

        \log \pi(o_t) = z_{o_t}/T - \log \sum_v e^{z_v / T}.

    The row-wise log-sum-exp is accumulated in float32 or better (for half-precision input,
    where TRL falls back to a per-row ``log_softmax`` because a bf16 ``logsumexp`` is
    inaccurate): by the fused kernels in one read of each row (float32/bfloat16 on CPU, and on
    CUDA with Triton), else chunk by chunk. On the chunked path, when
    :math:`S = \sum_v e^{z_v/T}` lies in ``[1e-10, 1e30]`` it is used with no max shift (one
    exp pass reading the chunk, no max pass; the row max is then within [-46, 69], so nothing
    overflows and every term that matters is a normal float); otherwise the chunk is redone
    with the exact max shift. The backward recomputes ``p`` and writes ``(onehot - p) / T``.

    Args:
        logits: ``(..., V)`` floating logits.
        tokens: ``(...)`` integer token ids in ``[0, V)``, same leading shape as ``logits``.
        temperature: ``T > 0`` (default 1); the limit of :func:`token_entropy` applies.
        chunk_size: rows per chunk (default as :func:`token_entropy`).

    Returns:
        ``(...)`` log-probabilities in the dtype of ``logits`` (float32 accumulation inside).
        A row whose logits are all ``-inf`` has no distribution: its value and gradient are NaN.
        A zero mask hides the value but not the gradient (0 * NaN is NaN, as with
        ``torch.log_softmax``), so replace such rows' logits (e.g. by zeros) before the call.
    """
    flat, inv_t, chunk = _flatten_logits(logits, temperature, chunk_size)
    check_token_ids(tokens, logits)
    lead = logits.shape[:-1]
    if flat.shape[0] == 0:
        return logits.new_zeros(lead)
    out = _SelectiveLogSoftmax.apply(flat, tokens.reshape(-1).long(), inv_t, chunk)
    return out.to(logits.dtype).view(lead)
