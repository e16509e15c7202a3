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
DVID     observation type (optional): when present it, not CMT, says what each
         observation is, and each type has its own unit (see ``dv_unit``)
II, ADDL interdose interval (h) and number of additional doses every II
SS       0 none, 1 steady state (replaces the past), 2 steady state added to the past
DV       observed value, in the unit of its observation type (``Dataset.dv_units``)
RATE     only 0 (bolus) is supported: a non-zero RATE (infusion) is an error
BLQ      0/1 flag, 1 = below the limit of quantification (kept in observations)
LLOQ     lower limit of quantification, same unit as DV (kept in observations)
C        comment marker: a row whose C cell is set is a comment (see below)
=======  ==========================================================================

Missing optional columns take NONMEM's defaults: ``EVID`` is 1 where AMT > 0,
otherwise 2 where MDV = 1, otherwise 0; ``MDV`` is 1 on non-observation rows
and 0 on observations; ``CMT`` is 1 (depot) for doses and 2 (central) for
observations; ``II``, ``ADDL``, ``SS`` and ``RATE`` are 0.  A missing value
("." or empty) in those columns also means the default.

Comment rows
------------
As with NONMEM's ``$DATA ... IGNORE=C`` and its default ``IGNORE=#`` (and as
pharmpy and nlmixr2 read such files), a row is a comment and is left out when
its ``C`` cell holds a letter, ``#`` or ``@`` (empty or "." = a data row), or
when its first cell starts with ``#``.  The dropped rows are kept, as read, in
``Dataset.comment_rows``, and ``repr(dataset)`` says how many there were: they
are part of the file's documented format, so no warning is given.

