"""Virtual dose-titration trials: design in, endpoint tables out.

A :class:`Trial` is a small frozen design: arms (a start dose with a
:class:`~pkpd.titration.TitrationRule`, a fixed dose, or placebo = fixed 0 mg),
patients per arm, duration, visit schedule, the population model and the
endpoint definitions (:class:`Endpoints`).  :meth:`Trial.run` simulates it, with
any number of replicate trials, and returns a :class:`TrialResult` of pandas
DataFrames.

How it runs (fast path, no per-patient Python loop):

* every patient of every arm and replicate goes into one
  :class:`~pkpd.pd.PKPDSolver` (in chunks of at most ``max_chunk`` patients);
* the solver advances visit by visit from its previous state; at each visit
  the true count gets the model's visit-to-visit noise
  (``model.residual_plt``) and each arm's rule decides for all its patients at
  once on the *observed* count;
* once-daily doses at 0, 24, 48 ... h; a visit on day d is in the morning,
  before that day's dose, and its decision applies from that dose on.

Units: days for the design, h in NONMEM records, mg, 10^9/L.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from . import titration as tt
from .checks import PKPDInputError, nonnegative, positive
from .models import PARAMETER_UNITS, PARAMETERS, PKPDModel, hetrombopag
from .regimen import DEPOT_CMT, RECORD_COLUMNS
from .simulate import solver_for
from .titration import TitrationRule

#: NONMEM compartment of platelet observations (as in :data:`pkpd.nonmem.DEFAULT_CMT_NAMES`).
PLATELET_CMT = 3

#: Patients simulated together in one solver at most (memory ~1 kB per patient).
MAX_CHUNK = 50_000


def _whole_days(name: str, value, allow_zero: bool = False) -> float:
    """A whole, finite number of days (the simulation grid is daily)."""
    arr = nonnegative(name, value, "days") if allow_zero else positive(name, value, "days")
    if arr.ndim != 0 or arr != np.round(arr):
        raise PKPDInputError(f"{name} must be a whole number of days; got {value!r}. Round it to full days.")
    return float(arr)


# ================================================================= design
@dataclass(frozen=True)
class Arm:
    """One trial arm.

    name : label in tables and plots.
    n : patients per trial.
    start_mg : once-daily dose from day 0, mg (0 with no rule = placebo).
    rule : titration rule; None keeps ``start_mg`` throughout (fixed dose).
    """

    name: str
    n: int
    start_mg: float
    rule: TitrationRule | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise PKPDInputError(f"arm name must be a non-empty text; got {self.name!r}.")
        if isinstance(self.n, bool) or int(self.n) != self.n or self.n < 1:
            raise PKPDInputError(f"arm {self.name!r}: n (patients) must be a whole number >= 1; got {self.n!r}.")
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "start_mg", float(nonnegative(f"arm {self.name!r} start_mg", self.start_mg, "mg")))
        if self.rule is not None:
            if not isinstance(self.rule, TitrationRule):
                raise PKPDInputError(f"arm {self.name!r}: rule must be a TitrationRule or None; got {type(self.rule).__name__}.")
            self.rule.start(self.start_mg, 1)  # on the ladder and above 0 mg

    @property
    def kind(self) -> str:
        """'titration', 'fixed' or 'placebo'."""
        if self.rule is not None:
            return "titration"
        return "placebo" if self.start_mg == 0 else "fixed"


@dataclass(frozen=True)
class Endpoints:
    """Endpoint definitions (thresholds in 10^9/L, days since the first dose).

    response : a count >= this is a response (50, the phase III primary
        endpoint; Mei et al., J Hematol Oncol 2021;14:37).
    primary_day : day of the primary assessment (56 = week 8); None = none.
    target : (low, high) range for time in range, 10^9/L (50-250, the
        phase III titration target).
    above, below : thresholds for time above (400) and time below (30).
    stopped_as_nonresponders : patients whose treatment was stopped before the
        primary day count as non-responders there (intention to treat) [I].
    """

    response: float = 50.0
    primary_day: float | None = 56.0
    target: tuple[float, float] = (50.0, 250.0)
    above: float = 400.0
    below: float = 30.0
    stopped_as_nonresponders: bool = True

    def __post_init__(self):
        positive("endpoints response", self.response, "10^9/L")
        if self.primary_day is not None:
            object.__setattr__(self, "primary_day", _whole_days("endpoints primary_day", self.primary_day))
        target = positive("endpoints target", self.target, "10^9/L")
        if target.shape != (2,) or not target[0] < target[1]:
            raise PKPDInputError(f"endpoints target must be [low, high] with low < high (10^9/L); got {self.target!r}, e.g. [50, 250].")
        object.__setattr__(self, "target", (float(target[0]), float(target[1])))
        positive("endpoints above", self.above, "10^9/L")
        positive("endpoints below", self.below, "10^9/L")


@dataclass(frozen=True)
class Trial:
    """A virtual trial design.

    arms : the arms (names unique).
    duration_days : last day of follow-up; platelets are reported daily to it.
    visit_every_days : assessment visits every this many days (days), plus
        day 0 (baseline).  Each titrated arm also decides on its rule's days.
    treatment_days : dosing stops after this many days (None = whole trial).
    model : population model (default ``hetrombopag("itp")``).
    endpoints : endpoint definitions.
    name : label.
    """

    arms: tuple[Arm, ...]
    duration_days: float = 56.0
    visit_every_days: float = 7.0
    treatment_days: float | None = None
    model: PKPDModel = field(default_factory=lambda: hetrombopag("itp"))
    endpoints: Endpoints = Endpoints()
    name: str = "virtual trial"

    def __post_init__(self):
        arms = tuple(self.arms)
        if not arms or not all(isinstance(a, Arm) for a in arms):
            raise PKPDInputError("arms must be a non-empty list of pkpd.Arm; e.g. [Arm('placebo', 85, 0.0)].")
        names = [a.name for a in arms]
        dup = [n for n in names if names.count(n) > 1]
        if dup:
            raise PKPDInputError(f"arm names must be unique; {dup[0]!r} appears {names.count(dup[0])} times. Rename one.")
        object.__setattr__(self, "arms", arms)
        duration = _whole_days("duration_days", self.duration_days)
        object.__setattr__(self, "duration_days", duration)
        object.__setattr__(self, "visit_every_days", _whole_days("visit_every_days", self.visit_every_days))
        if self.treatment_days is not None:
            treat = _whole_days("treatment_days", self.treatment_days)
            if treat > duration:
                raise PKPDInputError(f"treatment_days ({treat:g}) is after duration_days ({duration:g}); shorten it or extend the trial.")
            object.__setattr__(self, "treatment_days", treat)
        if not isinstance(self.model, PKPDModel):
            raise PKPDInputError(f"model must be a pkpd PKPDModel (e.g. pkpd.models.hetrombopag('itp')); got {type(self.model).__name__}.")
        for a in arms:
            if a.rule is not None:
                _whole_days(f"arm {a.name!r} rule visit_every_days", a.rule.visit_every_days)
        p = self.endpoints.primary_day
        if p is not None and p not in self.visit_days:
            raise PKPDInputError(
                f"endpoints primary_day {p:g} is not a visit day {list(self.visit_days)}; "
                "choose a visit day or change visit_every_days."
            )

    # ------------------------------------------------------------ schedule
    @property
    def visit_days(self) -> tuple[float, ...]:
        """Assessment days: 0 and every ``visit_every_days`` up to the end."""
        k = np.arange(0, int(self.duration_days // self.visit_every_days) + 1)
        return tuple(float(d) for d in k * self.visit_every_days)

    @property
    def last_dose_day(self) -> float:
        """Day after the last dose day (dosing on days 0 .. last_dose_day - 1)."""
        return self.duration_days if self.treatment_days is None else self.treatment_days

    def decision_days(self, arm: Arm) -> np.ndarray:
        """Days on which ``arm``'s rule decides (before the end of dosing)."""
        if arm.rule is None:
            return np.empty(0)
        days = arm.rule.decision_days(self.duration_days)
        return days[days < self.last_dose_day]

    def grid(self) -> np.ndarray:
        """All visit days of any arm, sorted (day 0 first)."""
        days = [np.asarray(self.visit_days)] + [self.decision_days(a) for a in self.arms]
        return np.unique(np.concatenate(days))

    @property
    def n_per_trial(self) -> int:
        return sum(a.n for a in self.arms)

    # ------------------------------------------------------------ simulation
    def run(self, seed=None, replicates: int = 1, progress: bool = True, max_chunk: int = MAX_CHUNK,
            typical_draws: pd.DataFrame | None = None) -> "TrialResult":
        """Simulate ``replicates`` independent trials of this design.

        seed : int (or None for fresh entropy; the one used is kept in
            ``result.seed``).  Replicate r always gets the same patients and
            noise for a given seed, whatever the chunking.
        progress : show a tqdm progress bar (stderr).
        typical_draws : parameter uncertainty, e.g. posterior draws of the
            typical values from :func:`pkpd.fit`: a DataFrame with one row per
            replicate (``len(typical_draws) == replicates``) and columns named
            like the model's parameters (units of
            :data:`pkpd.models.PARAMETER_UNITS`; ``n_transit`` cannot vary).
            Replicate r draws its patients around row r's typical values with
            the model's own IIV; parameters without a column, and the rest of
            the model (ITP baseline, non-responders, visit noise), stay as
            they are.  Without it every replicate uses the model's typical
            values, so replicate intervals show sampling variability only.
            The draws used are kept in ``result.typical_draws``.
        """
        if isinstance(replicates, bool) or int(replicates) != replicates or replicates < 1:
            raise PKPDInputError(f"replicates must be a whole number >= 1; got {replicates!r}.")
        replicates = int(replicates)
        models = self._replicate_models(typical_draws, replicates)
        root = np.random.SeedSequence(seed)
        children = root.spawn(replicates)
        grid = self.grid()
        n = self.n_per_trial
        per_chunk = max(1, int(max_chunk) // n)
        chunks = [range(i, min(i + per_chunk, replicates)) for i in range(0, replicates, per_chunk)]
        from tqdm import tqdm

        bar = tqdm(total=len(chunks) * (grid.size - 1), desc=f"{self.name}: visits", unit="visit",
                   file=sys.stderr, disable=not progress, leave=False)
        parts = []
        try:
            for reps in chunks:
                parts.append(self._run_chunk(reps, children, grid, bar, models))
        finally:
            bar.close()
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        result = TrialResult(self, merged, grid, replicates, root.entropy if seed is None else seed)
        if typical_draws is not None:
            result.typical_draws = typical_draws.reset_index(drop=True).rename_axis("replicate")
        return result

    def _replicate_models(self, typical_draws, replicates: int) -> list[PKPDModel] | None:
        """One model per replicate with that replicate's typical values (None: self.model for all)."""
        if typical_draws is None:
            return None
        if not isinstance(typical_draws, pd.DataFrame):
            raise PKPDInputError(
                f"typical_draws must be a pandas DataFrame (one row per replicate, one column per parameter); "
                f"got {type(typical_draws).__name__}."
            )
        if len(typical_draws) != replicates:
            raise PKPDInputError(
                f"typical_draws has {len(typical_draws)} rows but replicates is {replicates}: each replicate trial "
                f"uses one row. Pass replicates=len(typical_draws), or typical_draws.sample(n={replicates}, "
                f"random_state=seed) to pick rows."
            )
        unknown = [c for c in typical_draws.columns if c not in PARAMETERS]
        if unknown:
            raise PKPDInputError(
                f"typical_draws has unknown columns {unknown}; use parameter names {list(PARAMETERS)} "
                f"(e.g. rename posterior variables or drop omega_/sigma_ columns)."
            )
        if "n_transit" in typical_draws.columns:
            raise PKPDInputError(
                "typical_draws cannot vary n_transit (a structural whole number shared by all patients); drop that column."
            )
        models = []
        for r, row in enumerate(typical_draws.itertuples(index=False)):
            values = dict(zip(typical_draws.columns, map(float, row)))
            try:
                models.append(self.model.with_typical(**values))
            except PKPDInputError as exc:
                raise PKPDInputError(f"typical_draws row {r}: {exc}") from None
        return models

    def _run_chunk(self, reps: range, children, grid: np.ndarray, bar, models=None) -> dict:
        """Simulate the replicates ``reps`` together; arrays over their patients.
        ``models``: one model per replicate (typical-value draws) or None."""
        n, n_arms = self.n_per_trial, len(self.arms)
        rngs = [np.random.default_rng(children[r]) for r in reps]
        params = pd.concat([(self.model if models is None else models[r]).sample_parameters(n, seed=rng)
                            for r, rng in zip(reps, rngs)], ignore_index=True)
        S, G = len(params), grid.size
        arm_of = np.tile(np.repeat(np.arange(n_arms), [a.n for a in self.arms]), len(reps))
        rep_of = np.repeat(np.asarray(reps), n)
        slices = [slice(i * n, (i + 1) * n) for i in range(len(reps))]
        solver = solver_for(params)

        def observe(true):
            out = np.empty_like(true)
            for sl, rng in zip(slices, rngs):
                out[sl] = self.model.residual_plt.sample(true[sl], rng)
            return out

        days_all = np.arange(int(self.duration_days) + 1)
        daily = np.empty((S, days_all.size), np.float32)
        daily[:, 0] = params["plt0"].to_numpy()
        true_v = np.empty((S, G))
        obs_v = np.empty((S, G))
        action = np.empty((S, G), np.int8)
        dose_v = np.empty((S, G))
        before_v = np.zeros((S, G))
        dose = np.array([a.start_mg for a in self.arms])[arm_of]
        members = [np.flatnonzero(arm_of == i) for i in range(n_arms)]
        states = {i: a.rule.start(a.start_mg, members[i].size) for i, a in enumerate(self.arms) if a.rule is not None}
        decides = [set(self.decision_days(a).tolist()) for a in self.arms]
        rules = [a.rule for a in self.arms]

        true_v[:, 0] = params["plt0"].to_numpy()
        obs_v[:, 0] = observe(true_v[:, 0])
        action[:, 0] = np.where([r is not None for r in rules], tt.START, tt.FIXED)[arm_of]
        dose_v[:, 0] = dose
        state = None
        for g in range(1, G):
            start, end = grid[g - 1], grid[g]
            dose_days = np.arange(start, min(end, self.last_dose_day))
            report = days_all[(days_all > start) & (days_all <= end)]
            amounts = np.repeat(dose[:, None], dose_days.size, axis=1)
            _, plt, state = solver.run(dose_days * 24.0, amounts, report * 24.0, state)
            daily[:, report] = plt
            true_v[:, g] = plt[:, -1]
            obs_v[:, g] = observe(true_v[:, g])
            before_v[:, g] = dose
            ended = end >= self.last_dose_day
            for i, rule in enumerate(rules):
                idx = members[i]
                if ended:
                    action[idx, g] = tt.OBSERVE
                    dose[idx] = 0.0
                elif rule is None:
                    action[idx, g] = tt.FIXED
                elif end in decides[i]:
                    states[i], codes = rule.step(states[i], end, obs_v[idx, g])
                    action[idx, g] = codes
                    dose[idx] = rule.doses_mg[states[i].level]
                else:
                    action[idx, g] = tt.OBSERVE
            dose_v[:, g] = dose
            bar.update(1)
        return {
            "replicate": rep_of, "arm": arm_of, "plt0": params["plt0"].to_numpy(),
            **{f"param_{c}": params[c].to_numpy() for c in PARAMETERS},
            "responder": params["responder"].to_numpy(), "true": true_v, "observed": obs_v,
            "action": action, "dose": dose_v, "dose_before": before_v, "daily": daily,
        }


# ================================================================= intervals
def clopper_pearson(k, n, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Exact (Clopper-Pearson) binomial interval for k successes out of n.

    Works elementwise and for non-integer k (an expected count), through the
    beta quantiles: lower = B^-1(a/2; k, n-k+1), upper = B^-1(1-a/2; k+1, n-k).
    """
    from scipy.special import betaincinv

    k = np.asarray(k, float)
    n = np.asarray(n, float)
    if np.any((k < 0) | (k > n)) or np.any(n < 1):
        raise PKPDInputError(f"clopper_pearson needs 0 <= k <= n and n >= 1; got k={k}, n={n}.")
    a = 1.0 - level
    with np.errstate(all="ignore"):
        lo = np.where(k > 0, betaincinv(k, n - k + 1, a / 2), 0.0)
        hi = np.where(k < n, betaincinv(k + 1, n - k, 1 - a / 2), 1.0)
    return lo, hi


#: Endpoint name -> (description, kind).  "binomial" endpoints are shares of
#: patients; "mean" endpoints are means of per-patient fractions or values.
ENDPOINTS = {
    "responders_primary": ("observed platelets >= {response:g} at day {primary_day:g} (primary)", "binomial"),
    "responded_once": ("observed platelets >= {response:g} at least once after baseline", "binomial"),
    "stopped": ("treatment stopped for lack of response", "binomial"),
    "assessments_responding": ("fraction of post-baseline assessments >= {response:g}", "mean"),
    "time_in_range": ("fraction of days with true platelets in {target[0]:g}-{target[1]:g}", "mean"),
    "time_above": ("fraction of days with true platelets > {above:g}", "mean"),
    "time_below": ("fraction of days with true platelets < {below:g}", "mean"),
    "peak_rise_pct": ("peak true platelet rise from baseline, %", "mean"),
}


# ================================================================= results
class TrialResult:
    """Results of :meth:`Trial.run`, as pandas DataFrames (and xarray).

    endpoints : one row per arm and endpoint, estimate with a 95% interval
        for one trial of the stated size (Clopper-Pearson for shares of
        patients, mean +- 1.96 SD/sqrt(N) for means) and, with replicates, the
        2.5-97.5 percentiles over the replicate trials.
    ledger : the dose ledger, one row per patient and visit.
    doses : per-visit dose distribution.
    platelets : platelet summary over time (true daily, observed at visits).
    per_replicate : each endpoint per replicate trial and arm.
    """

    def __init__(self, trial: Trial, data: dict, grid: np.ndarray, replicates: int, seed):
        self.trial = trial
        self.grid = grid
        self.replicates = replicates
        self.seed = seed
        self._data = data
        self._cache: dict = {}
        #: typical values per replicate when run with ``typical_draws`` (else None)
        self.typical_draws: pd.DataFrame | None = None

    # ------------------------------------------------------------ helpers
    @property
    def arm_names(self) -> list[str]:
        return [a.name for a in self.trial.arms]

    @property
    def ids(self) -> np.ndarray:
        """Patient IDs, 1.. over all replicates (replicate-major, then arm)."""
        d = self._data
        return d["replicate"] * self.trial.n_per_trial + np.arange(d["arm"].size) % self.trial.n_per_trial + 1

    @property
    def parameters(self) -> pd.DataFrame:
        """Each virtual patient's parameters (units in
        :data:`pkpd.models.PARAMETER_UNITS`; plt0 is the true baseline) with
        ID, replicate, arm and ``responder`` (drug effect or not)."""
        d = self._data
        table = pd.DataFrame({
            "ID": self.ids, "replicate": d["replicate"],
            "arm": pd.Categorical.from_codes(d["arm"], categories=self.arm_names),
            **{p: d[f"param_{p}"] for p in PARAMETERS}, "responder": d["responder"],
        })
        table.attrs["units"] = dict(PARAMETER_UNITS)
        return table

    def _visit_mask(self) -> np.ndarray:
        """(n_arms, G): does an arm have a visit (assessment or decision) on each grid day?"""
        assess = np.isin(self.grid, self.trial.visit_days)
        return np.array([assess | np.isin(self.grid, self.trial.decision_days(a)) for a in self.trial.arms])

    def _patient_metrics(self) -> pd.DataFrame:
        if "metrics" in self._cache:
            return self._cache["metrics"]
        d, t, e = self._data, self.trial, self.trial.endpoints
        assess = np.isin(self.grid, t.visit_days) & (self.grid > 0)
        obs = d["observed"][:, assess]
        responds = obs >= e.response
        stopped_at = np.where((d["action"] == tt.STOP).any(axis=1), self.grid[np.argmax(d["action"] == tt.STOP, axis=1)], np.inf)
        daily = d["daily"][:, 1:].astype(float)
        out = {
            "replicate": d["replicate"], "arm": d["arm"],
            "responded_once": responds.any(axis=1) if responds.shape[1] else np.zeros(len(obs), bool),
            "stopped": np.isfinite(stopped_at),
            "assessments_responding": responds.mean(axis=1) if responds.shape[1] else np.full(len(obs), np.nan),
            "time_in_range": ((daily >= e.target[0]) & (daily <= e.target[1])).mean(axis=1),
            "time_above": (daily > e.above).mean(axis=1),
            "time_below": (daily < e.below).mean(axis=1),
            "peak_rise_pct": (d["daily"].max(axis=1) / d["plt0"] - 1.0) * 100.0,
        }
        if e.primary_day is not None:
            g = int(np.flatnonzero(self.grid == e.primary_day)[0])
            primary = d["observed"][:, g] >= e.response
            if e.stopped_as_nonresponders:
                primary &= ~(stopped_at <= e.primary_day)
            out["responders_primary"] = primary
        self._cache["metrics"] = pd.DataFrame(out)
        return self._cache["metrics"]

    # ------------------------------------------------------------ tables
    @property
    def per_replicate(self) -> pd.DataFrame:
        """Each endpoint's value per replicate trial and arm (long format)."""
        m = self._patient_metrics()
        names = [k for k in ENDPOINTS if k in m]
        table = m.groupby(["replicate", "arm"])[names].mean().reset_index()
        table["arm"] = np.asarray(self.arm_names, dtype=object)[table["arm"].to_numpy()]
        return table.melt(id_vars=["replicate", "arm"], var_name="endpoint", value_name="value")

    @property
    def endpoints(self) -> pd.DataFrame:
        """Endpoint table: arm, endpoint, description, kind, N per trial,
        replicates, estimate, trial_low/trial_high (95% for one trial of N),
        interval method, replicate_low/replicate_high (2.5/97.5 percentiles
        over replicates; NaN with one replicate)."""
        if "endpoints" in self._cache:
            return self._cache["endpoints"]
        m = self._patient_metrics()
        fmt = {**self.trial.endpoints.__dict__}
        rows = []
        for i, arm in enumerate(self.trial.arms):
            mi = m[m["arm"] == i]
            for name, (desc, kind) in ENDPOINTS.items():
                if name not in mi:
                    continue
                values = mi[name].to_numpy(float)
                reps = mi.groupby("replicate")[name].mean().to_numpy(float)
                est = float(np.nanmean(values))
                if kind == "binomial":
                    lo, hi = clopper_pearson(est * arm.n, arm.n)
                    method = "Clopper-Pearson 95%"
                else:
                    half = 1.96 * np.nanstd(values, ddof=1) / np.sqrt(arm.n) if values.size > 1 else np.nan
                    lo, hi = est - half, est + half
                    method = "normal 95% (mean +- 1.96 SD/sqrt(N))"
                    if name != "peak_rise_pct":
                        lo, hi = max(lo, 0.0), min(hi, 1.0)
                r_lo, r_hi = np.percentile(reps, [2.5, 97.5]) if self.replicates > 1 else (np.nan, np.nan)
                rows.append({
                    "arm": arm.name, "endpoint": name, "description": desc.format(**fmt), "kind": kind,
                    "n": arm.n, "replicates": self.replicates, "estimate": est,
                    "trial_low": float(lo), "trial_high": float(hi), "trial_interval": method,
                    "replicate_low": float(r_lo), "replicate_high": float(r_hi),
                })
        self._cache["endpoints"] = pd.DataFrame(rows)
        return self._cache["endpoints"]

    @property
    def ledger(self) -> pd.DataFrame:
        """The dose ledger: one row per patient and visit.

        Columns: replicate, arm, ID (unique over replicates), day, time_h,
        assessment (an endpoint visit), observed and true platelets (10^9/L),
        dose_before_mg (the once-daily dose taken up to this visit, mg; 0 on
        day 0), action (see :data:`pkpd.titration.ACTIONS`), dose_mg (the
        once-daily dose from this visit on; 0 = none, also after the end of
        dosing).
        """
        if "ledger" in self._cache:
            return self._cache["ledger"]
        d = self._data
        keep = self._visit_mask()[d["arm"]]  # (S, G)
        rows, cols = np.nonzero(keep)
        ids = self.ids
        arm_names = pd.Categorical.from_codes(d["arm"][rows], categories=self.arm_names)
        day = self.grid[cols]
        table = pd.DataFrame({
            "replicate": d["replicate"][rows], "arm": arm_names, "ID": ids[rows], "day": day, "time_h": day * 24.0,
            "assessment": np.isin(day, self.trial.visit_days), "observed": d["observed"][rows, cols],
            "true": d["true"][rows, cols], "dose_before_mg": d["dose_before"][rows, cols],
            "action": pd.Categorical.from_codes(d["action"][rows, cols].astype(int), categories=list(tt.ACTIONS)),
            "dose_mg": d["dose"][rows, cols],
        })
        self._cache["ledger"] = table
        return table

    @property
    def doses(self) -> pd.DataFrame:
        """Dose distribution at each post-baseline assessment visit: the
        once-daily dose patients were taking when they came (``dose_mg``, 0 =
        interrupted, stopped or placebo).  Columns arm, day, dose_mg,
        patients, fraction (of the arm's patients, over all replicates)."""
        led = self.ledger
        led = led[led["assessment"] & (led["day"] > 0)]
        counts = (led.groupby(["arm", "day", "dose_before_mg"], observed=True).size().rename("patients")
                  .reset_index().rename(columns={"dose_before_mg": "dose_mg"}))
        totals = {a.name: a.n * self.replicates for a in self.trial.arms}
        counts["fraction"] = counts["patients"] / counts["arm"].astype(str).map(totals)
        return counts

    @property
    def platelets(self) -> pd.DataFrame:
        """Platelet summary per arm and day: median, p05, p95 of the true count
        (daily) and of the observed count (visit days, NaN between), 10^9/L."""
        if "platelets" in self._cache:
            return self._cache["platelets"]
        d = self._data
        days = np.arange(d["daily"].shape[1], dtype=float)
        frames = []
        for i, name in enumerate(self.arm_names):
            sel = d["arm"] == i
            q = np.percentile(d["daily"][sel], [50, 5, 95], axis=0)
            obs = np.full((3, days.size), np.nan)
            cols = np.isin(self.grid, self.trial.visit_days)
            obs[:, self.grid[cols].astype(int)] = np.percentile(d["observed"][sel][:, cols], [50, 5, 95], axis=0)
            frames.append(pd.DataFrame({
                "arm": name, "day": days, "median": q[0], "p05": q[1], "p95": q[2],
                "observed_median": obs[0], "observed_p05": obs[1], "observed_p95": obs[2],
            }))
        self._cache["platelets"] = pd.concat(frames, ignore_index=True)
        return self._cache["platelets"]

    @property
    def trajectories(self) -> xr.Dataset:
        """True platelets (10^9/L) per patient and day, with arm and replicate."""
        d = self._data
        ids = self.ids
        return xr.Dataset(
            {"platelets": (("id", "day"), d["daily"], {"units": "10^9/L"})},
            coords={"id": ids, "day": np.arange(d["daily"].shape[1]),
                    "arm": ("id", np.asarray(self.arm_names, dtype=object)[d["arm"]]),
                    "replicate": ("id", d["replicate"])},
        )

    def to_nonmem(self) -> pd.DataFrame:
        """The virtual trial as a NONMEM dataset: once-daily dose records
        (EVID 1, CMT 1, AMT mg, II 24 h, ADDL) between visits and the observed
        platelet counts (EVID 0, CMT 3, DV 10^9/L) at each visit.  Readable by
        :func:`pkpd.read_nonmem`; observations come before the dose of the
        same time (morning count, then dose)."""
        led = self.ledger
        ids = led["ID"].to_numpy()
        day = led["day"].to_numpy()
        dose = led["dose_mg"].to_numpy()
        # each ledger row's dose runs until the patient's next visit (or end of dosing)
        same_next = np.r_[ids[1:] == ids[:-1], False]
        next_day = np.where(same_next, np.r_[day[1:], 0.0], self.trial.last_dose_day)
        end = np.minimum(next_day, self.trial.last_dose_day)
        n_doses = np.maximum(end - day, 0).astype(int)
        give = (dose > 0) & (n_doses > 0)
        doses = pd.DataFrame({
            "ID": ids[give], "TIME": day[give] * 24.0, "AMT": dose[give], "EVID": 1, "MDV": 1, "CMT": DEPOT_CMT,
            "II": 24.0, "ADDL": n_doses[give] - 1, "SS": 0, "DV": np.nan,
        })
        obs = pd.DataFrame({
            "ID": ids, "TIME": day * 24.0, "AMT": 0.0, "EVID": 0, "MDV": 0, "CMT": PLATELET_CMT,
            "II": 0.0, "ADDL": 0, "SS": 0, "DV": led["observed"].to_numpy(),
        })
        records = pd.concat([obs, doses], ignore_index=True).sort_values(["ID", "TIME", "EVID"], kind="stable")
        return records[RECORD_COLUMNS].reset_index(drop=True)

    # ------------------------------------------------------------ plots
    def plot_platelets(self, ax=None):
        """Median and 90% band (5-95th percentile) of true platelets per arm
        over time, with the 50 and 250 x10^9/L lines.  Returns the figure."""
        if ax is None:
            fig = _figure(8, 4.5)
            ax = fig.subplots()
        else:
            fig = ax.figure
        summary = self.platelets
        for name in self.arm_names:
            s = summary[summary["arm"] == name]
            line, = ax.plot(s["day"] / 7, s["median"], label=f"{name} (median)")
            ax.fill_between(s["day"] / 7, s["p05"], s["p95"], color=line.get_color(), alpha=0.15)
        lo, hi = self.trial.endpoints.target
        for y in (lo, hi):
            ax.axhline(y, color="grey", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_xlabel("week")
        ax.set_ylabel("platelets (10^9/L, true count)")
        ax.set_title(f"{self.trial.name}: median and 90% band per arm")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    def plot_doses(self):
        """Dose distribution at each visit, one panel per arm (stacked shares)."""
        from matplotlib import colormaps

        table = self.doses
        levels = np.sort(table["dose_mg"].unique())
        fig = _figure(3.2 * len(self.arm_names) + 1, 3.8)
        axes = fig.subplots(1, len(self.arm_names), sharey=True, squeeze=False)
        colors = colormaps["viridis"](np.linspace(0.1, 0.9, max(len(levels), 1)))
        for ax, name in zip(axes[0], self.arm_names):
            wide = (table[table["arm"] == name].pivot_table(index="day", columns="dose_mg", values="fraction", aggfunc="sum")
                    .reindex(columns=levels).fillna(0.0))
            bottom = np.zeros(len(wide))
            for lvl, color in zip(levels, colors):
                ax.bar(wide.index / 7, wide[lvl], bottom=bottom, width=0.8 * self.trial.visit_every_days / 7,
                       color=color, label=f"{lvl:g} mg")
                bottom += wide[lvl].to_numpy()
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("week")
        axes[0][0].set_ylabel("share of patients")
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
        fig.suptitle(f"{self.trial.name}: once-daily dose taken up to each visit")
        fig.tight_layout()
        return fig

    # ------------------------------------------------------------ output
    def save(self, out_dir) -> Path:
        """Write endpoints.csv, ledger.csv, doses.csv, platelets.csv,
        nonmem.csv, platelets.png and doses.png into ``out_dir``.

        Everything is written to a temporary folder next to it and moved into
        place at the end, so ``out_dir`` is never half-written.  Returns the path.
        """
        out = Path(out_dir).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
        try:
            self.endpoints.to_csv(tmp / "endpoints.csv", index=False)
            self.ledger.to_csv(tmp / "ledger.csv", index=False)
            self.doses.to_csv(tmp / "doses.csv", index=False)
            self.platelets.to_csv(tmp / "platelets.csv", index=False)
            self.to_nonmem().to_csv(tmp / "nonmem.csv", index=False, na_rep=".")
            for name, fig in (("platelets.png", self.plot_platelets()), ("doses.png", self.plot_doses())):
                fig.savefig(tmp / name, dpi=120)
            _replace_dir(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out


def _figure(width: float, height: float):
    """A matplotlib Figure drawn by the Agg canvas, outside pyplot's state
    (no GUI backend, nothing to close; displays inline in notebooks)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def _replace_dir(new: Path, target: Path) -> None:
    """Move the finished folder ``new`` to ``target``, replacing an old one."""
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}-old-", dir=target.parent))
        os.replace(target, old / target.name)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)
