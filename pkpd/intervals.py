"""Exact binomial confidence interval (Clopper-Pearson) for shares of patients."""

from __future__ import annotations

import numpy as np
from scipy.special import betaincinv

from .checks import PKPDInputError


def clopper_pearson(k, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) binomial interval for k successes out of n.

    Works elementwise and for non-integer k (an expected count), through the
    beta quantiles: lower = B^-1(a/2; k, n-k+1), upper = B^-1(1-a/2; k+1, n-k)
    (Clopper & Pearson, Biometrika 1934;26:404-413).
    """
    k = np.asarray(k, float)
    n = np.asarray(n, float)
    if np.any((k < 0) | (k > n)) or np.any(n < 1):
        raise PKPDInputError(f"clopper_pearson needs 0 <= k <= n and n >= 1; got k={k}, n={n}.")
    a = 1.0 - level
    with np.errstate(all="ignore"):
        lo = np.where(k > 0, betaincinv(k, n - k + 1, a / 2), 0.0)
        hi = np.where(k < n, betaincinv(k + 1, n - k, 1 - a / 2), 1.0)
    return lo, hi
