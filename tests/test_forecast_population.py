"""Forecasting with population uncertainty (pkpd.forecast, ``population=``).

References are independent of the estimator: the fixed-population forecast (the same patient,
the model's typical values), brute-force importance sampling from the prior (patients drawn by
``PKPDModel.sample_parameters`` from each population draw, weighted by the likelihood of the
observed counts, simulated on by the solver; no MAP, Laplace or mixture proposal), and the
coverage of predictive intervals on patients simulated by pkpd.Trial from the population draws.
"""

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import pkpd
from pkpd import PKPDInputError
from pkpd.drugs import hetrombopag
from pkpd.forecast import (ForecastWarning, PatientHistory, fit_draws, fit_individual, forecast,
                           population_draws)
from pkpd.forecast.prediction import predict
from pkpd.forecast.validation import trial_histories

MODEL = hetrombopag.model("itp")
DAILY = np.arange(0, 56 * 24, 24.0)
WEEKS = np.arange(0, 57, 7) * 24.0
RICH = PatientHistory.from_arrays(DAILY, np.full(DAILY.size, 5.0), WEEKS, [14, 30, 60, 90, 80, 100, 120, 90, 110])
#: the drug's parameters the population draws vary (the disease's stay the ITP model's)
VARIED = ("cl", "emax", "ec50")


def _wide(n=10, sd=0.5, seed=0):
    """Population draws of the typical values of VARIED, log-normal with log SD ``sd`` around the model's."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({p: MODEL.typical[p] * np.exp(sd * rng.standard_normal(n)) for p in VARIED})


def _equal(n):
    return pd.DataFrame({p: np.full(n, MODEL.typical[p]) for p in VARIED})


def _weighted_quantiles(x, w, q):
    o = np.argsort(x)
    cw = np.cumsum(w[o]) / w.sum()
    return np.array([x[o][min(np.searchsorted(cw, a), x.size - 1)] for a in q])


def _brute_force(history, models, dose_mg, until_h, n, seed):
    """Prior importance sampling over (population draw, patient): ``n`` patients per model from
    ``sample_parameters``, weights = likelihood of the history's counts (the model's log-normal
    visit error); returns the true counts at ``until_h`` on ``dose_mg`` daily after the history,
    their weights and each patient's model index."""
    rng = np.random.default_rng(seed)
    future = np.arange(history.dose_times_h.max() + 24.0, until_h, 24.0)
    dose_t = np.concatenate([history.dose_times_h, future])
    dose_a = np.concatenate([history.dose_mg, np.full(future.size, dose_mg)])
    times = np.append(history.count_times_h, until_h)
    logw, value, which = [], [], []
    for k, m in enumerate(models):
        params = m.sample_parameters(n, seed=rng)
        _, plt, _ = m.solver(params).run(dose_t, dose_a, times)
        s = m.residual_plt.prop
        r = (np.log(history.counts) - np.log(plt[:, :-1])) / s
        logw.append(-0.5 * (r**2).sum(axis=1))
        value.append(plt[:, -1])
        which.append(np.full(n, k))
    logw = np.concatenate(logw)
    return np.concatenate(value), np.exp(logw - logw.max()), np.concatenate(which)


# ------------------------------------------------------------------ (a) equal draws = fixed population
def test_one_draw_at_the_typical_values_is_exactly_the_fixed_forecast():
    typical = pd.DataFrame({p: [MODEL.typical[p]] for p in VARIED})
    fixed = forecast(RICH, MODEL, seed=3, n_draws=500, n_predict=300)
    one = forecast(RICH, MODEL, seed=3, n_draws=500, n_predict=300, population=typical)
    pd.testing.assert_frame_equal(one.table, fixed.table)
    assert one.dose_mg == fixed.dose_mg and one.posterior.population.size == 1
    assert fixed.posterior.population is None and "population uncertainty" not in repr(fixed)
    assert "population uncertainty included" in repr(one) and "population uncertainty included" in repr(one.posterior)


