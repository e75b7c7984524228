"""SIREN: selective, self-anchored entropy regularisation (Jiang et al., 2025, arXiv 2509.25133).

"Rethinking Entropy Regularization in Large Reasoning Models". Official code: ``Linn3a/siren``
(a verl fork; ``dp_actor.py``: ``efficient_top_p_sampling``, ``mask_by_quantile``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_int, check_number, check_same_shape, check_tensor
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import masked_aggregate
from inforeg.rl import _cpu_entropy
from inforeg.rl.entropy import default_entropy_chunk, token_entropy

__all__ = [
    "SelectiveEntropyRegularizer",
    "anchored_penalty",
    "peak_entropy_mask",
    "selective_entropy",
    "top_p_entropy",
]


def _check_mask(mask: Tensor | None, like: Tensor, name_like: str) -> Tensor:
    if mask is None:
        return torch.ones(like.shape, dtype=torch.bool, device=like.device)
    check_tensor(mask, "mask", ndim=like.dim(), nonempty=False)
    check_same_shape(like, mask, name_like, "mask")
    return mask.bool()


def top_p_entropy(
    logits: Tensor, top_p: float = 0.8, top_k: int = 10000, temperature: float = 1.0
) -> Tensor:
    r"""SIREN's top-p entropy: the entropy of the policy renormalised on its nucleus.

    With :math:`p = \operatorname{softmax}(z/T)` sorted in decreasing order over the ``top_k``
    largest logits and cumulative sums :math:`c_j`, the kept set is the first :math:`m = \#\{j:
    c_j < p_\text{top}\}` tokens: **the token whose cumulative mass crosses** :math:`p_\text{top}`
    **is excluded** (unlike nucleus sampling), so the set is empty, and :math:`\hat H = 0`, when
    the top-1 probability is at least :math:`p_\text{top}`.

    .. math::

        q_v = \frac{p_v \mathbb 1[v \in S]}{\sum_{u\in S} p_u},\qquad
        \hat H = -\sum_{v\in S} q_v \log q_v .

    The choice of :math:`S` carries no gradient; :math:`q` is the softmax of the kept logits, so
    the gradient reaches only them. The authors' code adds ``1e-12`` inside the normaliser and
    the log; that changes values by ~1e-12 and is omitted here.

    Two paths compute the same set. **CPU float32/bfloat16** (contiguous rows, ``V >= 64``, a C
    compiler): a sort-free kernel (:mod:`inforeg.rl._cpu_entropy`). Since the kept set is a
    prefix of the sorted logits, it is :math:`\{z \ge t\}` for a threshold :math:`t`, and
    "mass :math:`< p_\text{top}` and count :math:`\le` ``top_k``" is monotone in :math:`t`;
    :math:`t` is found by bisection over the logits' ordered float keys. The row is read
    twice: once as :func:`~inforeg.rl.token_entropy`'s forward pass does (maximum, total mass
    and, for :class:`SelectiveEntropyRegularizer`'s statistic, the full entropy), then the
    values above a bound the nucleus cannot lie below are compacted with their exponentials
    (vectorised passes over that shrinking set follow), the last <= 32 values are sorted and
    scanned exactly as the sorted path does, and
    :math:`\hat H = \log S - \sum_{v\in S} e^{y_v} y_v / S` is summed over the kept set
    (masses in double precision, relative to the row maximum). **Elsewhere**
    (float64, float16, CUDA, strided rows): ``torch.topk(k=top_k, sorted=True)`` and a
    cumulative sum. Ties at the threshold: both keep the same number of tied tokens (so the
    same value); the kernel keeps the lowest indices among them, ``topk`` an order of its own,
    so the gradient may land on different (interchangeable) tokens of the tie. Where a
    cumulative mass lies within float32 rounding of ``top_p`` the two paths may keep one token
    more or less (the kernel's double sums are the closer to a float64 computation).

    Args:
        logits: ``(..., V)`` logits.
        top_p: :math:`p_\text{top}` in ``(0, 1]`` (SIREN ``entropy_topp`` = 0.8).
        top_k: candidates considered (``entropy_topk`` = 10000; capped at ``V``).
        temperature: ``T > 0``.

    Returns:
        ``(...)`` top-p entropies in nats (dtype of ``logits``; float32 inside for half types).
        Memory: kernel: a few rows of work space per thread; sorted path: one
        ``(..., min(top_k, V))`` tensor of sorted logits (plus one row chunk for the full
        log-sum-exp).

    Example (p = (0.5, 0.3, 0.15, 0.05): with ``top_p = 0.9`` the cumulative masses 0.5, 0.8
    keep two tokens, renormalised to (0.625, 0.375); with 0.5 the top-1 token alone is kept):

        >>> z = torch.tensor([0.5, 0.3, 0.15, 0.05], dtype=torch.float64).log()
        >>> print(f"{float(top_p_entropy(z, top_p=0.9)):.4f}")
        0.6616
        >>> float(top_p_entropy(z, top_p=0.5)) == 0.0
        True
    """
    return _top_p_and_full_entropy(logits, top_p, top_k, temperature, want_full=False)[0]


def _top_p_and_full_entropy(
    logits: Tensor, top_p: float, top_k: int, temperature: float, want_full: bool
) -> tuple[Tensor, Tensor | None]:
    """:func:`top_p_entropy` and, when ``want_full``, the detached full entropy per position
    (:func:`inforeg.rl.token_entropy`'s value): the kernel computes it in the pass over the row
    that finds the maximum; the other paths call ``token_entropy``."""
    check_tensor(logits, "logits", min_ndim=1, floating=True)
    p_top = check_number(top_p, "top_p", low=0.0, high=1.0, low_inclusive=False)
    k = min(check_int(top_k, "top_k", low=1), logits.shape[-1])
    t = check_number(temperature, "temperature", low=0.0, low_inclusive=False)
    flat = logits.reshape(-1, logits.shape[-1])
    if flat.shape[0] > 0 and _cpu_entropy.usable(flat):
        ent, full = _TopPEntropy.apply(flat, 1.0 / t, p_top, k, want_full)
        shape = logits.shape[:-1]
        full = None if full is None else full.to(logits.dtype).view(shape)
        return ent.to(logits.dtype).view(shape), full
    ent = _top_p_entropy_sorted(logits, p_top, k, t)
    return ent, token_entropy(logits.detach(), t) if want_full else None


class _TopPEntropy(torch.autograd.Function):
    """The C kernel's sort-free top-p entropy (CPU, float32/bfloat16) and, when asked, the full
    entropy (float32, no gradient)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, z: Tensor, inv_t: float, p_top: float, k: int, want_full: bool
    ) -> tuple[Tensor, Tensor | None]:
        ent, lse_kept, gt, req, full = _cpu_entropy.top_p_forward(z, inv_t, p_top, k, want_full)
        ctx.inv_t = inv_t
        ctx.save_for_backward(z, lse_kept, ent, gt, req)
        if full is not None:
            ctx.mark_non_differentiable(full)
        return ent, full

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: Tensor, *_: Tensor | None
    ) -> tuple[Tensor | None, None, None, None, None]:
        z, lse_kept, ent, gt, req = ctx.saved_tensors
        gz = _cpu_entropy.top_p_backward(z, lse_kept, ent, gt, req, grad, ctx.inv_t)
        return gz, None, None, None, None


