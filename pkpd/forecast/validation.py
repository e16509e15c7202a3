"""Checking forecasts against simulated patients: leave-future-out prediction.

Patients come from a :class:`pkpd.Trial` of the same model (its titration rule
decides the doses on the observed counts, as in the clinic), written out as
NONMEM records (:meth:`pkpd.trial_result.TrialResult.to_nonmem`) and read
back (:func:`pkpd.read_nonmem`), so the forecaster sees exactly what a user's
file would give it.  :func:`leave_future_out` forecasts one visit's count from
the records before it, for the dose the trial actually gave, and sets it
beside the population-only prediction (the model's prior predictive for the
same doses, no individual data).  Units: h, days, mg, 10^9/L.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..drugs import hetrombopag
from ..nonmem import read_nonmem
from ..population import PKPDModel
from .history import PatientHistory
from .population import population_draws
from .recommend import forecast

#: Population draws the population-only prediction simulates patients from (a seeded random subset).
PREDICTION_DRAWS = 100


def trial_histories(result) -> dict:
    """``{ID: PatientHistory}`` of every patient of a trial result, through its NONMEM records."""
    dataset = read_nonmem(result.to_nonmem())
    return {s.id: PatientHistory.from_subject(s, dataset.dv_units, dataset.dv_type) for s in dataset.subjects}


def population_prediction(model: PKPDModel, history: PatientHistory, time_h: float, n: int = 1000, seed=None,
                          population=None):
    """The model's prior predictive of the count measured at ``time_h`` after the
    history's doses (before ``time_h``): (median of the true count, 5 % and 95 % of the
    measured count), 10^9/L, from ``n`` simulated patients.  With ``population``
    (posterior draws, see :mod:`pkpd.forecast.population`) each simulated patient's
    population parameters are one of ``PREDICTION_DRAWS`` draws picked at random."""
    rng = np.random.default_rng(seed)
    if population is None:
        params = model.sample_parameters(n, seed=rng)
        errors = [(model.residual_plt, slice(None))]
    else:
        pop = population_draws(population, model, PREDICTION_DRAWS, rng)
        pick = rng.integers(pop.size, size=int(n))
        used, counts = np.unique(pick, return_counts=True)
        params = pd.concat([pop.models[k].sample_parameters(int(c), seed=rng) for k, c in zip(used, counts)],
                           ignore_index=True)
        of_row = np.repeat([pop.models[k].residual_plt for k in used], counts)  # each patient's visit error
        errors = [(err, of_row == err) for err in dict.fromkeys(of_row)]
    options = {}
    fl = model.fluctuation
    if fl is not None and fl.sd_log > 0:
        options["rng"] = rng
    keep = history.dose_times_h < time_h
    _, plt, _ = model.solver(params, **options).run(history.dose_times_h[keep], history.dose_mg[keep], [time_h])
    true = plt[:, 0]
    observed = np.empty_like(true)
    for err, rows in errors:
        observed[rows] = err.sample(true[rows], rng)
    return float(np.median(true)), float(np.quantile(observed, 0.05)), float(np.quantile(observed, 0.95))


def leave_future_out(history: PatientHistory, model: PKPDModel, target_h: float, *, seed=None,
                     ladder_mg=None, n_population: int = 1000, **options) -> dict:
    """Forecast the count at ``target_h`` from the records before the previous count.

    The history is cut at the last count before ``target_h`` (that count kept, the
    doses from it on removed); the forecast starts there, for the once-daily dose
    the history gave between the two counts.  Returns a dict: id, start and target
    day, dose_mg, observed count, forecast median / p5 / p95 and whether the 90 %
    interval covers the observation, the population-only prediction (median of the
    true count, 5-95 % of the measured count; over the population draws when
    ``population`` is among the forecast ``options``) and the posterior diagnostics
    (with population draws: ``population_ess``, their effective number).
    """
    counts_before = history.count_times_h[history.count_times_h < target_h - 1e-9]
    start = float(counts_before.max())
    observed = float(history.counts[np.isclose(history.count_times_h, target_h)][0])
    given = history.dose_mg[(history.dose_times_h >= start - 1e-9) & (history.dose_times_h < target_h - 1e-9)]
    dose = float(given[0]) if given.size else 0.0
    known = history.until(start)  # counts up to and with the one at start, doses before it
    ladder = tuple(sorted({*(hetrombopag.DOSE_LADDER_MG if ladder_mg is None else ladder_mg), dose}))
    rng = np.random.default_rng(seed)
    fc = forecast(known, model, seed=rng, start_h=start, visit_days=((target_h - start) / 24.0,), ladder_mg=ladder,
                  **options)
    row = fc.candidate(dose).iloc[0]
    pop = population_prediction(model, history, target_h, n_population, rng, options.get("population"))
    p = fc.posterior
    return {"id": history.id, "start_day": start / 24.0, "target_day": target_h / 24.0, "dose_mg": dose,
            "counts_known": int(known.counts.size), "observed": observed, "median": float(row["median"]),
            "p5": float(row["p5"]), "p95": float(row["p95"]), "covered": bool(row["p5"] <= observed <= row["p95"]),
            "pop_median": pop[0], "pop_p5": pop[1], "pop_p95": pop[2], "pop_covered": bool(pop[1] <= observed <= pop[2]),
            "p_responder": p.p_responder, "pareto_k": p.pareto_k, "ess": p.ess, "seconds": p.seconds,
            "warnings": len(p.warnings), "population_ess": p.population_ess}


def summarise(rows: pd.DataFrame) -> dict:
    """Coverage of the 90 % intervals and RMSE of log counts, forecast vs population-only."""
    log_obs = np.log(rows["observed"])
    return {"patients": len(rows), "coverage_90": float(rows["covered"].mean()),
            "pop_coverage_90": float(rows["pop_covered"].mean()),
            "rmse_log_forecast": float(np.sqrt(np.mean((np.log(rows["median"]) - log_obs) ** 2))),
            "rmse_log_population": float(np.sqrt(np.mean((np.log(rows["pop_median"]) - log_obs) ** 2))),
            "rmse_forecast": float(np.sqrt(np.mean((rows["median"] - rows["observed"]) ** 2))),
            "rmse_population": float(np.sqrt(np.mean((rows["pop_median"] - rows["observed"]) ** 2))),
            "pareto_k_above_0.7": float((rows["pareto_k"] > 0.7).mean())}
