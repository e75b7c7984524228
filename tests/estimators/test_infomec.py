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


def _held_out_infoe_reference(z_fit, s_fit, z, s):
    """InfoE by hand with sklearn: probes fitted on (z_fit, s_fit), log-loss on (z, s)."""
    import warnings

    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    mean, std = z_fit.mean(0), z_fit.std(0)
    x_fit, x = (z_fit - mean) / std, (z - mean) / std
    scores = []
    for i in range(s.shape[1]):
        losses = []
        for a, b in ((x_fit, x), (np.zeros((len(x_fit), 1)), np.zeros((len(x), 1)))):
            m = LogisticRegression(C=np.inf, class_weight="balanced", solver="lbfgs", max_iter=100)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                m.fit(a, s_fit[:, i])
            losses.append(log_loss(s[:, i], m.predict_proba(b), labels=m.classes_))
        scores.append((losses[1] - losses[0]) / losses[1])
    return float(np.mean(scores))


def test_held_out_infoe_matches_sklearn_by_hand():
    g = torch.Generator().manual_seed(5)
    s = _sources(600)
    z = s.double() + 0.8 * torch.randn(600, 3, dtype=torch.float64, generator=g)
    got = infomec(z[300:], s[300:], infoe_fit=(z[:300], s[:300])).infoe
    ref = _held_out_infoe_reference(
        z[:300].numpy(), s[:300].numpy(), z[300:].numpy(), s[300:].numpy()
    )
    assert abs(got - ref) < 1e-9
    assert got < infomec(z[300:], s[300:]).infoe  # in-sample is optimistic


def test_infoe_fit_on_the_scored_data_is_the_default():
    s = _sources(300)
    z = (s + torch.randint(0, 2, (300, 3), generator=torch.Generator().manual_seed(2))) % 4
    assert infomec(z, s, infoe_fit=(z, s)).infoe == infomec(z, s).infoe


def test_held_out_infoe_one_hot_columns_cover_both_splits():
    # Code 3 appears only in the scored split: its column is never fitted, so those rows get the
    # balanced prior; the other rows are predicted perfectly by their codes.
    s = torch.tensor([[0, 0], [1, 1], [0, 1], [1, 0]]).repeat(20, 1)
    z = s.clone()
    z_scored = z[40:].clone()
    z_scored[:4, 0] = 3
    res = infomec(z_scored, s[40:], infoe_fit=(z[:40], s[:40]))
    assert 0.8 < res.infoe < 0.99


def test_infoe_fit_bad_input():
    s = _sources(80)
    with pytest.raises(TypeError, match="infoe_fit"):
        infomec(s, s, infoe_fit=s)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="infoe_fit"):
        infomec(s, s, infoe_fit=(s[:, :2], s))
    with pytest.raises(TypeError, match="infoe_fit"):
        infomec(s, s, infoe_fit=(s, s.double()))
    fit = s.clone()
    fit[:, 0] = fit[:, 0].clamp_max(2)  # value 3 of source 0 never seen by the fit split
    with pytest.raises(ValueError, match="infoe_fit"):
        infomec(s, s, infoe_fit=(fit, fit))


def test_bool_latents_are_discrete_codes():
    # Regression (issue 18): bool latents failed inside (torch's bool subtraction error).
    g = torch.Generator().manual_seed(2)
    s = torch.randint(0, 2, (200, 2), generator=g)
    z = torch.cat([s.bool(), torch.rand(200, 1, generator=g) > 0.5], 1)
    res = infomec(z, s)
    ref = infomec(z.long(), s)
    assert (res.infom, res.infoe, res.infoc) == (ref.infom, ref.infoe, ref.infoc)
    torch.testing.assert_close(res.nmi, ref.nmi)
    held = infomec(z[100:], s[100:], infoe_fit=(z[:100], s[:100]))
    assert held.infoe == infomec(z[100:].long(), s[100:], infoe_fit=(z[:100].long(), s[:100])).infoe