def _top_p_entropy_sorted(logits: Tensor, p_top: float, k: int, t: float) -> Tensor:
    """The sorted (``topk``) path: float64, float16, CUDA, strided rows and ``V < 64``; it is
    also the reference the kernel is tested against."""
    acc = compute_dtype(logits)
    # topk of z / T is topk of z (T > 0): only the (..., K) values are upcast and kept
    vals = torch.topk(logits, k, dim=-1, sorted=True).values.to(acc) / t
    with torch.no_grad():  # full log-sum-exp, one row chunk at a time
        flat = logits.detach().reshape(-1, logits.shape[-1])
        chunk = default_entropy_chunk(logits.shape[-1], logits.device)
        lse_rows = [torch.logsumexp(c.to(acc) / t, dim=-1) for c in flat.split(chunk)]
        lse_full = torch.cat(lse_rows).view(*logits.shape[:-1], 1)
        cum = torch.cumsum(torch.exp(vals - lse_full), dim=-1)
        # masked (-inf) tokens never enter the set: with top_p = 1 the finite tokens' mass can
        # round below 1, and 0 * log 0 of a kept -inf token was NaN
        keep = (cum < p_top) & (vals > float("-inf"))
        # An empty set has entropy 0; keeping the top-1 token alone also gives exactly 0 and
        # avoids a log-sum-exp over nothing.
        keep[..., 0] = True
    masked = vals.masked_fill(~keep, float("-inf"))
    logq = torch.log_softmax(masked, dim=-1)
    q = torch.exp(logq)
    ent = -(q * logq.masked_fill(~keep, 0.0)).sum(dim=-1)
    return ent.to(logits.dtype)


