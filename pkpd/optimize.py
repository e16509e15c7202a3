"""Search for the titration rule that does best by a clinical utility.

:func:`optimize_rule` varies fields of a :class:`~pkpd.titration.TitrationRule`
(and the arms' start dose) within a search space, runs the design with each
candidate rule and keeps the best by a :class:`~pkpd.utility.Utility`, under
a safety constraint.  The search is Optuna's TPE sampler (Bergstra et al.,
NeurIPS 2011), seeded; pkpd writes no optimiser of its own.

How a candidate is judged:

* **Common random numbers.**  Every candidate runs with the same seed, so on
  the same virtual patients, visit noise and disease fluctuation (exactly so
  while the candidates share the visit grid: a rule deciding on days the
  assessments do not cover adds visits, and with them noise draws); a
  difference between candidates is the rule's, not chance's.
* **Only the titrated arms** (arms with a rule) are run: the rule is swapped
  into each of them; placebo and fixed-dose arms do not depend on it.
* **Constraint.**  The share of patients with a true count above
  ``utility.above`` (400 x10^9/L) on any day, P(> 400), must not exceed the
  base rule's on the same patients.  It goes to Optuna as the trial's
  constraint (``Trial.set_constraint``, feasible when <= 0), so that TPE
  models feasibility (Optuna's constrained TPE), and
  the best rule is the feasible one of highest mean utility.  The
  constraint holds on the search's patients; the held-out table's
  ``p_any_above`` row (with its paired interval) says whether it holds on
  new ones, which with few patients above 400 it need not.
* **Held out.**  The best rule and the base rule then run on fresh patients
  (``holdout_seed``, never seen by the search); the gain is the mean of the
  per-patient differences with a paired t 95 % interval.

Parallel work (``workers``, see :mod:`pkpd.distributed`): candidates are
asked from Optuna in batches of ``batch_size`` (default 8, constant liar
between the members of a batch) and each batch is evaluated in parallel.
The sequence of candidates depends on the seed and ``batch_size`` only, never
on ``workers``: the same call gives the same table on 1 or 64 workers.

Units: counts 10^9/L, days, mg.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import warnings
from dataclasses import dataclass, fields, replace
from pathlib import Path

import lazy_loader as lazy
import numpy as np
import pandas as pd
from tqdm import tqdm

from .checks import PKPDInputError, whole
from .distributed import PATIENT_DAY_SECONDS, check_workers, client_for, group_size, n_workers, run_tasks
from .drugs import hetrombopag
from .scenario import load_scenario
from .titration import TitrationRule
from .trial import Trial
from .trial_plots import _figure
from .utility import Utility

stats = lazy.load("scipy.stats", suppress_warning=True)  # on first use: the ``pkpd`` command imports this module

#: The phase III ladder and alternatives [I]: a coarser one, one with a 6.25 mg step, one with a
#: 1.25 mg level below the start, one capped at 5 mg.  Each holds 2.5 and 5 mg, the phase III starts.
LADDERS = (
    hetrombopag.DOSE_LADDER_MG,
    (0.0, 2.5, 5.0, 7.5),
    (0.0, 2.5, 3.75, 5.0, 6.25, 7.5),
    (0.0, 1.25, 2.5, 3.75, 5.0, 7.5),
    (0.0, 2.5, 3.75, 5.0),
)

#: The default search space: field -> (low, high[, step]) for a range, or a
#: list of choices.  Its ranges cannot break a rule's threshold order
#: (low < high < interrupt_above, resume_below < interrupt_above).
DEFAULT_SPACE = {
    "start_mg": [2.5, 5.0],                     # mg, every titrated arm
    "low": (30.0, 80.0, 5.0),                   # 10^9/L
    "high": (150.0, 300.0, 10.0),               # 10^9/L
    "interrupt_above": (320.0, 500.0, 10.0),    # 10^9/L
    "resume_below": (100.0, 250.0, 10.0),       # 10^9/L
    "step_up_after_days": (7.0, 28.0, 7.0),     # days
    "visit_every_days": [7.0, 14.0],            # days
    "ladder_mg": list(LADDERS),                 # mg
}

#: Rule fields a space may not vary (a label, and the direction of the drug's effect).
_FIXED_FIELDS = ("name", "step_below_low")
#: Optuna's name of the constraint (P(> limit) minus the base's; feasible when <= 0).
_CONSTRAINT = "p_any_above_minus_base"
_INT_FIELDS = ("resume_levels_down", "confirm_up", "confirm_down", "confirm_interrupt", "confirm_resume")


def _optuna():
    try:
        optuna = importlib.import_module("optuna")
    except ImportError:
        raise PKPDInputError("optimize_rule needs Optuna: pip install optuna.") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


# ================================================================= the search space
@dataclass(frozen=True)
class _Dim:
    """One dimension of the search space."""

    name: str
    kind: str                    # "float", "int" or "choice"
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    choices: tuple = ()

    def label(self, value) -> object:
        """A table cell for ``value`` (a ladder as text)."""
        if isinstance(value, tuple):
            return "/".join(f"{x:g}" for x in value)
        return value

    def suggest(self, trial):
        if self.kind == "choice":
            return self.choices[trial.suggest_categorical(self.name, list(range(len(self.choices))))]
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1))
        return trial.suggest_float(self.name, self.low, self.high, step=self.step)

    def encode(self, value):
        """The Optuna parameter of ``value`` (None: not in this dimension)."""
        if self.kind == "choice":
            hits = [i for i, c in enumerate(self.choices) if _same(c, value)]
            return hits[0] if hits else None
        if value is None or not self.low - 1e-9 <= value <= self.high + 1e-9:
            return None
        if self.step is not None and abs((value - self.low) / self.step - round((value - self.low) / self.step)) > 1e-9:
            return None
        return int(value) if self.kind == "int" else float(value)

    def distribution(self, optuna):
        d = optuna.distributions
        if self.kind == "choice":
            return d.CategoricalDistribution(list(range(len(self.choices))))
        if self.kind == "int":
            return d.IntDistribution(int(self.low), int(self.high), step=int(self.step or 1))
        return d.FloatDistribution(self.low, self.high, step=self.step)


def _same(a, b) -> bool:
    if isinstance(a, tuple) or isinstance(b, tuple):
        try:
            return len(a) == len(b) and bool(np.allclose(a, b, rtol=0, atol=1e-9))
        except TypeError:
            return False
    return a == b


def _number(name: str, value) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise PKPDInputError(f"space[{name!r}]: range bounds must be finite numbers; got {value!r}, "
                             f"e.g. space={{{name!r}: (30, 80)}}.")
    return float(value)


def parse_space(space, base_rule: TitrationRule) -> list[_Dim]:
    """The dimensions of ``space`` (see :func:`optimize_rule`), checked
    against the fields of :class:`~pkpd.titration.TitrationRule`."""
    if not isinstance(space, dict) or not space:
        raise PKPDInputError(f"space must be a non-empty dict of field -> (low, high[, step]) or [choices]; got {space!r}. "
                             "E.g. space={'low': (30, 80), 'ladder_mg': [[0, 2.5, 5], [0, 2.5, 3.75, 5, 7.5]]}, "
                             "or pkpd.optimize.DEFAULT_SPACE.")
    allowed = ["start_mg"] + [f.name for f in fields(TitrationRule) if f.name not in _FIXED_FIELDS]
    dims = []
    for name, spec in space.items():
        if name not in allowed:
            raise PKPDInputError(f"space has unknown field {name!r}; the search can vary {allowed} "
                                 "(TitrationRule fields and the arms' start_mg).")
        if isinstance(spec, list):
            if not spec:
                raise PKPDInputError(f"space[{name!r}] is an empty list of choices; give at least one value.")
            choices = tuple(tuple(float(x) for x in c) if isinstance(c, (list, tuple)) else c for c in spec)
            if name == "ladder_mg":
                choices = tuple(TitrationRule(ladder_mg=c, name="ladder").ladder_mg if isinstance(c, tuple) else c
                                for c in choices)
                for c in choices:
                    if not isinstance(c, tuple):
                        raise PKPDInputError(f"space['ladder_mg'] choices must be lists of doses in mg; got {c!r}.")
            dims.append(_Dim(name, "choice", choices=choices))
            continue
        if not isinstance(spec, tuple) or len(spec) not in (2, 3):
            raise PKPDInputError(f"space[{name!r}] must be (low, high), (low, high, step) or a list of choices; "
                                 f"got {spec!r}.")
        if name in ("ladder_mg", "interrupt_at_lowest"):
            raise PKPDInputError(f"space[{name!r}] cannot be a range; give a list of choices.")
        low, high = _number(name, spec[0]), _number(name, spec[1])
        step = _number(name, spec[2]) if len(spec) == 3 else None
        if not low < high or (step is not None and step <= 0):
            raise PKPDInputError(f"space[{name!r}] must have low < high and step > 0; got {spec!r}.")
        if name in _INT_FIELDS:
            if not (low.is_integer() and high.is_integer() and (step is None or step.is_integer())):
                raise PKPDInputError(f"space[{name!r}]: {name} is a whole number; give whole bounds, got {spec!r}.")
            dims.append(_Dim(name, "int", low, high, step))
        else:
            dims.append(_Dim(name, "float", low, high, step))
    # every start dose must be on every ladder the search may pick
    by = {d.name: d for d in dims}
    ladders = by["ladder_mg"].choices if "ladder_mg" in by else (base_rule.ladder_mg,)
    if "start_mg" in by:
        if by["start_mg"].kind != "choice":
            raise PKPDInputError("space['start_mg'] must be a list of doses (mg), e.g. [2.5, 5.0]: a start dose is a "
                                 "ladder level.")
        for dose in by["start_mg"].choices:
            for ladder in ladders:
                if not np.isclose(np.asarray(ladder), dose, rtol=0, atol=1e-9).any() or dose == 0:
                    raise PKPDInputError(
                        f"space['start_mg'] choice {dose!r} mg is not a level > 0 of ladder {list(ladder)} mg; "
                        "use start doses that every ladder choice holds.")
    return dims


# ================================================================= designs
def titrated_design(design) -> Trial:
    """``design`` (a :class:`~pkpd.trial.Trial`, a scenario or the path of
    its file) with only its titrated arms (arms with a rule)."""
    if isinstance(design, (str, Path)):
        design = load_scenario(design)
    trial = getattr(design, "trial", design)
    if not isinstance(trial, Trial):
        raise PKPDInputError(f"design must be a pkpd.Trial or a scenario (pkpd.load_scenario); got {type(design).__name__}.")
    arms = tuple(a for a in trial.arms if a.rule is not None)
    if not arms:
        raise PKPDInputError(f"design {trial.name!r} has no titrated arm (an arm with a rule) to put a rule into; "
                             "give an arm rule = ... .")
    return replace(trial, arms=arms)


def scaled_design(design, patients: int | None = None, duration_days: float | None = None) -> Trial:
    """The titrated arms of ``design`` with ``patients`` in all (shared in
    proportion to the arms' sizes) and lasting ``duration_days`` (a primary
    day after the end is dropped)."""
    trial = titrated_design(design)
    if patients is not None:
        patients = whole("patients", patients, low=len(trial.arms))
        sizes = np.array([a.n for a in trial.arms], float)
        n = np.floor(sizes / sizes.sum() * patients).astype(int)
        n[-1] += patients - n.sum()
        trial = replace(trial, arms=tuple(replace(a, n=int(k)) for a, k in zip(trial.arms, n)))
    if duration_days is not None:
        ends = trial.endpoints
        changes = {}
        if ends.primary_day is not None and ends.primary_day > duration_days:
            changes["primary_day"] = None
        if ends.increased_within_days > duration_days:
            changes["increased_within_days"] = duration_days
        if ends.once_within_days is not None and ends.once_within_days > duration_days:
            changes["once_within_days"] = None
        trial = replace(trial, duration_days=duration_days, endpoints=replace(ends, **changes) if changes else ends)
    return trial


def _candidate(trial: Trial, base_rule: TitrationRule, params: dict, name: str) -> Trial:
    """``trial`` with ``params`` (rule fields and start_mg) in every titrated arm."""
    rule_fields = {k: v for k, v in params.items() if k != "start_mg"}
    if "stop_after_days_at_max" in rule_fields and rule_fields["stop_after_days_at_max"] is not None:
        rule_fields["stop_after_days_at_max"] = float(rule_fields["stop_after_days_at_max"])
    rule = base_rule.with_(**rule_fields, name=name)
    arms = []
    for a in trial.arms:
        start = params.get("start_mg", a.start_mg)
        stages = tuple(st.with_(rule=rule) if st.rule is not None else st for st in a.stages)
        arms.append(replace(a, rule=rule, start_mg=float(start), stages=stages))
    return replace(trial, arms=tuple(arms))


# ================================================================= evaluation (runs on workers)
def _evaluate(task) -> tuple[dict, pd.DataFrame | None]:
    """Run one candidate: ``task`` = (trial, seed, replicates, utility, keep
    the per-patient table).  Returns its utility summary (and the table)."""
    trial, seed, replicates, utility, keep = task
    result = trial.run(seed=seed, replicates=replicates, progress=False)
    table = utility.per_patient(result)
    return utility.summary(table), (table if keep else None)


def paired_difference(new, old, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean of ``new - old`` (paired per patient) and its t interval."""
    diff = np.asarray(new, float) - np.asarray(old, float)
    n = diff.size
    mean = float(diff.mean())
    if n < 2:
        return mean, np.nan, np.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * diff.std(ddof=1) / np.sqrt(n))
    return mean, mean - half, mean + half


