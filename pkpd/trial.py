"""Virtual dose-titration trials: design in, endpoint tables out.

A :class:`Trial` is a small frozen design: arms (a start dose with a
:class:`~pkpd.titration.TitrationRule`, a fixed dose, or placebo = fixed 0 mg),
patients per arm, duration, visit schedule, the population model and the
endpoint definitions (:class:`Endpoints`).  :meth:`Trial.run` simulates it, with
any number of replicate trials, and returns a
:class:`~pkpd.trial_result.TrialResult` of pandas DataFrames; what the trial
reports is the endpoint registry of :mod:`pkpd.endpoints`.

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

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import titration as tt
from .checks import MAX_PATIENT_DAYS, MAX_PATIENT_VISITS, PKPDInputError, dose_mg, positive, whole
from .endpoints import ENDPOINTS, RESPONSE_ENDPOINTS, _interval, percent  # noqa: F401 (re-exported)
from .intervals import clopper_pearson  # noqa: F401 (re-exported)
from .drugs import hetrombopag
from .population import PKPDModel
from .titration import TitrationRule
from .trial_plots import _figure  # noqa: F401 (re-exported)
from .trial_result import PLATELET_CMT, TrialResult  # noqa: F401 (PLATELET_CMT re-exported)

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
    model : population model (default ``pkpd.drugs.hetrombopag.model("itp")``).
    endpoints : endpoint definitions.
    name : label.

    A design whose run would not fit in memory is refused (see
    :meth:`check_size`).
    """

    arms: tuple[Arm, ...]
    duration_days: float = 56.0
    visit_every_days: float = 7.0
    treatment_days: float | None = None
    model: PKPDModel = field(default_factory=lambda: hetrombopag.model("itp"))
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
            raise PKPDInputError(f"model must be a pkpd PKPDModel (e.g. pkpd.drugs.hetrombopag.model('itp')); got {type(self.model).__name__}.")
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
            typical_draws: pd.DataFrame | None = None) -> TrialResult:
        """Simulate ``replicates`` independent trials of this design.

        seed : int (or None for fresh entropy; the one used is kept in
            ``result.seed``).  Replicate r always gets the same patients and
            noise for a given seed, whatever the chunking.
        progress : show a tqdm progress bar (stderr).
        typical_draws : parameter uncertainty, e.g. posterior draws of the
            typical values from :func:`pkpd.fit`: a DataFrame with one row per
            replicate (``len(typical_draws) == replicates``) and columns named
            like the model's parameters (units of
            :attr:`PKPDModel.parameter_units`; whole-number ones such as ``n_transit`` cannot vary).
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
        names = self.model.parameter_names
        unknown = [c for c in typical_draws.columns if c not in names]
        if unknown:
            raise PKPDInputError(
                f"typical_draws has unknown columns {unknown}; use parameter names {list(names)} "
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

    def _patients(self, reps: range, rngs: list, models) -> tuple:
        """The model's part of a run: draw the patients of replicates ``reps``
        (``rngs``: one generator each, used first here, then for their visit
        noise).  Returns the solver of all of them, their true baseline
        response (the PD model's baseline parameter, e.g. platelets in
        10^9/L), ``observe(true) -> observed`` counts and the
        per-patient columns kept in the result (parameters as ``param_*``,
        ``responder``)."""
        n = self.n_per_trial
        params = pd.concat([(self.model if models is None else models[r]).sample_parameters(n, seed=rng)
                            for r, rng in zip(reps, rngs)], ignore_index=True)
        slices = [slice(i * n, (i + 1) * n) for i in range(len(reps))]

        def observe(true):
            out = np.empty_like(true)
            for sl, rng in zip(slices, rngs):
                out[sl] = self.model.residual_plt.sample(true[sl], rng)
            return out

        kept = {**{f"param_{c}": params[c].to_numpy() for c in self.model.parameter_names},
                "responder": params["responder"].to_numpy()}
        return self.model.solver(params), params[self.model.pd.BASELINE].to_numpy(), observe, kept

    def _run_chunk(self, reps: range, children, grid: np.ndarray, bar, models=None) -> dict:
        """Simulate the replicates ``reps`` together; arrays over their patients.
        ``models``: one model per replicate (typical-value draws) or None."""
        n, n_arms = self.n_per_trial, len(self.arms)
        rngs = [np.random.default_rng(children[r]) for r in reps]
        solver, plt0, observe, kept = self._patients(reps, rngs, models)
        S, G = plt0.size, grid.size
        arm_of = np.tile(np.repeat(np.arange(n_arms), [a.n for a in self.arms]), len(reps))
        rep_of = np.repeat(np.asarray(reps), n)
        days_all = np.arange(int(self.duration_days) + 1)
        # NaN (action -1) until simulated, so that a cell left unfilled cannot pass as a count
        daily = np.full((S, days_all.size), np.nan, np.float32)
        daily[:, 0] = plt0
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

        true_v[:, 0] = plt0
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
            "replicate": rep_of, "arm": arm_of, "plt0": plt0, **kept, "true": true_v, "observed": obs_v,
            "action": action, "dose": dose_v, "dose_before": before_v, "daily": daily,
        }
