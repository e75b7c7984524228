"""Test helpers shared by every test module (after Kornia's ``testing/base.py``).

- :func:`tolerance` / :func:`assert_close`: comparisons whose tolerance follows the dtype.
- :func:`gradcheck64`: ``torch.autograd.gradcheck`` in float64 on every floating input.
- :func:`module_matches_function`: a Module gives its function's value for the same settings.
- :func:`device_given`: whether ``--device`` was given (a test may then run on the CPU too).
- :func:`bounded`: run a call under a wall-time and an address-space limit (runaway work fails).
- :func:`tensors_in`: every tensor in a nested result (tuples, lists, dicts, dataclasses).
"""

from __future__ import annotations

import contextlib
import dataclasses
import resource
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch

# (rtol, atol) by dtype: float64 results are compared near machine precision of the algorithm,
# low-precision ones at the precision of their mantissa (bf16 keeps 8 bits, fp16 11).
_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (3e-2, 1e-2),
}


def tensors_in(out: Any) -> Iterator[torch.Tensor]:
    """Every tensor in a (nested) result: tensors, tuples, lists, dicts, dataclasses."""
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, (tuple, list)):
        for o in out:
            yield from tensors_in(o)
    elif isinstance(out, dict):
        for o in out.values():
            yield from tensors_in(o)
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        for f in dataclasses.fields(out):
            yield from tensors_in(getattr(out, f.name))


def tolerance(dtype: torch.dtype) -> tuple[float, float]:
    """``(rtol, atol)`` for results computed in ``dtype``."""
    return _TOLERANCES.get(dtype, (0.0, 0.0))


def assert_close(
    actual: Any,
    expected: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    dtype: torch.dtype | None = None,
    msg: str | None = None,
    equal_nan: bool = False,
) -> None:
    """``torch.testing.assert_close`` with the tolerance of ``dtype`` (default: ``actual``'s).

    ``expected`` may have another dtype or device (a float64 CPU reference, say): it is cast to
    ``actual``'s before comparing. Explicit ``rtol``/``atol`` override the dtype's.
    """
    if isinstance(actual, torch.Tensor):
        ref_dtype = dtype or actual.dtype
        if not isinstance(expected, torch.Tensor):
            expected = torch.as_tensor(expected, dtype=actual.dtype)
        expected = expected.to(device=actual.device, dtype=actual.dtype)
    else:
        ref_dtype = dtype or torch.float64
    default_rtol, default_atol = tolerance(ref_dtype)
    torch.testing.assert_close(
        actual,
        expected,
        rtol=default_rtol if rtol is None else rtol,
        atol=default_atol if atol is None else atol,
        msg=msg,
        equal_nan=equal_nan,
    )


def device_given(config: Any) -> bool:
    """Whether ``--device`` was given on the command line (``tests/conftest.py``; default cpu)."""
    return config.getoption("--device") is not None


def gradcheck64(fn: Callable[..., Any], *inputs: Any, **kwargs: Any) -> None:
    """Assert ``torch.autograd.gradcheck(fn, inputs)`` holds in float64.

    Floating tensors among ``inputs`` are copied to float64 and get ``requires_grad``; other
    arguments pass through unchanged. The copy matters: gradcheck perturbs its inputs in place, so
    an input sharing storage with a tensor that ``fn`` closes over would move both. Keyword arguments go to ``gradcheck`` (``atol``,
    ``nondet_tol``, ...). ``fn`` may return a tensor or a tuple of tensors.
    """
    prepared = tuple(
        x.detach().to(torch.float64, copy=True).requires_grad_(True)
        if isinstance(x, torch.Tensor) and x.is_floating_point()
        else x
        for x in inputs
    )
    if not any(isinstance(x, torch.Tensor) and x.requires_grad for x in prepared):
        raise ValueError("gradcheck64: no floating tensor among the inputs")
    assert torch.autograd.gradcheck(fn, prepared, **kwargs)


def module_matches_function(
    module_cls: Callable[..., torch.nn.Module],
    fn: Callable[..., Any],
    *args: Any,
    settings: dict[str, Any] | None = None,
    rtol: float | None = None,
    atol: float | None = None,
) -> None:
    """``module_cls(**settings)(*args)`` equals ``fn(*args, **settings)``, value and gradient.

    Floating tensors among ``args`` get fresh ``requires_grad`` leaves for each side, and the
    gradients of the summed outputs are compared too.
    """
    settings = settings or {}

    def leaves() -> tuple[Any, ...]:
        return tuple(
            a.detach().clone().requires_grad_(True)
            if isinstance(a, torch.Tensor) and a.is_floating_point()
            else a
            for a in args
        )

    def total(out: Any) -> torch.Tensor:
        if isinstance(out, torch.Tensor):
            return out.sum()
        return sum(o.sum() for o in out if isinstance(o, torch.Tensor))  # type: ignore[return-value]

    a1, a2 = leaves(), leaves()
    out_module = module_cls(**settings)(*a1)
    out_fn = fn(*a2, **settings)
    if isinstance(out_fn, torch.Tensor):
        assert_close(out_module, out_fn, rtol=rtol, atol=atol)
    else:
        for o_m, o_f in zip(out_module, out_fn, strict=True):
            assert_close(o_m, o_f, rtol=rtol, atol=atol)
    t1, t2 = total(out_module), total(out_fn)
    if t1.requires_grad and t2.requires_grad:
        g1 = [x for x in a1 if isinstance(x, torch.Tensor) and x.requires_grad]
        g2 = [x for x in a2 if isinstance(x, torch.Tensor) and x.requires_grad]
        grads1 = torch.autograd.grad(t1, g1, allow_unused=True)
        grads2 = torch.autograd.grad(t2, g2, allow_unused=True)
        for x1, d1, d2 in zip(g1, grads1, grads2, strict=True):
            if d1 is None or d2 is None:
                assert d1 is None and d2 is None, f"gradient present on one side only ({x1.shape})"
                continue
            assert_close(d1, d2, rtol=rtol, atol=atol)


class Runaway(Exception):
    """A call under :func:`bounded` ran past its time limit or out of its memory allowance."""


def _vm_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[0]) * resource.getpagesize()


@contextlib.contextmanager
def bounded(seconds: float = 5.0, extra_bytes: int = 1 << 30) -> Iterator[None]:
    """Raise :class:`Runaway` if the block runs longer than ``seconds`` (SIGALRM; checked when
    Python code runs) or grows the address space by more than ``extra_bytes`` (RLIMIT_AS: the
    allocation fails with MemoryError or RuntimeError, reported as Runaway). Linux, main thread
    only; elsewhere the block runs unbounded."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _alarm(signum: int, frame: Any) -> None:
        raise Runaway(f"ran longer than {seconds} s")

    old_handler = signal.signal(signal.SIGALRM, _alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _vm_bytes() + extra_bytes
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except MemoryError as exc:
        raise Runaway(f"allocated more than {extra_bytes} bytes") from exc
    except RuntimeError as exc:
        if "alloc" in str(exc).lower() or "memory" in str(exc).lower():
            raise Runaway(f"allocated more than {extra_bytes} bytes: {exc}") from exc
        raise
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, old_handler)


def python_stdout(code: str) -> str:
    """Run ``code`` in a fresh interpreter (clean ``sys.modules``) and return its stripped stdout;
    a non-zero exit raises ``CalledProcessError``."""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout.strip()
