"""Bad trial designs and runs: ``Arm``, ``Endpoints``, ``Trial`` and
``Trial.run`` refuse each with the field and the value, sizes included, before
anything is simulated."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bad_inputs import Case
from pkpd import Arm, Endpoints, PKPDInputError, TitrationRule, Trial, population
from pkpd.checks import MAX_PATIENT_DAYS, MAX_PATIENT_VISITS

RULE = TitrationRule()
NAN = float("nan")
ARMS = (Arm("titrated", 4, 2.5, RULE), Arm("placebo", 2, 0.0))


def _trial(id_, *mentions, arms=ARMS, **design):
    return Case(f"trial-{id_}", lambda tmp_path: Trial(arms, **design), PKPDInputError, mentions)


def _arm(id_, *mentions, name="a", n=10, start_mg=0.0, rule=None):
    return Case(f"trial-{id_}", lambda tmp_path: Arm(name, n, start_mg, rule), PKPDInputError, mentions)


def _run(id_, *mentions, **options):
    return Case(f"trial-{id_}", lambda tmp_path: Trial(ARMS).run(progress=False, **options), PKPDInputError, mentions)


NO_PRIMARY = Endpoints(primary_day=None)

CASES = [
    # horizon and schedule
    _trial("duration-million-days", "duration_days", "at most 7305 days", "1000000", duration_days=1_000_000),
    _trial("duration-fraction", "duration_days", "whole number of days", "10.5", duration_days=10.5),
    _trial("duration-zero", "duration_days", "> 0", "0", duration_days=0),
    _trial("duration-nan", "duration_days", "finite", "nan", duration_days=NAN),
    _trial("duration-bool", "duration_days", "number of days", "True", duration_days=True),
    _trial("visit-interval-zero", "visit_every_days", "> 0", "0", visit_every_days=0),
    _trial("visit-interval-longer-than-trial", "visit_every_days (30)", "duration_days (28)", duration_days=28,
           visit_every_days=30, endpoints=NO_PRIMARY),
    _trial("treatment-after-end", "treatment_days (35)", "after duration_days (28)", duration_days=28,
           treatment_days=35, endpoints=Endpoints(primary_day=28)),
    _trial("primary-day-not-a-visit", "endpoints.primary_day 50", "not a visit day", endpoints=Endpoints(primary_day=50)),
    _trial("primary-day-after-end", "endpoints.primary_day 56", "not a visit day", duration_days=42),
    _trial("rule-visit-fraction", "visit_every_days", "whole number of days", "3.5",
           arms=(Arm("titrated", 4, 2.5, RULE.with_(visit_every_days=3.5)),)),
    # arms
    _trial("arms-empty", "arms", "non-empty", arms=()),
    _trial("arm-names-repeat", "unique", "'a'", arms=(Arm("a", 5, 0.0), Arm("a", 5, 2.5))),
    _arm("arm-n-zero", "n (patients)", ">= 1", "got 0", n=0),
    _arm("arm-n-fraction", "n (patients)", "whole number", "2.5", n=2.5),
    _arm("arm-n-nan", "n (patients)", "whole number", "nan", n=NAN),
    _arm("arm-n-infinite", "n (patients)", "whole number", "inf", n=float("inf")),
    _arm("arm-n-text", "n (patients)", "whole number", "'10'", n="10"),
    _arm("arm-start-negative", "start_mg", ">= 0", "-1.0", start_mg=-1.0),
    _arm("arm-start-huge", "start_mg", "<= 100000", "1e+308", start_mg=1e308),
    _arm("arm-start-off-ladder", "start dose 3.0 mg", "not on the dose ladder", start_mg=3.0, rule=RULE),
    _arm("arm-titrated-start-zero", "cannot start at 0 mg", "0.0 mg", start_mg=0.0, rule=RULE),
    _arm("arm-rule-not-a-rule", "rule", "TitrationRule", "dict", start_mg=2.5, rule={"low": 50}),
    _arm("arm-name-empty", "arm name", "non-empty", "''", name=""),
    # endpoints and model
    Case("trial-endpoints-target-reversed", lambda tmp_path: Endpoints(target=(250, 50)), PKPDInputError,
         ("endpoints.target", "(250, 50)")),
    Case("trial-endpoints-response-nan", lambda tmp_path: Endpoints(response=NAN), PKPDInputError,
         ("endpoints.response", "nan")),
    Case("trial-endpoints-stopped-text", lambda tmp_path: Endpoints(stopped_as_nonresponders="yes"), PKPDInputError,
         ("endpoints.stopped_as_nonresponders", "'yes'")),
    _trial("model-not-a-model", "model", "PKPDModel", "str", model="itp"),
    # sizes: refused before anything is allocated
    _trial("patients-billion", "n = 1,000,000,000", "patient-days", "fewer patients",
           arms=(Arm("big", 10**9, 0.0),)),
    _run("replicates-million", "replicates = 1,000,000", "patient-days", "at most", replicates=10**6),
    _run("replicates-zero", "replicates", ">= 1", "got 0", replicates=0),
    _run("replicates-fraction", "replicates", "whole number", "2.5", replicates=2.5),
    _run("replicates-bool", "replicates", "whole number", "True", replicates=True),
    _run("replicates-nan", "replicates", "whole number", "nan", replicates=NAN),
    _run("seed-negative", "seed", ">= 0", "-1", seed=-1),
    _run("seed-fraction", "seed", "whole number", "1.5", seed=1.5),
    _run("max-chunk-zero", "max_chunk", ">= 1", "got 0", max_chunk=0),
    _run("typical-draws-rows", "typical_draws has 2 rows", "replicates is 1",
         typical_draws=pd.DataFrame({"ec50": [20.0, 21.0]})),
    Case("trial-check-size-names-field", lambda tmp_path: Trial(ARMS).check_size(10**7, field="--replicates"),
         PKPDInputError, ("--replicates = 10,000,000", "at most")),
]


def test_trial_size_refused_before_any_allocation(monkeypatch):
    """A run over the size limit stops before drawing a single patient."""
    def boom(*args, **kwargs):
        raise AssertionError("allocated before the size check")

    monkeypatch.setattr(population.PKPDModel, "sample_parameters", boom)
    trial = Trial(ARMS, duration_days=56)
    n = trial.n_per_trial
    too_many = min(MAX_PATIENT_DAYS // (n * 57), MAX_PATIENT_VISITS // (n * trial.grid().size)) + 1
    assert trial.check_size(too_many - 1) == too_many - 1  # the largest accepted count passes
    with pytest.raises(PKPDInputError, match=f"replicates = {too_many:,}"):
        trial.run(replicates=too_many, progress=False)


def test_trial_unfilled_cell_is_a_bug_not_a_number(monkeypatch):
    """If a simulated segment ever left a cell unset, the run raises instead of reporting it."""
    real = population.PKPDModel.solver

    def leaky(self, params):
        solver = real(self, params)
        run = solver.run

        def run_with_gap(dose_times, amounts, times, state=None):
            conc, plt, state = run(dose_times, amounts, times, state)
            plt[0, 0] = np.nan  # a daily value between visits, never seen by a rule
            return conc, plt, state

        solver.run = run_with_gap
        return solver

    monkeypatch.setattr(population.PKPDModel, "solver", leaky)
    with pytest.raises(RuntimeError, match="unfilled"):
        Trial(ARMS, duration_days=14, endpoints=Endpoints(primary_day=14)).run(seed=1, progress=False)
