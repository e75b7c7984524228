"""Entropy collapse under GRPO on a CPU verifiable-reward task, and five controls against it.

Task (:mod:`inforeg.lab.experiments.grpo_toy`): two-digit addition with a reward-free first token;
the policy also sees one-hot(a + b), so the answer is learnable on prompts it never trained on and
held-out pass@k measures what RL taught, not leftover randomness (without that input the MLP does
not generalise addition and held-out pass@1 after RL sits below a uniform guess).

Protocol 2: per seed a fresh split of the 100 prompts (30 train / 20 validation / 50 test), one
SFT base policy shared by every arm, and the same rollout randomness stream for every arm. Every
arm tunes one hyper-parameter over two values (GRPO its learning rate, each control its own
coefficient) and picks its stopping step on validation pass@1 (step 0, the base, included); test
metrics are read at that point only. Entropy is reported on the two answer tokens (the reward-free
first token is reported apart: any entropy there costs nothing). Lp-Reg's share of regularised
tokens is logged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from inforeg.lab.experiments.base import Claim, Experiment, RegimeCheck, SeedResult
from inforeg.lab.experiments.protocol import BestOnValidation, tune_arms

GROUP = 8
PROMPTS = 32  # prompts per rollout (x GROUP samples)
LR = 3e-3  # the controls' learning rate (GRPO tunes its own)
SPLIT = {"train": 30, "validation": 20, "test": 50}
N_VAL = 16  # samples per validation prompt (pass@1)
N_TEST = 32  # samples per test prompt (pass@1, pass@16)
COLLAPSE = 0.25  # "collapsed": answer entropy below 25% of the base policy's (spec rl.md §6)
CEILING = 0.95
EPO_FIXED: dict[str, Any] = {
    "smooth_coef": 1.0,
    "kappa_low": 0.8,
    "kappa_high": 1.2,
    "out_of_range_penalty": 1.0,
}
AEPO_FIXED: dict[str, Any] = {"max_samples": 256, "resample_fraction": 1.0}
LPREG_FIXED: dict[str, Any] = {"min_p": 0.02, "kl_coef": 1.0}
GRIDS: dict[str, dict[str, list[Any]]] = {
    "GRPO": {"lr": [3e-3, 1e-3]},
    "entropy bonus": {"coef": [0.01, 0.1]},
    "SIREN": {"coef": [0.005, 0.05]},  # 0.005 = the authors' entropy_coeff
    "EPO": {"coef": [0.001, 0.1]},  # 0.001 = the authors' entropy_coeff
    "AEPO": {"target_entropy": [0.5, 0.75]},  # the code's default and the README's best row
    "Lp-Reg": {"neg_fraction": [0.2, 0.5]},  # 0.01 selects nothing at 768 tokens per rollout
}
METHODS = tuple(GRIDS)


def _arm(name: str, point: dict[str, Any], steps: int, log: dict[str, list[float]]):  # type: ignore[no-untyped-def]
    """(loss_fn, before_update) of one arm at one grid point; fresh stateful modules."""
    from inforeg.lab.experiments.grpo_toy import AdditionTask, sample
    from inforeg.rl import (
        ArbitraryEntropyController,
        EntropySmoothingRegularizer,
        LowProbabilityRegularizer,
        SelectiveEntropyRegularizer,
        aggregate,
        clipped_surrogate,
        selective_log_softmax,
        token_entropy,
    )

    def pg(policy, batch):  # type: ignore[no-untyped-def]
        logits = policy(batch.prompts, batch.responses)
        logp = selective_log_softmax(logits, batch.responses)
        return logits, logp, clipped_surrogate(logp, logp.detach(), batch.advantages, batch.mask)

    if name == "GRPO":
        return (lambda policy, batch: pg(policy, batch)[2]), None
    if name == "entropy bonus":

        def bonus(policy, batch):  # type: ignore[no-untyped-def]
            logits, _, loss = pg(policy, batch)
            return loss - point["coef"] * aggregate(token_entropy(logits), batch.mask, "token-mean")

        return bonus, None
    if name == "SIREN":
        siren = SelectiveEntropyRegularizer(coef=point["coef"])

        def siren_loss(policy, batch):  # type: ignore[no-untyped-def]
            logits, _, loss = pg(policy, batch)
            return loss + siren(logits, batch.mask)[0]

        return siren_loss, None
    if name == "EPO":
        epo = EntropySmoothingRegularizer(total_epochs=steps, coef=point["coef"], **EPO_FIXED)

        def epo_loss(policy, batch):  # type: ignore[no-untyped-def]
            logits, _, loss = pg(policy, batch)
            reg = epo(logits, batch.mask, epoch=batch.step)[0]
            epo.record(logits.detach(), batch.mask)  # the rollout's entropies join the history
            return loss + reg

        return epo_loss, None
    if name == "AEPO":
        aepo = ArbitraryEntropyController(target_entropy=point["target_entropy"], **AEPO_FIXED)

        def aepo_batch(policy, batch):  # type: ignore[no-untyped-def]
            n_prompts = max(1, int(round(aepo.resample_fraction * batch.prompts.shape[0] / GROUP)))
            prompts = batch.prompts[: n_prompts * GROUP]
            tempered = sample(policy, prompts, aepo.sampling_temperature())
            idx, ones = aepo.select(AdditionTask.reward(prompts, tempered), GROUP)
            m = idx.shape[0]
            if m:
                batch.prompts = torch.cat([prompts[idx], batch.prompts[m:]])
                batch.responses = torch.cat([tempered[idx], batch.responses[m:]])
                batch.advantages = torch.cat([ones, batch.advantages[m:]])
            return batch

        def aepo_loss(policy, batch):  # type: ignore[no-untyped-def]
            _, logp, loss = pg(policy, batch)
            aepo.update(logp, batch.mask)  # lagged sampled-token entropy of the update batch
            return loss

        return aepo_loss, aepo_batch
    if name == "Lp-Reg":
        lpreg = LowProbabilityRegularizer(neg_fraction=point["neg_fraction"], **LPREG_FIXED)

        def lpreg_loss(policy, batch):  # type: ignore[no-untyped-def]
            logits = policy(batch.prompts, batch.responses)
            old = selective_log_softmax(logits.detach(), batch.responses)
            loss, stats = lpreg(logits, batch.responses, old, batch.advantages, batch.mask)
            log["selected share"].append(float(stats["masked_fraction"]))
            return loss

        return lpreg_loss, None
    raise ValueError(f"unknown arm {name!r}")


@torch.no_grad()
def _entropies(policy, prompts: Tensor) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Exact token entropy at the policy's own samples: (answer tokens, free slot)."""
    from inforeg.lab.experiments.grpo_toy import sample
    from inforeg.rl import token_entropy

    rep = prompts.repeat_interleave(GROUP, dim=0)
    ent = token_entropy(policy(rep, sample(policy, rep)))
    return float(ent[:, 1:].mean()), float(ent[:, 0].mean())


