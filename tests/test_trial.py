"""Virtual trials: the dose ledger, its NONMEM export, endpoints recomputed by
hand from the ledger, platelets against an independent ODE solution, the ITP
virtual population against the phase III baseline, and the calibration against
the phase III primary endpoint (binomial intervals of the published counts).

Published numbers (Mei et al., J Hematol Oncol 2021;14:37, PMC7905908):
platelets >= 50 x10^9/L at week 8 in 99/168 (start 2.5 mg + titration),
110/171 (start 5 mg + titration) and 5/85 (placebo); baseline median 13
(range 1-29), 34-41% below 10 x10^9/L.
"""


import numpy as np
import pandas as pd
import pytest
from scipy.integrate import solve_ivp
from scipy.stats import beta

from pkpd import Arm, Endpoints, PKPDInputError, TitrationRule, Trial, read_nonmem, population
from pkpd.drugs import hetrombopag
from pkpd.trial import clopper_pearson

from notebooks import run_notebook

RULE = TitrationRule()
PHASE3_SEED = 20210237  # the seed of scenarios/itp_phase3.toml, fixed before looking at results


def small_trial(**changes):
    arms = (
        Arm("2.5 mg + titration", 25, 2.5, RULE),
        Arm("5 mg + titration", 25, 5.0, RULE.with_(stop_after_days_at_max=14)),
        Arm("fixed 5 mg", 10, 5.0),
        Arm("placebo", 10, 0.0),
    )
    return Trial(arms, **{"duration_days": 42, "endpoints": Endpoints(primary_day=28), **changes})


@pytest.fixture(scope="module")
def small():
    return small_trial(treatment_days=35).run(seed=11, progress=False)


# ---------------------------------------------------------------- independent references
def cp_published(k, n):
    """Clopper-Pearson 95% of a published count, straight from the beta quantiles."""
    return beta.ppf(0.025, k, n - k + 1) if k else 0.0, beta.ppf(0.975, k + 1, n - k) if k < n else 1.0


def ode_platelets(p, doses_by_day, report_days):
    """PK + transit-compartment platelets by scipy (DOP853, tight tolerances),
    restarted at each daily dose (mg at 24 h * day)."""
    n = int(p["n_transit"])
    ktr, kdeg, k = n / p["mtt"], 1 / p["lifespan"], p["cl"] / p["v"]
    kin = p["plt0"] * kdeg

    def rhs(t, y):
        c = y[1] / p["v"] * 1000.0
        e = p["emax"] * c / (p["ec50"] + c)
        d = np.empty_like(y)
        d[0] = -p["ka"] * y[0]
        d[1] = p["ka"] * y[0] - k * y[1]
        d[2] = kin * (1 + e) - ktr * y[2]
        d[3:n + 2] = ktr * (y[2:n + 1] - y[3:n + 2])
        d[-1] = ktr * y[n + 1] - kdeg * y[-1]
        return d

    y = np.r_[0.0, 0.0, np.full(n, kin / ktr), p["plt0"]]
    out = {}
    for day in range(int(max(report_days))):
        if day in report_days:
            out[day] = y[-1]
        y = y.copy()
        y[0] += doses_by_day.get(day, 0.0)
        y = solve_ivp(rhs, (day * 24.0, (day + 1) * 24.0), y, method="DOP853", rtol=1e-10, atol=1e-12).y[:, -1]
    out[int(max(report_days))] = y[-1]
    return np.array([out[d] for d in report_days])


def daily_doses_from_ledger(rows: pd.DataFrame, last_dose_day: float) -> dict:
    """Dose of each day (mg), carried forward from each visit's decision, by hand."""
    doses, current, visits = {}, 0.0, dict(zip(rows["day"], rows["dose_mg"]))
    for day in range(int(last_dose_day)):
        current = visits.get(float(day), current)
        if current > 0:
            doses[day] = current
    return doses