def test_equal_draws_give_the_fixed_posterior_and_forecast():
    M = 8
    fixed = fit_individual(RICH, MODEL, seed=1, n_draws=2000)
    same = fit_individual(RICH, MODEL, seed=1, n_draws=2000, population=_equal(M), n_population_draws=None)
    assert len(same.fits) == M * len(fixed.fits)
    for f in same.fits:  # deterministic: every draw's MAP and Laplace evidence are the fixed ones (+ log 1/M)
        ref = next(g for g in fixed.fits if g.responder == f.responder)
        np.testing.assert_allclose(f.z, ref.z, atol=2e-4)
        assert f.objective == pytest.approx(ref.objective, rel=1e-7)
        assert f.log_evidence == pytest.approx(ref.log_evidence - np.log(M), abs=1e-3)
    weights = same.population_weights()
    assert len(weights) == M and weights["prior"].eq(1 / M).all()
    assert same.population_ess > 0.9 * M  # every draw explains the data equally well
    assert same.p_responder == pytest.approx(fixed.p_responder, abs=0.02)
    for name in ("ec50", "emax", "plt0"):
        np.testing.assert_allclose(same.summary().loc[name, ["p5", "median", "p95"]].to_numpy(float),
                                   fixed.summary().loc[name, ["p5", "median", "p95"]].to_numpy(float), rtol=0.08)
    a = forecast(RICH, MODEL, seed=2, n_predict=2000)
    b = forecast(RICH, MODEL, seed=2, n_predict=2000, population=_equal(M))
    x, y = np.log(a.predicted(5.0, measured=False)), np.log(b.predicted(5.0, measured=False))
    np.testing.assert_allclose(np.quantile(y, [0.05, 0.5, 0.95]), np.quantile(x, [0.05, 0.5, 0.95]), atol=0.05)
    diag = b.posterior.diagnostics()
    assert {"population_draw", "population_draws", "population_ess", "pareto_k"} <= set(diag.columns)
    assert (diag["population_draws"] == M).all() and b.settings["population_draws"] == M