_METRICS = (
    ("utility", "utility", "utility per patient (patient-days in range equivalent)"),
    ("time_in_range", "time_in_range", "fraction of days with true count in range"),
    ("p_any_above", "any_above", "share of patients with a true count above the limit on any day"),
    ("days_above", "days_above", "days above the limit per patient"),
    ("days_below", "days_below", "days below the low limit per patient"),
    ("dose_changes", "dose_changes", "dose changes per patient"),
    ("visits", "visits", "decision visits per patient"),
)


def holdout_table(base: pd.DataFrame, best: pd.DataFrame, utility: Utility) -> pd.DataFrame:
    """Base against best on the same held-out patients (two
    :meth:`Utility.per_patient` tables in the same patient order): mean of
    each, the paired difference best - base and its t 95 % interval."""
    if len(base) != len(best) or not np.array_equal(base["ID"].to_numpy(), best["ID"].to_numpy()):
        raise PKPDInputError("holdout_table needs the two rules' tables on the same patients, in the same order.")
    rows = []
    for metric, col, meaning in _METRICS:
        b, n = base[col].to_numpy(float), best[col].to_numpy(float)
        diff, lo, hi = paired_difference(n, b)
        rows.append({"metric": metric, "base": float(b.mean()), "best": float(n.mean()), "difference": diff,
                     "difference_low": lo, "difference_high": hi, "patients": len(b),
                     "interval": "paired t 95% (per-patient differences)", "meaning": meaning})
    table = pd.DataFrame(rows).set_index("metric")
    table.attrs["utility"] = repr(utility)
    return table


