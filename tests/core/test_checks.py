from __future__ import annotations

import pytest
import torch

import inforeg
from inforeg.core import checks as C


def test_set_checks_validates_and_roundtrips():
    assert inforeg.get_checks() == "shapes"
    with C.checks("full"):
        assert inforeg.get_checks() == "full"
    assert inforeg.get_checks() == "shapes"
    with pytest.raises(ValueError, match="mode"):
        inforeg.set_checks("everything")  # type: ignore[arg-type]


def test_check_tensor_messages_name_argument_expectation_and_value():
    with pytest.raises(TypeError, match=r"logits: expected a torch.Tensor, got list"):
        C.check_tensor([1.0], "logits")
    with pytest.raises(ValueError, match=r"logits: expected a 2-D tensor, got shape \(3\)"):
        C.check_tensor(torch.zeros(3), "logits", ndim=2)
    with pytest.raises(
        TypeError, match="logits: expected a floating-point tensor, got dtype torch.int64"
    ):
        C.check_tensor(torch.zeros(3, dtype=torch.long), "logits", floating=True)
    with pytest.raises(TypeError, match="targets: expected an integer tensor"):
        C.check_tensor(torch.zeros(3), "targets", integer=True)
    with pytest.raises(ValueError, match="x: expected a non-empty tensor"):
        C.check_tensor(torch.zeros(0, 2), "x")


def test_nan_checked_only_in_full_mode():
    x = torch.tensor([1.0, float("nan"), float("inf")])
    C.check_tensor(x, "x")  # shapes mode: no sync, no value check
    with (
        C.checks("full"),
        pytest.raises(ValueError, match="x: expected finite values, got 1 NaN and 1 inf"),
    ):
        C.check_tensor(x, "x")
    with C.checks("off"):
        C.check_tensor(torch.zeros(3), "x", ndim=2)  # off: shape not checked


def test_numbers_and_ranges():
    assert C.check_positive(0.5, "epsilon") == 0.5
    for bad in (0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="epsilon"):
            C.check_positive(bad, "epsilon")
    with pytest.raises(ValueError, match=r"alpha: expected a value in \[0.0, 1.0\], got 1.5"):
        C.check_probability(1.5, "alpha")
    # open ends print as inf, and each bracket says whether its end is included
    with pytest.raises(ValueError, match=r"epsilon: expected a value in \(0.0, inf\), got 0"):
        C.check_positive(0, "epsilon")
    with pytest.raises(ValueError, match=r"t: expected a value in \(-inf, 1.0\), got 1.0"):
        C.check_number(1.0, "t", high=1.0, high_inclusive=False)
    with pytest.raises(ValueError, match=r"q: expected a value in \(0.0, 2.0\], got 3"):
        C.check_number(3, "q", low=0.0, high=2.0, low_inclusive=False)
    with pytest.raises(ValueError, match="alpha: expected a number, got NaN"):
        C.check_probability(float("nan"), "alpha")
    with pytest.raises(TypeError, match="alpha: expected a real number, got str"):
        C.check_probability("0.1", "alpha")
    with pytest.raises(TypeError, match="use .item"):
        C.check_number(torch.tensor(0.1), "alpha")
    with pytest.raises(ValueError, match="k: expected an int >= 1, got 0"):
        C.check_int(0, "k", low=1)
    with pytest.raises(TypeError, match="k: expected an int, got float"):
        C.check_int(1.0, "k")
    with pytest.raises(TypeError, match="k: expected an int, got bool"):
        C.check_int(True, "k")
    with pytest.raises(ValueError, match="kind: expected one of"):
        C.check_choice("x", "kind", ("a", "b"))


def test_shape_and_probability_checks():
    with pytest.raises(ValueError, match=r"b: expected the same shape as a \(2, 3\), got \(3, 2\)"):
        C.check_same_shape(torch.zeros(2, 3), torch.zeros(3, 2), "a", "b")
    with pytest.raises(ValueError, match="y: expected 4 samples along dim 0 to match x, got 5"):
        C.check_same_length(torch.zeros(4, 2), torch.zeros(5), "x", "y")
    with pytest.raises(ValueError, match="dim: expected a dimension"):
        C.check_dim(3, torch.zeros(2, 2))
    p = torch.tensor([[0.5, 0.6]])
    C.check_probabilities(p, "p")  # not checked outside full mode
    with C.checks("full"):
        with pytest.raises(ValueError, match="p: expected probabilities summing to 1"):
            C.check_probabilities(p, "p")
        with pytest.raises(ValueError, match="p: expected non-negative"):
            C.check_probabilities(torch.tensor([[1.5, -0.5]]), "p")
        C.check_probabilities(torch.tensor([[0.25, 0.75]]), "p")


