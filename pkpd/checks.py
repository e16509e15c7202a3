"""Input validation shared by every module.

Each check raises :class:`PKPDInputError` (a ``ValueError``) whose message names
the field, the offending value and how to fix it, so that bad input never turns
into a silent NaN further down.
"""

from __future__ import annotations

import dataclasses

import numbers

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

#: Largest virtual-trial run accepted, in patient-days: patients per trial x
#: replicates x (duration_days + 1).  A run keeps float32 daily platelets for
#: every patient and day, and its tables (ledger, NONMEM records) hold one row
#: per patient and visit: at peak about 12 bytes per patient-day plus 600 bytes
#: per patient-visit (measured: ~95 bytes per patient-day with weekly visits),
#: so this limit and MAX_PATIENT_VISITS keep one run under about 4 GB.  For
#: more replicates, run batches with different seeds and pool them.
MAX_PATIENT_DAYS = 40_000_000

#: Largest virtual-trial run accepted, in patient-visits: patients per trial x
#: replicates x visit days of any arm (day 0 included); see MAX_PATIENT_DAYS.
MAX_PATIENT_VISITS = 6_000_000

#: Most dose events one regimen may hold: a dose every 4.4 h for 20 years
#: (daily dosing for 20 years is 7,305).  A regimen keeps each dose as a Python
#: object and the PK and PK/PD simulators step through them one by one; at
#: 100,000 doses building the regimen takes about a second and simulating it
#: a quarter of a minute, ten times that at a million.  Use a longer dosing
#: interval or split the schedule into consecutive runs.
MAX_DOSE_EVENTS = 100_000

#: Most memory one simulation's (subject x report time) arrays may take,
#: bytes (1 GB), estimated from their size before anything is allocated.  A
#: PK/PD population run peaks at about 200 bytes per cell (true and observed
#: concentration and platelets in float64, the solver's work arrays and the
#: residual-error draws, measured with tracemalloc), so 1 GB is e.g. 10,000
#: subjects x 500 times; closed-form PK needs 8 bytes per cell.  Simulate fewer
#: subjects, coarser report times, or the population in parts.
MAX_RESULT_BYTES = 1e9


def _first_bad(values: np.ndarray, bad: np.ndarray) -> str:
    idx = np.flatnonzero(bad.ravel())[0]
    flat = values.ravel()
    where = f" (element {idx})" if values.size > 1 else ""
    value = flat[idx].item() if isinstance(flat[idx], np.generic) else flat[idx]
    return f"{value!r}{where}"


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


def real(name: str, value, unit: str = "") -> np.ndarray:
    """As :func:`finite`, but text, booleans and None are refused instead of
    converted (numpy reads "5" as 5.0, True as 1.0 and None as NaN)."""
    try:
        arr = np.asarray(value)
    except ValueError:  # ragged nesting
        arr = np.asarray(value, dtype=object)
    if arr.dtype.kind not in "iuf" or _holds_bool(value):  # numpy reads [1.5, True] as [1.5, 1.0]
        arr = np.asarray(value, dtype=object)
        odd = np.array([not _is_real(x) for x in arr.ravel()], dtype=bool).reshape(arr.shape)
        _require(arr, odd, name, "a number", unit, "Give a number, not text, True/False or None.")
    return finite(name, arr, unit)


