"""One valid call of every public callable, for the bad-input harness (``test_bad_input.py``).

Calls come from two sources:

1. the docstring examples: every ``>>>`` example of the library is run once with each public
   function (and each public Module's ``__init__`` and ``forward``) wrapped so that its first
   call's arguments are recorded;
2. :data:`TABLE`, small valid inputs for the callables that no example calls directly.

A :class:`Call` keeps the arguments by name (bound to the signature), so that the harness can
mutate one argument at a time and name it. For an object whose entry point is a named method
(``certify``, ``step``, ``log``, ``__iter__`` ...) the call names it (``method``), and a state
object is read back after the call (``then``: a method without arguments or an attribute), so
that a bad value stored by ``update``/``push`` shows in the result.

Result containers (``OTResult``, ``VIBOutput`` ...) are not called by users: :data:`CONTAINERS`
names the public callable that builds each one, and the harness checks that its valid call
returns an instance.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import doctest
import functools
import importlib
import inspect
import io
import itertools
import math
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

import inforeg

D64 = torch.float64


@dataclass
class Call:
    """A valid call: ``obj(**args)`` for a function, ``obj(**init)(**args)`` for a class.

    With ``method``, a class is called as ``obj(**init).<method>(**args)`` (a tuple of names:
    each method in turn with the same arguments, e.g. calibrate then search); a returned iterator
    is consumed for its first :data:`ITEMS` items. With ``then``, the result is the pair
    ``(result, inst.<then>())`` (or the attribute ``inst.<then>``).
    """

    key: str
    obj: Any
    args: dict[str, Any]
    init: dict[str, Any] | None = None
    names: set[str] = field(default_factory=set)
    method: str | tuple[str, ...] | None = None
    then: str | None = None

    def run(self) -> Any:
        if self.init is None:
            return _invoke(self.obj, self.args)
        inst = _invoke(self.obj, self.init)
        if self.method is None:
            out = _invoke(inst if isinstance(inst, torch.nn.Module) else inst.__call__, self.args)
        for name in (self.method,) if isinstance(self.method, str) else self.method or ():
            out = _invoke(getattr(inst, name), self.args)
        if isinstance(out, Iterator):
            out = list(itertools.islice(out, ITEMS))
        if self.then is not None:
            state = getattr(inst, self.then)
            out = (out, state() if callable(state) else state)
        return out

    def fresh(self) -> Call:
        """A copy to run again as if for the first time: tensors cloned, generators restarted
        from their state, Module arguments deep-copied."""
        return dataclasses.replace(
            self,
            args={k: _fresh(v) for k, v in self.args.items()},
            init=None if self.init is None else {k: _fresh(v) for k, v in self.init.items()},
        )

    def entry_point(self) -> Callable[..., Any]:
        """The function whose parameters ``args`` binds (unbound, for a class)."""
        if self.init is None:
            return self.obj  # type: ignore[no-any-return]
        method = (self.method,) if isinstance(self.method, str) else self.method
        return getattr(self.obj, method[-1] if method else _method_name(self.obj))  # type: ignore[no-any-return]


ITEMS = 3  # items taken from an iterator (a sampler's batches)


def _invoke(fn: Callable[..., Any], named: dict[str, Any]) -> Any:
    """Call with the bound arguments: positional ones first, ``*args`` and ``**kwargs`` expanded."""
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    sig = inspect.signature(target)
    pos: list[Any] = []
    kw: dict[str, Any] = {}
    skipped = False  # after a skipped (default) parameter, the rest go by keyword
    for name, p in sig.parameters.items():
        if name not in named:
            skipped = skipped or p.kind != p.VAR_POSITIONAL
            continue
        if p.kind == p.VAR_POSITIONAL:
            pos.extend(named[name])
        elif p.kind == p.VAR_KEYWORD:
            kw.update(named[name])
        elif p.kind == p.POSITIONAL_OR_KEYWORD and not skipped or p.kind == p.POSITIONAL_ONLY:
            pos.append(named[name])
        else:
            kw[name] = named[name]
    return fn(*pos, **kw)


def public_callables() -> dict[str, Any]:
    """``"family.name" -> object`` for every name in every family's ``__all__``."""
    out = {}
    for fam in inforeg.FAMILIES:
        pkg = importlib.import_module("inforeg." + fam)
        for name in pkg.__all__:
            out[f"{fam}.{name}"] = getattr(pkg, name)
    return out


