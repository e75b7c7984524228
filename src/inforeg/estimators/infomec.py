r"""InfoMEC: modularity, explicitness and compactness of latents w.r.t. discrete sources.

Hsu, Dorrell, Whittington, Wu & Finn, "Disentanglement via Latent Quantization", NeurIPS 2023
(arXiv 2305.18378), ``disentangle/metrics/infomec.py`` of ``kylehkhsu/latent_quantization``.
Mutual information in nats, normalised by the source entropy.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from inforeg.core.checks import check_int, check_same_length, check_tensor
from inforeg.estimators._common import plugin_entropy

__all__ = ["InfoMEC", "infomec", "normalized_mutual_information_matrix"]


class InfoMEC(NamedTuple):
    """InfoM, InfoE, InfoC (floats in [0, 1] up to estimation noise), the (n_s, n_z) NMI
    matrix and the boolean mask of active latents."""

    infom: float
    infoe: float
    infoc: float
    nmi: Tensor
    active: Tensor


def _mi_discrete(a: Tensor, b: Tensor) -> Tensor:
    # Plug-in I(a; b) in nats (sklearn.metrics.mutual_info_score).
    _, ia = torch.unique(a, return_inverse=True)
    _, ib = torch.unique(b, return_inverse=True)
    na, nb = int(ia.max()) + 1, int(ib.max()) + 1
    joint = torch.zeros(na * nb, dtype=torch.float64)
    joint.index_add_(0, ia * nb + ib, torch.ones(a.numel(), dtype=torch.float64))
    pxy = joint.view(na, nb) / a.numel()
    px, py = pxy.sum(1, keepdim=True), pxy.sum(0, keepdim=True)
    return torch.special.xlogy(pxy, pxy / (px * py).clamp_min(1e-300)).sum().clamp_min(0.0)


def normalized_mutual_information_matrix(
    latents: Tensor, factors: Tensor, discrete_latents: bool, n_neighbors: int = 10
) -> Tensor:
    r""":math:`\mathrm{NMI}_{ij} = I(s_i; z_j) / H(s_i)` (nats / nats), shape (n_s, n_z).

    Discrete latents: plug-in MI. Continuous latents: standardised z_j and the Ross (2014) k-NN
    estimator with ``n_neighbors`` = 10, clipped at 0, as ``mutual_info_classif`` (without its
    random jitter, so the result is deterministic).

    Example (latents equal to two independent binary sources: NMI is the identity):

        >>> s = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]]).repeat(2, 1)
        >>> nmi = normalized_mutual_information_matrix(s, s, discrete_latents=True)
        >>> [[round(v, 4) for v in row] for row in nmi.tolist()]
        [[1.0, 0.0], [0.0, 1.0]]
    """
    from inforeg.estimators.knn import ksg_mutual_information_classif

    check_tensor(latents, "latents", ndim=2)
    check_tensor(factors, "factors", ndim=2)
    check_int(n_neighbors, "n_neighbors", low=1)
    check_same_length(latents, factors, "latents", "factors")
    n_s, n_z = factors.shape[1], latents.shape[1]
    out = torch.zeros(n_s, n_z, dtype=torch.float64)
    for i in range(n_s):
        s = factors[:, i]
        h = plugin_entropy(s)
        for j in range(n_z):
            z = latents[:, j]
            if discrete_latents:
                mi = _mi_discrete(s, z)
            else:
                zz = z.double()
                std = zz.std(unbiased=False)
                if float(std) == 0.0:
                    continue
                zz = (zz - zz.mean()) / std
                mi = ksg_mutual_information_classif(zz, s.long(), k=n_neighbors, jitter=1e-10)
                mi = mi.clamp_min(0.0)
            out[i, j] = mi / h if float(h) > 0 else 0.0
    return out


def _bool_as_codes(latents: Tensor) -> Tensor:
    """Bool latents as 0/1 integer codes (their range and one-hot columns need arithmetic)."""
    return latents.long() if latents.dtype == torch.bool else latents


def _features(
    z: np.ndarray, z_fit: np.ndarray, discrete_latents: bool
) -> tuple[np.ndarray, np.ndarray]:
    # The same map for the scored data and the fit data: one-hot columns over the values seen
    # in either, or standardisation by the fit data's moments.
    if discrete_latents:
        cols, cols_fit = [], []
        for j in range(z.shape[1]):
            values = np.union1d(z[:, j], z_fit[:, j])
            eye = np.eye(values.size)
            cols.append(eye[np.searchsorted(values, z[:, j])])
            cols_fit.append(eye[np.searchsorted(values, z_fit[:, j])])
        return np.concatenate(cols, axis=1), np.concatenate(cols_fit, axis=1)
    mean, std = z_fit.mean(0), z_fit.std(0)
    std = np.where(std > 0, std, 1.0)
    return (z - mean) / std, (z_fit - mean) / std


def _info_e(
    latents: Tensor,
    factors: Tensor,
    discrete_latents: bool,
    fit: tuple[Tensor, Tensor] | None = None,
) -> float:
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import log_loss
    except ImportError as exc:  # pragma: no cover
        raise ImportError("infomec needs scikit-learn: pip install 'inforeg[ref]'") from exc

    z = latents.detach().cpu().double().numpy()
    s_all = factors.detach().cpu().numpy()
    z_fit, s_fit = z, s_all
    if fit is not None:
        z_fit, s_fit = fit[0].detach().cpu().double().numpy(), fit[1].detach().cpu().numpy()
    feats, feats_fit = _features(z, z_fit, discrete_latents)
    scores = []
    for i in range(factors.shape[1]):
        s, sf = s_all[:, i], s_fit[:, i]
        if np.unique(sf).size < 2:
            continue
        if not np.isin(s, sf).all():
            raise ValueError(
                f"infoe_fit: source {i} takes values in factors that the fit split lacks"
            )

        def scored_loss(
            x_fit: np.ndarray, x: np.ndarray, s: np.ndarray = s, sf: np.ndarray = sf
        ) -> float:
            # C = inf: no penalty (sklearn >= 1.8 spelling of penalty=None).
            model = LogisticRegression(
                C=np.inf, class_weight="balanced", solver="lbfgs", max_iter=100
            )
            with warnings.catch_warnings():  # lbfgs may stop at max_iter = 100, as in the paper
                warnings.simplefilter("ignore")
                model.fit(x_fit, sf)
            return float(log_loss(s, model.predict_proba(x), labels=model.classes_))

        h_pred = scored_loss(feats_fit, feats)
        h_null = scored_loss(np.zeros((feats_fit.shape[0], 1)), np.zeros((feats.shape[0], 1)))
        scores.append((h_null - h_pred) / h_null)
    return float(np.mean(scores)) if scores else 0.0


def infomec(
    latents: Tensor,
    factors: Tensor,
    discrete_latents: bool | None = None,
    n_neighbors: int = 10,
    infoe_fit: tuple[Tensor, Tensor] | None = None,
) -> InfoMEC:
    r"""InfoM, InfoE and InfoC of ``latents`` (n, n_z) with respect to discrete ``factors`` (n, n_s).

    .. math::

        \mathrm{InfoM} = \frac{\frac{1}{n_a}\sum_{j\,\text{active}}
            \frac{\max_i \mathrm{NMI}_{ij}}{\sum_i \mathrm{NMI}_{ij}} - \frac1{n_s}}{1 - \frac1{n_s}},
        \qquad
        \mathrm{InfoC} = \frac{\frac{1}{n_s}\sum_i
            \frac{\max_j \mathrm{NMI}_{ij}}{\sum_j \mathrm{NMI}_{ij}} - \frac1{n_a}}{1 - \frac1{n_a}},
        \qquad
        \mathrm{InfoE} = \frac1{n_s}\sum_i \frac{H_{\text{null}} - H_{\text{pred}}}{H_{\text{null}}}

    with NMI from :func:`normalized_mutual_information_matrix`; active latents have range > 0
    (discrete) or > max range / 20 (continuous); H = log-loss of an unpenalised multinomial
    logistic regression (``class_weight='balanced'``, lbfgs, 100 iterations; fitted and scored on
    the same data, as the authors, unless ``infoe_fit`` gives a separate fit split) from one-hot (discrete) or standardised (continuous) latents; the null model
    sees all-zero inputs; InfoE uses every latent (active or not), as the authors. Conventions where the paper's formulas divide by zero: a latent with
    zero NMI to every source, or a source with zero NMI to every active latent, contributes
    ``1/n`` (no preference); InfoC is 0 with a single active latent. Needs scikit-learn (InfoE).

    Args:
        latents: (n, n_z), float (continuous) or integer or bool (discrete) codes; bool
            latents are read as 0/1 codes.
        factors: (n, n_s) integer ground-truth sources (n_s >= 2).
        discrete_latents: default: True for integer and bool latents.
        n_neighbors: k of the continuous MI estimator (10, as the paper).
        infoe_fit: optional ``(latents, factors)`` of another split to fit InfoE's regressions
            on; they are then scored on ``latents``/``factors`` (a held-out score: in-sample,
            an unpenalised regression on many one-hot features separates a small set and InfoE
            nears 1 whatever the codes). One-hot columns cover the values of both splits;
            continuous latents are standardised by the fit split's moments.

    Example (the in-sample artefact: a code that is unique per row carries no information
    about the sources, yet the unpenalised one-hot regression fitted on the scored rows
    memorises them; fitted on other rows, whose codes it never saw, it predicts the balanced
    prior and InfoE is 0):

        >>> s = torch.tensor([[0, 0], [1, 1], [0, 1], [1, 0]]).repeat(10, 1)
        >>> z = torch.arange(40).unsqueeze(1)
        >>> in_sample = infomec(z, s).infoe
        >>> held_out = infomec(z[20:], s[20:], infoe_fit=(z[:20], s[:20])).infoe
        >>> round(in_sample, 2), abs(round(held_out, 6))
        (1.0, 0.0)
    """
    check_tensor(latents, "latents", ndim=2, nonempty=True)
    check_tensor(factors, "factors", ndim=2, integer=True)
    check_same_length(latents, factors, "latents", "factors")
    if infoe_fit is not None:
        if not isinstance(infoe_fit, tuple) or len(infoe_fit) != 2:
            raise TypeError("infoe_fit: expected a (latents, factors) tuple of tensors")
        check_tensor(infoe_fit[0], "infoe_fit[0]", ndim=2, nonempty=True)
        check_tensor(infoe_fit[1], "infoe_fit[1]", ndim=2, integer=True)
        check_same_length(infoe_fit[0], infoe_fit[1], "infoe_fit[0]", "infoe_fit[1]")
        if infoe_fit[0].shape[1] != latents.shape[1] or infoe_fit[1].shape[1] != factors.shape[1]:
            raise ValueError(
                "infoe_fit: the fit split needs as many latents and sources as latents/factors, "
                f"got {tuple(infoe_fit[0].shape)} and {tuple(infoe_fit[1].shape)}"
            )
        infoe_fit = (_bool_as_codes(infoe_fit[0]), infoe_fit[1])
    latents = _bool_as_codes(latents)
    n_s = factors.shape[1]
    if n_s < 2:
        raise ValueError(f"factors: InfoM needs at least 2 sources, got {n_s}")
    if discrete_latents is None:
        discrete_latents = not latents.is_floating_point()
    lat = latents.detach().cpu()
    fac = factors.detach().cpu()
    rng = (lat.max(0).values - lat.min(0).values).double()
    active = rng > 0 if discrete_latents else rng > rng.max() / 20
    nmi = normalized_mutual_information_matrix(lat, fac, discrete_latents, n_neighbors)
    sub = nmi[:, active]
    n_a = int(active.sum())
    if n_a == 0:
        return InfoMEC(0.0, 0.0, 0.0, nmi, active)
    col = sub.sum(0)
    ratio_m = torch.where(col > 0, sub.max(0).values / col.clamp_min(1e-300), 1.0 / n_s)
    info_m = float((ratio_m.mean() - 1.0 / n_s) / (1.0 - 1.0 / n_s))
    if n_a == 1:
        info_c = 0.0
    else:
        row = sub.sum(1)
        ratio_c = torch.where(row > 0, sub.max(1).values / row.clamp_min(1e-300), 1.0 / n_a)
        info_c = float((ratio_c.mean() - 1.0 / n_a) / (1.0 - 1.0 / n_a))
    info_e = _info_e(lat, fac, discrete_latents, infoe_fit)  # all latents, as the authors
    return InfoMEC(info_m, info_e, info_c, nmi, active)
