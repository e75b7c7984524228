"""Registry records: policy-entropy control for rl fine-tuning (family ``rl``)."""

from inforeg.core.registry import Record

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
        notes="Later arXiv/OpenReview versions retitled ('...Breaks The Exploration Bottleneck of Reinforcement Learning', per spec).",
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
        notes="Main repo could not be read; spec used the authors' dev repo CarlanLark/Lp-Reg-dev.",
    ),
]