def _fresh(v: Any) -> Any:
    if isinstance(v, torch.Generator):
        g = torch.Generator(v.device)
        g.set_state(v.get_state())
        return g
    if isinstance(v, torch.Tensor):
        return v.detach().clone().requires_grad_(v.requires_grad)
    if isinstance(v, torch.nn.Module):
        return copy.deepcopy(v)
    if type(v) in (list, tuple):
        return type(v)(_fresh(e) for e in v)
    return v


def _clone(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.detach().clone()
    if isinstance(v, (list, tuple)) and any(isinstance(e, torch.Tensor) for e in v):
        return type(v)(_clone(e) for e in v)
    return v


def _bind(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    bound = inspect.signature(fn).bind(*args, **kwargs)
    return {k: _clone(v) for k, v in bound.arguments.items() if k != "self"}


def _method_name(cls: type) -> str:
    return "forward" if issubclass(cls, torch.nn.Module) else "__call__"


def record_doctest_calls(public: dict[str, Any]) -> dict[str, Call]:
    """Run every library docstring example with the public callables wrapped; first calls win."""
    calls: dict[str, Call] = {}
    mods = [inforeg]
    for info in pkgutil.walk_packages(inforeg.__path__, prefix="inforeg."):
        if not info.name.startswith(("inforeg.lab", "inforeg.__main__")):
            try:
                mods.append(importlib.import_module(info.name))
            except ImportError:  # an optional extra (e.g. TRL) is not installed
                continue
    finder = doctest.DocTestFinder()
    tests = [(m, t) for m in mods for t in finder.find(m) if t.examples]
    restore: list[Callable[[], None]] = []

    def wrap_function(key: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            if key not in calls:
                with contextlib.suppress(TypeError):
                    calls[key] = Call(key, fn, _bind(fn, a, k))
            return fn(*a, **k)

        return wrapper

    def wrap_class(key: str, cls: type) -> None:
        meth = _method_name(cls)
        init, call = cls.__init__, getattr(cls, meth, None)
        own_init, own_call = cls.__dict__.get("__init__"), cls.__dict__.get(meth)
        if call is None:
            return

        def new_init(self: Any, *a: Any, **k: Any) -> None:
            if type(self) is cls:
                with contextlib.suppress(TypeError):
                    self.__dict__["_harness_init"] = _bind(init, (self, *a), k)
            init(self, *a, **k)

        def new_call(self: Any, *a: Any, **k: Any) -> Any:
            saved = self.__dict__.get("_harness_init")
            if type(self) is cls and saved is not None and key not in calls:
                with contextlib.suppress(TypeError):
                    calls[key] = Call(key, cls, _bind(call, (self, *a), k), init=saved)
            return call(self, *a, **k)

        cls.__init__ = new_init  # type: ignore[misc]
        setattr(cls, meth, new_call)

        def undo() -> None:
            if own_init is None:
                del cls.__init__  # type: ignore[misc]
            else:
                cls.__init__ = own_init  # type: ignore[misc]
            if own_call is None:
                delattr(cls, meth)
            else:
                setattr(cls, meth, own_call)

        restore.append(undo)

    try:
        seen: set[int] = set()
        for key, obj in public.items():
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            if inspect.isclass(obj):
                wrap_class(key, obj)
                continue
            w = wrap_function(key, obj)
            for m in mods:
                for attr, val in list(vars(m).items()):
                    if val is obj:
                        setattr(m, attr, w)
                        restore.append(lambda m=m, attr=attr, val=val: setattr(m, attr, val))
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        for m, test in tests:
            test.globs = vars(m).copy()
            with contextlib.redirect_stdout(io.StringIO()):
                runner.run(test, out=lambda s: None)
    finally:
        for undo in reversed(restore):
            undo()
    return calls


# ---------------------------------------------------------------------------------------------
# The table: small valid inputs for callables that no docstring example calls.


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_g(seed), dtype=D64)


def _probs(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.softmax(_randn(*shape, seed=seed), -1)


def _labels(n: int, k: int, seed: int = 0) -> torch.Tensor:
    return torch.arange(n) % k


def _fn(**args: Any) -> dict[str, Any]:
    return args


class _Critic(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(3, 2).double()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.lin(x) @ y.T  # the (n, n) score matrix


def _head(d: int, c: int = 3, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(d, c).double()


def _entry(method: str | tuple[str, ...] | None = None, then: str | None = None) -> dict[str, Any]:
    """The third element of a table entry: the method to call and the state to read back."""
    return {"method": method, "then": then}


def _mlp(*sizes: int, seed: int = 0) -> torch.nn.Module:
    """A tiny float64 network (the user's model in a valid call)."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers += [torch.nn.Linear(a, b)] + ([torch.nn.Tanh()] if i < len(sizes) - 2 else [])
    return torch.nn.Sequential(*layers).double()


def _flat_mlp(*sizes: int, seed: int = 0) -> torch.nn.Module:
    """A tiny float64 image classifier: flatten (C, H, W), then :func:`_mlp`."""
    return torch.nn.Sequential(torch.nn.Flatten(), _mlp(*sizes, seed=seed))


def _unit_gaussian_denoiser(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The exact denoiser E[x0 | x] of N(0, I) data: a user callable of the table."""
    return x / (1 + sigma**2)


def _maid() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """MAID's docstring problem: a ridge-type lower level with exact solutions, one step."""
    y = torch.tensor([2.0, 1.0], dtype=D64)
    xt = torch.tensor([0.5, 0.5], dtype=D64)

    def lower(x: torch.Tensor, th: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x - y) ** 2).sum() + 0.5 * (th.exp() * x**2).sum()

    def upper(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * ((x - xt) ** 2).sum()

    def solver(th: torch.Tensor, x0: torch.Tensor, eps: float) -> torch.Tensor:
        return y / (1 + th.exp())

    init = _fn(
        lower=lower,
        upper=upper,
        solver=solver,
        theta=torch.zeros(2, dtype=D64),
        x=y / 2,
        mu=1.0,
        lipschitz_upper=1.0,
        beta=1.0,
        generator=_g(),
    )
    return init, {}, _entry("step", then="theta")


def _vib_output() -> Any:
    from inforeg.dependence import VIBOutput

    return VIBOutput(_randn(6, 3), _randn(6, 2, seed=1), 0.1 * _randn(6, 2, seed=2))


# key -> (init kwargs or None, call kwargs[, _entry(...)]); built lazily (fresh tensors each time)
TABLE: dict[str, Callable[[], tuple[Any, ...]]] = {
    # dependence
    "dependence.CSIBLoss": lambda: (
        {},
        _fn(x=_randn(8, 3), y=_probs(8, 3), y_hat=_probs(8, 3, seed=1), t=_randn(8, 2, seed=2)),
    ),
    "dependence.DistanceCorrelationLoss": lambda: ({}, _fn(x=_randn(8, 3), y=_randn(8, 2, seed=1))),
    "dependence.HSICLoss": lambda: ({}, _fn(x=_randn(8, 3), y=_randn(8, 2, seed=1))),
    "dependence.InfoNCELoss": lambda: ({}, _fn(x=_randn(8, 3), y=_randn(8, 3, seed=1))),
    "dependence.MMDLoss": lambda: ({}, _fn(x=_randn(8, 3), y=_randn(9, 3, seed=1))),
    "dependence.VonNeumannEntropy": lambda: ({}, _fn(z=_randn(8, 3))),
    "dependence.cka": lambda: (None, _fn(x=_randn(8, 3), y=_randn(8, 2, seed=1))),
    "dependence.distance_covariance": lambda: (None, _fn(x=_randn(8, 3), y=_randn(8, 2, seed=1))),
    "dependence.conditional_cs_divergence": lambda: (
        None,
        _fn(x=_randn(8, 3), y=_probs(8, 3), y_hat=_probs(8, 3, seed=1)),
    ),
    "dependence.concatenated_distance_covariance": lambda: (
        None,
        _fn(pred=_randn(8, 2), attributes=[_randn(8, seed=1), _randn(8, seed=2)]),
    ),
    "dependence.DistanceCovarianceFairness": lambda: (
        {},
        _fn(pred=_randn(8, 2), attributes=[_randn(8, seed=1), _randn(8, seed=2)]),
    ),
    "dependence.encode_attributes": lambda: (None, _fn(attributes=[_randn(8), _randn(8, seed=1)])),
    "dependence.generalized_jsd": lambda: (
        None,
        _fn(pred=torch.rand(10, generator=_g(), dtype=D64), groups=_labels(10, 2), grid_size=50),
    ),
    "dependence.gradient_penalty": lambda: (
        None,
        _fn(critic=_Critic(), x=_randn(6, 3), y=_randn(6, 2, seed=1)),
    ),
    "dependence.wasserstein_dependency": lambda: (
        None,
        _fn(critic=_Critic(), x=_randn(6, 3), y=_randn(6, 2, seed=1)),
    ),
    "dependence.MINE": lambda: (
        {"critic": _Critic()},
        _fn(x=_randn(6, 3), y=_randn(6, 2, seed=1)),
    ),
    "dependence.ModalityAlignmentLoss": lambda: (
        {},
        _fn(img=_randn(6, 4), txt=_randn(6, 4, seed=1)),
    ),
    "dependence.permutation_jsd": lambda: (
        None,
        _fn(
            z_a=_randn(6, 3),
            z_v=_randn(6, 2, seed=1),
            head_a=_head(3),
            head_v=_head(2, seed=1),
            num_samples=4,
            generator=_g(),
        ),
    ),
    "dependence.MCRRegularizer": lambda: (
        {"num_samples": 4},
        _fn(z_a=_randn(6, 3), z_v=_randn(6, 2, seed=1), head_a=_head(3), head_v=_head(2, seed=1)),
    ),
    "dependence.smallest_lambda_reaching": lambda: (
        None,
        _fn(lambdas=[0.1, 0.2, 0.4], jsd=[0.5, 0.3, 0.1], target=0.2),
    ),
    # estimators
    "estimators.DiffusionSpectralEntropy": lambda: ({}, _fn(z=_randn(10, 3))),
    "estimators.diffusion_spectral_mutual_information": lambda: (
        None,
        _fn(z=_randn(10, 3), y=_labels(10, 2)),
    ),
    "estimators.dlle_loss": lambda: (None, _fn(e=_randn(6, 3), e_aug=_randn(6, 3, seed=1))),
    "estimators.isometric_mix": lambda: (
        None,
        _fn(
            x=_randn(6, 3),
            g=_randn(6, 3, seed=1),
            alpha=torch.rand(6, 1, generator=_g(), dtype=D64),
        ),
    ),
    "estimators.disomap_loss": lambda: (
        None,
        _fn(
            e_mix=_randn(6, 3),
            e_x=_randn(6, 3, seed=1),
            e_g=_randn(6, 3, seed=2),
            alpha=torch.rand(6, 1, generator=_g(), dtype=D64),
            generator=_g(),
        ),
    ),
    "estimators.ksg_mutual_information": lambda: (
        None,
        _fn(x=_randn(20, 1), y=_randn(20, 1, seed=1)),
    ),
    "estimators.ksg_mutual_information_classif": lambda: (
        None,
        _fn(x=_randn(20, 2), y=_labels(20, 2)),
    ),
    "estimators.kde_mutual_information": lambda: (None, _fn(t=_randn(10, 3), y=_labels(10, 2))),
    "estimators.infomec": lambda: (
        None,
        _fn(latents=_randn(30, 2), factors=torch.stack([_labels(30, 3), _labels(30, 2)], 1)),
    ),
    "estimators.information_plane": lambda: (
        None,
        _fn(activations=[_randn(12, 3)], y=_labels(12, 2), n_bins=4),
    ),
    "estimators.ManifoldEntropyLoss": lambda: ({"dim": 3, "memory_size": 8}, _fn(z=_randn(4, 3))),
    # losses
    "losses.AdaptiveDeviationScale": lambda: (
        {},
        _fn(branch=_randn(4, 3), skip=_randn(4, 3, seed=1)),
    ),
    "losses.ArchitectureEntropyRegularizer": lambda: ({}, _fn(alphas=_randn(3, 4))),
    "losses.AttentionEntropyMaximization": lambda: ({}, _fn(attention_logits=_randn(4, 4))),
    "losses.CompSumLoss": lambda: ({}, _fn(logits=_randn(6, 3), targets=_labels(6, 3))),
    "losses.ContrastivePartialRankingDistillation": lambda: (
        {"num_hard": 2},
        _fn(student_sim=_randn(5, 5), teacher_sim=_randn(5, 5, seed=1)),
    ),
    "losses.DEPICTClusteringLoss": lambda: (
        {},
        _fn(logits=_randn(6, 3), target=_probs(6, 3, seed=1)),
    ),
    "losses.DecoupledSoftmaxLoss": lambda: (
        {},
        _fn(scores=_randn(4, 6), positive_mask=torch.eye(4, 6, dtype=torch.bool)),
    ),
    "losses.SoftTopKLoss": lambda: (
        {"k": 2},
        _fn(scores=_randn(4, 6), positive_mask=torch.eye(4, 6, dtype=torch.bool)),
    ),
    "losses.soft_top_k_loss": lambda: (
        None,
        _fn(scores=_randn(4, 6), positive_mask=torch.eye(4, 6, dtype=torch.bool), k=2),
    ),
    "losses.soft_top_k": lambda: (None, _fn(scores=_randn(4, 6), k=2)),
    "losses.SourceFreeAdaptationLoss": lambda: (
        {"prior": torch.full((3,), 1 / 3, dtype=D64)},
        _fn(logits=_randn(6, 3)),
    ),
    "losses.cross_view_self_distillation": lambda: (
        None,
        _fn(logits=_randn(6, 3), teacher_temperature=0.05),
    ),
    "losses.depict_clustering_loss": lambda: (
        None,
        _fn(logits=_randn(6, 3), target=_probs(6, 3, seed=1)),
    ),
    "losses.generalized_cross_entropy": lambda: (
        None,
        _fn(logits=_randn(6, 3), targets=_labels(6, 3)),
    ),
    "losses.margin_vector_distance": lambda: (
        None,
        _fn(logits_adv=_randn(6, 3), logits_clean=_randn(6, 3, seed=1), targets=_labels(6, 3)),
    ),
    "losses.masked_attention_softmax": lambda: (None, _fn(attention_logits=_randn(2, 4, 4))),
    "losses.local_entropy_regularizer": lambda: (
        None,
        _fn(
            logits=_randn(6, 4),
            labelled_mask=torch.tensor([1, 0, 0, 1, 0, 0]).bool(),
            num_known=2,
            class_prior=torch.full((4,), 0.25, dtype=D64),
            threshold=0.0,
        ),
    ),
    "losses.LegoGCDLoss": lambda: (
        {"num_classes": 4, "num_known": 2},
        _fn(
            logits=_randn(8, 4),
            labels=_labels(4, 2),
            labelled_mask=torch.tensor([1, 1, 0, 0]).bool(),
        ),
    ),
    "losses.SimGCDLoss": lambda: (
        {},
        _fn(
            logits=_randn(8, 4),
            labels=_labels(4, 2),
            labelled_mask=torch.tensor([1, 1, 0, 0]).bool(),
        ),
    ),
    "losses.ProgressiveSelfDistillation": lambda: (
        {"num_samples": 6, "num_classes": 3, "total_epochs": 3},
        _fn(logits=_randn(6, 3), targets=_labels(6, 3), indices=torch.arange(6)),
    ),
    "losses.pskd_alpha": lambda: (None, _fn(epoch=1, total_epochs=3)),
    "losses.simgcd_teacher_temperature": lambda: (None, _fn(epoch=1)),
    "losses.architecture_entropy_weight": lambda: (None, _fn(epoch=1, total_epochs=3)),
    "losses.comp_sum_tau": lambda: (None, _fn(kind="gce")),
    "losses.quantization_noise": lambda: (None, _fn(x=_randn(4, 3), bits=4, generator=_g())),
    # nn / optim
    "nn.ProximalMatchingLoss": lambda: (
        {"gamma": 0.5},
        _fn(pred=_randn(4, 3), target=_randn(4, 3, seed=1)),
    ),
    "nn.sample_mask_cells": lambda: (
        None,
        _fn(log_alpha=_randn(3, 4), log_beta=_randn(3, 4, seed=1)),
    ),
    "optim.mcp_penalty": lambda: (None, _fn(theta=_randn(5), lam=0.5)),
    # ot
    "ot.Sinkhorn": lambda: (
        {"epsilon": 0.1},
        _fn(a=None, b=None, cost=torch.cdist(_randn(4, 2), _randn(3, 2, seed=1)) ** 2),
    ),
    "ot.SinkhornDivergence": lambda: ({}, _fn(x=_randn(5, 2), y=_randn(4, 2, seed=1))),
    "ot.SmoothOT": lambda: (
        {"gamma": 0.5},
        _fn(a=None, b=None, cost=torch.cdist(_randn(4, 2), _randn(3, 2, seed=1)) ** 2),
    ),
    "ot.SparsityConstrainedOT": lambda: (
        {"k": 2},
        _fn(a=None, b=None, cost=torch.cdist(_randn(4, 2), _randn(3, 2, seed=1)) ** 2),
    ),
    "ot.LogSinkhorn": lambda: ({}, _fn(feat_x=_randn(4, 3), feat_y=_randn(5, 3, seed=1))),
    "ot.SlicedWassersteinLoss": lambda: (
        {"n_projections": 8},
        _fn(
            x=_randn(2, 4, 3),
            y=_randn(2, 5, 3, seed=1),
            p_xy=torch.full((2, 4, 5), 0.2, dtype=D64),
            generator=_g(),
        ),
    ),
    "ot.max_sliced_wasserstein": lambda: (
        None,
        _fn(x=_randn(6, 2), y=_randn(5, 2, seed=1), seed=0),
    ),
    "ot.random_projections": lambda: (None, _fn(d=3, n_projections=4, seed=0)),
    # rl
    "rl.kl_k3": lambda: (
        None,
        _fn(
            logp=-torch.rand(2, 3, generator=_g(), dtype=D64),
            ref_logp=-torch.rand(2, 3, generator=_g(1), dtype=D64),
        ),
    ),
    "rl.aggregate": lambda: (None, _fn(loss=_randn(2, 3), mask=torch.ones(2, 3, dtype=torch.bool))),
    "rl.selective_log_softmax": lambda: (
        None,
        _fn(logits=_randn(2, 3, 5), tokens=torch.zeros(2, 3, dtype=torch.long)),
    ),
    "rl.selective_entropy": lambda: (None, _fn(logits=_randn(2, 3, 5))),
    "rl.peak_entropy_mask": lambda: (
        None,
        _fn(entropy=torch.rand(2, 3, generator=_g(), dtype=D64)),
    ),
    "rl.SelectiveEntropyRegularizer": lambda: ({}, _fn(logits=_randn(2, 3, 5))),
    "rl.EntropySmoothingRegularizer": lambda: ({}, _fn(logits=_randn(2, 3, 5))),
    "rl.low_probability_loss": lambda: (
        None,
        _fn(
            logp=-torch.rand(2, 3, generator=_g(), dtype=D64),
            old_logp=-torch.rand(2, 3, generator=_g(1), dtype=D64),
            advantages=_randn(2, 3),
            proxy_logp=-torch.rand(2, 3, generator=_g(2), dtype=D64),
        ),
    ),
    "rl.LowProbabilityRegularizer": lambda: (
        {},
        _fn(
            logits=_randn(2, 3, 5),
            tokens=torch.zeros(2, 3, dtype=torch.long),
            old_logp=-torch.rand(2, 3, generator=_g(1), dtype=D64),
            advantages=_randn(2, 3),
        ),
    ),
    "rl.ArbitraryEntropyController": lambda: (
        {"max_samples": 4},
        _fn(
            logits=_randn(2, 3, 5),
            tokens=torch.zeros(2, 3, dtype=torch.long),
            advantages=_randn(2, 3),
        ),
    ),
    "robust.binomial_test_half": lambda: (None, _fn(k=7, n=10)),
    "robust.RandomizedSmoothing": lambda: (
        {"base": _flat_mlp(8, 3), "num_classes": 3, "sigma": 0.25},
        _fn(x=_randn(1, 2, 4), n0=8, n=32, alpha=1e-3, batch_size=16, generator=_g()),
        _entry("certify"),
    ),
    "robust.DualRandomizedSmoothing": lambda: (
        {
            "base_l": _flat_mlp(16, 3),
            "base_r": _flat_mlp(16, 3, seed=1),
            "num_classes": 3,
            "sigma": 0.25,
        },
        _fn(x=_randn(1, 4, 4), n0=8, n=32, alpha=1e-3, batch_size=16, generator=_g()),
        _entry("certify"),
    ),
    # models and state objects
    "optim.MAID": _maid,
    "quant.EntropyBlockPTQ": lambda: (
        {"layers": [_mlp(3, 4).float(), _mlp(4, 2, seed=1).float()], "bits": 4, "sweeps": 1},
        _fn(x=_randn(16, 3).float()),
        _entry(("calibrate", "search")),
    ),
    "losses.ABMIL": lambda: (
        {"in_dim": 3, "inner_dim": 4, "attention_dim": 4},
        _fn(x=_randn(5, 3).float()),
    ),
    "losses.AdversarialCompSumLoss": lambda: (
        {"steps": 2},
        _fn(model=_mlp(3, 3), x=_randn(4, 3), targets=_labels(4, 3)),
    ),
    "losses.adversarial_comp_sum_loss": lambda: (
        None,
        _fn(model=_mlp(3, 3), x=_randn(4, 3), targets=_labels(4, 3), steps=2),
    ),
    "losses.HeadwiseAttentionEntropyRegularizer": lambda: (
        {"num_layers": 2, "num_heads": 2},
        _fn(attentions=[_probs(1, 2, 3, 3), _probs(1, 2, 3, 3, seed=1)]),
    ),
    "losses.attention_row_entropy": lambda: (None, _fn(attn_probs=_probs(1, 2, 3, 3))),
    "losses.QuantizationNoise": lambda: (
        {},
        _fn(x=_randn(4, 3), weights=torch.tensor([0.3, 0.2], dtype=D64)),
    ),
    "diffusion.ddim_sample": lambda: (
        None,
        _fn(
            denoiser=_unit_gaussian_denoiser,
            x=80.0 * _randn(2, 2),
            sigmas=torch.tensor([80.0, 1.0, 0.002], dtype=D64),
        ),
    ),
    "diffusion.EVODiffSampler": lambda: (
        {"steps": 3},
        _fn(denoiser=_unit_gaussian_denoiser, x=80.0 * _randn(2, 2)),
    ),
    "dependence.VIBHead": lambda: (
        {"in_features": 4, "num_classes": 3, "bottleneck": 2},
        _fn(features=_randn(6, 4).float()),
    ),
    "dependence.MIDLoss": lambda: ({}, _fn(output=_vib_output(), target=_labels(6, 3))),
    "dependence.spectral_normalize": lambda: (None, _fn(module=_mlp(3, 2)[0])),
    "nn.qlae_param_groups": lambda: (None, _fn(model=_mlp(3, 4, 2), weight_decay=0.1)),
    "estimators.EmbeddingMemory": lambda: (
        {"size": 4, "dim": 3},
        _fn(z=_randn(2, 3)),
        _entry("push", then="values"),
    ),
    "rl.TurnEntropyHistory": lambda: (
        {"max_turns": 2},
        _fn(entropy=torch.rand(2, 3, generator=_g(), dtype=D64), turn=torch.tensor([0, 1])),
        _entry("update", then="reference"),
    ),
    "estimators.InformationPlane": lambda: (
        {"n_bins": 4},
        _fn(epoch=0, activations=[_randn(12, 3)], y=_labels(12, 2)),
        _entry("log"),
    ),
    "data.EntropyCurriculumSampler": lambda: (
        {
            "static_difficulty": torch.rand(10, generator=_g(), dtype=D64),
            "batch_size": 2,
            "warmup_steps": 4,
        },
        {},
        _entry("__iter__"),
    ),
    "estimators.QGaussian": lambda: (
        {"q": 1.5, "beta": 2.0, "loc": 0.5},
        _fn(value=_randn(5)),
        _entry("log_prob"),
    ),
}

# The callables that build each result container (a NamedTuple or dataclass users only read):
# the harness checks that the producer's valid call returns an instance of the container.
CONTAINERS: dict[str, str] = {
    "ot.OTResult": "ot.sinkhorn",
    "dependence.VIBOutput": "dependence.VIBHead",
    "dependence.WDMOutput": "dependence.wasserstein_dependency",
    "nn.QuantizerOutput": "nn.scalar_quantize",
    "optim.CompositionalNLLOutput": "optim.compositional_nll",
    "optim.HypergradientOutput": "optim.inexact_hypergradient",
    "estimators.InfoMEC": "estimators.infomec",
    "estimators.KDEInformation": "estimators.kde_mutual_information",
}

# Callables without a valid call yet, each with its reason; a listed callable that gains a valid
# call fails ``test_every_callable_is_covered``.
NOT_COVERED: dict[str, str] = {}


def valid_calls(public: dict[str, Any]) -> dict[str, Call]:
    """Every public callable's valid call (doctest recording first, then the table)."""
    calls = record_doctest_calls(public)
    for key, build in TABLE.items():
        if key in calls or key in NOT_COVERED or key not in public:
            continue
        init, args, *entry = build()
        calls[key] = Call(key, public[key], args, init=init, **(entry[0] if entry else {}))
    for call in calls.values():
        call.names = _parameter_names(call)
        _add_number_defaults(call)
    return calls


@functools.cache
def shared_valid_calls() -> dict[str, Call]:
    """:func:`valid_calls` of every public callable, built once per session (running all the
    docstring examples takes seconds). Shared: run a call through :meth:`Call.fresh`."""
    return valid_calls(public_callables())


def _add_number_defaults(call: Call) -> None:
    """Bind the numeric defaults too (``weight=1.0`` ...), so the harness mutates them."""
    obj = call.obj
    pairs = (
        [(obj.__init__, call.init), (call.entry_point(), call.args)]
        if inspect.isclass(obj)
        else [(obj, call.args)]
    )
    for fn, group in pairs:
        if group is None:
            continue
        with contextlib.suppress(TypeError, ValueError):
            for name, p in inspect.signature(fn).parameters.items():
                default = p.default
                numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
                if name not in group and numeric and p.kind != p.VAR_KEYWORD:
                    group[name] = default


def _parameter_names(call: Call) -> set[str]:
    obj = call.obj
    targets = [obj.__init__, call.entry_point()] if inspect.isclass(obj) else [obj]
    names: set[str] = set()
    for t in targets:
        with contextlib.suppress(TypeError, ValueError):
            names |= {
                n for n in inspect.signature(t).parameters if n not in ("self", "args", "kwargs")
            }
    return names


__all__ = [
    "CONTAINERS",
    "Call",
    "NOT_COVERED",
    "TABLE",
    "public_callables",
    "shared_valid_calls",
    "valid_calls",
    "math",
]