# ================================================================= the result
class RuleOptimization:
    """What :func:`optimize_rule` found.

    best_rule : the best feasible :class:`~pkpd.titration.TitrationRule`
        (the base rule if no candidate beat it); best_start_mg : its start
        dose (mg) when the space varies it, else None.
    base_rule, utility, seed, holdout_seed, batch_size, budget : the settings.
    candidates : every candidate evaluated (row 0 the base design): its
        parameters, mean utility per patient, time_in_range (fraction of
        days), p_any_above (share of patients), days above / below, dose
        changes and visits per patient, constraint (p_any_above - the
        base's; feasible when <= 0), feasible, valid (a rule the parameters
        make; else ``note`` says why).
    holdout : the base and best rules on fresh patients (see
        :func:`holdout_table`); holdout_patients : their per-patient tables.
    plot() : time in range against P(> limit), base and best marked.
    elapsed_s : wall time of the search (s; the base and the candidates,
        without starting a cluster or the held-out runs), per_candidate_s :
        the same per run (base included).
    """

    def __init__(self, **kw):
        self.__dict__.update(kw)

    def __repr__(self) -> str:
        h = self.holdout
        u = h.loc["utility"]
        t, p = h.loc["time_in_range"], h.loc["p_any_above"]
        start = "" if self.best_start_mg is None else f", start {self.best_start_mg:g} mg"
        lim = self.utility.above
        if self.best_index == 0:
            start = " (the base rule: no feasible candidate did better on the search's patients)"
        return (f"<RuleOptimization: {len(self.candidates) - 1} candidates over {len(self.dims)} fields, seed {self.seed}, "
                f"batch {self.batch_size}\n best: {self.best_rule!r}{start}\n held out (seed {self.holdout_seed}, "
                f"{int(u['patients'])} patients): utility {u['difference']:+.2f} per patient "
                f"[95% CI {u['difference_low']:+.2f}, {u['difference_high']:+.2f}]; time in range "
                f"{100 * t['base']:.1f}% -> {100 * t['best']:.1f}%; P(> {lim:g}) {100 * p['base']:.1f}% -> "
                f"{100 * p['best']:.1f}%\n .best_rule, .candidates, .holdout, .plot()>")

    @property
    def gain(self) -> tuple[float, float, float]:
        """Held-out utility gain per patient, best - base, and its 95 % interval."""
        u = self.holdout.loc["utility"]
        return float(u["difference"]), float(u["difference_low"]), float(u["difference_high"])

    def plot(self):
        """Time in range (%) against P(any true count > limit) (%) of every
        candidate (colour: mean utility; crosses: infeasible), the base rule and
        the best marked; the dashed line is the constraint (the base's P)."""
        c = self.candidates[self.candidates["valid"]]
        fig = _figure(7.0, 5.0)
        ax = fig.add_subplot()
        ok, bad = c[c["feasible"]], c[~c["feasible"]]
        lim = self.utility.above
        sc = ax.scatter(100 * ok["p_any_above"], 100 * ok["time_in_range"], c=ok["utility"], cmap="viridis", s=30,
                        label="feasible candidates")
        ax.scatter(100 * bad["p_any_above"], 100 * bad["time_in_range"], marker="x", color="0.5", s=25,
                   label=f"infeasible (P(> {lim:g}) above the base's)")
        fig.colorbar(sc, ax=ax, label="mean utility per patient")
        base = self.candidates.iloc[0]
        best = self.candidates.loc[self.best_index]
        ax.scatter([100 * base["p_any_above"]], [100 * base["time_in_range"]], marker="*", s=250, color="tab:red",
                   edgecolor="k", zorder=5, label=f"base: {self.base_rule.name}")
        ax.scatter([100 * best["p_any_above"]], [100 * best["time_in_range"]], marker="D", s=110, color="tab:orange",
                   edgecolor="k", zorder=5, label="best")
        ax.axvline(100 * base["p_any_above"], ls="--", color="tab:red", lw=1)
        ax.set_xlabel(f"patients with a true count > {lim:g} x10^9/L on any day (%)")
        lo, hi = self.utility.in_range
        ax.set_ylabel(f"time in range {lo:g}-{hi:g} x10^9/L (% of days)")
        ax.set_title(f"{len(self.candidates) - 1} candidate rules (search seed {self.seed})", fontsize=10)
        ax.legend(fontsize=8, loc="lower right")
        return fig


