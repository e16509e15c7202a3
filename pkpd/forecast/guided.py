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

Two posteriors (``posterior``).  "laplace" (the default): all patients of a
visit at once, per patient the MAP and Laplace normal of each responder status (warm-started from the patient's MAP of the
previous visit, kept in :attr:`GuidedState.map_z`), ``n_laplace`` draws from them
and one simulation of all patients x draws x ladder doses with the population
solver, residual error included, then the same choice rule
(:func:`pkpd.forecast.prediction.choose_many`); about 0.06 s per patient and
visit on a loaded shared core, and its choice was the importance path's at 95 %
of 400 patient-visits (50 simulated ITP patients x 8 weekly decisions;
``benchmarks/bench_guided.py --agreement 50``), the Laplace path choosing the
higher dose in most of the others.  Its draws are seeded by the rule's seed, the
visit day, the start dose and the patient's own observed counts, so a decision
does not depend on which patients share the visit.  "importance": one full
forecast per patient and visit (:func:`pkpd.forecast.forecast`, importance
resampling with PSIS; about 0.7-1.3 s each with the rule's draws), so a guided
arm of 100 patients over 8 weekly visits takes minutes; each decision is seeded
by the rule's ``seed``, the visit day and the observed count; the reference the
fast path is checked against.  Either way a trial run is reproducible.  Units:
days, mg, 10^9/L.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, field, fields, replace

import numpy as np
import pandas as pd

from .. import titration as tt
from ..checks import PKPDInputError
from ..drugs import hetrombopag
from ..population import PKPDModel
from ..titration import TitrationRule, TitrationState
from .history import PatientHistory
from .likelihood import PatientDensity, Prior
from .posterior import ForecastWarning, fit_status
from .prediction import Forecast, choose_many
from .recommend import forecast

#: Patients simulated together on the Laplace path (memory: about 1 kB per patient and draw).
LAPLACE_BATCH = 250
#: The individual posteriors a rule can use (see ModelGuidedRule).
POSTERIORS = ("importance", "laplace")


@dataclass(frozen=True)
class GuidedState(TitrationState):
    """A :class:`~pkpd.titration.TitrationState` with what the guided rule has seen:
    start day (days) and dose (mg), the decision visit days, the observed counts
    (n, visits) in 10^9/L and the dose taken after each visit (n, visits) in mg;
    ``map_z`` (n, statuses, d): each patient's MAP of the last visit on the Laplace path
    (warm starts; None before the first)."""

    start_day: float
    start_mg: np.ndarray
    visit_days: tuple
    counts: np.ndarray
    doses_after: np.ndarray
    map_z: np.ndarray | None = None

    def dose_matrix(self, until_day: float) -> tuple[np.ndarray, np.ndarray]:
        """The daily dose times (D,) in h before ``until_day`` and every patient's doses (n, D) in mg."""
        days = np.arange(self.start_day, until_day, 1.0)
        visits = np.asarray(self.visit_days, float)
        seen = np.searchsorted(visits, days, side="right")
        if visits.size:
            after = self.doses_after[:, np.maximum(seen - 1, 0)]
            dose = np.where(seen[None, :] == 0, self.start_mg[:, None], after)
        else:
            dose = np.repeat(self.start_mg[:, None], days.size, axis=1)
        return days * 24.0, dose

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
    n_draws, n_predict : importance-sampling draws and simulated posterior draws per forecast
        (the "importance" path).
    seed : seeds every decision (with the visit day and the observed count).
    posterior : "laplace" (the default; the fast path): per patient the MAP and Laplace
        normal of each responder status, warm-started from the patient's MAP of the previous
        visit; ``n_laplace`` draws from the normals, mixed by the Laplace evidence; one
        simulation of all patients x draws x candidate doses; the same choice rule
        (:func:`pkpd.forecast.prediction.choose_many`).  The Laplace draws ignore the skew
        the importance weights correct, so they are an approximation; a patient's draws are
        seeded by the rule's seed, the visit day, the start dose and the patient's observed
        counts, so a decision does not depend on which patients share the visit.
        "importance": the full forecast per patient (:func:`pkpd.forecast.forecast`,
        importance resampling with PSIS), about 20 times slower; the Laplace path's choice
        was its choice at 95 % of 400 patient-visits (``benchmarks/bench_guided.py --agreement 50``).
    n_laplace : draws per patient on the Laplace path.
    hold_margin : a cost of changing the dose: the current dose, if it meets the safety
        constraint, is kept while its P(in range) is within this of the best dose's
        (:func:`pkpd.forecast.prediction.choose`); 0 (the default): near ties only.
    """

    model: PKPDModel | None = field(default=None, compare=False)
    max_p_above: float = 0.05
    horizon_visits: int = 2
    n_draws: int = 1000
    n_predict: int = 500
    seed: int = 0
    name: str = "model-guided titration"
    posterior: str = "laplace"
    n_laplace: int = 200
    hold_margin: float = 0.0

    def __post_init__(self):
        super().__post_init__()
        if self.model is not None and not isinstance(self.model, PKPDModel):
            raise PKPDInputError(f"model must be a pkpd.population.PKPDModel or None; got {type(self.model).__name__}.")
        if not 0 <= self.max_p_above <= 1:
            raise PKPDInputError(f"max_p_above must be a probability in [0, 1]; got {self.max_p_above!r}.")
        if isinstance(self.hold_margin, bool) or not 0 <= self.hold_margin <= 1:
            raise PKPDInputError(f"hold_margin must be a probability difference in [0, 1]; got {self.hold_margin!r}.")
        if self.posterior not in POSTERIORS:
            raise PKPDInputError(f"posterior must be one of {POSTERIORS}; got {self.posterior!r}.")
        for name, least in (("n_draws", 100), ("n_predict", 100), ("horizon_visits", 1), ("n_laplace", 20)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise PKPDInputError(f"{name} must be a whole number >= {least}; got {value!r}.")

    def __repr__(self) -> str:
        return (f"ModelGuidedRule({self.name!r}: {'/'.join(f'{x:g}' for x in self.ladder_mg[1:])} mg, every "
                f"{self.visit_every_days:g} d, max P(>{self.interrupt_above:g}) {self.max_p_above:g}, "
                f"target {self.low:g}-{self.high:g}, {self.posterior} posterior)")

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
                        n_draws=self.n_draws, n_predict=self.n_predict, hold_margin=self.hold_margin)

    def step(self, state: GuidedState, day: float, observed) -> tuple[GuidedState, np.ndarray]:
        """One decision visit: a forecast per patient (see the module docstring)."""
        if not isinstance(state, GuidedState):
            raise PKPDInputError("ModelGuidedRule.step needs the state its own start() made (a GuidedState).")
        y = np.asarray(observed, float)
        if y.shape != state.level.shape:
            raise PKPDInputError(f"observed has shape {y.shape} but there are {state.level.size} patients; give one count each.")
        level = state.level.copy()
        map_z = state.map_z
        if y.size and self.posterior == "laplace":
            chosen, map_z = self.laplace_doses(state, day, y)
            level = np.array([self.level_of(c, "recommended dose") for c in chosen], np.int64)
        else:
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
                      doses_after=np.column_stack([state.doses_after, self.doses_mg[level]]), map_z=map_z)
        return new, action.astype(np.int64)

    # ------------------------------------------------------------ the Laplace path
    def patient_seed(self, state: GuidedState, i: int, day: float, observed: float) -> np.random.SeedSequence:
        """The seed of patient ``i``'s decision on ``day``: the rule's seed, the visit day (h),
        the start dose and the patient's observed counts (10^9/L, to 1e-6), nothing about other patients."""
        counts = np.append(state.counts[i], observed)
        return np.random.SeedSequence([int(self.seed), int(round(day * 24)), int(round(state.start_mg[i] * 1e6)),
                                       *(int(round(c * 1e6)) for c in counts)])

    def laplace_fits(self, state: GuidedState, day: float, y: np.ndarray):
        """Per patient: the MAP and Laplace fits of each responder status
        (:func:`pkpd.forecast.posterior.fit_status`, one start: the patient's previous MAP, else the
        prior mean), their posterior shares, and the MAPs as an (n, statuses, d) array."""
        model = self.model if self.model is not None else hetrombopag.model("itp")
        f = model.nonresponder_fraction
        statuses = [(True, 1.0 - f)] + ([(False, f)] if f > 0 else [])
        out, map_z = [], None
        for i in range(y.size):
            h = state.history(i, day, y[i])
            prior = Prior(model, h)
            if map_z is None:
                map_z = np.full((y.size, len(statuses), prior.dim), np.nan)
            fits = []
            base = PatientDensity(model, h, True, prior)
            for s, (responder, share) in enumerate(statuses):
                density = base if responder else copy.copy(base)  # the same set-up; only the status differs
                density.responder = responder
                warm = None if state.map_z is None else state.map_z[i, s]
                start = warm if warm is not None and np.isfinite(warm).all() else prior.mean
                try:
                    fit = fit_status(density, share, None, 1, starts=start[None, :])
                except PKPDInputError:  # a finite-difference gradient (simulator path) sent TNC off the model
                    fit = None
                if fit is None or not (fit.success and np.isfinite(fit.objective)):
                    # the importance path's starts: the prior mean and two prior draws, seeded by the patient
                    rng = np.random.default_rng(self.patient_seed(state, i, day, y[i]).spawn(1)[0])
                    fit = fit_status(density, share, rng, 3)
                fits.append(fit)
                map_z[i, s] = fit.z
            ev = np.array([fit.log_evidence for fit in fits])
            w = np.exp(ev - ev.max())
            out.append((base, prior, fits, w / w.sum()))
        return model, out, map_z

    def laplace_doses(self, state: GuidedState, day: float, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The Laplace path's recommended dose (mg) of every patient on ``day`` and their MAPs (see the class)."""
        model, fits, map_z = self.laplace_fits(state, day, y)
        K = int(self.n_laplace)
        dose_h, amounts = state.dose_matrix(day)
        start_h = day * 24.0
        visit_h = start_h + 24.0 * self.visit_every_days * np.arange(1, self.horizon_visits + 1)
        future = start_h + 24.0 * np.arange(int(np.ceil((visit_h[-1] - start_h) / 24.0 - 1e-9)))
        future = future[future < visit_h[-1] - 1e-9]
        doses = self.doses_mg
        fl = model.fluctuation
        chosen = np.empty(y.size)
        for lo in range(0, y.size, LAPLACE_BATCH):
            batch = range(lo, min(lo + LAPLACE_BATCH, y.size))
            rows, paths, noise_seeds = [], [], []
            for i in batch:
                density, prior, status_fits, share = fits[i]
                rng = np.random.default_rng(self.patient_seed(state, i, day, y[i]))
                m = np.round(share * K).astype(int)
                m[0] = K - m[1:].sum()  # K draws in all, split by the posterior share of each status
                Z = np.concatenate([rng.multivariate_normal(fit.z, fit.cov, size=int(k), method="cholesky")
                                    for fit, k in zip(status_fits, m)])
                Z = np.clip(Z, prior.lower, prior.upper)
                resp = np.repeat([fit.responder for fit in status_fits], m)
                rows.append(density.rows(Z, resp))
                if fl is not None and fl.sd_log > 0:  # prior paths: the Laplace step leaves the fluctuation out
                    paths.append(fl.extend(np.zeros((K, 0)), int(np.ceil(visit_h[-1] / fl.interval_h)) + 2, rng))
                noise_seeds.append(int(rng.integers(2**63)))
            options = {"_path": np.concatenate(paths)} if paths else {}
            solver = model.solver(pd.DataFrame(np.concatenate(rows), columns=list(model.parameter_names)), **options)
            _, _, st = solver.run(dose_h, np.repeat(amounts[batch.start:batch.stop], K, axis=0), np.array([start_h]))
            true = np.stack([solver.run(future, np.full(future.size, d), visit_h, state=st)[1] for d in doses])
            true = true.reshape(doses.size, len(batch), K, visit_h.size)
            observed = np.empty_like(true)
            for j, seed in enumerate(noise_seeds):  # the same noise for every candidate (common random numbers)
                for c in range(doses.size):
                    observed[c, j] = model.residual_plt.sample(true[c, j], np.random.default_rng(seed))
            chosen[batch.start:batch.stop] = choose_many(observed, doses, (self.low, self.high), self.interrupt_above,
                                                         self.max_p_above, doses[state.level[batch.start:batch.stop]],
                                                         self.hold_margin)
        return chosen, map_z