Observation types and units
---------------------------
Each observation has a type: its ``DVID`` when the table has a DVID column
(nlmixr2's multiple-endpoint convention), otherwise its ``CMT``.  Every type
present gets a unit, recorded in ``Dataset.dv_units`` (``{type: unit}``):
``dv_unit="ng/mL"`` gives that unit to every type except one named "platelets"
(10^9/L); ``dv_unit={1: "ng/mL", 2: "10^9/L"}`` (keys: type numbers or names)
gives each its own.  Units must be one of :func:`dv_units_accepted`, written exactly.

Covariates
----------
Other NONMEM reserved names (DATE, DAT1-3, L1, L2, PCMT, CALL, CONT, XVID1-5)
are accepted and ignored.  Every other column is a covariate (e.g. WT): numbers
stay numbers, text (e.g. SEX = "F") becomes a pandas ``Categorical``, and a
column mixing numbers and text is an error.  A covariate that is constant
within every subject goes into ``Subject.covariates`` (its first non-missing
value); every covariate also stays as a column of ``Subject.observations``,
row by row.

A column whose name is one edit away from a reserved name this reader
understands and the table lacks (ADL, CMTT, BQL, EVD, AMMT, DVI, ...) is
refused, because reading it as a covariate would silently change the data (one
dose instead of seven, a platelet count read as a concentration, a BLQ flag
lost).  Near misses of ID and TIME, which are required, are reported as the
missing column with a "Did you mean".  Rename it, or declare the covariate
columns with ``covariates=[...]``: a declared column is kept whatever its name,
and with the list given every other non-reserved column is an error.  The
well-known covariates in :data:`KNOWN_COVARIATE_NAMES` (RACE, ULOQ, ALT, AST)
are accepted without declaration.

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
the 1-based data row (the line after the header is row 1, comment rows
included), the ID, the column, the value and how to fix it.

>>> data = load_theophylline()
>>> len(data), data.ids[:3]
(12, (1, 2, 3))
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from importlib import resources
from os import PathLike
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from .units import CONC_TO_MG_PER_L, PLATELET_UNIT
from .checks import MAX_DOSE_MG, MAX_HORIZON_H, PKPDInputError
from .regimen import CONC_CMT, DEPOT_CMT, PLATELET_CMT, RECORD_COLUMNS, Regimen

#: Compartments known by default (number -> meaning); override with ``cmt_names``.
DEFAULT_CMT_NAMES: dict[int, str] = {DEPOT_CMT: "depot", CONC_CMT: "central concentration", PLATELET_CMT: "platelets"}

#: Observation compartment used when CMT is absent or missing on an observation row.
DEFAULT_OBS_CMT = CONC_CMT

#: Reserved columns this reader interprets (all numeric).
UNDERSTOOD_COLUMNS = (
    "ID", "TIME", "AMT", "DV", "EVID", "MDV", "CMT", "DVID", "II", "ADDL", "SS", "RATE", "BLQ", "LLOQ",
)

#: The comment-marker column (NONMEM ``IGNORE=C``).
COMMENT_COLUMN = "C"

#: Other NONMEM reserved names: accepted and ignored (never covariates).
IGNORED_RESERVED_COLUMNS = (
    "DATE", "DAT1", "DAT2", "DAT3", "L1", "L2", "PCMT", "CALL", "CONT",
    "XVID1", "XVID2", "XVID3", "XVID4", "XVID5",
)

#: Common covariate names one edit away from an understood reserved name
#: (RACE/RATE, ULOQ/LLOQ, ALT and AST/AMT): covariates without declaration.
KNOWN_COVARIATE_NAMES = ("RACE", "ULOQ", "ALT", "AST")


#: Units of a dataset unless told otherwise.
DEFAULT_UNITS = {"time": "h", "amt": "mg", "dv": "ng/mL"}

#: ``Dataset.units["dv"]`` when no single concentration unit can be named (none,
#: or several and none of them the central concentration).
MIXED_DV_UNIT = "per observation type (see Dataset.dv_units)"

#: Columns of ``Subject.other_events`` besides covariates.
_OTHER_EVENT_COLUMNS = ["time", "evid", "mdv", "cmt", "dv"]

#: Reserved columns kept per observation (lower case there), written after DV.
_EXTRA_RECORD_COLUMNS = ("DVID", "BLQ", "LLOQ")


def dv_units_accepted() -> tuple[str, ...]:
    """DV units accepted by :func:`read_nonmem`: the concentration units of
    :data:`pkpd.units.CONC_TO_MG_PER_L` and the platelet count unit 10^9/L."""
    return tuple(CONC_TO_MG_PER_L) + (PLATELET_UNIT,)


# ============================================================== data classes
@dataclass(frozen=True, eq=False)
class Subject:
    """One subject of a NONMEM dataset.

    id : the ID value of the file.
    regimen : the subject's doses (mg at h), resets included (see module docs).
    observations : one row per observation (EVID 0, MDV 0), sorted by time, with
        columns ``time`` (h), ``dv`` (unit of its type, ``Dataset.dv_units``),
        ``cmt`` (int), then ``dvid`` (int), ``blq`` (0/1) and ``lloq`` when the
        file had them, then one column per covariate (text ones Categorical).
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
    units : ``{"time": "h", "amt": "mg", "dv": <concentration unit>}``.
    dv_units : ``{observation type: unit}`` for every type present (see the
        module docs); default: ``units["dv"]`` for every CMT, 10^9/L for CMT 3.
    dv_type : the column that gives the observation type, "CMT" or "DVID".
    comment_rows : the comment rows left out, as read, indexed by data row
        (1-based); not part of equality, since they hold no data.
    """

    subjects: tuple[Subject, ...]
    units: dict = field(default_factory=lambda: dict(DEFAULT_UNITS))
    dv_units: dict | None = None
    dv_type: str = "CMT"
    comment_rows: pd.DataFrame = field(default_factory=pd.DataFrame)

    def __post_init__(self):
        subjects = tuple(self.subjects)
        for s in subjects:
            if not isinstance(s, Subject):
                raise PKPDInputError(f"Dataset subjects must be Subject objects; got {type(s).__name__}.")
        ids = [s.id for s in subjects]
        dup = [i for i in dict.fromkeys(ids) if ids.count(i) > 1]
        if dup:
            raise PKPDInputError(f"Dataset subject IDs must be unique; ID {dup[0]!r} appears {ids.count(dup[0])} times.")
        if self.dv_type not in ("CMT", "DVID"):
            raise PKPDInputError(f"dv_type must be 'CMT' or 'DVID'; got dv_type={self.dv_type!r}.")
        units = {**DEFAULT_UNITS, **dict(self.units)}
        if units["dv"] != MIXED_DV_UNIT:
            _check_unit("units['dv']", units["dv"])
        if self.dv_units is None:
            column = self.dv_type.lower()
            types = sorted({int(t) for s in subjects if column in s.observations
                            for t in s.observations[column]})
            names = DEFAULT_CMT_NAMES if self.dv_type == "CMT" else {}
            dv_units = {t: PLATELET_UNIT if names.get(t) == "platelets" else units["dv"] for t in types}
        else:
            dv_units = {_python(k): v for k, v in dict(self.dv_units).items()}
            for k, v in dv_units.items():
                _check_unit(f"dv_units[{k!r}]", v)
        object.__setattr__(self, "subjects", subjects)
        object.__setattr__(self, "units", units)
        object.__setattr__(self, "dv_units", dv_units)

    # ------------------------------------------------------------------ container
    def __len__(self) -> int:
        return len(self.subjects)

    def __iter__(self) -> Iterator[Subject]:
        return iter(self.subjects)

    def __eq__(self, other):
        if not isinstance(other, Dataset):
            return NotImplemented
        return (self.units == other.units and self.dv_units == other.dv_units and self.dv_type == other.dv_type
                and self.subjects == other.subjects)

    __hash__ = None

    def __repr__(self) -> str:
        n_obs = sum(len(s.observations) for s in self.subjects)
        n_doses = sum(len(s.regimen) for s in self.subjects)
        if len(self.dv_units) <= 1:
            kinds = next(iter(self.dv_units.values()), self.units["dv"])
        else:
            column = self.dv_type.lower()
            counts = pd.concat([s.observations[column] for s in self.subjects]).value_counts()
            kinds = ", ".join(f"{self.dv_type} {t}: {counts.get(t, 0)} in {u}" for t, u in self.dv_units.items())
        text = f"Dataset: {len(self)} subjects, {n_obs} observations ({kinds}), {n_doses} dose events"
        n_comments = len(self.comment_rows)
        if n_comments:
            text += f"; {n_comments} comment row{'s' if n_comments > 1 else ''} left out (see comment_rows)"
        return text

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
        per-subject columns (time h, dv, cmt, [dvid, blq, lloq], covariates)."""
        frames = [s.observations.assign(ID=s.id) for s in self.subjects if len(s.observations)]
        if not frames:
            return pd.DataFrame(columns=["ID", "time", "dv", "cmt"])
        out = pd.concat(frames, ignore_index=True)
        return out[["ID"] + [c for c in out.columns if c != "ID"]]

    # ------------------------------------------------------------------ writing
    def to_dataframe(self) -> pd.DataFrame:
        """NONMEM records again: ID TIME AMT EVID MDV CMT II ADDL SS DV, then DVID,
        BLQ and LLOQ if present, then the covariates.

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
        extra = [c for c in _EXTRA_RECORD_COLUMNS if c in out.columns]
        covs = [c for c in out.columns if c not in RECORD_COLUMNS and c not in extra]
        out = out[RECORD_COLUMNS + extra + covs]
        for col in ("EVID", "MDV", "CMT", "ADDL", "SS"):
            out[col] = out[col].astype(int)
        for col in ("BLQ", "DVID"):
            if col in out:
                out[col] = out[col].astype(float)
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
    dv_unit: str | Mapping = "ng/mL",
    dvid_names: Mapping[int, str] | None = None,
    covariates: Sequence[str] | None = None,
) -> Dataset:
    """Read and validate a NONMEM-style dataset.

    Parameters
    ----------
    path_or_dataframe : a CSV file ("." or empty = missing) or a DataFrame.
    cmt_names : compartments allowed in CMT, ``{number: meaning}``; default
        :data:`DEFAULT_CMT_NAMES` (1 depot, 2 central concentration, 3 platelets).
        Doses must go to CMT 1 (the depot).
    dv_unit : unit of the DV values, one of :func:`dv_units_accepted`: one unit
        (every observation type but "platelets", which is 10^9/L), or one per
        observation type, ``{type number or name: unit}``, e.g.
        ``{1: "ng/mL", 2: "10^9/L"}`` with DVID.  Recorded in ``Dataset.dv_units``.
    dvid_names : observation types allowed in DVID, ``{number: meaning}``
        (e.g. ``{1: "central concentration", 2: "platelets"}``); default: any
        whole number.  Only with a DVID column.
    covariates : the covariate columns, when they must be declared: a column one
        edit away from a reserved name (e.g. ADL for ADDL) is an error unless
        declared here, and with the list given every other non-reserved column is
        an error.  Default: every non-reserved column is a covariate.

    Returns
    -------
    :class:`Dataset`.  Raises :class:`PKPDInputError` on the first bad row.
    """
    cmt_names = dict(DEFAULT_CMT_NAMES if cmt_names is None else cmt_names)
    if DEPOT_CMT not in cmt_names:
        raise PKPDInputError(
            f"cmt_names must include the depot compartment {DEPOT_CMT} (doses go there); got {sorted(cmt_names)}."
        )
    table = _Table(path_or_dataframe, covariates)
    dv_type = "DVID" if "DVID" in table.df.columns else "CMT"
    if dvid_names is not None and dv_type != "DVID":
        raise PKPDInputError(
            f"dvid_names={dict(dvid_names)!r} was given but the table has no DVID column; "
            f"add the DVID column or drop dvid_names."
        )
    type_names = cmt_names if dv_type == "CMT" else dict(dvid_names or {})
    unit_of = _units_by_type(dv_unit, dv_type, type_names)
    df = table.validated(set(cmt_names), None if dvid_names is None else set(dvid_names))

    # ---- every observation type present has a unit
    obs = (df["EVID"] == 0) & (df["MDV"] == 0)
    kind = df[dv_type]
    no_unit = obs & ~kind.isin(list(unit_of))
    if isinstance(dv_unit, Mapping) and no_unit.any():
        missing = _scalar(kind[no_unit].iloc[0])
        table.fail(no_unit, dv_type, f"dv_unit gives no unit for this observation type (it gives units for "
                   f"{dv_type} {sorted(unit_of)})", f"Add its unit to dv_unit, e.g. {{..., {missing}: 'ng/mL'}}.")
    present = sorted({int(t) for t in kind[obs]})
    if isinstance(dv_unit, Mapping):
        dv_units = {t: unit_of[t] for t in present}
    else:
        dv_units = {t: PLATELET_UNIT if type_names.get(t) == "platelets" else dv_unit for t in present}
        shared = [t for t in present if dv_units[t] == dv_unit]
        if dv_type == "DVID" and len(shared) > 1:
            raise PKPDInputError(
                f"dv_unit: the data have observation types DVID {shared}, and dv_unit={dv_unit!r} cannot say "
                f"which unit each one is in. Give one unit per type, e.g. "
                f"dv_unit={{{shared[0]}: {dv_unit!r}, {shared[1]}: {PLATELET_UNIT!r}}}."
            )
    units = {**DEFAULT_UNITS, "dv": _concentration_unit(dv_unit, dv_units, type_names)}

    covs = table.covariates
    constant = [c for c in covs if (df.groupby("ID", sort=False)[c].nunique(dropna=True) <= 1).all()]
    extra = [c for c in _EXTRA_RECORD_COLUMNS if c in df.columns] + list(covs)
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
        for col in extra:
            name = col.lower() if col in _EXTRA_RECORD_COLUMNS else col
            obs[name] = obs_rows[col].reset_index(drop=True)  # keeps the dtype (Categorical text)
            other[name] = other_rows[col].reset_index(drop=True)
        if "dvid" in obs:
            obs["dvid"] = obs["dvid"].astype(int)
        first = {c: rows[c].dropna() for c in constant}
        cov_values = {c: (_python(v.iloc[0]) if len(v) else np.nan) for c, v in first.items()}
        subjects.append(Subject(_scalar(sid), regimen, obs, cov_values, other))
    return Dataset(tuple(subjects), units, dv_units, dv_type, table.comments)


