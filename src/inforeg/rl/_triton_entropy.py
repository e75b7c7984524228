r"""Fused single-pass CUDA kernels (Triton) for the token entropy and the row log-sum-exp.

Used by :mod:`inforeg.rl.entropy` for CUDA tensors in float32/float16/bfloat16 when Triton is
importable (it ships with CUDA builds of PyTorch); everything else takes the chunked PyTorch
path. Set ``INFOREG_DISABLE_TRITON=1`` to force that path.

One program per row reads the logits once, keeping per-lane running statistics relative to the
lane's running maximum :math:`m` (an online softmax):

.. math::

    s = \sum e^{y - m}, \qquad u = \sum e^{y - m} (y - m) \le 0, \qquad y = z / T,

rescaled by :math:`\alpha = e^{m - m'}` when the maximum grows to :math:`m'`
(:math:`u \leftarrow \alpha (u + s (m - m'))`, :math:`s \leftarrow \alpha s`). Then
:math:`\mathrm{lse} = m + \log s` and :math:`H = \log s - u / s`, a sum of two non-negative
terms (no cancellation for peaked rows). Accumulation is in float32. ``-inf`` logits contribute
nothing (their products are masked, not ``0 * inf``).

Backward, one read and one write per element: :math:`\partial H/\partial z = -\tfrac1T p
(\log p + H)` and :math:`\partial \log p_o / \partial z = \tfrac1T(\mathbb 1_o - p)`, with
:math:`\log p = z/T - \mathrm{lse}`, computed in float32 and rounded once.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch import Tensor

__all__ = ["entropy_backward", "entropy_forward", "lse_forward", "selective_backward", "usable"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# Triton is imported by _compiled() on the first CUDA call, never when this module loads
# (DESIGN.md: optional packages are imported inside the function that needs them), so
# `import inforeg.rl` does not pull it in. Until then the two kernels below are plain Python
# functions; Triton compiles them from their source and resolves `tl` in this module's globals,
# which _compiled() binds to `triton.language` first.
tl: Any = None


def usable(z: Tensor) -> bool:
    """True for a CUDA float32/16/bf16 tensor when Triton is importable and not disabled."""
    return (
        z.is_cuda
        and z.dtype in _DTYPES
        and os.environ.get("INFOREG_DISABLE_TRITON", "0") in ("", "0")
        and _compiled() is not None
    )


@functools.cache
def _compiled() -> tuple[Any, Any] | None:
    """``(forward kernel, backward kernel)`` wrapped by ``triton.jit``, or None without Triton."""
    global tl
    try:  # optional: Triton comes with CUDA builds of PyTorch
        import triton
        import triton.language
    except ImportError:  # CPU-only installs
        return None
    tl = triton.language
    return triton.jit(_fwd_kernel), triton.jit(_bwd_kernel)


def _launch(vocab: int) -> tuple[int, int]:
    # the next power of two >= vocab (triton.next_power_of_2), within [16, 4096]; masked lanes
    # beyond vocab
    block = max(16, min(4096, 1 << max(vocab - 1, 0).bit_length()))
    return block, (8 if block >= 2048 else 4)


def _fwd_kernel(
    z_ptr, stride, vocab, inv_t, ent_ptr, lse_ptr, WANT_ENT: tl.constexpr, BLOCK: tl.constexpr
):
    row = tl.program_id(0).to(tl.int64)
    base = z_ptr + row * stride
    m_vec = tl.full([BLOCK], -1.0e30, tl.float32)
    s_vec = tl.zeros([BLOCK], tl.float32)
    u_vec = tl.zeros([BLOCK], tl.float32)
    for off in range(0, vocab, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        x = tl.load(base + cols, mask=cols < vocab, other=float("-inf")).to(tl.float32)
        y = x * inv_t
        m_new = tl.maximum(m_vec, y)
        alpha = tl.exp(m_vec - m_new)
        e = tl.exp(y - m_new)
        if WANT_ENT:
            u_vec = alpha * (u_vec + s_vec * (m_vec - m_new)) + tl.where(
                e > 0, e * (y - m_new), 0.0
            )
        s_vec = alpha * s_vec + e
        m_vec = m_new
    m = tl.max(m_vec, 0)
    beta = tl.exp(m_vec - m)
    s = tl.sum(s_vec * beta, 0)
    log_s = tl.log(s)
    tl.store(lse_ptr + row, m + log_s)
    if WANT_ENT:
        u = tl.sum(beta * (u_vec + s_vec * (m_vec - m)), 0)
        tl.store(ent_ptr + row, log_s - u / s)


def _bwd_kernel(
    z_ptr,
    stride,
    gz_ptr,
    vocab,
    inv_t,
    lse_ptr,
    ent_ptr,
    g_ptr,
    tok_ptr,
    SELECTIVE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    base = z_ptr + row * stride
    out = gz_ptr + row * vocab
    lse = tl.load(lse_ptr + row)
    g = tl.load(g_ptr + row) * inv_t
    h = tl.load(ent_ptr + row)  # (lse again in the selective case: unused)
    tok = tl.load(tok_ptr + row)  # (a logit in the entropy case: unused)
    for off in range(0, vocab, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        mask = cols < vocab
        x = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
        lp = x * inv_t - lse
        p = tl.exp(lp)
        if SELECTIVE:
            val = tl.where(cols == tok, g - g * p, -g * p)
        else:
            val = tl.where(p > 0, -g * p * (lp + h), 0.0)
        tl.store(out + cols, val.to(gz_ptr.dtype.element_ty), mask=mask)


def _kernels() -> tuple[Any, Any]:
    kernels = _compiled()
    if kernels is None:  # only reached when usable() was not asked first
        raise ImportError("the fused CUDA entropy kernels need Triton (it ships with CUDA torch)")
    return kernels


def _rows_ready(z: Tensor) -> Tensor:
    return z if z.stride(-1) == 1 else z.contiguous()


def _forward(z: Tensor, inv_t: float, want_ent: bool) -> tuple[Tensor, Tensor]:
    z = _rows_ready(z)
    rows, vocab = z.shape
    lse = torch.empty(rows, dtype=torch.float32, device=z.device)
    ent = torch.empty(rows if want_ent else 1, dtype=torch.float32, device=z.device)
    block, warps = _launch(vocab)
    fwd, _ = _kernels()
    fwd[(rows,)](
        z, z.stride(0), vocab, inv_t, ent, lse, WANT_ENT=want_ent, BLOCK=block, num_warps=warps
    )
    return ent, lse


def entropy_forward(z: Tensor, inv_t: float) -> tuple[Tensor, Tensor]:
    """``(H, lse)`` per row of ``z (R, V)`` at temperature ``1 / inv_t``, float32."""
    return _forward(z, inv_t, True)


def lse_forward(z: Tensor, inv_t: float) -> Tensor:
    """``logsumexp(z / T)`` per row, float32."""
    return _forward(z, inv_t, False)[1]


def _backward(
    z: Tensor, lse: Tensor, grad: Tensor, inv_t: float, ent: Tensor | None, tok: Tensor | None
) -> Tensor:
    z = _rows_ready(z)
    rows, vocab = z.shape
    gz = torch.empty(rows, vocab, dtype=z.dtype, device=z.device)
    g = grad.to(torch.float32).contiguous()
    block, warps = _launch(vocab)
    _, bwd = _kernels()
    bwd[(rows,)](
        z,
        z.stride(0),
        gz,
        vocab,
        inv_t,
        lse,
        lse if ent is None else ent,
        g,
        z if tok is None else tok,
        SELECTIVE=tok is not None,
        BLOCK=block,
        num_warps=warps,
    )
    return gz


def entropy_backward(z: Tensor, lse: Tensor, ent: Tensor, grad: Tensor, inv_t: float) -> Tensor:
    """``grad * dH/dz`` for ``z (R, V)``, in the dtype of ``z``."""
    return _backward(z, lse, grad, inv_t, ent, None)


def selective_backward(z: Tensor, tok: Tensor, lse: Tensor, grad: Tensor, inv_t: float) -> Tensor:
    """``grad * d log p_tok / dz`` for ``z (R, V)``, in the dtype of ``z``."""
    return _backward(z, lse, grad, inv_t, None, tok.contiguous())