# ---------------------------------------------------------------- ledger
def test_ledger_columns_units_and_visits(small):
    led = small.ledger
    assert list(led.columns) == ["replicate", "arm", "ID", "day", "time_h", "assessment", "observed", "true",
                                 "dose_before_mg", "action", "dose_mg"]
    np.testing.assert_array_equal(led["time_h"], led["day"] * 24.0)
    assert led.groupby("ID").size().eq(7).all()  # visits on days 0, 7, ..., 42
    assert led["ID"].nunique() == 70
    first = led[led["day"] == 0]
    assert set(first.loc[first["arm"].str.contains("titration"), "action"]) == {"start"}
    assert set(first.loc[~first["arm"].str.contains("titration"), "action"]) == {"fixed"}
    placebo = led[led["arm"] == "placebo"]
    assert (placebo["dose_mg"] == 0).all()
    # dosing ends on day 35: no decision and no dose from then on
    after = led[led["day"] >= 35]
    assert set(after["action"]) == {"observe"} and (after["dose_mg"] == 0).all()
    # each row's dose_before is the previous row's dose
    prev = led.groupby("ID")["dose_mg"].shift(1).fillna(0.0)
    np.testing.assert_array_equal(led["dose_before_mg"], prev)


def test_decisions_see_observed_counts_only(small):
    """Replaying the rule on each patient's *observed* counts (never the true
    ones) reproduces every logged action and dose."""
    led = small.ledger
    for (arm_name, pid), rows in led[led["arm"].str.contains("titration")].groupby(["arm", "ID"], observed=True):
        arm = next(a for a in small.trial.arms if a.name == arm_name)
        visits = rows[(rows["day"] > 0) & (rows["action"] != "observe")]
        replay = arm.rule.follow(visits["observed"].to_numpy(), arm.start_mg, visits["day"].to_numpy())
        assert list(replay["action"]) == list(visits["action"].astype(str))
        np.testing.assert_array_equal(replay["dose_mg"], visits["dose_mg"])
    # and observed differs from true (the noise is real), so the replay is a real check
    assert (np.abs(np.log(led["observed"] / led["true"])) > 0.05).mean() > 0.5


def test_ledger_exports_to_nonmem_and_reads_back(small):
    records = small.to_nonmem()
    data = read_nonmem(records)
    led = small.ledger
    assert len(data) == led["ID"].nunique()
    for pid, rows in led.groupby("ID"):
        expected = daily_doses_from_ledger(rows, small.trial.last_dose_day)
        regimen = data.subject(pid).regimen
        np.testing.assert_array_equal(regimen.times, [24.0 * d for d in expected])
        np.testing.assert_array_equal(regimen.amounts, list(expected.values()))
        obs = data.subject(pid).observations
        np.testing.assert_allclose(obs["dv"], rows["observed"])
        assert (obs["cmt"] == 3).all()


def test_true_platelets_match_independent_ode_with_ledger_doses(small):
    """The trial's true counts at visits equal a scipy ODE solution driven by
    the ledger's doses: the decision on day d applies from day d's dose on."""
    params = small.parameters.set_index("ID")
    led = small.ledger
    on_drug = led[led["day"] < small.trial.last_dose_day]
    titrated = on_drug.groupby("ID")["dose_mg"].nunique() > 2  # at least two dose changes
    picks = [params[params["responder"] & (params["arm"] == "fixed 5 mg")].index[0]]
    for arm in ("2.5 mg + titration", "5 mg + titration"):
        picks.append(params[params["responder"] & (params["arm"] == arm) & titrated.reindex(params.index)].index[0])
    for pid in picks:
        rows = led[led["ID"] == pid]
        doses = daily_doses_from_ledger(rows, small.trial.last_dose_day)
        ref = ode_platelets(params.loc[pid], doses, list(rows["day"].astype(int)))
        np.testing.assert_allclose(rows["true"], ref, rtol=1e-6)


