"""Every public callable gives the same result under ``torch.inference_mode()`` as under
``torch.no_grad()`` (how rollouts and evaluations are often scored).

Inference mode is thread-local and forbids autograd altogether, so this catches worker threads
that do not inherit it (they then fail to write into the caller's inference tensors) and code
that turns autograd back on. The callables in :data:`NEED_AUTOGRAD` differentiate internally
(a proximal operator that is a gradient, an inner attack loop, a hypergradient, a gradient
penalty): they work under ``no_grad`` but cannot run under inference mode, and must raise
there. A listed callable that starts to run fails the test, so the list cannot go stale.
"""

from __future__ import annotations

import pytest
import torch

from tests._helpers import tensors_in
from tests._valid_calls import shared_valid_calls
from tests.test_devices import CASES, _make_inputs

_CALLS = shared_valid_calls()
NEED_AUTOGRAD = {
    "dependence.gradient_penalty",
    "dependence.wasserstein_dependency",
    "losses.AdversarialCompSumLoss",
    "losses.adversarial_comp_sum_loss",
    "nn.LearnedProximalNet",
    "optim.MAID",
    "optim.inexact_hypergradient",
}
NEED_AUTOGRAD_CASES = {"LearnedProximalNet"}


def _same(mode_result: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    assert len(mode_result) == len(reference)
    for got, want in zip(mode_result, reference):
        torch.testing.assert_close(got.clone(), want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("key", sorted(_CALLS))
def test_valid_call_under_inference_mode(key: str) -> None:
    call = _CALLS[key]
    torch.manual_seed(0)
    with torch.no_grad():
        want = [t.detach() for t in tensors_in(call.fresh().run())]
    torch.manual_seed(0)
    with torch.inference_mode():
        fresh = call.fresh()  # its tensors are made here, so they are inference tensors
        if key in NEED_AUTOGRAD:
            with pytest.raises(RuntimeError, match="not inference_mode"):
                fresh.run()
            return
        got = list(tensors_in(fresh.run()))
    _same(got, want)


@pytest.mark.parametrize("name", sorted(CASES))
def test_device_case_under_inference_mode(name: str) -> None:
    case = CASES[name][0]
    torch.manual_seed(0)
    with torch.no_grad():
        want = list(tensors_in(case(_make_inputs(torch.float64))))
    torch.manual_seed(0)
    with torch.inference_mode():
        inputs = _make_inputs(torch.float64)
        if name in NEED_AUTOGRAD_CASES:
            with pytest.raises(RuntimeError, match="not inference_mode"):
                case(inputs)
            return
        got = list(tensors_in(case(inputs)))
    _same(got, want)
