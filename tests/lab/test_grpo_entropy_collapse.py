"""The GRPO entropy-collapse experiment's split, selection bookkeeping and claim kinds."""

from __future__ import annotations

import torch

from inforeg.lab.experiments import grpo_entropy_collapse as exp


def test_split_is_a_partition_of_the_hundred_prompts():
    data = exp._split(3)
    sizes = {k: v.shape[0] for k, v in data.items()}
    assert sizes == {"train": 30, "val": 20, "test": 50}
    seen = {tuple(p) for p in torch.cat(list(data.values())).tolist()}
    assert len(seen) == 100
    assert not torch.equal(exp._split(4)["test"], data["test"])  # a fresh split per seed


def test_only_accuracy_claims_are_paper_claims():
    e = exp.EXPERIMENT
    assert e.protocol == 2 and e.seeds >= 10
    for c in e.claims:
        if "entropy" in c.metric:
            assert c.kind == "sanity"
        else:
            assert c.kind == "paper" and c.regime and c.paper
    assert {len(list(g.values())[0]) for g in e.tuning.values()} == {2}
    assert 0.005 in e.tuning["SIREN"]["coef"]  # the authors' coefficient is on SIREN's grid


def test_lp_reg_fit_logs_its_selected_share():
    from inforeg.lab.experiments.grpo_toy import AdditionTask, sft_base_policy

    data = exp._split(0)
    base = sft_base_policy(AdditionTask(data["train"], data["val"]), steps=5, units_input=True)
    sel = exp._fit("Lp-Reg", {"neg_fraction": 0.5}, base, data, 0, quick=True)
    assert 0.0 < sel.metrics["selected share"] <= 1.0
    assert sel.metrics["steps with selection"] > 0.0
    assert sel.metrics["stopping step"] in (0.0, 10.0, 20.0, 30.0)