# ================================================================= the search
def optimize_rule(base_rule: TitrationRule | None = None, space=None, design=None, utility: Utility | None = None,
                  budget: int = 50, seed: int = 0, workers=None, batch_size: int = 8, replicates: int = 1,
                  holdout_seed: int | None = None, holdout_replicates: int | None = None,
                  n_startup_trials: int = 10, progress: bool = True) -> RuleOptimization:
    """Find the titration rule of highest mean utility on a design (see the module docs).

    base_rule : the rule the search starts from and compares with; its
        fields outside ``space`` stay as they are (default: the rule of the
        design's first titrated arm).
    space : field -> ``(low, high)`` or ``(low, high, step)`` (a range;
        whole-number fields such as ``confirm_up`` get whole values) or a
        list of choices (``ladder_mg``: a list of ladders); ``start_mg`` (a
        list of doses, mg) sets every titrated arm's start dose.  Default
        :data:`DEFAULT_SPACE` (8 fields).
    design : a scenario (:func:`pkpd.load_scenario`) or a
        :class:`~pkpd.trial.Trial`; its titrated arms are run.
    utility : the :class:`~pkpd.utility.Utility` (default weights: see :mod:`pkpd.utility`).
    budget : candidates to evaluate (besides the base design), >= 1.
    seed : the search's seed: Optuna's sampler and every candidate's trial
        (common random numbers).
    workers : see :mod:`pkpd.distributed`; results do not depend on it.
    batch_size : candidates asked from Optuna at once and run in parallel
        (results depend on it; keep it fixed to compare runs).
    replicates : replicate trials per candidate (patients = the design's x replicates).
    holdout_seed, holdout_replicates : the fresh patients of the held-out
        comparison (default ``seed + 1`` and ``replicates``).
    n_startup_trials : random candidates before TPE models the results.
    progress : a tqdm bar over candidates (stderr).
    """
    if design is None:
        raise PKPDInputError("design is required: a scenario (pkpd.load_scenario('scenarios/itp_phase3.toml')) "
                             "or a pkpd.Trial.")
    trial = titrated_design(design)
    if base_rule is None:
        base_rule = trial.arms[0].rule
    if not isinstance(base_rule, TitrationRule):
        raise PKPDInputError(f"base_rule must be a pkpd.TitrationRule or None; got {type(base_rule).__name__}.")
    utility = Utility() if utility is None else utility
    if not isinstance(utility, Utility):
        raise PKPDInputError(f"utility must be a pkpd.Utility or None; got {type(utility).__name__}.")
    dims = parse_space(DEFAULT_SPACE if space is None else space, base_rule)
    budget = whole("budget", budget, low=1, alternative="candidates to evaluate")
    batch_size = whole("batch_size", batch_size, low=1)
    replicates = trial.check_size(replicates)
    n_startup_trials = whole("n_startup_trials", n_startup_trials, low=0)
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PKPDInputError(f"seed must be a whole number >= 0; got {seed!r} (the search is reproducible only with one).")
    holdout_seed = int(seed) + 1 if holdout_seed is None else holdout_seed
    if isinstance(holdout_seed, (bool, np.bool_)) or not isinstance(holdout_seed, (int, np.integer)) or holdout_seed < 0:
        raise PKPDInputError(f"holdout_seed must be a whole number >= 0; got {holdout_seed!r}.")
    if holdout_seed == seed:
        raise PKPDInputError(f"holdout_seed ({holdout_seed}) must differ from seed: the held-out patients must be "
                             "ones the search never saw.")
    holdout_replicates = trial.check_size(replicates if holdout_replicates is None else holdout_replicates,
                                          field="holdout_replicates")
    check_workers(workers)
    optuna = _optuna()

    base_design = trial if base_rule == trial.arms[0].rule and all(a.rule == base_rule for a in trial.arms) else \
        _candidate(trial, base_rule, {}, base_rule.name)
    cost = base_design.n_per_trial * (base_design.duration_days + 1) * replicates * PATIENT_DAY_SECONDS
    rows = []
    bar = tqdm(total=budget + 1, desc="optimize_rule: candidates", unit="candidate", file=sys.stderr,
               disable=not progress, leave=False)
    try:
        with client_for(workers) as client:
            started = time.perf_counter()  # after a cluster made here has started
            group = group_size(batch_size, cost, n_workers(client))
            (base, _), = run_tasks(_evaluate, [(base_design, seed, replicates, utility, False)], client, 1, bar)
            rows.append({"candidate": 0, "source": "base", "batch": 0,
                         **{d.name: d.label(_base_value(d.name, base_rule, base_design)) for d in dims},
                         "valid": True, **_columns(base, base), "note": ""})

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                sampler = optuna.samplers.TPESampler(seed=int(seed), multivariate=True, constant_liar=True,
                                                     n_startup_trials=n_startup_trials)
                study = optuna.create_study(direction="maximize", sampler=sampler)
                _tell_base(optuna, study, dims, base_rule, base_design, base)
                done = 0
                while done < budget:
                    asked = [study.ask() for _ in range(min(batch_size, budget - done))]
                    batch = done // batch_size + 1
                    params = [{d.name: d.suggest(t) for d in dims} for t in asked]
                    designs, notes = [], []
                    for k, p in enumerate(params):
                        try:
                            designs.append(_candidate(trial, base_rule, p, f"candidate {done + k + 1}"))
                            notes.append("")
                        except PKPDInputError as err:
                            designs.append(None)
                            notes.append(str(err))
                    valid = [k for k, d in enumerate(designs) if d is not None]
                    results = run_tasks(_evaluate, [(designs[k], seed, replicates, utility, False) for k in valid],
                                        client, group, bar)
                    found = dict(zip(valid, (r for r, _ in results)))
                    bar.update(len(asked) - len(valid))
                    for k, (t, p) in enumerate(zip(asked, params)):
                        row = {"candidate": done + k + 1, "source": "search", "batch": batch,
                               **{d.name: d.label(p[d.name]) for d in dims}}
                        if k in found:
                            cols = _columns(found[k], base)
                            t.set_constraint(_CONSTRAINT, cols["constraint"])
                            study.tell(t, cols["utility"])
                            row.update(valid=True, **cols, note="")
                        else:
                            t.set_constraint(_CONSTRAINT, 1.0)
                            study.tell(t, state=optuna.trial.TrialState.FAIL)
                            row.update(valid=False, **{c: np.nan for c in _columns(base, base)}, note=notes[k])
                            row["feasible"] = False
                        rows.append(row)
                    done += len(asked)
            elapsed = time.perf_counter() - started
            table = pd.DataFrame(rows).set_index("candidate")
            table["feasible"] = table["feasible"].astype(bool)
            table["valid"] = table["valid"].astype(bool)
            ok = table[table["valid"] & table["feasible"]]
            best_index = int(ok["utility"].idxmax())  # the first of equal ones (row 0, the base, is always feasible)
            best_params = params_of(table.loc[best_index], dims)
            best_design = base_design if best_index == 0 else _candidate(trial, base_rule, best_params,
                                                                         f"best of {budget} (seed {seed})")
            best_rule = best_design.arms[0].rule
            held = run_tasks(_evaluate, [(base_design, holdout_seed, holdout_replicates, utility, True),
                                         (best_design, holdout_seed, holdout_replicates, utility, True)], client, 1)
    finally:
        bar.close()
    table.attrs["units"] = {"start_mg": "mg", "low": "10^9/L", "high": "10^9/L", "interrupt_above": "10^9/L",
                            "resume_below": "10^9/L", "step_up_after_days": "days", "visit_every_days": "days",
                            "ladder_mg": "mg", "utility": "per patient", "time_in_range": "fraction of days",
                            "p_any_above": "fraction of patients", "days_above": "days per patient",
                            "days_below": "days per patient", "dose_changes": "per patient", "visits": "per patient"}
    return RuleOptimization(
        best_rule=best_rule, best_start_mg=best_params.get("start_mg") if best_index else None,
        best_index=best_index, best_design=best_design, base_rule=base_rule, base_design=base_design,
        utility=utility, seed=int(seed), holdout_seed=int(holdout_seed), batch_size=batch_size, budget=budget,
        replicates=replicates, holdout_replicates=holdout_replicates, dims=dims, candidates=table,
        holdout=holdout_table(held[0][1], held[1][1], utility),
        holdout_patients={"base": held[0][1], "best": held[1][1]},
        elapsed_s=elapsed, per_candidate_s=elapsed / (budget + 1),
        patients=base_design.n_per_trial * replicates, days=base_design.duration_days,
    )


