"""inforeg.robust: certified robustness by randomised smoothing (see DESIGN.md).

- :class:`RandomizedSmoothing`: Gaussian smoothing of one classifier (Cohen et al. 2019).
- :class:`DualRandomizedSmoothing`: two half-image smoothed classifiers (Xia et al., ICLR 2024),
  with :func:`dual_smoothing_masks` and :func:`dual_subimage`.
- :func:`clopper_pearson_lower`, :func:`certified_radius`, :func:`dual_certified_radius`,
  :func:`binomial_test_half`: the certification statistics (pure Python, no SciPy).

>>> import inforeg.robust as rob
>>> round(rob.certified_radius(0.9, sigma=0.25), 5)  # Cohen et al.: sigma * Phi^-1(0.9)
0.32039
"""

from inforeg.robust.certification import (
    binomial_test_half,
    certified_radius,
    clopper_pearson_lower,
    dual_certified_radius,
)
from inforeg.robust.smoothing import (
    DualRandomizedSmoothing,
    RandomizedSmoothing,
    dual_smoothing_masks,
    dual_subimage,
)

__all__ = [
    "DualRandomizedSmoothing",
    "RandomizedSmoothing",
    "binomial_test_half",
    "certified_radius",
    "clopper_pearson_lower",
    "dual_certified_radius",
    "dual_smoothing_masks",
    "dual_subimage",
]
