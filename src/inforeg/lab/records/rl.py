"""Registry records: policy-entropy control for rl fine-tuning (family ``rl``)."""

from inforeg.lab.registry import Record

RECORDS = [
    Record(
        key="siren",
        title="Rethinking Entropy Regularization in Large Reasoning Models",
        authors="Yuxian Jiang, Yafu Li, Guanxu Chen, Dongrui Liu, et al.",
        year=2025,
        venue="arXiv preprint",
        family="rl",
        spec="rl.md §1",
        arxiv="2509.25133",
        code="Linn3a/siren",
        api=(
            "inforeg.rl.SelectiveEntropyRegularizer",
            "inforeg.rl.top_p_entropy",
            "inforeg.rl.peak_entropy_mask",
            "inforeg.rl.anchored_penalty",
            "inforeg.rl.selective_entropy",
            "inforeg.rl.token_entropy",
            "inforeg.rl.selective_log_softmax",
            "inforeg.rl.grpo_advantages",
            "inforeg.rl.clipped_surrogate",
            "inforeg.rl.kl_k3",
            "inforeg.rl.aggregate",
        ),
        experiment="grpo-entropy-collapse",
        benchmarks=("fused-lm-head", "siren", "token-entropy"),
        status="verified",
        reference_tests=(
            "tests/rl/test_siren.py",
            "tests/rl/test_entropy.py",
            "tests/rl/test_grpo.py",
        ),
        notes=(
            "Follows the code (Linn3a/siren dp_actor.py, read): the token whose cumulative mass "
            "crosses top_p is excluded (empty set -> 0), per-response linear nanquantile with a "
            "strict '>', anchor = the statistic at the first call (step 1), fixed afterwards. The "
            "code adds 1e-12 in the normaliser and log (omitted: ~1e-12) and does not AND the "
            "peak mask with the response mask (done explicitly here). The GRPO core and the "
            "chunked token entropy / selective log-softmax (the shared RL base, spec §5) are "
            "listed here because the registry has no separate record for them."
        ),
    ),
    Record(
        key="epo",
        title="EPO: Entropy-regularized Policy Optimization for LLM Agents Reinforcement Learning",
        authors="Wujiang Xu, Wentian Zhao, Zhenting Wang, Yu-Jhe Li, et al.",
        year=2025,
        venue="arXiv preprint",
        family="rl",
        spec="rl.md §2",
        arxiv="2509.22576",
        code="WujiangXu/EPO",
        api=(
            "inforeg.rl.EntropySmoothingRegularizer",
            "inforeg.rl.TurnEntropyHistory",
            "inforeg.rl.entropy_band_penalty",
            "inforeg.rl.phase_weight_schedule",
        ),
        experiment="grpo-entropy-collapse",
        status="verified",
        reference_tests=("tests/rl/test_epo.py",),
        notes=(
            "Default penalty='hinge' is the paper's differentiable band (authors' rebuttal). In "
            "the released code the smoothing term is a constant indicator (alpha outside the "
            "band) with no gradient, so the update is PG + entropy bonus; penalty='indicator' "
            "reproduces it and warns. The code's turn>=25 gate and its left zero-padding of short "
            "histories (which shifts turn indices) are not reproduced."
        ),
    ),
    Record(
        key="aepo",
        title="Arbitrary Entropy Policy Optimization: Entropy Is Controllable in Reinforcement Fine-tuning",
        authors="Chen Wang, Zhaochun Li, Jionghao Bai, Yuzhi Zhang, et al.",
        year=2025,
        venue="arXiv preprint",
        family="rl",
        spec="rl.md §3",
        arxiv="2510.08141",
        code="597358816/AEPO",
        api=(
            "inforeg.rl.ArbitraryEntropyController",
            "inforeg.rl.build_reinforce_batch",
            "inforeg.rl.reinforce_loss",
        ),
        experiment="grpo-entropy-collapse",
        status="verified",
        reference_tests=("tests/rl/test_aepo.py",),
        notes=(
            "Later arXiv/OpenReview versions retitled ('...Breaks The Exploration Bottleneck of "
            "Reinforcement Learning', per spec). Code semantics followed: only positives "
            "(advantage > 0.05) from non-saturated tempered groups, advantage set to +1, count "
            "capped at 60 and halved above target, lagged sampled-token entropy estimate; the "
            "README formula weights all tempered samples by reward."
        ),
    ),
    Record(
        key="lp-reg",
        title="Low-probability Tokens Sustain Exploration in Reinforcement Learning with Verifiable Reward",
        authors="Guanhua Huang, Tingqiang Xu, Mingze Wang, Qi Yi, et al.",
        year=2025,
        venue="arXiv preprint",
        family="rl",
        spec="rl.md §4",
        arxiv="2510.03222",
        code="CarlanLark/Lp-Reg",
        api=(
            "inforeg.rl.LowProbabilityRegularizer",
            "inforeg.rl.low_probability_loss",
            "inforeg.rl.min_p_proxy_logprobs",
        ),
        experiment="grpo-entropy-collapse",
        status="verified",
        reference_tests=("tests/rl/test_lp_reg.py",),
        notes=(
            "Main repo could not be read; the spec used the authors' dev repo "
            "CarlanLark/Lp-Reg-dev (README: reproduces the paper). The code's per-token k3 on the "
            "sampled token (clamped to [-10, 10]) is implemented, not a full-distribution KL; "
            "nothing is regularised unless k = max(1, floor(0.01 N_neg)) > 1."
        ),
    ),
]
