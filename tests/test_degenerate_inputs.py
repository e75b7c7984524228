"""Every public callable on inputs a training loop meets and toy data hides.

- **Inputs that require grad** (features monitored during training, a teacher that is not
  detached): the call must run and give the values it gives on plain tensors.
- **Degenerate data**: a tied pair of samples (one row copied onto another), a batch of
  identical rows, all zeros, and two same-shaped arguments that are equal (a divergence at
  zero: an EMA teacher starts as a copy of its student). A call may reject such data with an
  error; where it returns, its values must be finite, and so must the gradient of each input
  that requires grad.

:data:`NON_FINITE` lists the results that are infinite by definition; a listed case that turns
finite fails, so the list cannot go stale.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tests._helpers import assert_close, tensors_in
from tests._valid_calls import Call, shared_valid_calls

_CALLS = shared_valid_calls()

NON_FINITE = {
    # KL(pi || ref) with mass where ref has none: +inf (k3 = e^(ref - logp) - (ref - logp) - 1)
    ("rl.kl_k3", "logp", "tie"): "+inf KL",
    ("rl.kl_k3", "logp", "same rows"): "+inf KL",
    ("rl.kl_k3", "logp", "zeros"): "+inf KL",
    ("rl.kl_k3", "ref_logp", "tie"): "+inf KL",
    ("rl.kl_k3", "ref_logp", "same rows"): "+inf KL",
    ("rl.kl_k3", "ref_logp", "zeros"): "+inf KL",
    # the proxy's filtered tokens have probability 0 (documented -inf)
    ("rl.min_p_proxy_logprobs", "logits", "tie"): "-inf log-prob",
    ("rl.min_p_proxy_logprobs", "logits", "same rows"): "-inf log-prob",
}


def _float_args(call: Call) -> list[str]:
    return [
        name
        for name, v in call.args.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dim() >= 1 and v.numel() > 1
    ]


def _variants(call: Call) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(argument, variant, new arguments)``: one argument changed at a time."""
    names = _float_args(call)
    for name in names:
        t = call.args[name].detach()
        if t.shape[0] >= 2:
            tie = t.clone()
            tie[1] = t[0]
            yield name, "tie", {name: tie}
            yield name, "same rows", {name: t[:1].expand_as(t).clone()}
        yield name, "zeros", {name: torch.zeros_like(t)}
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if call.args[first].shape == call.args[second].shape:
                yield second, f"equal to {first}", {second: call.args[first].detach().clone()}


def _run_with_grad(call: Call, changes: dict[str, Any]) -> tuple[list[torch.Tensor], dict]:
    """Run ``call`` with ``changes`` and every float argument a leaf that requires grad."""
    fresh = call.fresh()
    fresh.args.update({k: v.clone() for k, v in changes.items()})
    leaves = {n: fresh.args[n].detach().clone().requires_grad_(True) for n in _float_args(call)}
    fresh.args.update(leaves)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [o for o in tensors_in(fresh.run()) if o.is_floating_point()], leaves


def _non_finite(outs: list[torch.Tensor], leaves: dict[str, torch.Tensor]) -> str | None:
    """What is not finite: a value, or the gradient of an input; None if all is finite."""
    for o in outs:
        if not torch.isfinite(o).all():
            return "value"
    diff = [o for o in outs if o.requires_grad]
    if not diff:
        return None
    grads = torch.autograd.grad(
        torch.stack([o.double().sum() for o in diff]).sum(),
        list(leaves.values()),
        allow_unused=True,
    )
    for name, g in zip(leaves, grads):
        if g is not None and not torch.isfinite(g).all():
            return f"gradient of {name}"
    return None


@pytest.mark.parametrize("key", sorted(k for k, c in _CALLS.items() if _float_args(c)))
def test_inputs_that_require_grad_give_the_same_values(key: str) -> None:
    call = _CALLS[key]
    torch.manual_seed(0)
    want = [o.detach() for o in tensors_in(call.fresh().run()) if o.is_floating_point()]
    got, _ = _run_with_grad(call, {})
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert_close(a.detach(), b, equal_nan=True)


@pytest.mark.parametrize("key", sorted(k for k, c in _CALLS.items() if _float_args(c)))
def test_degenerate_data_gives_finite_values_and_gradients(key: str) -> None:
    call = _CALLS[key]
    found = {}
    for name, variant, changes in _variants(call):
        try:
            outs, leaves = _run_with_grad(call, changes)
        except (ValueError, RuntimeError) as err:  # a clear rejection is allowed
            assert "Can't call numpy()" not in str(err), (name, variant, err)
            continue
        found[(key, name, variant)] = _non_finite(outs, leaves)
    unexpected = {k: v for k, v in found.items() if v is not None and k not in NON_FINITE}
    assert not unexpected, unexpected
    stale = [k for k in NON_FINITE if k[0] == key and k in found and found[k] is None]
    assert not stale, f"finite now, remove from NON_FINITE: {stale}"
