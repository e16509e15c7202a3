"""One patient's history: doses (mg at h), platelet counts (10^9/L at h) and
optional drug concentrations (ng/mL at h), validated for forecasting.

Built from plain arrays (:meth:`PatientHistory.from_arrays`), a
:class:`pkpd.Subject` or :class:`pkpd.Dataset` (:meth:`PatientHistory.from_subject`,
:meth:`PatientHistory.from_dataset`) or a NONMEM-format CSV
(:meth:`PatientHistory.read`).  In NONMEM records a platelet count is an
observation whose type has the unit 10^9/L (``Dataset.dv_units``): CMT 3 by
default, or the DVID type given that unit; every other observation type is a
concentration and is converted to ng/mL.  Time 0 is the model's drug-free
start (the PD state is at its baseline); counts at or before the first dose are
baseline counts.

Every fault raises :class:`pkpd.PKPDInputError` naming the field, the value
and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..checks import MAX_DOSE_MG, MAX_HORIZON_H, PKPDInputError
from ..nonmem import Dataset, Subject, read_nonmem
from ..regimen import CONC_CMT, PLATELET_CMT
from ..units import CONC_TO_MG_PER_L, MG_PER_L_TO_NG_PER_ML, PLATELET_UNIT


def _array(field: str, value, unit: str, *, positive: bool = False, allow_empty: bool = True) -> np.ndarray:
    """A 1-D float array of finite values >= 0 (> 0 with ``positive``)."""
    if value is None:
        if allow_empty:
            return np.zeros(0)
        raise PKPDInputError(f"{field} is missing (None); give a sequence of numbers in {unit}.")
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise PKPDInputError(f"{field} must be numbers in {unit}; got {value!r}. Give a sequence of numbers.") from None
    arr = np.atleast_1d(arr)
    if arr.ndim != 1:
        raise PKPDInputError(f"{field} must be a 1-D sequence in {unit}; got shape {arr.shape}. Flatten it.")
    if not allow_empty and arr.size == 0:
        raise PKPDInputError(f"{field} is empty; give at least one value in {unit}.")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PKPDInputError(f"{field} must be finite numbers in {unit}; got {arr[i]!r} (element {i}). "
                             "Remove or fill the missing value.")
    bad = arr <= 0 if positive else arr < 0
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        rule = "> 0" if positive else ">= 0"
        fix = ("times are hours since the start of the record (time 0, drug-free), never before it"
               if unit == "h" else f"give the value in {unit}" + (" (a count of 0 is not a measurement)" if positive else ""))
        raise PKPDInputError(f"{field} must be {rule} {unit}; got {arr[i]!r} (element {i}). Correct it: {fix}.")
    return arr


def _paired(times_field: str, times, values_field: str, values) -> None:
    if times.size != values.size:
        raise PKPDInputError(f"{times_field} has {times.size} values but {values_field} has {values.size}; "
                             "give one time (h) per value.")


@dataclass(frozen=True, eq=False)
class PatientHistory:
    """One patient's doses and observations, sorted by time.

    dose_times_h, dose_mg : once-daily (or any) oral doses, h and mg.
    count_times_h, counts : platelet counts, h and 10^9/L (> 0).
    conc_times_h, conc_ng_ml : drug concentrations, h and ng/mL (may be empty).
    id : the patient's identifier (for tables and plots).
    """

    dose_times_h: np.ndarray
    dose_mg: np.ndarray
    count_times_h: np.ndarray
    counts: np.ndarray
    conc_times_h: np.ndarray
    conc_ng_ml: np.ndarray
    id: object = 1

    # ------------------------------------------------------------ builders
    @classmethod
    def from_arrays(cls, dose_times_h, dose_mg, count_times_h, counts, conc_times_h=None, conc_ng_ml=None,
                    id=1) -> "PatientHistory":
        """From plain arrays: doses (h, mg), counts (h, 10^9/L), optional concentrations (h, ng/mL)."""
        if dose_mg is not None and dose_times_h is None:
            raise PKPDInputError("dose_times_h is missing (None) but dose_mg is given; give the time (h) of each dose.")
        d_t = _array("dose_times_h", dose_times_h, "h")
        d_a = _array("dose_mg", dose_mg, "mg")
        _paired("dose_times_h", d_t, "dose_mg", d_a)
        c_t = _array("count_times_h", count_times_h, "h")
        c_v = _array("counts", counts, "10^9/L", positive=True)
        _paired("count_times_h", c_t, "counts", c_v)
        k_t = _array("conc_times_h", conc_times_h, "h")
        k_v = _array("conc_ng_ml", conc_ng_ml, "ng/mL")
        _paired("conc_times_h", k_t, "conc_ng_ml", k_v)
        for field, t in (("dose_times_h", d_t), ("count_times_h", c_t), ("conc_times_h", k_t)):
            if t.size and t.max() > MAX_HORIZON_H:
                raise PKPDInputError(f"{field} reaches {t.max():g} h, beyond {MAX_HORIZON_H:g} h (20 years); "
                                     "give times in hours since the start of treatment.")
        if d_a.size and d_a.max() > MAX_DOSE_MG:
            raise PKPDInputError(f"dose_mg has {d_a.max():g} mg, above {MAX_DOSE_MG:g} mg; give doses in mg.")
        if c_t.size == 0:
            raise PKPDInputError("counts is empty: the history has no platelet count; give at least one count "
                                 "(10^9/L) after the first dose.")
        given = d_a > 0
        if not given.any():
            raise PKPDInputError("dose_mg has no dose > 0 mg: the history must include the treatment given so far; "
                                 "give the doses (mg) and their times (h).")
        first = float(d_t[given].min())
        if not (c_t > first).any():
            raise PKPDInputError(f"count_times_h: every count ({c_t.max():g} h at the latest) is at or before the first "
                                 f"dose ({first:g} h), so nothing shows this patient's response; give at least one "
                                 "count after the first dose.")
        o = np.argsort(d_t, kind="stable")
        p = np.argsort(c_t, kind="stable")
        q = np.argsort(k_t, kind="stable")
        return cls(d_t[o], d_a[o], c_t[p], c_v[p], k_t[q], k_v[q], id)

    @classmethod
    def from_subject(cls, subject: Subject, dv_units: dict | None = None, dv_type: str = "CMT") -> "PatientHistory":
        """From a :class:`pkpd.Subject`: doses from its regimen, counts from the
        observations whose type (``dv_type`` column, CMT or DVID) has unit
        10^9/L in ``dv_units`` (default: CMT 3 counts, CMT 2 concentrations in
        ng/mL), concentrations from the others (converted to ng/mL)."""
        if not isinstance(subject, Subject):
            raise PKPDInputError(f"subject must be a pkpd.Subject; got {type(subject).__name__}. "
                                 "Read the file with pkpd.read_nonmem or use PatientHistory.from_arrays.")
        reg = subject.regimen
        for d in reg.doses:
            if d.ss or d.reset:
                raise PKPDInputError(f"subject {subject.id!r}: dose at {d.time:g} h is a steady-state (SS) or reset "
                                     "(EVID 3/4) record; forecasting starts drug-free at time 0, so write the doses "
                                     "out one by one (EVID 1, SS 0).")
        obs = subject.observations
        key = dv_type.lower()
        if key not in obs.columns:
            raise PKPDInputError(f"dv_type {dv_type!r}: subject {subject.id!r} has no {dv_type} column; use 'CMT' or 'DVID'.")
        units = dict(dv_units) if dv_units is not None else {CONC_CMT: "ng/mL", PLATELET_CMT: PLATELET_UNIT}
        types = obs[key].to_numpy()
        unknown = sorted({int(t) for t in types} - set(units))
        if unknown:
            raise PKPDInputError(f"subject {subject.id!r}: {dv_type} {unknown[0]} has no unit in dv_units {units}; "
                                 f"name its unit (10^9/L for platelet counts).")
        if "blq" in obs.columns and (obs["blq"].to_numpy() == 1).any():
            t = float(obs.loc[obs["blq"] == 1, "time"].iloc[0])
            raise PKPDInputError(f"subject {subject.id!r}: observation at {t:g} h is below the limit of "
                                 "quantification (BLQ 1); forecasting does not model censored values: drop the row.")
        is_count = np.array([units[int(t)] == PLATELET_UNIT for t in types], bool)
        factor = np.array([1.0 if c else CONC_TO_MG_PER_L[units[int(t)]] * MG_PER_L_TO_NG_PER_ML
                           for t, c in zip(types, is_count)])
        time = obs["time"].to_numpy(float)
        dv = obs["dv"].to_numpy(float)
        return cls.from_arrays(reg.times, reg.amounts, time[is_count], dv[is_count],
                               time[~is_count], dv[~is_count] * factor[~is_count], id=subject.id)

    @classmethod
    def from_dataset(cls, dataset: Dataset, id=None) -> "PatientHistory":
        """The subject ``id`` of a :class:`pkpd.Dataset` (the only one when None)."""
        subjects = dataset.subjects
        if id is None:
            if len(subjects) != 1:
                raise PKPDInputError(f"id: the dataset holds {len(subjects)} subjects "
                                     f"({', '.join(map(str, [s.id for s in subjects[:5]]))}...); name the one to forecast.")
            subject = subjects[0]
        else:
            found = [s for s in subjects if s.id == id or str(s.id) == str(id)]
            if not found:
                raise PKPDInputError(f"id {id!r} is not in the dataset (IDs: {[s.id for s in subjects[:10]]}); "
                                     "give one of them.")
            subject = found[0]
        return cls.from_subject(subject, dataset.dv_units, dataset.dv_type)

    @classmethod
    def read(cls, path, id=None, **options) -> "PatientHistory":
        """From a NONMEM-format CSV (``pkpd.read_nonmem(path, **options)``)."""
        return cls.from_dataset(read_nonmem(path, **options), id=id)

    # ------------------------------------------------------------ views
    @property
    def first_dose_h(self) -> float:
        return float(self.dose_times_h[self.dose_mg > 0].min())

    @property
    def current_dose_mg(self) -> float:
        """The last dose given, mg."""
        return float(self.dose_mg[-1])

    @property
    def last_time_h(self) -> float:
        """The latest time of any record, h."""
        return float(max(self.dose_times_h.max(), self.count_times_h.max(),
                         self.conc_times_h.max() if self.conc_times_h.size else 0.0))

    def until(self, time_h: float) -> "PatientHistory":
        """The history known at ``time_h`` (records at times < ``time_h``;
        counts at exactly ``time_h`` kept, as a visit before that day's dose)."""
        d = self.dose_times_h < time_h
        c = self.count_times_h <= time_h
        k = self.conc_times_h <= time_h
        return PatientHistory.from_arrays(self.dose_times_h[d], self.dose_mg[d], self.count_times_h[c],
                                          self.counts[c], self.conc_times_h[k], self.conc_ng_ml[k], self.id)

    def table(self) -> pd.DataFrame:
        """All records, one row each: time_h, kind (dose/count/conc), value, unit."""
        parts = [pd.DataFrame({"time_h": self.dose_times_h, "kind": "dose", "value": self.dose_mg, "unit": "mg"}),
                 pd.DataFrame({"time_h": self.count_times_h, "kind": "count", "value": self.counts, "unit": PLATELET_UNIT}),
                 pd.DataFrame({"time_h": self.conc_times_h, "kind": "conc", "value": self.conc_ng_ml, "unit": "ng/mL"})]
        return pd.concat([p for p in parts if len(p)], ignore_index=True).sort_values("time_h", kind="stable",
                                                                                       ignore_index=True)

    def __repr__(self) -> str:
        conc = f", {self.conc_ng_ml.size} concentrations" if self.conc_ng_ml.size else ""
        return (f"PatientHistory(id={self.id!r}: {self.dose_mg.size} doses to {self.dose_times_h.max() / 24:g} d, "
                f"last {self.current_dose_mg:g} mg; {self.counts.size} counts, last {self.counts[-1]:.3g} x10^9/L "
                f"on day {self.count_times_h[-1] / 24:g}{conc})")
