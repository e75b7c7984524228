"""Pieces of mambarec-alignment that its verdicts rest on: the data splits, the ranking metrics
(brute force), the graphs and the misalignment z-score."""

from __future__ import annotations

import math

import pytest
import torch

from inforeg.lab.experiments import mambarec_alignment as m


def test_splits_are_disjoint_and_sized():
    data = m.make_data(0)
    rows = torch.cat([data["train"], data["val"], data["test"]], dim=1)
    assert data["train"].shape == (m.N_USERS, 16)
    assert data["val"].shape == data["test"].shape == (m.N_USERS, 2)
    for r in rows[:50]:
        assert len(set(r.tolist())) == m.PER_USER
    assert data["img"].shape == (m.N_ITEMS, m.IMG_DIM)
    assert data["txt"].shape == (m.N_ITEMS, m.TXT_DIM)


def _brute_force(scores, known, target):  # type: ignore[no-untyped-def]
    recalls, ndcgs = [], []
    for s, kn, t in zip(scores.tolist(), known.tolist(), target.tolist()):
        ranked = sorted((i for i in range(len(s)) if not kn[i]), key=lambda i: -s[i])[: m.TOP_K]
        hits = [i in t for i in ranked]
        recalls.append(sum(hits) / len(t))
        dcg = sum(1 / math.log2(r + 2) for r, h in enumerate(hits) if h)
        ndcgs.append(dcg / sum(1 / math.log2(r + 2) for r in range(len(t))))
    return sum(recalls) / len(recalls), sum(ndcgs) / len(ndcgs)


def test_ranking_metrics_match_brute_force():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(30, 60, generator=g)
    known = torch.rand(30, 60, generator=g) < 0.3
    target = torch.stack([torch.randperm(60, generator=g)[:2] for _ in range(30)])
    known[torch.arange(30)[:, None], target] = False
    got = m.ranking_metrics(scores, known, target)
    recall, ndcg = _brute_force(scores, known, target)
    assert got[f"Recall@{m.TOP_K}"] == pytest.approx(recall, abs=1e-6)
    assert got[f"NDCG@{m.TOP_K}"] == pytest.approx(ndcg, abs=1e-6)
    perfect = m.ranking_metrics(
        -torch.arange(60.0).expand(2, -1), known[:2] & False, torch.tensor([[0, 1], [0, 1]])
    )
    assert perfect[f"Recall@{m.TOP_K}"] == perfect[f"NDCG@{m.TOP_K}"] == 1.0


def test_graphs_are_symmetrically_normalised():
    data = m.make_data(0)
    adj, r = m.bipartite_graph(data["train"])
    torch.testing.assert_close(adj, adj.T)
    deg = (adj > 0).sum(1).float()
    i, j = 3, m.N_USERS + int(data["train"][3, 0])
    assert float(adj[i, j]) == pytest.approx(1 / math.sqrt(deg[i] * deg[j]), rel=1e-6)
    assert r.shape == (m.N_USERS, m.N_ITEMS)
    knn = m.knn_graph(data["img"])
    assert int((knn > 0).sum(1).min()) == m.KNN_K


def test_misalignment_z_separates_shifted_from_matched_views():
    model = m.MambaRecLite(m.make_data(0))
    z_raw = m.modality_mmd_z(model, perms=20)
    with torch.no_grad():  # make the text projection reproduce the image projection's rows
        model.txt = model.img[:, : m.TXT_DIM].clone()
        model.img_proj.weight.zero_()
        model.img_proj.weight[:, : m.TXT_DIM] = model.txt_proj.weight
        model.img_proj.bias.copy_(model.txt_proj.bias)
        model.img = torch.cat([model.txt, torch.zeros(m.N_ITEMS, m.IMG_DIM - m.TXT_DIM)], 1)
    z_same = m.modality_mmd_z(model, perms=20)
    assert z_raw > 3.0
    assert z_same < 3.0
