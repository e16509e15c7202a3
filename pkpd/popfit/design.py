"""Turn a :class:`pkpd.nonmem.Dataset` into the flat arrays a population model needs.

Observations of every subject are stacked into one vector per compartment (CMT),
with an integer ``subject`` index; each observation's active doses are laid
out in a padded ``(n_obs, n_doses)`` :class:`DoseDesign`, so the likelihood is
one vectorised expression over all subjects (no per-subject graph node).

Which doses are *active* for an observation at time t (NONMEM event order: a
dose at exactly t counts before the observation):

* doses at or before t,
* from the last "cut" on: a reset (EVID 3/4) empties the system, and a
  steady-state dose with SS=1 replaces what earlier doses left.  SS=2 doses add
  to the past and cut nothing.

Units: times h, amounts mg; DV as in ``Dataset.units["dv"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike

import numpy as np
import pandas as pd

from ..checks import PKPDInputError
from ..nonmem import Dataset, read_nonmem
from ..regimen import CONC_CMT, PLATELET_CMT, Regimen  # noqa: F401 (re-exported: popfit's observation compartments)


@dataclass(frozen=True)
class DoseDesign:
    """Active doses of each observation, padded to a rectangle (what superposition
    needs), and each observation's dose episode (what a nonlinear model integrating
    the doses in sequence needs).

    tau : (n_obs, n_doses) h from each active dose to the observation (0 on padding).
    amount : (n_obs, n_doses) mg (0 on padding, so padding contributes nothing).
    ii : (n_obs, n_doses) h, steady-state dosing interval (1.0 where not steady
        state, a safe value that keeps unused PyTensor branches finite).
    steady : (n_obs, n_doses) bool, dose is a steady-state train (SS 1 or 2).
    time : (n_obs,) h, the observation times.
    episode : (n_obs,) int, the observation's index into ``episodes``.
    episodes : one :class:`DoseEpisode` per subject and reset: the doses from an
        empty system on.
    """

    tau: np.ndarray
    amount: np.ndarray
    ii: np.ndarray
    steady: np.ndarray
    time: np.ndarray | None = None
    episode: np.ndarray | None = None
    episodes: tuple = ()

    @property
    def any_steady(self) -> bool:
        return bool(self.steady.any())

    @property
    def n_doses(self) -> int:
        return self.tau.shape[1]

    def take(self, rows) -> "DoseDesign":
        """The design of a subset of observations."""
        rows = np.asarray(rows)
        sub = (lambda a: None if a is None else a[rows])  # noqa: E731
        return DoseDesign(self.tau[rows], self.amount[rows], self.ii[rows], self.steady[rows],
                          sub(self.time), sub(self.episode), self.episodes)

    def sequence(self) -> tuple:
        """The observations grouped by episode, for kernels that integrate the doses
        in sequence: ``episodes`` (E, 5) int64 rows ``(subject, first, end, first
        dose, end dose)`` into ``order`` (n_obs,) (observation rows by episode, then
        time), ``time`` (n_obs,) h in that order, and ``dose_time`` (h) /
        ``dose_amount`` (mg) of all episodes' doses, concatenated."""
        n = self.tau.shape[0]
        if self.episode is None:
            raise ValueError("this DoseDesign has no dose episodes; build it with dose_design()")
        order = np.lexsort((self.time, self.episode)).astype(np.int64)
        counts = np.bincount(self.episode, minlength=len(self.episodes)) if n else np.zeros(len(self.episodes), int)
        ends = np.cumsum(counts)
        dose_counts = np.array([ep.times.size for ep in self.episodes], dtype=np.int64)
        dose_ends = np.cumsum(dose_counts)
        table = np.zeros((len(self.episodes), 5), np.int64)
        for e, ep in enumerate(self.episodes):
            table[e] = (ep.subject, ends[e] - counts[e], ends[e], dose_ends[e] - dose_counts[e], dose_ends[e])
        dose_time = np.concatenate([ep.times for ep in self.episodes] + [np.zeros(0)])
        dose_amount = np.concatenate([ep.amounts for ep in self.episodes] + [np.zeros(0)])
        return (table, order, np.ascontiguousarray(self.time[order], dtype=float),
                np.ascontiguousarray(dose_time, dtype=float), np.ascontiguousarray(dose_amount, dtype=float))


