"""Dosing regimens: what is given, when.  Doses in mg, times in hours.

A :class:`Regimen` is an immutable, sorted list of :class:`Dose` events.  It is
built in one line for the usual cases, combined with ``+``, and round-trips to
NONMEM-style records (ID, TIME, AMT, EVID, MDV, CMT, II, ADDL, SS, DV), the
layout every pharmacometric tool reads.

>>> Regimen.daily(5, days=3)
Regimen: 5 mg every 24 h x3 from 0 h
>>> Regimen.steps([(0, 2.5), (48, 5)], until_h=96)
Regimen: 2.5 mg every 24 h x2 from 0 h; 5 mg every 24 h x2 from 48 h

Every constructor refuses what cannot be a schedule (negative, missing or
infinite numbers, text or True/False where a number belongs, a schedule that
ends before it starts) and what is implausible: doses above
:data:`pkpd.checks.MAX_DOSE_MG`, times past :data:`pkpd.checks.MAX_HORIZON_H`
(20 years) and more than :data:`pkpd.checks.MAX_DOSE_EVENTS` doses, all
checked before any dose is built.
"""

from __future__ import annotations

import itertools
import math
import numbers
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd

from . import checks
from .checks import (
    PKPDInputError, dose_count, dose_mg, nonnegative, plain, positive, real, series_within_horizon,
    sorted_times, within_horizon,
)

#: Columns of a NONMEM-style event record, in the order they are written.
RECORD_COLUMNS = ["ID", "TIME", "AMT", "EVID", "MDV", "CMT", "II", "ADDL", "SS", "DV"]

#: NONMEM compartment numbers of pkpd's records: doses into the depot (gut) of
#: the oral models, concentrations observed in the central compartment,
#: platelet counts (the PD response) in a compartment of their own.
DEPOT_CMT, CONC_CMT, PLATELET_CMT = 1, 2, 3


class Dose(NamedTuple):
    """One dose event.

    time : h.  amount : mg.
    ss : NONMEM SS flag. 0 none; 1 the system is at steady state of ``amount``
        every ``ii`` hours when this dose is given (earlier doses are discarded);
        2 as 1 but added to what earlier doses left (superposition).
    ii : h, the interdose interval that ``ss`` refers to (0 when ss == 0).
    reset : True for NONMEM EVID 4: the system is emptied before this dose.
    """

    time: float
    amount: float
    ss: int = 0
    ii: float = 0.0
    reset: bool = False


@dataclass(frozen=True)
class Regimen:
    """A sorted, immutable sequence of oral doses (mg at hours)."""

    doses: tuple[Dose, ...] = ()

    def __post_init__(self):
        raw = self.doses
        if isinstance(raw, (str, bytes, Dose)) or not hasattr(raw, "__iter__"):
            raise PKPDInputError(
                f"Regimen doses must be a sequence of Dose(time_h, amount_mg, ...); got {raw!r}. "
                "Build one with Regimen.single, daily, repeated, steps or from_doses."
            )
        # One past the limit is enough to refuse, even from an endless generator.
        raw = raw if hasattr(raw, "__len__") else tuple(itertools.islice(raw, checks.MAX_DOSE_EVENTS + 1))
        dose_count("Regimen", len(raw))
        given = [d if type(d) is Dose else _as_dose(i, d) for i, d in enumerate(raw)]
        if not given:
            object.__setattr__(self, "doses", ())
            return
        # Checked column by column: an error names the first bad dose by its element index.
        time_col, amount_col, ss_col, ii_col, reset_col = zip(*given)
        times = within_horizon("dose time", nonnegative("dose time", real("dose time", time_col, "h"), "h"))
        amounts = dose_mg("dose amount", amount_col)
        i = _first_outside(ss_col, (0, 1, 2), bools=False)
        if i is not None:
            raise PKPDInputError(
                f"SS must be 0, 1 or 2; got {plain(ss_col[i])!r} (dose {i} at {times[i]:g} h). Use 0 for no steady state."
            )
        i = _first_outside(reset_col, (0, 1), bools=True)
        if i is not None:
            raise PKPDInputError(
                f"reset must be True or False; got {plain(reset_col[i])!r} (dose {i} at {times[i]:g} h). "
                "True empties the system before this dose (NONMEM EVID 4)."
            )
        ss = np.array(ss_col, dtype=int)
        ii = within_horizon("II", nonnegative("II", real("II", ii_col, "h"), "h"))
        no_ii = (ss > 0) & ~(ii > 0)
        if no_ii.any():
            i = int(np.flatnonzero(no_ii)[0])
            raise PKPDInputError(
                f"a steady-state dose (SS={ss[i]}) at {times[i]:g} h needs II > 0; got II={plain(ii_col[i])!r}. "
                "Give the dosing interval in hours."
            )
        # ii only means something for a steady-state dose (it is 0 in NONMEM records otherwise).
        ii = np.where(ss > 0, ii, 0.0)
        reset = np.array(reset_col, dtype=bool)
        # Stable sort keeps the given order of simultaneous doses.
        order = np.argsort(times, kind="stable")
        columns = (times[order].tolist(), amounts[order].tolist(), ss[order].tolist(), ii[order].tolist(), reset[order].tolist())
        object.__setattr__(self, "doses", tuple(map(Dose._make, zip(*columns))))

    # ----------------------------------------------------------- construction
    @classmethod
    def single(cls, dose_mg: float, at_h: float = 0.0) -> "Regimen":
        """One dose of ``dose_mg`` mg at ``at_h`` hours."""
        return cls((Dose(_time("Regimen.single: at_h", at_h), _dose("Regimen.single: dose_mg", dose_mg)),))

    @classmethod
    def repeated(
        cls, dose_mg: float, interval_h: float, n: int, start_h: float = 0.0, steady_state: bool = False
    ) -> "Regimen":
        """``n`` doses of ``dose_mg`` mg every ``interval_h`` hours from ``start_h``.

        ``steady_state=True`` makes the first dose a NONMEM SS=1 dose: the system
        is already at steady state of this regimen when it starts.
        """
        return cls._repeated("Regimen.repeated", dose_mg, interval_h, n, start_h, steady_state, "n")

    @classmethod
    def daily(cls, dose_mg: float, days: int, start_h: float = 0.0, steady_state: bool = False) -> "Regimen":
        """Once-daily dosing: ``dose_mg`` mg every 24 h for ``days`` days."""
        return cls._repeated("Regimen.daily", dose_mg, 24.0, days, start_h, steady_state, "days")

    @classmethod
    def _repeated(cls, where, dose_mg, interval_h, n, start_h, steady_state, n_name) -> "Regimen":
        dose = _dose(f"{where}: dose_mg", dose_mg)
        interval = float(positive(f"{where}: interval_h", real(f"{where}: interval_h", interval_h, "h"), "h"))
        start = _time(f"{where}: start_h", start_h)
        if not _is_whole(n) or n < 1:
            what = "number of days" if n_name == "days" else "number of doses"
            raise PKPDInputError(f"{where}: {n_name} ({what}) must be a whole number >= 1; got {plain(n)!r}.")
        if not isinstance(steady_state, (bool, np.bool_)):
            raise PKPDInputError(f"{where}: steady_state must be True or False; got {plain(steady_state)!r}.")
        # Both limits are checked before a single dose is built.
        count = float(n) if n < 1e300 else math.inf
        last = start + interval * (count - 1)
        series_within_horizon(f"{where}: {n_name}={plain(n)!r} every {interval:g} h from {start:g} h", last)
        dose_count(f"{where}: {n_name}={plain(n)!r}", count)
        times = start + interval * np.arange(int(n))
        doses = [Dose(t, dose) for t in times]
        if steady_state:
            doses[0] = Dose(times[0], dose, 1, interval)
        return cls(tuple(doses))

    @classmethod
    def steps(
        cls, levels: Iterable[tuple[float, float]], until_h: float, interval_h: float = 24.0
    ) -> "Regimen":
        """Dose changes at given times: ``levels`` is ``[(time_h, dose_mg), ...]``.

        Each level is given every ``interval_h`` hours from its time until the next
        level starts (or ``until_h``).  A level of 0 mg is an interruption.  The
        pairs may come in any order, but each time only once, and ``until_h``
        must come after the last of them.
        """
        where = "Regimen.steps"
        if isinstance(levels, (str, bytes)) or not hasattr(levels, "__iter__"):
            raise PKPDInputError(f"{where}: levels must be a list of (time_h, dose_mg) pairs; got {levels!r}.")
        # Counted before any is checked: each step is at least one dose or an interruption.
        given = list(itertools.islice(levels, checks.MAX_DOSE_EVENTS + 1))
        dose_count(f"{where}: levels", len(given))
        pairs = []
        for i, pair in enumerate(given):
            if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
                raise PKPDInputError(f"{where}: step {i} must be a (time_h, dose_mg) pair; got {plain(pair)!r}.")
            t = _time(f"{where}: step {i} time", pair[0])
            a = _dose(f"{where}: step {i} level", pair[1], "Use 0 mg for an interruption.")
            pairs.append((t, a, i))
        if not pairs:
            raise PKPDInputError(f"{where}: levels is empty; give at least one (time_h, dose_mg) pair.")
        interval = float(positive(f"{where}: interval_h", real(f"{where}: interval_h", interval_h, "h"), "h"))
        until = _time(f"{where}: until_h", until_h)
        pairs.sort()
        for (t0, _, i0), (t1, _, i1) in zip(pairs, pairs[1:]):
            if t1 == t0:
                raise PKPDInputError(
                    f"{where}: steps {min(i0, i1)} and {max(i0, i1)} both start at {t0:g} h; "
                    "give each time once, with the dose that applies from then on."
                )
        t_last, _, i_last = pairs[-1]
        if until <= t_last:
            raise PKPDInputError(
                f"{where}: until_h ({until:g} h) must be after every step's time; step {i_last} starts at "
                f"{t_last:g} h. Set until_h to the end of dosing."
            )
        ends = [t for t, _, _ in pairs[1:]] + [until]
        # Count before building: n doses in [start, end) every interval.
        counts = [np.ceil((end - start) / interval - 1e-9) if a > 0 else 0.0 for (start, a, _), end in zip(pairs, ends)]
        dose_count(f"{where}: interval_h={interval:g} h up to until_h={until:g} h", float(sum(counts)))
        doses = []
        for (start, amount, _), end in zip(pairs, ends):
            if amount > 0:
                doses += [Dose(t, amount) for t in np.arange(start, end - 1e-9, interval)]
        return cls(tuple(doses))

    @classmethod
    def from_doses(cls, times_h, amounts_mg) -> "Regimen":
        """Doses at arbitrary times: ``times_h`` and ``amounts_mg`` of equal length."""
        times = within_horizon("times_h", sorted_times("times_h", real("times_h", times_h, "h")))
        amounts = dose_mg("amounts_mg", amounts_mg)
        if amounts.shape != times.shape:
            raise PKPDInputError(
                f"times_h and amounts_mg must have the same length; got {times.size} and {amounts.size}."
            )
        dose_count("Regimen.from_doses", times.size)
        return cls(tuple(Dose(t, a) for t, a in zip(times, amounts)))

    # ----------------------------------------------------------- operations
    def __add__(self, other: "Regimen") -> "Regimen":
        if not isinstance(other, Regimen):
            return NotImplemented
        return Regimen(self.doses + other.doses)

    def shift(self, hours: float) -> "Regimen":
        """The same regimen started ``hours`` later."""
        hours = float(real("Regimen.shift: hours", hours, "h"))
        return Regimen(tuple(d._replace(time=d.time + hours) for d in self.doses))

    def interrupt(self, start_h: float, end_h: float) -> "Regimen":
        """Drop the doses given in ``[start_h, end_h)`` (a treatment interruption)."""
        start_h = _time("Regimen.interrupt: start_h", start_h)
        end_h = _time("Regimen.interrupt: end_h", end_h)
        if end_h <= start_h:
            raise PKPDInputError(
                f"interrupt end_h ({end_h:g} h) is before start_h ({start_h:g} h) or equal to it, so nothing "
                "would be interrupted; give start_h < end_h."
            )
        return Regimen(tuple(d for d in self.doses if not (start_h <= d.time < end_h)))

    # ----------------------------------------------------------- views
    @property
    def times(self) -> np.ndarray:
        """Dose times, h."""
        return np.array([d.time for d in self.doses], dtype=float)

    @property
    def amounts(self) -> np.ndarray:
        """Dose amounts, mg."""
        return np.array([d.amount for d in self.doses], dtype=float)

    @property
    def total_mg(self) -> float:
        return float(self.amounts.sum())

    def __len__(self) -> int:
        return len(self.doses)

    def __repr__(self) -> str:
        if not self.doses:
            return "Regimen: no doses"
        parts = []
        for run in _runs(self.doses):
            d, n, ii = run[0], len(run), (run[1].time - run[0].time if len(run) > 1 else 0.0)
            text = f"{_fmt(d.amount)} mg"
            text += f" every {_fmt(ii)} h x{n} from {_fmt(d.time)} h" if n > 1 else f" at {_fmt(d.time)} h"
            if d.ss:
                text += f" (steady state SS={d.ss}, II={_fmt(d.ii)} h)"
            if d.reset:
                text += " (after reset)"
            parts.append(text)
        return "Regimen: " + "; ".join(parts)

    # ----------------------------------------------------------- NONMEM records
    def to_records(self, id=1) -> pd.DataFrame:
        """NONMEM-style dose records, runs of equal doses compressed with ADDL/II.

        Doses go to CMT 1 (the depot).  EVID is 1, or 4 for a dose after a reset.
        """
        rows = []
        for run in _runs(self.doses):
            d = run[0]
            ii = run[1].time - d.time if len(run) > 1 else d.ii
            rows.append(
                {
                    "ID": id, "TIME": d.time, "AMT": d.amount, "EVID": 4 if d.reset else 1, "MDV": 1,
                    "CMT": DEPOT_CMT, "II": ii if (len(run) > 1 or d.ss) else 0.0,
                    "ADDL": len(run) - 1, "SS": d.ss, "DV": np.nan,
                }
            )
        return pd.DataFrame(rows, columns=RECORD_COLUMNS)

    @classmethod
    def from_records(cls, records: pd.DataFrame) -> "Regimen":
        """Rebuild a regimen from NONMEM dose records (rows with EVID 1 or 4).

        ADDL additional doses are expanded every II hours.  Rows that are not
        doses (EVID 0, 2, 3) are ignored here; :func:`pkpd.read_nonmem` validates
        whole datasets.
        """
        missing = [c for c in ("TIME", "AMT") if c not in records.columns]
        if missing:
            raise PKPDInputError(f"dose records need columns {missing}; got {list(records.columns)}.")
        n = len(records)
        column = lambda name, default: (  # noqa: E731
            records[name].to_numpy() if name in records else np.full(n, default)
        )
        evid = column("EVID", 1)
        known = np.isin(evid, [0, 1, 2, 3, 4])
        if not known.all():
            i = int(np.flatnonzero(~known)[0])
            raise PKPDInputError(
                f"EVID (record {i + 1}) must be 0, 1, 2, 3 or 4; got {plain(evid[i])!r}. Use 1 for a dose, 0 for an observation."
            )
        rows = []
        total = 0.0
        for i in np.flatnonzero(np.isin(evid, [1, 4])):
            where = f"dose record {i + 1}"
            time = _time(f"TIME ({where})", column("TIME", 0.0)[i])
            amount = _dose(f"AMT ({where})", column("AMT", 0.0)[i])
            ii = float(within_horizon(f"II ({where})", nonnegative(f"II ({where})", real(f"II ({where})", column("II", 0.0)[i], "h"), "h")))
            addl = float(nonnegative(f"ADDL ({where})", real(f"ADDL ({where})", column("ADDL", 0)[i])))
            ss = float(real(f"SS ({where})", column("SS", 0)[i]))
            if addl != int(addl):
                raise PKPDInputError(f"ADDL ({where}) must be a whole number; got {addl!r}.")
            if ss not in (0, 1, 2):
                raise PKPDInputError(f"SS ({where}) must be 0, 1 or 2; got {ss:g}. Use 0 for no steady state.")
            if addl and ii <= 0:
                raise PKPDInputError(f"ADDL={addl:g} at TIME={time} needs II > 0; got II={ii}. Set II to the dosing interval (h).")
            series_within_horizon(f"ADDL={addl:g} every II={ii:g} h from TIME={time:g} h ({where})", time + addl * ii)
            total += 1 + addl
            dose_count(f"dose records up to {where} (ADDL expanded)", total)
            rows.append((time, amount, ii, int(addl), int(ss), int(evid[i]) == 4))
        # Expanded only once every record has been checked.
        doses = []
        for time, amount, ii, addl, ss, reset in rows:
            doses.append(Dose(time, amount, ss, ii if ss else 0.0, reset))
            doses += [Dose(time + k * ii, amount) for k in range(1, addl + 1)]
        return cls(tuple(doses))


def _runs(doses: tuple[Dose, ...]) -> list[list[Dose]]:
    """Group doses into runs of equal amounts at a constant interval (for ADDL)."""
    runs: list[list[Dose]] = []
    for d in doses:
        if runs:
            run = runs[-1]
            last = run[-1]
            same = d.amount == last.amount and d.ss == 0 and not d.reset and d.time > last.time
            step_ok = len(run) == 1 or np.isclose(d.time - last.time, run[1].time - run[0].time, rtol=0, atol=1e-9)
            ss_ok = run[0].ss == 0 or np.isclose(d.time - last.time, run[0].ii, rtol=0, atol=1e-9)
            if same and step_ok and ss_ok:
                run.append(d)
                continue
        runs.append([d])
    return runs


def _as_dose(i: int, d) -> Dose:
    try:
        return Dose(*d)
    except TypeError:
        raise PKPDInputError(f"Regimen dose {i} must be Dose(time_h, amount_mg[, ss, ii, reset]); got {d!r}.") from None


def _first_outside(column, allowed, bools: bool) -> int | None:
    """Index of the first value not in ``allowed`` (or a bool, unless ``bools``), else None."""
    try:  # fast path for the usual all-valid column
        ok = set(column) <= set(allowed) and (bools or not {bool, np.bool_} & set(map(type, column)))
    except TypeError:  # unhashable values
        ok = False
    if ok:
        return None
    for i, x in enumerate(column):
        if (not bools and isinstance(x, (bool, np.bool_))) or not any(_same(x, a) for a in allowed):
            return i
    return None


def _same(x, a) -> bool:
    try:
        return bool(x == a)
    except (TypeError, ValueError):
        return False


def _time(name: str, value) -> float:
    """A time in hours: a number, >= 0 and within :data:`pkpd.checks.MAX_HORIZON_H`."""
    arr = within_horizon(name, nonnegative(name, real(name, value, "h"), "h"))
    if arr.ndim:
        raise PKPDInputError(f"{name} must be one number (h); got {value!r}.")
    return float(arr)


def _dose(name: str, value, negative_fix: str = "Use a value of zero or more.") -> float:
    """A dose in mg: a number, >= 0 and within :data:`pkpd.checks.MAX_DOSE_MG`."""
    arr = dose_mg(name, value, negative_fix)
    if arr.ndim:
        raise PKPDInputError(f"{name} must be one number (mg); got {value!r}.")
    return float(arr)


def _is_whole(x) -> bool:
    """A whole number given as an int or an integral float (not a bool, not text)."""
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, (numbers.Integral,)):
        return True
    return isinstance(x, (numbers.Real,)) and np.isfinite(x) and float(x) == int(x)


def _fmt(x: float) -> str:
    return f"{x:g}"