def test_placebo_platelets_stay_at_baseline(small):
    traj = small.trajectories
    placebo = traj["platelets"].where(traj["arm"] == "placebo", drop=True)
    x = placebo.values
    np.testing.assert_allclose(x, np.broadcast_to(x[:, :1], x.shape), rtol=1e-5)
    params = small.parameters
    np.testing.assert_allclose(x[:, 0], params.loc[params["arm"] == "placebo", "plt0"], rtol=1e-6)


def test_follow_up_after_the_last_visit_is_simulated():
    """60 days with weekly visits (last visit day 56): days 57-60 are simulated
    too.  Every fixed-dose patient's daily count equals pkpd.simulate of that
    patient (parameters as typical values) on the same once-daily regimen, to
    day 60; dosing ends after day 57 in the second trial, mid-tail."""
    from pkpd import Regimen, simulate

    for treatment_days in (None, 58):
        trial = Trial((Arm("fixed 5 mg", 4, 5.0), Arm("placebo", 2, 0.0)), duration_days=60,
                      treatment_days=treatment_days)
        assert trial.visit_days == tuple(range(0, 57, 7))  # the schedule stays weekly
        res = trial.run(seed=4, progress=False)
        traj = res.trajectories["platelets"].values
        assert traj.shape == (6, 61) and np.isfinite(traj).all()
        params = res.parameters
        for i, row in params.iterrows():
            model = trial.model.with_typical(**{p: row[p] for p in population.PARAMETERS})
            dose = 5.0 if row["arm"] == "fixed 5 mg" else 0.0
            ref = simulate(model, Regimen.daily(dose, trial.last_dose_day), np.arange(61) * 24.0)["platelets"]
            np.testing.assert_allclose(traj[i], ref, rtol=2e-6)  # float32 storage
        # plausible: between 1 and 2000 x10^9/L; peak rise of a fixed-dose arm bounded
        assert (traj > 1).all() and (traj < 2000).all()
        e = res.endpoints.set_index(["arm", "endpoint"])["estimate"]
        assert np.isfinite(res.endpoints["estimate"]).all()
        assert e[("placebo", "peak_rise_pct")] == pytest.approx(0.0, abs=1e-3)
        assert 0 <= e[("fixed 5 mg", "peak_rise_pct")] < 5000
        np.testing.assert_allclose(res.platelets.groupby("arm")["median"].count(), 61)


# ---------------------------------------------------------------- endpoints
def test_endpoints_recomputed_by_hand_from_ledger(small):
    led, e = small.ledger, small.endpoints.set_index(["arm", "endpoint"])["estimate"]
    for arm in small.arm_names:
        rows = led[(led["arm"] == arm) & (led["day"] > 0) & led["assessment"]]
        per_patient = rows.groupby("ID")["observed"]
        week4 = rows[rows["day"] == 28].set_index("ID")
        stopped = led[(led["arm"] == arm) & (led["action"] == "stop") & (led["day"] <= 28)]["ID"]
        primary = (week4["observed"] >= 50) & ~week4.index.isin(stopped)
        assert e[(arm, "responders_primary")] == pytest.approx(primary.mean())
        assert e[(arm, "responded_once")] == pytest.approx((per_patient.max() >= 50).mean())
        assert e[(arm, "assessments_responding")] == pytest.approx(per_patient.apply(lambda s: (s >= 50).mean()).mean())
    # time in range etc. from the daily true counts, days 1..42
    traj = small.trajectories["platelets"]
    for arm in small.arm_names:
        x = traj.where(small.trajectories["arm"] == arm, drop=True).isel(day=slice(1, None)).values
        assert e[(arm, "time_in_range")] == pytest.approx(((x >= 50) & (x <= 250)).mean(), rel=1e-6)
        assert e[(arm, "time_above")] == pytest.approx((x > 400).mean(), abs=1e-12)
        assert e[(arm, "time_below")] == pytest.approx((x < 30).mean(), rel=1e-6)
    # the 5 mg arm has a 14-day stop rule: its stops count as non-responders
    assert e[("5 mg + titration", "stopped")] > 0


