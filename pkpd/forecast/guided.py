"""Model-guided titration: a :class:`pkpd.TitrationRule` whose decisions are forecasts.

At each decision visit :class:`ModelGuidedRule` rebuilds every patient's
history from what the rule has seen (the start dose, the once-daily dose after
each visit, the observed count at each visit), forecasts the count at the next
visits (``horizon_visits``) for every ladder dose held until then
(:func:`pkpd.forecast.forecast`) and gives the recommended dose: the highest
P(low <= count <= high) among the doses with P(count > interrupt_above) <=
``max_p_above`` (near ties: see :func:`pkpd.forecast.prediction.choose`).  It is a TitrationRule, so it
is an arm's rule in :class:`pkpd.Trial` like any other
(``pkpd.Arm("guided", 50, 2.5, rule=ModelGuidedRule())``); of the rule's data
it uses the ladder, the visit interval and the thresholds ``low``, ``high``
and ``interrupt_above``; waiting times and confirmation counts do not apply
(the forecast weighs the whole history instead).  The day-0 count is not
passed to a rule, so the first forecast (day 7) rests on one count.

Cost: one forecast per patient and visit (about 0.2-1 s each with the default
draws), so a guided arm of 100 patients over 8 weekly visits takes minutes.
Each decision is seeded by the rule's ``seed``, the visit day and the observed
count, so a trial run is reproducible.  Units: days, mg, 10^9/L.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, replace

import numpy as np

from .. import titration as tt
from ..checks import PKPDInputError
from ..drugs import hetrombopag
from ..population import PKPDModel
from ..titration import TitrationRule, TitrationState
from .history import PatientHistory
from .posterior import ForecastWarning
from .prediction import Forecast
from .recommend import forecast


@dataclass(frozen=True)
class GuidedState(TitrationState):
    """A :class:`~pkpd.titration.TitrationState` with what the guided rule has seen:
    start day (days) and dose (mg), the decision visit days, the observed counts
    (n, visits) in 10^9/L and the dose taken after each visit (n, visits) in mg."""

    start_day: float
    start_mg: np.ndarray
    visit_days: tuple
    counts: np.ndarray
    doses_after: np.ndarray

    def history(self, i: int, until_day: float, observed: float | None = None) -> PatientHistory:
        """Patient ``i``'s doses (daily, before ``until_day``) and counts, as a PatientHistory;
        ``observed`` adds the count of the visit on ``until_day``."""
        days = np.arange(self.start_day, until_day, 1.0)
        visits = np.asarray(self.visit_days, float)
        seen = np.searchsorted(visits, days, side="right")  # visits on or before each dose day
        dose = np.where(seen == 0, self.start_mg[i], self.doses_after[i, np.maximum(seen - 1, 0)] if visits.size else 0.0)
        times = visits * 24.0
        counts = self.counts[i]
        if observed is not None:
            times, counts = np.append(times, until_day * 24.0), np.append(counts, observed)
        return PatientHistory.from_arrays(days * 24.0, dose, times, counts, id=i + 1)


@dataclass(frozen=True)
class ModelGuidedRule(TitrationRule):
    """Titration by forecast (see the module docstring).

    model : the population model the forecasts use (default hetrombopag in ITP).
    max_p_above : largest accepted P(count > interrupt_above) at any of the visits forecast.
    horizon_visits : visits ahead forecast for each candidate held that long (2: the
        dose's effect shows after the ~1-week maturation delay); P(in range) is averaged over them.
    n_draws, n_predict : importance-sampling draws and simulated posterior draws per forecast.
    seed : seeds every decision (with the visit day and the observed count).
    """

    model: PKPDModel | None = field(default=None, compare=False)
    max_p_above: float = 0.05
    horizon_visits: int = 2
    n_draws: int = 1000
    n_predict: int = 500
    seed: int = 0
    name: str = "model-guided titration"

    def __post_init__(self):
        super().__post_init__()
        if self.model is not None and not isinstance(self.model, PKPDModel):
            raise PKPDInputError(f"model must be a pkpd.population.PKPDModel or None; got {type(self.model).__name__}.")
        if not 0 <= self.max_p_above <= 1:
            raise PKPDInputError(f"max_p_above must be a probability in [0, 1]; got {self.max_p_above!r}.")
        for name, least in (("n_draws", 100), ("n_predict", 100), ("horizon_visits", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise PKPDInputError(f"{name} must be a whole number >= {least}; got {value!r}.")

    def __repr__(self) -> str:
        return (f"ModelGuidedRule({self.name!r}: {'/'.join(f'{x:g}' for x in self.ladder_mg[1:])} mg, every "
                f"{self.visit_every_days:g} d, max P(>{self.interrupt_above:g}) {self.max_p_above:g}, "
                f"target {self.low:g}-{self.high:g})")

    def with_(self, **changes) -> "ModelGuidedRule":
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise PKPDInputError(f"ModelGuidedRule has no field(s) {sorted(unknown)}; fields: {[f.name for f in fields(self)]}.")
        return replace(self, **changes)

    def start(self, start_mg: float, n: int, day: float = 0.0) -> GuidedState:
        base = super().start(start_mg, n, day)
        return GuidedState(**{f.name: getattr(base, f.name) for f in fields(base)}, start_day=float(day),
                           start_mg=np.full(n, float(start_mg)), visit_days=(), counts=np.zeros((n, 0)),
                           doses_after=np.zeros((n, 0)))

    def forecast_for(self, history: PatientHistory, day: float) -> Forecast:
        """The forecast behind a decision on ``day`` (days) for ``history`` (which ends
        with that day's count)."""
        seed = np.random.SeedSequence([int(self.seed), int(round(day * 24)), int(round(history.counts[-1] * 1e6))])
        return forecast(history, self.model if self.model is not None else hetrombopag.model("itp"), seed=seed,
                        start_h=day * 24.0, visit_days=self.visit_every_days * np.arange(1, self.horizon_visits + 1),
                        ladder_mg=self.ladder_mg,
                        target=(self.low, self.high), above=self.interrupt_above, max_p_above=self.max_p_above,
                        n_draws=self.n_draws, n_predict=self.n_predict)

    def step(self, state: GuidedState, day: float, observed) -> tuple[GuidedState, np.ndarray]:
        """One decision visit: a forecast per patient (see the module docstring)."""
        if not isinstance(state, GuidedState):
            raise PKPDInputError("ModelGuidedRule.step needs the state its own start() made (a GuidedState).")
        y = np.asarray(observed, float)
        if y.shape != state.level.shape:
            raise PKPDInputError(f"observed has shape {y.shape} but there are {state.level.size} patients; give one count each.")
        level = state.level.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ForecastWarning)  # each decision's diagnostics are the forecast's
            for i in range(y.size):
                chosen = self.forecast_for(state.history(i, day, y[i]), day).dose_mg
                level[i] = self.level_of(chosen, "recommended dose")
        old = state.level
        action = np.select([(level > old) & (old == 0), level > old, (level < old) & (level == 0), level < old,
                            (level == 0)], [tt.RESUME, tt.UP, tt.INTERRUPT, tt.DOWN, tt.INTERRUPTED], tt.HOLD)
        changed = level != old
        new = replace(state, level=level, resume_level=np.where(level > 0, level, state.resume_level),
                      last_change_day=np.where(changed, float(day), state.last_change_day),
                      max_since_day=np.where(level == self.top, np.where(old == self.top, state.max_since_day, day), np.nan),
                      visit_days=(*state.visit_days, float(day)), counts=np.column_stack([state.counts, y]),
                      doses_after=np.column_stack([state.doses_after, self.doses_mg[level]]))
        return new, action.astype(np.int64)
