"""Dosing regimens: what is given, when.  Doses in mg, times in hours.

A :class:`Regimen` is an immutable, sorted list of :class:`Dose` events.  It is
built in one line for the usual cases, combined with ``+``, and round-trips to
NONMEM-style records (ID, TIME, AMT, EVID, MDV, CMT, II, ADDL, SS, DV), the
layout every pharmacometric tool reads.

>>> Regimen.daily(5, days=3)
Regimen: 5 mg every 24 h x3 from 0 h
>>> Regimen.steps([(0, 2.5), (48, 5)], until_h=96)
Regimen: 2.5 mg every 24 h x2 from 0 h; 5 mg every 24 h x2 from 48 h
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, NamedTuple

import numpy as np
import pandas as pd

from .checks import PKPDInputError, finite, nonnegative, positive, sorted_times

#: Columns of a NONMEM-style event record, in the order they are written.
RECORD_COLUMNS = ["ID", "TIME", "AMT", "EVID", "MDV", "CMT", "II", "ADDL", "SS", "DV"]

#: Dosing compartment (depot / gut) of the oral models.
DEPOT_CMT = 1


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
        checked = []
        for d in self.doses:
            d = Dose(*d)
            nonnegative("dose time", d.time, "h")
            nonnegative("dose amount", d.amount, "mg")
            if d.ss not in (0, 1, 2):
                raise PKPDInputError(f"SS must be 0, 1 or 2; got {d.ss!r}. Use 0 for no steady state.")
            if d.ss and not (np.isfinite(d.ii) and d.ii > 0):
                raise PKPDInputError(
                    f"a steady-state dose (SS={d.ss}) at {d.time} h needs II > 0; got II={d.ii!r}. "
                    "Give the dosing interval in hours."
                )
            # ii only means something for a steady-state dose (it is 0 in NONMEM records otherwise).
            ii = float(d.ii) if d.ss else 0.0
            checked.append(Dose(float(d.time), float(d.amount), int(d.ss), ii, bool(d.reset)))
        # Stable sort keeps the given order of simultaneous doses.
        object.__setattr__(self, "doses", tuple(sorted(checked, key=lambda d: d.time)))

    # ----------------------------------------------------------- construction
    @classmethod
    def single(cls, dose_mg: float, at_h: float = 0.0) -> "Regimen":
        """One dose of ``dose_mg`` mg at ``at_h`` hours."""
        return cls((Dose(at_h, dose_mg),))

    @classmethod
    def repeated(
        cls, dose_mg: float, interval_h: float, n: int, start_h: float = 0.0, steady_state: bool = False
    ) -> "Regimen":
        """``n`` doses of ``dose_mg`` mg every ``interval_h`` hours from ``start_h``.

        ``steady_state=True`` makes the first dose a NONMEM SS=1 dose: the system
        is already at steady state of this regimen when it starts.
        """
        positive("interval_h", interval_h, "h")
        if int(n) != n or n < 1:
            raise PKPDInputError(f"n (number of doses) must be a whole number >= 1; got {n!r}.")
        times = start_h + interval_h * np.arange(int(n))
        doses = [Dose(t, dose_mg) for t in times]
        if steady_state:
            doses[0] = Dose(times[0], dose_mg, 1, interval_h)
        return cls(tuple(doses))

    @classmethod
    def daily(cls, dose_mg: float, days: int, start_h: float = 0.0, steady_state: bool = False) -> "Regimen":
        """Once-daily dosing: ``dose_mg`` mg every 24 h for ``days`` days."""
        return cls.repeated(dose_mg, 24.0, days, start_h, steady_state)

    @classmethod
    def steps(
        cls, levels: Iterable[tuple[float, float]], until_h: float, interval_h: float = 24.0
    ) -> "Regimen":
        """Dose changes at given times: ``levels`` is ``[(time_h, dose_mg), ...]``.

        Each level is given every ``interval_h`` hours from its time until the next
        level starts (or ``until_h``).  A level of 0 mg is an interruption.
        """
        levels = sorted((float(t), float(a)) for t, a in levels)
        if not levels:
            raise PKPDInputError("levels is empty; give at least one (time_h, dose_mg) pair.")
        positive("interval_h", interval_h, "h")
        ends = [t for t, _ in levels[1:]] + [float(until_h)]
        doses = []
        for (start, amount), end in zip(levels, ends):
            if amount > 0:
                doses += [Dose(t, amount) for t in np.arange(start, end - 1e-9, interval_h)]
        return cls(tuple(doses))

    @classmethod
    def from_doses(cls, times_h, amounts_mg) -> "Regimen":
        """Doses at arbitrary times: ``times_h`` and ``amounts_mg`` of equal length."""
        times = sorted_times("times_h", times_h)
        amounts = nonnegative("amounts_mg", amounts_mg, "mg")
        if amounts.shape != times.shape:
            raise PKPDInputError(
                f"times_h and amounts_mg must have the same length; got {times.size} and {amounts.size}."
            )
        return cls(tuple(Dose(t, a) for t, a in zip(times, amounts)))

    # ----------------------------------------------------------- operations
    def __add__(self, other: "Regimen") -> "Regimen":
        if not isinstance(other, Regimen):
            return NotImplemented
        return Regimen(self.doses + other.doses)

    def shift(self, hours: float) -> "Regimen":
        """The same regimen started ``hours`` later."""
        return Regimen(tuple(d._replace(time=d.time + hours) for d in self.doses))

    def interrupt(self, start_h: float, end_h: float) -> "Regimen":
        """Drop the doses given in ``[start_h, end_h)`` (a treatment interruption)."""
        if end_h < start_h:
            raise PKPDInputError(f"interrupt end_h ({end_h} h) is before start_h ({start_h} h); swap them.")
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
        doses = []
        for i in np.flatnonzero(np.isin(evid, [1, 4])):
            where = f"dose record {i + 1}"
            time = float(finite(f"TIME ({where})", column("TIME", 0.0)[i], "h"))
            amount = float(finite(f"AMT ({where})", column("AMT", 0.0)[i], "mg"))
            ii = float(nonnegative(f"II ({where})", column("II", 0.0)[i], "h"))
            addl = float(nonnegative(f"ADDL ({where})", column("ADDL", 0)[i]))
            ss = float(finite(f"SS ({where})", column("SS", 0)[i]))
            if addl != int(addl):
                raise PKPDInputError(f"ADDL ({where}) must be a whole number; got {addl!r}.")
            if addl and ii <= 0:
                raise PKPDInputError(f"ADDL={addl:g} at TIME={time} needs II > 0; got II={ii}. Set II to the dosing interval (h).")
            doses.append(Dose(time, amount, int(ss), ii if ss else 0.0, int(evid[i]) == 4))
            doses += [Dose(time + k * ii, amount) for k in range(1, int(addl) + 1)]
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


def _fmt(x: float) -> str:
    return f"{x:g}"
