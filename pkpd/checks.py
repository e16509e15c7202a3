"""Input validation shared by every module.

Each check raises :class:`PKPDInputError` (a ``ValueError``) whose message names
the field, the offending value and how to fix it, so that bad input never turns
into a silent NaN further down.
"""

from __future__ import annotations

import numpy as np


class PKPDInputError(ValueError):
    """Bad user input: the message names the field, the value and the fix."""


# Plausibility limits.  Inputs beyond them are refused, not computed: past them
# a run would hang or overflow, and a value that large is almost always a unit
# slip (minutes or days given as hours, micrograms as milligrams).

#: Longest dosing or simulation horizon accepted: 20 years, in hours.  Split a
#: longer study into consecutive runs.
MAX_HORIZON_H = 20 * 365.25 * 24.0

#: Largest single dose accepted, mg (100 g).
MAX_DOSE_MG = 1e5


def _first_bad(values: np.ndarray, bad: np.ndarray) -> str:
    idx = np.flatnonzero(bad.ravel())[0]
    flat = values.ravel()
    where = f" (element {idx})" if values.size > 1 else ""
    return f"{flat[idx].item()!r}{where}"


def _require(arr: np.ndarray, bad: np.ndarray, name: str, rule: str, unit: str, fix: str) -> np.ndarray:
    if bad.any():
        raise PKPDInputError(f"{name} must be {rule}{_unit(unit)}; got {_first_bad(arr, bad)}. {fix}")
    return arr


def finite(name: str, value, unit: str = "") -> np.ndarray:
    """Return ``value`` as a float array, rejecting NaN and infinity."""
    arr = np.asarray(value, dtype=float)
    return _require(arr, ~np.isfinite(arr), name, "a finite number", unit,
                    "Replace missing or infinite values before calling.")


def positive(name: str, value, unit: str = "") -> np.ndarray:
    """Finite and strictly positive (rate constants, volumes, clearances)."""
    arr = finite(name, value, unit)
    return _require(arr, arr <= 0, name, "> 0", unit, "Use a strictly positive value.")


def nonnegative(name: str, value, unit: str = "") -> np.ndarray:
    """Finite and >= 0 (doses, times, Emax, gamma)."""
    arr = finite(name, value, unit)
    return _require(arr, arr < 0, name, ">= 0", unit, "Use a value of zero or more.")


def sorted_times(name: str, value, unit: str = "h") -> np.ndarray:
    """Finite, >= 0 and non-decreasing times."""
    arr = nonnegative(name, value, unit)
    if arr.ndim != 1:
        raise PKPDInputError(f"{name} must be a 1-D sequence of times in {unit}; got shape {arr.shape}.")
    steps = np.diff(arr)
    if (steps < 0).any():
        i = int(np.flatnonzero(steps < 0)[0])
        raise PKPDInputError(
            f"{name} must be sorted in increasing order; element {i + 1} ({arr[i + 1].item()!r} {unit}) "
            f"comes after {arr[i].item()!r} {unit}. Sort the times first (e.g. np.sort)."
        )
    return arr


def _unit(unit: str) -> str:
    return f" (in {unit})" if unit else ""
