"""Every public Module's state survives a checkpoint: state_dict, torch.save, a fresh instance,
load_state_dict (weights_only), and the same call gives the same result.

DESIGN: state lives in registered buffers so that it follows ``.to(device)`` and
``state_dict()``. Each Module is built and called once from its valid call
(``tests/_valid_calls.py``), so that state that calls accumulate (EMA buffers, histories,
calibration) is in the checkpoint; then the original and a fresh instance loaded from the
checkpoint are called again with the same inputs and seeds.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tests._helpers import tensors_in
from tests._valid_calls import ITEMS, Call, _invoke, shared_valid_calls

_CALLS = shared_valid_calls()
MODULES = sorted(
    key
    for key, call in _CALLS.items()
    if call.init is not None
    and isinstance(call.obj, type)
    and issubclass(call.obj, torch.nn.Module)
)


def _call(module: torch.nn.Module, call: Call) -> Any:
    """The valid call's entry point(s) on ``module``, with fresh arguments and seed 1."""
    torch.manual_seed(1)
    out = None
    for name in (call.method,) if isinstance(call.method, str) else call.method or (None,):
        out = _invoke(module if name is None else getattr(module, name), call.fresh().args)
    if isinstance(out, Iterator):
        out = list(itertools.islice(out, ITEMS))
    return out


@pytest.mark.parametrize("key", MODULES)
def test_checkpoint_round_trip(key: str) -> None:
    call = _CALLS[key]
    assert call.init is not None
    torch.manual_seed(0)
    module = _invoke(call.obj, call.fresh().init)  # type: ignore[arg-type]
    _call(module, call)  # accumulate whatever state a call leaves
    saved = io.BytesIO()
    torch.save(module.state_dict(), saved)
    saved.seek(0)
    torch.manual_seed(123)  # a fresh instance with other initial weights
    fresh = _invoke(call.obj, call.fresh().init)  # type: ignore[arg-type]
    fresh.load_state_dict(torch.load(saved, weights_only=True))
    want = [t.detach() for t in tensors_in(_call(module, call))]
    got = [t.detach() for t in tensors_in(_call(fresh, call))]
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
