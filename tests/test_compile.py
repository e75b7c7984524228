"""``torch.compile`` smoke test for the rl/ and losses/ hot paths (after Kornia's ``test_dynamo``).

RL users compile their training step, so each case is compiled and must give the eager value and
gradient (and, for the stateful regularisers, the same buffers afterwards):

- backend ``eager`` (Dynamo's tracing alone; fast) for every case;
- backend ``aot_eager`` (AOTAutograd too, which traces the backward) marked slow.

Inductor needs a C++ toolchain and minutes of compile time on 2 cores, so it is not run here.

Each case also pins how many graphs Dynamo makes. A case traced whole gives one graph, and a new
graph break fails the test. The cases in ``GRAPH_BREAKS`` break the graph for the reason given
there (so they are not silently skipped); they still give the eager result. If one stops breaking,
the test says so and it moves out of the list.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

from inforeg import losses as los
from inforeg import rl
from inforeg.rl import _cpu_entropy
from tests._helpers import assert_close, tensors_in

Inputs = dict[str, Any]


def _inputs() -> Inputs:
    g = torch.Generator().manual_seed(0)
    d64 = torch.float64

    def randn(*shape: int, dtype: torch.dtype = d64) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=d64).to(dtype)

    mask = torch.ones(3, 5)
    mask[1, 3:] = 0
    return {
        # rl: float32 logits with V >= 64 take the fused CPU kernel where it builds
        "rl_logits": randn(3, 5, 96, dtype=torch.float32) * 2,
        "rl_tokens": torch.randint(0, 96, (3, 5), generator=g),
        "rl_mask": mask,
        "logp": -torch.rand(3, 5, generator=g, dtype=d64) * 3,
        "old_logp": -torch.rand(3, 5, generator=g, dtype=d64) * 3,
        "adv": randn(3),
        "rewards": torch.rand(8, generator=g, dtype=d64),
        # losses: float64
        "logits": randn(6, 4),
        "logits_b": randn(6, 4),
        "targets": torch.randint(0, 4, (6,), generator=g),
        "past": torch.softmax(randn(6, 4), 1),
        "prior": torch.tensor([0.4, 0.3, 0.2, 0.1], dtype=d64),
        "labelled": torch.tensor([True, False, True, False, False, True]),
        "scores": randn(5, 7),
        "pos_mask": torch.rand(5, 7, generator=g) < 0.4,
        "bag_logits": randn(2, 6),
        "attn_logits": randn(1, 2, 3, 4),
        "alpha_logits": randn(3, 5),
    }


# name -> (function of the inputs, names of the inputs it is differentiated in)
Case = tuple[Callable[[Inputs], Any], tuple[str, ...]]
CASES: dict[str, Case] = {
    # rl
    "token_entropy": (lambda i: rl.token_entropy(i["rl_logits"], 0.9), ("rl_logits",)),
    "selective_log_softmax": (
        lambda i: rl.selective_log_softmax(i["rl_logits"], i["rl_tokens"], 0.9),
        ("rl_logits",),
    ),
    "clipped_surrogate": (
        lambda i: rl.clipped_surrogate(
            i["logp"], i["old_logp"], i["adv"], i["rl_mask"], dual_clip=3.0
        ),
        ("logp",),
    ),
    "kl_k3": (lambda i: rl.kl_k3(i["logp"], i["old_logp"], clamp=20.0), ("logp",)),
    "aggregate_seq_mean_token_sum_norm": (
        lambda i: rl.aggregate(i["logp"], i["rl_mask"], "seq-mean-token-sum-norm"),
        ("logp",),
    ),
    "grpo_advantages": (lambda i: rl.grpo_advantages(i["rewards"], 4), ("rewards",)),
    "reinforce_loss": (
        lambda i: rl.reinforce_loss(i["logp"], i["rl_mask"], i["adv"]),
        ("logp",),
    ),
    "top_p_entropy": (lambda i: rl.top_p_entropy(i["rl_logits"], top_k=20), ("rl_logits",)),
    "selective_entropy": (
        lambda i: rl.selective_entropy(i["rl_logits"], i["rl_mask"], top_k=20),
        ("rl_logits",),
    ),
    "entropy_band_penalty": (
        lambda i: rl.entropy_band_penalty(-i["logp"], -i["old_logp"].mean(), 0.5, 1.5),
        ("logp",),
    ),
    "min_p_proxy_logprobs": (  # no gradient by design
        lambda i: rl.min_p_proxy_logprobs(i["rl_logits"], i["rl_tokens"]),
        (),
    ),
    "SelectiveEntropyRegularizer": (
        lambda i: i["siren"](i["rl_logits"], i["rl_mask"]),
        ("rl_logits",),
    ),
    "EntropySmoothingRegularizer": (
        lambda i: i["epo"](i["rl_logits"], i["rl_mask"]),
        ("rl_logits",),
    ),
    # losses
    "progressive_self_distillation": (
        lambda i: los.progressive_self_distillation(i["logits"], i["targets"], i["past"], 0.4),
        ("logits",),
    ),
    "entropy_minimization": (lambda i: los.entropy_minimization(i["logits"]), ("logits",)),
    "class_ratio_prior_kl": (
        lambda i: los.class_ratio_prior_kl(i["logits"], i["prior"]),
        ("logits",),
    ),
    "mean_entropy_regularizer": (
        lambda i: los.mean_entropy_regularizer(i["logits"], 0.5),
        ("logits",),
    ),
    "dual_view_kl": (lambda i: los.dual_view_kl(i["logits"], i["logits_b"]), ("logits",)),
    "local_entropy_regularizer": (
        lambda i: los.local_entropy_regularizer(
            i["logits"], i["labelled"], 3, i["prior"], threshold=0.3
        ),
        ("logits",),
    ),
    "cross_view_self_distillation": (
        lambda i: los.cross_view_self_distillation(i["logits"], 0.07),
        ("logits",),
    ),
    "comp_sum_loss": (
        lambda i: los.comp_sum_loss(i["logits"], i["targets"], "gce", q=0.5),
        ("logits",),
    ),
    "decoupled_softmax_loss": (
        lambda i: los.decoupled_softmax_loss(i["scores"], i["pos_mask"], 0.5),
        ("scores",),
    ),
    "soft_top_k_loss": (
        lambda i: los.soft_top_k_loss(i["scores"], i["pos_mask"], k=3),
        ("scores",),
    ),
    "depict_clustering_loss": (
        lambda i: los.depict_clustering_loss(
            i["logits"], los.depict_target_distribution(i["past"])
        ),
        ("logits",),
    ),
    "partial_ranking_distillation": (
        lambda i: los.partial_ranking_distillation(i["scores"][:, :5], i["scores"][:, :5] ** 2, 3),
        ("scores",),
    ),
    "attention_entropy": (
        lambda i: los.attention_entropy(i["bag_logits"], reduction="mean"),
        ("bag_logits",),
    ),
    "head_attention_entropy_penalty": (
        lambda i: los.head_attention_entropy_penalty(torch.softmax(i["attn_logits"], -1)),
        ("attn_logits",),
    ),
    "architecture_entropy": (
        lambda i: los.architecture_entropy(i["alpha_logits"]),
        ("alpha_logits",),
    ),
}

# name -> why Dynamo breaks the graph there (the compiled result must still be exact). On the
# CPU, token entropy and selected log-probs break it by design: the fused C kernel is looked up
# under a threading lock and called through ctypes with `torch.get_num_threads()` workers, and
# the chunked PyTorch path splits rows over `torch.get_num_threads()` threads and re-checks a
# rare NaN on the host (`bool(isnan.any())`, no sync on the CPU). Dynamo runs those parts eagerly.
_ENTROPY_BREAK = "token entropy on the CPU: kernel lookup under a lock, ctypes, thread count"
GRAPH_BREAKS: dict[str, str] = {
    "token_entropy": _ENTROPY_BREAK,
    "selective_log_softmax": _ENTROPY_BREAK,
    "top_p_entropy": _ENTROPY_BREAK + " (the sort-free top-p kernel)",
    "selective_entropy": _ENTROPY_BREAK + " (the sort-free top-p kernel)",
    "SelectiveEntropyRegularizer": _ENTROPY_BREAK + " (its entropy statistics)",
    "EntropySmoothingRegularizer": _ENTROPY_BREAK,
}
# cases also run on the chunked PyTorch path (INFOREG_DISABLE_CPU_KERNEL=1), not the C kernel
PYTORCH_PATH = ("token_entropy", "selective_log_softmax", "EntropySmoothingRegularizer")
PARAMS = [pytest.param(n, "kernel", id=n) for n in sorted(CASES)] + [
    pytest.param(n, "pytorch", id=f"{n}-pytorch-path") for n in PYTORCH_PATH
]


def _with_state(inputs: Inputs) -> Inputs:
    """Fresh stateful regularisers for one run (compiled and eager runs must not share state)."""
    return {
        **inputs,
        "siren": rl.SelectiveEntropyRegularizer(top_k=20),
        "epo": rl.EntropySmoothingRegularizer(),
    }


def _run(name: str, fn: Callable[[Inputs], Any]) -> tuple[list, list, list]:
    """Outputs, gradients of their sum and the case's regulariser buffers after one call."""
    grad_names = CASES[name][1]
    inputs = _with_state(_inputs())
    for name in grad_names:
        inputs[name] = inputs[name].detach().requires_grad_(True)
    outs = [t for t in tensors_in(fn(inputs)) if t.is_floating_point()]
    grads: list[torch.Tensor] = []
    if grad_names:
        total = sum(t.sum() for t in outs if t.requires_grad)
        grads = list(torch.autograd.grad(total, [inputs[n] for n in grad_names]))
    state = {"SelectiveEntropyRegularizer": "siren", "EntropySmoothingRegularizer": "epo"}
    buffers = [b for key, v in state.items() if key == name for b in inputs[v].buffers()]
    return [o.detach() for o in outs], grads, buffers


