"""The forecast entry point: one patient's history in, candidate doses and a recommendation out.

:func:`forecast` validates the request, fits the individual posterior
(:func:`~pkpd.forecast.posterior.fit_individual`; with ``population=`` over the
draws of a population fit as well), predicts the next visit(s)
for every candidate dose (:func:`~pkpd.forecast.prediction.predict`) and picks
the dose (:func:`~pkpd.forecast.prediction.choose`).  Units: h, days for
visits, mg, 10^9/L.
"""

from __future__ import annotations

import os

import numpy as np

from ..checks import PKPDInputError
from ..drugs import hetrombopag
from ..nonmem import Dataset, Subject
from ..population import PKPDModel
from .history import PatientHistory
from .population import DEFAULT_POPULATION_DRAWS
from .posterior import fit_individual
from .prediction import Forecast, candidate_doses, candidate_table, choose, next_visit, predict


def as_history(history, id=None) -> PatientHistory:
    """A :class:`PatientHistory` from a PatientHistory, :class:`pkpd.Subject`,
    :class:`pkpd.Dataset` or the path of a NONMEM-format CSV."""
    if isinstance(history, PatientHistory):
        return history
    if isinstance(history, Subject):
        return PatientHistory.from_subject(history)
    if isinstance(history, Dataset):
        return PatientHistory.from_dataset(history, id=id)
    if isinstance(history, (str, os.PathLike)):
        return PatientHistory.read(history, id=id)
    raise PKPDInputError(f"history must be a PatientHistory, pkpd.Subject, pkpd.Dataset or a CSV path; got "
                         f"{type(history).__name__}. For arrays use PatientHistory.from_arrays(...).")


