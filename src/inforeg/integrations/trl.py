"""TRL's ``GRPOTrainer`` with an inforeg entropy control added to its loss (and AEPO's rollout).

:class:`InforegGRPOTrainer` is TRL's own trainer: TRL computes its loss as usual (every
``loss_type``, ``beta``, ``entropy_coef``/``entropy_target``, ``top_entropy_quantile``, masks,
importance sampling, metrics), and the trainer adds one inforeg control on top, scaled for
gradient accumulation exactly as TRL scales its own entropy bonus; ``aepo=`` adds AEPO's
tempered re-sampling to TRL's rollout. Tested with the TRL and
transformers versions of the ``trl`` extra (``pip install 'inforeg[trl]'``); the TRL methods it
wraps (``_compute_loss``, ``_generate_and_score_completions``,
``_get_per_token_logps_and_entropies``) are internal to TRL and change between its releases.

The metric prefix of each control (metrics are logged as ``inforeg/<prefix>_<stat>``):

    >>> from inforeg.rl import EntropySmoothingRegularizer, SelectiveEntropyRegularizer
    >>> control_name(SelectiveEntropyRegularizer()), control_name(EntropySmoothingRegularizer())
    ('siren', 'epo')
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import torch
from torch import Tensor, nn

from inforeg.rl import (
    ArbitraryEntropyController,
    EntropyBonus,
    EntropySmoothingRegularizer,
    LowProbabilityRegularizer,
    SelectiveEntropyRegularizer,
    clipped_surrogate,
    selective_log_softmax,
)

try:
    from trl import GRPOTrainer
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError("inforeg.integrations.trl needs TRL: pip install 'inforeg[trl]'") from err

__all__ = ["CONTROLS", "InforegGRPOTrainer", "control_name"]

#: The controls the trainer accepts, with their metric prefixes.
CONTROLS: dict[type[nn.Module], str] = {
    EntropyBonus: "entropy_bonus",
    SelectiveEntropyRegularizer: "siren",
    EntropySmoothingRegularizer: "epo",
    LowProbabilityRegularizer: "lp_reg",
}

# Model-config fields with which TRL's fused LM head rescales or soft-caps the logits. The
# control recomputes the logits with the plain LM head, so such models are refused.
_LOGIT_TRANSFORMS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)
# Fields of TRL's generation batch that AEPO's row replacement knows how to pad and copy.
_PROMPT_FIELDS = ("prompt_ids", "prompt_mask")
_TOKEN_FIELDS = (
    "completion_ids",
    "completion_mask",
    "old_per_token_logps",
    "ref_per_token_logps",
    "sampling_per_token_logps",
    "importance_sampling_ratio",
    "tool_mask",
)
# TRL loss types whose per-token loss is the clipped surrogate that Lp-Reg partly replaces.
_CLIPPED_LOSSES = ("grpo", "bnpo", "dr_grpo", "dapo")


def control_name(control: nn.Module) -> str:
    """The metric prefix of an inforeg control (``siren``, ``epo``, ``lp_reg``,
    ``entropy_bonus``); ``TypeError`` for anything else."""
    for cls, name in CONTROLS.items():
        if isinstance(control, cls):
            return name
    accepted = ", ".join(c.__name__ for c in CONTROLS)
    raise TypeError(f"entropy_control: expected one of {accepted} or None, got {type(control)!r}")


def _backbone_and_head(model: Any) -> tuple[nn.Module, nn.Module]:
    """The module whose output TRL's fused head reads, and the LM head, of an unwrapped model."""
    if hasattr(model, "get_base_model"):  # PEFT: TRL patches the base model
        model = model.get_base_model()
    return model.base_model, model.get_output_embeddings()


def _loss_mask(batch: dict[str, Any]) -> Tensor:
    """TRL's loss mask: the completion mask, times the tool mask when there is one."""
    mask = batch["completion_mask"]
    return mask * batch["tool_mask"] if "tool_mask" in batch else mask


def _pad_columns(t: Tensor, width: int, value: float, left: bool) -> Tensor:
    """Pad ``(N, T)`` to ``(N, width)`` on the left or the right."""
    if t.shape[1] >= width:
        return t
    pad = t.new_full((t.shape[0], width - t.shape[1]), value)
    return torch.cat([pad, t] if left else [t, pad], dim=1)


