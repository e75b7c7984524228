"""GRPO loss core as in TRL's ``GRPOTrainer`` and verl: advantages, clipped surrogate, k3 KL,
token/sequence aggregation.

Shapes: ``N = B * G`` responses (``B`` prompts, ``G`` responses per prompt, grouped
contiguously: responses ``g*G .. g*G + G - 1`` belong to prompt ``g``), ``T`` padded response
length; per-token tensors are ``(N, T)`` and ``mask`` is 1 on real response tokens.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor

from inforeg.core.checks import (
    check_choice,
    check_int,
    check_number,
    check_positive,
    check_same_shape,
    check_tensor,
)
from inforeg.core.dtypes import compute_dtype
from inforeg.core.reduce import AGGREGATION_MODES, masked_aggregate

__all__ = ["aggregate", "clipped_surrogate", "grpo_advantages", "kl_k3"]

AdvantageScale = Literal["group", "batch", "none"]


def aggregate(
    loss: Tensor, mask: Tensor | None, mode: str = "token-mean", norm: float | None = None
) -> Tensor:
    r"""Aggregate per-token values ``(N, T)`` over real tokens (a thin wrapper of
    :func:`inforeg.core.reduce.masked_aggregate`).

    With :math:`L_i = \sum_t m_{it}\ell_{it}` and :math:`n_i = \sum_t m_{it}`:

    - ``token-mean`` (verl default, TRL ``"bnpo"``): :math:`\sum_i L_i / \sum_i n_i`;
    - ``seq-mean-token-mean`` (original GRPO, TRL ``"grpo"``): :math:`\frac1N\sum_i L_i/n_i`;
    - ``seq-mean-token-sum``: :math:`\frac1N\sum_i L_i`;
    - ``seq-mean-token-sum-norm`` (Dr. GRPO, TRL ``"dr_grpo"``): :math:`\sum_i L_i / (N\cdot
      \text{norm})`, ``norm`` = the padded length ``T`` unless given (TRL uses the maximum
      completion length; current verl a constant ``loss_scale_factor``).

    TRL's ``"dapo"`` (its current default) divides the sum by the number of completion tokens of
    the whole generation batch across processes: use ``token-mean`` on the local batch and
    rescale, or pass the global count yourself.

    Args:
        loss: ``(N, T)`` per-token values.
        mask: ``(N, T)`` 0/1 (bool or float) or None (all tokens count).
        mode: one of ``token-mean``, ``seq-mean-token-mean``, ``seq-mean-token-sum``,
            ``seq-mean-token-sum-norm``.
        norm: the constant of ``seq-mean-token-sum-norm``.

    Returns:
        A scalar. Responses without real tokens count as 0; an all-masked batch gives 0.
    """
    check_tensor(loss, "loss", ndim=2, floating=True, nonempty=False)
    return masked_aggregate(loss, mask, mode, norm)


def grpo_advantages(
    rewards: Tensor, group_size: int, scale: AdvantageScale = "group", eps: float = 1e-4
) -> Tensor:
    r"""Group-relative advantages of one scalar reward per response.

    .. math::

        A_i = \frac{r_i - \operatorname{mean}_{g(i)} r}{\operatorname{std}_{g(i)} r + \varepsilon}

    with the **unbiased** (Bessel, ``N-1``) standard deviation, as TRL and verl. ``scale``
    follows TRL's ``scale_rewards``: ``"group"`` (default) divides by the group's std,
    ``"batch"`` by the std of all rewards in the batch, ``"none"`` does not divide (Dr. GRPO;
    verl ``norm_adv_by_std_in_grpo=False``). A group of size 1 gets mean 0 and std 1, as in verl,
    so its advantage is its reward over :math:`1 + \varepsilon` (TRL 1.16 gives 0 there: the
    group's own mean and a std of 0). ``eps`` is TRL's 1e-4 (verl uses 1e-6). A group whose rewards are
    all equal gets advantages of exactly 0, also with ``eps = 0`` (TRL and verl give the
    rounding error of the group mean divided by ``eps``: 6e-4 for sixteen float32 rewards of
    0.7 with TRL's eps).

    Example: rewards ``[1, 0, 0, 0]`` in one group give ``[1.5, -0.5, -0.5, -0.5]``.

    Args:
        rewards: ``(N,)`` rewards, groups contiguous.
        group_size: ``G``; must divide ``N``.
        scale: ``"group"``, ``"batch"`` or ``"none"``.
        eps: added to the std.

    Returns:
        ``(N,)`` advantages (broadcast them over a response's tokens with ``A[:, None]``).

    Example (group mean 1/4, unbiased std 1/2; a constant group gets 0):

        >>> r = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0])
        >>> grpo_advantages(r, 4, eps=0.0)[:4].tolist()
        [1.5, -0.5, -0.5, -0.5]
        >>> [round(v, 4) for v in grpo_advantages(r, 4).tolist()]
        [1.4997, -0.4999, -0.4999, -0.4999, 0.0, 0.0, 0.0, 0.0]
    """
    check_tensor(rewards, "rewards", ndim=1, floating=True)
    g = check_int(group_size, "group_size", low=1)
    check_choice(scale, "scale", ("group", "batch", "none"))
    eps = check_number(eps, "eps", low=0.0)
    n = rewards.shape[0]
    if n % g != 0:
        raise ValueError(f"group_size: expected a divisor of the number of rewards {n}, got {g}")
    r = rewards.view(-1, g)
    if g == 1:
        mean = torch.zeros_like(r)
        std = torch.ones_like(r)
    else:
        # Welford's mean (std_mean) of a constant group is its value exactly, so its advantages
        # are exactly 0; r.mean() can be an ulp off, which / (0 + eps) makes 6e-4 (float32 0.7s,
        # eps 1e-4) or 0.06 (verl's eps 1e-6), with one sign for the whole group
        std, mean = torch.std_mean(r, dim=1, keepdim=True)
    centred = r - mean
    if scale == "none":
        return centred.view(n)
    if scale == "batch":
        std = rewards.std() if n > 1 else torch.ones((), dtype=rewards.dtype)
    denom = std + eps
    # eps = 0 and zero spread: 0 / 0 for advantages that are 0
    return (centred / torch.where(denom > 0, denom, 1.0)).view(n)


def _broadcast_adv(advantages: Tensor, like: Tensor) -> Tensor:
    check_tensor(advantages, "advantages", ndim=(1, 2), floating=True)
    if advantages.dim() == 1:
        if advantages.shape[0] != like.shape[0]:
            raise ValueError(
                f"advantages: expected {like.shape[0]} values (one per response), got {advantages.shape[0]}"
            )
        return advantages.unsqueeze(1)
    check_same_shape(like, advantages, "logp", "advantages")
    return advantages


def _log_ratio(logp: Tensor, other_logp: Tensor) -> Tensor:
    """``logp - other_logp``, with 0 where both are ``-inf``: a token outside both supports (masked
    under both policies) has ratio 1, not ``exp(-inf - -inf) = NaN``."""
    outside_both = torch.isneginf(logp) & torch.isneginf(other_logp)
    return torch.where(outside_both, 0.0, logp - other_logp)


def clipped_surrogate(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor | None = None,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    dual_clip: float | None = None,
    mode: str = "token-mean",
    norm: float | None = None,
) -> Tensor:
    r"""PPO/GRPO clipped surrogate (a loss, to minimise) per token, then aggregated.

    .. math::

        \rho = e^{\operatorname{clamp}(\log\pi_\theta - \log\pi_\text{old},\,-20,\,20)},\quad
        \ell = -\min\big(\rho A,\ \operatorname{clip}(\rho, 1-\epsilon_\text{low},
        1+\epsilon_\text{high})A\big)

    and with ``dual_clip = c`` (verl's ``clip_ratio_c``, 3.0 there) :math:`\ell \leftarrow
    \min(\ell, -cA)` where :math:`A<0`. Defaults: :math:`\epsilon_\text{low} =
    \epsilon_\text{high} = 0.2` (TRL ``epsilon``/``epsilon_high``, verl ``clip_ratio_low/high``);
    "clip-higher" is ``eps_high > eps_low``. With one update per rollout (``logp == old_logp``
    in value) the gradient is :math:`-A\nabla\log\pi` (REINFORCE with the group baseline).

    Args:
        logp: ``(N, T)`` log-probs of the sampled tokens under the current policy (with grad).
        old_logp: ``(N, T)`` the same under the rollout policy (treated as a constant).
        advantages: ``(N,)`` per response or ``(N, T)`` per token.
        mask: ``(N, T)`` 0/1, or None.
        eps_low: lower clip range, ``0 <= eps_low <= 1``.
        eps_high: upper clip range, ``>= 0``.
        dual_clip: ``c > 1`` or None (off).
        mode: an aggregation mode (see :func:`aggregate`), or ``"none"`` for the ``(N, T)``
            per-token loss (zero on masked tokens).
        norm: constant of ``seq-mean-token-sum-norm``.

    Returns:
        A scalar (or ``(N, T)`` for ``mode="none"``).

    Example (ratio 1.5: clipped to 1.2 when ``A = 1``; kept at 1.5 when ``A = -1``):

        >>> import math
        >>> logp = torch.tensor([[math.log(1.5)], [math.log(1.5)]], dtype=torch.float64)
        >>> adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
        >>> loss = clipped_surrogate(logp, torch.zeros_like(logp), adv, mode="none")
        >>> [round(v, 4) for v in loss.view(-1).tolist()]
        [-1.2, 1.5]
    """
    check_tensor(logp, "logp", ndim=2, floating=True)
    check_tensor(old_logp, "old_logp", ndim=2, floating=True)
    check_same_shape(logp, old_logp, "logp", "old_logp")
    adv = _broadcast_adv(advantages, logp)
    lo = check_number(eps_low, "eps_low", low=0.0, high=1.0)
    hi = check_number(eps_high, "eps_high", low=0.0)
    if dual_clip is not None:
        dual = check_number(dual_clip, "dual_clip", low=1.0, low_inclusive=False)
    check_choice(mode, "mode", (*AGGREGATION_MODES, "none"))
    if mask is not None:
        check_tensor(mask, "mask", ndim=2, nonempty=False)
        check_same_shape(logp, mask, "logp", "mask")
    ratio = torch.exp(torch.clamp(_log_ratio(logp, old_logp.detach()), -20.0, 20.0))
    adv = adv.detach()
    loss = torch.maximum(-adv * ratio, -adv * torch.clamp(ratio, 1.0 - lo, 1.0 + hi))
    if dual_clip is not None:
        loss = torch.where(adv < 0, torch.minimum(loss, -adv * dual), loss)
    if mode == "none":
        return loss if mask is None else torch.where(mask != 0, loss * mask.to(loss.dtype), 0.0)
    return masked_aggregate(loss, mask, mode, norm)


def kl_k3(logp: Tensor, ref_logp: Tensor, clamp: float | None = None) -> Tensor:
    r"""Per-token k3 estimator of :math:`\mathrm{KL}(\pi_\theta\,\|\,\pi_\text{ref})` (Schulman).

    .. math::

        \Delta = \log\pi_\text{ref} - \log\pi_\theta,\qquad k_3 = e^{\Delta} - \Delta - 1 \ge 0,

    zero iff the log-probs are equal; unbiased for the KL when the token is sampled from
    :math:`\pi_\theta`. TRL adds ``beta * k3`` per token before aggregation (``beta`` default
    0.0), with this plain formula and no clamp; verl's ``low_var_kl`` clamps :math:`\Delta` to
    ``[-20, 20]`` and the result to ``[-10, 10]``: pass ``clamp=10.0`` for that.

    Range and masked tokens. The default (TRL's formula) is exact wherever the result is
    representable; the value is ``+inf`` for :math:`\Delta \ge 88` in float32 (709 in
    float64), where :math:`e^\Delta` overflows or nearly does, as in TRL but never NaN, with a
    zero gradient there. With ``clamp`` the value is verl's, finite for any input. A ``-inf``
    log-prob (a masked token) follows the limit: ``+inf`` where only one of the two log-probs
    is ``-inf`` (the clamped form gives verl's bound), and 0 where both are (the token lies
    outside both supports). Gradients of the finite entries are unaffected by the others (no
    ``inf - inf`` or ``0 * inf`` reaches autograd).

    Args:
        logp: log-probs of the sampled tokens under the current policy, any shape.
        ref_logp: the same under the reference policy, same shape.
        clamp: clamp the result to ``[-clamp, clamp]`` (and :math:`\Delta` to ``[-20, 20]``)
            as verl; None (default) for the plain estimator, as TRL.

    Returns:
        Per-token values, same shape and dtype as ``logp`` (computed in float32 for half input).

    Example (:math:`\Delta = \log 2`: :math:`2 - \log 2 - 1`; a token masked under both
    policies: 0; under the current one only: ``+inf``, or verl's bound 10 with ``clamp``):

        >>> logp = torch.tensor([0.0, -math.inf, -math.inf])
        >>> ref = torch.tensor([math.log(2.0), -math.inf, 0.0])
        >>> kl_k3(logp, ref)
        tensor([0.3069, 0.0000,    inf])
        >>> kl_k3(logp, ref, clamp=10.0)
        tensor([ 0.3069,  0.0000, 10.0000])
    """
    check_tensor(logp, "logp", floating=True, nonempty=False)
    check_tensor(ref_logp, "ref_logp", floating=True, nonempty=False)
    check_same_shape(logp, ref_logp, "logp", "ref_logp")
    c = None if clamp is None else check_positive(clamp, "clamp")
    dtype = compute_dtype(logp, ref_logp)
    lp, ref = logp.to(dtype), ref_logp.to(dtype)
    delta = _log_ratio(ref, lp)
    if c is not None:
        delta = torch.clamp(delta, -20.0, 20.0)
        return torch.clamp(torch.expm1(delta) - delta, -c, c).to(logp.dtype)
    # Where e^delta overflows (delta above floor(log max)) or delta is +-inf the value is +inf
    # (NaN stays NaN) and the formula sees 0, so autograd never meets inf - inf or 0 * inf.
    ok = (delta > -math.inf) & (delta < math.floor(math.log(torch.finfo(dtype).max)))
    safe = torch.where(ok, delta, 0.0)
    k3 = torch.where(ok, torch.expm1(safe) - safe, delta.detach().abs() * math.inf)
    return k3.to(logp.dtype)
