"""Individual dose forecasting (pkpd.forecast): estimation, prediction, recommendation, inputs, CLI.

References are independent of the estimator: patients simulated by pkpd.Trial (known truth),
scipy optimisers with random restarts, finite differences of the simulation solver, and the
coverage of predictive intervals on held-out counts.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import optimize

import pkpd
from pkpd import PKPDInputError
from pkpd.cli import main
from pkpd.drugs import hetrombopag
from pkpd.forecast import ForecastWarning, ModelGuidedRule, PatientHistory, fit_individual, forecast
from pkpd.forecast.likelihood import PatientDensity, Prior
from pkpd.forecast.posterior import fit_status
from pkpd.forecast.prediction import choose, choose_many, next_visit
from pkpd.forecast.validation import leave_future_out, summarise, trial_histories

MODEL = hetrombopag.model("itp")
DAILY = np.arange(0, 56 * 24, 24.0)
WEEKS = np.arange(0, 57, 7) * 24.0


@pytest.fixture(scope="module")
def trial():
    """40 ITP patients on the label-style titration from 2.5 mg for 8 weeks (known parameters)."""
    t = pkpd.Trial(arms=(pkpd.Arm("2.5 mg", 40, 2.5, rule=pkpd.TitrationRule()),), duration_days=56, model=MODEL)
    result = t.run(seed=11, progress=False)
    return result.parameters.set_index("ID"), trial_histories(result)


def _patient(counts, dose=5.0, times=WEEKS):
    return PatientHistory.from_arrays(DAILY, np.full(DAILY.size, dose), times, counts)


# ------------------------------------------------------------------ estimation
def test_map_recovers_simulated_parameters_better_than_the_population_prior(trial):
    params, histories = trial
    rng = np.random.default_rng(0)
    err_map, err_prior = [], []
    for pid, row in params[params["responder"]].iterrows():
        density = PatientDensity(MODEL, histories[pid], True)
        fit = fit_status(density, 1.0, rng, 3)
        truth = np.log([row[n] / MODEL.typical[n] for n in density.prior.names])
        err_map.append((fit.z - truth) ** 2)
        err_prior.append((density.prior.mean - truth) ** 2)
    err_map, err_prior = np.array(err_map), np.array(err_prior)
    names = density.prior.names
    assert len(err_map) >= 25
    assert err_map.sum(1).mean() < 0.6 * err_prior.sum(1).mean()
    for name in ("plt0", "ec50", "cl"):  # the parameters the counts inform
        i = names.index(name)
        assert err_map[:, i].mean() < 0.9 * err_prior[:, i].mean(), name


def test_map_matches_scipy_with_random_restarts(trial):
    params, histories = trial
    rng = np.random.default_rng(5)
    for pid in list(histories)[:3]:
        for responder in (True, False):
            density = PatientDensity(MODEL, histories[pid], responder)
            ours = fit_status(density, 0.5, np.random.default_rng(pid), 3)
            value = lambda z: density(z)[0]  # noqa: E731
            bounds = list(zip(density.lower, density.upper))
            starts = rng.multivariate_normal(density.prior.mean, density.prior.cov, size=6)
            ref = min((optimize.minimize(value, np.clip(x0, density.lower, density.upper), method="Powell",
                                         bounds=bounds, options={"xtol": 1e-8, "ftol": 1e-12, "maxfev": 20000})
                       for x0 in starts), key=lambda r: r.fun)
            assert ours.objective <= ref.fun + 1e-3 * abs(ref.fun)
            assert abs(ours.objective - ref.fun) <= 1e-3 * abs(ref.fun)


def test_exact_gradient_matches_finite_differences_of_the_simulator():
    rng = np.random.default_rng(2)
    conc_t = np.array([2.0, 26.0, 8 * 24.0 + 4.0])
    history = PatientHistory.from_arrays(DAILY, np.full(DAILY.size, 5.0), WEEKS, [14, 30, 60, 90, 80, 100, 120, 90, 110],
                                         conc_t, [4.0, 9.0, 20.0])
    adjoint = PatientDensity(MODEL, history, True, method="adjoint")
    simulator = PatientDensity(MODEL, history, True, method="simulator")

    def sim_values(Z):  # -log posterior through the simulation solver, all rows in one run
        return simulator.nll_batch(Z) + np.array([simulator.prior.nlp(z)[0] for z in Z])

    for _ in range(2):
        z = rng.multivariate_normal(adjoint.prior.mean, adjoint.prior.cov * 0.3)
        value, grad = adjoint(z)
        step = 1e-4
        E = step * np.eye(z.size)
        v = sim_values(np.vstack([z, z + E, z - E]))
        assert value == pytest.approx(v[0], rel=1e-7)
        fd = (v[1:1 + z.size] - v[1 + z.size:]) / (2 * step)
        np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-5 * np.abs(fd).max())


@pytest.mark.filterwarnings("ignore::pkpd.forecast.ForecastWarning")
def test_models_the_kernels_do_not_cover_use_the_simulator_and_agree_where_both_apply():
    history = PatientHistory.from_arrays(DAILY[:21], np.full(21, 5.0), WEEKS[:4], [12, 25, 60, 80])
    adjoint = fit_individual(history, MODEL, seed=1, n_draws=300, n_starts=1)
    simulator = fit_individual(history, MODEL, seed=1, n_draws=300, n_starts=1, method="simulator")
    assert (adjoint.density.method, simulator.density.method) == ("adjoint", "simulator")
    for a, b in zip(adjoint.fits, simulator.fits):
        assert a.objective == pytest.approx(b.objective, rel=1e-6)
        np.testing.assert_allclose(a.z, b.z, atol=2e-3)
    assert simulator.p_responder == pytest.approx(adjoint.p_responder, abs=0.02)
    steep = fit_individual(history, MODEL.with_typical(hill=2.0), seed=1, n_draws=300, n_starts=1, retries=0)
    assert steep.density.method == "simulator" and all(f.success for f in steep.fits)
    assert np.isfinite(steep.pareto_k) and steep.summary().loc["plt0", "p5"] > 0


@pytest.mark.filterwarnings("ignore:importance sampling. effective sample size")
def test_importance_weights_and_pareto_k():
    history = _patient([14, 30, 60, 90, 80, 100, 120, 90, 110])
    post = fit_individual(history, MODEL, seed=1, n_draws=2000)
    w = post.weights
    assert np.isfinite(post.log_weights[w > 0]).all() and w.sum() == pytest.approx(1.0)
    assert 0 < post.pareto_k <= 0.7 and post.ess > 200 and w.std() > 0
    table = post.diagnostics()
    assert {"pareto_k", "ess", "converged", "log_evidence"} <= set(table.columns)
    # a proposal far too narrow must be flagged
    with pytest.warns(ForecastWarning, match="Pareto k"):
        bad = fit_individual(history, MODEL, seed=1, n_draws=500, proposal_scale=0.01, retries=0)
    assert bad.pareto_k > 0.7


def test_responder_status_follows_the_counts():
    flat = _patient([14, 12, 15, 13, 11, 14, 12, 16, 13], dose=7.5)
    rising = _patient([12, 40, 90, 130, 150, 140, 160, 150, 155], dose=5.0)
    assert fit_individual(flat, MODEL, seed=1).p_responder < 0.3
    assert fit_individual(rising, MODEL, seed=1).p_responder > 0.95


# ------------------------------------------------------------------ prediction
def test_predictive_intervals_cover_held_out_counts(trial):
    params, histories = trial
    rng = np.random.default_rng(3)
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        for i, (pid, h) in enumerate(list(histories.items())[:30]):
            target = 24.0 * 7 * rng.integers(2, 9)
            rows.append(leave_future_out(h, MODEL, target, seed=i, n_draws=400, n_predict=200, n_population=100))
    s = summarise(pd.DataFrame(rows))
    assert 0.73 <= s["coverage_90"] <= 1.0  # 90 % intervals; binomial SD with 30 patients is ~0.055
    assert s["rmse_log_forecast"] < 0.85 * s["rmse_log_population"]


def test_a_single_count_gives_a_much_wider_forecast_than_a_rich_history():
    rich = _patient([14, 30, 60, 90, 80, 100, 120, 90, 110])
    single = PatientHistory.from_arrays(DAILY, np.full(DAILY.size, 5.0), [7 * 24.0], [30.0])
    widths = []
    for h in (rich, single):
        fc = forecast(h, MODEL, seed=4, start_h=56 * 24.0, n_predict=1000)
        true = fc.predicted(5.0, measured=False)
        measured = fc.predicted(5.0)
        widths.append((np.log(np.quantile(true, 0.95) / np.quantile(true, 0.05)),
                       np.log(np.quantile(measured, 0.95) / np.quantile(measured, 0.05))))
    (true_rich, meas_rich), (true_single, meas_single) = widths
    assert true_single > 3 * true_rich
    assert meas_single > 1.3 * meas_rich
    assert meas_rich > 2 * 1.6 * 0.45 * 0.95  # never narrower than the visit-to-visit noise alone


def test_fluctuation_widens_the_forecast():
    history = _patient([14, 30, 60, 90, 80, 100, 120, 90, 110])
    fluctuating = MODEL.with_(fluctuation=pkpd.Fluctuation(sd_log=0.39, time_h=248.0))
    plain = forecast(history, MODEL, seed=2)
    fl = forecast(history, fluctuating, seed=2)
    assert fl.posterior.paths is not None and plain.posterior.paths is None
    assert fl.interval_width() > 1.1 * plain.interval_width()


# ------------------------------------------------------------------ recommendation
def test_recommendation_respects_the_safety_constraint():
    mid = _patient([12, 30, 50, 70, 80, 75, 90, 85, 95], dose=2.5)
    free = forecast(mid, MODEL, seed=1, visit_days=(14,), max_p_above=1.0).table.set_index("dose_mg")
    best = free["p_in_range"].idxmax()
    assert free.loc[best, "p_above"] > 0  # the constraint below binds on this dose
    limit = free.loc[best, "p_above"] - 1e-9
    fc = forecast(mid, MODEL, seed=1, visit_days=(14,), max_p_above=limit)
    t = fc.table.set_index("dose_mg")
    pd.testing.assert_frame_equal(t, free)  # same seed, same predictions
    assert fc.dose_mg != best and t.loc[fc.dose_mg, "p_above"] <= limit
    allowed = t[t["p_above"] <= limit]
    assert t.loc[fc.dose_mg, "p_in_range"] == allowed["p_in_range"].max()
    assert f"{fc.dose_mg:g} mg: highest P(50-250)" in fc.reason and "recommend" in repr(fc)
    # over target on 7.5 mg: no dose keeps P(>400) <= 5 % a week later; the safest one is chosen
    high = forecast(_patient([20, 90, 200, 300, 340, 330, 360, 350, 370], dose=7.5), MODEL, seed=1)
    t = high.table.set_index("dose_mg")
    assert (t["p_above"] > 0.05).all() and high.dose_mg == t["p_above"].idxmin() and "no dose" in high.reason


def test_choose_excludes_unsafe_doses_and_falls_back_to_the_safest():
    table = pd.DataFrame({"dose_mg": [0.0, 2.5, 5.0], "visit_day": 7.0, "p_in_range": [0.2, 0.6, 0.8],
                          "p_above": [0.0, 0.04, 0.10]})
    assert choose(table, (0, 2.5, 5), (50, 250), 400, 0.05)[0] == 2.5
    assert choose(table, (0, 2.5, 5), (50, 250), 400, 0.2)[0] == 5.0
    dose, reason = choose(table.assign(p_above=[0.3, 0.2, 0.4]), (0, 2.5, 5), (50, 250), 400, 0.05)
    assert dose == 2.5 and "no dose" in reason
    # near ties: nearest the range wins, the current dose if it is as near
    ties = table.assign(p_in_range=[0.0, 0.004, 0.0], p_above=0.0, distance=[2.0, 1.5, 1.0])
    assert choose(ties, (0, 2.5, 5), (50, 250), 400, 0.05)[0] == 5.0
    assert choose(ties.assign(distance=[2.0, 1.01, 1.0]), (0, 2.5, 5), (50, 250), 400, 0.05, current_mg=2.5)[0] == 2.5


def test_hold_margin_keeps_a_safe_current_dose_and_choose_many_agrees():
    table = pd.DataFrame({"dose_mg": [0.0, 2.5, 5.0, 7.5], "visit_day": 7.0, "p_in_range": [0.2, 0.6, 0.66, 0.7],
                          "p_above": [0.0, 0.0, 0.01, 0.08], "distance": [1.0, 0.3, 0.2, 0.1]})
    ladder, target = (2.5, 5.0, 7.5), (50, 250)
    assert choose(table, ladder, target, 400, 0.05, current_mg=2.5)[0] == 5.0  # no margin: the best safe dose
    dose, reason = choose(table, ladder, target, 400, 0.05, current_mg=2.5, hold_margin=0.1)
    assert dose == 2.5 and "held" in reason
    assert choose(table, ladder, target, 400, 0.05, current_mg=2.5, hold_margin=0.05)[0] == 5.0  # 0.6 < 0.66 - 0.05
    assert choose(table, ladder, target, 400, 0.05, current_mg=7.5, hold_margin=0.5)[0] == 5.0  # unsafe: not held
    # the vectorised rule on draws whose frequencies are the table's probabilities
    rng = np.random.default_rng(0)
    K = 100
    obs = np.empty((4, 1, K, 1))
    for c, (p_in, p_up) in enumerate(zip(table["p_in_range"], table["p_above"])):
        n_in, n_up = int(round(p_in * K)), int(round(p_up * K))
        obs[c, 0, :, 0] = rng.permutation(np.r_[np.full(n_in, 100.0), np.full(n_up, 500.0), np.full(K - n_in - n_up, 20.0)])
    doses = np.array([0.0, 2.5, 5.0, 7.5])
    for current, margin in ((2.5, 0.0), (2.5, 0.1), (2.5, 0.05), (7.5, 0.5)):
        expected = choose(table, ladder, target, 400, 0.05, current_mg=current, hold_margin=margin)[0]
        got = choose_many(obs, doses, target, 400.0, 0.05, np.array([current]), margin)[0]
        assert got == expected, (current, margin)


def test_next_visit_is_the_latest_day_the_dose_stays_safe_through():
    table = pd.DataFrame({"dose_mg": 5.0, "visit_day": [7.0, 14.0, 21.0, 28.0],
                          "p_above": [0.0, 0.01, 0.02, 0.20], "p_below": [0.01, 0.02, 0.03, 0.04]})
    day, why = next_visit(table, 5.0, 400, 0.05, 30, 0.05)
    assert day == 21.0 and "day 28 breaks it" in why  # P(>400) 0.20 on day 28
    assert next_visit(table, 5.0, 400, 0.5, 30, 0.05)[0] == 28.0  # looser limit: the latest day
    assert next_visit(table.assign(p_below=[0.01, 0.09, 0.0, 0.0]), 5.0, 400, 0.5, 30, 0.05)[0] == 7.0  # not skipped over
    day, why = next_visit(table.assign(p_below=0.3), 5.0, 400, 0.05, 30, 0.05)
    assert day == 7.0 and "fails already" in why


def test_forecast_chooses_the_next_visit_from_its_own_table():
    """A patient in range on a steady dose is seen later than one heading above 400."""
    days = (7, 14, 28)
    steady = forecast(_patient([14, 30, 60, 90, 80, 100, 120, 90, 110]), MODEL, seed=1, visit_days=days,
                      choose_visit=True)
    assert steady.visit_day in days and "next visit on day" in steady.reason
    assert steady.visit_day == next_visit(steady.table, steady.dose_mg, 400, 0.05, 30, 0.05)[0]
    strict = forecast(_patient([14, 30, 60, 90, 80, 100, 120, 90, 110]), MODEL, seed=1, visit_days=days,
                      choose_visit=True, max_p_below=0.0)
    assert strict.visit_day <= steady.visit_day
    assert forecast(_patient([14, 30, 60, 90], times=WEEKS[:4]), MODEL, seed=1, visit_days=days).visit_day is None


def test_plot_writes_a_png(tmp_path):
    fc = forecast(_patient([14, 30, 60, 90, 80, 100, 120, 90, 110]), MODEL, seed=1, visit_days=(7, 14),
                  n_draws=500, n_predict=300)
    path = tmp_path / "forecast.png"
    fc.plot(path)
    assert path.stat().st_size > 10_000
    assert sorted(fc.table["visit_day"].unique()) == [7.0, 14.0]


def test_model_guided_rule_titrates_a_trial_arm_by_forecast():
    rule = ModelGuidedRule(n_draws=300, n_predict=200, seed=4, posterior="importance")
    short = pkpd.Endpoints(primary_day=21, increased_within_days=21, once_within_days=21)
    trial = pkpd.Trial(arms=(pkpd.Arm("guided", 3, 2.5, rule=rule),), duration_days=21, model=MODEL, endpoints=short)
    led = trial.run(seed=2, progress=False).ledger
    assert set(led["dose_mg"]) <= {0.0, *rule.ladder_mg}
    for pid, rows in led.groupby("ID"):
        rows = rows.set_index("day")
        for day in (7.0, 14.0):  # rebuild what the rule saw from the ledger and decide again
            dose_days = np.arange(0, day)
            taken = np.where(dose_days < 7, 2.5, rows.loc[7.0, "dose_mg"])
            seen = [d for d in (7.0, 14.0) if d <= day]
            h = PatientHistory.from_arrays(dose_days * 24.0, taken, np.array(seen) * 24.0, rows.loc[seen, "observed"])
            assert rule.forecast_for(h, day).dose_mg == rows.loc[day, "dose_mg"], (pid, day)


# ------------------------------------------------------------------ inputs
GOOD = dict(dose_times_h=[0, 24, 48], dose_mg=[5, 5, 5], count_times_h=[0, 72], counts=[12, 20])


@pytest.mark.parametrize("change, field, value", [
    (dict(counts=[], count_times_h=[]), "counts", "empty"),
    (dict(count_times_h=[0, 0], counts=[12, 13]), "count_times_h", "first dose"),
    (dict(dose_times_h=None), "dose_times_h", "None"),
    (dict(dose_mg=[5, -2.5, 5]), "dose_mg", "-2.5"),
    (dict(counts=[12, float("nan")]), "counts", "nan"),
    (dict(count_times_h=[-24, 72]), "count_times_h", "-24"),
    (dict(counts=[12, -3]), "counts", "-3"),
    (dict(counts=[12, 20, 30]), "count_times_h", "3"),
    (dict(conc_times_h=[10], conc_ng_ml=[-1.0]), "conc_ng_ml", "-1"),
])
def test_bad_history_names_the_field_and_the_value(change, field, value):
    with pytest.raises(PKPDInputError, match=field) as err:
        PatientHistory.from_arrays(**{**GOOD, **change})
    assert value in str(err.value)


@pytest.mark.parametrize("options, field", [
    (dict(target=(250, 50)), "target"), (dict(visit_days=(0,)), "visit_days"), (dict(start_h=24.0), "start_h"),
    (dict(max_p_above=2.0), "max_p_above"), (dict(ladder_mg=(-1, 5)), "ladder_mg"), (dict(model="itp"), "model"),
    (dict(max_p_below=-0.1), "max_p_below"),
])
def test_bad_forecast_options_are_refused(options, field):
    with pytest.raises(PKPDInputError, match=field):
        forecast(PatientHistory.from_arrays(**GOOD), **options)


def test_nonmem_subject_with_dvid_and_concentration_units():
    df = pd.DataFrame({"ID": 1, "TIME": [0.0, 0.0, 24.0, 30.0, 48.0, 168.0],
                       "AMT": [5, 0, 5, 0, 5, 0], "EVID": [1, 0, 1, 0, 1, 0], "DVID": [0, 2, 0, 1, 0, 2],
                       "DV": [0, 12, 0, 0.011, 0, 25]})
    data = pkpd.read_nonmem(df, dv_unit={1: "mg/L", 2: "10^9/L"})
    h = PatientHistory.from_dataset(data)
    np.testing.assert_allclose(h.counts, [12, 25])
    np.testing.assert_allclose(h.conc_ng_ml, [11.0])  # 0.011 mg/L
    ss = pd.DataFrame({"ID": 1, "TIME": [0.0, 168.0], "AMT": [5, 0], "EVID": [1, 0], "SS": [1, 0], "II": [24, 0],
                       "CMT": [1, 3], "DV": [0, 25]})
    with pytest.raises(PKPDInputError, match="steady-state"):
        PatientHistory.from_dataset(pkpd.read_nonmem(ss))


def test_prior_uses_the_screened_baseline_law():
    h = PatientHistory.from_arrays(**GOOD)
    prior = Prior(MODEL, h)
    b = MODEL.baseline
    i = prior.names.index("plt0")
    assert prior.mean[i] == pytest.approx(np.log(b.median / MODEL.typical["plt0"]))
    assert prior.cov[i, i] == pytest.approx(b.sd_log**2 - b.noise**2)
    assert prior.selection is b and Prior(MODEL, h, enrolled=False).selection is None


# ------------------------------------------------------------------ CLI
def _csv(path, counts=(12, 18, 35, 44, 40), times=(0, 7, 14, 21, 28)):
    rows = [dict(ID=7, TIME=t, AMT=2.5, EVID=1, MDV=1, CMT=1, DV=".") for t in np.arange(0, 28 * 24, 24.0)]
    rows += [dict(ID=7, TIME=d * 24.0, AMT=".", EVID=0, MDV=0, CMT=3, DV=c) for d, c in zip(times, counts)]
    pd.DataFrame(rows).sort_values(["TIME", "EVID"], kind="stable").to_csv(path, index=False)
    return str(path)


def test_cli_round_trip(tmp_path, capsys):
    path = _csv(tmp_path / "patient.csv")
    png = tmp_path / "fc.png"
    assert main(["forecast", path, "--seed", "3", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "recommend" in out and "2.5 mg (current)" in out and "0 mg (interrupt)" in out and "Pareto k" in out
    assert png.exists()
    expected = forecast(PatientHistory.read(path), MODEL, seed=3)
    assert f"recommend {expected.dose_mg:g} mg" in out  # same seed, same forecast
    assert main(["forecast", path, "--seed", "3", "--visit-days", "7,14", "--choose-visit"]) == 0
    assert "next visit on day" in capsys.readouterr().out


def test_cli_errors_are_one_line_with_exit_2(tmp_path, capsys):
    assert main(["forecast", str(tmp_path / "missing.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pkpd: error:") and "\n" not in err
    early = _csv(tmp_path / "early.csv", counts=(12,), times=(0,))
    assert main(["forecast", early]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("pkpd: error:") and "count_times_h" in err and "\n" not in err
    assert main(["forecast", early, "--visit-days", "x"]) == 2
    assert "--visit-days" in capsys.readouterr().err
