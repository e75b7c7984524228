"""InfoMEC: the paper's sanity cases, plug-in MI vs sklearn."""

from __future__ import annotations

import pytest
import torch

from inforeg.estimators import infomec, normalized_mutual_information_matrix

pytest.importorskip("sklearn")


def _sources(n: int = 600, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, (n, 3), generator=g)


def test_latents_equal_to_sources():
    s = _sources()
    res = infomec(s, s)
    assert res.infom > 0.97 and res.infoc > 0.97 and res.infoe > 0.99


def test_random_latents_have_no_explicitness():
    s = _sources()
    res = infomec(torch.randn(600, 3, generator=torch.Generator().manual_seed(1)), s)
    assert res.infoe < 0.05


def test_duplicated_latents_lower_compactness():
    s = _sources()
    assert infomec(torch.cat([s, s], 1), s).infoc < infomec(s, s).infoc - 0.3


def test_mixed_latents_lower_modularity():
    s = _sources()
    mixed = (s[:, :1] * 4 + s[:, 1:2]).repeat(1, 2)
    assert infomec(mixed, s).infom < infomec(s, s).infom - 0.3


def test_plugin_mi_matches_sklearn():
    from sklearn.metrics import mutual_info_score

    s = _sources()
    z = (s[:, :1] + torch.randint(0, 2, (600, 1), generator=torch.Generator().manual_seed(3))) % 4
    nmi = normalized_mutual_information_matrix(z, s, discrete_latents=True)
    p = torch.bincount(s[:, 0]).double() / 600
    h = -(p * p.log()).sum()
    ref = mutual_info_score(s[:, 0].numpy(), z[:, 0].numpy()) / float(h)
    assert abs(float(nmi[0, 0]) - ref) < 1e-12


def test_continuous_path_uses_ross_estimator():
    s = _sources(400)
    z = s.double() + 0.05 * torch.randn(400, 3, dtype=torch.float64)
    res = infomec(z, s)
    assert res.nmi.shape == (3, 3) and res.active.all()
    assert res.infom > 0.9 and res.infoc > 0.9


def test_bad_input():
    s = _sources(50)
    with pytest.raises(ValueError, match="factors"):
        infomec(s, s[:, :1])
    with pytest.raises(ValueError, match="factors"):
        infomec(s, s[:-1])
    with pytest.raises(TypeError, match="factors"):
        infomec(s, s.double())
