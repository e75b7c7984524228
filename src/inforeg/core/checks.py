"""Input validation shared by every technique.

Each helper raises ``TypeError`` (wrong kind of object or dtype) or ``ValueError`` (wrong shape,
range or content) with a message that names the argument, what was expected and what came.

Checks that need the tensor's values (NaN/inf, probabilities summing to one) force a host sync, so
they only run in ``"full"`` mode; the default ``"shapes"`` mode checks only metadata (shape, dtype,
Python hyper-parameters). ``"off"`` skips tensor checks altogether (hyper-parameter checks on
Python numbers always run: they cost nothing).

Example:
    >>> check_positive(0.5, "epsilon")
    0.5
    >>> check_positive(0.0, "epsilon")
    Traceback (most recent call last):
        ...
    ValueError: epsilon: expected a value in (0.0, inf), got 0.0
    >>> x = torch.tensor([1.0, float("nan")])
    >>> check_tensor(x, "x") is x  # "shapes" mode: no look at the values
    True
    >>> with checks("full"):
    ...     check_tensor(x, "x")
    Traceback (most recent call last):
        ...
    ValueError: x: expected finite values, got 1 NaN and 0 inf
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
from torch import Tensor

CheckMode = Literal["shapes", "full", "off"]
_MODES: tuple[CheckMode, ...] = ("shapes", "full", "off")
_mode: CheckMode = "shapes"


def set_checks(mode: CheckMode) -> None:
    """Set the global validation level: ``"shapes"`` (default), ``"full"`` or ``"off"``."""
    global _mode
    if mode not in _MODES:
        raise ValueError(f"set_checks: mode must be one of {_MODES}, got {mode!r}")
    _mode = mode


def get_checks() -> CheckMode:
    """Return the current validation level."""
    return _mode


@contextmanager
def checks(mode: CheckMode):  # type: ignore[no-untyped-def]
    """Context manager that sets the validation level temporarily."""
    previous = _mode
    set_checks(mode)
    try:
        yield
    finally:
        set_checks(previous)


def _shape(x: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in x.shape) + ")"


def check_tensor(
    x: object,
    name: str,
    *,
    ndim: int | Sequence[int] | None = None,
    min_ndim: int | None = None,
    floating: bool = False,
    integer: bool = False,
    nonempty: bool = True,
) -> Tensor:
    """Check that ``x`` is a tensor with the given rank and dtype kind; return it.

    In ``"full"`` mode floating tensors are also checked for NaN/inf.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if _mode == "off":
        return x
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if x.dim() not in allowed:
            want = " or ".join(f"{d}-D" for d in allowed)
            raise ValueError(f"{name}: expected a {want} tensor, got shape {_shape(x)}")
    if min_ndim is not None and x.dim() < min_ndim:
        raise ValueError(f"{name}: expected at least {min_ndim} dimensions, got shape {_shape(x)}")
    if floating and not (x.is_floating_point() or x.is_complex()):
        raise TypeError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    if integer and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name}: expected an integer tensor, got dtype {x.dtype}")
    if nonempty and x.numel() == 0:
        raise ValueError(f"{name}: expected a non-empty tensor, got shape {_shape(x)}")
    if _mode == "full" and x.is_floating_point():
        check_finite(x, name)
    return x


def check_finite(x: Tensor, name: str) -> None:
    """Raise if ``x`` holds NaN or inf (one host sync)."""
    if not bool(torch.isfinite(x).all()):
        n_nan = int(torch.isnan(x).sum())
        n_inf = int(torch.isinf(x).sum())
        raise ValueError(f"{name}: expected finite values, got {n_nan} NaN and {n_inf} inf")


def check_log_probs(x: Tensor, name: str, **shape: object) -> Tensor:
    """:func:`check_tensor` for log-probabilities: ``-inf`` (probability 0) is valid; NaN and
    ``+inf`` are rejected in ``"full"`` mode (one host sync)."""
    if _mode != "full":
        return check_tensor(x, name, **shape)  # type: ignore[arg-type]
    with checks("shapes"):
        check_tensor(x, name, **shape)  # type: ignore[arg-type]
    bad = torch.isnan(x) | (x == float("inf"))
    if bool(bad.any()):
        raise ValueError(
            f"{name}: expected log-probabilities (finite or -inf), got {int(torch.isnan(x).sum())} "
            f"NaN and {int((x == float('inf')).sum())} +inf"
        )
    return x


