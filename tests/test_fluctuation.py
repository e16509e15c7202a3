"""Within-patient disease fluctuation (pkpd.fluctuation): its law, its effect
on the platelet solver (against solve_ivp with the same production path), and
reproducibility whatever the split of a simulation into runs."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import pkpd
from pkpd.drugs import hetrombopag

DAYS = 42
DOSE_TIMES = np.arange(DAYS) * 24.0
TIMES = np.arange(DAYS + 1) * 24.0


def itp(sd=0.5, time_h=10 * 24.0):
    return hetrombopag.model("itp").with_(fluctuation=pkpd.Fluctuation(sd_log=sd, time_h=time_h))


def test_path_has_the_ornstein_uhlenbeck_law():
    """Stationary SD and lag-k autocorrelation rho^k of the AR(1) path, from many subjects."""
    f = pkpd.Fluctuation(sd_log=0.4, time_h=5 * 24.0)
    path = f.extend(np.zeros((40000, 0)), 200, np.random.default_rng(3))
    assert np.all(path[:, 0] == 0)  # the patient at entry
    late = path[:, 100:]
    sd = late.std()
    assert abs(sd - 0.4) < 0.01
    for lag in (1, 5):
        r = np.mean([np.corrcoef(late[:, i], late[:, i + lag])[0, 1] for i in range(0, 90, 10)])
        assert abs(r - np.exp(-lag * 24 / (5 * 24))) < 0.02


def _reference(row, path, dose_mg):
    """Platelets with linear one-compartment PK and production kin exp(eta_day), solve_ivp restarted every day."""
    n = int(row["n_transit"])
    ka, k, v = row["ka"], row["cl"] / row["v"], row["v"]
    ktr, kdeg, plt0 = n / row["mtt"], 1 / row["lifespan"], row["plt0"]
    kin = plt0 * kdeg
    y = np.r_[0.0, 0.0, np.full(n, kin / ktr), plt0]
    out = [plt0]
    for day in range(DAYS):
        y[0] += dose_mg
        mult = np.exp(path[day])

        def rhs(t, y):
            c = max(y[1], 0.0) / v * 1000.0
            e = row["emax"] * c / (row["ec50"] + c)
            d = np.empty_like(y)
            d[0] = -ka * y[0]
            d[1] = ka * y[0] - k * y[1]
            d[2] = kin * mult * (1 + e) - ktr * y[2]
            d[3:2 + n] = ktr * (y[2:1 + n] - y[3:2 + n])
            d[-1] = ktr * y[1 + n] - kdeg * y[-1]
            return d

        y = solve_ivp(rhs, (0, 24.0), y, method="DOP853", rtol=1e-11, atol=1e-12).y[:, -1]
        out.append(y[-1])
    return np.array(out)


def test_platelets_follow_the_fluctuating_production_exactly():
    model = itp()
    params = model.sample_parameters(4, seed=2)
    params["hill"] = 1.0
    solver = model.solver(params, rng=np.random.default_rng(5))
    _, plt, _ = solver.run(DOSE_TIMES, np.full(DAYS, 5.0), TIMES)
    path = solver._path
    assert path.shape[1] >= DAYS and np.ptp(path[:, :DAYS]) > 0.3  # a real excursion
    for i, row in params.iterrows():
        ref = _reference(row, path[i], 5.0)
        np.testing.assert_allclose(plt[i], ref, rtol=1e-8)


def test_single_run_in_subject_blocks_follows_the_same_path(monkeypatch):
    """keep_tables=False runs blocks of subjects, each a solver of its own
    that is freed after it (bounded memory): each subject still follows the
    path drawn for it, exactly (against solve_ivp), and the path is the
    one an unblocked run draws from the same seed."""
    monkeypatch.setattr("pkpd.pd.SUBJECT_BLOCK", 3)
    model = itp()
    params = model.sample_parameters(7, seed=2)
    params["hill"] = 1.0
    blocked = model.solver(params, rng=np.random.default_rng(5), keep_tables=False)
    _, plt, _ = blocked.run(DOSE_TIMES, np.full(DAYS, 5.0), TIMES)
    whole = model.solver(params, rng=np.random.default_rng(5))
    whole.run(DOSE_TIMES, np.full(DAYS, 5.0), TIMES)
    np.testing.assert_array_equal(blocked._path[:, :DAYS], whole._path[:, :DAYS])
    for i, row in params.iterrows():
        np.testing.assert_allclose(plt[i], _reference(row, blocked._path[i], 5.0), rtol=1e-8)


def test_seeded_reproducible_and_independent_of_how_runs_are_split():
    model = itp()
    params = model.sample_parameters(300, seed=1)
    _, whole, _ = model.solver(params, rng=np.random.default_rng(9)).run(DOSE_TIMES, np.full(DAYS, 2.5), TIMES)
    solver = model.solver(params, rng=np.random.default_rng(9))
    state, parts = None, []
    for week in range(DAYS // 7):
        doses = DOSE_TIMES[(DOSE_TIMES >= week * 168) & (DOSE_TIMES < (week + 1) * 168)]
        times = TIMES[week * 7 + (week > 0): (week + 1) * 7 + 1]
        _, plt, state = solver.run(doses, np.full(doses.size, 2.5), times, state)
        parts.append(plt)
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    _, other, _ = model.solver(params, rng=np.random.default_rng(10)).run(DOSE_TIMES, np.full(DAYS, 2.5), TIMES)
    assert np.abs(other - whole).max() > 1


def test_without_rng_the_course_is_the_typical_one_also_for_refined_subjects():
    """No rng: no fluctuation, for every subject, those the solver runs again
    with finer steps (fast eliminators) included: the counts equal those of
    the same model with a fluctuation of size 0, and none is NaN."""
    params = itp(sd=0.6).sample_parameters(2000, seed=4)
    assert (params.cl / params.v * 24 > 3).sum() > 50  # fast eliminators, which the solver refines
    for _ in range(3):  # reading past the (empty) path was not always visible
        _, plt, _ = itp(sd=0.6).solver(params).run(DOSE_TIMES, np.full(DAYS, 5.0), TIMES)
        _, typical, _ = itp(sd=0.0).solver(params).run(DOSE_TIMES, np.full(DAYS, 5.0), TIMES)
        assert not np.isnan(plt).any()
        np.testing.assert_array_equal(plt, typical)


def test_fluctuation_moves_placebo_counts_and_is_off_without_rng():
    model = itp(sd=0.6)
    params = model.sample_parameters(2000, seed=4)
    _, steady, _ = model.solver(params).run(DOSE_TIMES, np.zeros(DAYS), TIMES)
    np.testing.assert_allclose(steady, steady[:, :1] * np.ones_like(steady), rtol=1e-10)  # no rng: no fluctuation
    _, moving, _ = model.solver(params, rng=np.random.default_rng(1)).run(DOSE_TIMES, np.zeros(DAYS), TIMES)
    log_ratio = np.log(moving[:, -1] / moving[:, 0])
    assert 0.3 < log_ratio.std() < 0.6  # damped by the maturation delay, below the production's 0.6
    assert abs(np.median(log_ratio)) < 0.05


def test_simulate_population_draws_the_fluctuation_from_its_seed():
    model = itp()
    reg = pkpd.Regimen.daily(0.0, days=DAYS)
    a = pkpd.simulate_population(model, reg, TIMES, n=50, seed=3, observed=False)
    b = pkpd.simulate_population(model, reg, TIMES, n=50, seed=3, observed=False)
    np.testing.assert_array_equal(a["platelets"].values, b["platelets"].values)
    assert np.abs(a["platelets"].values[:, -1] - a["platelets"].values[:, 0]).max() > 1


@pytest.mark.parametrize("bad, mention", [
    (dict(sd_log=-0.1, time_h=24.0), "sd_log"),
    (dict(sd_log=0.3, time_h=0.0), "time_h"),
    (dict(sd_log=0.3, time_h=24.0, interval_h=-1.0), "interval_h"),
])
def test_bad_fluctuation_is_refused(bad, mention):
    with pytest.raises(pkpd.PKPDInputError, match=mention):
        pkpd.Fluctuation(**bad)
