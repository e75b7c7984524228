"""InforegGRPOTrainer against TRL's own GRPOTrainer, run for real on a tiny local model.

The model (a one-layer Llama) and the tokenizer (a word-level vocabulary of 14 tokens) are built
here, saved to a temporary folder and loaded from it: nothing is downloaded. Gradients are read
just before the first optimizer step (after accumulation, clipping off), so a wrong
accumulation scale shows as a factor.
"""

from __future__ import annotations

import gc
import math
import os

import pytest
import torch

# Everything is built locally; make sure nothing is looked up on the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("trl", reason="TRL is not installed: pip install 'inforeg[trl]'")

from datasets import Dataset  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers  # noqa: E402
from transformers import (  # noqa: E402
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    TrainerCallback,
)
from trl import GRPOConfig, GRPOTrainer  # noqa: E402

from inforeg.integrations.trl import InforegGRPOTrainer, control_name  # noqa: E402
from inforeg.rl import (  # noqa: E402
    ArbitraryEntropyController,
    EntropyBonus,
    EntropySmoothingRegularizer,
    LowProbabilityRegularizer,
    SelectiveEntropyRegularizer,
    aggregate,
    clipped_surrogate,
    kl_k3,
    selective_log_softmax,
)

WORDS = list("abcdefghij")
TEMPERATURE = 0.7


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The model is tiny: one thread avoids oversubscription on a loaded machine, and frozen
    start-up objects keep the ``gc.collect()`` of every ``train()`` call short."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    gc.freeze()
    yield
    gc.unfreeze()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny Llama and a word-level tokenizer, saved locally."""
    path = tmp_path_factory.mktemp("tiny-llama")
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2, "<bos>": 3}
    vocab.update({w: i + 4 for i, w in enumerate(WORDS)})
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        eos_token="<eos>",
        unk_token="<unk>",
        bos_token="<bos>",
        padding_side="left",
    )
    tok.save_pretrained(path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=3,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def dataset():
    prompts = [" ".join(WORDS[(i + j) % len(WORDS)] for j in range(3)) for i in range(16)]
    return Dataset.from_dict({"prompt": prompts})


def share_of_a(completions, **kwargs):
    """Reward: the share of the word ``a`` in the completion."""
    return [c.split().count("a") / max(len(c.split()), 1) for c in completions]


class GradientTap(TrainerCallback):
    """Keeps the accumulated gradient seen by each optimizer step."""

    def __init__(self):
        self.grads: list[torch.Tensor] = []

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):
        flat = [p.grad.flatten() for p in model.parameters() if p.grad is not None]
        self.grads.append(torch.cat(flat).detach().clone())


def run(model_dir, dataset, tmp_path, cls=GRPOTrainer, steps=1, control=None, aepo=None, **config):
    """Train ``steps`` optimizer steps; return (gradients per step, log history, trainer)."""
    settings = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 4,
        "num_generations": 4,
        "max_completion_length": 6,
        "max_steps": steps,
        "learning_rate": 0.05,
        "temperature": TEMPERATURE,
        "max_grad_norm": 0.0,  # no clipping: the tapped gradient is the raw one
        "logging_steps": 1,
        "report_to": [],
        "save_strategy": "no",
        "use_cpu": True,
        "seed": 0,
        "disable_tqdm": True,
        "bf16": False,  # float32 throughout, so that gradients compare tightly
    }
    settings.update(config)
    tap = GradientTap()
    kwargs = {} if control is None else {"entropy_control": control}
    if aepo is not None:
        kwargs["aepo"] = aepo
    trainer = cls(
        model=model_dir,
        reward_funcs=share_of_a,
        args=GRPOConfig(**settings),
        train_dataset=dataset,
        callbacks=[tap],
        **kwargs,
    )
    trainer.train()
    return tap.grads, trainer.state.log_history, trainer


def last(logs, key):
    values = [entry[key] for entry in logs if key in entry]
    assert values, f"{key} not logged"
    return values[-1]


class OldDocsRecipe(GRPOTrainer):
    """The recipe docs/rl_integration.md gave before the integration (overrides compute_loss)."""

    def __init__(self, *args, entropy_control=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.siren = entropy_control

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        att = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        n = inputs["completion_ids"].shape[1]
        logits = model(input_ids=ids, attention_mask=att, logits_to_keep=n + 1).logits[:, :-1]
        tokens, mask = inputs["completion_ids"], inputs["completion_mask"]
        logp = selective_log_softmax(logits, tokens, self.temperature)
        old = inputs.get("old_per_token_logps")
        old = logp.detach() if old is None else old
        loss = clipped_surrogate(
            logp, old, inputs["advantages"], mask, self.epsilon_low, self.epsilon_high
        )
        if self.beta != 0.0:
            loss = loss + self.beta * aggregate(kl_k3(logp, inputs["ref_per_token_logps"]), mask)
        reg, _ = self.siren(logits, mask)
        return loss + reg


def assert_same_gradients_as_trl(cls, model_dir, dataset, tmp_path, ga, beta):
    # bnpo: the old recipe's token-mean surrogate is TRL's bnpo loss (TRL's default is dapo)
    config = {"gradient_accumulation_steps": ga, "beta": beta, "loss_type": "bnpo"}
    theirs, trl_logs, _ = run(model_dir, dataset, tmp_path / "trl", **config)
    siren = SelectiveEntropyRegularizer(coef=0.0, temperature=TEMPERATURE)
    ours, logs, _ = run(model_dir, dataset, tmp_path / "ours", cls, control=siren, **config)
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-5, atol=1e-7)
    return trl_logs, logs


@pytest.mark.parametrize("beta", [0.0, 0.04])
@pytest.mark.parametrize("ga", [1, 2])
def test_zero_coefficient_gives_trls_gradient(model_dir, dataset, tmp_path, ga, beta):
    trl_logs, logs = assert_same_gradients_as_trl(
        InforegGRPOTrainer, model_dir, dataset, tmp_path, ga, beta
    )
    for key in ["entropy", "clip_ratio/region_mean", "reward"] + (["kl"] if beta else []):
        assert last(logs, key) == pytest.approx(last(trl_logs, key), rel=1e-5), key
    # SIREN's exact entropy at TRL's temperature is TRL's entropy metric
    assert last(logs, "inforeg/siren_entropy") == pytest.approx(last(logs, "entropy"), rel=1e-4)
    assert last(logs, "inforeg/siren_loss") == 0.0
    assert math.isfinite(last(logs, "inforeg/siren_anchor"))


OPTIONS = {
    # the second step reuses the batch with TRL's old log-probs
    "iterations": {
        "num_iterations": 2,
        "gradient_accumulation_steps": 2,
        "steps_per_generation": 4,
    },
    # TRL's high-entropy token mask and per-sequence loss
    "entropy-mask": {"top_entropy_quantile": 0.5, "loss_type": "grpo", "entropy_coef": 0.1},
    "dr_grpo": {"loss_type": "dr_grpo", "gradient_accumulation_steps": 2},
    # the backbone's layers are re-run in the backward pass
    "checkpointing": {"gradient_checkpointing": True, "entropy_coef": 0.1},
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_zero_coefficient_keeps_trls_options(model_dir, dataset, tmp_path, option):
    config = OPTIONS[option]
    theirs, _, _ = run(model_dir, dataset, tmp_path / "trl", steps=3, **config)
    siren = SelectiveEntropyRegularizer(coef=0.0, temperature=TEMPERATURE)
    ours, _, _ = run(
        model_dir, dataset, tmp_path / "ours", InforegGRPOTrainer, steps=3, control=siren, **config
    )
    for step in range(3):
        torch.testing.assert_close(ours[step], theirs[step], rtol=1e-5, atol=1e-7)


def test_old_docs_recipe_doubles_the_gradient_at_accumulation_2(model_dir, dataset, tmp_path):
    """The check above fails on the recipe the docs gave: TRL marks its loss as already scaled
    for accumulation, so overriding compute_loss leaves the gradient G times too large."""
    siren = SelectiveEntropyRegularizer(coef=0.0, temperature=TEMPERATURE)
    config = {"gradient_accumulation_steps": 2, "loss_type": "bnpo"}
    theirs, _, _ = run(model_dir, dataset, tmp_path / "trl", **config)
    old, _, _ = run(model_dir, dataset, tmp_path / "old", OldDocsRecipe, control=siren, **config)
    assert torch.linalg.norm(old[0]) / torch.linalg.norm(theirs[0]) == pytest.approx(2.0, rel=1e-3)
    with pytest.raises(AssertionError):
        assert_same_gradients_as_trl(OldDocsRecipe, model_dir, dataset, tmp_path / "x", 2, 0.0)


@pytest.mark.parametrize(
    "config",
    [
        {"gradient_accumulation_steps": 1},
        {"gradient_accumulation_steps": 2},
        {"gradient_accumulation_steps": 2, "gradient_checkpointing": True},
    ],
    ids=["ga1", "ga2", "ga2-checkpointing"],
)
def test_entropy_bonus_equals_trls_entropy_coef(model_dir, dataset, tmp_path, config):
    """TRL's own entropy_coef still acts under the trainer, and inforeg's bonus equals it
    (TRL's default loss_type, dapo)."""
    trl_bonus, _, _ = run(model_dir, dataset, tmp_path / "a", entropy_coef=0.5, **config)
    plain, _, _ = run(model_dir, dataset, tmp_path / "b", **config)
    zero = EntropyBonus(coef=0.0, temperature=TEMPERATURE)
    kept, _, _ = run(
        model_dir, dataset, tmp_path / "c", InforegGRPOTrainer, control=zero,
        entropy_coef=0.5, **config,
    )  # fmt: skip
    ours = EntropyBonus(coef=0.5, temperature=TEMPERATURE)
    mine, logs, _ = run(
        model_dir, dataset, tmp_path / "d", InforegGRPOTrainer, control=ours, **config
    )
    assert not torch.allclose(trl_bonus[0], plain[0], rtol=1e-3)  # the option matters here
    torch.testing.assert_close(kept[0], trl_bonus[0], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(mine[0], trl_bonus[0], rtol=1e-4, atol=1e-6)
    assert last(logs, "inforeg/entropy_bonus_entropy") == pytest.approx(
        last(logs, "entropy"), rel=1e-4
    )


def entropy_after(logs, steps=2):
    """TRL's entropy metric, mean of the last ``steps`` optimizer steps."""
    values = [entry["entropy"] for entry in logs if "entropy" in entry]
    return sum(values[-steps:]) / steps


STEPS = 6


@pytest.fixture(scope="module")
def baseline_entropy(model_dir, dataset, tmp_path_factory):
    """Plain TRL (dapo) on the same seed: its entropy falls as the reward sharpens the policy."""
    _, logs, _ = run(model_dir, dataset, tmp_path_factory.mktemp("base"), steps=STEPS)
    return entropy_after(logs), logs[0]["entropy"]


CONTROLS = {
    "entropy_bonus": lambda: EntropyBonus(coef=0.5, temperature=TEMPERATURE),
    "epo": lambda: EntropySmoothingRegularizer(coef=0.5, temperature=TEMPERATURE),
}


@pytest.mark.parametrize("name", sorted(CONTROLS))
def test_control_keeps_entropy_above_trl(model_dir, dataset, tmp_path, baseline_entropy, name):
    control = CONTROLS[name]()
    _, logs, trainer = run(
        model_dir, dataset, tmp_path, InforegGRPOTrainer, steps=STEPS, control=control
    )
    final, start = baseline_entropy
    assert logs[0]["entropy"] == pytest.approx(start, rel=1e-6)  # same first batch
    assert entropy_after(logs) > final + 0.02, (entropy_after(logs), final)
    assert f"inforeg/{name}_loss" in logs[0] and f"inforeg/{name}_entropy" in logs[0]
    if name == "epo":  # one history entry per generation batch, recorded before its update
        assert trainer.entropy_control.history.counts[0].item() == STEPS


@pytest.mark.parametrize("direction", [1.0, -1.0])
def test_siren_pulls_the_selected_entropy_toward_its_anchor(
    model_dir, dataset, tmp_path, baseline_entropy, direction
):
    siren = SelectiveEntropyRegularizer(coef=2.0, top_p=0.95, quantile=0.0, temperature=TEMPERATURE)
    siren.set_anchor(baseline_entropy[1] + direction)
    _, logs, _ = run(model_dir, dataset, tmp_path, InforegGRPOTrainer, steps=STEPS, control=siren)
    change = entropy_after(logs) - baseline_entropy[0]
    assert direction * change > 0.02, change
    assert last(logs, "inforeg/siren_anchor") == pytest.approx(baseline_entropy[1] + direction)


def test_lp_reg_changes_the_loss_only_on_selected_tokens(model_dir, dataset, tmp_path):
    """Lp-Reg's total-entropy effect on this toy depends on min_p (measured: no change at 0.02,
    higher at 0.1 and 0.3, lower at 0.5 after 6 steps), so the test checks its mechanism: TRL's
    gradient exactly when no token is selected (k = floor(0.01 N_neg) <= 1 here), another one
    when tokens are selected (neg_fraction=1)."""
    theirs, _, _ = run(model_dir, dataset, tmp_path / "trl", steps=2)

    def lp_reg(fraction):
        return LowProbabilityRegularizer(
            min_p=0.3, neg_fraction=fraction, kl_coef=5.0, eps_low=0.2, eps_high=0.2,
            temperature=TEMPERATURE,
        )  # fmt: skip

    inert, logs, _ = run(
        model_dir, dataset, tmp_path / "a", InforegGRPOTrainer, steps=2, control=lp_reg(0.01)
    )
    assert [e["inforeg/lp_reg_num_selected"] for e in logs if "entropy" in e] == [0.0, 0.0]
    torch.testing.assert_close(inert[1], theirs[1], rtol=1e-6, atol=1e-8)
    acting, logs, _ = run(
        model_dir, dataset, tmp_path / "b", InforegGRPOTrainer, steps=2, control=lp_reg(1.0)
    )
    assert logs[1]["inforeg/lp_reg_num_selected"] > 0 and logs[1]["inforeg/lp_reg_kl"] > 0
    assert not torch.allclose(acting[1], theirs[1], rtol=1e-3)


def test_bad_controls_are_refused(model_dir, dataset, tmp_path):
    with pytest.raises(TypeError, match="entropy_control"):
        control_name(torch.nn.Linear(2, 2))
    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4,
        temperature=TEMPERATURE, use_cpu=True, report_to=[],
    )  # fmt: skip
    cases = [
        (torch.nn.Linear(2, 2), TypeError, "expected one of"),
        (EntropyBonus(temperature=1.0), ValueError, "temperature=1.0 differs"),
        (LowProbabilityRegularizer(temperature=TEMPERATURE), ValueError, "eps_low=1.0"),
    ]
    for control, error, message in cases:
        with pytest.raises(error, match=message):
            InforegGRPOTrainer(
                model=model_dir, reward_funcs=share_of_a, args=args, train_dataset=dataset,
                entropy_control=control,
            )  # fmt: skip
    aepo_cases = [
        (EntropyBonus(temperature=TEMPERATURE), TypeError, "ArbitraryEntropyController"),
        (ArbitraryEntropyController(), ValueError, "aepo: temperature=1.0 differs"),
    ]
    for aepo, error, message in aepo_cases:
        with pytest.raises(error, match=message):
            InforegGRPOTrainer(
                model=model_dir, reward_funcs=share_of_a, args=args, train_dataset=dataset,
                aepo=aepo,
            )  # fmt: skip


@pytest.mark.parametrize(("target", "direction"), [(10.0, 1.0), (0.0, -1.0)])
def test_aepo_steers_the_entropy_through_the_sampling_temperature(
    model_dir, dataset, tmp_path, baseline_entropy, target, direction
):
    """Below its target the controller samples at t_high (here 2.0), above it at t_low (0.5),
    and trains on the positive tempered samples: the entropy follows."""
    aepo = ArbitraryEntropyController(
        target_entropy=target, t_high=2.0, t_low=0.5, threshold=0.0, resample_fraction=1.0,
        temperature=TEMPERATURE,
    )  # fmt: skip
    _, logs, trainer = run(
        model_dir, dataset, tmp_path, InforegGRPOTrainer, steps=STEPS, per_device_train_batch_size=8,
        aepo=aepo,
    )  # fmt: skip
    temps = [e["inforeg/aepo_temperature"] for e in logs if "entropy" in e]
    assert temps == [2.0] * STEPS if direction > 0 else temps[1:] == [0.5] * (STEPS - 1)
    assert sum(e["inforeg/aepo_samples"] for e in logs if "entropy" in e) > 0
    # TRL's own metrics still describe the main batch (8 completions per step)
    assert all(e["completions/mean_length"] <= 6 for e in logs if "entropy" in e)
    _, base_logs, _ = run(
        model_dir, dataset, tmp_path / "b", steps=STEPS, per_device_train_batch_size=8
    )
    change = entropy_after(logs) - entropy_after(base_logs)
    assert direction * change > 0.02, change
    assert float(trainer.aepo.entropy) > 0
