"""Two-compartment oral PK (pkpd.two_compartment) against independent references:
scipy solve_ivp of the PK ODEs (DOP853, rtol 1e-10, restarted at each dose),
long run-ins for steady state, mpmath's matrix exponential at 40 digits and
finite differences for the unit response and its gradient, and an ODE of
PK + transit platelets for simulate_population and a Trial."""

import mpmath as mp
import numpy as np
import pytest
from scipy.integrate import solve_ivp

import pkpd
from pkpd import Arm, Endpoints, Regimen, Trial
from pkpd.drugs import eltrombopag
from pkpd.population import PKPDModel
from pkpd.regimen import Dose
from pkpd.two_compartment import (
    TwoCompartmentOral,
    exp_divdiff2,
    unit_response,
    unit_response_ss,
)

BASE = dict(ka=eltrombopag.KA, cl=eltrombopag.CL, v1=eltrombopag.V1, q=eltrombopag.Q, v2=eltrombopag.V2)


def rates(p):
    arrays = TwoCompartmentOral.parameter_arrays(**p)
    return [float(r[0]) for r in TwoCompartmentOral.disposition_rates(arrays)]


ALPHA, BETA, _ = rates(BASE)
SETS = {
    "eltrombopag": BASE,
    "ka~alpha": {**BASE, "ka": ALPHA * (1 + 1e-9)},
    "ka=alpha": {**BASE, "ka": ALPHA},
    "ka~beta": {**BASE, "ka": BETA * (1 - 1e-8)},
    "q tiny": {**BASE, "q": 1e-6},
    "q large": {**BASE, "q": 300.0, "ka": 3.0},
    "fast": dict(ka=5.0, cl=20.0, v1=30.0, q=10.0, v2=200.0),
}
#: For the exact references only: alpha ~ 38 /h decays far below what an ODE at
#: rtol 1e-10 resolves, while alpha*tau (thousands) tests the exponents' rounding.
EXACT_SETS = {**SETS, "alpha fast": dict(ka=0.24, cl=36.75, v1=2.45, q=49.19, v2=10.7)}


# ---------------------------------------------------------------- independent references
def pk_ode(p, regimen, times, y0=None, t0=0.0):
    """Concentrations (ng/mL) at sorted ``times`` by solve_ivp of the three
    amounts from ``y0`` (mg) at ``t0`` (h), restarted at every dose (a dose at a
    report time comes first); also the amounts at the end."""
    k10, k12, k21 = p["cl"] / p["v1"], p["q"] / p["v1"], p["q"] / p["v2"]
    K = np.array([[-p["ka"], 0, 0], [p["ka"], -(k10 + k12), k21], [0, k12, -k21]])
    y = np.zeros(3) if y0 is None else np.array(y0, float)
    scale, out = max([d.amount for d in regimen.doses] + [y.sum()]), []
    events = sorted(set(regimen.times) | set(times))
    for t in events:
        if t > t0:
            sol = solve_ivp(lambda _, a: K @ a, (t0, t), y, method="DOP853", rtol=1e-10, atol=1e-14 * scale)
            y, t0 = sol.y[:, -1], t
        y = y + np.array([sum(d.amount for d in regimen.doses if d.time == t), 0, 0])
        if t in times:
            out.append(y[1] / p["v1"] * 1000.0)
    return np.array(out), y


def run_in(p, amount, ii, n):
    """Amounts just after the n-th dose of ``amount`` mg every ``ii`` h, by the ODE."""
    _, y = pk_ode(p, Regimen.repeated(amount, ii, n), [ii * (n - 1)])
    return y


def conc(p, regimen, times):
    return TwoCompartmentOral(**p).concentration(regimen, times)


def close(actual, expected, rtol):
    err = np.max(np.abs(actual - expected) / np.abs(expected))
    assert err < rtol, err
    return err


# ---------------------------------------------------------------- PK against the ODE
@pytest.mark.parametrize("name", SETS)
def test_single_multiple_and_irregular_dosing_match_the_ode(name):
    p = SETS[name]
    times = np.array([0.05, 0.5, 1.0, 3.0, 7.5, 24.0, 30.0, 71.0, 96.0, 100.0, 140.0])
    for regimen in (Regimen.single(10.0), Regimen.daily(50.0, days=5),
                    Regimen.from_doses([0.0, 5.0, 7.5, 30.0, 71.0, 100.0], [25.0, 5.0, 80.0, 0.5, 50.0, 12.5])):
        close(conc(p, regimen, times), pk_ode(p, regimen, times)[0], 1e-8)