@dataclass(frozen=True)
class DoseEpisode:
    """The doses of one subject from an empty system on (its first dose, or a
    reset, EVID 3/4) up to the next reset.  subject : index; times : (n,) h;
    amounts : (n,) mg; steady : any of them a steady-state dose (SS 1/2)."""

    subject: int
    times: np.ndarray
    amounts: np.ndarray
    steady: bool = False


def dose_design(regimens, subject, times) -> DoseDesign:
    """Padded design of the doses active at each ``(subject[i], times[i])``.

    regimens : sequence of :class:`Regimen`, one per subject index.
    subject : (n,) int index into ``regimens``.  times : (n,) h.
    """
    subject = np.asarray(subject, dtype=int)
    times = np.asarray(times, dtype=float)
    n = times.size
    per_obs = []  # (obs rows, dose indices (rows x width), regimen arrays)
    width = 1
    episode = np.zeros(n, dtype=np.int64)
    episodes = []
    for s in np.unique(subject):
        reg: Regimen = regimens[s]
        rows = np.flatnonzero(subject == s)
        episode[rows] = _episodes(int(s), reg, times[rows], episodes)
        if len(reg) == 0:
            continue
        t_dose = reg.times
        cut = np.array([d.reset or d.ss == 1 for d in reg.doses])
        # index of the last cut at or before each dose (0 if none)
        cut_idx = np.maximum.accumulate(np.where(cut, np.arange(len(reg)), 0))
        last = np.searchsorted(t_dose, times[rows], side="right") - 1
        first = np.where(last >= 0, cut_idx[np.maximum(last, 0)], 0)
        count = np.where(last >= 0, last - first + 1, 0)
        width = max(width, int(count.max(initial=0)))
        per_obs.append((rows, first, count, reg))
    tau = np.zeros((n, width))
    amount = np.zeros((n, width))
    ii = np.ones((n, width))
    steady = np.zeros((n, width), dtype=bool)
    for rows, first, count, reg in per_obs:
        t_dose, amt = reg.times, reg.amounts
        ss = np.array([d.ss for d in reg.doses])
        d_ii = np.array([d.ii for d in reg.doses])
        j = first[:, None] + np.arange(width)[None, :]
        valid = np.arange(width)[None, :] < count[:, None]
        jj = np.where(valid, j, 0)
        tau[rows] = np.where(valid, times[rows][:, None] - t_dose[jj], 0.0)
        amount[rows] = np.where(valid, amt[jj], 0.0)
        is_ss = valid & (ss[jj] > 0)
        steady[rows] = is_ss
        ii[rows] = np.where(is_ss, d_ii[jj], 1.0)
    return DoseDesign(tau, amount, ii, steady, times, episode, tuple(episodes))


def _episodes(subject: int, reg: Regimen, times: np.ndarray, episodes: list) -> np.ndarray:
    """Append the :class:`DoseEpisode` s of one subject's ``reg`` to ``episodes``
    (a reset starts a new one) and return the episode index of each of its
    observation ``times`` (NONMEM order: a dose or reset at t comes first)."""
    t_dose = reg.times
    starts = [0] + [k for k, d in enumerate(reg.doses) if d.reset and k > 0]
    first = len(episodes)
    for lo, hi in zip(starts, starts[1:] + [len(reg)]):
        doses = reg.doses[lo:hi]
        episodes.append(DoseEpisode(subject, np.array([d.time for d in doses], dtype=float),
                                    np.array([d.amount for d in doses], dtype=float), any(d.ss for d in doses)))
    if len(reg) == 0:
        return np.full(times.size, first, dtype=np.int64)
    last = np.searchsorted(t_dose, times, side="right") - 1  # last dose at or before each observation
    k = np.searchsorted(np.array(starts), np.maximum(last, 0), side="right") - 1
    return (first + k).astype(np.int64)