def test_endpoint_intervals(small):
    e = small.endpoints
    binom = e[e["kind"] == "binomial"]
    for _, r in binom.iterrows():
        lo, hi = cp_published(round(r["estimate"] * r["n"]), r["n"])
        assert (r["trial_low"], r["trial_high"]) == pytest.approx((lo, hi), abs=1e-9)
    assert e["replicate_low"].isna().all()  # one replicate: no replicate interval
    assert (e["trial_low"] <= e["estimate"]).all() and (e["estimate"] <= e["trial_high"]).all()


def test_clopper_pearson_textbook_values():
    # k = 0: upper = 1 - (a/2)^(1/n);  k = n: lower = (a/2)^(1/n)
    lo, hi = clopper_pearson(0, 10)
    assert lo == 0 and hi == pytest.approx(1 - 0.025 ** (1 / 10))
    lo, hi = clopper_pearson(10, 10)
    assert lo == pytest.approx(0.025 ** (1 / 10)) and hi == 1
    np.testing.assert_allclose(clopper_pearson(99, 168), cp_published(99, 168), rtol=1e-10)
    with pytest.raises(PKPDInputError, match="0 <= k <= n"):
        clopper_pearson(5, 3)


def test_clopper_pearson_against_scipy():
    """pkpd's beta quantiles (plain Python, to keep scipy.special out of a simulation's
    import) against scipy.special.betaincinv, the reference, from k = 0 to n, with
    expected (non-integer) counts and trial sizes from 8 to 30000."""
    from scipy.special import betaincinv

    for n in (8, 85, 168, 30000):
        k = np.concatenate([np.arange(0, min(n, 40) + 1), np.linspace(0, n, 23), [0.3, n - 0.3]])
        lo, hi = clopper_pearson(k, n)
        ref_lo = np.where(k > 0, betaincinv(k, n - k + 1, 0.025), 0.0)
        ref_hi = np.where(k < n, betaincinv(k + 1, n - k, 0.975), 1.0)
        np.testing.assert_allclose(lo, ref_lo, rtol=1e-11, atol=1e-15)
        np.testing.assert_allclose(hi, ref_hi, rtol=1e-11, atol=1e-15)
    lo, hi = clopper_pearson(3, 10, level=0.9)
    np.testing.assert_allclose([lo, hi], [betaincinv(3, 8, 0.05), betaincinv(4, 7, 0.95)], rtol=1e-12)


def test_replicates_intervals_and_dose_distribution():
    res = small_trial().run(seed=2, replicates=8, progress=False)
    e = res.endpoints
    assert (e["replicates"] == 8).all()
    per = res.per_replicate
    assert per["replicate"].nunique() == 8
    for _, r in e.iterrows():
        vals = per[(per["arm"] == r["arm"]) & (per["endpoint"] == r["endpoint"])]["value"]
        assert r["estimate"] == pytest.approx(vals.mean())
        assert (r["replicate_low"], r["replicate_high"]) == pytest.approx(tuple(np.percentile(vals, [2.5, 97.5])))
    doses = res.doses
    sums = doses.groupby(["arm", "day"], observed=True)["fraction"].sum()
    np.testing.assert_allclose(sums, 1.0)
    assert doses["patients"].sum() == 70 * 8 * 6  # 6 post-baseline visits
    summary = res.platelets
    assert ((summary["p05"] <= summary["median"]) & (summary["median"] <= summary["p95"])).all()
    assert summary.groupby("arm").size().eq(43).all()  # days 0..42


# ---------------------------------------------------------------- reproducibility
def test_seeded_runs_reproduce_and_chunking_does_not_matter():
    trial = small_trial()
    a = trial.run(seed=5, replicates=3, progress=False)
    b = trial.run(seed=5, replicates=3, progress=False, max_chunk=70)  # one replicate per chunk
    pd.testing.assert_frame_equal(a.ledger, b.ledger)
    c = trial.run(seed=6, replicates=3, progress=False)
    assert not np.allclose(a.ledger["observed"], c.ledger["observed"])


