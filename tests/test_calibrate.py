"""pkpd.calibrate: targets and parameters as data, the binomial objective with
common random numbers, recovery of a known truth with profile intervals.

The designs are small (two fixed-dose arms and placebo, 4 weeks) so that each
simulation takes a fraction of a second.  "Published" counts come from the
model's expected rates at a known truth, estimated by a large simulation with
a seed the calibration never uses.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

import pkpd
from pkpd import Arm, Endpoints, Trial
from pkpd.calibrate import (Calibrator, Parameter, Target, apply, calibrate, current_value, targets_frame,
                            targets_from_frame)
from pkpd.drugs import hetrombopag

SRC = "simulated truth"
MODEL = hetrombopag.model("itp")
DESIGN = Trial((Arm("2.5 mg", 100, 2.5), Arm("5 mg", 100, 5.0), Arm("placebo", 150, 0.0)),
               duration_days=28, endpoints=Endpoints(primary_day=28), model=MODEL, name="small")
ARMS = ("2.5 mg", "5 mg", "placebo")
PUBLISHED_N = 400  # per arm: a large "published" trial, so that the interval is narrow
#: the known truth the "published" counts come from
TRUTH = {"ec50": 12.0, "nonresponder_fraction": 0.3, "residual_plt.prop": 0.45}


def _expected_rates(model, endpoint="responders_primary", replicates=40, seed=987):
    """The model's expected rate per arm (a large run with its own seed)."""
    res = replace(DESIGN, model=model).run(seed=seed, replicates=replicates, progress=False)
    return res.one_endpoint(endpoint)[1]["estimate"]


@pytest.fixture(scope="module")
def truth_targets():
    """Published counts at the truth: expected rate x n, rounded."""
    rates = _expected_rates(apply(MODEL, TRUTH))
    return [Target(DESIGN, "responders_primary", arm, int(round(rates[arm] * PUBLISHED_N)), PUBLISHED_N, SRC)
            for arm in ARMS]


def test_recovers_a_known_parameter_with_its_interval(truth_targets):
    """The non-responder fraction from a wrong start (0.05): the estimate
    lands near the truth (0.3) and the 95% profile interval covers it; fails
    if the objective, the scaling or the profile search is wrong (e.g. an
    interval at the start, or one that does not bracket the estimate)."""
    known = apply(MODEL, {k: v for k, v in TRUTH.items() if k != "nonresponder_fraction"})
    res = calibrate(truth_targets, [Parameter("nonresponder_fraction", 0.0, 0.8, log=False, start=0.05)], model=known,
                    replicates=6, seed=3, progress=False)
    row = res.parameters.loc["nonresponder_fraction"]
    assert abs(row["estimate"] - 0.3) < 0.06
    assert row["low"] < 0.3 < row["high"]
    assert row["low"] < row["estimate"] < row["high"] and not row["low_at_bound"] and not row["high_at_bound"]
    # the interval's ends are where the profile deviance rises by 3.84 (within the search tolerance)
    prof = res.profiles["nonresponder_fraction"]
    for end in ("low", "high"):
        near = prof.iloc[(prof["nonresponder_fraction"] - row[end]).abs().argmin()]
        assert abs(near["deviance_rise"] - 3.84) < 0.6
    assert res.model.nonresponder_fraction == pytest.approx(row["estimate"])
    assert (res.history["stage"] == "fit").sum() >= 3
    assert "nonresponder_fraction" in repr(res) and "targets" in repr(res)


