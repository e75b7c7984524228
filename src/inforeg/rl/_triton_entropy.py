r"""Fused single-pass CUDA kernels (Triton) for the token entropy and the row log-sum-exp.

Used by :mod:`inforeg.rl.entropy` for CUDA tensors in float32/float16/bfloat16 when Triton is
importable (it ships with CUDA builds of PyTorch); everything else takes the chunked PyTorch
path. Set ``INFOREG_DISABLE_TRITON=1`` to force that path.

One program per row reads the logits once, keeping per-lane running statistics relative to the
lane's running maximum :math:`m` of the logits (an online softmax):

.. math::

    s = \sum e^{y}, \qquad u = \sum e^{y} y \le 0, \qquad y = (z - m) / T,

rescaled by :math:`\alpha = e^{d}`, :math:`d = (m - m') / T`, when the maximum grows to
:math:`m'` (:math:`u \leftarrow \alpha (u + s d)`, :math:`s \leftarrow \alpha s`). Then
:math:`\mathrm{lse} = m / T + \log s` (formed in float64 from the row's m and log s) and
:math:`H = \log s - u / s`, a sum of two non-negative terms (no cancellation for peaked rows).
Accumulation is in float32. ``-inf`` logits contribute nothing (their products are masked, not
``0 * inf``). Shifting the logits before scaling keeps the exponents near the top of a row to
the rounding of small numbers at any logit size or temperature.

Backward, one read and one write per element: :math:`\partial H/\partial z = -\tfrac1T p
(\log p + H)` and :math:`\partial \log p_o / \partial z = \tfrac1T(\mathbb 1_o - p)`, with
:math:`\log p = (z - z_r)/T - l_r` (``inforeg.rl._lse_ref``: :math:`z_r = \mathrm{lse}\,T`),
computed in float32 and rounded once.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
from torch import Tensor

from inforeg.rl._lse_ref import lse_ref

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
    z_ptr, stride, vocab, inv_t, ent_ptr, max_ptr, log_s_ptr, WANT_ENT: tl.constexpr,
    BLOCK: tl.constexpr,
):  # fmt: skip
    # Online softmax per lane against the running maximum of the logits themselves (not of z/T):
    # every exponent is (x - max) / T, so near the top it has the rounding of a small number.
    row = tl.program_id(0).to(tl.int64)
    base = z_ptr + row * stride
    m_vec = tl.full([BLOCK], -1.0e30, tl.float32)
    s_vec = tl.zeros([BLOCK], tl.float32)
    u_vec = tl.zeros([BLOCK], tl.float32)
    for off in range(0, vocab, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        x = tl.load(base + cols, mask=cols < vocab, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m_vec, x)
        shift = (m_vec - m_new) * inv_t
        alpha = tl.exp(shift)
        y = (x - m_new) * inv_t
        e = tl.exp(y)
        if WANT_ENT:
            u_vec = alpha * (u_vec + tl.where(s_vec > 0, s_vec * shift, 0.0)) + tl.where(
                e > 0, e * y, 0.0
            )
        s_vec = alpha * s_vec + e
        m_vec = m_new
    m = tl.max(m_vec, 0)
    d = (m_vec - m) * inv_t
    beta = tl.exp(d)
    s = tl.sum(s_vec * beta, 0)
    log_s = tl.log(s)
    tl.store(max_ptr + row, m)
    tl.store(log_s_ptr + row, log_s)
    if WANT_ENT:
        u = tl.sum(beta * (u_vec + tl.where(s_vec > 0, s_vec * d, 0.0)), 0)
        tl.store(ent_ptr + row, log_s - u / s)


def _bwd_kernel(
    z_ptr,
    stride,
    gz_ptr,
    vocab,
    inv_t,
    zr_ptr,
    lr_ptr,
    ent_ptr,
    g_ptr,
    tok_ptr,
    SELECTIVE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    # log p = (x - zr) / T - lr (see inforeg.rl._lse_ref): small near the top of the row
    row = tl.program_id(0).to(tl.int64)
    base = z_ptr + row * stride
    out = gz_ptr + row * vocab
    zr = tl.load(zr_ptr + row)
    lr = tl.load(lr_ptr + row)
    g = tl.load(g_ptr + row) * inv_t
    h = tl.load(ent_ptr + row)  # (lr again in the selective case: unused)
    tok = tl.load(tok_ptr + row)  # (a logit in the entropy case: unused)
    for off in range(0, vocab, BLOCK):
        cols = off + tl.arange(0, BLOCK)
        mask = cols < vocab
        x = tl.load(base + cols, mask=mask, other=0.0).to(tl.float32)
        lp = (x - zr) * inv_t - lr
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
    top, log_s = (torch.empty(rows, dtype=torch.float32, device=z.device) for _ in range(2))
    ent = torch.empty(rows if want_ent else 1, dtype=torch.float32, device=z.device)
    block, warps = _launch(vocab)
    fwd, _ = _kernels()
    fwd[(rows,)](
        z, z.stride(0), vocab, inv_t, ent, top, log_s, WANT_ENT=want_ent, BLOCK=block,
        num_warps=warps,
    )  # fmt: skip
    # lse = max / T + log s in float64: a float32 lse of 1e3 would be off by 3e-5
    return ent, top.double().mul_(inv_t).add_(log_s)


def entropy_forward(z: Tensor, inv_t: float) -> tuple[Tensor, Tensor]:
    """``(H, lse)`` per row of ``z (R, V)`` at temperature ``1 / inv_t``: H float32, lse
    float64."""
    return _forward(z, inv_t, True)


def lse_forward(z: Tensor, inv_t: float) -> Tensor:
    """``logsumexp(z / T)`` per row, float64."""
    return _forward(z, inv_t, False)[1]


def _backward(
    z: Tensor, lse: Tensor, grad: Tensor, inv_t: float, ent: Tensor | None, tok: Tensor | None
) -> Tensor:
    z = _rows_ready(z)
    rows, vocab = z.shape
    gz = torch.empty(rows, vocab, dtype=z.dtype, device=z.device)
    g = grad.to(torch.float32).contiguous()
    zr, lr = lse_ref(lse, inv_t, torch.float32)
    block, warps = _launch(vocab)
    _, bwd = _kernels()
    bwd[(rows,)](
        z,
        z.stride(0),
        gz,
        vocab,
        inv_t,
        zr,
        lr,
        lr if ent is None else ent,
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