@pytest.mark.parametrize("name", ["eltrombopag", "ka~alpha", "ka~beta", "q large", "fast"])
def test_steady_state_records_match_a_long_run_in(name):
    p = SETS[name]
    ii, n = 24.0, int(np.ceil(40 / (rates(p)[1] * 24.0))) + 1  # e^{-40} of the slowest rate is left
    ss = run_in(p, 50.0, ii, n)
    times = np.array([0.0, 0.5, 4.0, 12.0, 24.0, 30.0, 48.0])
    # SS=1 at 0: the train of 50 mg; then one 20 mg dose at 24 h.
    sim = conc(p, Regimen((Dose(0.0, 50.0, 1, ii), Dose(24.0, 20.0))), times)
    close(sim, pk_ode(p, Regimen((Dose(24.0, 20.0),)), times, y0=ss)[0], 1e-8)
    # SS=2 at 24 h adds the train to what a 30 mg dose at 0 left.
    sim = conc(p, Regimen((Dose(0.0, 30.0), Dose(24.0, 50.0, 2, ii))), times[times >= 24.0])
    _, left = pk_ode(p, Regimen.single(30.0), [24.0])
    ref, _ = pk_ode(p, Regimen(), times[times >= 24.0], y0=left + ss, t0=24.0)
    close(sim, ref, 1e-8)


def test_eltrombopag_absorption_puts_the_peak_where_its_docstring_says():
    """ka [I] was chosen for a single-dose Tmax of ~4 h, inside the labelled 2-6 h."""
    t = np.linspace(0.0, 12.0, 12001)
    c = conc(BASE, Regimen.single(50.0), t)
    assert 3.9 < t[np.argmax(c)] < 4.2


# ---------------------------------------------------------------- the unit response
def mp_response(tau, p, ii=None):
    ka, cl, v1, q, v2 = (mp.mpf(x) for x in p)
    K = mp.matrix([[-ka, 0, 0], [ka, -(cl + q) / v1, q / v2], [0, q / v1, -q / v2]])
    E = mp.expm(K * tau) if ii is None else mp.expm(K * tau) * mp.inverse(mp.eye(3) - mp.expm(K * ii))
    return E[1, 0] / v1


@pytest.mark.parametrize("name", EXACT_SETS)
def test_unit_response_and_gradient_match_mpmath_and_finite_differences(name):
    mp.mp.dps = 40
    p = np.array(list(EXACT_SETS[name].values()))
    for tau, ii in [(0.0, None), (1e-6, None), (0.7, None), (9.0, None), (60.0, None), (200.0, None),
                    (0.0, 24.0), (3.0, 24.0), (24.0, 24.0), (5.0, 12.0)]:
        grad = np.zeros(5)
        c = unit_response(tau, p, grad) if ii is None else unit_response_ss(tau, ii, p, grad)
        ref = mp_response(tau, p, ii)
        assert abs(c - float(ref)) <= 1e-13 * abs(float(ref)), (tau, ii)
        exact = [float(mp.diff(lambda x, k=k: mp_response(tau, [*p[:k], x, *p[k + 1:]], ii), mp.mpf(p[k])))
                 for k in range(5)]
        scale = max(abs(g) for g in exact)
        np.testing.assert_allclose(grad, exact, rtol=0, atol=1e-11 * scale)
        if tau > 0:
            fd = np.empty(5)
            for k in range(5):
                h = 1e-6 * max(p[k], 0.01)  # a step on the scale the response varies on
                up, dn = p.copy(), p.copy()
                up[k] += h
                dn[k] -= h
                f = (lambda x: unit_response(tau, x, np.zeros(5))) if ii is None else \
                    (lambda x: unit_response_ss(tau, ii, x, np.zeros(5)))
                fd[k] = (f(up) - f(dn)) / (2 * h)
            np.testing.assert_allclose(grad, fd, rtol=0, atol=1e-7 * scale)


@pytest.mark.parametrize("name", SETS)
def test_unit_response_is_the_concentration_per_mg(name):
    p = SETS[name]
    x = np.array(list(p.values()))
    times = np.array([0.0, 0.2, 2.0, 10.0, 23.0])
    one = [unit_response(t, x, np.zeros(5)) * 1000 for t in times]
    close(conc(p, Regimen.single(1.0), times)[1:], np.array(one)[1:], 1e-13)
    ss = [unit_response_ss(t, 24.0, x, np.zeros(5)) * 1000 for t in times]
    close(conc(p, Regimen((Dose(0.0, 1.0, 1, 24.0),)), times), np.array(ss), 1e-12)


def test_second_divided_difference_is_stable_at_coincident_and_tiny_spreads():
    mp.mp.dps = 40
    for t, r in [(2.0, (0.3, 0.3, 0.3)), (2.0, (0.3, 0.3 + 1e-12, 0.9)), (1e-9, (1.0, 2.0, 3.0)),
                 (50.0, (0.01, 0.4, 0.4000001)), (3.0, (0.1, 0.5, 0.2)), (0.0, (1.0, 2.0, 3.0))]:
        z = [-mp.mpf(x) for x in r]
        # Hermite-Genocchi: the second divided difference is the integral of f'' over the simplex.
        ref = mp.quad(lambda s: mp.quad(lambda u: t**2 * mp.exp(t * (z[0] + s * (z[1] - z[0]) + u * (z[2] - z[1]))),
                                        [0, s]), [0, 1])
        got = exp_divdiff2(t, *r)
        assert abs(got - float(ref)) <= 1e-14 * abs(float(ref)) + 1e-300, (t, r, got, ref)