def _check_unit(name: str, unit) -> None:
    """Raise unless ``unit`` is an accepted DV unit, written exactly."""
    accepted = dv_units_accepted()
    if isinstance(unit, str) and unit in accepted:
        return
    close = [u for u in accepted if isinstance(unit, str) and u.lower() == unit.strip().lower()]
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise PKPDInputError(
        f"{name}={unit!r} is not a known DV unit; use one of {list(accepted)}, written exactly.{hint}"
    )


def _units_by_type(dv_unit, dv_type: str, names: dict) -> dict:
    """``{type number: unit}`` from a ``dv_unit`` mapping (keys numbers or names),
    ``{}`` for a single unit; checks every unit and key."""
    if not isinstance(dv_unit, Mapping):
        _check_unit("dv_unit", dv_unit)
        return {}
    if not dv_unit:
        raise PKPDInputError("dv_unit={} gives no unit; give one unit, or one per observation type.")
    by_name = {v: k for k, v in names.items()}
    out = {}
    for key, unit in dv_unit.items():
        _check_unit(f"dv_unit[{key!r}]", unit)
        if isinstance(key, str) and not key.strip().lstrip("-").isdigit():
            if key not in by_name:
                raise PKPDInputError(
                    f"dv_unit: key {key!r} is not the name of an observation type ({dv_type} names: "
                    f"{names or 'none given'}); use the {dv_type} number, or one of those names."
                )
            number = by_name[key]
        else:
            number = _scalar(pd.to_numeric(key, errors="coerce"))
            if not isinstance(number, int):
                raise PKPDInputError(f"dv_unit: key {key!r} is not a whole {dv_type} number or a type name.")
            if dv_type == "CMT" and number not in names:
                raise PKPDInputError(
                    f"dv_unit: key {key!r} is not a compartment of cmt_names ({sorted(names)}); "
                    f"use a known CMT, or pass cmt_names."
                )
        if number in out and out[number] != unit:
            raise PKPDInputError(f"dv_unit gives {dv_type} {number} two units, {out[number]!r} and {unit!r}.")
        out[number] = unit
    return out


