"""The latent-query-alignment-seq task: the response is the context through a permutation that
the (noisy) knowledge string selects, and the splits have the declared sizes."""

from __future__ import annotations

import torch

from inforeg.lab.experiments.latent_query_alignment_seq import (
    CONTEXT,
    KNOWLEDGE,
    N_TEST,
    N_TRAIN,
    N_VAL,
    SEP,
    VOCAB,
    make_task,
)


def test_task_is_a_knowledge_selected_permutation():
    data = make_task(3)
    assert {k: v[0].shape[0] for k, v in data.items()} == {
        "train": N_TRAIN,
        "validation": N_VAL,
        "test": N_TEST,
    }
    source = torch.cat([v[0] for v in data.values()])
    response = torch.cat([v[1] for v in data.values()])
    knowledge, sep, context = (
        source[:, :KNOWLEDGE],
        source[:, KNOWLEDGE],
        source[:, KNOWLEDGE + 1 :],
    )
    assert (sep == SEP).all() and context.shape[1] == CONTEXT == response.shape[1]
    # the 4 base strings: every knowledge string agrees with exactly one in >= 3 of 4 positions
    bases = torch.unique(knowledge, dim=0, return_counts=True)
    base_strings = bases[0][bases[1].argsort(descending=True)[:4]]
    agree = (knowledge[:, None, :] == base_strings[None]).sum(-1)  # (N, 4)
    assert ((agree >= 3).sum(1) == 1).all()
    which = (agree >= 3).float().argmax(1)
    for k in range(4):
        table = torch.full((VOCAB,), -1)
        sel = which == k
        c, r = context[sel].flatten(), response[sel].flatten()
        table[c] = r
        assert torch.equal(table[c], r)  # a function of the context token ...
        assert torch.equal(table.sort().values, torch.arange(VOCAB))  # ... and a permutation
    assert not torch.equal(make_task(3)["train"][1], make_task(4)["train"][1])  # new per seed
