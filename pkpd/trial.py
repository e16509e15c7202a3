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

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from . import titration as tt
from .checks import MAX_PATIENT_DAYS, MAX_PATIENT_VISITS, PKPDInputError, dose_mg, positive, whole
from .models import PARAMETER_UNITS, PARAMETERS, PKPDModel, hetrombopag
from .regimen import DEPOT_CMT, RECORD_COLUMNS
from .simulate import solver_for
from .titration import TitrationRule

#: NONMEM compartment of platelet observations (as in :data:`pkpd.nonmem.DEFAULT_CMT_NAMES`).
PLATELET_CMT = 3

#: Patients simulated together in one solver at most (memory ~1 kB per patient).
MAX_CHUNK = 50_000


def _whole_days(name: str, value) -> float:
    """A whole number of days, 1 to 7305 (20 years; the simulation grid is daily)."""
    days = tt._days(name, value, strictly_positive=True)
    if days != np.round(days):
        raise PKPDInputError(f"{name} must be a whole number of days; got {value!r}. Round it to full days.")
    return days


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

    def __repr__(self) -> str:
        rule = f", rule {self.rule.name!r}" if self.rule is not None else ""
        return f"Arm({self.name!r}, n={self.n}, start {self.start_mg:g} mg, {self.kind}{rule})"

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise PKPDInputError(f"arm name must be a non-empty text; got {self.name!r}.")
        object.__setattr__(self, "n", whole(f"n (patients) of arm {self.name!r}", self.n))
        object.__setattr__(self, "start_mg", float(dose_mg(f"start_mg of arm {self.name!r}", self.start_mg)))
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
        for name in ("response", "above", "below"):
            if isinstance(getattr(self, name), (bool, np.bool_)):
                raise PKPDInputError(f"endpoints.{name} must be a platelet count in 10^9/L; got {getattr(self, name)!r}.")
            positive(f"endpoints.{name}", getattr(self, name), "10^9/L")
        if self.primary_day is not None:
            object.__setattr__(self, "primary_day", _whole_days("endpoints.primary_day", self.primary_day))
        target = positive("endpoints.target", self.target, "10^9/L")
        if target.shape != (2,) or not target[0] < target[1]:
            raise PKPDInputError(f"endpoints.target must be [low, high] with low < high (10^9/L); got {self.target!r}, e.g. [50, 250].")
        object.__setattr__(self, "target", (float(target[0]), float(target[1])))
        if not isinstance(self.stopped_as_nonresponders, (bool, np.bool_)):
            raise PKPDInputError(f"endpoints.stopped_as_nonresponders must be True or False; got {self.stopped_as_nonresponders!r}.")