# ------------------------------------------------------------------ (b) wide draws widen an uninformed forecast
def test_wide_population_draws_widen_the_forecast_of_an_uninformative_patient_as_brute_force_does():
    # all responders: with 15 % non-responders the 5 % quantile is theirs, whatever the population draws
    model = MODEL.with_(nonresponder_fraction=0.0)
    one = PatientHistory.from_arrays(DAILY[:7], np.full(7, 2.5), [0.0, 7 * 24.0], [15.0, 22.0])
    draws = _wide(10, sd=0.6, seed=4)
    start = 7 * 24.0
    kw = dict(seed=5, start_h=start, visit_days=(14,), n_predict=3000, n_draws=3000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        fixed = forecast(one, model, **kw)
        wide = forecast(one, model, population=draws, n_population_draws=None, **kw)
    q = [0.05, 0.5, 0.95]
    ours = {name: np.quantile(np.log(fc.predicted(2.5, measured=False)), q) for name, fc in
            (("fixed", fixed), ("wide", wide))}
    assert ours["wide"][2] - ours["wide"][0] > 1.12 * (ours["fixed"][2] - ours["fixed"][0])
    measured = {name: np.quantile(np.log(fc.predicted(2.5)), [0.05, 0.95]) for name, fc in
                (("fixed", fixed), ("wide", wide))}
    assert np.diff(measured["wide"])[0] > 1.05 * np.diff(measured["fixed"])[0]  # the measured count's interval too
    # the independent reference: prior importance sampling over (population draw, patient)
    until = start + 14 * 24.0
    for models, name in (((model,), "fixed"), (population_draws(draws, model, None).models, "wide")):
        value, w, _ = _brute_force(one, models, 2.5, until, 40000 // len(models), seed=6)
        assert 1 / np.sum((w / w.sum()) ** 2) > 5000
        ref = np.log(_weighted_quantiles(value, w, q))
        np.testing.assert_allclose(ours[name], ref, atol=0.1, err_msg=name)  # MC error of a 95 % quantile
        assert ours[name][2] - ours[name][0] == pytest.approx(ref[2] - ref[0], abs=0.08), name
    assert wide.posterior.population_ess > 7  # one count says little about the population draw


def test_population_draws_are_weighted_by_their_marginal_likelihood():
    # draw 1 barely responds (Emax 1.5-fold, EC50 10x): rising counts speak against it
    draws = pd.DataFrame({"emax": [10.0, 1.5, 10.0], "ec50": [20.0, 200.0, 60.0]})
    h = PatientHistory.from_arrays(DAILY[:21], np.full(21, 5.0), [0.0, 7 * 24.0, 14 * 24.0, 21 * 24.0],
                                   [14.0, 30.0, 70.0, 120.0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        post = fit_individual(h, MODEL, seed=2, n_draws=4000, population=draws, n_population_draws=None)
    ours = post.population_weights()["posterior"].to_numpy()
    _, w, which = _brute_force(h, population_draws(draws, MODEL, None).models, 5.0, 22 * 24.0, 30000, seed=3)
    ref = np.bincount(which, weights=w) / w.sum()
    np.testing.assert_allclose(ours, ref, atol=0.06)
    assert ours[0] > ours[2] > ours[1] and ref[0] > ref[2] > ref[1]
    assert 1 < post.population_ess < 3


def test_a_too_narrow_pooled_proposal_is_flagged_by_pareto_k():
    with pytest.warns(ForecastWarning, match="Pareto k"):
        bad = fit_individual(RICH, MODEL, seed=1, n_draws=500, proposal_scale=0.01, retries=0, population=_wide(3),
                             n_population_draws=None)
    assert bad.pareto_k > 0.7 and "UNRELIABLE" in repr(bad)


# ------------------------------------------------------------------ (c) calibration
def test_intervals_are_calibrated_on_patients_drawn_from_the_population_draws():
    draws = _wide(10, sd=0.5, seed=7)
    n = 30
    picked = draws.sample(n=n, replace=True, random_state=8).reset_index(drop=True)  # each patient's population
    short = pkpd.Endpoints(primary_day=21, increased_within_days=21, once_within_days=21)
    trial = pkpd.Trial(arms=(pkpd.Arm("2.5 mg", 1, 2.5, rule=pkpd.TitrationRule()),), duration_days=21, model=MODEL,
                       endpoints=short)
    result = trial.run(seed=9, replicates=n, typical_draws=picked, progress=False)
    histories = trial_histories(result)
    covered, log_err = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        for i, h in enumerate(histories.values()):
            target = 24.0 * 7 * (2 + i % 2)  # week 2 or 3, from the counts before it
            start = float(h.count_times_h[h.count_times_h < target - 1e-9].max())
            given = h.dose_mg[(h.dose_times_h >= start) & (h.dose_times_h < target)]
            observed = float(h.counts[np.isclose(h.count_times_h, target)][0])
            post = fit_individual(h.until(start), MODEL, seed=i, n_draws=200, population=draws,
                                  n_population_draws=None, horizon_h=target)
            pred = predict(post, np.array([given[0] if given.size else 0.0]), start, np.array([target]),
                           n_predict=200, rng=np.random.default_rng(i))["observed"][0, :, 0]
            p5, p50, p95 = np.quantile(pred, [0.05, 0.5, 0.95])
            covered.append(p5 <= observed <= p95)
            log_err.append(np.log(p50 / observed))
    coverage = np.mean(covered)
    assert 0.78 <= coverage <= 0.99, coverage  # 90 % intervals; binomial SD with 30 patients ~0.055
    assert abs(np.mean(log_err)) < 0.4  # no systematic bias of the median (SE of the mean ~0.13)


# ------------------------------------------------------------------ the result of pkpd.fit
def _idata(extra=None, chains=2, draws=30, seed=0):
    rng = np.random.default_rng(seed)
    post = {"cl": 7.66 * np.exp(0.1 * rng.standard_normal((chains, draws))),
            "emax": 10 * np.exp(0.2 * rng.standard_normal((chains, draws))),
            "omega_cl": np.full((chains, draws), 0.3), "sigma_prop_plt": np.full((chains, draws), 0.3),
            "eta_cl": rng.standard_normal((chains, draws, 5)), **(extra or {})}
    return az.from_dict(posterior=post)


def test_a_fit_result_maps_typical_values_iiv_and_residual_sds():
    idata = _idata()
    table = fit_draws(idata)
    assert set(table.columns) == {"cl", "emax", "omega_cl", "sigma_prop_plt"} and len(table) == 60
    pop = population_draws(idata, MODEL, 5, np.random.default_rng(1))
    assert pop.size == 5 and pop.total == 60 and "pkpd.fit" in pop.source
    for m, r in zip(pop.models, pop.rows):
        assert m.typical["cl"] == table["cl"][r] and m.typical["emax"] == table["emax"][r]
        assert np.log1p(m.iiv["cl"] ** 2) == pytest.approx(0.3**2)  # omega^2 = ln(1 + CV^2)
        assert m.residual_plt.prop == 0.3 and m.residual_plt.lognormal and m.iiv["ec50"] == MODEL.iiv["ec50"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        fc = forecast(RICH, MODEL, seed=1, n_draws=300, n_predict=200, population=idata, n_population_draws=4)
    assert fc.posterior.population.size == 4 and np.isfinite(fc.table["p5"]).all()
    # the same seed picks the same draws
    again = population_draws(idata, MODEL, 5, np.random.default_rng(1))
    np.testing.assert_array_equal(again.rows, pop.rows)


@pytest.mark.parametrize("extra, match", [
    ({"theta_cl_wt": np.zeros((2, 30))}, "theta_cl_wt"),
    ({"omega_corr": np.zeros((2, 30, 3))}, "omega_corr"),
    ({"omega_plt0": np.full((2, 30), 0.2)}, "omega_plt0"),
])
def test_fit_variables_that_cannot_be_carried_are_refused(extra, match):
    with pytest.raises(PKPDInputError, match=match):
        population_draws(_idata(extra), MODEL)


# ------------------------------------------------------------------ (d) bad input
@pytest.mark.parametrize("population, field, value", [
    (pd.DataFrame({"cl": [7.0], "clearance": [1.0]}), "clearance", "not parameters"),
    (pd.DataFrame({"cl": []}), "population", "empty"),
    (pd.DataFrame(), "population", "empty"),
    (pd.DataFrame({"cl": [7.0, np.nan]}), "'cl'", "nan"),
    (pd.DataFrame({"emax": [10.0, np.inf]}), "'emax'", "inf"),
    (pd.DataFrame({"ec50": [20.0, -5.0]}), "'ec50'", "-5"),
    (pd.DataFrame({"cl": [0.0]}), "'cl'", "> 0"),
    (pd.DataFrame({"n_transit": [4.0]}), "n_transit", "whole number"),
    (pd.DataFrame({"omega_mtt": [0.2]}), "omega_mtt", "no IIV on mtt"),
    (pd.DataFrame({"cl": ["fast"]}), "'cl'", "not numbers"),
    ({"cl": [7.0]}, "population", "dict"),
])
def test_bad_population_names_the_field_and_the_value(population, field, value):
    with pytest.raises(PKPDInputError, match=field) as err:
        fit_individual(RICH, MODEL, seed=1, population=population)
    assert value in str(err.value)


def test_bad_n_population_draws_is_refused():
    with pytest.raises(PKPDInputError, match="n_population_draws"):
        population_draws(_wide(), MODEL, 0)


# ------------------------------------------------------------------ CLI
def test_cli_reads_a_population_draws_csv(tmp_path, capsys):
    rows = [dict(ID=7, TIME=t, AMT=2.5, EVID=1, MDV=1, CMT=1, DV=".") for t in np.arange(0, 28 * 24, 24.0)]
    rows += [dict(ID=7, TIME=d * 24.0, AMT=".", EVID=0, MDV=0, CMT=3, DV=c)
             for d, c in zip((0, 7, 14, 21, 28), (12, 18, 35, 44, 40))]
    patient = tmp_path / "patient.csv"
    pd.DataFrame(rows).sort_values(["TIME", "EVID"], kind="stable").to_csv(patient, index=False)
    draws = tmp_path / "draws.csv"
    draws.write_text("# posterior draws of the typical values\n" + _wide(12).to_csv(index=False))
    from pkpd.cli import main

    assert main(["forecast", str(patient), "--seed", "3", "--population-draws", str(draws)]) == 0
    out = capsys.readouterr().out
    assert "population uncertainty included: 12 of 12 draws" in out and "recommend" in out
    expected = forecast(PatientHistory.read(patient), MODEL, seed=3, population=_wide(12))
    assert f"recommend {expected.dose_mg:g} mg" in out
    assert main(["forecast", str(patient), "--population-draws", str(tmp_path / "missing.csv")]) == 2
    assert "--population-draws" in capsys.readouterr().err