# ---------------------------------------------------------------- platelets end to end
PD = dict(emax=eltrombopag.model().typical["emax"], ec50=eltrombopag.ITP_EC50, hill=1.0, n_transit=4, mtt=168.0,
          gamma=0.3, plt0=30.0, lifespan=48.0)


def platelets_ode(p, dose_times, amounts, times):
    """Concentrations (ng/mL) and platelets (10^9/L) of PK + transit chain by
    solve_ivp (DOP853, rtol 1e-11), restarted at every dose."""
    n = int(p["n_transit"])
    k10, k12, k21 = p["cl"] / p["v1"], p["q"] / p["v1"], p["q"] / p["v2"]
    ktr, kdeg = n / p["mtt"], 1 / p["lifespan"]
    kin = p["plt0"] * kdeg

    def rhs(t, y):
        c = max(y[1], 0.0) / p["v1"] * 1000.0
        e = p["emax"] * c ** p["hill"] / (p["ec50"] ** p["hill"] + c ** p["hill"])
        d = np.empty_like(y)
        d[0] = -p["ka"] * y[0]
        d[1] = p["ka"] * y[0] - (k10 + k12) * y[1] + k21 * y[2]
        d[2] = k12 * y[1] - k21 * y[2]
        d[3] = kin * (1 + e) * (p["plt0"] / y[-1]) ** p["gamma"] - ktr * y[3]
        d[4:3 + n] = ktr * (y[3:2 + n] - y[4:3 + n])
        d[-1] = ktr * y[2 + n] - kdeg * y[-1]
        return d

    y, t0, c_out, plt_out = np.r_[0.0, 0.0, 0.0, np.full(n, kin / ktr), p["plt0"]], 0.0, [], []
    for t in np.union1d(dose_times, times):
        if t > t0:
            y, t0 = solve_ivp(rhs, (t0, t), y, method="DOP853", rtol=1e-11, atol=1e-12).y[:, -1].copy(), t
        y[0] += np.sum(np.asarray(amounts)[np.asarray(dose_times) == t])
        if t in times:
            c_out.append(y[1] / p["v1"] * 1000.0)
            plt_out.append(y[-1])
    return np.array(c_out), np.array(plt_out)


def two_compartment_model(**iiv):
    return PKPDModel(name="two-compartment test drug", population="itp", typical={**BASE, **PD}, iiv=iiv,
                     pk=TwoCompartmentOral)


def test_simulate_population_platelets_match_the_ode():
    model = two_compartment_model(ka=0.4, cl=0.4, v1=0.3, q=0.5, v2=0.3, ec50=0.5, plt0=0.3)
    times = np.array([0.0, 5.0, 24.0, 100.0, 168.0, 336.0, 500.0, 672.0])
    ds = pkpd.simulate_population(model, Regimen.daily(50.0, days=21), times, n=4, seed=7)
    names = list(BASE) + list(PD)
    for i in range(ds.sizes["id"]):
        p = {k: float(ds[k].values[i]) for k in names}
        c, plt = platelets_ode(p, np.arange(21) * 24.0, np.full(21, 50.0), times)
        close(ds["conc"].values[i][1:], c[1:], 1e-6)
        close(ds["platelets"].values[i], plt, 1e-6)


def test_trial_runs_with_a_two_compartment_drug_and_its_counts_match_the_typical_patient():
    """Without variability every patient is the typical one: the trial's true
    counts of the fixed-dose arm equal the ODE; the 25 mg arm lies between placebo and it."""
    trial = Trial((Arm("fixed 50 mg", 4, 50.0), Arm("fixed 25 mg", 4, 25.0),
                   Arm("placebo", 4, 0.0)), duration_days=28, treatment_days=28,
                  endpoints=Endpoints(primary_day=28), model=two_compartment_model())
    result = trial.run(seed=3, progress=False)
    led = result.ledger
    fixed = led[led["arm"] == "fixed 50 mg"]
    days = sorted(fixed["day"].astype(int).unique())
    _, ref = platelets_ode({**BASE, **PD}, np.arange(28) * 24.0, np.full(28, 50.0), np.array(days) * 24.0)
    for _, rows in fixed.groupby("ID"):
        close(rows.sort_values("day")["true"].values, ref, 1e-6)
    placebo = led.loc[led["arm"] == "placebo", "true"].values
    np.testing.assert_allclose(placebo, PD["plt0"], rtol=1e-6)
    half = led[led["arm"] == "fixed 25 mg"].sort_values(["ID", "day"])["true"].values.reshape(4, -1)
    assert np.all(half >= PD["plt0"] * (1 - 1e-9)) and np.all(half <= ref * (1 + 1e-9))
    assert np.all(half[:, -1] > PD["plt0"] * 1.2)
    assert ref[-1] > 2 * PD["plt0"]  # 50 mg raises the typical patient's count: the comparison is not trivial