@dataclass(frozen=True)
class ObservationBlock:
    """All observations of one compartment, stacked over subjects.

    Rows are ordered quantified first, then BLQ (M3) rows, each part in subject
    then time order; ``n_quantified`` splits them.

    time : h.  dv : observed value (DV unit; for BLQ rows whatever the file held).
    subject : int index into :attr:`FitData.ids`.  blq : bool.  lloq : limit of
    quantification for BLQ rows (DV unit), NaN elsewhere.  design : the doses
    active at each observation.  regimens : the :class:`Regimen` of every
    subject index (:attr:`FitData.regimens`), for predictions that need the
    doses themselves rather than the padded design.
    """

    cmt: int
    time: np.ndarray
    dv: np.ndarray
    subject: np.ndarray
    blq: np.ndarray
    lloq: np.ndarray
    design: DoseDesign
    unit: str
    regimens: tuple = ()

    @property
    def n(self) -> int:
        return self.time.size

    @property
    def n_quantified(self) -> int:
        return int((~self.blq).sum())

    @property
    def n_blq(self) -> int:
        return int(self.blq.sum())


@dataclass(frozen=True)
class FitData:
    """A dataset flattened for population fitting.

    ids : subject IDs (index order).  regimens : one :class:`Regimen` per subject.
    covariates : DataFrame indexed by ID (time-constant covariates).
    blocks : ``{cmt: ObservationBlock}``.  units : the dataset's units.
    excluded : observations left out of the likelihood, with the reason.
    """

    ids: tuple
    regimens: tuple
    covariates: pd.DataFrame
    blocks: dict
    units: dict
    excluded: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def n_subjects(self) -> int:
        return len(self.ids)

    def block(self, cmt: int) -> ObservationBlock:
        if cmt not in self.blocks:
            raise PKPDInputError(
                f"the data have no observations with CMT {cmt}; CMTs present: {sorted(self.blocks)}. "
                f"Check the CMT column or the model's endpoints."
            )
        return self.blocks[cmt]

    def covariate(self, name: str) -> np.ndarray:
        """Per-subject values of a time-constant covariate (checked finite and > 0)."""
        if name not in self.covariates.columns:
            raise PKPDInputError(
                f"covariate {name!r} is not a time-constant covariate of the data; available: "
                f"{list(self.covariates.columns)}. Add the column to the dataset or remove the covariate."
            )
        values = self.covariates[name].to_numpy(float)
        bad = ~np.isfinite(values) | (values <= 0)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise PKPDInputError(
                f"covariate {name!r} of subject ID {self.ids[i]!r} is {values[i]!r}; a power covariate model "
                f"needs finite values > 0. Impute or correct it."
            )
        return values


def as_dataset(data, dv_unit: str | None = None) -> Dataset:
    """A :class:`Dataset` from a Dataset, a NONMEM DataFrame or a CSV path.

    ``dv_unit`` is required for a DataFrame or path (the file does not say it).
    """
    if isinstance(data, Dataset):
        if dv_unit is not None and dv_unit != data.units["dv"]:
            raise PKPDInputError(
                f"dv_unit={dv_unit!r} but the Dataset's DV unit is {data.units['dv']!r}; "
                f"convert the data explicitly or drop dv_unit."
            )
        return data
    if isinstance(data, (str, PathLike, pd.DataFrame)):
        if dv_unit is None:
            raise PKPDInputError(
                "dv_unit is required when data is a path or DataFrame (e.g. dv_unit='mg/L' for theophylline, "
                "'ng/mL' for hetrombopag); or pass a Dataset from pkpd.read_nonmem."
            )
        return read_nonmem(data, dv_unit=dv_unit)
    raise PKPDInputError(
        f"data must be a pkpd Dataset, a NONMEM DataFrame or a CSV path; got {type(data).__name__}."
    )


