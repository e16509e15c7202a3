"""Dose titration rules: what a clinician does with a platelet count at a visit.

A :class:`TitrationRule` is pure data (thresholds in 10^9/L, dose ladder in mg,
visit interval and waiting times in days, confirmation counts), so a user can
try another rule by editing numbers, never code.  The default is the rule of
``docs/science.md``, in the style of the eltrombopag
label [I] (the phase III step rules were not published; Mei et al., J Hematol
Oncol 2021;14:37 give the levels 2.5, 3.75, 5 and 7.5 mg/day and the target
50-250 x10^9/L [R]):

* counts every 7 days;
* below 50 after >= 14 days on the current dose: one level up (max 7.5 mg);
* 50-250: keep the dose;
* above 250: one level down; above 250 at the lowest level: interrupt;
* above 400: interrupt; restart one level lower once below 150;
* no stop rule by default (the documented rule has none); a stop for lack of
  response after N days at the highest level is one field away
  (``stop_after_days_at_max=28``: the eltrombopag label discontinues after 4
  weeks at the maximum dose without response).

Decisions see the *observed* count (model prediction with visit-to-visit
noise), never the true one.  Every patient's state is a set of numpy arrays,
so one call decides for any number of patients at once (:meth:`TitrationRule.step`);
:meth:`TitrationRule.follow` applies the same code to one hand-made sequence of
counts and returns the decision log.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .checks import MAX_HORIZON_H, PKPDInputError, dose_mg, finite, nonnegative, positive, with_fields
from .drugs import hetrombopag

#: Action names, indexed by the integer codes used in the vectorised state.
ACTIONS = (
    "start",        # day 0: first dose given, no decision
    "hold",         # dose kept (in range, or below range but too early to step up)
    "up",           # one level up
    "down",         # one level down
    "interrupt",    # dose set to 0 mg, to be resumed
    "resume",       # back on drug after an interruption
    "interrupted",  # still interrupted (count not yet below the resume threshold)
    "stop",         # treatment stopped for lack of response (permanent)
    "stopped",      # visit of a patient who stopped earlier
    "fixed",        # arm without a rule: fixed dose (placebo = 0 mg)
    "observe",      # assessment visit on which the arm's rule makes no decision
    "taper",        # one level down on a taper stage's schedule
    "withdrawn",    # the taper reached 0 mg: off drug
)
(START, HOLD, UP, DOWN, INTERRUPT, RESUME, INTERRUPTED, STOP, STOPPED, FIXED, OBSERVE,
 TAPER, WITHDRAWN) = range(len(ACTIONS))


#: Longest time span a rule accepts (visit interval, waiting times, visit days), days.
MAX_DAYS = MAX_HORIZON_H / 24.0


def _days(name: str, value, strictly_positive: bool = False) -> float:
    """A finite span of days in [0, MAX_DAYS] (> 0 if ``strictly_positive``); True/False are not numbers."""
    if isinstance(value, (bool, np.bool_)):
        raise PKPDInputError(f"{name} must be a number of days; got {value!r}. Write a number, e.g. {name}=14.")
    arr = positive(name, value, "days") if strictly_positive else nonnegative(name, value, "days")
    if arr.ndim != 0:
        raise PKPDInputError(f"{name} must be one number of days; got {value!r}.")
    if arr > MAX_DAYS:
        raise PKPDInputError(
            f"{name} must be at most {MAX_DAYS:g} days (20 years, pkpd.checks.MAX_HORIZON_H); got {value!r}. "
            "Check the unit (days, not hours), or split a longer span into consecutive runs."
        )
    return float(arr)


@dataclass(frozen=True)
class TitrationState:
    """Per-patient titration state, arrays of shape (n_patients,).

    level : index into the rule's ladder (0 = 0 mg, interrupted or stopped).
    resume_level : level to restart at after an interruption.
    last_change_day : day of the last dose change (start = day 0), days.
    max_since_day : day the patient reached the top of the ladder (NaN if not there).
    stopped : treatment stopped for good.
    low_run, high_run, very_high_run, resume_run : consecutive decision visits
        below ``low``, above ``high``, above ``interrupt_above`` and below
        ``resume_below`` (for the confirmation counts).
    """

    level: np.ndarray
    resume_level: np.ndarray
    last_change_day: np.ndarray
    max_since_day: np.ndarray
    stopped: np.ndarray
    low_run: np.ndarray
    high_run: np.ndarray
    very_high_run: np.ndarray
    resume_run: np.ndarray

    @property
    def interrupted(self) -> np.ndarray:
        """On a pause (0 mg) that will be resumed."""
        return (self.level == 0) & ~self.stopped


@dataclass(frozen=True)
class TitrationRule:
    """A dose-titration rule, fully described by data.

    ladder_mg : dose levels, mg once daily, ascending, starting at 0 (the
        interruption level; it is added if left out).  Default: hetrombopag's
        phase III levels (:data:`pkpd.drugs.hetrombopag.DOSE_LADDER_MG`).
    visit_every_days : decision visits every this many days from day 0 (days).
    low, high : target range of the observed count, 10^9/L: below ``low`` step
        up, within [low, high] keep, above ``high`` step down.
    interrupt_above : above this count (10^9/L) interrupt the drug at once.
    resume_below : an interrupted patient restarts once below this (10^9/L),
        ``resume_levels_down`` levels below the dose before the interruption
        (never below the lowest non-zero level).
    interrupt_at_lowest : above ``high`` on the lowest non-zero level,
        interrupt (True) or keep the dose (False).
    step_up_after_days : a step up needs at least this many days on the
        current dose (days); the eltrombopag label says 2 weeks.
    min_days_between_changes : no step up or down sooner than this after the
        last change (days).  Interruptions for safety are never delayed.
    confirm_up, confirm_down, confirm_interrupt, confirm_resume : how many
        consecutive decision visits must show the condition before acting
        (1 = act on a single count).
    stop_after_days_at_max : stop treatment if the count is still below
        ``low`` after this many days at the highest level (days); None = never.
    step_below_low : which way the dose steps on a count below ``low``: "up"
        (a drug that raises the count, e.g. a TPO-receptor agonist) or "down"
        (a drug that lowers it, e.g. myelosuppression: one level down below
        ``low``, at the lowest level interrupt if ``interrupt_at_lowest``;
        one level up above ``high`` after ``step_up_after_days``; the stop
        rule then applies to counts still above ``high``).  The rest
        (interruption above ``interrupt_above``, resumption below
        ``resume_below``) is the same either way.
    name : a label for tables and plots.

    Day fields are at most 7305 days and doses at most 100 g (the
    plausibility limits of :mod:`pkpd.checks`).
    """

    ladder_mg: tuple[float, ...] = hetrombopag.DOSE_LADDER_MG
    visit_every_days: float = 7.0
    low: float = 50.0
    high: float = 250.0
    interrupt_above: float = 400.0
    resume_below: float = 150.0
    resume_levels_down: int = 1
    interrupt_at_lowest: bool = True
    step_up_after_days: float = 14.0
    min_days_between_changes: float = 7.0
    confirm_up: int = 1
    confirm_down: int = 1
    confirm_interrupt: int = 1
    confirm_resume: int = 1
    stop_after_days_at_max: float | None = None
    step_below_low: str = "up"
    name: str = "label-style titration"

    def __repr__(self) -> str:
        stop = "" if self.stop_after_days_at_max is None else f", stop after {self.stop_after_days_at_max:g} d at max"
        return (f"TitrationRule({self.name!r}: {'/'.join(f'{x:g}' for x in self.ladder_mg[1:])} mg, every "
                f"{self.visit_every_days:g} d, target {self.low:g}-{self.high:g}, interrupt > {self.interrupt_above:g}{stop})")

    def __post_init__(self):
        try:
            ladder = finite("ladder_mg", self.ladder_mg, "mg")
        except (TypeError, ValueError) as err:
            if isinstance(err, PKPDInputError):
                raise
            raise PKPDInputError(f"ladder_mg must be a list of dose levels in mg, e.g. [0, 2.5, 5]; got {self.ladder_mg!r}.") from None
        if ladder.ndim != 1 or ladder.size == 0:
            raise PKPDInputError(f"ladder_mg must be a list of dose levels in mg, e.g. [0, 2.5, 5]; got {self.ladder_mg!r}.")
        dose_mg("ladder_mg", ladder)  # >= 0 and at most pkpd.checks.MAX_DOSE_MG
        if ladder[0] != 0.0:
            ladder = np.r_[0.0, ladder]
        if ladder.size < 2 or np.any(np.diff(ladder) <= 0):
            raise PKPDInputError(
                f"ladder_mg must hold at least one dose > 0 mg in strictly increasing order; got {list(self.ladder_mg)}. "
                "Sort the levels and remove duplicates, e.g. [0, 2.5, 3.75, 5, 7.5]."
            )
        object.__setattr__(self, "ladder_mg", tuple(float(x) for x in ladder))
        if not isinstance(self.name, str) or not self.name.strip():
            raise PKPDInputError(f"name must be a non-empty text (a label for tables); got {self.name!r}.")
        _days("visit_every_days", self.visit_every_days, strictly_positive=True)
        for name in ("low", "high", "interrupt_above", "resume_below"):
            if isinstance(getattr(self, name), (bool, np.bool_)):
                raise PKPDInputError(f"{name} must be a platelet count in 10^9/L; got {getattr(self, name)!r}.")
            positive(name, getattr(self, name), "10^9/L")
        if not self.low < self.high < self.interrupt_above:
            raise PKPDInputError(
                f"thresholds must satisfy low < high < interrupt_above; got low={self.low}, high={self.high}, "
                f"interrupt_above={self.interrupt_above} (10^9/L). Reorder them, e.g. 50 < 250 < 400."
            )
        if not self.resume_below < self.interrupt_above:
            raise PKPDInputError(
                f"resume_below ({self.resume_below}) must be below interrupt_above ({self.interrupt_above}) 10^9/L, "
                "or an interrupted patient would restart straight into another interruption; e.g. 150."
            )
        _days("step_up_after_days", self.step_up_after_days)
        _days("min_days_between_changes", self.min_days_between_changes)
        for name in ("confirm_up", "confirm_down", "confirm_interrupt", "confirm_resume", "resume_levels_down"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < (0 if name == "resume_levels_down" else 1):
                lowest = 0 if name == "resume_levels_down" else 1
                raise PKPDInputError(f"{name} must be a whole number >= {lowest}; got {value!r}.")
        if not isinstance(self.interrupt_at_lowest, (bool, np.bool_)):
            raise PKPDInputError(f"interrupt_at_lowest must be true or false; got {self.interrupt_at_lowest!r}.")
        if self.stop_after_days_at_max is not None:
            _days("stop_after_days_at_max", self.stop_after_days_at_max)
        if self.step_below_low not in ("up", "down"):
            raise PKPDInputError(
                f"step_below_low must be 'up' (the drug raises the count) or 'down' (it lowers it, e.g. "
                f"myelosuppression); got {self.step_below_low!r}."
            )
        for name in ("visit_every_days", "low", "high", "interrupt_above", "resume_below", "step_up_after_days",
                     "min_days_between_changes"):
            object.__setattr__(self, name, float(getattr(self, name)))

    # ------------------------------------------------------------ views
    @property
    def doses_mg(self) -> np.ndarray:
        """The ladder as an array, mg (element 0 is 0 mg)."""
        return np.asarray(self.ladder_mg)

    @property
    def top(self) -> int:
        """Index of the highest level."""
        return len(self.ladder_mg) - 1

    def level_of(self, dose_mg: float, what: str = "start dose") -> int:
        """Ladder index of ``dose_mg``; an error naming the ladder if it is not on it."""
        hits = np.flatnonzero(np.isclose(self.doses_mg, dose_mg, rtol=0, atol=1e-9))
        if hits.size == 0:
            raise PKPDInputError(
                f"{what} {dose_mg!r} mg is not on the dose ladder {list(self.ladder_mg)} mg of rule {self.name!r}; "
                "use one of the ladder's levels or add it to ladder_mg."
            )
        return int(hits[0])

    def decision_days(self, duration_days: float) -> np.ndarray:
        """Decision visit days in (0, duration_days], days."""
        k = np.arange(1, int(np.floor(duration_days / self.visit_every_days + 1e-9)) + 1)
        return k * float(self.visit_every_days)

    def with_(self, **changes) -> "TitrationRule":
        """A copy with some fields changed (validated again)."""
        return with_fields(self, changes)

    # ------------------------------------------------------------ decisions
    def start(self, start_mg: float, n: int, day: float = 0.0) -> TitrationState:
        """State of ``n`` patients starting on ``start_mg`` mg on ``day`` (days
        since the first dose: a titration stage that begins later waits its
        ``step_up_after_days`` from there)."""
        level = self.level_of(start_mg)
        if level == 0:
            raise PKPDInputError(
                f"a titrated arm cannot start at 0 mg (it would never leave it); got start dose {start_mg!r} mg. "
                "Start on a level > 0, or give the arm no rule for placebo."
            )
        zeros = np.zeros(n, dtype=np.int64)
        return TitrationState(
            level=np.full(n, level, dtype=np.int64),
            resume_level=np.full(n, level, dtype=np.int64),
            last_change_day=np.full(n, float(day)),
            max_since_day=np.full(n, float(day) if level == self.top else np.nan),
            stopped=np.zeros(n, dtype=bool),
            low_run=zeros, high_run=zeros.copy(), very_high_run=zeros.copy(), resume_run=zeros.copy(),
        )

    def step(self, state: TitrationState, day: float, observed) -> tuple[TitrationState, np.ndarray]:
        """One decision visit for every patient at once.

        state : the patients' :class:`TitrationState`.
        day : the visit day (days since the first dose).
        observed : observed platelet counts, 10^9/L, shape (n_patients,).

        Returns the new state and the action codes (indices into
        :data:`ACTIONS`); the new dose is ``rule.doses_mg[new_state.level]``.
        Checks in order of priority: stopped; interrupted (resume?); above
        ``interrupt_above``; above ``high``; stop for lack of response; below
        ``low``; otherwise hold.
        """
        day = _days("day", day)
        y = np.asarray(observed, float)
        if y.shape != state.level.shape:
            raise PKPDInputError(f"observed has shape {y.shape} but there are {state.level.size} patients; give one count each.")
        nonnegative("observed platelet count", y, "10^9/L")
        level = state.level.copy()
        resume_level = state.resume_level.copy()
        last = state.last_change_day.copy()
        stopped = state.stopped.copy()
        interrupted = state.interrupted
        low_run = np.where(y < self.low, state.low_run + 1, 0)
        high_run = np.where(y > self.high, state.high_run + 1, 0)
        very_high_run = np.where(y > self.interrupt_above, state.very_high_run + 1, 0)
        resume_run = np.where(y < self.resume_below, state.resume_run + 1, 0)
        since = day - last
        may_change = since >= self.min_days_between_changes - 1e-9
        on_drug = ~stopped & ~interrupted
        rising = self.step_below_low == "up"  # the drug raises the count: low counts call for more
        up_run, down_run = (low_run, high_run) if rising else (high_run, low_run)

        action = np.full(y.shape, HOLD, dtype=np.int64)
        undecided = np.ones(y.shape, dtype=bool)

        def take(mask, code):
            nonlocal undecided
            mask = mask & undecided
            action[mask] = code
            undecided = undecided & ~mask
            return mask

        take(stopped, STOPPED)
        # interrupted: restart lower once the count has come down
        resume = take(interrupted & (resume_run >= self.confirm_resume), RESUME)
        level[resume] = np.maximum(resume_level[resume] - self.resume_levels_down, 1)
        take(interrupted, INTERRUPTED)
        # too high: interrupt at once (safety, no waiting time)
        lowest = level == 1
        interrupt = take(on_drug & (very_high_run >= self.confirm_interrupt), INTERRUPT)
        above = on_drug & (down_run >= self.confirm_down) & may_change
        if self.interrupt_at_lowest:
            interrupt |= take(above & lowest, INTERRUPT)
        resume_level[interrupt] = level[interrupt]
        level[interrupt] = 0
        down = take(above & ~lowest, DOWN)
        level[down] -= 1
        # too low: stop after long enough at the top, else step up when allowed
        at_top = on_drug & (level == self.top)
        if self.stop_after_days_at_max is not None:
            waited = day - state.max_since_day >= self.stop_after_days_at_max - 1e-9  # NaN compares False
            stop = take(at_top & ((y < self.low) if rising else (y > self.high)) & waited, STOP)
            level[stop] = 0
            stopped[stop] = True
        up = take(
            on_drug & ~at_top & (up_run >= self.confirm_up) & may_change
            & (since >= self.step_up_after_days - 1e-9),
            UP,
        )
        level[up] += 1

        changed = (action == UP) | (action == DOWN) | (action == INTERRUPT) | (action == RESUME) | (action == STOP)
        last[changed] = day
        max_since = np.where(level == self.top, np.where(changed, day, state.max_since_day), np.nan)
        # a change starts the confirmation counts afresh

        def reset(run):
            return np.where(changed, 0, run)

        new = TitrationState(
            level=level, resume_level=resume_level, last_change_day=last, max_since_day=max_since, stopped=stopped,
            low_run=reset(low_run), high_run=reset(high_run), very_high_run=reset(very_high_run),
            resume_run=reset(resume_run),
        )
        return new, action

    def follow(self, counts, start_mg: float, days=None) -> pd.DataFrame:
        """Apply the rule to one patient's observed counts (a hand-made sequence).

        counts : observed platelets at the decision visits, 10^9/L.
        start_mg : dose from day 0, mg (on the ladder).
        days : visit days, > 0 and strictly increasing (day 0 is the start);
            default every ``visit_every_days`` from the first.

        Returns one row per visit: ``day``, ``observed`` (10^9/L), ``action``,
        ``dose_mg`` (the dose from this visit on) — the same code path as the
        vectorised trial.
        """
        counts = nonnegative("counts", counts, "10^9/L")
        if counts.ndim != 1:
            raise PKPDInputError(f"counts must be a 1-D sequence of platelet counts; got shape {counts.shape}.")
        if days is None:
            days = self.visit_every_days * np.arange(1, counts.size + 1)
        days = finite("days", days, "days")
        if days.shape != counts.shape:
            raise PKPDInputError(f"days and counts must have the same length; got {days.size} and {counts.size}.")
        if days.size and not 0 < days[0]:
            raise PKPDInputError(
                f"days must be visit days after the start (> 0; day 0 is the first dose); element 0 is {days[0].item()!r}. "
                "Drop the baseline count or shift the days."
            )
        if days.size and days[-1] > MAX_DAYS:
            raise PKPDInputError(f"days must be at most {MAX_DAYS:g} (20 years); element {days.size - 1} is {days[-1].item()!r}. "
                                 "Check the unit (days, not hours).")
        back = np.flatnonzero(np.diff(days) <= 0)
        if back.size:
            i = int(back[0]) + 1
            raise PKPDInputError(
                f"days must be strictly increasing (one visit per day, in order); element {i} ({days[i].item()!r}) "
                f"comes after {days[i - 1].item()!r}. Sort the visits with their counts, and merge repeated days."
            )
        state = self.start(start_mg, 1)
        rows = []
        for day, y in zip(days, counts):
            state, code = self.step(state, float(day), np.array([y]))
            rows.append((float(day), float(y), ACTIONS[code[0]], self.ladder_mg[state.level[0]]))
        return pd.DataFrame(rows, columns=["day", "observed", "action", "dose_mg"])