@pytest.fixture(autouse=True)
def fresh_dynamo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No compiled code carried between cases; the small vocabulary takes the C kernel too."""
    monkeypatch.setattr(_cpu_entropy, "_MIN_VOCAB", 1)
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _check(name: str, path: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFOREG_DISABLE_CPU_KERNEL", "1" if path == "pytorch" else "0")
    from torch._dynamo.testing import CompileCounterWithBackend  # heavy: import on use

    fn = CASES[name][0]
    want = _run(name, fn)
    counter = CompileCounterWithBackend(backend)
    got = _run(name, torch.compile(fn, backend=counter))
    for kind, g, w in zip(("value", "gradient", "buffer"), got, want):
        assert len(g) == len(w), f"{name}: {kind}s differ in number"
        for a, b in zip(g, w):
            assert_close(a, b, msg=f"{name}: compiled {kind} differs")
    if name in GRAPH_BREAKS:
        assert counter.frame_count > 1, (
            f"{name} now compiles to one graph: drop it from GRAPH_BREAKS"
        )
    else:
        assert counter.frame_count == 1, f"{name}: {counter.frame_count} graphs (a graph break)"


@pytest.mark.parametrize(("name", "path"), PARAMS)
def test_compiled_eager_backend_matches_eager(name, path, monkeypatch):
    _check(name, path, "eager", monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "path"), PARAMS)
def test_compiled_aot_eager_backend_matches_eager(name, path, monkeypatch):
    _check(name, path, "aot_eager", monkeypatch)


def test_graph_break_reasons_name_existing_cases() -> None:
    assert set(GRAPH_BREAKS) <= set(CASES)