def peak_entropy_mask(entropy: Tensor, mask: Tensor | None = None, quantile: float = 0.8) -> Tensor:
    r"""Per response, the tokens whose entropy exceeds the response's ``quantile``-quantile.

    :math:`\tau_i` = the ``quantile`` (linear interpolation) of ``entropy[i]`` over the real
    tokens of response ``i``; selected = ``entropy > tau_i`` (strict) **and** ``mask``. With
    ``quantile = 0.8`` (SIREN ``mask_ratio``) that is about the top 20 % of each response.
    (The authors' code does not AND with the response mask, relying on padded entropies being
    0; it is done explicitly here.)

    Args:
        entropy: ``(N, T)`` per-token entropies.
        mask: ``(N, T)`` 0/1 or None.
        quantile: in ``[0, 1]``.

    Returns:
        ``(N, T)`` bool selection (no gradient).
    """
    check_tensor(entropy, "entropy", ndim=2, floating=True)
    m = _check_mask(mask, entropy, "entropy")
    q = check_number(quantile, "quantile", low=0.0, high=1.0)
    with torch.no_grad():
        e = entropy.detach().float().masked_fill(~m, float("nan"))
        tau = torch.nanquantile(e, q, dim=1, keepdim=True, interpolation="linear")
        return (e > tau) & m


def anchored_penalty(value: Tensor, anchor: Tensor | float, coef: float = 0.005) -> Tensor:
    r"""SIREN's self-anchored squared form :math:`\beta\,(H_\text{sel} - H_\text{anc})^2`.

    A two-sided restoring force (its gradient :math:`2\beta(H_\text{sel}-H_\text{anc})` changes
    sign across the anchor), not a bonus. Example: ``H=1.0, anchor=0.8, beta=0.005`` gives
    ``2e-4`` with slope ``0.002``:

        >>> h = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
        >>> penalty = anchored_penalty(h, 0.8)
        >>> penalty.backward()
        >>> print(f"{float(penalty.detach()):.6f} {float(h.grad):.6f}")
        0.000200 0.002000
    """
    beta = check_number(coef, "coef", low=0.0)
    check_tensor(value, "value", floating=True)
    if not isinstance(anchor, Tensor):
        check_number(anchor, "anchor")
    anchor_t = (
        anchor.detach().to(value.dtype)
        if isinstance(anchor, Tensor)
        else value.new_full((), float(anchor))  # a fill: no host-to-device copy
    )
    return beta * (value - anchor_t) ** 2