def test_labels():
    with pytest.raises(ValueError, match="targets: expected 3 labels to match the batch, got 2"):
        C.check_labels(torch.tensor([0, 1]), "targets", 4, 3)
    with C.checks("full"), pytest.raises(ValueError, match=r"targets: expected labels in \[0, 4\)"):
        C.check_labels(torch.tensor([0, 4, 1]), "targets", 4, 3)


def test_finite_numbers_and_broadcastable_tensors():
    assert C.check_number(-2, "eps") == -2.0
    assert C.check_number(0.0, "w", low=0.0) == 0.0
    for bad in (float("inf"), float("-inf")):
        with pytest.raises(ValueError, match="eps: expected a finite number"):
            C.check_number(bad, "eps")
    with pytest.raises(ValueError, match=r"w: expected a finite number in \[0.0, inf\), got inf"):
        C.check_number(float("inf"), "w", low=0.0)
    with pytest.raises(ValueError, match="w: expected a value in"):
        C.check_number(-1.0, "w", low=0.0)
    with pytest.raises(ValueError, match="eps: expected a number, got NaN"):
        C.check_number(float("nan"), "eps")
    x = torch.zeros(2, 3)
    C.check_broadcastable(torch.ones(3), "mu", x, "v")
    C.check_broadcastable(torch.ones(2, 1), "mu", x, "v")
    with pytest.raises(
        ValueError, match=r"mu: expected a tensor broadcastable to v \(2, 3\), got shape \(2\)"
    ):
        C.check_broadcastable(torch.ones(2), "mu", x, "v")


def test_check_number_rejects_infinity_unless_allowed():
    # Regression (issue 18): an infinite hyper-parameter passed check_number and reached the
    # computation (inf * 0 = NaN).
    for bad in (float("inf"), float("-inf")):
        with pytest.raises(ValueError, match=r"weight: expected a finite number in \(-inf, inf\)"):
            C.check_number(bad, "weight")
        with pytest.raises(ValueError, match=r"tau: expected a finite number in \[0.0, inf\)"):
            C.check_number(bad, "tau", low=0.0)
    assert C.check_number(float("inf"), "clip", low=0.0, finite=False) == float("inf")
    with pytest.raises(ValueError, match="clip: expected a value in"):
        C.check_number(float("-inf"), "clip", low=0.0, finite=False)
    with pytest.raises(ValueError, match="clip: expected a number, got NaN"):
        C.check_number(float("nan"), "clip", finite=False)


def test_check_matches_module_dtype():
    layer = torch.nn.Linear(3, 2)
    C.check_matches_module_dtype(torch.zeros(2, 3), layer, "x")
    C.check_matches_module_dtype(torch.zeros(2, 3, dtype=torch.long), layer, "x")  # not floating
    C.check_matches_module_dtype(torch.zeros(2, 3, dtype=torch.bfloat16), torch.nn.ReLU(), "x")
    msg = r"x: expected dtype torch.float32, the dtype of the Linear's parameters, got " + (
        r"torch.bfloat16; convert the module with .to\(torch.bfloat16\)"
    )
    with pytest.raises(TypeError, match=msg):
        C.check_matches_module_dtype(torch.zeros(2, 3, dtype=torch.bfloat16), layer, "x")
    with C.checks("off"):
        C.check_matches_module_dtype(torch.zeros(2, 3, dtype=torch.float64), layer, "x")
    with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast casts inside the layer
        C.check_matches_module_dtype(torch.zeros(2, 3, dtype=torch.bfloat16), layer, "x")
    with pytest.raises(TypeError, match="x: expected dtype torch.float32"):  # no autocast there
        C.check_matches_module_dtype(
            torch.zeros(2, 3, dtype=torch.bfloat16, device="meta"), layer, "x"
        )
