r"""Mutual-information variable screening (sure-independence screening with a KSG statistic).

Standard SIS (Fan & Lv, JRSS-B 2008) with the marginal correlation replaced by a k-NN estimate of
:math:`I(X_j; Y)`, as specified for the 2025 thesis "Contributions to Robust and Efficient Methods
for Analysis of High Dimensional Data" (not located; standard definitions). Unlike Pearson
screening it detects non-monotone (e.g. quadratic) dependence.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from inforeg.core.checks import check_int, check_tensor
from inforeg.estimators.knn import ksg_mutual_information_per_feature

__all__ = ["mutual_information_screening"]


def mutual_information_screening(
    x: Tensor, y: Tensor, top_k: int | None = None, k: int = 3
) -> tuple[Tensor, Tensor]:
    r"""Keep the ``top_k`` features with the largest estimated :math:`I(X_j; Y)`.

    .. math::

        \hat{\mathcal M} = \{ j : \hat I(X_j; Y) \text{ is among the } d \text{ largest} \},
        \qquad d = \lfloor n / \log n \rfloor \text{ by default (Fan \& Lv)}

    Args:
        x: (n, p) features. y: (n,) continuous target.
        top_k: number of features kept (default ``floor(n / log n)``, at most p).
        k: KSG neighbour order.

    Returns:
        ``(indices, scores)``: the kept feature indices sorted by decreasing score, shape
        (top_k,), and the MI estimates of all features in nats, shape (p,).

    Example (y depends on feature 1 only, and not monotonically; the scores agree with
    ``sklearn.feature_selection.mutual_info_regression``, which clips them at 0):

        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.randn(200, 3, generator=g, dtype=torch.float64)
        >>> y = x[:, 1] ** 2 + 0.1 * torch.randn(200, generator=g, dtype=torch.float64)
        >>> idx, scores = mutual_information_screening(x, y, top_k=1)
        >>> idx.tolist()
        [1]
        >>> [round(v, 2) for v in scores.tolist()]
        [-0.02, 1.65, 0.06]
    """
    check_tensor(x, "x", ndim=2, floating=True, nonempty=True)
    scores = ksg_mutual_information_per_feature(x, y, k=k)  # checks y and k < n first
    n, p = x.shape
    if top_k is None:
        top_k = min(p, max(1, int(n / math.log(n))))
    check_int(top_k, "top_k", low=1, high=p)
    idx = torch.topk(scores, top_k).indices
    return idx, scores
