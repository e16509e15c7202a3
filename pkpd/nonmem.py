"""Read NONMEM-style datasets into subjects with a :class:`Regimen` and observations.

A NONMEM dataset is one table of *event records*, one row per event, sorted by
``ID`` then ``TIME``.  The columns this reader understands (names are matched
case-insensitively and written back in upper case):

=======  ==========================================================================
ID       subject identifier (required; each subject's rows must be contiguous)
TIME     h since the subject's reference time (required; >= 0, non-decreasing)
AMT      dose, mg (dose rows only; 0 or missing elsewhere)
EVID     0 observation, 1 dose, 2 other event, 3 reset, 4 reset and dose
MDV      1 = DV missing / not an observation, 0 = observation
CMT      compartment: 1 depot, 2 central concentration, 3 platelets (see ``cmt_names``)
II, ADDL interdose interval (h) and number of additional doses every II
SS       0 none, 1 steady state (replaces the past), 2 steady state added to the past
DV       observed value (concentration in ``dv_unit``, platelets 10^9/L, ...)
RATE     only 0 (bolus) is supported: a non-zero RATE (infusion) is an error
BLQ      0/1 flag, 1 = below the limit of quantification (kept in observations)
LLOQ     lower limit of quantification, same unit as DV (kept in observations)
=======  ==========================================================================

Missing optional columns take NONMEM's defaults: ``EVID`` is 1 where AMT > 0,
otherwise 2 where MDV = 1, otherwise 0; ``MDV`` is 1 on non-observation rows
and 0 on observations; ``CMT`` is 1 (depot) for doses and 2 (central) for
observations; ``II``, ``ADDL``, ``SS`` and ``RATE`` are 0.  A missing value
("." or empty) in those columns also means the default.

Other NONMEM reserved names (DATE, DAT1-3, L1, L2, PCMT, CALL, CONT, XVID1-5)
are accepted and ignored.  Every other *numeric* column is a covariate (e.g.
WT): a covariate that is constant within every subject goes into
``Subject.covariates`` (its first non-missing value); every covariate also stays
as a column of ``Subject.observations``, row by row.  Non-numeric extra columns
(e.g. free-text comments) are ignored.

Where each record goes
----------------------
* EVID 1 and 4 rows are doses in ``Subject.regimen`` (built with
  :meth:`Regimen.from_records`: ADDL expanded every II hours, SS 1/2 kept, EVID 4
  sets ``Dose.reset``).  Only oral doses into the depot (CMT 1) are supported.
* EVID 3 rows (reset without dose) become a zero-amount dose with
  ``reset=True``; :meth:`Dataset.to_dataframe` writes them back as EVID 3.
* EVID 0 rows with MDV 0 are observations (``Subject.observations``).
* EVID 2 rows and EVID 0 rows with MDV 1 (an observation marked missing) are
  kept, unchanged, in ``Subject.other_events`` so that nothing is lost.

Every row is validated; the first problem raises :class:`PKPDInputError` naming
the 1-based data row (the line after the header is row 1), the ID, the column,
the value and how to fix it.

>>> data = load_theophylline()
>>> len(data), data.ids[:3]
(12, (1, 2, 3))
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib import resources
from os import PathLike
from typing import Iterator, Mapping

import numpy as np
import pandas as pd

from .checks import PKPDInputError
from .regimen import DEPOT_CMT, RECORD_COLUMNS, Regimen

#: Compartments known by default (number -> meaning); override with ``cmt_names``.
DEFAULT_CMT_NAMES: dict[int, str] = {1: "depot", 2: "central concentration", 3: "platelets"}

#: Observation compartment used when CMT is absent or missing on an observation row.
DEFAULT_OBS_CMT = 2

#: Reserved columns this reader interprets.
UNDERSTOOD_COLUMNS = ("ID", "TIME", "AMT", "DV", "EVID", "MDV", "CMT", "II", "ADDL", "SS", "RATE", "BLQ", "LLOQ")

#: Other NONMEM reserved names: accepted and ignored (never covariates).
IGNORED_RESERVED_COLUMNS = (
    "DATE", "DAT1", "DAT2", "DAT3", "L1", "L2", "PCMT", "CALL", "CONT",
    "XVID1", "XVID2", "XVID3", "XVID4", "XVID5",
)

#: Units of a dataset unless told otherwise.
DEFAULT_UNITS = {"time": "h", "amt": "mg", "dv": "ng/mL"}

#: Columns of ``Subject.other_events`` besides covariates.
_OTHER_EVENT_COLUMNS = ["time", "evid", "mdv", "cmt", "dv"]


# ============================================================== data classes
@dataclass(frozen=True, eq=False)
class Subject:
    """One subject of a NONMEM dataset.

    id : the ID value of the file.
    regimen : the subject's doses (mg at h), resets included (see module docs).
    observations : one row per observation (EVID 0, MDV 0), sorted by time, with
        columns ``time`` (h), ``dv`` (DV unit), ``cmt`` (int), ``blq`` (0/1) and
        ``lloq`` when the file had them, then one column per covariate.
    covariates : time-constant covariates, ``{name: value}``.
    other_events : EVID 2 rows and EVID 0 rows with MDV 1, columns ``time``,
        ``evid``, ``mdv``, ``cmt``, ``dv`` (+ blq/lloq/covariates); usually empty.
    """

    id: object
    regimen: Regimen
    observations: pd.DataFrame
    covariates: dict = field(default_factory=dict)
    other_events: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=_OTHER_EVENT_COLUMNS))

    def __eq__(self, other):
        if not isinstance(other, Subject):
            return NotImplemented
        return (
            self.id == other.id
            and self.regimen == other.regimen
            and _frames_equal(self.observations, other.observations)
            and _dicts_equal(self.covariates, other.covariates)
            and _frames_equal(self.other_events, other.other_events)
        )

    __hash__ = None  # holds DataFrames, which are mutable

    def __repr__(self) -> str:
        cov = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v!r}" for k, v in self.covariates.items())
        return f"Subject(id={self.id!r}, {len(self.observations)} observations, {self.regimen!r}, covariates: {cov or 'none'})"


@dataclass(frozen=True, eq=False)
class Dataset:
    """Subjects read from one NONMEM dataset.

    subjects : tuple of :class:`Subject` in file order (IDs unique).
    units : ``{"time": "h", "amt": "mg", "dv": <DV unit>}``.
    """

    subjects: tuple[Subject, ...]
    units: dict = field(default_factory=lambda: dict(DEFAULT_UNITS))

    def __post_init__(self):
        subjects = tuple(self.subjects)
        for s in subjects:
            if not isinstance(s, Subject):
                raise PKPDInputError(f"Dataset subjects must be Subject objects; got {type(s).__name__}.")
        ids = [s.id for s in subjects]
        dup = [i for i in dict.fromkeys(ids) if ids.count(i) > 1]
        if dup:
            raise PKPDInputError(f"Dataset subject IDs must be unique; ID {dup[0]!r} appears {ids.count(dup[0])} times.")
        object.__setattr__(self, "subjects", subjects)
        object.__setattr__(self, "units", {**DEFAULT_UNITS, **dict(self.units)})

    # ------------------------------------------------------------------ container
    def __len__(self) -> int:
        return len(self.subjects)

    def __iter__(self) -> Iterator[Subject]:
        return iter(self.subjects)

    def __eq__(self, other):
        if not isinstance(other, Dataset):
            return NotImplemented
        return self.units == other.units and self.subjects == other.subjects

    __hash__ = None

    def __repr__(self) -> str:
        n_obs = sum(len(s.observations) for s in self.subjects)
        n_doses = sum(len(s.regimen) for s in self.subjects)
        return f"Dataset: {len(self)} subjects, {n_obs} observations ({self.units['dv']}), {n_doses} dose events"

    @property
    def ids(self) -> tuple:
        """Subject IDs in file order."""
        return tuple(s.id for s in self.subjects)

    def subject(self, id) -> Subject:
        """The subject with this ID."""
        for s in self.subjects:
            if s.id == id:
                return s
        raise PKPDInputError(f"no subject with ID {id!r}; the IDs are {list(self.ids)}.")

    @property
    def observations(self) -> pd.DataFrame:
        """All observations in one long DataFrame: column ``ID`` then the
        per-subject columns (time h, dv, cmt, [blq, lloq], covariates)."""
        frames = [s.observations.assign(ID=s.id) for s in self.subjects if len(s.observations)]
        if not frames:
            return pd.DataFrame(columns=["ID", "time", "dv", "cmt"])
        out = pd.concat(frames, ignore_index=True)
        return out[["ID"] + [c for c in out.columns if c != "ID"]]

    # ------------------------------------------------------------------ writing
    def to_dataframe(self) -> pd.DataFrame:
        """NONMEM records again: ID TIME AMT EVID MDV CMT II ADDL SS DV, then BLQ /
        LLOQ if present, then the covariates.

        Runs of equal doses are written compactly with ADDL/II; zero-amount
        resets as EVID 3.  Within a subject, rows at the same time are written
        doses and resets first, then other events, then observations.  Covariates
        on dose rows are the subject's constant value, or for a time-varying
        covariate the value of the next non-dose row (NONMEM's next observation
        carried backward), else the previous one.
        """
        frames = [_subject_records(s) for s in self.subjects]
        if not frames:
            return pd.DataFrame(columns=RECORD_COLUMNS)
        out = pd.concat(frames, ignore_index=True)
        extra = [c for c in ("BLQ", "LLOQ") if c in out.columns]
        covs = [c for c in out.columns if c not in RECORD_COLUMNS and c not in extra]
        out = out[RECORD_COLUMNS + extra + covs]
        for col in ("EVID", "MDV", "CMT", "ADDL", "SS"):
            out[col] = out[col].astype(int)
        if "BLQ" in out:
            out["BLQ"] = out["BLQ"].astype(float)
        return out

    # ------------------------------------------------------------------ shipped data
    @classmethod
    def theophylline(cls) -> "Dataset":
        """The theophylline data shipped with pkpd (see :func:`load_theophylline`)."""
        return load_theophylline()


def load_theophylline() -> Dataset:
    """Theophylline after a single oral dose: 12 subjects, 11 concentrations each.

    Boeckmann, Sheiner & Beal (1994), NONMEM Users Guide Part V; the ``Theoph``
    data of R.  Doses (AMT) are in mg (the original mg/kg x WT), DV in mg/L,
    TIME in h; WT (kg) is a time-constant covariate.
    """
    source = resources.files("pkpd").joinpath("data", "theoph_nm.csv")
    with resources.as_file(source) as path:
        return read_nonmem(path, dv_unit="mg/L")


# ============================================================== reading
def read_nonmem(
    path_or_dataframe: str | PathLike | pd.DataFrame,
    *,
    cmt_names: Mapping[int, str] | None = None,
    dv_unit: str = "ng/mL",
) -> Dataset:
    """Read and validate a NONMEM-style dataset.

    Parameters
    ----------
    path_or_dataframe : a CSV file ("." or empty = missing) or a DataFrame.
    cmt_names : compartments allowed in CMT, ``{number: meaning}``; default
        :data:`DEFAULT_CMT_NAMES` (1 depot, 2 central concentration, 3 platelets).
        Doses must go to CMT 1 (the depot).
    dv_unit : unit of the concentration DV values, recorded in ``Dataset.units``.

    Returns
    -------
    :class:`Dataset`.  Raises :class:`PKPDInputError` on the first bad row.
    """
    table = _Table(path_or_dataframe)
    cmt_names = dict(DEFAULT_CMT_NAMES if cmt_names is None else cmt_names)
    if DEPOT_CMT not in cmt_names:
        raise PKPDInputError(
            f"cmt_names must include the depot compartment {DEPOT_CMT} (doses go there); got {sorted(cmt_names)}."
        )
    df = table.validated(set(cmt_names))
    covariates = table.covariates
    constant = [c for c in covariates if (df.groupby("ID", sort=False)[c].nunique(dropna=True) <= 1).all()]

    subjects = []
    for sid, rows in df.groupby("ID", sort=False):
        evid, mdv = rows["EVID"], rows["MDV"]
        events = rows[evid.isin([1, 3, 4])].copy()
        # An EVID 3 reset is stored as a zero-amount dose after a reset (EVID 4, AMT 0).
        events.loc[events["EVID"] == 3, "AMT"] = 0.0
        events.loc[events["EVID"] == 3, "EVID"] = 4
        regimen = Regimen.from_records(events)

        obs_rows = rows[(evid == 0) & (mdv == 0)]
        obs = pd.DataFrame(
            {"time": obs_rows["TIME"].to_numpy(float), "dv": obs_rows["DV"].to_numpy(float),
             "cmt": obs_rows["CMT"].to_numpy(int)}
        )
        other_rows = rows[(evid == 2) | ((evid == 0) & (mdv == 1))]
        other = pd.DataFrame(
            {"time": other_rows["TIME"].to_numpy(float), "evid": other_rows["EVID"].to_numpy(int),
             "mdv": other_rows["MDV"].to_numpy(int), "cmt": other_rows["CMT"].to_numpy(int),
             "dv": other_rows["DV"].to_numpy(float)}
        )
        for col in ("BLQ", "LLOQ") + tuple(covariates):
            if col in rows:
                name = col.lower() if col in ("BLQ", "LLOQ") else col
                obs[name] = obs_rows[col].to_numpy()
                other[name] = other_rows[col].to_numpy()
        first = {c: rows[c].dropna() for c in constant}
        covs = {c: (_python(v.iloc[0]) if len(v) else np.nan) for c, v in first.items()}
        subjects.append(Subject(_scalar(sid), regimen, obs, covs, other))
    return Dataset(tuple(subjects), {**DEFAULT_UNITS, "dv": dv_unit})


class _Table:
    """The raw table plus everything needed to name a row in an error message."""

    def __init__(self, source):
        if isinstance(source, pd.DataFrame):
            raw = source.copy()
            self.origin = "DataFrame"
        else:
            try:
                raw = pd.read_csv(source, na_values=["."], skipinitialspace=True)
            except FileNotFoundError:
                raise PKPDInputError(f"NONMEM file not found: {source!s}. Check the path.") from None
            self.origin = str(source)
        self.raw = raw.reset_index(drop=True)
        self.df = self._canonical_columns(self.raw)
        reserved = set(UNDERSTOOD_COLUMNS) | set(IGNORED_RESERVED_COLUMNS)
        self.covariates = [
            c for c in self.df.columns
            if c not in reserved and pd.api.types.is_numeric_dtype(self.df[c]) and not pd.api.types.is_bool_dtype(self.df[c])
        ]

    # ---------------------------------------------------------------- messages
    def where(self, i: int) -> str:
        """'data row 5 (ID 1)' for the 0-based position i."""
        sid = self.df["ID"].iloc[i] if "ID" in self.df else None
        line = f", line {i + 2} of {self.origin}" if self.origin != "DataFrame" else ""
        id_text = f"ID {_scalar(sid)!r}" if sid is not None and not pd.isna(sid) else "ID missing"
        return f"data row {i + 1} ({id_text}{line})"

    def fail(self, mask, column: str, problem: str, fix: str, values=None):
        """Raise for the first row where ``mask`` is True."""
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return
        i = int(np.flatnonzero(mask)[0])
        vals = self.df[column] if values is None else values
        value = _scalar(vals.iloc[i]) if isinstance(vals, pd.Series) else _scalar(vals[i])
        raise PKPDInputError(f"{column}: {self.where(i)} has {column}={value!r}; {problem}. {fix}")

    # ---------------------------------------------------------------- columns
    @staticmethod
    def _canonical_columns(raw: pd.DataFrame) -> pd.DataFrame:
        """Upper-case the reserved names (TIME, time and Time are the same column)."""
        names = {}
        reserved = set(UNDERSTOOD_COLUMNS) | set(IGNORED_RESERVED_COLUMNS)
        for col in raw.columns:
            name = str(col).strip()
            if name.upper() in reserved:
                name = name.upper()
            if name in names.values():
                first = next(k for k, v in names.items() if v == name)
                raise PKPDInputError(
                    f"columns {first!r} and {col!r} both mean {name}; keep only one of them."
                )
            names[col] = name
        return raw.rename(columns=names)

    def validated(self, allowed_cmts: set[int]) -> pd.DataFrame:
        """A copy with every reserved column present, numeric and checked."""
        df = self.df
        for required in ("ID", "TIME"):
            if required not in df.columns:
                close = difflib.get_close_matches(required, [str(c).upper() for c in df.columns], n=1, cutoff=0.6)
                hint = f" Did you mean {close[0]!r}? Rename it to {required}." if close else f" Add a {required} column."
                raise PKPDInputError(
                    f"column {required} is missing; the table has columns {list(map(str, df.columns))}.{hint}"
                )
        if len(df) == 0:
            raise PKPDInputError("the NONMEM table has no rows; give at least one dose or observation row.")

        # ---- numeric columns: report the first non-numeric entry
        for col in [c for c in UNDERSTOOD_COLUMNS if c in df.columns and c != "ID"]:
            numeric = pd.to_numeric(df[col], errors="coerce")
            self.fail(numeric.isna() & df[col].notna(), col, "it is not a number",
                      "Use a number, or '.' / an empty cell for missing.")
            df[col] = numeric.astype(float)

        # ---- ID and TIME
        self.fail(df["ID"].isna(), "ID", "every row needs a subject ID", "Fill in the ID.")
        self.fail(df["TIME"].isna(), "TIME", "every row needs a time in h", "Fill in TIME (h).")
        self.fail(~np.isfinite(df["TIME"]), "TIME", "TIME must be finite (h)", "Fix the time.")
        self.fail(df["TIME"] < 0, "TIME", "TIME must be >= 0 h", "Shift times so that they start at 0 h or later.")
        ids = df["ID"].to_numpy()
        new_block = np.r_[True, ids[1:] != ids[:-1]]
        seen = pd.Series(ids[new_block]).duplicated().to_numpy()
        again = np.zeros(len(df), bool)
        again[np.flatnonzero(new_block)[seen]] = True
        self.fail(again, "ID", "this ID already appeared in an earlier block of rows (NONMEM would read it as a "
                  "new subject)", "Sort the rows by ID then TIME, or give the second block its own ID.")
        time = df["TIME"].to_numpy(float)
        back = np.r_[False, (~new_block[1:]) & (time[1:] < time[:-1])]
        if back.any():
            i = int(np.flatnonzero(back)[0])
            raise PKPDInputError(
                f"TIME: {self.where(i)} has TIME={_python(time[i])!r} h, earlier than the row before "
                f"({_python(time[i - 1])!r} h); "
                f"TIME must not decrease within an ID (time resets at EVID 3/4 are not supported). "
                f"Sort the rows by ID then TIME."
            )

        # ---- AMT, EVID, MDV
        amt = df["AMT"] if "AMT" in df else pd.Series(np.nan, index=df.index)
        self.fail(amt < 0, "AMT", "a dose must be >= 0 mg", "Use a non-negative amount in mg.", amt)
        mdv_given = "MDV" in df
        if mdv_given:
            self.fail(df["MDV"].notna() & ~df["MDV"].isin([0, 1]), "MDV", "MDV must be 0 or 1",
                      "Use 1 for rows without an observation, 0 for observations.")
        if "EVID" in df:
            evid = df["EVID"]
            self.fail(evid.notna() & ~evid.isin([0, 1, 2, 3, 4]), "EVID", "EVID must be 0, 1, 2, 3 or 4",
                      "Use 0 observation, 1 dose, 2 other event, 3 reset, 4 reset and dose.")
        else:
            evid = pd.Series(np.nan, index=df.index)
        # NONMEM's inference where EVID is absent: dose if AMT > 0, other event if MDV = 1.
        mdv_raw = df["MDV"] if mdv_given else pd.Series(np.nan, index=df.index)
        inferred = np.where(amt.fillna(0) > 0, 1, np.where(mdv_raw == 1, 2, 0))
        df["EVID"] = evid.fillna(pd.Series(inferred, index=df.index)).astype(int)
        evid = df["EVID"]
        df["MDV"] = mdv_raw.fillna(pd.Series(np.where(evid == 0, 0, 1), index=df.index)).astype(int)
        dose_row = evid.isin([1, 4])
        self.fail(dose_row & amt.isna(), "AMT", "a dose row (EVID 1 or 4) needs an amount in mg",
                  "Fill in AMT (mg).", amt)
        self.fail(~dose_row & amt.fillna(0).ne(0), "AMT", "only dose rows (EVID 1 or 4) may carry an amount",
                  "Set EVID to 1 (or 4) for a dose, or AMT to 0 / '.' otherwise.", amt)
        self.fail((evid != 0) & (df["MDV"] == 0), "MDV", "rows that are not observations (EVID 1-4) need MDV=1",
                  "Set MDV to 1, or EVID to 0 for an observation.")
        df["AMT"] = amt.fillna(0.0)

        # ---- RATE, SS, II, ADDL
        for col in ("RATE", "SS", "II", "ADDL"):
            df[col] = df[col].fillna(0.0) if col in df else 0.0
        self.fail(dose_row & (df["RATE"] != 0), "RATE", "infusions are not supported (doses are oral boluses)",
                  "Use RATE=0, or model the infusion outside pkpd.")
        self.fail(~df["SS"].isin([0, 1, 2]), "SS", "SS must be 0, 1 or 2", "Use 0 (none), 1 or 2 (steady state).")
        self.fail(~dose_row & (df["SS"] != 0), "SS", "only dose rows (EVID 1 or 4) may be steady-state doses",
                  "Set SS to 0 on this row.")
        self.fail(~np.isfinite(df["II"]) | (df["II"] < 0), "II", "II must be a finite interval >= 0 h", "Fix II (h).")
        self.fail((df["SS"] > 0) & (df["II"] <= 0), "II", "a steady-state dose (SS 1 or 2) needs the dosing "
                  "interval II > 0 h", "Give II, the interval in h between the steady-state doses.")
        self.fail((df["ADDL"] < 0) | (df["ADDL"] != np.round(df["ADDL"])), "ADDL",
                  "ADDL must be a whole number >= 0", "Give the number of additional doses.")
        self.fail(~dose_row & (df["ADDL"] != 0), "ADDL", "only dose rows (EVID 1 or 4) may have additional doses",
                  "Set ADDL to 0 on this row.")
        self.fail((df["ADDL"] > 0) & (df["II"] <= 0), "II", "ADDL additional doses need the interval II > 0 h",
                  "Give II, the interval in h between the additional doses.")

        # ---- CMT
        default_cmt = np.where(evid.isin([0, 2]), DEFAULT_OBS_CMT, DEPOT_CMT)
        cmt = df["CMT"] if "CMT" in df else pd.Series(np.nan, index=df.index)
        cmt = cmt.fillna(pd.Series(default_cmt, index=df.index, dtype=float))
        allowed = sorted(allowed_cmts)
        self.fail(~cmt.isin(allowed), "CMT", f"unknown compartment (known: {allowed})",
                  "Use a known CMT, or pass cmt_names={number: name, ...} to read_nonmem.", cmt)
        self.fail(dose_row & (cmt != DEPOT_CMT), "CMT", f"doses must go to the depot, CMT {DEPOT_CMT} "
                  "(only oral dosing is modelled)", f"Set CMT to {DEPOT_CMT} on dose rows.", cmt)
        df["CMT"] = cmt.astype(int)

        # ---- DV, BLQ, LLOQ
        dv = df["DV"] if "DV" in df else pd.Series(np.nan, index=df.index)
        df["DV"] = dv
        obs = (evid == 0) & (df["MDV"] == 0)
        if "BLQ" in df:
            self.fail(df["BLQ"].notna() & ~df["BLQ"].isin([0, 1]), "BLQ", "BLQ must be 0 or 1",
                      "Use 1 for below the limit of quantification, else 0.")
            blq = df["BLQ"].fillna(0) == 1
        else:
            blq = pd.Series(False, index=df.index)
        if "LLOQ" in df:
            self.fail(df["LLOQ"] < 0, "LLOQ", "LLOQ must be >= 0", "Fix the limit of quantification.")
        self.fail(obs & dv.isna() & ~blq, "DV", "an observation row (EVID 0, MDV 0) needs a DV value",
                  "Fill in DV, set MDV=1 to mark it missing, or BLQ=1 if below the limit of quantification.", dv)
        self.fail(obs & ~np.isfinite(dv.fillna(0)), "DV", "DV must be finite", "Fix the value.", dv)
        df["ID"] = df["ID"].map(_scalar)
        return df


# ============================================================== writing helpers
def _subject_records(s: Subject) -> pd.DataFrame:
    """NONMEM rows of one subject (see :meth:`Dataset.to_dataframe`)."""
    doses = s.regimen.to_records(id=s.id)
    resets = (doses["EVID"] == 4) & (doses["AMT"] == 0) & (doses["SS"] == 0) & (doses["ADDL"] == 0)
    doses.loc[resets, "EVID"] = 3
    doses["_order"] = 0

    def rows(frame: pd.DataFrame, evid, mdv, order: int) -> pd.DataFrame:
        out = pd.DataFrame(
            {"ID": s.id, "TIME": frame["time"].to_numpy(float), "AMT": 0.0, "EVID": evid, "MDV": mdv,
             "CMT": frame["cmt"].to_numpy(int), "II": 0.0, "ADDL": 0, "SS": 0, "DV": frame["dv"].to_numpy(float)},
            index=range(len(frame)),
        )
        for col in frame.columns:
            if col not in _OTHER_EVENT_COLUMNS:
                out[col.upper() if col in ("blq", "lloq") else col] = frame[col].to_numpy()
        out["_order"] = order
        return out

    other = s.other_events
    parts = [doses]
    if len(other):
        parts.append(rows(other, other["evid"].to_numpy(int), other["mdv"].to_numpy(int), 1))
    parts.append(rows(s.observations, 0, 0, 2))
    parts = [p for p in parts if len(p)]
    out = pd.concat(parts, ignore_index=True) if parts else doses
    out = out.sort_values(["TIME", "_order"], kind="stable").reset_index(drop=True)
    is_dose = (out["_order"] == 0).to_numpy()
    for col in [c for c in out.columns if c not in RECORD_COLUMNS and c not in ("_order", "BLQ", "LLOQ")]:
        if col in s.covariates:
            out.loc[is_dose, col] = s.covariates[col]
        else:
            filled = out[col].where(~is_dose).bfill().ffill()
            out.loc[is_dose, col] = filled[is_dose]
    return out.drop(columns="_order")


# ============================================================== small helpers
def _python(x):
    """numpy scalar -> the equal Python scalar."""
    return x.item() if isinstance(x, np.generic) else x


def _scalar(x):
    """Like :func:`_python`, but integral floats become int (IDs, row values in messages)."""
    x = _python(x)
    if isinstance(x, float) and np.isfinite(x) and x == int(x):
        return int(x)
    return x


def _frames_equal(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    if len(a) == 0:
        return True
    try:
        pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True), check_dtype=False)
    except AssertionError:
        return False
    return True


def _dicts_equal(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    return all(x == y or (pd.isna(x) and pd.isna(y)) for x, y in ((a[k], b[k]) for k in a))