def _evaluate(policy, train: Tensor, test: Tensor) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from inforeg.lab.experiments.grpo_toy import pass_at_k

    answer, free = _entropies(policy, test)
    test_pass = pass_at_k(policy, test, (1, 16), n=N_TEST)
    return {
        "test pass@1": test_pass[1],
        "test pass@16": test_pass[16],
        "train pass@1": pass_at_k(policy, train, (1,), n=N_VAL)[1],
        "answer entropy": answer,
        "free-slot entropy": free,
    }


def _quiet(fn: Callable[[], Any], seed: int) -> Any:
    """Run an evaluation on its own random stream, leaving the training stream untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return fn()


def _fit(arm: str, point: dict[str, Any], base, data: dict[str, Tensor], seed: int, quick: bool):  # type: ignore[no-untyped-def]
    from inforeg.lab.experiments.grpo_toy import AdditionTask, grpo_train, pass_at_k

    steps, every = (30, 10) if quick else (250, 25)
    policy = copy.deepcopy(base)
    log: dict[str, list[float]] = {"selected share": []}
    loss_fn, hook = _arm(arm, point, steps, log)
    best = BestOnValidation(higher_is_better=True)

    def check(n: int) -> None:
        if n % every == 0:
            val = _quiet(lambda: pass_at_k(policy, data["val"], (1,), n=N_VAL)[1], seed + n)
            evaluate = lambda: _quiet(lambda: _evaluate(policy, data["train"], data["test"]), seed)  # noqa: E731
            best.update(n, val, evaluate)

    check(0)
    torch.manual_seed(seed)  # the same rollout stream for every arm and grid point
    task = AdditionTask(data["train"], data["val"])
    lr = point.get("lr", LR)
    curves = grpo_train(policy, task, loss_fn, steps, PROMPTS, GROUP, lr, hook, every, check)
    final_answer, final_free = _quiet(lambda: _entropies(policy, data["train"]), seed)
    sel = best.result(curves=curves)
    sel.metrics["stopping step"] = float(best.step)
    sel.metrics["final answer entropy"] = final_answer
    sel.metrics["final free-slot entropy"] = final_free
    shares = log["selected share"]
    if shares:
        sel.metrics["selected share"] = sum(shares) / len(shares)
        sel.metrics["steps with selection"] = sum(s > 0 for s in shares) / len(shares)
    return sel


def _split(seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    a, b = torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij")
    prompts = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)[torch.randperm(100, generator=g)]
    n_tr, n_val = SPLIT["train"], SPLIT["validation"]
    return {
        "train": prompts[:n_tr],
        "val": prompts[n_tr : n_tr + n_val],
        "test": prompts[n_tr + n_val :],
    }


def run_seed(seed: int, quick: bool) -> SeedResult:
    from inforeg.lab.experiments.grpo_toy import AdditionTask, sft_base_policy

    data = _split(seed)
    base = sft_base_policy(
        AdditionTask(data["train"], data["val"]),
        steps=100 if quick else 300,
        seed=seed,
        units_input=True,
    )
    base_answer, _ = _quiet(lambda: _entropies(base, data["train"]), seed)
    tuned = tune_arms(GRIDS, lambda arm, point: _fit(arm, point, base, data, seed, quick))
    metrics = tuned.metrics()
    arm_curves = tuned.extras("curves")
    curves = {
        c: {arm: arm_curves[arm][c] for arm in GRIDS}
        for c in ("answer entropy", "free-slot entropy")
    }
    grpo = metrics["GRPO"]
    regime = {
        "GRPO final / base answer entropy": grpo["final answer entropy"] / base_answer,
        "GRPO test pass@1": grpo["test pass@1"],
        "Lp-Reg steps with selection": metrics["Lp-Reg"]["steps with selection"],
    }
    return SeedResult(metrics, curves, tuning=tuned.points(), regime=regime, splits=dict(SPLIT))


_REGIME = ("GRPO answer entropy collapses", "test pass@1 below ceiling")
_PAPERS = {
    "SIREN": (
        "SIREN (arXiv 2509.25133): '+6.6 maj@k on AIME24/25' with Qwen2.5-Math-7B and the best "
        "average over five maths benchmarks among entropy-based RLVR methods (GRPO, entropy "
        "bonus, ...), entropy_coeff 0.005"
    ),
    "EPO": (
        "EPO (arXiv 2509.22576): 'up to 152% performance improvement on ScienceWorld and up to "
        "19.8% on ALFWorld' over PPO/GRPO baselines (abstract), entropy_coeff 0.001"
    ),
    "AEPO": (
        "AEPO (arXiv 2510.08141): Qwen2.5-Math-7B, mean of 7 maths benchmarks 61.36 (H* = 0.75) "
        "vs GRPO 57.96"
    ),
    "Lp-Reg": (
        "Lp-Reg (arXiv 2510.03222): 60.17% mean accuracy on five maths benchmarks, +2.66 points "
        "over the best prior method; stable on-policy training where entropy-control baselines "
        "collapse"
    ),
}


def _claims() -> tuple[Claim, ...]:
    claims = [
        Claim(
            "test pass@1",
            m,
            "GRPO",
            True,
            f"{m} is more accurate than GRPO on held-out prompts (pass@1)",
            regime=_REGIME + (("Lp-Reg selects tokens",) if m == "Lp-Reg" else ()),
            paper=quote,
        )
        for m, quote in _PAPERS.items()
    ]
    claims.append(
        Claim(
            "test pass@1",
            "SIREN",
            "entropy bonus",
            True,
            "SIREN is more accurate than a plain entropy bonus on held-out prompts (pass@1)",
            regime=_REGIME,
            paper=_PAPERS["SIREN"] + "; the plain bonus is its main entropy-based baseline",
        )
    )
    claims.append(
        Claim(
            "test pass@16",
            "AEPO",
            "GRPO",
            True,
            "AEPO keeps held-out pass@16 above GRPO's",
            regime=_REGIME,
            paper="AEPO, later arXiv versions: pass@k up to k = 1024 above the base model and GRPO",
        )
    )
    claims += [
        Claim(
            "final answer entropy",
            m,
            "GRPO",
            True,
            f"{m} ends with more answer-token entropy than GRPO (its own target)",
            kind="sanity",
        )
        for m in METHODS[1:]
    ]
    return tuple(claims)


EXPERIMENT = Experiment(
    name="grpo-entropy-collapse",
    summary=(
        "Plain GRPO narrows the policy (entropy collapse). Entropy bonus, SIREN (selective "
        "anchored entropy), EPO (bonus + smoothing band), AEPO (temperature-switched REINFORCE "
        "on correct samples) and Lp-Reg (k3 toward a min-p proxy on low-probability negative "
        "tokens) are meant to keep entropy and, the papers say, raise held-out accuracy."
    ),
    setup=(
        "inforeg.lab.experiments.grpo_toy: two-digit addition with a free first token (vocab 10, "
        "3 tokens, reward 1 iff the 2nd/3rd tokens spell a+b); the MLP (one-hot a, b, (a+b) mod "
        "10, position, previous token; 64 ReLU; 10 logits) can generalise to unseen (a, b) "
        "through its (a+b) mod 10 input and a learnable carry. Per seed: 30 train / 20 validation "
        "/ 50 test prompts (with 60 training prompts GRPO reached held-out pass@1 0.96-0.98 in "
        "a 2-seed pilot of the baseline alone, at the ceiling; with 30, 0.68-0.73); base policy = 300 "
        "Adam steps of SFT on training answers with 60% token noise. RL: 250 steps (30 with "
        "--quick) x 32 prompts x G=8 at T=1, Adam (lr 3e-3 for the controls), one update per "
        "rollout, group-std advantages, token-mean. Grids (2 points each): GRPO lr {3e-3, 1e-3}; "
        "bonus {0.01, 0.1}; SIREN coef {0.005 (authors), 0.05} (top-p 0.8, top-20% tokens, "
        "step-1 anchor); EPO lambda {0.001 (authors), 0.1} with c_s 1, band (0.8, 1.2) x history, "
        "hinge 1; AEPO H* {0.5, 0.75}, T 1.2/0.8, all prompts re-sampled, <= 256 samples; Lp-Reg "
        "neg_fraction {0.2, 0.5} (the paper's 0.01 gives k <= 1 at 768 tokens per rollout, so it "
        "would select nothing; 0.1 was active in 14% of steps in a 1-seed pilot), min-p 0.02, beta 1. Selection: validation pass@1 (16 samples per "
        "prompt) every 25 steps, step 0 included. Test: unbiased pass@1 and pass@16 from 32 "
        "samples per prompt; exact token entropy at the policy's own samples on answer tokens. "
        "'final answer entropy' is read at the end of the run (chosen grid point), on training "
        "prompts. The design was fixed before the first full run. Outcome of the recorded run "
        "(10 seeds; this sentence added after it, nothing else changed): GRPO's answer entropy "
        "ends at 0.9% of the base's (collapse), its held-out pass@1 is 0.738 (room to improve), "
        "and every arm reaches train pass@1 0.992-0.994 (matched). No control moves held-out "
        "pass@1 by more than 0.004 (every interval contains 0): the entropy the controls keep "
        "sits at the reward-free slot (bonus 2.21, SIREN 2.19 vs GRPO 1.47 nats at the end), "
        "not on answer tokens (0.017-0.023 nats for every arm). Lp-Reg regularises tokens in "
        "only 27% of updates (0.5% of tokens) even at neg_fraction 0.2-0.5, because once the "
        "training reward nears 1 the rollouts hold few negative tokens, so its claim is not "
        "testable here."
    ),
    claims=_claims(),
    regime_checks=(
        RegimeCheck(
            "GRPO answer entropy collapses",
            "GRPO final / base answer entropy",
            "GRPO's answer-token entropy at the end of RL over the base policy's (collapse: < 0.25)",
            COLLAPSE,
            above=False,
        ),
        RegimeCheck(
            "test pass@1 below ceiling",
            "GRPO test pass@1",
            "GRPO's held-out pass@1 at its selected point (room to improve: < 0.95)",
            CEILING,
            above=False,
        ),
        RegimeCheck(
            "Lp-Reg selects tokens",
            "Lp-Reg steps with selection",
            "share of Lp-Reg's updates that regularise at least one token (active: > 0.5)",
            0.5,
        ),
    ),
    tuning=GRIDS,
    selection=(
        "per seed and arm: the grid point and stopping step (every 25 RL steps, step 0 included) "
        "with the best validation pass@1"
    ),
    run_seed=run_seed,
)