def test_two_parameters_recovered(truth_targets):
    """ec50 (the treated arms) and the visit noise (the placebo arm: counts
    that cross 50 by noise alone) from a wrong start: near the truth (12
    ng/mL, log SD 0.45); the treated 5 mg arm held out as a prediction."""
    known = MODEL.with_(nonresponder_fraction=TRUTH["nonresponder_fraction"])
    res = calibrate([truth_targets[0], truth_targets[2]],
                    [Parameter("ec50", 2.0, 200.0, start=40.0), Parameter("residual_plt.prop", 0.15, 0.9, start=0.3)],
                    holdout=[truth_targets[1]], model=known, replicates=6, seed=3, intervals=False, progress=False)
    est = res.parameters["estimate"]
    # ec50 moves a rate by ~3 points per halving: the Monte Carlo SE (~2 points) allows a factor ~1.6
    assert abs(np.log(est["ec50"] / 12.0)) < 0.5
    # the placebo rate moves by ~1 point per 0.1 of log SD: its Monte Carlo SE (~0.7 point) allows ~0.1
    assert abs(np.log(est["residual_plt.prop"] / 0.45)) < 0.3
    t = res.targets
    assert list(t["holdout"]) == [False, False, True]
    assert res.objective == pytest.approx(t.loc[~t["holdout"], "objective"].sum())
    held = t[t["holdout"]].iloc[0]
    assert abs(held["model_rate"] - held["published_rate"]) < 3 * np.hypot(held["model_se"], 0.025)


def test_objective_is_the_binomial_log_likelihood(truth_targets):
    """The objective at a point equals -sum binom.logpmf(k, n, p) with p the
    rates of an independent run of the same design, model and seed."""
    problem = Calibrator(truth_targets, [Parameter("ec50", 2.0, 200.0)], replicates=4, seed=11, progress=False)
    got = problem.objective({"ec50": 15.0})
    run = replace(DESIGN, model=MODEL.with_typical(ec50=15.0))
    rates = run.run(seed=problem.seeds[0], replicates=4, progress=False).one_endpoint("responders_primary")[1]["estimate"]
    n_sim = np.array([a.n * 4 for a in DESIGN.arms])
    floor = 0.5 / (n_sim + 1)
    p = np.clip(rates[list(ARMS)].to_numpy(), floor, 1 - floor)
    k = np.array([t.k for t in truth_targets])
    assert got == pytest.approx(-binom.logpmf(k, PUBLISHED_N, p).sum(), rel=1e-12)


def test_a_simulated_zero_is_floored():
    """A placebo target with no simulated responders gives a finite objective
    at the documented floor 0.5 / (n_sim + 1), not -inf."""
    t = Target(DESIGN, "responders_primary", "placebo", 3, 85, SRC)
    problem = Calibrator([t], [Parameter("ec50", 2.0, 200.0)],
                         model=apply(MODEL, {"residual_plt.prop": 0.0, "baseline.noise": 0.0}),
                         replicates=2, seed=1, progress=False)
    sim = problem.simulate({"ec50": 20.0})[0]
    assert sim["rate"] == 0.0
    assert problem.objective({"ec50": 20.0}) == pytest.approx(-binom.logpmf(3, 85, 0.5 / (sim["n_sim"] + 1)))


def test_common_random_numbers(truth_targets):
    """Two problems with the same seed give identical objectives; the rate
    of a treated arm never rises with EC50 over a grid (the same patients and
    noise at every point, so the curve is monotone, not jittered)."""
    params = [Parameter("ec50", 2.0, 200.0)]
    a = Calibrator(truth_targets, params, replicates=3, seed=5, progress=False)
    b = Calibrator(truth_targets, params, replicates=3, seed=5, progress=False)
    assert a.objective({"ec50": 17.0}) == b.objective({"ec50": 17.0})
    rates = [a.simulate({"ec50": x})[1]["rate"] for x in (5.0, 8.0, 12.0, 20.0, 35.0, 60.0)]
    assert all(np.diff(rates) <= 0) and rates[0] > rates[-1]


@pytest.mark.parametrize("values", [{"ec50": 40.0}, {"nonresponder_fraction": 0.4}, {"residual_plt.prop": 0.3},
                                    {"lifespan": 90.0}])
