"""Closed-form one-compartment oral PK against independent references.

References: scipy ``solve_ivp`` (DOP853, rtol 1e-10) restarted at every dose with
the dose added to the depot, and textbook closed forms written out here
(Bateman function, steady-state geometric sums, t e^{-kt} when ka == k).
"""

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import pkpd
from pkpd.checks import PKPDInputError
from pkpd.pk import HETROMBOPAG_CL, HETROMBOPAG_KA, HETROMBOPAG_V, OneCompartmentOral, concentrations
from pkpd.regimen import Dose, Regimen

KA, CL, V = HETROMBOPAG_KA, HETROMBOPAG_CL, HETROMBOPAG_V


# ---------------------------------------------------------------- references
def ode_concentrations(doses, times, ka, cl, v, start_state=(0.0, 0.0)):
    """ng/mL at ``times`` by integrating dAg/dt = -ka Ag, dAc/dt = ka Ag - k Ac.

    ``doses``: list of (time h, amount mg, reset) in time order; the integration
    is restarted at each dose with the amount added to the depot (after emptying
    both compartments when ``reset``).  A dose at an observation time counts
    before the observation.
    """
    k = cl / v
    rhs = lambda t, y: [-ka * y[0], ka * y[0] - k * y[1]]
    times = np.asarray(times, float)
    out = np.zeros(times.size)
    state = np.array(start_state, float)
    t_now = 0.0
    boundaries = [d[0] for d in doses] + [np.inf]
    for j, (t_dose, amount, reset) in enumerate(doses):
        # carry the state from t_now to this dose
        if t_dose > t_now:
            state = solve_ivp(rhs, (t_now, t_dose), state, method="DOP853", rtol=1e-10, atol=1e-16).y[:, -1]
        if reset:
            state = np.zeros(2)
        state = state + [amount, 0.0]
        t_now = t_dose
        end = boundaries[j + 1]
        sel = (times >= t_dose) & (times < end)
        if sel.any():
            t_stop = times[sel].max()
            if t_stop > t_dose:
                t_eval, back = np.unique(times[sel], return_inverse=True)  # t_eval must be strictly increasing
                sol = solve_ivp(rhs, (t_dose, t_stop), state, method="DOP853", rtol=1e-10, atol=1e-16, t_eval=t_eval)
                out[sel] = sol.y[1][back] / v * 1000.0
            else:
                out[sel] = state[1] / v * 1000.0
    return out


