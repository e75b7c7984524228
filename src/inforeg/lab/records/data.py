"""Registry records: data curricula (family ``data``)."""

from inforeg.lab.registry import Record

RECORDS = [
    Record(
        key="rdtf",
        title="RDTF: Resource-efficient Dual-mask Training Framework for Multi-frame Animated Sticker Generation",
        authors="Zhiqiang Yuan, Ting Zhang, Peixiang Luo, Ying Deng, et al.",
        year=2025,
        venue="arXiv preprint",
        family="data",
        spec="remaining.md §13",
        arxiv="2503.17735",
        api=(
            "inforeg.data.EntropyCurriculumSampler",
            "inforeg.data.curriculum_competence",
            "inforeg.data.static_entropy",
        ),
        experiment="entropy-curriculum-digits",
        status="implemented",
        notes=(
            "No code released. The curriculum (rank-mixed static + loss-EMA difficulty, "
            "Platanios root competence pacing, eligible = ceil(c N) easiest) is inforeg's design "
            "after RDTF's idea: v1's captions and tables (read second-hand) show the paper's "
            "curriculum acts on task type and masked-frame length with gains K_p = 5, K_i = 3, "
            "K_d = 1.3, so the record stays implemented. Venue beyond arXiv not verified. "
            "entropy-curriculum-digits (10 seeds): the curriculum converged "
            "slower than uniform sampling (test AUC -0.010 [-0.012, -0.007]) and ended level."
        ),
    ),
]