def test_parameters_do_not_shift_the_random_streams(values):
    """Changing a calibrated parameter leaves every other patient draw as it
    was: the same baseline, clearance and visit-noise draws (noise ratio of
    observed to true count at day 0 compared on the log scale)."""
    def draws(model):
        res = replace(DESIGN, model=model).run(seed=4, replicates=2, progress=False)
        p = res.parameters
        led = res.ledger
        eps = np.log(led["observed"] / led["true"])[led["day"] == 0].to_numpy()
        return p, eps

    p0, e0 = draws(MODEL)
    p1, e1 = draws(apply(MODEL, values))
    for col in ("plt0", "cl", "v", "ka"):
        np.testing.assert_array_equal(p0[col], p1[col])
    scale = current_value(apply(MODEL, values), "residual_plt.prop") / MODEL.residual_plt.prop
    np.testing.assert_allclose(e1, e0 * scale, rtol=1e-6, atol=1e-9)
    if "nonresponder_fraction" in values:  # the same lottery: responders at 40% are responders at 15%
        assert not (p1["responder"] & ~p0["responder"]).any()
    else:
        np.testing.assert_array_equal(p0["responder"], p1["responder"])


def test_parameter_names_address_the_model():
    """Typical values, number fields and dotted names inside dataclass fields."""
    m = apply(MODEL, {"ec50": 9.0, "nonresponder_fraction": 0.3, "residual_plt.prop": 0.25, "baseline.median": 28.0})
    assert m.typical["ec50"] == 9.0 and m.nonresponder_fraction == 0.3
    assert m.residual_plt.prop == 0.25 and m.residual_plt.lognormal
    assert m.baseline.median == 28.0 and m.baseline.noise == MODEL.baseline.noise
    assert current_value(m, "baseline.median") == 28.0
    cv = apply(MODEL, {"iiv.ec50": 0.25})
    assert cv.iiv["ec50"] == 0.25 and current_value(cv, "iiv.ec50") == 0.25
    assert {k: v for k, v in cv.iiv.items() if k != "ec50"} == {k: v for k, v in MODEL.iiv.items() if k != "ec50"}


def test_an_iiv_cv_scales_the_same_patient_draws():
    """Calibrating an IIV CV keeps common random numbers: each patient's log-EC50
    deviation from the typical value scales by the ratio of the log-normal SDs."""
    def log_dev(model):
        p = replace(DESIGN, model=model).run(seed=4, replicates=2, progress=False).parameters
        return np.log(p["ec50"].to_numpy() / model.typical["ec50"])

    cv0, cv1 = MODEL.iiv["ec50"], 0.2
    scale = np.sqrt(np.log1p(cv1 ** 2) / np.log1p(cv0 ** 2))
    np.testing.assert_allclose(log_dev(apply(MODEL, {"iiv.ec50": cv1})), scale * log_dev(MODEL), rtol=1e-9, atol=1e-12)


def test_targets_round_trip_through_a_csv(tmp_path):
    """Targets -> DataFrame -> CSV -> targets, with a scenario path as design."""
    path = str(pkpd.__file__).replace("pkpd/__init__.py", "scenarios/itp_phase3.toml")
    targets = [Target(path, "responders_primary", "placebo", 5, 85, "Mei et al., J Hematol Oncol 2021;14:37"),
               Target(path, "responded_once", "5 mg + titration", 148, 171, "Mei 2021", label="5 mg once")]
    frame = targets_frame(targets)
    frame.to_csv(tmp_path / "targets.csv", index=False)
    back = targets_from_frame(tmp_path / "targets.csv")
    assert back == targets
    assert targets_from_frame(frame) == targets
    assert list(pd.read_csv(tmp_path / "targets.csv")["k"]) == [5, 148]


def test_plot_shows_every_target(truth_targets):
    res = calibrate(truth_targets[:2], [Parameter("ec50", 2.0, 200.0, start=12.0)], holdout=truth_targets[2:],
                    replicates=2, seed=1, intervals=False, max_evaluations=2, progress=False)
    fig = res.plot()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == list(res.targets["label"])