def check_same_shape(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    """Raise unless ``a`` and ``b`` have identical shapes."""
    if _mode != "off" and a.shape != b.shape:
        raise ValueError(
            f"{name_b}: expected the same shape as {name_a} {_shape(a)}, got {_shape(b)}"
        )


def check_same_length(a: Tensor, b: Tensor, name_a: str, name_b: str, dim: int = 0) -> None:
    """Raise unless ``a`` and ``b`` have the same size along ``dim`` (the sample axis)."""
    if _mode != "off" and a.shape[dim] != b.shape[dim]:
        raise ValueError(
            f"{name_b}: expected {a.shape[dim]} samples along dim {dim} to match {name_a}, "
            f"got {b.shape[dim]}"
        )


def check_dim(dim: int, x: Tensor, name: str = "dim") -> int:
    """Validate a dimension index for ``x`` and return it as a non-negative int."""
    if not isinstance(dim, int) or isinstance(dim, bool):
        raise TypeError(f"{name}: expected an int, got {type(dim).__name__}")
    if not -x.dim() <= dim < max(x.dim(), 1):
        raise ValueError(f"{name}: expected a dimension in [{-x.dim()}, {x.dim()}), got {dim}")
    return dim % max(x.dim(), 1)


def check_number(
    value: object,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    finite: bool = True,
) -> float:
    """Check a real hyper-parameter against an interval; return it as float.

    NaN is always rejected; ``+-inf`` too unless ``finite=False`` (for a hyper-parameter whose
    infinite value means something, e.g. "no clipping"), so that an infinite weight or
    temperature cannot reach the computation as ``inf * 0 = NaN``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, Tensor) and value.numel() == 1:
            raise TypeError(f"{name}: expected a Python number, got a tensor (use .item())")
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v):
        raise ValueError(f"{name}: expected a number, got NaN")
    below = low is not None and (v < low or (v == low and not low_inclusive))
    above = high is not None and (v > high or (v == high and not high_inclusive))
    infinite = finite and math.isinf(v)
    if below or above or infinite:
        left = "(-inf" if low is None else ("[" if low_inclusive else "(") + str(low)
        right = "inf)" if high is None else str(high) + ("]" if high_inclusive else ")")
        kind = "a finite number" if infinite else "a value"
        raise ValueError(f"{name}: expected {kind} in {left}, {right}, got {value}")
    return v


def check_autograd(name: str) -> None:
    """Raise under ``torch.inference_mode``, where ``name`` cannot take its inner gradients."""
    if torch.is_inference_mode_enabled():
        raise RuntimeError(f"{name}: takes gradients inside; use no_grad, not inference_mode")


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:  # a device type without autocast (e.g. "meta")
        return False


def check_matches_module_dtype(x: Tensor, module: torch.nn.Module, name: str) -> None:
    """Raise ``TypeError`` unless floating ``x`` has the dtype of ``module``'s floating parameters.

    A torch layer given, say, bfloat16 input with float32 weights fails deep inside with a
    message naming no argument; this says which argument and how to convert. Skipped under
    ``"off"`` checks, for a module without floating parameters, and under autocast (which casts
    inside the layers). Metadata only: no host sync.
    """
    if _mode == "off" or not x.is_floating_point():
        return
    param = next((p for p in module.parameters() if p.is_floating_point()), None)
    if param is None or param.dtype == x.dtype or _autocast_enabled(x.device.type):
        return
    raise TypeError(
        f"{name}: expected dtype {param.dtype}, the dtype of the {type(module).__name__}'s "
        f"parameters, got {x.dtype}; convert the module with .to({x.dtype}) or the input with "
        f".to({param.dtype})"
    )


def check_broadcastable(x: Tensor, name: str, target: Tensor, target_name: str) -> None:
    """Raise unless ``x`` broadcasts to ``target``'s shape (a tensor hyper-parameter, say)."""
    try:
        torch.broadcast_shapes(x.shape, target.shape)
    except RuntimeError:
        raise ValueError(
            f"{name}: expected a tensor broadcastable to {target_name} {_shape(target)}, "
            f"got shape {_shape(x)}"
        ) from None


def check_positive(value: object, name: str) -> float:
    """Check ``value > 0`` (a finite real number)."""
    return check_number(value, name, low=0.0, low_inclusive=False)


def check_probability(value: object, name: str) -> float:
    """Check ``0 <= value <= 1``."""
    return check_number(value, name, low=0.0, high=1.0)


def check_int(value: object, name: str, *, low: int | None = None, high: int | None = None) -> int:
    """Check an integer hyper-parameter (``low <= value <= high``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    if low is not None and value < low:
        raise ValueError(f"{name}: expected an int >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name}: expected an int <= {high}, got {value}")
    return value


def check_choice(value: object, name: str, choices: Iterable[object]) -> None:
    """Check that ``value`` is one of ``choices``."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"{name}: expected one of {options}, got {value!r}")


def check_probabilities(p: Tensor, name: str, dim: int = -1, atol: float = 1e-4) -> None:
    """In ``"full"`` mode, check non-negativity and that ``p`` sums to one along ``dim``."""
    if _mode != "full":
        return
    check_finite(p, name)
    if bool((p < 0).any()):
        raise ValueError(f"{name}: expected non-negative probabilities, got min {float(p.min())}")
    total = p.sum(dim=dim)
    worst = float((total - 1).abs().max())
    if worst > atol:
        raise ValueError(
            f"{name}: expected probabilities summing to 1 along dim {dim}, "
            f"got a deviation of {worst:.3g}"
        )


def check_index_range(x: Tensor, name: str, size: int, what: str = "indices") -> None:
    """In ``"full"`` mode, check that the integer tensor ``x`` holds indices in ``[0, size)``.

    (Below ``"full"`` an out-of-range index is left to torch's own error: the check needs a
    host sync.)
    """
    if _mode == "full" and x.numel() > 0:
        lo, hi = int(x.min()), int(x.max())
        if lo < 0 or hi >= size:
            raise ValueError(f"{name}: expected {what} in [0, {size}), got values in [{lo}, {hi}]")


def check_labels(targets: Tensor, name: str, num_classes: int, batch: int) -> None:
    """Check an integer label vector of length ``batch`` with values in [0, num_classes)."""
    check_tensor(targets, name, ndim=1, integer=True, nonempty=False)
    if _mode == "off":
        return
    if targets.shape[0] != batch:
        raise ValueError(
            f"{name}: expected {batch} labels to match the batch, got {targets.shape[0]}"
        )
    check_index_range(targets, name, num_classes, "labels")


def check_module_input(x: Tensor, name: str, module: torch.nn.Module, features: int) -> None:
    """Check an input of a Module's layers: floating, ``features`` wide in the last dimension and
    of the Module's dtype (:func:`check_matches_module_dtype`)."""
    check_tensor(x, name, min_ndim=1, floating=True)
    if _mode != "off" and x.shape[-1] != features:
        raise ValueError(f"{name}: expected {features} features (last dimension), got {_shape(x)}")
    check_matches_module_dtype(x, module, name)