def _base_value(name, rule: TitrationRule, design: Trial):
    if name != "start_mg":
        return getattr(rule, name)
    starts = {a.start_mg for a in design.arms}
    return starts.pop() if len(starts) == 1 else "/".join(f"{a.start_mg:g}" for a in design.arms)


def _columns(summary: dict, base: dict) -> dict:
    """A candidate's table columns from its utility summary (``base``: the base design's)."""
    constraint = (summary["n_any_above"] - base["n_any_above"]) / summary["patients"]
    return {"utility": summary["utility"], "time_in_range": summary["time_in_range"],
            "p_any_above": summary["p_any_above"], "days_above": summary["days_above"],
            "days_below": summary["days_below"], "dose_changes": summary["dose_changes"],
            "visits": summary["visits"], "constraint": constraint, "feasible": constraint <= 0}


def _tell_base(optuna, study, dims, rule, design, base) -> None:
    """Give Optuna the base design's result when the space can express it."""
    values = {d.name: d.encode(_base_value(d.name, rule, design)) for d in dims}
    if any(v is None for v in values.values()):
        return
    study.add_trial(optuna.trial.create_trial(
        params=values, distributions={d.name: d.distribution(optuna) for d in dims}, value=base["utility"],
        constraints={_CONSTRAINT: 0.0}))