def flatten(dataset: Dataset, cmts=(CONC_CMT,), drop_predose: bool = True) -> FitData:
    """Stack the observations of the given compartments for fitting.

    drop_predose : leave out concentrations that no dose can explain yet (before
        the first dose of the subject, prediction identically 0).  Keeping them
        needs an additive error.  These and observations of compartments not in
        ``cmts`` are listed, with the reason, in ``FitData.excluded``.
    """
    subjects = dataset.subjects
    if not subjects:
        raise PKPDInputError("the dataset has no subjects; give at least one subject with doses and observations.")
    if dataset.dv_type != "CMT":
        # the fit's blocks are compartments; guessing which DVID is which would mix endpoints
        raise PKPDInputError(
            f"the dataset's observation types come from DVID {sorted(dataset.dv_units)}, but the fit selects "
            f"observations by CMT ({CONC_CMT} concentrations, {PLATELET_CMT} platelets). Set CMT on each "
            "observation row to its compartment, and read the file again."
        )
    ids = tuple(s.id for s in subjects)
    regimens = tuple(s.regimen for s in subjects)
    covariates = pd.DataFrame([s.covariates for s in subjects], index=pd.Index(ids, name="ID"))
    frames = []
    for k, s in enumerate(subjects):
        obs = s.observations
        if len(obs) == 0:
            continue
        f = pd.DataFrame({
            "subject": k,
            "time": obs["time"].to_numpy(float),
            "dv": obs["dv"].to_numpy(float),
            "cmt": obs["cmt"].to_numpy(int) if "cmt" in obs else CONC_CMT,
            "blq": (obs["blq"].fillna(0).to_numpy(float) == 1) if "blq" in obs else False,
            "lloq": obs["lloq"].to_numpy(float) if "lloq" in obs else np.nan,
        })
        frames.append(f)
    if not frames:
        raise PKPDInputError("the dataset has no observations; nothing to fit.")
    table = pd.concat(frames, ignore_index=True)
    bad = table["blq"] & ~(np.isfinite(table["lloq"]) & (table["lloq"] > 0))
    if bad.any():
        r = table[bad].iloc[0]
        raise PKPDInputError(
            f"LLOQ: observation of subject ID {ids[int(r.subject)]!r} at {r.time:g} h is flagged BLQ=1 but its "
            f"LLOQ is {r.lloq!r}; the M3 likelihood needs the limit of quantification (> 0, DV unit). "
            f"Fill in the LLOQ column."
        )
    first_dose = np.array([reg.times[0] if len(reg) else np.inf for reg in regimens])
    first_ss = np.array([bool(len(reg)) and reg.doses[0].ss > 0 for reg in regimens])
    subj = table["subject"].to_numpy()
    t, fd = table["time"].to_numpy(), first_dose[subj]
    # A concentration before (or at) the first dose is identically 0 in the model unless that dose is a
    # steady-state train.  Other compartments (e.g. baseline platelets) are informative and always kept.
    predose = ((t < fd) | ((t <= fd) & ~first_ss[subj])) & (table["cmt"].to_numpy() == CONC_CMT)
    drop = predose & drop_predose
    other_cmt = ~table["cmt"].isin(cmts).to_numpy()
    excluded = pd.concat([
        table[drop].assign(reason="concentrations before the first dose (prediction 0)"),
        table[other_cmt].assign(reason=[f"observations of CMT {c} (not in the model)" for c in table["cmt"][other_cmt]]),
    ])
    excluded["ID"] = [ids[i] for i in excluded["subject"]]
    keep = table[~drop & ~other_cmt]
    blocks = {}
    for cmt in cmts:
        part = keep[keep["cmt"] == cmt]
        if len(part) == 0:
            continue
        part = part.sort_values(["blq", "subject", "time"], kind="stable")
        design = dose_design(regimens, part["subject"].to_numpy(), part["time"].to_numpy())
        blocks[cmt] = ObservationBlock(
            cmt=cmt,
            time=part["time"].to_numpy(float),
            dv=part["dv"].to_numpy(float),
            subject=part["subject"].to_numpy(int),
            blq=part["blq"].to_numpy(bool),
            lloq=np.where(part["blq"], part["lloq"], np.nan).astype(float),
            design=design,
            unit=dataset.dv_units.get(cmt, dataset.units["dv"]),
            regimens=regimens,
        )
    if not blocks:
        left_out = "".join(f"; left out: {n} {reason}" for reason, n in excluded["reason"].value_counts().items())
        raise PKPDInputError(
            f"no observations with CMT in {list(cmts)} left to fit (CMTs in the data: "
            f"{sorted(int(c) for c in table['cmt'].unique())}{left_out}); add observations after the first dose."
        )
    return FitData(ids, regimens, covariates, blocks, dict(dataset.units), excluded.reset_index(drop=True))
