"""Virtual dose-titration trials: design in, endpoint tables out.

A :class:`Trial` is a small frozen design: arms (a start dose with a
:class:`~pkpd.titration.TitrationRule`, a fixed dose, placebo = fixed 0 mg, or
a sequence of :class:`Stage` s: fixed dose, titration, taper to withdrawal, off drug),
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
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np
import pandas as pd
from tqdm import tqdm

from . import titration as tt
from .checks import MAX_PATIENT_DAYS, MAX_PATIENT_VISITS, PKPDInputError, dose_mg, positive, whole, with_fields
from .endpoints import ENDPOINTS, RESPONSE_ENDPOINTS, _interval, percent  # noqa: F401 (re-exported)
from .intervals import clopper_pearson  # noqa: F401 (re-exported)
from .distributed import PATIENT_DAY_SECONDS, check_workers, client_for, group_size, n_workers, run_tasks
from .drugs import hetrombopag
from .population import PKPDModel
from .titration import TitrationRule
from .trial_plots import _figure  # noqa: F401 (re-exported)
from .trial_result import PLATELET_CMT, TrialResult  # noqa: F401 (PLATELET_CMT re-exported)

#: Patients simulated together in one solver at most (memory ~1 kB per patient).
MAX_CHUNK = 50_000

#: What a stage does with the dose (see :class:`Stage`).
STAGE_KINDS = ("fixed", "titration", "taper", "off")
#: What happens at a taper stage's start to patients who are not responding (see :class:`Stage`).
NONRESPONDER_CHOICES = ("stay", "stop")


def _whole_days(name: str, value) -> float:
    """A whole number of days, 1 to 7305 (20 years; the simulation grid is daily)."""
    days = tt._days(name, value, strictly_positive=True)
    if days != np.round(days):
        raise PKPDInputError(f"{name} must be a whole number of days; got {value!r}. Round it to full days.")
    return days


# ================================================================= design
@dataclass(frozen=True)
class Stage:
    """One stage of an arm's course: what happens to the once-daily dose for ``days`` days.

    kind :
        ``"fixed"``: hold ``dose_mg`` (None: the dose carried in, i.e. the
        arm's ``start_mg`` for a first stage, each patient's last dose after
        a titration or a taper).
        ``"titration"``: ``rule`` (None: the arm's rule) decides on its
        visits every ``rule.visit_every_days`` from the stage start,
        starting at ``dose_mg`` (None: the dose carried in, which must then
        be one known ladder level; after a titration stage with the same rule
        the patients simply go on with their titration state).
        ``"taper"``: at the stage start, patients whose observed count is
        >= ``responder_at_least`` (10^9/L) are tapered: one ``ladder_mg``
        level down at once and every ``taper_every_days`` after, until 0 mg
        (withdrawal) for the rest of the stage.  Patients not responding at
        the taper start keep their dose (``nonresponders = "stay"``: in the
        phase III they went on to the long-term stage on drug, Mei et al.,
        J Thromb Haemost 2022;20:716) or stop treatment (``"stop"``).  A
        relapse during the taper does not change the schedule [I].
        ``"off"``: no drug.
    days : duration, whole days >= 1.
    dose_mg, rule : see ``kind`` (mg; a :class:`~pkpd.titration.TitrationRule`).
    taper_every_days : days between taper steps (whole days >= 1).
    ladder_mg : the taper's levels, mg (0 is added); default hetrombopag's
        phase III levels (:data:`pkpd.drugs.hetrombopag.DOSE_LADDER_MG`).
    responder_at_least : observed count at the taper start that makes a
        patient a responder, 10^9/L (50, the phase III response).
    nonresponders : ``"stay"`` or ``"stop"`` (see ``kind``).

    After an arm's last stage there is no drug (follow-up).  Stage kinds do
    not use each other's fields; a field given to the wrong kind is refused.
    """

    kind: str
    days: float
    dose_mg: float | None = None
    rule: TitrationRule | None = None
    taper_every_days: float = 7.0
    ladder_mg: tuple[float, ...] = hetrombopag.DOSE_LADDER_MG
    responder_at_least: float = 50.0
    nonresponders: str = "stay"

    def __repr__(self) -> str:
        extra = {"fixed": "" if self.dose_mg is None else f", {self.dose_mg:g} mg",
                 "titration": f", rule {self.rule.name!r}" if self.rule is not None else "",
                 "taper": f", one level down every {self.taper_every_days:g} d in responders >= {self.responder_at_least:g}",
                 "off": ""}[self.kind]
        return f"Stage({self.kind}, {self.days:g} d{extra})"

    def __post_init__(self):
        if self.kind not in STAGE_KINDS:
            close = [k for k in STAGE_KINDS if isinstance(self.kind, str) and k.startswith(self.kind[:2])]
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PKPDInputError(f"stage kind must be one of {list(STAGE_KINDS)}; got {self.kind!r}{hint}.")
        object.__setattr__(self, "days", _whole_days(f"{self.kind} stage days", self.days))
        default = Stage.__dataclass_fields__
        unused = {"fixed": ("rule", "taper_every_days", "ladder_mg", "responder_at_least", "nonresponders"),
                  "titration": ("taper_every_days", "ladder_mg", "responder_at_least", "nonresponders"),
                  "taper": ("dose_mg", "rule"),
                  "off": ("dose_mg", "rule", "taper_every_days", "ladder_mg", "responder_at_least", "nonresponders")}[self.kind]
        given = [f for f in unused if getattr(self, f) != default[f].default]
        if given:
            raise PKPDInputError(f"a {self.kind} stage does not use {given[0]} (got {getattr(self, given[0])!r}); "
                                 f"remove it, or use the stage kind it belongs to.")
        if self.dose_mg is not None:
            object.__setattr__(self, "dose_mg", float(dose_mg(f"{self.kind} stage dose_mg", self.dose_mg)))
        if self.rule is not None and not isinstance(self.rule, TitrationRule):
            raise PKPDInputError(f"titration stage rule must be a TitrationRule or None; got {type(self.rule).__name__}.")
        if self.kind == "taper":
            object.__setattr__(self, "taper_every_days", _whole_days("taper stage taper_every_days", self.taper_every_days))
            try:
                given = self.ladder_mg if isinstance(self.ladder_mg, (list, tuple)) else (self.ladder_mg,)
                ladder = TitrationRule(ladder_mg=tuple(given), name="taper").ladder_mg
            except PKPDInputError as err:
                raise PKPDInputError(f"taper stage {err}") from None
            object.__setattr__(self, "ladder_mg", ladder)
            if isinstance(self.responder_at_least, (bool, np.bool_)):
                raise PKPDInputError(f"taper stage responder_at_least must be a platelet count in 10^9/L; got {self.responder_at_least!r}.")
            object.__setattr__(self, "responder_at_least", float(positive("taper stage responder_at_least",
                                                                           self.responder_at_least, "10^9/L")))
            if self.nonresponders not in NONRESPONDER_CHOICES:
                raise PKPDInputError(f"taper stage nonresponders must be one of {list(NONRESPONDER_CHOICES)} (what patients "
                                     f"not responding at the taper start do); got {self.nonresponders!r}.")

    def with_(self, **changes) -> "Stage":
        """A copy with some fields changed (validated again)."""
        return with_fields(self, changes)

    def with_days(self, days) -> "Stage":
        """The same stage lasting ``days`` days."""
        return self.with_(days=days)

    @classmethod
    def fixed(cls, days, dose_mg: float | None = None) -> "Stage":
        """Hold ``dose_mg`` (None: the dose carried in) for ``days`` days."""
        return cls("fixed", days, dose_mg=dose_mg)

    @classmethod
    def titration(cls, days, rule: TitrationRule | None = None, dose_mg: float | None = None) -> "Stage":
        """Titrate with ``rule`` (None: the arm's) for ``days`` days."""
        return cls("titration", days, dose_mg=dose_mg, rule=rule)

    @classmethod
    def taper(cls, days, every_days=7, **options) -> "Stage":
        """Taper responders one level every ``every_days`` to withdrawal, within ``days`` days."""
        return cls("taper", days, taper_every_days=every_days, **options)

    @classmethod
    def off(cls, days) -> "Stage":
        """No drug for ``days`` days."""
        return cls("off", days)


@dataclass(frozen=True)
class Arm:
    """One trial arm.

    name : label in tables and plots.
    n : patients per trial.
    start_mg : once-daily dose from day 0, mg (0 with no rule = placebo).
    rule : titration rule; None keeps ``start_mg`` throughout (fixed dose).
        With ``stages``, the rule of titration stages that name none.
    stages : the arm's course as a sequence of :class:`Stage` s from day 0;
        none = one stage for the whole trial (titration with ``rule``, else
        fixed ``start_mg``), as :meth:`with_stages` shows.
    """

    name: str
    n: int
    start_mg: float
    rule: TitrationRule | None = None
    stages: tuple[Stage, ...] = ()

    def __repr__(self) -> str:
        rule = f", rule {self.rule.name!r}" if self.rule is not None else ""
        return f"Arm({self.name!r}, n={self.n}, start {self.start_mg:g} mg, {self.kind}{rule})"

    def with_stages(self, *stages: Stage) -> "Arm":
        """A copy running ``stages`` (in order, from day 0)."""
        return replace(self, stages=tuple(stages))

    @property
    def stage_days(self) -> float:
        """Total days of the arm's stages (0: no stages)."""
        return float(sum(st.days for st in self.stages))

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise PKPDInputError(f"arm name must be a non-empty text; got {self.name!r}.")
        object.__setattr__(self, "n", whole(f"n (patients) of arm {self.name!r}", self.n))
        object.__setattr__(self, "start_mg", float(dose_mg(f"start_mg of arm {self.name!r}", self.start_mg)))
        if self.rule is not None and not isinstance(self.rule, TitrationRule):
            raise PKPDInputError(f"arm {self.name!r}: rule must be a TitrationRule or None; got {type(self.rule).__name__}.")
        stages = tuple(self.stages) if isinstance(self.stages, (list, tuple)) else self.stages
        if not isinstance(stages, tuple) or not all(isinstance(st, Stage) for st in stages):
            raise PKPDInputError(f"arm {self.name!r}: stages must be a list of pkpd.Stage; got {self.stages!r}, "
                                 "e.g. [Stage.titration(70), Stage.taper(42)].")
        object.__setattr__(self, "stages", stages)
        if not stages:
            if self.rule is not None:
                self.rule.start(self.start_mg, 1)  # on the ladder and above 0 mg
            return
        self._walk_stages()

    def _walk_stages(self) -> list[tuple[Stage, TitrationRule | None, bool]]:
        """Check that each stage can take the doses carried into it; returns
        (stage, its titration rule or None, continues the previous titration)."""
        carried = {self.start_mg}  # the doses patients may be on when a stage begins
        out, previous = [], None
        for k, st in enumerate(self.stages):
            where = f"arm {self.name!r} stages[{k}] ({st.kind})"
            rule, goes_on = None, False
            if st.kind == "fixed":
                carried = carried if st.dose_mg is None else {st.dose_mg}
            elif st.kind == "off":
                carried = {0.0}
            elif st.kind == "titration":
                rule = st.rule or self.rule
                if rule is None:
                    raise PKPDInputError(f"{where}: a titration stage needs a rule; give the stage or the arm a rule "
                                         "(rule = \"NAME\" of a [rules.NAME] table).")
                goes_on = (st.dose_mg is None and previous is not None and previous[0].kind == "titration"
                           and previous[1] == rule)
                if not goes_on:
                    start = st.dose_mg if st.dose_mg is not None else (next(iter(carried)) if len(carried) == 1 else None)
                    if start is None:
                        raise PKPDInputError(
                            f"{where}: dose_mg not given and the dose carried in is not one known level "
                            f"(patients may be on {sorted(carried)} mg); give the stage a dose_mg on the rule's ladder.")
                    try:
                        rule.start(start, 1)
                    except PKPDInputError as err:
                        raise PKPDInputError(f"{where}: {err}") from None
                carried = set(rule.ladder_mg)
            else:  # taper
                doses = sorted(d for d in carried if d > 0)
                if not doses:
                    raise PKPDInputError(
                        f"{where}: the dose carried in is 0 mg, so there is no ladder level below it to taper to; "
                        "put the taper after a stage on drug, or use an off stage.")
                off = [d for d in doses if not np.isclose(np.asarray(st.ladder_mg), d, rtol=0, atol=1e-9).any()]
                if off:
                    raise PKPDInputError(
                        f"{where}: dose {off[0]:g} mg carried in is not on the taper ladder_mg {list(st.ladder_mg)}; "
                        "add it to the taper's ladder_mg (or use the titration rule's ladder).")
                carried = {d for d in st.ladder_mg if d <= max(doses) + 1e-9}
            previous = (st, rule)
            out.append((st, rule, goes_on))
        return out

    @property
    def kind(self) -> str:
        """'titration', 'fixed' or 'placebo'; with stages, their kinds joined by '+' (e.g. 'titration+taper')."""
        if self.stages:
            return "+".join(st.kind for st in self.stages)
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
    once_within_days : ``responded_once`` counts assessments up to this day
        (None: the whole trial; 56 = the phase III's "within 8 weeks").
    increased_above, increased_within_days : ``platelet_increased``, an
        observed count above this (400 x10^9/L) on an assessment up to this
        day (70 = 10 weeks), the count-based proxy of the adverse event.
    relapse_below : ``time_to_relapse`` event, an observed count below this
        after the taper start (50 x10^9/L; Mei et al., J Thromb Haemost
        2022;20:716).
    """

    response: float = 50.0
    primary_day: float | None = 56.0
    target: tuple[float, float] = (50.0, 250.0)
    above: float = 400.0
    below: float = 30.0
    stopped_as_nonresponders: bool = True
    once_within_days: float | None = None
    increased_above: float = 400.0
    increased_within_days: float = 70.0
    relapse_below: float = 50.0

    def __post_init__(self):
        if self.once_within_days is not None:
            object.__setattr__(self, "once_within_days", _whole_days("endpoints.once_within_days", self.once_within_days))
        object.__setattr__(self, "increased_within_days",
                           _whole_days("endpoints.increased_within_days", self.increased_within_days))
        for name in ("response", "above", "below", "increased_above", "relapse_below"):
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
    treatment_days : dosing stops after this many days (None = whole trial),
        also for arms with stages (which stop dosing after their last stage).
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
            for rule in {a.rule, *(st.rule for st in a.stages)} - {None}:
                _whole_days(f"rule {rule.name!r} of arm {a.name!r}: visit_every_days", rule.visit_every_days)
            if a.stage_days > duration:
                raise PKPDInputError(
                    f"arm {a.name!r}: its stages last {a.stage_days:g} days ("
                    + " + ".join(f"{st.days:g}" for st in a.stages)
                    + f"), longer than duration_days {duration:g}; shorten a stage or extend the trial.")
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

    def plan(self, arm: Arm) -> list[tuple[float, float, Stage, TitrationRule | None, bool]]:
        """``arm``'s stages as (first day, end day, stage, its titration rule,
        goes on with the previous titration), days since the first dose; an
        arm without stages is one titration (with its rule) or fixed stage to
        the end of dosing."""
        if not arm.stages:
            kind = "titration" if arm.rule is not None else "fixed"
            return [(0.0, self.last_dose_day, Stage(kind, self.last_dose_day), arm.rule, False)]
        out, start = [], 0.0
        for st, rule, goes_on in arm._walk_stages():
            out.append((start, start + st.days, st, rule, goes_on))
            start += st.days
        return out

    def stage_decision_days(self, arm: Arm) -> list[np.ndarray]:
        """For each stage of :meth:`plan`, the days (within it, before the
        end of dosing) on which it decides: its start (after the first stage),
        a titration's visits from its start, a taper's steps."""
        out = []
        for k, (start, end, st, rule, _) in enumerate(self.plan(arm)):
            if st.kind == "titration":
                days = start + rule.decision_days(end - start)
            elif st.kind == "taper":
                days = start + st.taper_every_days * np.arange(1, int(np.ceil((end - start) / st.taper_every_days)))
            else:
                days = np.empty(0)
            days = np.r_[[start] if k else [], days[days < end]]
            out.append(days[days < self.last_dose_day])
        return out

    def decision_days(self, arm: Arm) -> np.ndarray:
        """Days on which ``arm``'s rule or stages decide (before the end of
        dosing); with stages also the day after the last stage (drug stops)."""
        if not arm.stages and arm.rule is None:
            return np.empty(0)
        days = np.concatenate(self.stage_decision_days(arm))
        if arm.stages and arm.stage_days < self.last_dose_day:
            days = np.r_[days, arm.stage_days]
        return np.unique(days)

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
            typical_draws: pd.DataFrame | None = None, workers=None) -> TrialResult:
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
        workers : where the replicates run (see :mod:`pkpd.distributed`):
            None or 1 here; N >= 2 on a local Dask cluster of N processes; a
            ``distributed.Client`` or a scheduler address.  Replicates are
            simulated in chunks of at least about 0.5 s each (a run of one
            chunk starts no local cluster); the result is
            bit-identical whatever ``workers`` (one replicate's patients are
            never split, so one replicate runs on one worker).
        """
        workers = check_workers(workers)
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
        if workers is not None:
            parts = self._run_on(workers, replicates, per_chunk, children, grid, models, progress)
            return self._result(parts, grid, replicates, seed, root, typical_draws)
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
        return self._result(parts, grid, replicates, seed, root, typical_draws)

    def _result(self, parts, grid, replicates, seed, root, typical_draws) -> TrialResult:
        merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        result = TrialResult(self, merged, grid, replicates, root.entropy if seed is None else seed)
        if typical_draws is not None:
            result.typical_draws = typical_draws.reset_index(drop=True).rename_axis("replicate")
        return result

    def _run_on(self, workers, replicates, per_chunk, children, grid, models, progress) -> list[dict]:
        """The replicates in chunks on ``workers`` (a checked :mod:`pkpd.distributed` value), in replicate order;
        work for one chunk only runs here rather than on a local cluster started for it."""
        cost = self.n_per_trial * (self.duration_days + 1) * PATIENT_DAY_SECONDS
        if isinstance(workers, int) and group_size(replicates, cost, workers, per_chunk) >= replicates:
            workers = None
        with client_for(workers) as client:
            size = group_size(replicates, cost, n_workers(client), per_chunk)
            chunks = [range(i, min(i + size, replicates)) for i in range(0, replicates, size)]
            tasks = [(reps, {r: children[r] for r in reps}, None if models is None else {r: models[r] for r in reps})
                     for reps in chunks]
            bar = tqdm(total=len(tasks), desc=f"{self.name}: replicate chunks", unit="chunk",
                       file=sys.stderr, disable=not progress, leave=False)
            try:
                return run_tasks(partial(_run_chunk_task, self, grid), tasks, client, 1, bar)
            finally:
                bar.close()

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
        return self._solver(params, reps, rngs), params[self.model.pd.BASELINE].to_numpy(), observe, kept

    def _solver(self, params: pd.DataFrame, reps: range, rngs: list):
        """The solver of the patients of replicates ``reps``, with the model's
        disease fluctuation (if any) drawn per replicate from a stream of its
        own (a child of the replicate's seed, apart from its patients and
        visit noise) over the whole trial, so that a replicate's course does
        not depend on which replicates share its chunk."""
        fl = self.model.fluctuation
        if fl is None or fl.sd_log <= 0:
            return self.model.solver(params)
        streams = [np.random.default_rng(np.random.SeedSequence(r.bit_generator.seed_seq.entropy,
                                                                spawn_key=(*r.bit_generator.seed_seq.spawn_key, 0)))
                   for r in rngs]
        intervals = int(np.ceil(self.duration_days * 24.0 / fl.interval_h)) + 1
        n = self.n_per_trial
        path = np.concatenate([fl.extend(np.zeros((n, 0)), intervals, g) for g in streams])
        return self.model.solver(params, rng=streams[0], _path=path)

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
        courses = [_Course(self, a, members[i].size) for i, a in enumerate(self.arms)]

        true_v[:, 0] = plt0
        obs_v[:, 0] = observe(true_v[:, 0])
        for i, course in enumerate(courses):
            action[members[i], 0] = course.visit(0.0, obs_v[members[i], 0])
            dose[members[i]] = course.dose
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
            for i, course in enumerate(courses):
                idx = members[i]
                if ended:
                    action[idx, g] = tt.OBSERVE
                    dose[idx] = 0.0
                else:
                    action[idx, g] = course.visit(end, obs_v[idx, g])
                    dose[idx] = course.dose
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
        taper_start, taper_responder = np.full(S, np.nan), np.zeros(S, bool)
        for i, course in enumerate(courses):
            taper_start[members[i]], taper_responder[members[i]] = course.taper_start, course.taper_responder
        return {
            "replicate": rep_of, "arm": arm_of, "plt0": plt0, **kept, "true": true_v, "observed": obs_v,
            "action": action, "dose": dose_v, "dose_before": before_v, "daily": daily,
            "taper_start": taper_start, "taper_responder": taper_responder,
        }


def _run_chunk_task(trial: Trial, grid: np.ndarray, task) -> dict:
    """One chunk of replicates on a worker: ``task`` = (replicates, their seed
    sequences and models by replicate); :meth:`Trial._run_chunk`'s arrays."""
    reps, children, models = task
    return trial._run_chunk(reps, children, grid, tqdm(disable=True), models)


class _Course:
    """The patients of one arm (of a run chunk) going through the arm's
    stages: their once-daily dose (mg) and the action at each visit."""

    def __init__(self, trial: Trial, arm: Arm, n: int):
        self.plan = trial.plan(arm)
        self.decides = [set(d.tolist()) for d in trial.stage_decision_days(arm)]
        self.dose = np.full(n, arm.start_mg)
        self.k = -1                       # stage under way (-1: before day 0)
        self.state = None                 # titration state of a titration stage
        self.level = None                 # taper ladder level of each patient
        self.tapered = None               # responders at the taper start
        self.taper_start = np.full(n, np.nan)
        self.taper_responder = np.zeros(n, bool)

    def visit(self, day: float, observed: np.ndarray) -> np.ndarray:
        """The action codes of a visit on ``day`` (the observed counts,
        10^9/L); updates :attr:`dose` for the days from this visit on."""
        k = next((j for j, (start, end, *_) in enumerate(self.plan) if start <= day < end), None)
        n = self.dose.size
        if k is None:  # after the last stage: no drug
            self.dose = np.zeros(n)
            return np.full(n, tt.OBSERVE)
        start, end, st, rule, goes_on = self.plan[k]
        if k != self.k:
            self.k = k
            return self._begin(st, rule, goes_on, day, observed)
        if day not in self.decides[k]:
            return np.full(n, tt.FIXED if st.kind == "fixed" else tt.OBSERVE)
        if st.kind == "titration":
            self.state, codes = rule.step(self.state, day, observed)
            self.dose = rule.doses_mg[self.state.level]
            return codes
        return self._taper_step(st)  # a taper: the only other kind with decision days

    def _begin(self, st: Stage, rule, goes_on: bool, day: float, observed) -> np.ndarray:
        n = self.dose.size
        if st.kind == "fixed":
            if st.dose_mg is not None:
                self.dose = np.full(n, st.dose_mg)
            return np.full(n, tt.FIXED)
        if st.kind == "off":
            self.dose = np.zeros(n)
            return np.full(n, tt.OBSERVE)
        if st.kind == "titration":
            if goes_on:
                return np.full(n, tt.OBSERVE)
            # Arm._walk_stages checked that the dose carried in is one known level
            start = st.dose_mg if st.dose_mg is not None else float(self.dose[0])
            self.state = rule.start(start, n, day)
            self.dose = rule.doses_mg[self.state.level]
            return np.full(n, tt.START)
        ladder = np.asarray(st.ladder_mg)
        self.level = np.argmin(np.abs(ladder[None, :] - self.dose[:, None]), axis=1)
        self.tapered = observed >= st.responder_at_least
        self.taper_start[:] = day
        self.taper_responder = self.tapered.copy()
        if st.nonresponders == "stop":
            self.dose = np.where(self.tapered, self.dose, 0.0)
        return self._taper_step(st, first=True)

    def _taper_step(self, st: Stage, first: bool = False) -> np.ndarray:
        """Tapered patients one level down (to 0 mg at most); the others
        keep their dose, or stay stopped (``nonresponders = "stop"``)."""
        ladder = np.asarray(st.ladder_mg)
        on = self.tapered & (self.level > 0)
        self.level = np.where(on, self.level - 1, self.level)
        self.dose = np.where(self.tapered, ladder[self.level], self.dose)
        others = tt.HOLD if st.nonresponders == "stay" else (tt.STOP if first else tt.STOPPED)
        codes = np.where(self.tapered, tt.OBSERVE, others)
        codes = np.where(on, np.where(self.level > 0, tt.TAPER, tt.WITHDRAWN), codes)
        return codes