def params_of(row: pd.Series, dims: list[_Dim]) -> dict:
    """A candidate table row's parameters back as rule fields (ladders as tuples)."""
    out = {}
    for d in dims:
        value = row[d.name]
        if d.name == "ladder_mg" and isinstance(value, str):
            value = tuple(float(x) for x in value.split("/"))
            value = (0.0, *value) if value[0] != 0 else value
        elif d.kind == "int":
            value = int(value)
        elif isinstance(value, (np.floating, np.integer)):
            value = value.item()
        out[d.name] = value
    return out


# ================================================================= command line
def add_arguments(parser: argparse.ArgumentParser, whole) -> None:
    """The ``pkpd optimize`` options."""
    parser.add_argument("scenario", help="path to a scenario .toml file, e.g. scenarios/itp_phase3.toml")
    parser.add_argument("--budget", type=whole(1, "candidate rules"), default=50, help="candidate rules to evaluate (default 50)")
    parser.add_argument("--workers", default=None,
                        help="worker processes on this machine (e.g. 2) or a Dask scheduler address (default: one process)")
    parser.add_argument("--seed", type=whole(0, "search seed"), help="search seed (default: the file's, else 0)")
    parser.add_argument("--batch-size", type=whole(1, "candidates per batch"), default=8, help="candidates per parallel batch (default 8)")
    parser.add_argument("--patients", type=whole(1, "patients"), help="titrated patients per candidate (default: the file's arms)")
    parser.add_argument("--days", type=whole(1, "days"), help="trial duration, days (default: the file's)")
    parser.add_argument("--plot", help="write the trade-off figure to this PNG file")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def cli_optimize(args) -> int:
    """``pkpd optimize``: search, then print the best rule and its held-out gain."""
    from_file = load_scenario(args.scenario)
    workers = args.workers
    if workers is not None and workers.strip().isdigit():
        workers = int(workers)
    design = scaled_design(from_file, args.patients, args.days)
    seed = args.seed if args.seed is not None else (from_file.seed or 0)
    res = optimize_rule(space=None, design=design, budget=args.budget, seed=seed, workers=workers,
                        batch_size=args.batch_size, progress=not args.no_progress)
    print(repr(res))
    h = res.holdout[["base", "best", "difference", "difference_low", "difference_high"]]
    print(f"\nheld-out comparison, {int(res.holdout['patients'].iloc[0])} patients (seed {res.holdout_seed}), "
          "paired t 95% intervals of best - base:")
    print(h.to_string(float_format=lambda x: f"{x:.4g}"))
    print(f"\n{len(res.candidates) - 1} candidates x {res.patients} patients x {res.days:g} days in "
          f"{res.elapsed_s:.1f} s ({res.per_candidate_s:.2f} s per candidate)")
    if args.plot:
        res.plot().savefig(args.plot, dpi=120)
        print(f"wrote {args.plot}")
    return 0
