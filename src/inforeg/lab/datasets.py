"""Embedded data sets: nothing is downloaded.

- :func:`load_digits_split`: scikit-learn's bundled 8x8 digits (1797 images, 10 classes) with a
  fixed stratified train/test split, standardised with the training statistics.
- :func:`gaussian_blobs`: isotropic Gaussian clusters.
- :func:`symmetric_label_noise`: flip a fraction of labels uniformly to *another* class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from inforeg.core.checks import check_int, check_number, check_probability


@dataclass(frozen=True)
class Split:
    """A train/test split of features and integer labels (float32 / int64 tensors)."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def num_features(self) -> int:
        return int(self.x_train.shape[1])


def _require_sklearn():  # type: ignore[no-untyped-def]
    try:
        import sklearn  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "this data set needs scikit-learn: pip install 'inforeg[examples]'"
        ) from exc


def load_digits_split(test_size: float = 0.3, split_seed: int = 0) -> Split:
    """scikit-learn's digits with a fixed stratified split (``split_seed`` 0 by default)."""
    _require_sklearn()
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    check_number(
        test_size, "test_size", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    x, y = load_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=split_seed
    )
    mean = x_tr.mean(axis=0)
    std = x_tr.std(axis=0)
    std[std == 0] = 1.0  # constant border pixels: leave them unscaled rather than blow them up
    x_tr = (x_tr - mean) / std
    x_te = (x_te - mean) / std
    return Split(
        torch.as_tensor(x_tr, dtype=torch.float32),
        torch.as_tensor(y_tr, dtype=torch.long),
        torch.as_tensor(x_te, dtype=torch.float32),
        torch.as_tensor(y_te, dtype=torch.long),
    )


def gaussian_blobs(
    n: int,
    num_classes: int = 3,
    dim: int = 2,
    spread: float = 1.0,
    separation: float = 5.0,
    seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """``n`` points from ``num_classes`` isotropic Gaussians whose centres lie ``separation`` apart
    on average; returns ``(x, y)`` as float32 / int64 tensors."""
    check_int(n, "n", low=1)
    check_int(num_classes, "num_classes", low=1)
    check_int(dim, "dim", low=1)
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(num_classes, dim, generator=g) * separation / np.sqrt(2.0)
    y = torch.randint(0, num_classes, (n,), generator=g)
    x = centres[y] + spread * torch.randn(n, dim, generator=g)
    return x, y


def symmetric_label_noise(y: Tensor, rate: float, num_classes: int, seed: int = 0) -> Tensor:
    """Replace a ``rate`` fraction of labels (chosen at random) by a different class, uniformly."""
    check_probability(rate, "rate")
    check_int(num_classes, "num_classes", low=2)
    g = torch.Generator().manual_seed(seed)
    flip = torch.rand(y.shape[0], generator=g) < rate
    offset = torch.randint(1, num_classes, (y.shape[0],), generator=g)
    noisy = torch.where(flip, (y + offset) % num_classes, y)
    return noisy


__all__ = ["Split", "gaussian_blobs", "load_digits_split", "symmetric_label_noise"]