def forecast(history, model: PKPDModel | None = None, *, seed=None, visit_days=(7,), ladder_mg=None,
             target=(50.0, 250.0), above: float = 400.0, max_p_above: float = 0.05, below: float = 30.0,
             start_h: float | None = None, dose_interval_h: float = 24.0, n_draws: int = 2000,
             n_predict: int = 1000, n_starts: int = 3, method: str = "auto", enrolled: bool = True,
             population=None, n_population_draws: int | None = DEFAULT_POPULATION_DRAWS,
             hold_margin: float = 0.0, choose_visit: bool = False, max_p_below: float = 0.05) -> Forecast:
    """Forecast the next visit's platelet count for each candidate once-daily dose and recommend one.

    history : the patient (see :func:`as_history`).
    model : the population model (default hetrombopag in ITP, linear PK).
    seed : random seed; the same seed gives the same forecast.
    visit_days : days after ``start_h`` of the visit(s) forecast (default one week).
    ladder_mg : dose levels, mg (default :data:`pkpd.drugs.hetrombopag.DOSE_LADDER_MG`); 0 mg
        (interrupt) and the current dose are always candidates.
    target : (low, high) count range to hit, 10^9/L.  above / max_p_above : the safety
        constraint P(count > above) <= max_p_above.  below : reported P(count < below).
    start_h : when the new dose starts, h (default: the last count, or the day after the last
        dose if that is later); the history must hold no dose at or after it.
    dose_interval_h : dosing interval of the candidates, h.
    n_draws, n_predict, n_starts, method : importance-sampling draws, posterior draws simulated,
        optimiser starts, gradient method (see :func:`fit_individual`).
    enrolled : the patient was selected on a screening count like the model's population
        (its ScreenedBaseline); False for a patient who was not.
    population : the uncertainty in the population parameters, carried into the forecast:
        posterior draws of the typical values (a DataFrame, one row per draw, columns named like
        the model's parameters, e.g. from :func:`pkpd.datasets.posterior_typical_draws`) or the
        result of :func:`pkpd.fit` (see :mod:`pkpd.forecast.population`); None: the model's
        values, fixed.  n_population_draws : how many of the draws are used (a subset picked
        with ``seed``; None: all).
    hold_margin : keep the current dose, if it meets the constraint, while its P(in range) is
        within this of the highest (a cost of changing the dose; default 0: near ties only).
    choose_visit : also recommend the day of the next visit among ``visit_days`` (e.g. 7, 14,
        28): the latest up to which the recommended dose keeps P(count > above) <= max_p_above
        and P(count < below) <= max_p_below at every forecast day (see
        :func:`pkpd.forecast.prediction.next_visit`); the result's ``visit_day``.
    """
    h = as_history(history)
    model = hetrombopag.model("itp") if model is None else model
    if not isinstance(model, PKPDModel):
        raise PKPDInputError(f"model must be a pkpd.population.PKPDModel; got {type(model).__name__}.")
    ladder = hetrombopag.DOSE_LADDER_MG if ladder_mg is None else ladder_mg
    try:
        ladder = tuple(float(x) for x in np.atleast_1d(np.asarray(ladder, float)))
    except (TypeError, ValueError):
        raise PKPDInputError(f"ladder_mg must be dose levels in mg, e.g. (0, 2.5, 5); got {ladder_mg!r}.") from None
    if not ladder or not np.isfinite(ladder).all() or min(ladder) < 0:
        raise PKPDInputError(f"ladder_mg must be finite dose levels >= 0 mg; got {ladder_mg!r}.")
    days = np.atleast_1d(np.asarray(visit_days, float))
    if days.size == 0 or not np.isfinite(days).all() or (days <= 0).any():
        raise PKPDInputError(f"visit_days must be days > 0 after the forecast start; got {visit_days!r}.")
    low, high = map(float, target)
    if not (0 <= low < high):
        raise PKPDInputError(f"target must be (low, high) in 10^9/L with 0 <= low < high; got {target!r}.")
    if not 0 <= hold_margin <= 1:
        raise PKPDInputError(f"hold_margin must be a probability difference in [0, 1]; got {hold_margin!r}.")
    for name, value in (("max_p_above", max_p_above), ("max_p_below", max_p_below)):
        if not 0 <= value <= 1:
            raise PKPDInputError(f"{name} must be a probability in [0, 1]; got {value!r}.")
    if not dose_interval_h > 0:
        raise PKPDInputError(f"dose_interval_h must be > 0 h; got {dose_interval_h!r}.")
    if start_h is None:
        start_h = max(float(h.count_times_h.max()), float(h.dose_times_h.max()) + dose_interval_h)
    elif not (np.isfinite(start_h) and start_h >= 0):
        raise PKPDInputError(f"start_h must be a time >= 0 h; got {start_h!r}.")
    elif (h.dose_times_h >= start_h).any():
        raise PKPDInputError(f"start_h {start_h:g} h: the history has a dose at {h.dose_times_h.max():g} h, at or after "
                             "the forecast start; give a later start_h or drop the planned doses.")
    visit_h = start_h + 24.0 * days
    rng = np.random.default_rng(seed)
    post = fit_individual(h, model, seed=rng, n_draws=n_draws, n_starts=n_starts, horizon_h=float(visit_h.max()),
                          method=method, enrolled=enrolled, population=population,
                          n_population_draws=n_population_draws)
    # the dose being taken at the start: the last one, unless dosing stopped more than an interval ago
    current = h.current_dose_mg if h.dose_times_h.max() >= start_h - 1.5 * dose_interval_h else 0.0
    doses, labels = candidate_doses(ladder, current)
    pred = predict(post, doses, start_h, visit_h, dose_interval_h=dose_interval_h, n_predict=n_predict, rng=rng)
    table = candidate_table(doses, labels, days, pred["observed"], (low, high), above, below)
    dose, reason = choose(table, ladder, (low, high), above, max_p_above, current, hold_margin)
    visit_day = None
    if choose_visit:
        visit_day, why = next_visit(table, dose, above, max_p_above, below, max_p_below)
        reason = f"{reason}; {why}"
    settings = {"start_h": float(start_h), "visit_days": days, "visit_h": visit_h, "target": (low, high),
                "above": float(above), "max_p_above": float(max_p_above), "below": float(below), "ladder_mg": ladder,
                "doses": list(doses), "labels": labels, "seed": seed, "enrolled": bool(enrolled),
                "current_mg": current,
                "population_draws": 0 if post.population is None else post.population.size,
                "hold_margin": float(hold_margin), "max_p_below": float(max_p_below)}
    return Forecast(post, table, dose, reason, settings, pred, visit_day)
