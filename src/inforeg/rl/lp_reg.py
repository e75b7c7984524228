"""Lp-Reg: low-probability regularisation (Huang et al., 2025, arXiv 2510.03222).

"Low-probability Tokens Sustain Exploration in Reinforcement Learning with Verifiable Reward".
The main repository ``CarlanLark/Lp-Reg`` could not be read; the maths follows the authors' dev
repository ``CarlanLark/Lp-Reg-dev`` (``core_algos.py::compute_policy_loss_lp_reg``,
``dp_actor.py::apply_min_p``), whose README says it reproduces the paper.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from inforeg.core.checks import (
    check_choice,
    check_int,
    check_log_probs,
    check_number,
    check_same_shape,
    check_tensor,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import AGGREGATION_MODES, masked_aggregate
from inforeg.rl.entropy import check_token_ids, default_entropy_chunk, selective_log_softmax
from inforeg.rl.grpo import clipped_surrogate, kl_k3

__all__ = ["LowProbabilityRegularizer", "low_probability_loss", "min_p_proxy_logprobs"]


def min_p_proxy_logprobs(
    logits: Tensor,
    tokens: Tensor,
    min_p: float = 0.02,
    relative: bool = True,
    temperature: float = 1.0,
    chunk_size: int | None = None,
) -> Tensor:
    r"""Log-probability of the sampled token under Lp-Reg's proxy distribution (no gradient).

    The proxy keeps token :math:`v` iff :math:`\pi(v) \ge \kappa \max_u \pi(u)` (``relative``,
    the scripts' min-p rule) or :math:`\pi(v) \ge \kappa` (the ``"fixed"`` variant), and
    renormalises :math:`\pi` on the kept set:

    .. math::

        \pi_\text{proxy}(v) = \frac{\pi(v)\,\mathbb 1[v\ \text{kept}]}{\sum_{u\ \text{kept}}\pi(u)} .

    Example (``kappa = 0.1``): ``[0.5, 0.3, 0.19, 0.01] -> [0.50505, 0.30303, 0.19192, 0]``.
    Filtered tokens get ``-inf`` (the code sets filtered logits to ``-1e4`` before a
    log-softmax, i.e. about ``-1e4``). Computed row chunk by row chunk, in float32 for half
    types.

    Args:
        logits: ``(..., V)`` logits of the old/rollout policy (detached).
        tokens: ``(...)`` sampled token ids.
        min_p: :math:`\kappa` in ``(0, 1]`` (0.02 in the scripts, 0.1 config default).
        relative: the relative (``True``) or fixed threshold.
        temperature: ``T > 0`` applied to the logits first (the code uses 1).
        chunk_size: rows per chunk.

    Returns:
        ``(...)`` proxy log-probs in float32 (or float64 for float64 logits).

    Example (the case above; token 3 is filtered out):

        >>> z = torch.tensor([[0.5, 0.3, 0.19, 0.01]] * 2, dtype=torch.float64).log()
        >>> proxy = min_p_proxy_logprobs(z, torch.tensor([0, 3]), min_p=0.1)
        >>> [round(v, 5) for v in proxy.exp().tolist()]
        [0.50505, 0.0]
    """
    check_tensor(logits, "logits", min_ndim=1, floating=True)
    kappa = check_number(min_p, "min_p", low=0.0, high=1.0, low_inclusive=False)
    t = check_number(temperature, "temperature", low=0.0, low_inclusive=False)
    check_token_ids(tokens, logits)
    vocab = logits.shape[-1]
    flat = logits.detach().reshape(-1, vocab)
    tok = tokens.reshape(-1).long()
    chunk = (
        default_entropy_chunk(vocab, flat.device)
        if chunk_size is None
        else check_int(chunk_size, "chunk_size", low=1)
    )
    acc = compute_dtype(flat)
    out = torch.empty(flat.shape[0], dtype=acc, device=flat.device)
    log_k = math.log(kappa)
    for s in range(0, flat.shape[0], chunk):
        z = flat[s : s + chunk].to(acc) / t
        if relative:
            thr = z.amax(dim=-1, keepdim=True) + log_k
        else:
            thr = torch.logsumexp(z, dim=-1, keepdim=True) + log_k
        kept = z.masked_fill(z < thr, float("-inf"))
        lse = torch.logsumexp(kept, dim=-1)
        out[s : s + chunk] = kept.gather(1, tok[s : s + chunk].unsqueeze(1)).squeeze(1) - lse
    return out.view(tokens.shape)


def _select_low_prob_negatives(
    logp: Tensor, adv: Tensor, mask: Tensor, proxy_logp: Tensor, fraction: float
) -> tuple[Tensor, Tensor]:
    """Bool (N, T) selection and the count k, without host syncs."""
    with torch.no_grad():
        neg = mask & (adv < 0)
        n_neg = neg.sum()
        k = torch.clamp(torch.floor(n_neg.double() * fraction), min=1.0)
        vals = torch.where(neg, logp.detach().double(), float("inf")).reshape(-1)
        order = torch.argsort(vals, stable=True)
        ranks = torch.empty_like(order)
        ranks[order] = torch.arange(order.numel(), device=order.device)
        lowest = (ranks.view(logp.shape) < k) & neg
        sel = lowest & (logp.detach() < proxy_logp) & (k > 1)
    return sel, k


def low_probability_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    proxy_logp: Tensor,
    mask: Tensor | None = None,
    neg_fraction: float = 0.01,
    kl_coef: float = 1.0,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    kl_clamp: float = 10.0,
    mode: str = "token-mean",
) -> tuple[Tensor, dict[str, Tensor]]:
    r"""Lp-Reg policy loss: clipped surrogate, except on the regularised "spark" tokens.

    Among the real tokens with :math:`A < 0`, take the :math:`k = \max(1, \lfloor\rho\,N_\text{neg}
    \rfloor)` with the lowest current :math:`\log\pi_\theta` (selection detached), and keep those
    with :math:`\log\pi_\theta < \log\pi_\text{proxy}` (tokens that survived the min-p filter).
    **Nothing is regularised unless** :math:`k > 1` (the code's rule: below about 200 negative
    tokens at 1 %). A selected token's loss is

    .. math::

        \ell = -A\rho + \beta\,k_3,\qquad \Delta = \log\pi_\text{proxy} - \log\pi_\theta,\quad
        k_3 = \operatorname{clamp}(e^\Delta - \Delta - 1, -10, 10)

    (unclipped ratio); every other token gets :func:`clipped_surrogate`. :math:`\partial
    k_3/\partial\log\pi_\theta = 1 - \pi_\text{proxy}/\pi_\theta < 0` there, so the term raises
    the spark's probability toward the proxy. The selection depends on the (micro-)batch, as in
    the code, where it is done per micro-batch over its flattened valid tokens.

    Paper vs code: the paper speaks of a KL penalty toward the proxy; the code evaluates the k3
    estimator on the sampled token only (unbiased for :math:`\mathrm{KL}(\pi_\theta\|
    \pi_\text{proxy})` under :math:`\pi_\theta` sampling). The code's form is implemented.

    Args:
        logp, old_logp: ``(N, T)`` sampled-token log-probs (current with grad, rollout).
        advantages: ``(N,)`` or ``(N, T)``.
        proxy_logp: ``(N, T)`` from :func:`min_p_proxy_logprobs` (``-inf`` where filtered).
        mask: ``(N, T)`` 0/1 or None.
        neg_fraction: :math:`\rho_\text{neg}` in ``(0, 1]`` (0.01; 0.005 for Qwen2.5-32B).
        kl_coef: :math:`\beta` (1.0).
        eps_low, eps_high: clip ranges of the surrogate (the scripts use 1.0 and 9.0).
        kl_clamp: clamp of :math:`k_3`.
        mode: aggregation (token-mean in the code), or ``"none"`` for the ``(N, T)`` per-token
            loss (zero on masked tokens), e.g. to aggregate with a trainer's own normaliser.

    Returns:
        ``(loss, stats)``; stats (detached): ``masked_fraction`` (selected / real tokens),
        ``num_selected``, ``kl`` (mean :math:`k_3` over selected), ``entropy`` (token-mean of
        :math:`-\log\pi_\theta`, a sampled estimate), ``coefficient``.
    """
    check_tensor(logp, "logp", ndim=2, floating=True)
    check_log_probs(proxy_logp, "proxy_logp", ndim=2, floating=True)  # -inf: filtered out
    check_same_shape(logp, proxy_logp, "logp", "proxy_logp")
    rho = check_number(neg_fraction, "neg_fraction", low=0.0, high=1.0, low_inclusive=False)
    beta = check_number(kl_coef, "kl_coef", low=0.0)
    clamp = check_number(kl_clamp, "kl_clamp", low=0.0, low_inclusive=False)
    check_choice(mode, "mode", (*AGGREGATION_MODES, "none"))
    if mask is not None:
        check_tensor(mask, "mask", ndim=2, nonempty=False)
        check_same_shape(logp, mask, "logp", "mask")
    m = torch.ones_like(logp, dtype=torch.bool) if mask is None else mask.bool()
    surrogate = clipped_surrogate(logp, old_logp, advantages, None, eps_low, eps_high, mode="none")
    adv = advantages.detach().unsqueeze(1) if advantages.dim() == 1 else advantages.detach()
    adv = adv.expand_as(logp)
    proxy = proxy_logp.detach().to(logp.dtype)
    sel, _k = _select_low_prob_negatives(logp, adv, m, proxy, rho)
    # sanitise the proxy where not selected (it may be -inf): k3 = 0 there
    safe_proxy = torch.where(sel, proxy, logp.detach())
    k3 = kl_k3(logp, safe_proxy, clamp=clamp)
    ratio = torch.exp(torch.clamp(logp - old_logp.detach(), -20.0, 20.0))
    reg = -adv * ratio + beta * k3
    per_token = torch.where(sel, reg, surrogate)
    if mode == "none":
        loss = torch.where(m, per_token, 0.0)  # m is bool: NaN at masked positions stays out
    else:
        loss = masked_aggregate(per_token, m, mode)
    with torch.no_grad():
        mf = m.to(logp.dtype)
        n_sel = sel.sum()
        stats = {
            "masked_fraction": n_sel / mf.sum().clamp_min(1.0),
            "num_selected": n_sel,
            "kl": torch.where(sel, k3.detach(), 0.0).sum() / n_sel.clamp_min(1),
            # zero outside the mask first: a padded -inf log-prob would give inf * 0 = NaN
            "entropy": masked_aggregate(torch.where(m, -logp.detach(), 0.0), mf, "token-mean"),
            "coefficient": logp.new_full((), beta),
        }
    return loss, stats


class LowProbabilityRegularizer(nn.Module):
    r"""Lp-Reg as a module: proxy from the old logits, then :func:`low_probability_loss`.

    Forward:
        ``logits (N, T, V)`` (current policy, with grad), ``tokens (N, T)``, ``old_logp (N, T)``,
        ``advantages (N,)`` or ``(N, T)``, ``mask (N, T)``, optional ``old_logits`` (default:
        ``logits.detach()``, exact for one update per rollout) -> ``(loss, stats)``. The proxy
        uses ``temperature`` too (the code computes it at 1).

    Defaults (``recipe/lp_reg`` scripts): ``min_p=0.02`` relative, ``neg_fraction=0.01``,
    ``kl_coef=1.0``, ``eps_low=1.0``, ``eps_high=9.0`` (ratio clamped to [0, 10], in practice no
    clipping), token-mean.
    """

    def __init__(
        self,
        min_p: float = 0.02,
        relative: bool = True,
        neg_fraction: float = 0.01,
        kl_coef: float = 1.0,
        eps_low: float = 1.0,
        eps_high: float = 9.0,
        kl_clamp: float = 10.0,
        mode: str = "token-mean",
        temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.min_p = check_number(min_p, "min_p", low=0.0, high=1.0, low_inclusive=False)
        self.relative = bool(relative)
        self.neg_fraction = check_number(
            neg_fraction, "neg_fraction", low=0.0, high=1.0, low_inclusive=False
        )
        self.kl_coef = check_number(kl_coef, "kl_coef", low=0.0)
        self.eps_low = check_number(eps_low, "eps_low", low=0.0, high=1.0)
        self.eps_high = check_number(eps_high, "eps_high", low=0.0)
        self.kl_clamp = check_number(kl_clamp, "kl_clamp", low=0.0, low_inclusive=False)
        check_choice(mode, "mode", AGGREGATION_MODES)
        self.mode = mode
        self.temperature = check_number(temperature, "temperature", low=0.0, low_inclusive=False)

    def forward(
        self,
        logits: Tensor,
        tokens: Tensor,
        old_logp: Tensor,
        advantages: Tensor,
        mask: Tensor | None = None,
        old_logits: Tensor | None = None,
    ) -> tuple[Tensor, dict[str, Tensor]]:
        check_tensor(logits, "logits", ndim=3, floating=True)
        logp = selective_log_softmax(logits, tokens, self.temperature)
        src = logits.detach() if old_logits is None else old_logits.detach()
        if src.shape != logits.shape:
            raise ValueError(
                f"old_logits: expected shape {tuple(logits.shape)}, got {tuple(src.shape)}"
            )
        proxy = min_p_proxy_logprobs(src, tokens, self.min_p, self.relative, self.temperature)
        return low_probability_loss(
            logp,
            old_logp,
            advantages,
            proxy,
            mask,
            self.neg_fraction,
            self.kl_coef,
            self.eps_low,
            self.eps_high,
            self.kl_clamp,
            self.mode,
        )
