"""Embedded data sets: nothing is downloaded.

- :func:`load_digits_split`: scikit-learn's bundled 8x8 digits (1797 images, 10 classes) with a
  fixed stratified train/(validation/)test split, standardised with the training statistics.
- :func:`split_arrays`: the same stratified three-way split and standardisation for any arrays
  (protocol 2 selects every arm's hyper-parameters and stopping point on the validation split).
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
    """A train/test split (and a validation split when asked for) of features and integer labels
    (float32 / int64 tensors). Without a validation split, ``x_val``/``y_val`` are empty."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    x_val: Tensor = torch.empty(0)
    y_val: Tensor = torch.empty(0, dtype=torch.long)

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    @property
    def sizes(self) -> dict[str, int]:
        """Sizes of the splits, as protocol 2's ``splits`` field records them."""
        return {
            "train": int(self.y_train.shape[0]),
            "validation": int(self.y_val.shape[0]),
            "test": int(self.y_test.shape[0]),
        }

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


def split_arrays(
    x: np.ndarray,
    y: np.ndarray,
    test_size: float = 0.3,
    val_size: float = 0.0,
    split_seed: int = 0,
    stratify: bool = True,
    standardise: bool = True,
) -> Split:
    """Stratified train/validation/test split of ``(x, y)``, standardised with training statistics.

    ``test_size`` and ``val_size`` are fractions of the whole set (``val_size=0`` gives no
    validation split). Labels may be integer classes (``stratify=True``) or anything else
    (``stratify=False``; returned as float32 when not integral).
    """
    _require_sklearn()
    from sklearn.model_selection import train_test_split

    check_number(
        test_size, "test_size", low=0.0, high=1.0, low_inclusive=False, high_inclusive=False
    )
    check_number(val_size, "val_size", low=0.0, high=1.0, high_inclusive=False)
    if test_size + val_size >= 1.0:
        raise ValueError(f"test_size + val_size: expected < 1, got {test_size + val_size}")
    strat = y if stratify else None
    x_rest, x_te, y_rest, y_te = train_test_split(
        x, y, test_size=test_size, stratify=strat, random_state=split_seed
    )
    x_va, y_va = x_rest[:0], y_rest[:0]
    if val_size > 0:
        x_rest, x_va, y_rest, y_va = train_test_split(
            x_rest,
            y_rest,
            test_size=val_size / (1.0 - test_size),
            stratify=y_rest if stratify else None,
            random_state=split_seed,
        )
    if standardise:
        mean = x_rest.mean(axis=0)
        std = x_rest.std(axis=0)
        std[std == 0] = 1.0  # constant border pixels: leave them unscaled rather than blow them up
        x_rest, x_va, x_te = ((a - mean) / std for a in (x_rest, x_va, x_te))
    label_dtype = torch.long if np.issubdtype(np.asarray(y).dtype, np.integer) else torch.float32

    def xs(a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(a), dtype=torch.float32)

    def ys(a: np.ndarray) -> Tensor:
        return torch.as_tensor(np.asarray(a), dtype=label_dtype)

    return Split(xs(x_rest), ys(y_rest), xs(x_te), ys(y_te), xs(x_va), ys(y_va))


def load_digits_split(test_size: float = 0.3, split_seed: int = 0, val_size: float = 0.0) -> Split:
    """scikit-learn's digits with a fixed stratified split (``split_seed`` 0 by default).

    ``val_size > 0`` also carves a stratified validation split out of the training part (as a
    fraction of the whole set); the test split is the same whatever ``val_size`` is.
    """
    _require_sklearn()
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return split_arrays(x, y, test_size=test_size, val_size=val_size, split_seed=split_seed)


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


__all__ = [
    "Split",
    "gaussian_blobs",
    "load_digits_split",
    "split_arrays",
    "symmetric_label_noise",
]