def test_evaluate_reports_the_targets_at_given_values_without_fitting(truth_targets):
    """evaluate(): the model rates of an independent run of the same design,
    model and seed, the objective as -sum binom.logpmf, and no profiles."""
    problem = Calibrator(truth_targets[:2], [Parameter("ec50", 2.0, 200.0)], holdout=truth_targets[2:],
                         replicates=3, seed=11, progress=False)
    res = problem.evaluate({"ec50": 15.0})
    run = replace(DESIGN, model=MODEL.with_typical(ec50=15.0))
    rates = run.run(seed=problem.seeds[0], replicates=3, progress=False).one_endpoint("responders_primary")[1]["estimate"]
    np.testing.assert_allclose(res.targets["model_rate"], rates[list(ARMS)].to_numpy(), rtol=1e-12)
    assert list(res.targets["holdout"]) == [False, False, True]
    p = rates[list(ARMS[:2])].to_numpy()
    assert res.objective == pytest.approx(-binom.logpmf([t.k for t in truth_targets[:2]], PUBLISHED_N, p).sum(),
                                          rel=1e-12)
    assert res.parameters.loc["ec50", "estimate"] == 15.0 and np.isnan(res.parameters.loc["ec50", "low"])
    assert len(res.history) == 1


def test_intervals_for_named_parameters_only(truth_targets):
    """intervals=[name]: that parameter gets a profile interval, the other none;
    an unknown name is refused with the calibrated names listed."""
    known = apply(MODEL, {"residual_plt.prop": TRUTH["residual_plt.prop"]})
    params = [Parameter("nonresponder_fraction", 0.0, 0.8, log=False, start=0.25), Parameter("ec50", 2.0, 200.0, start=12.0)]
    with pytest.raises(pkpd.PKPDInputError, match="'ec5'.*Calibrated"):
        calibrate(truth_targets, params, model=known, replicates=2, seed=3, intervals=["ec5"], progress=False)
    with pytest.raises(pkpd.PKPDInputError, match="intervals must be"):
        calibrate(truth_targets, params, model=known, replicates=2, seed=3, intervals="ec50", progress=False)
    res = calibrate(truth_targets, params, model=known, replicates=3, seed=3, intervals=["nonresponder_fraction"],
                    max_evaluations=20, progress=False)
    rows = res.parameters
    assert rows.loc["nonresponder_fraction", "low"] < rows.loc["nonresponder_fraction", "estimate"] \
        < rows.loc["nonresponder_fraction", "high"]
    assert np.isnan(rows.loc["ec50", "low"]) and list(res.profiles) == ["nonresponder_fraction"]


def test_profile_limits_are_where_a_full_refit_of_the_others_rises_by_3_84(truth_targets):
    """A profile with a nuisance parameter (its other parameter re-fitted at
    each step from the linearised optimum with secant Jacobian updates): at
    each limit of ec50, an independent full re-fit of the visit noise alone
    (Nelder-Mead, ec50 fixed there, a separate calibration) gives a deviance
    3.84 above the optimum's, within the search tolerance and the re-fit's."""
    known = MODEL.with_(nonresponder_fraction=TRUTH["nonresponder_fraction"])
    params = [Parameter("ec50", 2.0, 200.0, start=20.0), Parameter("residual_plt.prop", 0.15, 0.9, start=0.35)]
    res = calibrate(truth_targets, params, model=known, replicates=4, seed=3, intervals=["ec50"], progress=False)
    row = res.parameters.loc["ec50"]
    assert row["low"] < row["estimate"] < row["high"] and not (row["low_at_bound"] or row["high_at_bound"])
    profile_sims = int(res.history["stage"].str.startswith("profile").sum())
    best = res.objective
    for end in ("low", "high"):
        fixed = apply(known, {"ec50": row[end]})
        refit = calibrate(truth_targets, [Parameter("residual_plt.prop", 0.15, 0.9,
                                                    start=res.parameters.loc["residual_plt.prop", "estimate"])],
                          model=fixed, replicates=4, seed=3, intervals=False, method="Nelder-Mead", progress=False)
        assert 2 * (refit.objective - best) == pytest.approx(3.84, abs=0.6), end
    # each step costs a few simulations, not (p + 1) per iteration
    steps = len(res.profiles["ec50"])
    assert profile_sims <= 4 * steps + 2


SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"


