r"""Multimodal Competition Regulariser (MCR): the latent-permutation JSD game.

From Kontras et al., "Balancing Multimodal Training Through Game-Theoretic Regularization"
(arXiv 2411.07335; NeurIPS 2025); code kkontras/MCR (``Bias_Infusion_MCR``). Two encoders give
:math:`z_a, z_v \in \mathbb{R}^{B \times d}`; a late linear fusion gives
:math:`\ell = f_a(z_a) + f_v(z_v) + b`. Shuffling one modality's latent across the batch (S random
permutations π) samples it from its marginal; the Jensen-Shannon divergence between the shuffled and
the original predictions estimates that modality's task information given the other:

.. math::

    J_{m, g} = \frac{1}{SB}\sum_{s, i} \mathrm{JSD}\big(\mathrm{softmax}\,\ell^{\pi_s, m}_i \,\big\|\,
        \mathrm{softmax}\,\ell_i\big),\qquad \mathrm{JSD}(p, q) = \tfrac12 \mathrm{KL}(p\|m) +
        \tfrac12 \mathrm{KL}(q\|m),\ m = \tfrac{p+q}{2}

where m ∈ {a, v} is the shuffled modality and g the gradient route (into a only: :math:`z_v`
detached; into v only; or both). Games (λ = ``weight``):

- greedy: :math:`\lambda(-J_{a,a} + J_{a,v} - J_{v,v} + J_{v,a})` (each encoder raises its own
  importance and lowers the other's);
- independent: :math:`\lambda(-J_{a,a} - J_{v,v})`;
- collaborative: :math:`\lambda(-J_{a,both} - J_{v,both})`.

JSD in nats, in [0, log 2], computed in log space (no 1e-20 clamp needed). The library fixes the
three bugs of the authors' standalone file: λ is used as given (the file stores ``l > 0``, a
boolean, so λ = 1), the bias is added to the shuffled logits as well as to the base ones, and no
hidden device attribute is needed. Only the permutation game :math:`L_{MIPD}` is implemented here;
the paper's total loss also has the CE terms, a supervised contrastive term and a feature
reconstruction term (``contr_coeff``, ``lib``), which stay in the user's training loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from inforeg.core.checks import (
    check_choice,
    check_int,
    check_number,
    check_same_length,
    check_same_shape,
    check_tensor,
)
from inforeg.core.dtypes import upcast
from inforeg.core.logspace import kl_terms

__all__ = ["MCRRegularizer", "jensen_shannon_logits", "permutation_jsd"]

Head = Callable[[Tensor], Tensor]


def jensen_shannon_logits(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """Row-wise JSD (nats) between softmax(logits_p) and softmax(logits_q), averaged over rows.

    Masked (``-inf``) logits contribute 0 log 0 = 0 (finite value and gradient); an empty batch
    raises ``ValueError`` (the mean over no rows is undefined).

    Example (``p = (1/2, 1/2)``, ``q = (3/4, 1/4)``; far-apart one-hot rows give ``log 2``):

        >>> p = torch.zeros(1, 2, dtype=torch.float64)
        >>> q = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
        >>> print(f"{float(jensen_shannon_logits(p, q)):.4f}")
        0.0338
        >>> far = torch.tensor([[100.0, -100.0]], dtype=torch.float64)
        >>> print(f"{float(jensen_shannon_logits(far, -far)):.4f}")
        0.6931
    """
    check_tensor(logits_p, "logits_p", min_ndim=1, floating=True)  # empty batch: ValueError
    check_tensor(logits_q, "logits_q", min_ndim=1, floating=True)
    check_same_shape(logits_p, logits_q, "logits_p", "logits_q")
    lp = F.log_softmax(upcast(logits_p), -1)
    lq = F.log_softmax(logits_q.to(lp.dtype), -1)
    # A class masked in both rows (-inf, -inf) would give logsumexp a NaN gradient; its terms
    # below are 0 whatever lm is there, so lm is taken at (0, 0) instead.
    both = (lp == float("-inf")) & (lq == float("-inf"))
    lm = torch.logsumexp(torch.stack((lp.masked_fill(both, 0.0), lq.masked_fill(both, 0.0))), 0)
    lm = lm - math.log(2.0)
    kl_p = kl_terms(lp, lm).sum(-1)  # masked (-inf) logits contribute 0 log 0 = 0
    kl_q = kl_terms(lq, lm).sum(-1)
    return (0.5 * (kl_p + kl_q)).mean().to(logits_p.dtype)


def permutation_jsd(
    z_a: Tensor,
    z_v: Tensor,
    head_a: Head,
    head_v: Head,
    bias: Tensor | None = None,
    perms: Tensor | None = None,
    num_samples: int = 32,
    generator: torch.Generator | None = None,
) -> dict[str, Tensor]:
    """All J terms: keys ``"a,a"``, ``"a,v"``, ``"a,both"``, ``"v,v"``, ``"v,a"``, ``"v,both"``.

    The first letter is the shuffled modality, the second the gradient route.

    Args:
        z_a, z_v: latents (B, d_a), (B, d_v).
        head_a, head_v: the late-fusion halves (row-wise maps to (B, C) logits, e.g. Linear layers).
        bias: fusion bias (C,), added to every logit set.
        perms: (S, B) permutations to use (default: ``num_samples`` random ones).
        num_samples: S when ``perms`` is None.
        generator: RNG for the permutations.
    """
    check_tensor(z_a, "z_a", ndim=2, floating=True)
    check_tensor(z_v, "z_v", ndim=2, floating=True)
    b = z_a.shape[0]
    check_same_length(z_a, z_v, "z_a", "z_v")
    if perms is None:
        check_int(num_samples, "num_samples", low=1)
        perms = torch.stack(
            [torch.randperm(b, generator=generator) for _ in range(num_samples)]
        ).to(z_a.device)
    elif perms.dim() != 2 or perms.shape[1] != b:
        raise ValueError(f"perms: expected shape (S, {b}), got {tuple(perms.shape)}")
    flat = perms.reshape(-1)
    rep = torch.arange(b, device=z_a.device).repeat(perms.shape[0])
    out: dict[str, Tensor] = {}
    for route in ("a", "v", "both"):
        la = head_a(z_a if route in ("a", "both") else z_a.detach())
        lv = head_v(z_v if route in ("v", "both") else z_v.detach())
        base = la[rep] + lv[rep]
        shuf_a = la[flat] + lv[rep]
        shuf_v = la[rep] + lv[flat]
        if bias is not None:
            base, shuf_a, shuf_v = base + bias, shuf_a + bias, shuf_v + bias
        out[f"a,{route}"] = jensen_shannon_logits(shuf_a, base)
        out[f"v,{route}"] = jensen_shannon_logits(shuf_v, base)
    return out


class MCRRegularizer(nn.Module):
    """The MCR permutation game L_MIPD (see the module docstring).

    Args:
        weight: λ (README 0.01; CREMA-D config 0.1).
        num_samples: permutations per step (README 32).
        game: ``"greedy"`` (default, k = -1), ``"independent"`` (k = 0) or ``"collaborative"``
            (k = +1).

    ``forward(z_a, z_v, head_a, head_v, bias=None, perms=None)`` returns the loss term.
    """

    def __init__(
        self,
        weight: float = 0.01,
        num_samples: int = 32,
        game: Literal["greedy", "independent", "collaborative"] = "greedy",
    ) -> None:
        super().__init__()
        self.weight = check_number(weight, "weight", low=0.0)
        self.num_samples = check_int(num_samples, "num_samples", low=1)
        check_choice(game, "game", ("greedy", "independent", "collaborative"))
        self.game = game

    def forward(
        self,
        z_a: Tensor,
        z_v: Tensor,
        head_a: Head,
        head_v: Head,
        bias: Tensor | None = None,
        perms: Tensor | None = None,
    ) -> Tensor:
        """Return ``weight * L_MIPD``."""
        j = permutation_jsd(z_a, z_v, head_a, head_v, bias, perms, self.num_samples)
        if self.game == "greedy":
            val = -j["a,a"] + j["a,v"] - j["v,v"] + j["v,a"]
        elif self.game == "independent":
            val = -j["a,a"] - j["v,v"]
        else:
            val = -j["a,both"] - j["v,both"]
        return self.weight * val
