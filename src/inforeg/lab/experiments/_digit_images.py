"""scikit-learn's bundled 8x8 digits as images, and seeded stratified splits of them.

Shared by the image experiments of the ``nn`` family (CRReLU, weight compander, WaveBlock,
DLV-IRN). Pixels are scaled to [0, 1] (the raw data are integers 0..16); nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor


@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "this experiment needs scikit-learn: pip install 'inforeg[examples]'"
        ) from exc
    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype(np.float32), y.astype(np.int64)


def digit_images() -> tuple[Tensor, Tensor]:
    """All 1797 digits: images (N, 1, 8, 8) float32 in [0, 1] and labels (N,) int64."""
    x, y = _load()
    return torch.from_numpy(x.copy()).reshape(-1, 1, 8, 8), torch.from_numpy(y.copy())


def stratified_split(y: Tensor, sizes: Mapping[str, int], seed: int) -> dict[str, Tensor]:
    """Disjoint index sets of exactly the given sizes (in order), each stratified by label
    (scikit-learn's ``train_test_split``), drawn with ``seed``. Sizes may sum to less than
    ``len(y)``; the remainder is unused."""
    from sklearn.model_selection import train_test_split

    total = sum(sizes.values())
    if total > y.numel():
        raise ValueError(f"sizes: {total} samples requested, only {y.numel()} available")
    labels = y.numpy()
    remaining = np.arange(y.numel())
    out: dict[str, Tensor] = {}
    for k, (name, size) in enumerate(sizes.items()):
        if size == remaining.size:
            rng = np.random.default_rng(seed + 1000 * k)
            taken, remaining = rng.permutation(remaining), remaining[:0]
        else:
            taken, remaining = train_test_split(
                remaining,
                train_size=size,
                stratify=labels[remaining],
                random_state=seed + 1000 * k,
            )
        out[name] = torch.from_numpy(np.asarray(taken, dtype=np.int64))
    return out
