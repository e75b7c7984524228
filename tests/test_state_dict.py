"""Every public Module's state survives a checkpoint: state_dict, torch.save, a fresh instance,
load_state_dict (weights_only), and the same call gives the same result.

DESIGN: state lives in registered buffers so that it follows ``.to(device)`` and
``state_dict()``. Each Module is built and called once from its valid call
(``tests/_valid_calls.py``), so that state that calls accumulate (EMA buffers, histories,
calibration) is in the checkpoint; then the original and a fresh instance loaded from the
checkpoint are called again with the same inputs and seeds.
"""

from __future__ import annotations

import copy
import io
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from tests._valid_calls import Call, _invoke, public_callables, valid_calls

_CALLS = valid_calls(public_callables())
MODULES = sorted(
    key
    for key, call in _CALLS.items()
    if call.init is not None
    and isinstance(call.obj, type)
    and issubclass(call.obj, torch.nn.Module)
)


def _fresh(value: Any) -> Any:
    """A copy of an argument; a generator restarts from the same state."""
    if isinstance(value, torch.Generator):
        g = torch.Generator(value.device)
        g.set_state(value.get_state())
        return g
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    return value


def _call(module: torch.nn.Module, call: Call) -> Any:
    torch.manual_seed(1)
    methods = (call.method,) if isinstance(call.method, str) else call.method or (None,)
    for name in methods:
        args = {k: _fresh(v) for k, v in call.args.items()}
        out = _invoke(module if name is None else getattr(module, name), args)
    if isinstance(out, Iterator):
        out = list(itertools.islice(out, 3))
    return out


def _tensors(obj: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    if depth > 3:
        return
    if isinstance(obj, torch.Tensor):
        yield obj.detach()
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _tensors(item, depth + 1)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item, depth + 1)
    elif hasattr(obj, "__dataclass_fields__"):
        for name in obj.__dataclass_fields__:
            yield from _tensors(getattr(obj, name), depth + 1)


@pytest.mark.parametrize("key", MODULES)
def test_checkpoint_round_trip(key: str) -> None:
    call = _CALLS[key]
    assert call.init is not None
    torch.manual_seed(0)
    module = _invoke(call.obj, copy.deepcopy(call.init))
    _call(module, call)  # accumulate whatever state a call leaves
    saved = io.BytesIO()
    torch.save(module.state_dict(), saved)
    saved.seek(0)
    torch.manual_seed(123)  # a fresh instance with other initial weights
    fresh = _invoke(call.obj, copy.deepcopy(call.init))
    fresh.load_state_dict(torch.load(saved, weights_only=True))
    want, got = list(_tensors(_call(module, call))), list(_tensors(_call(fresh, call)))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