def selective_entropy(
    logits: Tensor,
    mask: Tensor | None = None,
    top_p: float = 0.8,
    top_k: int = 10000,
    quantile: float = 0.8,
    mode: str = "seq-mean-token-mean",
    temperature: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """SIREN's statistic :math:`H_\\text{sel}`: the aggregated top-p entropy of the peak tokens.

    Returns ``(H_sel, top_p_entropies (N, T), selection (N, T) bool)``. With the default mode
    ``seq-mean-token-mean`` a response with no selected token counts as 0 (the authors' code
    divides by its count of selected tokens without a floor, which gives NaN there).
    """
    h_sel, ent, sel, _ = _selective_entropy(
        logits, mask, top_p, top_k, quantile, mode, temperature, want_full=False
    )
    return h_sel, ent, sel


def _selective_entropy(
    logits: Tensor,
    mask: Tensor | None,
    top_p: float,
    top_k: int,
    quantile: float,
    mode: str,
    temperature: float,
    want_full: bool,
) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    """:func:`selective_entropy` and, when ``want_full``, the detached full entropies ``(N, T)``
    (see :func:`_top_p_and_full_entropy`)."""
    check_tensor(logits, "logits", ndim=3, floating=True)
    ent, full = _top_p_and_full_entropy(logits, top_p, top_k, temperature, want_full)
    sel = peak_entropy_mask(ent, mask, quantile)
    return masked_aggregate(ent, sel, mode), ent, sel, full


class SelectiveEntropyRegularizer(nn.Module):
    r"""SIREN regulariser :math:`\beta\,(H_\text{sel} - H_\text{anc})^2`, added to the PG loss.

    Steps (code semantics of ``Linn3a/siren``): (1) top-p entropy :math:`\hat H_t` per position
    (:func:`top_p_entropy`, crossing token excluded); (2) per response, keep the tokens with
    :math:`\hat H_t` above the response's ``quantile`` (:func:`peak_entropy_mask`); (3)
    :math:`H_\text{sel}` = ``mode``-aggregate of :math:`\hat H` over the kept tokens
    (``seq-mean-token-mean`` in the code); the anchor :math:`H_\text{anc}` is the same statistic
    **at the first call** (training step 1, initial policy, no gradient), then kept fixed in the
    ``anchor`` buffer (``reset_anchor()`` or ``set_anchor(value)`` to change it). The first call
    therefore returns a zero loss with zero gradient.

    Paper vs code: the paper describes the masks and the self-anchored form; the exclusion of the
    crossing token, the step-1 anchor and the per-response quantile come from the code and are
    followed here. The code computes the statistic per micro-batch.

    Defaults (``exp_scripts/siren.sh``): ``top_p=0.8``, ``top_k=10000``, ``quantile=0.8``,
    ``coef=0.005``.

    Args:
        coef: :math:`\beta \ge 0`.
        top_p, top_k, quantile: as in :func:`top_p_entropy` / :func:`peak_entropy_mask`.
        mode: aggregation of :math:`\hat H` over the selected tokens.
        temperature: the logits are divided by it (use the sampling temperature).

    Forward:
        ``logits (N, T, V)``, ``mask (N, T)`` -> ``(loss, stats)``; ``stats`` holds detached
        tensors: ``entropy`` (exact full entropy, token-mean over ``mask``; on the CPU kernel
        path from the top-p kernel's first pass, :func:`~inforeg.rl.token_entropy`'s value),
        ``top_p_entropy`` (token-mean), ``selected_entropy`` (:math:`H_\text{sel}`),
        ``masked_fraction`` (share of real tokens selected), ``anchor`` and ``coefficient``.
    """

    anchor: Tensor

    def __init__(
        self,
        coef: float = 0.005,
        top_p: float = 0.8,
        top_k: int = 10000,
        quantile: float = 0.8,
        mode: str = "seq-mean-token-mean",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.coef = check_number(coef, "coef", low=0.0)
        self.top_p = check_number(top_p, "top_p", low=0.0, high=1.0, low_inclusive=False)
        self.top_k = check_int(top_k, "top_k", low=1)
        self.quantile = check_number(quantile, "quantile", low=0.0, high=1.0)
        masked_aggregate(torch.zeros(1, 1), None, mode)  # validates the mode
        self.mode = mode
        self.temperature = check_number(temperature, "temperature", low=0.0, low_inclusive=False)
        self.register_buffer("anchor", torch.tensor(float("nan"), dtype=torch.float64))

    def reset_anchor(self) -> None:
        """Forget the anchor; the next call sets it again."""
        self.anchor.fill_(float("nan"))

    def set_anchor(self, value: float) -> None:
        """Fix the anchor to ``value`` (nats)."""
        self.anchor.fill_(float(value))

    def forward(
        self, logits: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        h_sel, ent, sel, full = _selective_entropy(
            logits, mask, self.top_p, self.top_k, self.quantile, self.mode, self.temperature, True
        )
        with torch.no_grad():  # set the anchor at the first call without a host sync
            anchor = torch.where(
                torch.isnan(self.anchor), h_sel.detach().to(self.anchor.dtype), self.anchor
            )
            self.anchor.copy_(anchor)
        loss = anchored_penalty(h_sel, self.anchor, self.coef)
        with torch.no_grad():
            m = _check_mask(mask, ent, "top_p_entropy").to(ent.dtype)
            assert full is not None
            stats = {
                "entropy": masked_aggregate(full, m, "token-mean"),
                "top_p_entropy": masked_aggregate(ent.detach(), m, "token-mean"),
                "selected_entropy": h_sel.detach(),
                "masked_fraction": sel.sum() / m.sum().clamp_min(1.0),
                "anchor": self.anchor.clone(),
                "coefficient": h_sel.new_full((), self.coef),
            }
        return loss, stats