@dataclass(frozen=True)
class Trial:
    """A virtual trial design.

    arms : the arms (names unique).
    duration_days : last day of follow-up, whole days up to 7305 (20 years,
        :data:`pkpd.checks.MAX_HORIZON_H`); platelets are simulated and
        reported daily to it, also past the last visit when it is not a
        multiple of ``visit_every_days``.
    visit_every_days : assessment visits every this many days (days), plus
        day 0 (baseline).  Each titrated arm also decides on its rule's days.
    treatment_days : dosing stops after this many days (None = whole trial).
    model : population model (default ``hetrombopag("itp")``).
    endpoints : endpoint definitions.
    name : label.

    A design whose run would not fit in memory is refused (see
    :meth:`check_size`).
    """

    arms: tuple[Arm, ...]
    duration_days: float = 56.0
    visit_every_days: float = 7.0
    treatment_days: float | None = None
    model: PKPDModel = field(default_factory=lambda: hetrombopag("itp"))
    endpoints: Endpoints = Endpoints()
    name: str = "virtual trial"

    def __repr__(self) -> str:
        arms = ", ".join(f"{a.name} {a.n}" for a in self.arms)
        return (f"Trial({self.name!r}: {len(self.arms)} arms [{arms}], {self.duration_days:g} days, "
                f"visits every {self.visit_every_days:g} d, model {self.model.name}/{self.model.population})")

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
        visits = _whole_days("visit_every_days", self.visit_every_days)
        if visits > duration:
            raise PKPDInputError(
                f"visit_every_days ({visits:g}) is longer than duration_days ({duration:g}): there would be no assessment "
                "after baseline. Shorten the interval or extend the trial."
            )
        object.__setattr__(self, "visit_every_days", visits)
        if self.treatment_days is not None:
            treat = _whole_days("treatment_days", self.treatment_days)
            if treat > duration:
                raise PKPDInputError(f"treatment_days ({treat:g}) is after duration_days ({duration:g}); shorten it or extend the trial.")
            object.__setattr__(self, "treatment_days", treat)
        if not isinstance(self.endpoints, Endpoints):
            raise PKPDInputError(f"endpoints must be a pkpd.Endpoints; got {type(self.endpoints).__name__}.")
        if not isinstance(self.model, PKPDModel):
            raise PKPDInputError(f"model must be a pkpd PKPDModel (e.g. pkpd.models.hetrombopag('itp')); got {type(self.model).__name__}.")
        for a in arms:
            if a.rule is not None:
                _whole_days(f"rule {a.rule.name!r} of arm {a.name!r}: visit_every_days", a.rule.visit_every_days)
        p = self.endpoints.primary_day
        if p is not None and p not in self.visit_days:
            days = self.visit_days
            shown = ", ".join(f"{d:g}" for d in days) if len(days) <= 12 else (
                ", ".join(f"{d:g}" for d in days[:3]) + ", ..., " + f"{days[-1]:g}")
            raise PKPDInputError(
                f"endpoints.primary_day {p:g} is not a visit day (visits on days {shown}, every "
                f"{self.visit_every_days:g} days to duration_days {self.duration_days:g}); "
                "choose a visit day or change visit_every_days."
            )
        self.check_size(1, field=None)

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

    def check_size(self, replicates=1, field: str | None = "replicates") -> int:
        """Refuse a run of ``replicates`` trials that would not fit in memory.

        The limits are :data:`pkpd.checks.MAX_PATIENT_DAYS` (patients x
        replicates x (duration_days + 1)) and
        :data:`pkpd.checks.MAX_PATIENT_VISITS` (patients x replicates x visit
        days).  :meth:`run` calls it before allocating anything; call it to
        check a number of replicates before a run.  ``field`` names the
        setting in the message (e.g. ``"scenario.replicates"``; None: the
        design itself, one trial).  Returns ``replicates`` as an int.
        """
        replicates = whole(field or "replicates", replicates)
        n, days, visits = self.n_per_trial, int(self.duration_days) + 1, self.grid().size
        patient_days, patient_visits = n * replicates * days, n * replicates * visits
        if patient_days <= MAX_PATIENT_DAYS and patient_visits <= MAX_PATIENT_VISITS:
            return replicates
        most = min(MAX_PATIENT_DAYS // (n * days), MAX_PATIENT_VISITS // (n * visits))
        gb = (12 * patient_days + 600 * patient_visits) / 1e9  # peak bytes, see MAX_PATIENT_DAYS
        if most >= 1:
            fix = (f"Use at most {most:,} replicates per run (for more, run batches with different seeds and pool "
                   "their per_replicate tables), or fewer patients or a shorter trial.")
        else:
            fix = "Even one trial is too large: use fewer patients per arm (n), a shorter duration_days or fewer visits."
        arms = ", ".join(f"{a.name!r} n = {a.n:,}" for a in self.arms)
        head = f"{field} = {replicates:,}: the run" if field else f"trial {self.name!r} is too large: one run"
        raise PKPDInputError(
            f"{head} would simulate {n:,} patients per trial ({arms}) x {replicates:,} "
            f"replicate(s) x {days:,} days (duration_days {self.duration_days:g}) = {patient_days:,} patient-days and "
            f"{patient_visits:,} patient-visits (about {gb:,.1f} GB), more than the limits of {MAX_PATIENT_DAYS:,} "
            f"patient-days and {MAX_PATIENT_VISITS:,} patient-visits (pkpd.checks.MAX_PATIENT_DAYS, "
            f"MAX_PATIENT_VISITS). {fix}"
        )

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
        if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise PKPDInputError(f"seed must be a whole number >= 0 or None; got {seed!r}. Give e.g. seed=1 for a reproducible trial.")
        max_chunk = whole("max_chunk", max_chunk)
        replicates = self.check_size(replicates)  # before anything is allocated
        models = self._replicate_models(typical_draws, replicates)
        root = np.random.SeedSequence(seed)
        children = root.spawn(replicates)
        grid = self.grid()
        n = self.n_per_trial
        per_chunk = max(1, int(max_chunk) // n)
        chunks = [range(i, min(i + per_chunk, replicates)) for i in range(0, replicates, per_chunk)]
        from tqdm import tqdm

        segments = grid.size - 1 + int(grid[-1] < self.duration_days)
        bar = tqdm(total=len(chunks) * segments, desc=f"{self.name}: visits", unit="visit",
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
        # NaN (action -1) until simulated, so that a cell left unfilled cannot pass as a count
        daily = np.full((S, days_all.size), np.nan, np.float32)
        daily[:, 0] = params["plt0"].to_numpy()
        true_v = np.full((S, G), np.nan)
        obs_v = np.full((S, G), np.nan)
        action = np.full((S, G), -1, np.int8)
        dose_v = np.full((S, G), np.nan)
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

        def advance(start, end):
            """Dose days start .. end - 1 at the current doses; daily counts on days start + 1 .. end."""
            nonlocal state
            dose_days = np.arange(start, min(end, self.last_dose_day))
            report = days_all[(days_all > start) & (days_all <= end)]
            amounts = np.repeat(dose[:, None], dose_days.size, axis=1)
            _, plt, state = solver.run(dose_days * 24.0, amounts, report * 24.0, state)
            daily[:, report] = plt
            return plt

        for g in range(1, G):
            end = grid[g]
            plt = advance(grid[g - 1], end)
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
        if grid[-1] < self.duration_days:  # follow-up after the last visit, reported daily
            advance(grid[-1], self.duration_days)
            bar.update(1)
        unfilled = [k for k, a in (("daily platelets", daily), ("true", true_v), ("observed", obs_v), ("dose", dose_v))
                    if np.isnan(a).any()] + (["action"] if (action < 0).any() else [])
        if unfilled:
            raise RuntimeError(f"trial simulation left {unfilled} unfilled or not finite for replicates "
                               f"{reps.start}-{reps.stop - 1}; this is a bug in pkpd.trial, please report it.")
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
#: Endpoints defined by the response threshold (``Endpoints.response``).
RESPONSE_ENDPOINTS = ("responders_primary", "responded_once", "assessments_responding")


def percent(x, endpoint: str = "", digits: int = 1) -> str:
    """An endpoint value as text in percent ("12.3%"; "" for NaN).  Shares and
    fractions are multiplied by 100; ``peak_rise_pct`` is already in percent.
    Rounded first, so that a rounding-level negative prints as "0.0%", not "-0.0%"."""
    if x is None or pd.isna(x):
        return ""
    factor = 1.0 if endpoint == "peak_rise_pct" else 100.0
    return f"{round(factor * float(x), digits) + 0.0:.{digits}f}%"


def _interval(lo, hi, endpoint: str = "") -> str:
    """"[12.3%, 45.6%]" ("" when the interval is not defined)."""
    return "" if pd.isna(lo) or pd.isna(hi) else f"[{percent(lo, endpoint)}, {percent(hi, endpoint)}]"


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
    omitted_endpoints : endpoints left out because they mean nothing here, with the reason.
    summary() : one row per arm with the headline endpoint in percent.
    plot_response(), plot_platelets(), plot_doses() : the figures.
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

    def __repr__(self) -> str:
        t = self.trial
        head = (f"<TrialResult {t.name!r}: {len(t.arms)} arms, {t.n_per_trial} patients per trial, "
                f"{self.replicates} replicate{'s' if self.replicates > 1 else ''}, seed {self.seed}")
        name = self.headline_endpoint
        e = self.endpoints
        rows = e[e["endpoint"] == name]
        rates = ", ".join(f"{r.arm} {percent(r.estimate, name)}" for r in rows.itertuples())
        return f"{head}\n {name}: {rates}\n .summary(), .endpoints, .ledger, .platelets, .plot_response()>"

    # ------------------------------------------------------------ what is reported
    @property
    def omitted_endpoints(self) -> dict[str, str]:
        """Endpoints left out of :attr:`endpoints` and :attr:`per_replicate`, with the reason.

        * The response endpoints (:data:`RESPONSE_ENDPOINTS`) count patients
          whose observed count reaches ``Endpoints.response``; when more than
          half of the patients are there already at baseline (observed day-0
          count, e.g. healthy volunteers against 50 x10^9/L), they measure the
          population, not the drug, and are left out.
        * ``stopped`` is left out when no arm's rule can stop treatment within
          the trial (no ``stop_after_days_at_max``, or no decision visit that
          late; fixed doses never stop).
        """
        e, metrics = self.trial.endpoints, self._patient_metrics()
        out = {}
        at_baseline = float(np.mean(self._data["observed"][:, 0] >= e.response))
        if at_baseline > 0.5:
            why = (f"{percent(at_baseline)} of patients are already >= {e.response:g} x10^9/L at baseline, "
                   "so the response threshold measures the population, not the drug")
            out.update({k: why for k in RESPONSE_ENDPOINTS if k in metrics})

        def can_stop(arm) -> bool:
            wait = None if arm.rule is None else arm.rule.stop_after_days_at_max
            return wait is not None and bool(np.any(self.trial.decision_days(arm) >= wait))

        if not any(can_stop(a) for a in self.trial.arms):
            out["stopped"] = "no arm's rule can stop treatment in this trial (stop_after_days_at_max not set or not reached)"
        return out

    @property
    def headline_endpoint(self) -> str:
        """The endpoint :meth:`summary`, the repr and :meth:`plot_response`
        lead with: ``responders_primary`` when there is a primary day, else
        ``responded_once``, else (response endpoints omitted, e.g. healthy
        volunteers) ``peak_rise_pct``."""
        shown = set(self.endpoints["endpoint"])
        return next(k for k in ("responders_primary", "responded_once", "peak_rise_pct") if k in shown)

    def summary(self, published: Mapping | None = None) -> pd.DataFrame:
        """One row per arm, for reading: kind, start dose (mg), N per trial,
        replicates, seed, the :attr:`headline_endpoint`, its simulated value
        in percent, its 95% CI for one trial of N patients (Clopper-Pearson
        for shares, normal for means) and, with replicates, the 2.5-97.5%
        range of the replicate trials' values.  ``published`` (arm name ->
        :class:`pkpd.scenario.Published`) adds the published share, its
        count, its Clopper-Pearson 95% CI and whether the simulated value
        lies inside.  Numbers for computing are in :attr:`endpoints`."""
        name = self.headline_endpoint
        e = self.endpoints.set_index(["arm", "endpoint"])
        rows = []
        for arm in self.trial.arms:
            r = e.loc[(arm.name, name)]
            row = {"arm": arm.name, "kind": arm.kind, "start_mg": arm.start_mg, "N": arm.n,
                   "replicates": self.replicates, "seed": self.seed, "endpoint": name,
                   "simulated": percent(r["estimate"], name),
                   "95% CI, one trial of N": _interval(r["trial_low"], r["trial_high"], name)}
            if self.replicates > 1:
                row[f"2.5-97.5% over {self.replicates} replicates"] = _interval(r["replicate_low"], r["replicate_high"], name)
            if published:
                pub = published.get(arm.name)
                if pub is not None and pub.endpoint == name:
                    lo, hi = pub.interval
                    row.update({"published": f"{percent(pub.rate)} ({pub.responders}/{pub.n})",
                                "published 95% CI": _interval(lo, hi),
                                "inside": "yes" if lo <= r["estimate"] <= hi else "NO"})
                else:
                    row.update({"published": "", "published 95% CI": "", "inside": ""})
            rows.append(row)
        table = pd.DataFrame(rows).set_index("arm")
        table.attrs["description"] = e.loc[(self.trial.arms[0].name, name), "description"]
        return table

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
            # against day 0 of the same float32 record: a flat course is exactly 0 %
            "peak_rise_pct": (d["daily"].max(axis=1).astype(float) / d["daily"][:, 0] - 1.0) * 100.0,
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
        names = [k for k in ENDPOINTS if k in m and k not in self.omitted_endpoints]
        table = m.groupby(["replicate", "arm"])[names].mean().reset_index()
        table["arm"] = np.asarray(self.arm_names, dtype=object)[table["arm"].to_numpy()]
        return table.melt(id_vars=["replicate", "arm"], var_name="endpoint", value_name="value")

    @property
    def endpoints(self) -> pd.DataFrame:
        """Endpoint table: arm, endpoint, description, kind, unit of the
        values ("fraction" 0-1 or "%"), n (patients per trial), replicates,
        estimate, trial_low/trial_high (95% interval of one trial of n,
        method in trial_interval), replicate_low/replicate_high (2.5 and 97.5
        percentiles of the replicate trials' values, described in
        replicate_interval; NaN with one replicate).  Endpoints that mean
        nothing for this trial are left out (see :attr:`omitted_endpoints`);
        :meth:`summary` prints the headline in percent."""
        return self._endpoint_table()

    def _endpoint_table(self, keep=()) -> pd.DataFrame:
        """The endpoint table without the omitted endpoints, except those in ``keep``."""
        table = self._all_endpoints()
        drop = set(self.omitted_endpoints) - set(keep)
        return table[~table["endpoint"].isin(drop)].reset_index(drop=True)

    def _all_endpoints(self) -> pd.DataFrame:
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
                    "unit": "%" if name == "peak_rise_pct" else "fraction",
                    "n": arm.n, "replicates": self.replicates, "estimate": est,
                    "trial_low": float(lo), "trial_high": float(hi), "trial_interval": f"{method}, one trial of n",
                    "replicate_low": float(r_lo), "replicate_high": float(r_hi),
                    "replicate_interval": (f"2.5-97.5 percentiles of {self.replicates} replicate trials"
                                           if self.replicates > 1 else ""),
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
    def plot_platelets(self, axes=None):
        """Platelets over time, one panel per arm (shared log axis, 10^9/L):
        the true count (median and 5-95% band, daily) and the observed count
        at the assessment visits (median and 5-95%; the endpoints and the
        titration see these), with the response threshold and the target
        range drawn and labelled, and the primary day and the end of dosing
        marked.  ``axes``: one matplotlib Axes per arm (default: a new
        figure).  Returns the figure."""
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        names = self.arm_names
        if axes is None:
            ncols = min(len(names), 4)
            nrows = -(-len(names) // ncols)
            fig = _figure(3.4 * ncols + 0.6, 3.3 * nrows + 0.6)
            grid = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
            axes = list(grid.flat)
            for ax in axes[len(names):]:
                ax.set_visible(False)
        else:
            axes = list(np.ravel(axes))
            if len(axes) < len(names):
                raise PKPDInputError(
                    f"plot_platelets axes: one Axes per arm is needed ({len(names)} arms); got {len(axes)}. "
                    f"Pass e.g. fig.subplots(1, {len(names)}), or leave axes out for a new figure."
                )
            fig = axes[0].figure
        e, t = self.trial.endpoints, self.trial
        summary = self.platelets
        lines = {e.target[0]: ["target low"], e.target[1]: ["target high"]}
        if set(RESPONSE_ENDPOINTS) & set(self.endpoints["endpoint"]):  # the threshold means something here
            lines.setdefault(e.response, []).insert(0, "response")
        for k, (ax, name) in enumerate(zip(axes, names)):
            s = summary[summary["arm"] == name]
            week = s["day"].to_numpy() / 7
            ax.fill_between(week, s["p05"], s["p95"], color="C0", alpha=0.2, lw=0, label="true count, 5-95%")
            ax.plot(week, s["median"], color="C0", lw=1.8, label="true count, median")
            v = s[s["observed_median"].notna()]
            vw = v["day"].to_numpy() / 7
            ax.errorbar(vw, v["observed_median"], yerr=[v["observed_median"] - v["observed_p05"], v["observed_p95"] - v["observed_median"]],
                        fmt="o", color="k", ms=3, lw=0.8, capsize=2, label="observed count at visits, median and 5-95%")
            for y, what in sorted(lines.items()):
                text = f"{y:g}: {' and '.join(what)}"
                color = "C3" if what[0] == "response" else "dimgrey"
                ax.axhline(y, color=color, ls="--", lw=1, label=f"{text} (10^9/L)" if k == 0 else None)
                ax.annotate(text, (0.01, y), xycoords=("axes fraction", "data"), xytext=(0, 2), textcoords="offset points",
                            va="bottom", fontsize=7, color=color)
            if e.primary_day is not None:
                ax.axvline(e.primary_day / 7, color="C2", ls=":", lw=1.2, label=f"primary day {e.primary_day:g}" if k == 0 else None)
            if t.last_dose_day < t.duration_days:
                ax.axvspan(t.last_dose_day / 7, t.duration_days / 7, color="grey", alpha=0.08, lw=0,
                           label=f"after the last dose (day {t.last_dose_day - 1:g})" if k == 0 else None)
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(NullFormatter())
            ax.set_title(name, fontsize=9)
            ax.tick_params(labelsize=8)
        ncols = len({ax.get_position().x0 for ax in axes})
        for k, ax in enumerate(axes[:len(names)]):
            if k + ncols >= len(names):  # no panel below: label the time axis here
                ax.xaxis.set_tick_params(labelbottom=True)
                ax.set_xlabel("week")
            if k % ncols == 0:
                ax.set_ylabel("platelets (10^9/L)")
        handles, labels = axes[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
        fig.suptitle(f"{t.name}: platelets per arm ({t.n_per_trial} patients per trial, "
                     f"{self.replicates} replicate{'s' if self.replicates > 1 else ''})", fontsize=10)
        legend_in = 0.15 * -(-len(labels) // 3) + 0.1  # legend rows x line height, inches
        fig.tight_layout(rect=(0, legend_in / fig.get_figheight(), 1, 1))
        return fig

    def plot_response(self, endpoint: str | None = None, published: Mapping | None = None):
        """The :attr:`headline_endpoint` (or ``endpoint``) by arm: the
        simulated value with its 95% CI for one trial of N, with several
        replicates also each replicate trial's value (dots) and their
        2.5-97.5% range, and beside it the published result with its
        Clopper-Pearson 95% CI.  ``published``: arm name ->
        :class:`pkpd.scenario.Published` (as a scenario gives).  Returns the figure."""
        name = self.headline_endpoint if endpoint is None else endpoint
        e = self._endpoint_table(keep=[name])
        e = e[e["endpoint"] == name].set_index("arm")
        if e.empty:
            raise PKPDInputError(
                f"plot_response endpoint {endpoint!r} is not an endpoint of this trial; use one of "
                f"{sorted(set(self._all_endpoints()['endpoint']))}."
            )
        factor = 1.0 if name == "peak_rise_pct" else 100.0
        per_rep = self._patient_metrics().groupby(["arm", "replicate"])[name].mean()  # arm codes, replicate
        fig = _figure(1.9 * len(self.arm_names) + 2.4, 4.2)
        ax = fig.subplots()
        x = np.arange(len(self.arm_names))
        pub_label = rep_label = True
        for i, arm in enumerate(self.arm_names):
            r = e.loc[arm]
            est = factor * r["estimate"]
            ax.errorbar(i - 0.12, est, yerr=[[est - factor * r["trial_low"]], [factor * r["trial_high"] - est]], fmt="o",
                        color="C0", ms=6, capsize=4, label="simulated, 95% CI of one trial of N" if i == 0 else None)
            ax.annotate(percent(r["estimate"], name), (i - 0.12, est), xytext=(-6, 0), textcoords="offset points",
                        ha="right", va="center", fontsize=8, color="C0")
            if self.replicates > 1:
                vals = factor * per_rep.loc[i].to_numpy(float)
                jitter = np.random.default_rng(i).uniform(-0.04, 0.04, vals.size)
                ax.plot(i - 0.12 + 0.06 + jitter, vals, ".", color="C0", alpha=0.35, ms=3,
                        label="one simulated trial each" if rep_label else None)
                ax.vlines(i - 0.04, factor * r["replicate_low"], factor * r["replicate_high"], color="C0", lw=4, alpha=0.5,
                          label=f"2.5-97.5% over {self.replicates} replicates" if rep_label else None)
                rep_label = False
            pub = (published or {}).get(arm)
            if pub is not None and pub.endpoint == name:
                lo, hi = pub.interval
                ax.errorbar(i + 0.18, 100 * pub.rate, yerr=[[100 * (pub.rate - lo)], [100 * (hi - pub.rate)]], fmt="s",
                            color="C3", ms=6, capsize=4, label="published, Clopper-Pearson 95% CI" if pub_label else None)
                ax.annotate(f"{percent(pub.rate)} ({pub.responders}/{pub.n})", (i + 0.18, 100 * pub.rate), xytext=(6, 0),
                            textcoords="offset points", ha="left", va="center", fontsize=8, color="C3")
                pub_label = False
        ax.set_xticks(x, [f"{a}\nN = {n}" for a, n in zip(self.arm_names, e.loc[self.arm_names, "n"])], fontsize=8)
        ax.set_xlim(-0.6, len(x) - 0.4)
        if factor == 100.0:
            ax.set_ylim(0, 100)
            ax.set_ylabel("% of patients" if r["kind"] == "binomial" else "%")
        else:
            ax.set_ylabel("peak rise from baseline (%)")
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{self.trial.name}: {e['description'].iloc[0]}", fontsize=9)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        return fig

    def plot_doses(self):
        """Dose distribution at each visit, one panel per arm (stacked shares)."""
        from matplotlib import colormaps
        from matplotlib.ticker import MaxNLocator

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
                       color=color, label=f"{lvl:g} mg" if lvl else "0 mg (placebo, interrupted or stopped)")
                bottom += wide[lvl].to_numpy()
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("week")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0][0].set_ylabel("share of patients")
        axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
        fig.suptitle(f"{self.trial.name}: once-daily dose taken up to each visit")
        fig.tight_layout()
        return fig

    # ------------------------------------------------------------ output
    def save(self, out_dir) -> Path:
        """Write endpoints.csv, ledger.csv, doses.csv, platelets.csv,
        nonmem.csv, platelets.png, doses.png and response.png into the folder
        ``out_dir``.

        The folder is written whole or not at all, and only where pkpd may
        write: a new or empty folder, or one an earlier save made (it carries
        the ``.pkpd-output`` marker).  A file or a folder of other files is
        refused (:class:`~pkpd.checks.PKPDInputError`); see :mod:`pkpd.output`.
        Returns the absolute path.
        """
        from .output import write_folder

        return write_folder(out_dir, self._write_files)

    def _write_files(self, folder: Path, published: Mapping | None = None) -> None:
        """The files of :meth:`save`, written into the existing ``folder``
        (``published``: the results to draw beside the response, as in
        :meth:`plot_response`)."""
        self.endpoints.to_csv(folder / "endpoints.csv", index=False)
        self.ledger.to_csv(folder / "ledger.csv", index=False)
        self.doses.to_csv(folder / "doses.csv", index=False)
        self.platelets.to_csv(folder / "platelets.csv", index=False)
        self.to_nonmem().to_csv(folder / "nonmem.csv", index=False, na_rep=".")
        figures = (("platelets.png", self.plot_platelets()), ("doses.png", self.plot_doses()),
                   ("response.png", self.plot_response(published=published)))
        for name, fig in figures:
            fig.savefig(folder / name, dpi=120)


def _figure(width: float, height: float):
    """A matplotlib Figure drawn by the Agg canvas, outside pyplot's state
    (no GUI backend, nothing to close; displays inline in notebooks)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig
