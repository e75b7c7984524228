"""Every public callable runs under CPU bfloat16 autocast (mixed-precision training), and what is
finite without autocast stays finite under it.

Each valid call (``tests/_valid_calls.py``) and each case of the device comparison
(``tests/test_devices.py``: masks, temperatures, chunked paths, forward and backward) runs twice:
plainly, then inside ``torch.autocast("cpu", dtype=torch.bfloat16)``, where matmuls and linear
layers return bfloat16 while the arguments stay float32/float64. A constant of the wrong dtype
(a float32 fill written into bfloat16 scores) raises there.
"""

from __future__ import annotations

import pytest
import torch

from tests._helpers import tensors_in
from tests._valid_calls import shared_valid_calls
from tests.test_devices import CASES, _make_inputs, _run

_CALLS = shared_valid_calls()


@pytest.mark.parametrize("key", sorted(_CALLS))
def test_runs_under_bfloat16_autocast(key: str) -> None:
    call = _CALLS[key]
    torch.manual_seed(0)
    plain = [t.detach() for t in tensors_in(call.fresh().run())]
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = [t.detach() for t in tensors_in(call.fresh().run())]
    assert len(mixed) == len(plain)
    for got, ref in zip(mixed, plain):
        if got.is_floating_point() and bool(torch.isfinite(ref).all()):
            assert bool(torch.isfinite(got).all())


@pytest.mark.parametrize("name", sorted(CASES))
def test_device_case_under_bfloat16_autocast(name: str) -> None:
    case, grad_names, _ = CASES[name]
    torch.manual_seed(0)
    plain = _run(case, _make_inputs(torch.float32), grad_names)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = _run(case, _make_inputs(torch.float32), grad_names)
    for got_list, ref_list in zip(mixed, plain):
        assert len(got_list) == len(ref_list)
        for got, ref in zip(got_list, ref_list):
            if bool(torch.isfinite(ref).all()):
                assert bool(torch.isfinite(got.float()).all())