def _replace_rows(
    batch: dict[str, Any], new: dict[str, Any], rows: Tensor, pad_id: int
) -> dict[str, Any]:
    """``batch`` with its first ``len(rows)`` samples replaced by ``new[rows]``, advantage +1.

    Prompts stay left-padded and completions right-padded, to the wider of the two batches."""
    unknown = sorted(
        k
        for k in batch
        if k not in (*_PROMPT_FIELDS, *_TOKEN_FIELDS, "advantages", "num_items_in_batch")
    )
    if unknown:
        raise ValueError(f"aepo: batch fields {unknown} (multimodal inputs) are not supported")
    out = dict(batch)
    m = rows.numel()
    for key in (*_PROMPT_FIELDS, *_TOKEN_FIELDS):
        if batch.get(key) is None:
            continue
        left = key in _PROMPT_FIELDS
        value = (
            pad_id if key.endswith("_ids") else (1.0 if key == "importance_sampling_ratio" else 0)
        )
        width = max(batch[key].shape[1], new[key].shape[1])
        merged = _pad_columns(batch[key], width, value, left).clone()
        merged[:m] = _pad_columns(new[key][rows], width, value, left)
        out[key] = merged
    out["advantages"] = batch["advantages"].clone()
    out["advantages"][:m] = 1.0
    return out


