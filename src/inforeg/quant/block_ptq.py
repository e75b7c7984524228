r"""Entropy-partitioned block-wise range search for post-training activation quantisation.

Wang et al., "Q-VLM: Post-Training Quantization for Large Vision-Language Models", NeurIPS 2024,
arXiv 2410.08119; authors' code ``ChangyuanWang17/QVLM`` (``quant_modules.py``, class
``QuantAct``).

What comes from the released code: the asymmetric per-channel quantiser
(:func:`~inforeg.quant.fake_quantize_asymmetric`), the entropy and dependency-entropy proxies and
the partition rule (:mod:`inforeg.quant.entropy_proxy`), the range candidates
:math:`(1 - 0.1a)\cdot(x_\min, x_\max)`, :math:`a = 0..6`, and the score
:math:`\mathrm{mean}|\hat y - y|^{0.5}`. The released "search" re-estimates a layer's range from
its own input only (``partition="layer"`` here).

What the paper says (NeurIPS camera-ready, Sec. 3.2 and 4.1, read in a full-text copy): Eq. (3)
searches the rounding functions of all layers of a block *jointly*, minimising the squared L2
error :math:`\|W_q X_q - W_r X_r\|_2^2` of the block's last layer; blocks hold at most 3 layers;
the clipping bounds are percentiles of the float tensor, searched from 1.0 down to 0.98 in steps
of 0.005; Eq. (7) merges layers :math:`k_r..k_s` into a block when their summed conditional
entropy exceeds :math:`(k_s - k_r) h_0` (:math:`h_0` is not given). inforeg's block search is
coordinate descent over one range factor per layer (``sweeps`` passes, an approximation of the
joint search), scoring the block output against the float model's; ``p=2`` gives Eq. (3)'s
squared error (the default 0.5 is the released code's score), ``max_block=3`` the paper's cap.
The ranges stay the code's factors of the calibrated min/max, not percentiles. The authors'
LLaMA code additionally quantises some layers with per-batch
dynamic ranges at inference and scores CLIP layers with a constant entropy term; neither is part
of this core.

>>> import torch
>>> torch.manual_seed(0)  # doctest: +ELLIPSIS
<torch._C.Generator object at ...>
>>> layers = [torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()), torch.nn.Linear(8, 3)]
>>> ptq = EntropyBlockPTQ(layers, bits=4, partition="network")
>>> x = torch.randn(64, 4)
>>> ptq.calibrate(x)
[0, 0]
>>> _ = ptq.search(x)
>>> ptq.cost  # 2 sweeps x 2 layers x 7 candidates, one evaluation of the 2-layer block each
28
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from inforeg.core.checks import check_choice, check_int, check_number, check_tensor
from inforeg.quant.entropy_proxy import (
    dependency_entropy,
    entropy_block_partition,
    quantized_activation_entropy,
)
from inforeg.quant.fake_quant import fake_quantize_asymmetric

__all__ = ["EntropyBlockPTQ"]

_DEFAULT_CANDIDATES = tuple(1 - 0.1 * a for a in range(7))


def _lp_score(pred: Tensor, target: Tensor, p: float) -> Tensor:
    return (pred - target).abs().pow(p).mean()


def _cap_blocks(blocks: list[int], size: int) -> list[int]:
    """Renumbered block ids with each run of equal ids cut into pieces of at most ``size``."""
    out: list[int] = []
    run = 0
    for i, b in enumerate(blocks):
        new_block = i == 0 or b != blocks[i - 1] or run == size
        run = 1 if new_block else run + 1
        out.append(out[-1] + 1 if out and new_block else (out[-1] if out else 0))
    return out


def _check_partition(partition: object, n_layers: int) -> list[int] | None:
    """None for the named rules, else the validated explicit block ids."""
    if isinstance(partition, str):
        check_choice(partition, "partition", ("entropy", "layer", "network"))
        return None
    if not isinstance(partition, Sequence) or not all(
        isinstance(b, int) and not isinstance(b, bool) for b in partition
    ):
        raise TypeError(
            "partition: expected 'entropy', 'layer', 'network' or a sequence of int block ids, "
            f"got {partition!r}"
        )
    ids = list(partition)
    if len(ids) != n_layers:
        raise ValueError(
            f"partition: expected {n_layers} block ids (one per layer), got {len(ids)}"
        )
    steps_ok = all(b - a in (0, 1) for a, b in zip(ids, ids[1:]))
    if ids[0] != 0 or not steps_ok:
        raise ValueError(
            f"partition: expected contiguous block ids 0, 0, 1, ... (each step 0 or 1), got {ids}"
        )
    return ids


class EntropyBlockPTQ(nn.Module):
    r"""Post-training quantisation of a sequential model's layer inputs with block-wise search.

    Each layer's input is fake-quantised per channel (last axis) to ``bits`` bits on the range
    :math:`f_i\cdot(x_{\min,i}, x_{\max,i})`, where :math:`x_{\min,i}, x_{\max,i}` are calibrated
    and the factor :math:`f_i` is one of ``candidates``. Weights are left as the caller set them.

    1. :meth:`calibrate` runs the float model on ``x``, records per-channel min/max of every layer
       input (the whole batch: the authors concatenate 32 calibration batches into one), computes
       each layer's proxy on its quantised input — :func:`dependency_entropy` against the previous
       input where the shapes match and ``proxy="dependency"`` (the current release), else
       :func:`quantized_activation_entropy` — and partitions the layers into blocks.
       Activations are read as (1, rows, channels): the rows (batch, and tokens if any) play the
       role of the authors' token axis.
    2. :meth:`search` picks the factors. ``partition="layer"`` is the released per-layer rule: each
       layer alone picks :math:`\arg\min_f \mathrm{mean}|Q_f(a_i) - a_i|^{p}` for its input
       :math:`a_i` in the quantised model (cost: 7 per layer). Otherwise, block by block in order,
       coordinate descent (``sweeps`` passes over the block's layers, each trying every candidate)
       minimises :math:`\mathrm{mean}|\hat y - y|^{p}` between the block's output in the quantised
       model (fed by the already quantised preceding blocks) and the float model's output at the
       same layer (cost: ``sweeps * len(block) * len(candidates)`` block evaluations per block).
    3. :meth:`forward` runs the quantised model.

    Args:
        layers: the model as a sequence of modules applied in order (e.g. ``Linear`` and
            ``Sequential(Linear, ReLU)``); the input of each is quantised.
        bits: activation bit width in [1, 16] (default 4).
        candidates: range factors (default :math:`1, 0.9, \dots, 0.4`, the released LLM set).
        partition: ``"entropy"`` (:func:`entropy_block_partition`, default), ``"layer"`` (the
            released per-layer search), ``"network"`` (one block) or explicit block ids (e.g. a
            uniform partition with the entropy partition's number of blocks).
        sweeps: coordinate-descent passes per block (default 2).
        threshold: of the entropy partition (``"running_mean"`` default, ``"mean"``, a number).
        proxy: ``"dependency"`` (current release, default) or ``"entropy"`` (first release: the
            entropy proxy for every layer).
        p: exponent of the score (default 0.5, the released code's; 2 is the paper's Eq. 3).
        max_block: at most this many layers per block (default None: no cap; the paper uses 3).
            Longer runs of one block id are cut into consecutive pieces of this size.

    Attributes:
        entropies: (L,) proxies from :meth:`calibrate`. blocks: block id per layer.
        factors: chosen factor per layer. cost: block evaluations spent by :meth:`search`.
        layer_cost: layer evaluations spent by :meth:`search` (a block evaluation of a block of
            k layers counts k).
    """

    entropies: Tensor

    def __init__(
        self,
        layers: Sequence[nn.Module],
        bits: int = 4,
        candidates: Sequence[float] = _DEFAULT_CANDIDATES,
        partition: str | Sequence[int] = "entropy",
        sweeps: int = 2,
        *,
        threshold: str | float = "running_mean",
        proxy: str = "dependency",
        p: float = 0.5,
        max_block: int | None = None,
    ) -> None:
        super().__init__()
        if isinstance(layers, nn.Module) and not isinstance(layers, (nn.Sequential, nn.ModuleList)):
            raise TypeError(
                "layers: expected a sequence of modules (e.g. nn.Sequential), got one module"
            )
        mods = list(layers)
        if not mods:
            raise ValueError("layers: expected at least one module, got none")
        for i, m in enumerate(mods):
            if not isinstance(m, nn.Module):
                raise TypeError(f"layers[{i}]: expected an nn.Module, got {type(m).__name__}")
        self.layers = nn.ModuleList(mods)
        self.bits = check_int(bits, "bits", low=1, high=16)
        cands = tuple(candidates)
        if not cands:
            raise ValueError("candidates: expected at least one factor, got none")
        self.candidates = tuple(
            check_number(c, f"candidates[{i}]", low=0.0, low_inclusive=False)
            for i, c in enumerate(cands)
        )
        self._explicit_blocks = _check_partition(partition, len(mods))
        self.partition = partition if isinstance(partition, str) else "explicit"
        self.sweeps = check_int(sweeps, "sweeps", low=1)
        if isinstance(threshold, str):
            check_choice(threshold, "threshold", ("running_mean", "mean"))
        else:
            check_number(threshold, "threshold")
        self.threshold = threshold
        check_choice(proxy, "proxy", ("dependency", "entropy"))
        self.proxy = proxy
        self.p = check_number(p, "p", low=0.0, low_inclusive=False)
        self.max_block = None if max_block is None else check_int(max_block, "max_block", low=1)
        self.factors = [self.candidates[0]] * len(mods)
        self.blocks: list[int] = []
        self.cost = 0
        self.layer_cost = 0
        self.register_buffer("entropies", torch.zeros(0))
        for i in range(len(mods)):
            self.register_buffer(f"range_min_{i}", None)
            self.register_buffer(f"range_max_{i}", None)

    # -- helpers ----------------------------------------------------------------------------
    def _range(self, i: int) -> tuple[Tensor, Tensor]:
        lo, hi = getattr(self, f"range_min_{i}"), getattr(self, f"range_max_{i}")
        if lo is None or hi is None:
            raise RuntimeError("EntropyBlockPTQ: call calibrate(x) before search() or forward()")
        return lo, hi

    def _quantize(self, i: int, a: Tensor, factor: float) -> Tensor:
        lo, hi = self._range(i)
        return fake_quantize_asymmetric(a, factor * lo, factor * hi, self.bits)

    def _run(self, a: Tensor, start: int, stop: int, factors: Sequence[float]) -> Tensor:
        for i in range(start, stop):
            a = self.layers[i](self._quantize(i, a, factors[i]))
        return a

    def _float_inputs(self, x: Tensor) -> list[Tensor]:
        """The float model's input to every layer, and its output last."""
        acts = [x]
        for layer in self.layers:
            acts.append(layer(acts[-1]))
        return acts

    @staticmethod
    def _rows(a: Tensor) -> Tensor:
        return a.reshape(1, -1, a.shape[-1])

    # -- public -----------------------------------------------------------------------------
    @torch.no_grad()
    def calibrate(self, x: Tensor) -> list[int]:
        """Record ranges and proxies on ``x`` and partition the layers; returns the block ids."""
        check_tensor(x, "x", min_ndim=2, floating=True)
        acts = self._float_inputs(x)
        proxies: list[Tensor] = []
        prev_q: Tensor | None = None
        for i in range(len(self.layers)):
            rows = self._rows(acts[i])
            setattr(self, f"range_min_{i}", rows.amin(dim=1)[0])
            setattr(self, f"range_max_{i}", rows.amax(dim=1)[0])
            q = self._rows(self._quantize(i, acts[i], 1.0))
            if self.proxy == "dependency" and prev_q is not None and prev_q.shape == q.shape:
                proxies.append(dependency_entropy(prev_q, q))
            else:
                proxies.append(quantized_activation_entropy(q))
            prev_q = q
        self.entropies = torch.stack(proxies).float()
        if self._explicit_blocks is not None:
            self.blocks = list(self._explicit_blocks)
        elif self.partition == "entropy":
            self.blocks = entropy_block_partition(self.entropies, self.threshold)
        elif self.partition == "network":
            self.blocks = [0] * len(self.layers)
        else:
            self.blocks = list(range(len(self.layers)))
        if self.max_block is not None:
            self.blocks = _cap_blocks(self.blocks, self.max_block)
        self.factors = [self.candidates[0]] * len(self.layers)
        self.cost = self.layer_cost = 0
        return list(self.blocks)

    @torch.no_grad()
    def search(self, x: Tensor) -> list[float]:
        """Choose one range factor per layer on ``x``; returns the factors."""
        check_tensor(x, "x", min_ndim=2, floating=True)
        self._range(0)
        acts = self._float_inputs(x)
        factors = [self.candidates[0]] * len(self.layers)
        self.cost = self.layer_cost = 0
        a = x
        if self.partition == "layer":
            for i in range(len(self.layers)):
                scores = [_lp_score(self._quantize(i, a, c), a, self.p) for c in self.candidates]
                factors[i] = self.candidates[int(torch.stack(scores).argmin())]
                self.cost += len(self.candidates)
                self.layer_cost += len(self.candidates)
                a = self._run(a, i, i + 1, factors)
            self.factors = factors
            return list(factors)
        starts = [i for i, b in enumerate(self.blocks) if i == 0 or b != self.blocks[i - 1]]
        for start, stop in zip(starts, [*starts[1:], len(self.layers)]):
            target = acts[stop]
            for _ in range(self.sweeps):
                for i in range(start, stop):
                    scores = []
                    for c in self.candidates:
                        factors[i] = c
                        scores.append(_lp_score(self._run(a, start, stop, factors), target, self.p))
                    # first minimum wins, as the authors' strict `score < best_score`
                    factors[i] = self.candidates[int(torch.stack(scores).argmin())]
                    self.cost += len(self.candidates)
                    self.layer_cost += len(self.candidates) * (stop - start)
            a = self._run(a, start, stop, factors)
        self.factors = factors
        return list(factors)

    def forward(self, x: Tensor) -> Tensor:
        """The quantised model: every layer sees its fake-quantised input."""
        check_tensor(x, "x", min_ndim=2, floating=True)
        return self._run(x, 0, len(self.layers), self.factors)

    # -- checkpoints: the calibration buffers' shapes, and the search's lists ------------------
    def get_extra_state(self) -> dict[str, list[float] | list[int] | int]:
        return {
            "factors": list(self.factors),
            "blocks": list(self.blocks),
            "cost": self.cost,
            "layer_cost": self.layer_cost,
        }

    def set_extra_state(self, state: dict[str, list[float] | list[int] | int]) -> None:
        self.factors = [float(f) for f in state["factors"]]  # type: ignore[union-attr]
        self.blocks = [int(b) for b in state["blocks"]]  # type: ignore[union-attr]
        self.cost = int(state["cost"])  # type: ignore[arg-type]
        self.layer_cost = int(state["layer_cost"])  # type: ignore[arg-type]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # type: ignore[no-untyped-def]
        # The calibration buffers are sized by the data (absent before calibrate): a fresh
        # instance takes the checkpoint's shapes, on its own device, before the copy.
        names = ["entropies"]
        names += [f"range_{end}_{i}" for i in range(len(self.layers)) for end in ("min", "max")]
        for name in names:
            if prefix + name in state_dict:
                saved = state_dict[prefix + name]
                setattr(self, name, saved.new_empty(saved.shape, device=self.entropies.device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (
            f"bits={self.bits}, candidates={len(self.candidates)}, partition={self.partition!r}, "
            f"sweeps={self.sweeps}, proxy={self.proxy!r}, max_block={self.max_block}"
        )
