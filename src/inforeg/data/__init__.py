"""inforeg.data: training-data tools a user imports (see DESIGN.md).

- :class:`EntropyCurriculumSampler`: an easy-to-difficult batch sampler with static and
  loss-adaptive difficulty (after RDTF, arXiv 2503.17735; formulas are inforeg's design), for
  ``DataLoader(dataset, batch_sampler=...)``, with ``DistributedSampler``-style sharding.
- :func:`curriculum_competence`: the root pacing function.
- :func:`static_entropy`: normalised per-sample histogram entropy, a static difficulty.

(The lab's embedded data sets live in ``inforeg.lab.datasets``.)

>>> import inforeg.data as dat
>>> round(dat.curriculum_competence(0, warmup_steps=100, c0=0.25), 4)  # pacing starts at c0
0.25
"""

from inforeg.data.curriculum import EntropyCurriculumSampler, curriculum_competence, static_entropy

__all__ = ["EntropyCurriculumSampler", "curriculum_competence", "static_entropy"]