def test_progress_bar_goes_to_stderr(capsys):
    small_trial(duration_days=14, endpoints=Endpoints(primary_day=14)).run(seed=1, progress=True)
    captured = capsys.readouterr()
    assert "visit" in captured.err and captured.out == ""


# ---------------------------------------------------------------- output files
def test_save_writes_everything_atomically(tmp_path, small, monkeypatch):
    out = small.save(tmp_path / "run")
    names = {"endpoints.csv", "ledger.csv", "doses.csv", "platelets.csv", "nonmem.csv", "platelets.png", "doses.png",
             "response.png", ".pkpd-output"}
    assert {p.name for p in out.iterdir()} == names
    back = pd.read_csv(out / "endpoints.csv")
    np.testing.assert_allclose(back["estimate"], small.endpoints["estimate"])
    assert read_nonmem(out / "nonmem.csv") == read_nonmem(small.to_nonmem())
    # a failure half-way leaves the previous folder untouched and no temp folder behind
    monkeypatch.setattr(type(small), "plot_doses", lambda self: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        small.save(tmp_path / "run")
    assert {p.name for p in out.iterdir()} == names
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


# ---------------------------------------------------------------- design errors
@pytest.mark.parametrize(
    "build, words",
    [
        (lambda: Arm("x", 10, 3.0, RULE), ["3.0 mg is not on the dose ladder", "ladder_mg"]),
        (lambda: Arm("x", 0, 2.5), ["n (patients)", ">= 1"]),
        (lambda: Arm("x", 10, -1.0), ["start_mg", ">= 0"]),
        (lambda: Trial((Arm("a", 5, 0.0), Arm("a", 5, 2.5))), ["unique", "'a'"]),
        (lambda: Trial((Arm("a", 5, 0.0),), duration_days=10.5), ["duration_days", "whole number of days"]),
        (lambda: Trial((Arm("a", 5, 0.0),), duration_days=42), ["primary_day 56", "not a visit day"]),
        (lambda: Trial((Arm("a", 5, 0.0),), duration_days=28, treatment_days=35, endpoints=Endpoints(primary_day=28)),
         ["treatment_days (35)", "after duration_days (28)"]),
        (lambda: Endpoints(target=(250, 50)), ["target", "low < high"]),
        (lambda: small_trial().run(replicates=0), ["replicates", ">= 1"]),
    ],
)
def test_design_errors_name_the_field(build, words):
    with pytest.raises(PKPDInputError) as err:
        build()
    for w in words:
        assert w in str(err.value)


# ---------------------------------------------------------------- ITP population
def test_itp_screening_baseline_matches_phase3():
    """Screening counts: median 13, range 1-29, 34-41% below 10 (Mei 2021)."""
    screen, true = hetrombopag.ITP_BASELINE.sample_screening(20_000, np.random.default_rng(0))
    assert 12.0 <= np.median(screen) <= 14.0
    assert 0.34 <= np.mean(screen < 10) <= 0.41
    assert screen.min() >= 1 and screen.max() < 30
    # regression to the mean: true baselines lie above the screening counts on average
    assert np.mean(np.log(true / screen)) > 0.02
    model = hetrombopag.model("itp")
    p = model.sample_parameters(20_000, seed=1)
    assert 0.13 <= 1 - p["responder"].mean() <= 0.17  # ITP_NONRESPONDER_FRACTION 0.15
    assert (p.loc[~p["responder"], "emax"] == 0).all()
    assert 38 <= np.median(p["lifespan"]) <= 58  # 2 d, within 1.6-3.6 d (Louwes 1999)


# ---------------------------------------------------------------- calibration (target 2)
PUBLISHED = {"2.5 mg + titration": (99, 168), "5 mg + titration": (110, 171), "placebo": (5, 85)}


def phase3(model=None, weeks=8):
    arms = (Arm("2.5 mg + titration", 168, 2.5, RULE), Arm("5 mg + titration", 171, 5.0, RULE), Arm("placebo", 85, 0.0))
    return Trial(arms, duration_days=7 * weeks, model=model or hetrombopag.model("itp"))


def primary_rates(result):
    e = result.endpoints
    return e[e["endpoint"] == "responders_primary"].set_index("arm")["estimate"]


def test_phase3_sized_trial_lands_in_published_intervals():
    """One virtual trial of the published size (168/171/85), scenario seed."""
    rates = primary_rates(phase3().run(seed=PHASE3_SEED, progress=False))
    for arm, (k, n) in PUBLISHED.items():
        lo, hi = cp_published(k, n)
        assert lo <= rates[arm] <= hi, (arm, rates[arm], (lo, hi))


def test_phase3_expected_rates_in_published_intervals():
    """The model's expected week-8 response (mean of 60 phase-III-sized trials)
    lies inside the published intervals and within 5 points of the published rates."""
    rates = primary_rates(phase3().run(seed=1, replicates=60, progress=False))
    for arm, (k, n) in PUBLISHED.items():
        lo, hi = cp_published(k, n)
        assert lo <= rates[arm] <= hi, (arm, rates[arm], (lo, hi))
        assert abs(rates[arm] - k / n) < 0.05, (arm, rates[arm], k / n)


def test_healthy_ec50_would_miss_the_phase3_response():
    """Why ITP_EC50 is calibrated: with the healthy EC50 (40 ng/mL) the titrated
    arms' expected response falls below the published intervals."""
    model = hetrombopag.model("itp", ec50=hetrombopag.model("healthy").typical["ec50"])
    rates = primary_rates(phase3(model).run(seed=1, replicates=60, progress=False))
    for arm in ("2.5 mg + titration", "5 mg + titration"):
        lo, _ = cp_published(*PUBLISHED[arm])
        assert rates[arm] < lo, (arm, rates[arm], lo)


# ---------------------------------------------------------------- calibration notebook
def test_calibration_notebook_runs_with_fast_settings(monkeypatch):
    """notebooks/03_itp_calibration.ipynb executes top to bottom (PKPD_FAST=1)."""
    _, text = run_notebook("03_itp_calibration.ipynb", monkeypatch, timeout=300)
    assert "fast settings" in text


# ================================================================= presentation: reprs, summary, reported endpoints, plots
# (the model and the results explain themselves; each figure shows what its endpoint is computed from)
def _cp_text(k, n):
    """A published count's Clopper-Pearson 95% interval as text, from scipy's beta quantiles."""
    lo, hi = cp_published(k, n)
    return f"[{100 * lo:.1f}%, {100 * hi:.1f}%]"


def test_model_describe_covers_the_whole_model_and_repr_is_one_line():
    m = hetrombopag.model("itp")
    d = m.describe()
    assert set(d.index.get_level_values("part")) == {"parameter", "residual", "baseline", "response"}
    params = d.loc["parameter"]
    assert list(params.index) == list(population.PARAMETERS)
    assert params.loc["ec50", "value"] == m.typical["ec50"] and params.loc["cl", "iiv_cv"] == m.iiv["cl"]
    # the ITP disease description, each number with a source
    assert d.loc[("residual", "platelets prop"), "value"] == hetrombopag.ITP_PLATELET_NOISE
    assert "exp(" in d.loc[("residual", "platelets prop"), "meaning"]  # log-normal visit noise
    b = hetrombopag.ITP_BASELINE
    assert [d.loc[("baseline", k), "value"] for k in ("median", "sd_log", "low", "high", "noise")] == [
        b.median, b.sd_log, b.low, b.high, b.noise]
    assert d.loc[("response", "nonresponder_fraction"), "value"] == hetrombopag.ITP_NONRESPONDER_FRACTION
    for row in [("residual", "platelets prop"), ("baseline", "median"), ("response", "nonresponder_fraction")]:
        assert d.loc[row, "source"].startswith("["), row
    healthy = hetrombopag.model("healthy").with_(corr={("cl", "v"): 0.4}).describe()
    assert healthy.loc[("correlation", "cl, v"), "value"] == 0.4
    assert healthy.loc[("baseline", "plt0"), "iiv_cv"] == 0.3  # no screening: PLT0 from its IIV
    for model in (m, hetrombopag.model("healthy")):
        text = repr(model)
        assert "\n" not in text and len(text) < 320 and model.population in text and "describe()" in text


def test_percent_rounds_and_never_prints_minus_zero():
    from pkpd.trial import percent

    assert percent(0.5893) == "58.9%" and percent(-1.3e-9) == "0.0%" and percent(np.nan) == ""
    assert percent(453.46, "peak_rise_pct") == "453.5%" and percent(-1.3e-7, "peak_rise_pct") == "0.0%"


def test_trial_result_repr_and_summary(small):
    text = repr(small)
    assert len(text.splitlines()) <= 4 and len(text) < 500 and "seed 11" in text and small.trial.name in text
    s = small.summary()
    assert list(s.index) == small.arm_names
    assert {"kind", "N", "replicates", "seed", "endpoint", "simulated", "95% CI, one trial of N"} <= set(s.columns)
    assert list(s["N"]) == [a.n for a in small.trial.arms] and (s["seed"] == 11).all()
    assert (s["endpoint"] == "responders_primary").all()
    e = small.endpoints.set_index(["arm", "endpoint"])
    for arm in small.trial.arms:
        k = round(e.loc[(arm.name, "responders_primary"), "estimate"] * arm.n)
        assert s.loc[arm.name, "simulated"] == f"{100 * k / arm.n:.1f}%"
        assert s.loc[arm.name, "95% CI, one trial of N"] == _cp_text(k, arm.n)


def test_endpoints_only_where_they_mean_something():
    """``stopped`` is reported only when some arm's rule can stop within the
    trial; the response endpoints only when most baselines are below the threshold."""
    def run(rule, model=None):
        arms = (Arm("titrated", 20, 2.5, rule), Arm("placebo", 10, 0.0))
        kw = {} if model is None else {"model": model}
        return Trial(arms, duration_days=28, endpoints=Endpoints(primary_day=28), **kw).run(seed=3, progress=False)

    never = run(RULE)
    late = run(RULE.with_(stop_after_days_at_max=60))  # cannot be reached in 28 days
    soon = run(RULE.with_(stop_after_days_at_max=7))
    for res in (never, late):
        assert "stopped" not in set(res.endpoints["endpoint"]) and "stopped" not in set(res.per_replicate["endpoint"])
        assert "stop" in res.omitted_endpoints["stopped"]
    assert "stopped" in set(soon.endpoints["endpoint"]) and "stopped" not in soon.omitted_endpoints
    assert {"responders_primary", "responded_once"} <= set(never.endpoints["endpoint"])
    healthy = run(RULE, hetrombopag.model("healthy"))
    shown = set(healthy.endpoints["endpoint"])
    assert not shown & {"responders_primary", "responded_once", "assessments_responding"}
    assert "baseline" in healthy.omitted_endpoints["responded_once"]
    assert {"time_in_range", "peak_rise_pct"} <= shown and healthy.headline_endpoint == "peak_rise_pct"


def test_plot_platelets_one_panel_per_arm_with_labelled_lines_and_observed_band(small):
    fig = small.plot_platelets()
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == small.arm_names
    labels = axes[0].get_legend_handles_labels()[1]
    assert any(lab.startswith("50: response") for lab in labels) and any(lab.startswith("250: target high") for lab in labels)
    assert any("observed count" in lab for lab in labels) and any("true count" in lab for lab in labels)
    for ax in axes:  # each panel names its lines and shows the observed counts of its own arm
        texts = {t.get_text() for t in ax.texts}
        assert {"50: response and target low", "250: target high"} <= texts
        assert ax.get_yscale() == "log" and ax.containers  # the observed-count error bars
    obs = small.platelets.query("arm == 'placebo' and observed_median.notna()")
    bars = axes[3].containers[0]
    np.testing.assert_allclose(np.asarray(bars.lines[0].get_ydata(), float), obs["observed_median"].to_numpy())


def test_plot_response_by_arm_with_intervals(small):
    from types import SimpleNamespace

    pub = SimpleNamespace(endpoint="responders_primary", responders=5, n=20, rate=0.25,
                          interval=tuple(float(x) for x in cp_published(5, 20)))
    fig = small.plot_response(published={"fixed 5 mg": pub})
    (ax,) = fig.axes
    labels = ax.get_legend_handles_labels()[1]
    assert labels == ["simulated, 95% CI of one trial of N", "published, Clopper-Pearson 95% CI"]
    assert [t.get_text() for t in ax.get_xticklabels()] == [f"{a.name}\nN = {a.n}" for a in small.trial.arms]
    e = small.endpoints.query("endpoint == 'responders_primary'")
    sim = [float(np.asarray(c.lines[0].get_ydata())[0]) for c in ax.containers[:-1]]
    published = float(np.asarray(ax.containers[-1].lines[0].get_ydata())[0])
    np.testing.assert_allclose(sorted(sim + [published]), sorted(list(100 * e["estimate"]) + [25.0]))
    assert "25.0% (5/20)" in {t.get_text() for t in ax.texts}
    with pytest.raises(PKPDInputError, match="time_in_rnage. is not an endpoint"):
        small.plot_response("time_in_rnage")


# ================================================================= the endpoint registry
def test_a_registered_endpoint_is_reported_with_its_value_and_interval():
    """A toy endpoint, registered as one function, appears in the endpoint
    table, per_replicate, summary and plot_response with the share computed
    here from the trajectories and its Clopper-Pearson interval from scipy."""
    from pkpd import endpoints

    toy = "true platelets > 100 on day 21 (toy; response threshold {response:g})"

    @endpoints.endpoint("day21_above_100", toy, kind="binomial")
    def day21_above_100(v):
        return v.daily[:, 21] > 100

    try:
        res = small_trial().run(seed=7, replicates=2, progress=False)
        traj = res.trajectories
        table = res.endpoints.set_index(["arm", "endpoint"])
        per_rep = res.per_replicate.set_index(["replicate", "arm", "endpoint"])["value"]
        summary = res.summary(endpoint="day21_above_100")
        described = toy.format(response=50)
        for arm in res.trial.arms:
            day21 = traj["platelets"].sel(day=21).where(traj["arm"] == arm.name, drop=True)
            share = float((day21 > 100).mean())
            row = table.loc[(arm.name, "day21_above_100")]
            assert row["estimate"] == pytest.approx(share, abs=1e-12)
            assert row["description"] == described and row["kind"] == "binomial"
            assert (row["trial_low"], row["trial_high"]) == pytest.approx(cp_published(share * arm.n, arm.n), abs=1e-9)
            for r in (0, 1):
                one = float((day21.where(day21["replicate"] == r, drop=True) > 100).mean())
                assert per_rep[(r, arm.name, "day21_above_100")] == pytest.approx(one, abs=1e-12)
            assert summary.loc[arm.name, "simulated"] == f"{100 * share:.1f}%"
        assert (summary["endpoint"] == "day21_above_100").all() and summary.attrs["description"] == described
        assert described in res.plot_response("day21_above_100").axes[0].get_title()
        with pytest.raises(PKPDInputError, match="day21_above_100.*already registered"):
            endpoints.endpoint("day21_above_100", "again")(day21_above_100)
    finally:
        del endpoints.REGISTRY["day21_above_100"]
    assert "day21_above_100" not in set(small_trial().run(seed=7, progress=False).endpoints["endpoint"])