def test_the_shipped_problem_file_is_the_published_targets():
    """scenarios/itp_calibration.toml: the scenario files' published counts
    (11 fitted, 4 held out), 6 parameters, its start set on the model, one
    more start; the phase III targets share one Scenario (simulated once)."""
    from pkpd.calibrate import load_problem, scenario_targets
    problem = load_problem(SCENARIOS / "itp_calibration.toml")
    fitted = [(t.label, t.k, t.n) for t in problem["targets"]]
    phase3 = scenario_targets(SCENARIOS / "itp_phase3.toml")
    assert len(fitted) == 11 and len(problem["holdout"]) == 4
    assert ("itp_phase3: 2.5 mg + titration: responders_primary", 99, 168) in fitted
    assert ("first_in_patient: 2.5 mg: responders_primary", 1, 8) in fitted
    assert ("itp_phase3: placebo: platelet_increased", 2, 85) in [(t.label, t.k, t.n) for t in problem["holdout"]]
    assert {id(t.design) for t in problem["targets"] + problem["holdout"] if "itp_phase3" in t.label} == \
        {id(phase3[0].design)}
    assert [p.name for p in problem["parameters"]][:2] == ["ec50", "hill"]
    assert current_value(problem["model"], "ec50") == 26.5 and current_value(problem["model"], "iiv.ec50") == 0.2
    assert problem["replicates"] == 15 and problem["seed"] == 3 and len(problem["starts"]) == 1


@pytest.mark.parametrize("edit,message", [
    (("[problem]", "[problm]"), "unknown table \\[problm\\]. Did you mean 'problem'"),
    (('name = "hill"', 'name = "hil"'), "parameters: parameter name 'hil' addresses nothing"),
    (("low = 0.5", "low = 6.0"), "parameters\\[1\\].*low \\(6\\) must be below high"),
    (('design = "first_in_patient.toml"', 'design = "nowhere.toml"'), "targets\\[1\\].*nowhere.toml.*not found"),
    (('arms = ["placebo"]', 'arms = ["plcebo"]'), "holdout\\[1\\].arms names 'plcebo'.*Did you mean 'placebo'"),
    (('"iiv.ec50" = 0.2', '"iiv.ec5" = 0.2'), "start: parameter name 'iiv.ec5'"),
    (("ec50 = 28.1", "ec500 = 28.1"), "starts\\[0\\] names 'ec500'.*Calibrated"),
])
def test_a_bad_problem_file_names_the_field(tmp_path, edit, message):
    """Each fault of a problem file names its table and key, and the file."""
    from pkpd.calibrate import load_problem
    text = (SCENARIOS / "itp_calibration.toml").read_text()
    assert edit[0] in text
    for name in ("itp_phase3.toml", "first_in_patient.toml"):
        (tmp_path / name).write_text((SCENARIOS / name).read_text())
    bad = tmp_path / "problem.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(pkpd.PKPDInputError, match=message) as err:
        load_problem(bad)
    assert "problem.toml" in str(err.value)


def test_more_starts_keep_the_lowest_optimum(truth_targets):
    """starts: a second fit from another point; the result is the lower of the
    two optima (here the second start sits at the truth, the first far off
    with a cap that stops it early), and history logs both fits."""
    known = apply(MODEL, {k: v for k, v in TRUTH.items() if k != "ec50"})
    params = [Parameter("ec50", 2.0, 200.0, start=150.0)]
    one = calibrate(truth_targets, params, model=known, replicates=3, seed=3, intervals=False, max_evaluations=2,
                    progress=False)
    two = calibrate(truth_targets, params, model=known, replicates=3, seed=3, intervals=False, max_evaluations=2,
                    starts=[{"ec50": 12.0}], progress=False)
    assert two.objective < one.objective
    assert abs(np.log(two.parameters.loc["ec50", "estimate"] / 12.0)) < 0.3
    assert set(two.history["stage"]) >= {"fit", "fit (start 2)"}
    with pytest.raises(pkpd.PKPDInputError, match="start 2.*outside its bounds"):
        calibrate(truth_targets, params, model=known, replicates=1, seed=3, intervals=False, starts=[{"ec50": 500.0}],
                  progress=False)