def _concentration_unit(dv_unit, dv_units: dict, names: dict) -> str:
    """``Dataset.units["dv"]``: the single dv_unit, else the unit of the central
    concentration type, else the one concentration unit present."""
    if not isinstance(dv_unit, Mapping):
        return dv_unit
    central = [u for t, u in dv_units.items() if names.get(t) == "central concentration"]
    if central:
        return central[0]
    conc = {u for u in dv_units.values() if u != PLATELET_UNIT}
    return conc.pop() if len(conc) == 1 else MIXED_DV_UNIT


class _Table:
    """The raw table plus everything needed to name a row in an error message."""

    def __init__(self, source, covariates=None):
        if isinstance(source, pd.DataFrame):
            raw = source.copy().reset_index(drop=True)
            self.origin = "DataFrame"
            names = list(raw.columns)
        else:
            try:
                # Text first, header as a row: pandas would rename a duplicate column (WT -> WT.1).
                grid = pd.read_csv(source, header=None, dtype=str, na_values=["."], skipinitialspace=True)
            except FileNotFoundError:
                raise PKPDInputError(f"NONMEM file not found: {source!s}. Check the path.") from None
            except pd.errors.EmptyDataError:
                raise PKPDInputError(f"NONMEM file {source!s} is empty; it needs a header row and data rows.") from None
            except pd.errors.ParserError as exc:  # e.g. "Expected 11 fields in line 3, saw 12"
                detail = str(exc).split("C error: ")[-1].strip().rstrip(".")
                raise PKPDInputError(
                    f"NONMEM file {source!s} is not a regular table: {detail}. Every line needs as many "
                    f"comma-separated fields as the header."
                ) from None
            self.origin = str(source)
            names = list(grid.iloc[0])
            raw = grid.iloc[1:].reset_index(drop=True)
            raw.columns = range(raw.shape[1])
        self._check_names(names)
        raw.columns = [str(n).strip() for n in names]
        self.row = np.arange(len(raw))  # original 0-based data row of each kept row
        self.df = self._canonical_columns(raw)
        keep = ~self._comment_mask(self.df)
        self.comments = raw[~keep].set_axis(self.row[~keep] + 1, axis=0).rename_axis("data row")
        self.df = self.df[keep].reset_index(drop=True)
        self.row = self.row[keep]
        if len(self.df) == 0:
            extra = f" ({len(self.comments)} comment rows were left out)" if len(self.comments) else ""
            raise PKPDInputError(
                f"the NONMEM table has no data rows{extra}; give at least one dose or observation row."
            )
        self._require_id_and_time()
        self.covariates = self._covariate_columns(covariates)
        ids = self.df["ID"]
        numeric = pd.to_numeric(ids, errors="coerce")
        if (numeric.notna() | ids.isna()).all():
            self.df["ID"] = numeric
        else:
            self.df["ID"] = ids.map(lambda v: v.strip() if isinstance(v, str) else v)
        for col in self.covariates:
            self.df[col] = self._covariate_values(col)

    # ---------------------------------------------------------------- messages
    def where(self, i: int) -> str:
        """'data row 5 (ID 1)' for the 0-based position i."""
        sid = self.df["ID"].iloc[i] if "ID" in self.df else None
        if isinstance(sid, str):  # read as text, not yet converted
            text = sid.strip()
            number = pd.to_numeric(text, errors="coerce") if text else np.nan
            sid = number if not pd.isna(number) else (text or None)
        row = int(self.row[i])
        line = f", line {row + 2} of {self.origin}" if self.origin != "DataFrame" else ""
        id_text = f"ID {_scalar(sid)!r}" if sid is not None and not pd.isna(sid) else "ID missing"
        return f"data row {row + 1} ({id_text}{line})"

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
    def _check_names(names) -> None:
        for k, name in enumerate(names):
            if name is None or (isinstance(name, float) and np.isnan(name)) or not str(name).strip():
                raise PKPDInputError(f"column {k + 1} of the header has no name; name it or remove the column.")
        seen = {}
        for name in names:
            key = str(name).strip()
            if key in seen:
                raise PKPDInputError(
                    f"column {key!r} appears twice in the header; keep only one of them (or rename one)."
                )
            seen[key] = True

    def _comment_mask(self, raw: pd.DataFrame) -> np.ndarray:
        """Comment rows: a set C cell (letter, '#' or '@'), or a first cell starting with '#'."""
        text = lambda s: s.map(lambda v: "" if pd.isna(v) else str(v).strip())  # noqa: E731
        mask = np.array(text(raw.iloc[:, 0]).str.startswith("#"), dtype=bool)
        if COMMENT_COLUMN in raw.columns:
            cell = text(raw[COMMENT_COLUMN])
            marked = cell.map(lambda v: bool(v) and (v[0].isalpha() or v[0] in "#@")).to_numpy()
            odd = (cell != "").to_numpy() & ~marked & ~mask
            self.fail(odd, COMMENT_COLUMN, "the C column marks comment rows (NONMEM IGNORE=C) with a letter, "
                      "'#' or '@'", "Leave C empty or '.' on data rows, or put 'C' to leave the row out.",
                      values=cell)
            mask |= marked
        return mask

    @staticmethod
    def _canonical_columns(raw: pd.DataFrame) -> pd.DataFrame:
        """Upper-case the reserved names (TIME, time and Time are the same column)."""
        names = {}
        for col in raw.columns:
            name = str(col).strip()
            if name.upper() in _RESERVED:
                name = name.upper()
            if name in names.values():
                first = next(k for k, v in names.items() if v == name)
                raise PKPDInputError(
                    f"columns {first!r} and {col!r} both mean {name}; keep only one of them."
                )
            names[col] = name
        return raw.rename(columns=names)

    def _require_id_and_time(self) -> None:
        df = self.df
        for required in ("ID", "TIME"):
            if required not in df.columns:
                close = difflib.get_close_matches(required, [str(c).upper() for c in df.columns], n=1, cutoff=0.6)
                hint = f" Did you mean {close[0]!r}? Rename it to {required}." if close else f" Add a {required} column."
                raise PKPDInputError(
                    f"column {required} is missing; the table has columns {list(map(str, df.columns))}.{hint}"
                )

    def _covariate_columns(self, declared) -> list[str]:
        """The non-reserved columns, checked against near-miss names or ``declared``."""
        others = [c for c in self.df.columns if c not in _RESERVED]
        if declared is not None:
            if isinstance(declared, str):
                raise PKPDInputError(f"covariates must be a list of column names; got the string {declared!r}.")
            declared = [str(c) for c in declared]
            for name in declared:
                if name.upper() in _RESERVED:
                    raise PKPDInputError(
                        f"covariates: {name!r} is a reserved NONMEM name, read as such; remove it from covariates."
                    )
                if name not in others:
                    raise PKPDInputError(
                        f"covariates: column {name!r} is not in the table; the non-reserved columns are {others}."
                    )
            undeclared = [c for c in others if c not in declared]
            if undeclared:
                raise PKPDInputError(
                    f"column {undeclared[0]!r} is neither a reserved NONMEM name nor in covariates={declared!r}; "
                    f"add it to covariates, or remove the column from the table."
                )
            return others
        for col in others:
            if col.upper() in KNOWN_COVARIATE_NAMES:
                continue
            # Only a reserved column the table lacks can have been misspelt (NTIME beside TIME is nominal time).
            near = [r for r in _NEAR_MISS_TARGETS if r not in self.df.columns and _edit_distance(col.upper(), r) == 1]
            if near:
                alts = " or ".join(near)
                raise PKPDInputError(
                    f"column {col!r} looks like {alts}; did you mean {near[0]}? Rename it, or pass "
                    f"covariates={others!r} (every covariate column) to keep it as a covariate."
                )
        return others

    def _covariate_values(self, col: str) -> pd.Series:
        """Numbers as numbers, text as a Categorical; a mix is an error."""
        values = self.df[col]
        if pd.api.types.is_numeric_dtype(values) or isinstance(values.dtype, pd.CategoricalDtype):
            return values
        numeric = pd.to_numeric(values, errors="coerce")
        is_number = numeric.notna()
        given = values.notna()
        if (is_number | ~given).all():
            return pd.to_numeric(values)
        if is_number.any():
            self.fail(given & ~is_number, col, f"it is text, but other rows of {col} are numbers (e.g. "
                      f"{_scalar(numeric[is_number].iloc[0])!r})",
                      "Use a number or '.' for missing, or text on every row for a categorical covariate.")
        text = values.map(lambda v: v.strip() if isinstance(v, str) else v)
        return pd.Series(pd.Categorical(text), index=values.index, name=col)

    def validated(self, allowed_cmts: set[int], allowed_dvids: set[int] | None = None) -> pd.DataFrame:
        """The table with every reserved column present, numeric and checked."""
        df = self.df

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
        self.fail(df["TIME"] > MAX_HORIZON_H, "TIME", f"TIME must be at most {MAX_HORIZON_H:g} h (20 years)",
                  "Give TIME in hours (minutes or seconds are a common slip), or split the study.")
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
        self.fail(dose_row & (amt > MAX_DOSE_MG), "AMT", f"a dose must be at most {MAX_DOSE_MG:g} mg",
                  "Give AMT in mg (a larger value is usually a unit slip, e.g. micrograms).", amt)
        self.fail(~np.isfinite(df["II"]) | (df["II"] < 0), "II", "II must be a finite interval >= 0 h", "Fix II (h).")
        self.fail((df["SS"] > 0) & (df["II"] <= 0), "II", "a steady-state dose (SS 1 or 2) needs the dosing "
                  "interval II > 0 h", "Give II, the interval in h between the steady-state doses.")
        self.fail((df["ADDL"] < 0) | (df["ADDL"] != np.round(df["ADDL"])), "ADDL",
                  "ADDL must be a whole number >= 0", "Give the number of additional doses.")
        self.fail(~dose_row & (df["ADDL"] != 0), "ADDL", "only dose rows (EVID 1 or 4) may have additional doses",
                  "Set ADDL to 0 on this row.")
        self.fail((df["ADDL"] > 0) & (df["II"] <= 0), "II", "ADDL additional doses need the interval II > 0 h",
                  "Give II, the interval in h between the additional doses.")
        last = df["TIME"] + df["ADDL"] * df["II"]
        self.fail(dose_row & (last > MAX_HORIZON_H), "ADDL", f"the additional doses would run to "
                  f"TIME + ADDL x II beyond {MAX_HORIZON_H:g} h (20 years)",
                  "Check ADDL and II (h); split a longer study into consecutive datasets.")

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

        # ---- DVID: the observation type of observation rows
        obs = (evid == 0) & (df["MDV"] == 0)
        if "DVID" in df:
            dvid = df["DVID"]
            self.fail(obs & dvid.isna(), "DVID", "an observation row (EVID 0, MDV 0) needs its observation type",
                      "Fill in DVID, or set MDV=1 if the row is not an observation.")
            self.fail(obs & (dvid != np.round(dvid)), "DVID", "DVID must be a whole number",
                      "Number the observation types 1, 2, ...")
            if allowed_dvids is not None:
                known = sorted(allowed_dvids)
                self.fail(obs & ~dvid.isin(known), "DVID", f"unknown observation type (known: {known})",
                          "Use a known DVID, or add it to dvid_names={number: name, ...}.")

        # ---- DV, BLQ, LLOQ
        if "DV" not in df and obs.any():
            i = int(np.flatnonzero(obs.to_numpy())[0])
            raise PKPDInputError(
                f"column DV is missing, but {self.where(i)} is an observation (EVID 0, MDV 0); add the DV column, "
                f"or mark rows that are not observations with MDV=1."
            )
        dv = df["DV"] if "DV" in df else pd.Series(np.nan, index=df.index)
        df["DV"] = dv
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
                out[col.upper() if col.upper() in _EXTRA_RECORD_COLUMNS else col] = frame[col].to_numpy()
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
    for col in [c for c in out.columns if c not in RECORD_COLUMNS and c != "_order" and c not in _EXTRA_RECORD_COLUMNS]:
        if col in s.covariates:
            out.loc[is_dose, col] = s.covariates[col]
        else:
            filled = out[col].where(~is_dose).bfill().ffill()
            out.loc[is_dose, col] = filled[is_dose]
    return out.drop(columns="_order")


# ============================================================== small helpers
_RESERVED = frozenset(UNDERSTOOD_COLUMNS) | frozenset(IGNORED_RESERVED_COLUMNS) | {COMMENT_COLUMN}

#: Names checked for near misses: the understood ones (a misread one changes the
#: data); the one-letter C would match every one- or two-letter name.
_NEAR_MISS_TARGETS = UNDERSTOOD_COLUMNS


def _edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and
    swaps of neighbours each count 1 (BQL -> BLQ is one edit)."""
    d = np.zeros((len(a) + 1, len(b) + 1), dtype=int)
    d[:, 0] = np.arange(len(a) + 1)
    d[0, :] = np.arange(len(b) + 1)
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i, j] = min(d[i, j], d[i - 2, j - 2] + 1)
    return int(d[-1, -1])

def _python(x):
    """numpy scalar -> the equal Python scalar."""
    return x.item() if isinstance(x, np.generic) else x


def _scalar(x):
    """Like :func:`_python`, but integral floats become int (IDs, row values in messages)."""
    x = _python(x)
    if isinstance(x, float) and np.isfinite(x) and abs(x) < 2**53 and x == int(x):
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
