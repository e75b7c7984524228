"""Every public callable survives bad input (issue 18): the bad-input harness.

For every name in every family's ``__all__`` (``inforeg.FAMILIES``) the harness takes one valid
call (``tests/_valid_calls.py``: recorded from the docstring examples, or from a small table) and
applies mutations, one argument at a time: wrong rank (drop / add a dimension), integer and bool
dtypes, batch-size mismatch, empty batch, one sample, NaN and +-inf under each checks level, one
``-inf`` logit (a 0 entry, rows renormalised, where the valid value holds probability rows),
data scaled by 1e6 and 1e-6, zero / negative / NaN / inf hyper-parameters, labels
out of range, bfloat16 inputs. Each outcome must be one of

* ``error``: a ``ValueError`` or ``TypeError`` whose message names an argument of the call
  (a parameter of the function, or of the Module's ``__init__`` or ``forward``);
* ``finite``: the call returns, and every floating tensor in the result is finite (for a
  ``-inf`` logit, also the gradient of a scalar result);
* ``propagated``: a NaN/inf result from NaN/inf input, under ``"shapes"`` or ``"off"`` checks;
* ``inf_from_mask``: +-inf (never NaN) in the result of a call with a masked (``-inf``) logit:
  a masked entry's log-probability is ``-inf``, a target on a masked class has infinite loss
  (the gradient is checked only when the value is finite);
* ``inf_by_design``: +-inf (never NaN) from a callable listed in :data:`INF_BY_DESIGN` with the
  reason (e.g. a log-density outside a compact support);
* under ``"shapes"``/``"off"`` checks, an exception from torch or scipy raised by NaN/inf input
  counts as ``propagated`` (the values are not looked at without a host sync);
* ``user_code``: an exception raised inside a user-supplied callable of the valid call (the
  table's networks, denoisers, objectives: an ``nn.Module`` or function passed in that is not
  inforeg's), e.g. a float64 critic given a bfloat16 input. The rule, strict: walking the
  traceback from the raising frame outwards, a frame of such a callable (its function's code,
  or a method of one of its Modules or their submodules, torch's ``Module.__call__`` included)
  comes before any frame of inforeg code. An error raised by inforeg code, or by torch called
  from inforeg code, never qualifies.

Anything else fails: ``unclear`` (another exception, or an error naming no argument),
``silent_nan`` (NaN/inf from finite input, or a non-finite gradient from a masked logit),
``unchecked`` (a NaN/inf input under ``"full"`` checks that neither raised nor stayed out of the
result), ``runaway`` (past the per-call time limit or the memory allowance, see
:func:`tests._helpers.bounded`). Known failures that are out of reach for now are listed in
:data:`KNOWN_FAILURES` with their reasons; a listed case that passes fails the test, so the list
cannot go stale. Result containers (``OTResult`` ...) count as covered when the valid call of
the callable that builds them (``CONTAINERS``) returns one. The summary line (callables, cases,
outcomes by kind, known failures: :func:`harness_stats`) is written at the end of the pytest
run by ``pytest_terminal_summary`` in ``tests/conftest.py``, so it shows in CI's ``-q`` output.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import os
import re
import traceback
import types
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import inforeg
from inforeg.core.checks import checks
from tests._helpers import Runaway, bounded
from tests._valid_calls import CONTAINERS, NOT_COVERED, Call, public_callables, valid_calls

PUBLIC = public_callables()
INFOREG_DIR = os.path.dirname(inforeg.__file__) + os.sep
SECONDS = 5.0  # per call
EXTRA_BYTES = 1 << 30  # address-space growth allowed per call
LOGIT_NAMES = re.compile(r"logit|score|log_?p|logp|attention")
LABEL_NAMES = re.compile(r"label|target|token|class|group|y$|indices|factors")

# Callables whose result holds +-inf by design (from finite input), with the reason.
INF_BY_DESIGN: dict[str, str] = {
    "rl.min_p_proxy_logprobs": "tokens outside the min-p set get proxy log-probability -inf",
    "estimators.QGaussian": "log_prob is -inf outside the compact support of q < 1 (density 0)",
    "rl.kl_k3": "the default is TRL's unclamped e^d - d - 1: +inf where e^d overflows (d from 88 "
    "in float32, 709 in float64; documented); clamp= gives verl's bounded form",
}

# (callable key, case name) -> reason. Case names are "<argument>:<mutation>". Known failures
# out of reach for now (issue 18); the outcome each one gives is in the reason.
KNOWN_FAILURES: dict[tuple[str, str], str] = {}

_STATS: collections.Counter[str] = collections.Counter()
_CALLABLES: set[str] = set()


@pytest.fixture(scope="module")
def calls() -> dict[str, Call]:
    return valid_calls(PUBLIC)


@dataclasses.dataclass
class Case:
    name: str
    args: dict[str, Any]
    init: dict[str, Any] | None
    mode: str = "shapes"
    bad_values: bool = False  # NaN/inf injected
    masked: bool = False  # a -inf logit injected (a valid input)
    masked_arg: str | None = None
    masked_item: tuple[str, int] | None = None  # (sequence argument, index) of a masked tensor


def _probability_rows(v: torch.Tensor) -> bool:
    """True when every row (last dimension) of ``v`` is a probability vector."""
    ones = torch.ones((), dtype=v.dtype)
    return bool((v >= 0).all()) and bool(torch.allclose(v.sum(-1), ones.expand(v.shape[:-1])))


def _tensor_mutations(v: torch.Tensor, name: str) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    """(mutation, new value, flags) for one tensor argument."""
    if v.is_floating_point() and v.numel() > 0:
        for bad, label in ((math.nan, "nan"), (math.inf, "inf"), (-math.inf, "-inf")):
            w = v.clone()
            w.view(-1)[0] = bad
            for mode in ("full", "shapes", "off"):
                yield f"{label}@{mode}", w, {"mode": mode, "bad_values": True}
        if LOGIT_NAMES.search(name) and v.dim() >= 1 and v.shape[-1] > 2:
            w = v.clone()
            if _probability_rows(v):  # attention probabilities: a masked entry is 0, not -inf
                w[..., 1] = 0.0
                yield "masked_prob", w / w.sum(-1, keepdim=True), {"masked": True}
            else:
                w[..., 1] = -math.inf
                yield "masked_logit", w, {"masked": True}
        yield "scale_1e6", v * 1e6, {}
        yield "scale_1e-6", v * 1e-6, {}
        yield "int", v.round().long(), {}
        yield "bool", v > 0, {}
        yield "bf16", v.to(torch.bfloat16), {}
    if not v.is_floating_point() and v.dtype != torch.bool and v.numel() > 0:
        if LABEL_NAMES.search(name):
            # Label values are only checked under "full" (a host sync); below it torch's own
            # index error is the documented outcome.
            yield "label_high@full", v + 1000, {"mode": "full"}
            yield "label_negative@full", v - 1000, {"mode": "full"}
        yield "float", v.double(), {}
    if v.dim() >= 1:
        yield "drop_dim", v.select(-1, 0) if v.shape[-1] > 0 else v.sum(-1), {}
    yield "add_dim", v.unsqueeze(0), {}
    if v.dim() >= 1 and v.shape[0] > 1:
        yield "empty", v[:0], {}
        yield "one_sample", v[:1], {}
        yield "batch_minus_one", v[:-1], {}


def _number_mutations(v: Any) -> Iterator[tuple[str, Any, dict[str, Any]]]:
    if isinstance(v, bool):
        return
    if isinstance(v, float):
        for label, w in (("zero", 0.0), ("negative", -1.0), ("nan", math.nan)):
            yield f"hyper_{label}", w, {}
        # an infinite coefficient may give an infinite value (inf in, inf out); NaN may not
        yield "hyper_inf", math.inf, {"bad_values": True}
    elif isinstance(v, int):
        yield "hyper_zero", 0, {}
        yield "hyper_negative", -1, {}


def _cases(call: Call) -> Iterator[Case]:
    yield Case("valid", dict(call.args), call.init)
    groups = [("", call.args)] + ([("init.", call.init)] if call.init is not None else [])
    for prefix, group in groups:
        for name, v in group.items():
            if isinstance(v, torch.Tensor):
                muts = _tensor_mutations(v, name)
            elif isinstance(v, (int, float)):
                muts = _number_mutations(v)
            elif isinstance(v, str):
                muts = iter([("bad_choice", "__bad__", {})])
            elif isinstance(v, (list, tuple)):
                yield from _item_cases(call, prefix, group, name, v)
                continue
            else:
                continue
            for mut, w, flags in muts:
                new_group = dict(group)
                new_group[name] = w
                args = new_group if prefix == "" else dict(call.args)
                init = new_group if prefix == "init." else call.init
                masked_arg = name if flags.get("masked") else None
                yield Case(f"{prefix}{name}:{mut}", args, init, masked_arg=masked_arg, **flags)


def _item_cases(
    call: Call, prefix: str, group: dict[str, Any], name: str, v: list[Any] | tuple[Any, ...]
) -> Iterator[Case]:
    """Mutations of the tensors inside a sequence argument: every field of a NamedTuple
    (``output.logits``), else the first item (``attentions[0]``), the rest unchanged."""
    fields = getattr(v, "_fields", None)
    items = list(enumerate(fields)) if fields is not None else [(0, None)]
    for index, field in items:
        if index >= len(v) or not isinstance(v[index], torch.Tensor):
            continue
        label = f"{name}.{field}" if field is not None else f"{name}[{index}]"
        for mut, w, flags in _tensor_mutations(v[index], label):
            seq = list(v)
            seq[index] = w
            new_group = dict(group)
            new_group[name] = type(v)(*seq) if fields is not None else type(v)(seq)
            args = new_group if prefix == "" else dict(call.args)
            init = new_group if prefix == "init." else call.init
            masked = (name, index) if flags.get("masked") else None
            yield Case(f"{prefix}{label}:{mut}", args, init, masked_item=masked, **flags)


def _tensors(out: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    if depth > 4:
        return
    if isinstance(out, torch.Tensor):
        if out.is_floating_point() or out.is_complex():
            yield out
    elif isinstance(out, dict):
        for v in out.values():
            yield from _tensors(v, depth + 1)
    elif isinstance(out, (list, tuple)):
        for v in out:
            yield from _tensors(v, depth + 1)
    elif dataclasses.is_dataclass(out) and not isinstance(out, type):
        for f in dataclasses.fields(out):
            yield from _tensors(getattr(out, f.name), depth + 1)
    elif isinstance(out, float):
        yield torch.tensor(out)


def _names_an_argument(message: str, call: Call) -> bool:
    return any(re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", message) for n in call.names)


def _clone(v: Any) -> Any:
    """A fresh copy of a tensor argument, or of the tensors in a list / tuple / NamedTuple one."""
    if isinstance(v, torch.Tensor) and v.is_leaf:
        return v.detach().clone().requires_grad_(v.requires_grad)
    if isinstance(v, (list, tuple)) and any(isinstance(e, torch.Tensor) for e in v):
        items = [e.detach().clone() if isinstance(e, torch.Tensor) else e for e in v]
        return type(v)(*items) if hasattr(v, "_fields") else type(v)(items)
    return v


def _clone_args(group: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if group is None else {k: _clone(v) for k, v in group.items()}


def _outcome(call: Call, case: Case) -> tuple[str, str]:
    """(kind, detail) of one case."""
    args, init = _clone_args(case.args), _clone_args(case.init)
    assert args is not None
    wrt = None  # the masked tensor, for the gradient check
    if case.masked and case.masked_arg in args:
        wrt = args[case.masked_arg] = args[case.masked_arg].detach().requires_grad_(True)
    elif case.masked and case.masked_item is not None and case.masked_item[0] in args:
        name, index = case.masked_item
        wrt = args[name][index].requires_grad_(True)  # a fresh leaf from _clone
    mutated = dataclasses.replace(call, args=args, init=init)
    try:
        with checks(case.mode), bounded(SECONDS, EXTRA_BYTES):  # type: ignore[arg-type]
            out = mutated.run()
            grad = None
            if wrt is not None:
                scalar = out if isinstance(out, torch.Tensor) else None
                if isinstance(out, tuple) and out and isinstance(out[0], torch.Tensor):
                    scalar = out[0]
                if (
                    scalar is not None
                    and scalar.dim() == 0
                    and scalar.requires_grad
                    and bool(torch.isfinite(scalar))
                ):
                    (grad,) = torch.autograd.grad(scalar, wrt, allow_unused=True)
    except Runaway as exc:
        return "runaway", str(exc)
    except Exception as exc:  # noqa: BLE001
        if _raised_in_user_code(exc, mutated):
            return "user_code", f"{type(exc).__name__}: {str(exc)[:100]}"
        if case.bad_values and case.mode != "full" and not _names_an_argument(str(exc), call):
            # Unchecked NaN/inf input that makes torch (or scipy) raise instead of returning
            # NaN: bad in, bad out, without a host sync.
            return "propagated", f"{type(exc).__name__}"
        return _error_kind(exc, call)
    tensors = [t.detach() for t in _tensors(out)]

    has_nan = any(bool(t.isnan().any()) for t in tensors)
    has_inf = any(bool(t.isinf().any()) for t in tensors)
    if grad is not None and not bool(torch.isfinite(grad).all()):
        return "silent_nan", "non-finite gradient from a masked (-inf) logit"
    if not (has_nan or has_inf):
        return "finite", ""
    if case.bad_values:
        if case.mode == "full":
            return "unchecked", "NaN/inf input under full checks gave a non-finite result"
        return "propagated", ""
    if call.key in INF_BY_DESIGN and not has_nan:
        return "inf_by_design", ""
    if case.masked and not has_nan:
        # -inf log-probabilities of masked entries, or +inf loss where a target sits on a
        # masked class: infinite, never NaN.
        return "inf_from_mask", ""
    return "silent_nan", f"{'NaN' if has_nan else 'inf'} from finite input"


def _user_code(call: Call) -> tuple[set[int], set[types.CodeType]]:
    """(ids of the Modules, code of the functions) that the valid call passes in and that are
    not inforeg's: the table's networks, denoisers and objectives, with their submodules."""
    modules: set[int] = set()
    codes: set[types.CodeType] = set()
    values = [*call.args.values(), *(call.init or {}).values()]
    values += [e for v in values if isinstance(v, (list, tuple)) for e in v]
    for v in values:
        if getattr(type(v), "__module__", "").startswith("inforeg"):
            continue
        if isinstance(v, torch.nn.Module):
            modules |= {id(m) for m in v.modules()}
        elif isinstance(v, types.FunctionType) and not v.__module__.startswith("inforeg"):
            codes.add(v.__code__)
    return modules, codes


def _raised_in_user_code(exc: BaseException, call: Call) -> bool:
    """True when the innermost frames of the traceback, up to the first frame of inforeg code,
    include a frame of a user-supplied callable (its function's code, or a method of one of its
    Modules, torch's ``Module.__call__`` included). An error raised in inforeg code, or in torch
    called by inforeg code, meets an inforeg frame first and never qualifies."""
    modules, codes = _user_code(call)
    if not modules and not codes:
        return False
    for frame, _ in reversed(list(traceback.walk_tb(exc.__traceback__))):
        if frame.f_code.co_filename.startswith(INFOREG_DIR):
            return False
        if frame.f_code in codes or id(frame.f_locals.get("self")) in modules:
            return True
    return False


def _error_kind(exc: Exception, call: Call) -> tuple[str, str]:
    msg = str(exc)
    if isinstance(exc, (ValueError, TypeError)):
        if _names_an_argument(msg, call):
            return "error", msg[:100]
        return "unclear", f"{type(exc).__name__} naming no argument: {msg[:150]}"
    return "unclear", f"{type(exc).__name__}: {msg[:150]}"


FAILING_KINDS = {"unclear", "silent_nan", "unchecked", "runaway"}


@pytest.mark.parametrize(
    "key", sorted(k for k in PUBLIC if k not in NOT_COVERED | CONTAINERS.keys())
)
def test_bad_input(key: str, calls: dict[str, Call]) -> None:
    call = calls[key]
    failures, fixed = [], []
    for case in _cases(call):
        kind, detail = _outcome(call, case)
        _STATS[kind] += 1
        known = (key, case.name) in KNOWN_FAILURES
        if kind in FAILING_KINDS and not known:
            failures.append(f"{case.name}: {kind}: {detail}")
        elif kind not in FAILING_KINDS and known:
            fixed.append(case.name)
        if case.name == "valid" and kind not in ("finite", "inf_by_design"):
            failures.append(f"the valid call itself gave {kind}: {detail}")
    _CALLABLES.add(key)
    assert not failures, f"{key}: {len(failures)} bad outcome(s):\n" + "\n".join(failures)
    assert not fixed, f"{key}: these now pass, remove them from KNOWN_FAILURES: {fixed}"


def test_every_callable_is_covered(calls: dict[str, Call]) -> None:
    covered = calls.keys() | CONTAINERS.keys() | NOT_COVERED.keys()
    missing = sorted(k for k in PUBLIC if k not in covered)
    assert not missing, f"public callables without a valid call (add one to TABLE): {missing}"
    stale = sorted(k for k in NOT_COVERED if k in calls or k not in PUBLIC)
    assert not stale, f"remove from NOT_COVERED (now covered or gone): {stale}"
    assert not NOT_COVERED, f"callables without a valid call: {sorted(NOT_COVERED)}"


@pytest.mark.parametrize("key", sorted(CONTAINERS))
def test_container_is_built_by_its_producer(key: str, calls: dict[str, Call]) -> None:
    """A result container is covered through the valid call of the callable that builds it."""
    producer = CONTAINERS[key]
    assert producer in calls, f"{key}: its producer {producer} has no valid call"
    assert isinstance(calls[producer].run(), PUBLIC[key]), f"{producer} did not return a {key}"
    _CALLABLES.add(key)


def harness_stats() -> dict[str, Any] | None:
    """What this process's harness run saw (plain data, so that an xdist worker can send it to
    the controller), or None when no harness case ran; ``tests/conftest.py`` prints it."""
    if not _STATS:
        return None
    return {
        "callables": sorted(_CALLABLES),
        "containers": sorted(_CALLABLES & CONTAINERS.keys()),
        "public": len(PUBLIC),
        "kinds": dict(_STATS),
        "known_failures": len(KNOWN_FAILURES),
    }


def _raised(call: Call) -> BaseException:
    with pytest.raises(Exception) as info:  # any exception: the rule is what is tested
        call.run()
    return info.value


def test_user_code_rule_is_strict() -> None:
    """Only an error whose innermost non-torch frame is a passed-in callable's is user code."""
    from inforeg.core.checks import check_positive
    from inforeg.dependence import VIBHead, gradient_penalty

    class Critic(torch.nn.Module):
        def __init__(self, fail: str) -> None:
            super().__init__()
            self.fail = fail
            self.lin = torch.nn.Linear(3, 2).double()

        def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            if self.fail == "inforeg":  # the user's network calls inforeg code that raises
                check_positive(-1.0, "scale")
            return self.lin(x.float() if self.fail == "torch" else x) @ y.T

    x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    call = Call("dependence.gradient_penalty", gradient_penalty, {"x": x, "y": y})
    in_user_layer = dataclasses.replace(call, args={**call.args, "critic": Critic("torch")})
    assert _raised_in_user_code(_raised(in_user_layer), in_user_layer)
    via_inforeg = dataclasses.replace(call, args={**call.args, "critic": Critic("inforeg")})
    assert not _raised_in_user_code(_raised(via_inforeg), via_inforeg)
    checked_first = dataclasses.replace(
        in_user_layer, args={**in_user_layer.args, "x": x.long()}
    )  # inforeg's own check of x raises before the critic runs
    assert not _raised_in_user_code(_raised(checked_first), checked_first)
    inforeg_net = dataclasses.replace(call, args={**call.args, "critic": VIBHead(3, 2)})
    assert _user_code(inforeg_net) == (set(), set())
