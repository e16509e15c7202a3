"""The published targets the calibrated hetrombopag models (``pk="saturable"``) must meet, each computed
through the public API as the expected value over >= 50 replicate trials of
the published size (docs/science.md, "What the default model must reproduce").

Sources: phase III, Mei et al., J Hematol Oncol 2021;14:37 (week-8 response,
responded at least once within 8 weeks, adverse event "platelet count
increased"); first-in-patient study, J Thromb Haemost 2020;18:3053 (day-28
response at fixed doses); healthy volunteers, Yang et al., Br J Clin Pharmacol
2020;86:1528 (+15.8 % platelets on day 6 after 7.5 mg) and Zheng et al., Basic
Clin Pharmacol Toxicol 2017 (PK, tests/test_saturable_healthy.py).
"""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import beta

import pkpd
from pkpd.drugs import hetrombopag

ROOT = Path(__file__).resolve().parents[1] / "scenarios"
REPLICATES = 50


def clopper_pearson(k, n):
    return beta.ppf(0.025, k, n - k + 1) if k else 0.0, beta.ppf(0.975, k + 1, n - k) if k < n else 1.0


def rates(result, endpoint):
    table = result.endpoints.set_index(["endpoint", "arm"]).loc[endpoint]
    return table["estimate"].to_dict()


@pytest.fixture(scope="module")
def phase3():
    trial = pkpd.load_scenario(ROOT / "itp_phase3.toml").trial
    trial = dataclasses.replace(trial, model=hetrombopag.model("itp", pk="saturable"))
    return trial.run(seed=11, replicates=REPLICATES, progress=False)


@pytest.fixture(scope="module")
def first_in_patient():
    scenario = pkpd.load_scenario(ROOT / "first_in_patient.toml")  # pk = "saturable"
    assert scenario.trial.model.pk is pkpd.OneCompartmentSaturable
    return scenario.trial.run(seed=12, replicates=4 * REPLICATES, progress=False)


def test_phase3_week8_response_inside_each_published_interval(phase3):
    got = rates(phase3, "responders_primary")
    for arm, (k, n) in {"2.5 mg + titration": (99, 168), "5 mg + titration": (110, 171), "placebo": (5, 85)}.items():
        lo, hi = clopper_pearson(k, n)
        assert lo <= got[arm] <= hi, (arm, got[arm], (lo, hi))


def test_phase3_responded_once_within_8_weeks_within_5_points(phase3):
    got = rates(phase3, "responded_once")
    for arm, published in {"2.5 mg + titration": 0.845, "5 mg + titration": 0.865, "placebo": 0.224}.items():
        assert abs(got[arm] - published) <= 0.05, (arm, got[arm], published)


MOSTLY = {"2.5 mg + titration": (55, 168), "5 mg + titration": (98, 171), "placebo": (2, 85)}


@pytest.mark.parametrize("arm", [
    pytest.param("2.5 mg + titration", marks=pytest.mark.xfail(
        strict=True, reason="held-out miss: the calibrated model gives ~21 % against 55/168 (interval 25.7-40.4 %): "
                            "patients of the 2.5 mg start leave response more often than published (docs/calibration.md)")),
    "5 mg + titration", "placebo"])
def test_phase3_responded_at_three_quarters_of_assessments_inside_each_published_interval(phase3, arm):
    """Held out of the calibration: >= 50 at >= 75 % of the assessments within 8 weeks,
    32.7 % / 57.3 % / 2.4 % (Mei 2021, Table 2): how steadily patients stay in response,
    which the disease fluctuation and the visit noise set."""
    got = rates(phase3, "responded_mostly")[arm]
    lo, hi = clopper_pearson(*MOSTLY[arm])
    assert lo <= got <= hi, (arm, got, (lo, hi))


def test_platelet_count_increased_is_higher_from_the_5_mg_start(phase3):
    """The count-based proxy (any count > 400 within 10 weeks) of the adverse event
    2.4 % (2.5 mg start) vs 14.0 % (5 mg start)."""
    got = rates(phase3, "platelet_increased")
    assert got["5 mg + titration"] > 1.5 * got["2.5 mg + titration"]


def test_platelet_count_increased_three_times_higher_from_5_mg(phase3):
    got = rates(phase3, "platelet_increased")
    assert got["5 mg + titration"] >= 3 * got["2.5 mg + titration"]


def test_first_in_patient_day28_response_rises_steeply_with_dose(first_in_patient):
    got = rates(first_in_patient, "responders_primary")
    r25, r5, r75 = got["2.5 mg"], got["5 mg"], got["7.5 mg"]
    assert r25 < r5 <= r75 + 0.02, (r25, r5, r75)  # 5 <= 7.5 up to Monte Carlo error of 200 x 12 patients
    for rate, published in ((r5, 0.583), (r75, 0.667)):
        assert abs(rate - published) <= 0.20, (rate, published)
    lo, hi = clopper_pearson(1, 8)
    assert lo <= r25 <= hi  # inside the binomial 95 % interval of 1/8


def test_first_in_patient_2p5_mg_within_20_points_and_25_below_5_mg(first_in_patient):
    got = rates(first_in_patient, "responders_primary")
    assert abs(got["2.5 mg"] - 0.125) <= 0.20 and got["5 mg"] - got["2.5 mg"] >= 0.25


def test_healthy_day6_platelet_rise_after_one_7p5_mg_dose():
    sim = pkpd.simulate_population(hetrombopag.model("healthy", pk="saturable"), pkpd.Regimen.single(7.5), [0.0, 144.0], n=4000,
                                   seed=21, observed=False)
    plt = sim["platelets"].values
    rise = 100 * np.mean(plt[:, 1] / plt[:, 0] - 1)
    assert abs(rise - 15.8) <= 5.0, rise


def test_saturable_pk_is_dose_dependent_and_the_linear_model_stays_the_default():
    saturable, linear = hetrombopag.model("healthy", pk="saturable"), hetrombopag.model("healthy")
    assert saturable.pk is pkpd.OneCompartmentSaturable and "vmax" in saturable.typical
    assert linear.pk.__name__ == "OneCompartmentOral"
    times = np.arange(0, 24 * 14 + 1, 24.0)
    pk = {name: saturable.typical[name] for name in saturable.pk.PARAMETERS}
    p = saturable.pk.parameter_arrays(**pk)
    c = {d: saturable.pk.concentrations(p, pkpd.Regimen.daily(d, days=14), times)[0, -1] for d in (2.5, 5.0)}
    assert c[2.5] < 0.5 * c[5.0]  # exposure at 2.5 mg below linear scaling from 5 mg