def close(actual, expected, rtol=1e-8):
    """Relative agreement; values that should be exactly 0 (before any dose) must be 0."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    zero = expected == 0
    np.testing.assert_array_equal(actual[zero], 0.0)
    np.testing.assert_allclose(actual[~zero], expected[~zero], rtol=rtol, atol=0)


# ---------------------------------------------------------------- against solve_ivp
def test_single_dose_matches_ode_and_bateman():
    times = np.linspace(0, 240, 481)
    c = OneCompartmentOral().concentration(Regimen.single(5.0), times)
    close(c, ode_concentrations([(0.0, 5.0, False)], times, KA, CL, V))
    k = CL / V
    bateman = 5.0 * KA / (V * (KA - k)) * (np.exp(-k * times) - np.exp(-KA * times)) * 1000
    close(c[1:], bateman[1:], rtol=1e-12)
    assert c[0] == 0.0


def test_dose_after_time_zero_gives_zero_before_it():
    times = np.array([0.0, 1.0, 5.0, 5.0, 6.0, 30.0])
    c = OneCompartmentOral().concentration(Regimen.single(5.0, at_h=5.0), times)
    np.testing.assert_array_equal(c[:4], 0.0)
    close(c, ode_concentrations([(5.0, 5.0, False)], times, KA, CL, V))


def test_multiple_daily_doses_match_ode():
    times = np.arange(0, 24 * 12 + 0.5, 0.5)
    reg = Regimen.daily(5.0, days=10)
    c = OneCompartmentOral().concentration(reg, times)
    close(c, ode_concentrations([(24.0 * i, 5.0, False) for i in range(10)], times, KA, CL, V))


def test_irregular_doses_and_sampling_match_ode():
    dose_times = [0.0, 7.5, 30.0, 31.0, 31.0, 80.25]
    amounts = [5.0, 2.5, 7.5, 1.0, 2.0, 5.0]
    times = np.sort(np.r_[np.random.default_rng(1).uniform(0, 150, 60), dose_times])
    reg = Regimen.from_doses(dose_times, amounts)
    c = concentrations(reg, times, 0.8, 3.0, 40.0)[0]
    close(c, ode_concentrations(list(zip(dose_times, amounts, [False] * 6)), times, 0.8, 3.0, 40.0))


def test_reset_dose_matches_ode_with_emptied_compartments():
    reg = Regimen((Dose(0.0, 5.0), Dose(24.0, 5.0), Dose(36.0, 2.0, reset=True)))
    times = np.arange(0, 96.5, 0.5)
    c = OneCompartmentOral().concentration(reg, times)
    close(c, ode_concentrations([(0.0, 5.0, False), (24.0, 5.0, False), (36.0, 2.0, True)], times, KA, CL, V))


def test_vectorised_subjects_equal_one_at_a_time():
    ka, cl, v = np.array([0.2, 0.34, 1.5]), np.array([3.0, 7.66, 12.0]), np.array([100.0, 265.0, 400.0])
    reg = Regimen.daily(5.0, days=5)
    times = np.arange(0, 150, 1.0)
    together = concentrations(reg, times, ka, cl, v)
    assert together.shape == (3, times.size)
    for i in range(3):
        close(together[i], ode_concentrations([(24.0 * d, 5.0, False) for d in range(5)], times, ka[i], cl[i], v[i]))
    model = OneCompartmentOral(ka, cl, v)
    np.testing.assert_array_equal(model.concentration(reg, times), together)


# ---------------------------------------------------------------- steady state
def steady_state_textbook(t, dose, tau, ka, cl, v):
    """C_ss(t) within a dosing interval (Gibaldi & Perrier), ng/mL."""
    k = cl / v
    return dose * ka / (v * (ka - k)) * (
        np.exp(-k * t) / (1 - np.exp(-k * tau)) - np.exp(-ka * t) / (1 - np.exp(-ka * tau))
    ) * 1000


def test_ss1_dose_equals_textbook_steady_state_and_ode_run_in():
    tau, n_run_in = 24.0, 60  # e^{-k 60 tau} ~ 1e-18: the run-in has converged
    t_in = np.linspace(0, tau, 49)
    ss = OneCompartmentOral().concentration(Regimen((Dose(0.0, 5.0, 1, tau),)), t_in)
    close(ss, steady_state_textbook(t_in, 5.0, tau, KA, CL, V), rtol=1e-12)
    # ODE with a long run-in of ordinary doses, last interval
    run_in = [(tau * i, 5.0, False) for i in range(n_run_in + 1)]
    ode = ode_concentrations(run_in, n_run_in * tau + t_in, KA, CL, V)
    close(ss, ode)
    # and the closed form with the same run-in
    long = OneCompartmentOral().concentration(Regimen.daily(5.0, n_run_in + 1), n_run_in * tau + t_in)
    close(ss, long, rtol=1e-10)


def test_ss1_regimen_continues_like_a_long_run_in():
    reg = Regimen.daily(5.0, days=4, steady_state=True)
    assert reg.doses[0] == Dose(0.0, 5.0, 1, 24.0)
    times = np.arange(0, 120.0, 0.5)
    run_in = Regimen.daily(5.0, days=64)  # 60 run-in doses + the 4 of reg
    close(OneCompartmentOral().concentration(reg, times),
          OneCompartmentOral().concentration(run_in, times + 60 * 24.0), rtol=1e-10)


def test_ss1_discards_earlier_doses_ss2_adds_to_them():
    times = np.linspace(12.0, 60.0, 97)
    ss1 = Regimen((Dose(0.0, 10.0), Dose(12.0, 5.0, 1, 24.0)))
    ss2 = Regimen((Dose(0.0, 10.0), Dose(12.0, 5.0, 2, 24.0)))
    model = OneCompartmentOral()
    pure_ss = model.concentration(Regimen((Dose(12.0, 5.0, 1, 24.0),)), times)
    earlier = model.concentration(Regimen.single(10.0), times)
    # references from the ODE: steady state = long run-in ending at 12 h; plus the 10 mg dose at 0
    n = 60
    shift = n * 24.0
    run_in = [(12.0 + shift - 24.0 * i, 5.0, False) for i in range(n, -1, -1)]
    ode_ss = ode_concentrations(run_in, times + shift, KA, CL, V)
    ode_earlier = ode_concentrations([(0.0, 10.0, False)], times, KA, CL, V)
    close(model.concentration(ss1, times), ode_ss)
    close(model.concentration(ss2, times), ode_ss + ode_earlier)
    close(pure_ss + earlier, model.concentration(ss2, times), rtol=1e-12)


# ---------------------------------------------------------------- ka == k
@pytest.mark.parametrize("rel", [0.0, 1e-9, -1e-9, 1e-6])
def test_ka_equal_or_close_to_k(rel):
    k = CL / V
    ka = k * (1 + rel)
    times = np.linspace(0, 400, 801)
    reg = Regimen.daily(5.0, days=3) + Regimen((Dose(100.0, 5.0, 1, 12.0),))
    c = concentrations(reg, times, ka, CL, V)[0]
    doses = [(0.0, 5.0, False), (24.0, 5.0, False), (48.0, 5.0, False)]
    if rel == 0.0:
        # before the SS dose: superposed D ka t e^{-kt} / V (the ka -> k limit of the Bateman function)
        early = times < 100
        ref = sum(5.0 * ka * np.clip(times - t0, 0, None) * np.exp(-k * np.clip(times - t0, 0, None)) / V * 1000
                  for t0, _, _ in doses)
        close(c[early], ref[early], rtol=1e-12)
    # the ODE has no singularity at ka == k: compare everything before the SS dose
    early = times < 100
    close(c[early], ode_concentrations(doses, times[early], ka, CL, V))
    # steady state at ka == k: limit of the geometric sums, against a run-in
    # (the SS dose at 100 h is the last dose: afterwards the steady-state amounts just decay)
    late = times >= 100
    n = 120  # e^{-k n 12 h} ~ 1e-18
    long = concentrations(Regimen.repeated(5.0, 12.0, n + 1), (times[late] - 100.0) + n * 12.0, ka, CL, V)[0]
    close(c[late], long, rtol=1e-9)


# ---------------------------------------------------------------- model properties
def test_tmax_and_half_life_properties():
    m = OneCompartmentOral()
    t = np.arange(0, 48, 1e-3)
    c = m.concentration(Regimen.single(1.0), t)
    assert abs(float(m.tmax_single_dose) - t[np.argmax(c)]) < 1e-3
    assert float(m.half_life) == pytest.approx(np.log(2) * V / CL, rel=1e-14)
    flip_flop = OneCompartmentOral(ka=0.01, cl=7.66, v=265.0)
    assert float(flip_flop.half_life) == pytest.approx(np.log(2) / 0.01)
    same = OneCompartmentOral(ka=CL / V, cl=CL, v=V)
    assert float(same.tmax_single_dose) == pytest.approx(V / CL, rel=1e-12)


def test_no_doses_gives_zero():
    assert np.all(concentrations(Regimen(), [0.0, 5.0], KA, CL, V) == 0)


# ---------------------------------------------------------------- hetrombopag defaults through NCA
def _profile(reg, times):
    import pandas as pd

    return pd.DataFrame({"ID": 1, "time": times, "conc": OneCompartmentOral().concentration(reg, times)})


def test_hetrombopag_single_dose_tmax_and_half_life_in_reported_ranges():
    times = np.round(np.arange(0, 336.0 + 1e-9, 0.05), 10)
    res = pkpd.nca(_profile(Regimen.single(7.5), times), dose=7.5).iloc[0]
    assert 7.0 <= res["tmax"] <= 9.0  # Zheng 2017: Tmax ~ 8 h
    assert 11.9 <= res["half_life"] <= 40.1  # Zheng 2017: 11.9-40.1 h
    assert res["cl_f"] == pytest.approx(CL, rel=1e-3)  # dose / AUCinf recovers CL/F


def test_hetrombopag_daily_dosing_reaches_90_percent_of_steady_state_by_day_7():
    day7 = np.arange(0, 24.0 + 1e-9, 0.25)
    seven = _profile(Regimen.daily(5.0, days=7), 6 * 24.0 + day7).assign(time=day7)
    at_ss = _profile(Regimen.daily(5.0, days=1, steady_state=True), day7)
    r7 = pkpd.nca(seven, tau=24.0).iloc[0]
    rss = pkpd.nca(at_ss, tau=24.0).iloc[0]
    assert r7["auc_tau"] / rss["auc_tau"] >= 0.90
    assert r7["ctau"] / rss["ctau"] >= 0.90  # trough before the day-8 dose
    # at steady state AUCtau = dose / CL (mg / (L/h) -> h*mg/L, x1000 for ng/mL)
    assert rss["auc_tau"] == pytest.approx(5.0 / CL * 1000, rel=1e-4)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("name", ["ka", "cl", "v"])
@pytest.mark.parametrize("bad", [-1.0, 0.0, np.nan, np.inf])
def test_bad_parameters_raise_naming_field_and_value(name, bad):
    params = {"ka": KA, "cl": CL, "v": V, name: bad}
    with pytest.raises(PKPDInputError, match=rf"{name}.*{bad!r}" if np.isfinite(bad) else rf"{name}.*{bad}"):
        concentrations(Regimen.single(5.0), [0.0, 1.0], **params)
    with pytest.raises(PKPDInputError, match=rf"^{name}"):
        OneCompartmentOral(**params)


def test_bad_parameter_in_an_array_is_located():
    with pytest.raises(PKPDInputError, match=r"cl.*-2\.0.*element 1"):
        concentrations(Regimen.single(5.0), [1.0], KA, np.array([7.0, -2.0]), V)


def test_negative_or_unsorted_times_raise():
    with pytest.raises(PKPDInputError, match=r"times must be >= 0.*-1\.0"):
        concentrations(Regimen.single(5.0), [-1.0, 2.0], KA, CL, V)
    with pytest.raises(PKPDInputError, match=r"times must be sorted.*3\.0.*comes after.*5\.0"):
        concentrations(Regimen.single(5.0), [0.0, 5.0, 3.0], KA, CL, V)
    with pytest.raises(PKPDInputError, match=r"times must be a finite number.*nan"):
        OneCompartmentOral().concentration(Regimen.single(5.0), [0.0, np.nan])


def test_largest_accepted_dose_is_finite_and_exact_and_1e308_is_refused():
    """1e308 mg used to give inf ng/mL (and NaN platelets downstream); the
    MAX_DOSE_MG limit itself still follows the Bateman function exactly."""
    from pkpd.checks import MAX_DOSE_MG

    t = np.array([0.5, 8.0, 72.0])
    k = CL / V
    bateman = MAX_DOSE_MG * KA / (V * (KA - k)) * (np.exp(-k * t) - np.exp(-KA * t)) * 1000.0
    close(OneCompartmentOral().concentration(Regimen.single(MAX_DOSE_MG), t), bateman, rtol=1e-12)
    with pytest.raises(PKPDInputError, match=r"dose_mg must be <= 100000 \(in mg\); got 1e\+308.*MAX_DOSE_MG"):
        Regimen.single(1e308)


@pytest.mark.parametrize(
    "params, match",
    [
        ({"ka": True}, r"^ka must be a number \(in 1/h\); got True"),
        ({"cl": "7.66"}, r"^cl must be a number \(in L/h\); got '7.66'"),
        ({"v": None}, r"^v must be a number \(in L\); got None"),
        ({"ka": [0.3, 0.4], "cl": [1.0, 2.0, 3.0]}, r"one length.*'ka': \(2,\), 'cl': \(3,\)"),
        ({"ka": np.ones((2, 2))}, r"1-D arrays over subjects.*'ka': \(2, 2\)"),
        ({"cl": 1e300, "v": 1e-300}, r"k = cl/v must be a finite number > 0 \(1/h\); got inf from cl=1e\+300 L/h"),
        ({"cl": 1e-300, "v": 1e300}, r"k = cl/v must be a finite number > 0 \(1/h\); got 0.0"),
    ],
)
def test_parameters_that_are_not_numbers_or_do_not_fit_together_are_refused(params, match):
    """Before, True and "7.66" were read as 1 and 7.66, mismatched arrays failed
    inside numpy, and cl/v overflowing to inf gave NaN concentrations."""
    with pytest.raises(PKPDInputError, match=match):
        OneCompartmentOral(**params)
    with pytest.raises(PKPDInputError, match=match):
        concentrations(Regimen.single(5.0), [0.0, 1.0], **{"ka": KA, "cl": CL, "v": V, **params})


def test_times_past_the_horizon_a_non_regimen_and_oversized_results_are_refused():
    from pkpd.checks import MAX_HORIZON_H

    assert OneCompartmentOral().concentration(Regimen.single(5.0), [0.0, MAX_HORIZON_H])[1] >= 0
    with pytest.raises(PKPDInputError, match=r"times must be <= 175320 \(in h\); got 1000000000.0.*MAX_HORIZON_H"):
        OneCompartmentOral().concentration(Regimen.single(5.0), [0.0, 1e9])
    with pytest.raises(PKPDInputError, match=r"regimen must be a pkpd.Regimen; got list"):
        concentrations([(0, 5.0)], [0.0, 1.0], KA, CL, V)
    with pytest.raises(PKPDInputError, match=r"10,000 subjects x 20,000 report times.*1.6 GB.*MAX_RESULT_BYTES"):
        concentrations(Regimen.single(5.0), np.zeros(20_000), np.full(10_000, KA), CL, V)
