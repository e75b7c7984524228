"""The shared test helpers can fail."""

from __future__ import annotations

import pytest
import torch

from tests._helpers import assert_close, gradcheck64, module_matches_function, tolerance


def test_tolerance_follows_dtype():
    assert tolerance(torch.float64)[0] < tolerance(torch.float32)[0] < tolerance(torch.bfloat16)[0]


def test_assert_close_casts_reference_and_fails_outside_tolerance():
    x = torch.tensor([1.0, 2.0], dtype=torch.bfloat16)
    assert_close(x, torch.tensor([1.001, 2.002], dtype=torch.float64))
    with pytest.raises(AssertionError):
        assert_close(torch.tensor([1.0]), torch.tensor([1.001]))


def test_gradcheck64_catches_a_wrong_gradient():
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x**2

        @staticmethod
        def backward(ctx, g):
            return g  # should be 2 x g

    gradcheck64(lambda x: x**2, torch.randn(3))
    with pytest.raises(RuntimeError, match="Jacobian mismatch"):
        gradcheck64(Wrong.apply, torch.randn(3))


def test_gradcheck64_copies_inputs_that_fn_also_closes_over():
    # gradcheck perturbs its inputs in place: were the float64 input `x` itself, `t - (x + 0.5)`
    # would not move and the numerical Jacobian would be 0, failing a correct gradient.
    x = torch.randn(4, dtype=torch.float64)
    gradcheck64(lambda t: (t - (x + 0.5)).exp() * t, x)


def test_module_matches_function_detects_a_drift():
    class Scale(torch.nn.Module):
        def __init__(self, factor: float = 2.0):
            super().__init__()
            self.factor = factor

        def forward(self, x):
            return x * self.factor

    def scale(x, factor=2.0):
        return x * factor

    x = torch.randn(4)
    module_matches_function(Scale, scale, x, settings={"factor": 3.0})
    with pytest.raises(AssertionError):
        module_matches_function(Scale, lambda x, factor=2.0: x * factor + 1, x)


def test_device_and_dtype_fixtures(device, dtype):
    x = torch.ones(2, device=device, dtype=dtype)
    assert x.device.type == device.type and x.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float16])
def test_a_test_own_dtype_list_wins_over_the_option(dtype):
    # Without the check in conftest, pytest refuses to collect this ("duplicate parametrization").
    assert dtype == torch.float16