def _is_real(x) -> bool:
    return isinstance(x, (numbers.Real, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _holds_bool(value) -> bool:
    if isinstance(value, (list, tuple)):
        return any(type(x) in (bool, np.bool_) or (type(x) in (list, tuple) and _holds_bool(x)) for x in value)
    return False


def plain(x):
    """``x`` as a message shows it: numpy scalars as Python numbers (7, not np.int64(7))."""
    return x.item() if isinstance(x, np.generic) else x


def at_most(name: str, value, limit: float, unit: str, fix: str) -> np.ndarray:
    """``value`` (finite floats) must not exceed a plausibility ``limit``."""
    arr = np.asarray(value, dtype=float)
    return _require(arr, arr > limit, name, f"<= {limit:g}", unit, fix)


def within_horizon(name: str, value) -> np.ndarray:
    """Times (h) no later than :data:`MAX_HORIZON_H`."""
    return at_most(name, value, MAX_HORIZON_H, "h",
                   "That is past the 20-year limit (pkpd.checks.MAX_HORIZON_H); times are in hours: "
                   "check the unit, or split a longer study into consecutive runs.")


def series_within_horizon(what: str, last: float) -> None:
    """A repeated dose series whose last dose falls at ``last`` h must end
    within :data:`MAX_HORIZON_H`; ``what`` says which series (checked before
    any dose is built)."""
    if last > MAX_HORIZON_H:
        raise PKPDInputError(
            f"{what} puts the last dose at {last:.6g} h, past the 20-year limit of {MAX_HORIZON_H:g} h "
            "(pkpd.checks.MAX_HORIZON_H). Times are in hours; check the unit, or split a longer study into "
            "consecutive runs."
        )


def dose_mg(name: str, value, negative_fix: str = "Use a value of zero or more.") -> np.ndarray:
    """Dose amounts: numbers, >= 0 and no more than :data:`MAX_DOSE_MG`."""
    arr = real(name, value, "mg")
    _require(arr, arr < 0, name, ">= 0", "mg", negative_fix)
    return at_most(name, arr, MAX_DOSE_MG, "mg",
                   "That is more than the 100 g limit (pkpd.checks.MAX_DOSE_MG); doses are in mg: check the unit.")


def dose_count(name: str, n: float) -> None:
    """A schedule may hold at most :data:`MAX_DOSE_EVENTS` doses; checked before any is built."""
    if not n <= MAX_DOSE_EVENTS:
        raise PKPDInputError(
            f"{name} would give {n:,.0f} doses, more than the {MAX_DOSE_EVENTS:,} a regimen may hold "
            "(pkpd.checks.MAX_DOSE_EVENTS). Use a longer dosing interval, or split the schedule into consecutive runs."
        )


def report_cells(name: str, n_subjects: int, n_times: int, bytes_per_cell: int = 200, what: str = "report times") -> None:
    """Subject x time arrays within :data:`MAX_RESULT_BYTES`; checked before any is allocated."""
    cells = float(n_subjects) * float(n_times)
    if cells * bytes_per_cell > MAX_RESULT_BYTES:
        raise PKPDInputError(
            f"{name}: {n_subjects:,} subjects x {n_times:,} {what} = {cells:.3g} cells would need about "
            f"{cells * bytes_per_cell / 1e9:.3g} GB, more than the {MAX_RESULT_BYTES / 1e9:g} GB allowed "
            "(pkpd.checks.MAX_RESULT_BYTES). Simulate fewer subjects or coarser report times, or the population in parts."
        )


#: Accepted range of the PK/PD model parameters: (low, high, unit, reason).
#: The platelet solver's stated accuracy (pkpd.pd) is validated against
#: scipy's solve_ivp across exactly these ranges; beyond them a value is
#: almost always a unit slip.  ka and the elimination rate CL/V are limited
#: to 100 /h (a half-life of 25 s); EC50, CL, V and PLT0 only need to be > 0.
PARAMETER_LIMITS = {
    "ka": (0.0, 100.0, "1/h", "above that the absorption half-life is under 25 s: ka is per hour"),
    "elimination rate cl/v": (0.0, 100.0, "1/h", "above that the elimination half-life is under 25 s: CL is in L/h and V in L"),
    "emax": (0.0, 100.0, "fold", "TPO-receptor agonists reach about 10-fold (romiplostim 9-11)"),
    "hill": (0.25, 5.0, "", "PD Hill coefficients lie between about 0.5 and 3"),
    "n_transit": (1, 20, "", "maturation models use 3-6 transit compartments"),
    "mtt": (1.0, np.inf, "h", "megakaryocyte maturation takes days; mtt is in hours"),
    "lifespan": (1.0, np.inf, "h", "platelets live days; lifespan is in hours"),
    "gamma": (0.0, 1.0, "", "published feedback exponents are 0.1-0.6 (Friberg 2002)"),
}


def parameter_in_range(name: str, value, limits=None, where: str = "pkpd.checks.PARAMETER_LIMITS") -> np.ndarray:
    """A model parameter inside its limits (finite, checked elementwise): those
    of ``limits`` (a model's own, named by ``where``) or of :data:`PARAMETER_LIMITS`."""
    if limits and name in limits:
        low, high, unit, why = limits[name]
    else:
        (low, high, unit, why), where = PARAMETER_LIMITS[name], "pkpd.checks.PARAMETER_LIMITS"
    arr = np.asarray(value, dtype=float)
    bad = (arr < low) | (arr > high)
    if bad.any():
        raise PKPDInputError(
            f"{name} must lie in [{low:g}, {high:g}]{_unit(unit)}, the range pkpd's platelet solver is validated on; "
            f"got {_first_bad(arr, bad)}. {why[0].upper() + why[1:]}; see {where}."
        )
    return arr


def whole(name: str, value, low: int = 1, high: int | None = None, alternative: str = "") -> int:
    """``value`` as an int: a whole number in [low, high] (3.0 is accepted;
    True, 2.5, NaN and text are not), else PKPDInputError naming ``name``."""
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    if not (number and np.isfinite(value) and float(value).is_integer()
            and value >= low and (high is None or value <= high)):
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        extra = f" ({alternative})" if alternative else ""
        raise PKPDInputError(f"{name} must be a whole number {bound}{extra}; got {value!r}.")
    return int(value)


def _unit(unit: str) -> str:
    return f" (in {unit})" if unit else ""


def with_fields(obj, changes: dict):
    """A copy of the frozen dataclass ``obj`` with ``changes`` applied (its
    ``__post_init__`` validates again); an unknown field name is refused with
    the fields listed.  Every specification's ``with_`` is this."""
    names = [f.name for f in dataclasses.fields(obj)]
    unknown = set(changes) - set(names)
    if unknown:
        raise PKPDInputError(f"{type(obj).__name__} has no field(s) {sorted(unknown)}; fields: {names}.")
    return dataclasses.replace(obj, **changes)

