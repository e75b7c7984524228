r"""Per-token log-probabilities and entropies straight from the LM head, without the logits.

RL fine-tuning computes, for every generated token, :math:`\log\pi(o_t)` and the policy entropy
from ``logits = hidden @ weight.T`` with a vocabulary of ~150k: the ``(T, V)`` logits (and their
gradient) are the largest tensors of the step. :func:`fused_linear_logprobs_entropy` never holds
more than one chunk of them: tokens go through the matmul ``chunk_size`` rows at a time, straight
into the fused entropy / log-softmax kernels of :mod:`inforeg.rl.entropy` (the C kernel on CPU,
Triton on CUDA; a chunked PyTorch path elsewhere), and only the per-token results are kept. The
backward pass recomputes each chunk's logits (one more matmul per chunk, the price of not storing
them), turns the upstream gradients into the chunk's logit gradient with the same kernels, and
folds it into the gradients of ``hidden``, ``weight`` and ``bias``. TRL's fused LM head and
Liger-Kernel's fused linear losses (CUDA) avoid the logits the same way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from inforeg.core.checks import check_int, check_positive, check_tensor
from inforeg.rl.entropy import selective_log_softmax, token_entropy

__all__ = ["default_lm_head_chunk", "fused_linear_logprobs_entropy"]

# One chunk of float32 logits is at most this many bytes. The backward holds two (the logits and
# their gradient): 2 x 32 MiB, 2.6% of the full logits at T = 4096, V = 151,936.
_CHUNK_BYTES = 1 << 25


def default_lm_head_chunk(vocab: int) -> int:
    """Tokens per chunk: about 32 MiB of float32 logits (at least 1 token).

    >>> default_lm_head_chunk(151_936)
    55
    """
    return max(1, _CHUNK_BYTES // (4 * max(vocab, 1)))


def _logits(h: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    return h @ weight.T if bias is None else torch.addmm(bias, h, weight.T)


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
        rows = hidden.shape[0]
        logp = hidden.new_empty(rows)
        ent = hidden.new_empty(rows)
        for lo in range(0, rows, chunk):
            hi = min(lo + chunk, rows)
            z = _logits(hidden[lo:hi], weight, bias)
            ent[lo:hi] = token_entropy(z, temperature)
            logp[lo:hi] = selective_log_softmax(z, tokens[lo:hi], temperature)
        ctx.save_for_backward(hidden, weight, bias, tokens)
        ctx.temperature, ctx.chunk = temperature, chunk
        return logp, ent

    @staticmethod
    def backward(ctx: Any, g_logp: Tensor, g_ent: Tensor) -> tuple[Tensor | None, ...]:
        hidden, weight, bias, tokens = ctx.saved_tensors
        need_h, need_w, need_b = ctx.needs_input_grad[:3]
        rows = hidden.shape[0]
        half = weight.dtype in (torch.float16, torch.bfloat16)
        acc = torch.float32 if half else weight.dtype  # accumulate over chunks in float32
        gh = torch.empty_like(hidden) if need_h else None
        gw = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        gb = torch.zeros(weight.shape[0], dtype=acc, device=weight.device) if need_b else None
        for lo in range(0, rows, ctx.chunk):
            hi = min(lo + ctx.chunk, rows)
            h = hidden[lo:hi]
            with torch.enable_grad():
                z = _logits(h, weight, bias).detach().requires_grad_(True)
                ent = token_entropy(z, ctx.temperature)
                logp = selective_log_softmax(z, tokens[lo:hi], ctx.temperature)
                objective = torch.dot(ent, g_ent[lo:hi]) + torch.dot(logp, g_logp[lo:hi])
                (gz,) = torch.autograd.grad(objective, z)
            if gh is not None:
                torch.mm(gz, weight, out=gh[lo:hi])
            if gw is not None:
                gw.addmm_(gz.T.to(acc), h.to(acc))
            if gb is not None:
                gb += gz.sum(0, dtype=acc)
        return (
            gh,
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
    ``hidden``, ``weight`` and ``bias``, without the ``(..., V)`` logits: ``chunk_size`` tokens
    at a time go through the matmul and the fused kernels, and the backward pass recomputes each
    chunk's logits. Extra memory is two chunks of logits (the logits and their gradient, in
    backward) plus a float32 accumulator for the weight gradient of half-precision weights; the
    weight gradient itself is as large as the weight, as with any LM head.

    Args:
        hidden: ``(..., D)`` floating hidden states (the LM head's input).
        weight: ``(V, D)`` LM-head weight, same dtype and device as ``hidden``.
        tokens: ``(...)`` integer token ids in ``[0, V)``, the leading shape of ``hidden``.
        bias: optional ``(V,)`` bias (default None).
        temperature: ``T > 0``; the logits are divided by it (default 1, TRL's and verl's
            convention for sampling temperature).
        chunk_size: tokens per chunk; default :func:`default_lm_head_chunk` (about 32 MiB of
            float32 logits per chunk).

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
        flat, weight, bias, tokens.reshape(-1).long(), t, chunk
    )
    return logp.view(lead), ent.view(lead)