class InforegGRPOTrainer(GRPOTrainer):
    r"""TRL's ``GRPOTrainer`` plus an inforeg entropy control on top of TRL's own loss.

    .. math::

        L = L_\text{TRL} + \frac{L_\text{control}}{G}\quad\text{(training)},\qquad
        L = L_\text{TRL} + L_\text{control}\quad\text{(evaluation)},

    where :math:`L_\text{TRL}` is the loss TRL computes (already scaled for accumulation) and
    :math:`G` is the number of gradient-accumulation steps; :math:`L_\text{control}` is the
    control's aggregate over the micro-batch, so it is scaled exactly as TRL scales its own
    ``entropy_coef`` bonus. The controls:

    - :class:`~inforeg.rl.EntropyBonus`: ``-coef * agg(H)``. With ``mode="token-mean"`` it is
      TRL's ``entropy_coef`` (the tests check equal gradients).
    - :class:`~inforeg.rl.SelectiveEntropyRegularizer` (SIREN): anchored square of the selected
      top-p entropy; the anchor is set at the first micro-batch.
    - :class:`~inforeg.rl.EntropySmoothingRegularizer` (EPO): entropy bonus and band penalty
      around the history; after each generation the rollout's exact entropies (at the sampling
      temperature, from TRL's fused head in one extra no-grad forward) are recorded, once per
      generation batch, before the update as in the authors' code. All samples are turn 0;
      ``epoch`` is the trainer's ``state.epoch``.
    - :class:`~inforeg.rl.LowProbabilityRegularizer` (Lp-Reg): the difference between Lp-Reg's
      policy loss and the clipped surrogate it replaces on the selected tokens, so that
      :math:`L` is TRL's loss with Lp-Reg's term on those tokens. It needs a clipped
      ``loss_type`` (``grpo``, ``bnpo``, ``dr_grpo``, ``dapo``), token-level importance sampling
      and the control's ``eps_low``/``eps_high`` equal to TRL's ``epsilon``/``epsilon_high``.
      The proxy is taken from the current logits (exact with ``num_iterations=1``).

    The control needs the completion logits. They are recomputed from the hidden states that
    TRL's own forward already produced (a hook on the backbone; no second forward), through the
    model's LM head, so the control materialises ``(batch, completion_length, vocab)`` logits
    once per micro-batch, as the authors' code does. Models whose head rescales or soft-caps the
    logits (Gemma's ``final_logit_softcapping`` and similar) are refused. The control's
    ``temperature`` must equal TRL's ``temperature`` (the logits are raw; the control divides
    them). The mask is TRL's (``completion_mask``, times ``tool_mask`` when present); TRL's
    ``top_entropy_quantile`` selects tokens for TRL's terms only.

    The control's statistics are logged beside TRL's metrics as ``inforeg/<prefix>_<stat>``
    (e.g. ``inforeg/siren_entropy``, ``inforeg/siren_anchor``, ``inforeg/epo_masked_fraction``)
    together with ``inforeg/<prefix>_loss``, averaged over processes; this costs one host sync
    per micro-batch, like TRL's own metrics. The control lives on the trainer (its buffers,
    SIREN's anchor or EPO's history, are not part of the model's checkpoint).

    ``aepo=`` adds AEPO's rollout change (:class:`~inforeg.rl.ArbitraryEntropyController`, code
    semantics of the authors' verl fork). After TRL generates and scores a generation batch, the
    first ``resample_fraction`` of its prompts are generated and scored again at the
    controller's temperature (:math:`T_\text{high}` while its entropy estimate is at most the
    target, :math:`T_\text{low}` above it). The positive samples of non-saturated groups (TRL's
    advantage above ``threshold``, at most ``max_samples``, halved above the target) take the
    place of the first responses of the batch, with advantage +1. The controller's estimate is
    then set to the sampled-token entropy of the batch about to be trained on (one extra no-grad
    forward). TRL's metrics keep describing the main batch; the controller logs
    ``inforeg/aepo_temperature``, ``inforeg/aepo_samples`` and ``inforeg/aepo_entropy``. Text
    models and generation without vLLM only; the samples are scored at TRL's temperature, so
    the controller's ``temperature`` must equal it.

    Args:
        *args: TRL's ``GRPOTrainer`` arguments (``model``, ``reward_funcs``, ``args``, ...).
        entropy_control: an inforeg control (see above) or ``None`` (then TRL's loss is
            unchanged).
        aepo: AEPO's controller, or ``None`` (TRL's rollout unchanged).
        **kwargs: TRL's ``GRPOTrainer`` keyword arguments.

    Raises:
        TypeError: ``entropy_control`` is not one of the controls above, or ``aepo`` is not an
            ``ArbitraryEntropyController``.
        ValueError: a control's ``temperature`` differs from TRL's, the model rescales its
            logits, Lp-Reg's settings do not match TRL's loss, or ``aepo`` is used with vLLM.
    """

    def __init__(
        self,
        *args: Any,
        entropy_control: nn.Module | None = None,
        aepo: ArbitraryEntropyController | None = None,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.entropy_control = entropy_control
        self.aepo = aepo
        self._control_prefix = None if entropy_control is None else control_name(entropy_control)
        if aepo is not None:
            self._check_aepo(aepo)
        if entropy_control is None:
            return
        temperature = float(cast(Any, entropy_control).temperature)
        if temperature != float(self.temperature):
            raise ValueError(
                f"entropy_control: temperature={temperature} differs from TRL's "
                f"temperature={self.temperature}; build the control with "
                f"temperature=args.temperature (it divides TRL's raw logits)"
            )
        config = cast(Any, self.model).config.get_text_config()
        scaled = [f for f in _LOGIT_TRANSFORMS if getattr(config, f, None) not in (None, 1.0)]
        if scaled:
            raise ValueError(
                f"entropy_control: the model's head transforms its logits ({', '.join(scaled)}); "
                "InforegGRPOTrainer recomputes the logits with the plain LM head and does not "
                "support such models"
            )
        if isinstance(entropy_control, LowProbabilityRegularizer):
            self._check_lp_reg(entropy_control)
        entropy_control.to(self.accelerator.device)

    def _check_aepo(self, aepo: ArbitraryEntropyController) -> None:
        if not isinstance(aepo, ArbitraryEntropyController):
            raise TypeError(f"aepo: expected an ArbitraryEntropyController, got {type(aepo)!r}")
        if self.use_vllm:
            raise ValueError("aepo: generation with vLLM is not supported")
        if aepo.temperature != self.temperature:
            raise ValueError(
                f"aepo: temperature={aepo.temperature} differs from TRL's temperature="
                f"{self.temperature}; TRL scores the samples at its own temperature"
            )
        aepo.to(self.accelerator.device)

    def _check_lp_reg(self, control: LowProbabilityRegularizer) -> None:
        if self.loss_type not in _CLIPPED_LOSSES:
            raise ValueError(
                f"entropy_control: Lp-Reg replaces the clipped surrogate, which TRL's "
                f"loss_type={self.loss_type!r} does not use; use one of {_CLIPPED_LOSSES}"
            )
        if self.importance_sampling_level != "token":
            raise ValueError(
                "entropy_control: Lp-Reg needs importance_sampling_level='token', got "
                f"{self.importance_sampling_level!r}"
            )
        if (control.eps_low, control.eps_high) != (self.epsilon_low, self.epsilon_high):
            raise ValueError(
                f"entropy_control: LowProbabilityRegularizer(eps_low={control.eps_low}, "
                f"eps_high={control.eps_high}) must equal TRL's epsilon={self.epsilon_low} and "
                f"epsilon_high={self.epsilon_high}: TRL's loss clips the surrogate that Lp-Reg "
                "replaces"
            )

    @contextmanager
    def _captured_hidden_states(self, model: nn.Module) -> Iterator[list[Tensor]]:
        """Collect the backbone's last hidden states of the forwards run inside the block."""
        backbone, _ = _backbone_and_head(self.accelerator.unwrap_model(model))
        captured: list[Tensor] = []

        def keep(_module: nn.Module, _args: Any, output: Any) -> None:
            captured.append(
                output.last_hidden_state if hasattr(output, "last_hidden_state") else output[0]
            )

        handle = backbone.register_forward_hook(keep)
        try:
            yield captured
        finally:
            handle.remove()

    def _completion_logits(self, model: nn.Module, hidden: list[Tensor], n: int) -> Tensor:
        """Raw logits ``(B, n, V)`` that predict the ``n`` completion tokens."""
        if not hidden:
            raise RuntimeError(
                "InforegGRPOTrainer: TRL's forward did not run the model's backbone "
                "(model.base_model); the control cannot see the hidden states"
            )
        _, head = _backbone_and_head(self.accelerator.unwrap_model(model))
        h = torch.cat([x[:, -(n + 1) : -1] for x in hidden], dim=0)
        with self.accelerator.autocast():  # the precision of TRL's own head (bf16 by default)
            return head(h)

    def _training(self) -> bool:
        return bool(cast(Any, self.model).training)

    def _compute_loss(self, model: nn.Module, inputs: dict[str, Any]) -> Tensor:
        control = self.entropy_control
        if control is None:
            return super()._compute_loss(model, inputs)
        with self._captured_hidden_states(model) as hidden:
            loss = super()._compute_loss(model, inputs)
        completion_ids = inputs["completion_ids"]
        mask = _loss_mask(inputs)
        logits = self._completion_logits(model, hidden, completion_ids.shape[1])
        term, stats = self._control_term(control, logits, completion_ids, mask, inputs)
        mode = "train" if self._training() else "eval"
        accumulation = self.current_gradient_accumulation_steps if mode == "train" else 1
        self._log_control(mode, term, stats)
        return loss + term / accumulation

    def _control_term(
        self,
        control: nn.Module,
        logits: Tensor,
        tokens: Tensor,
        mask: Tensor,
        inputs: dict[str, Any],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        if isinstance(control, EntropySmoothingRegularizer):
            return control(logits, mask, epoch=float(self.state.epoch or 0.0))
        if isinstance(control, LowProbabilityRegularizer):
            return self._lp_reg_term(control, logits, tokens, mask, inputs)
        return control(logits, mask)

    def _lp_reg_term(
        self,
        control: LowProbabilityRegularizer,
        logits: Tensor,
        tokens: Tensor,
        mask: Tensor,
        inputs: dict[str, Any],
    ) -> tuple[Tensor, dict[str, Tensor]]:
        logp = selective_log_softmax(logits, tokens, control.temperature)
        old = inputs.get("old_per_token_logps")
        old = logp.detach() if old is None else old
        adv = inputs["advantages"]
        lp_loss, stats = control(logits, tokens, old, adv, mask)
        replaced = clipped_surrogate(
            logp, old, adv, mask, control.eps_low, control.eps_high, mode=control.mode
        )
        return lp_loss - replaced, stats

    def _log_control(self, mode: str, term: Tensor, stats: dict[str, Tensor]) -> None:
        names = ["loss", *stats]
        values = torch.stack([term.detach().float(), *(v.detach().float() for v in stats.values())])
        means = self.accelerator.gather(values.unsqueeze(0)).mean(0).tolist()  # one host sync
        for name, value in zip(names, means):
            self._metrics[mode][f"inforeg/{self._control_prefix}_{name}"].append(value)

    def _generate_and_score_completions(self, inputs: Any) -> dict[str, Any]:
        output = super()._generate_and_score_completions(inputs)
        if self.aepo is not None and self._training():
            output = self._aepo_rollout(inputs, output)
        control = self.entropy_control
        if isinstance(control, EntropySmoothingRegularizer) and self._training():
            self._record_rollout_entropy(control, output)
        return output

    def _record_rollout_entropy(
        self, control: EntropySmoothingRegularizer, batch: dict[str, Any]
    ) -> None:
        """EPO's history update: the exact entropies of the rollout just generated."""
        _, entropies = self._rollout_logps_and_entropies(batch, compute_entropy=True)
        control.history.update(cast(Tensor, entropies), _loss_mask(batch))

    def _aepo_rollout(self, inputs: list[dict[str, Any]], batch: dict[str, Any]) -> dict[str, Any]:
        """AEPO's rollout change (code semantics of the authors' verl fork).

        Re-sample the first ``resample_fraction`` of the prompts at the controller's temperature,
        keep the positive samples of non-saturated groups (TRL's advantage above ``threshold``,
        capped at ``max_samples``, halved above the target entropy), put them in place of the
        first responses of the batch with advantage +1, then set the controller's entropy to
        the sampled-token estimate of the batch that is about to be trained on.
        """
        aepo = cast(ArbitraryEntropyController, self.aepo)
        g = int(cast(int, self.num_generations))
        n_prompts = len(inputs) // g
        k = max(1, int(aepo.resample_fraction * n_prompts))
        temperature = aepo.sampling_temperature()
        extra = self._generate_at(inputs[: k * g], temperature)
        rows, _ = aepo.select(extra["advantages"], g)
        rows = rows[: batch["advantages"].shape[0]]
        batch = _replace_rows(batch, extra, rows, int(self._tokenizer.pad_token_id))
        mask = _loss_mask(batch)
        batch["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        logp, _ = self._rollout_logps_and_entropies(batch, compute_entropy=False)
        aepo.update(logp, mask)
        mode = "train"
        for name, value in (
            ("temperature", temperature),
            ("samples", float(rows.numel())),
            ("entropy", float(aepo.entropy)),
        ):
            self._metrics[mode][f"inforeg/aepo_{name}"].append(value)
        return batch

    def _generate_at(self, inputs: list[dict[str, Any]], temperature: float) -> dict[str, Any]:
        """TRL's generation and scoring at another sampling temperature; TRL's metrics and
        completion logs keep describing the main batch only."""
        mode = "train"
        lengths = {k: len(v) for k, v in self._metrics[mode].items()}
        logs = copy.deepcopy(self._logs)
        config, kwargs = self.generation_config, self.generation_kwargs
        self.generation_config = copy.deepcopy(config)
        self.generation_config.temperature = temperature
        self.generation_kwargs = {**kwargs, "temperature": temperature}
        try:
            extra = super()._generate_and_score_completions(inputs)
        finally:
            self.generation_config, self.generation_kwargs = config, kwargs
            for key in list(self._metrics[mode]):
                del self._metrics[mode][key][lengths.get(key, 0) :]
            self._logs = logs
        return extra

    def _rollout_logps_and_entropies(
        self, batch: dict[str, Any], compute_entropy: bool
    ) -> tuple[Tensor, Tensor | None]:
        """TRL's per-token log-probabilities of a rollout's completions (and their entropies if
        ``compute_entropy``) under the current model, without gradients."""
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        with torch.no_grad():
            logps, entropies, _ = self._get_per_token_logps_and_entropies(
                self.model,
                ids,
                attention,
                batch["completion_ids"].shape[1],
                batch_size=self.args.per_device_train_batch_size,
                compute_entropy=compute_entropy,
            )
        return logps, entropies
