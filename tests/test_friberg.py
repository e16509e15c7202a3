"""Friberg myelosuppression: the adaptive Dormand-Prince solver (pkpd.ode) against
scipy's DOP853 at rtol 1e-12 (restarted at each dose) of the same PK + PD system
written out by hand, the simulators and a titration trial with it, and the
solver's on-disk compilation cache."""

import subprocess
import sys

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import pkpd
from pkpd import Arm, Endpoints, Regimen, TitrationRule, Trial
from pkpd.drugs import docetaxel
from pkpd.friberg import FribergMyelosuppression
from pkpd.one_compartment import OneCompartmentOral

CITED = docetaxel.TYPICAL
PD_NAMES = tuple(FribergMyelosuppression.PARAMETERS)


def scipy_reference(p, dose_times, amounts, times):
    """Concentrations (ng/mL) and counts (10^9/L) by DOP853 (rtol 1e-12), restarted at
    each dose; a dose at a report time is given before the report."""
    ka, k, v = p["ka"], p["cl"] / p["v"], p["v"]
    ktr = 4.0 / p["mtt"]

    def rhs(t, y):
        c = 1000.0 * y[1] / v
        effect = p["emax"] * c / (p["ec50"] + c)
        feedback = (p["circ0"] / y[6]) ** p["gamma"]
        return np.r_[-ka * y[0], ka * y[0] - k * y[1], ktr * y[2] * ((1 - effect) * feedback - 1),
                     ktr * (y[2:6] - y[3:7])]

    y = np.r_[0.0, 0.0, np.full(5, p["circ0"])]
    t, conc, cells = 0.0, [], []
    pending = list(zip(dose_times, amounts))
    for target in times:
        while pending and pending[0][0] <= target:
            dose_t, amount = pending.pop(0)
            if dose_t > t:
                y = solve_ivp(rhs, (t, dose_t), y, method="DOP853", rtol=1e-12, atol=1e-14).y[:, -1]
                t = dose_t
            y = y + np.r_[amount, np.zeros(6)]
        if target > t:
            y = solve_ivp(rhs, (t, target), y, method="DOP853", rtol=1e-12, atol=1e-14).y[:, -1]
            t = target
        conc.append(1000.0 * y[1] / v)
        cells.append(y[6])
    return np.array(conc), np.array(cells)


def run(subjects, dose_times, amounts, times):
    """pkpd's solver for a list of parameter dicts, all subjects in one call."""
    pk = {k: np.array([s[k] for s in subjects]) for k in OneCompartmentOral.PARAMETERS}
    pd = {k: np.array([s[k] for s in subjects]) for k in PD_NAMES}
    solver = FribergMyelosuppression.solver(OneCompartmentOral, pk, pd)
    return solver.run(dose_times, np.tile(amounts, (len(subjects), 1)), times)


#: The cited set and a spread around it: feedback off and strong, a saturating and a
#: nearly linear effect, slow and fast PK, short and long maturation.
SPREAD = [
    CITED,
    {**CITED, "gamma": 0.0},
    {**CITED, "gamma": 0.3},
    {**CITED, "gamma": 0.3, "emax": 2.0, "ec50": 50.0, "ka": 0.3, "cl": 5.0, "v": 100.0},
    {**CITED, "gamma": 0.0, "emax": 0.5, "ec50": 1e5, "mtt": 200.0},
    {**CITED, "gamma": 0.25, "emax": 3.0, "ec50": 500.0, "ka": 10.0, "cl": 50.0, "v": 50.0, "mtt": 30.0},
]
SCHEDULES = {
    "single": ([0.0], [135.0], np.r_[0.0, 0.5, 1, 2, 6, 24, 96, 24 * np.arange(7, 29)]),
    "every 3 weeks": (np.array([0.0, 504.0, 1008.0]), [135.0, 135.0, 100.0], np.arange(0.0, 1512.0 + 1, 12.0)),
    "daily": (24.0 * np.arange(28), np.full(28, 5.0), np.arange(0.0, 24 * 35 + 1, 8.0)),
    "irregular": (np.array([0.0, 3.7, 30.0, 30.0, 100.25, 300.0]), [40.0, 10.0, 5.0, 25.0, 60.0, 80.0],
                  np.r_[0.0, 3.7, 5.0, 30.0, 31.0, 100.25, 150.0, 300.0, 301.5, 500.0, 900.0]),
}


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_counts_and_concentrations_match_scipy(schedule):
    dose_times, amounts, times = SCHEDULES[schedule]
    conc, cells, _ = run(SPREAD, dose_times, amounts, times)
    worst_cells = worst_conc = 0.0
    for i, p in enumerate(SPREAD):
        ref_conc, ref_cells = scipy_reference(p, dose_times, amounts, times)
        worst_cells = max(worst_cells, np.max(np.abs(cells[i] - ref_cells) / ref_cells))
        # relative, with a floor of 1e-6 of one dose spread in V (far below any peak; PK decays to ~0)
        floor = 1e-6 * 1000.0 * max(amounts) / p["v"]
        worst_conc = max(worst_conc, np.max(np.abs(conc[i] - ref_conc) / np.maximum(ref_conc, floor)))
    assert worst_cells < 1e-6 and worst_conc < 1e-6, (worst_cells, worst_conc)
    assert cells.min() < 0.9 * CITED["circ0"]  # the drug does suppress: a real test, not a flat line


def test_drug_free_subjects_stay_at_baseline_and_nadir_is_plausible():
    _, cells, _ = run([CITED, {**CITED, "emax": 0.0}], [0.0], [135.0], 24.0 * np.arange(22))
    np.testing.assert_allclose(cells[1], CITED["circ0"], rtol=1e-12)
    nadir_day = np.argmin(cells[0])
    assert 5 <= nadir_day <= 10 and cells[0].min() < 0.5 * CITED["circ0"]  # docetaxel nadir ~day 7 [I]


def test_visit_by_visit_runs_equal_one_run():
    dose_times, amounts, times = SCHEDULES["daily"]
    subjects = SPREAD[:3]
    pk = {k: np.array([s[k] for s in subjects]) for k in OneCompartmentOral.PARAMETERS}
    pd = {k: np.array([s[k] for s in subjects]) for k in PD_NAMES}
    whole = FribergMyelosuppression.solver(OneCompartmentOral, pk, pd).run(dose_times, amounts, times)
    solver = FribergMyelosuppression.solver(OneCompartmentOral, pk, pd)
    state, parts = None, []
    for lo, hi in [(0, 7), (7, 14), (14, 15), (15, 35)]:  # visits on days 7, 14, 15, 35
        keep = (dose_times >= 24 * lo) & (dose_times < 24 * hi)
        report = times[(times > 24 * lo) & (times <= 24 * hi)] if lo else times[times <= 24 * hi]
        parts.append(solver.run(dose_times[keep], amounts[keep], report, state))
        state = parts[-1][2]
    np.testing.assert_allclose(np.hstack([p[0] for p in parts]), whole[0], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(np.hstack([p[1] for p in parts]), whole[1], rtol=1e-7)
    np.testing.assert_allclose(state["y"], whole[2]["y"], rtol=1e-7, atol=1e-12)
    assert state["t"] == whole[2]["t"] == times[-1]


def test_simulate_and_simulate_population_with_the_friberg_model():
    model = docetaxel.model()
    regimen = Regimen.repeated(135.0, 504.0, 2)
    times = 24.0 * np.arange(43)
    df = pkpd.simulate(model, regimen, times)
    assert list(df.columns) == ["time", "conc", "neutrophils"]
    ref_conc, ref_cells = scipy_reference(CITED, regimen.times, regimen.amounts, times)
    np.testing.assert_allclose(df["neutrophils"], ref_cells, rtol=1e-6)
    np.testing.assert_allclose(df["conc"], ref_conc, rtol=1e-6, atol=1e-6 * 1000 * 135.0 / CITED["v"])
    ds = pkpd.simulate_population(model, regimen, times, n=6, seed=3)
    assert ds["neutrophils"].shape == (6, times.size) and ds["neutrophils"].attrs["units"] == "10^9/L"
    assert "neutrophils_obs" in ds and float(ds["circ0"].std()) > 0  # IIV drawn on circ0
    for i in (0, 5):
        p = {name: float(ds[name][i]) for name in model.parameter_names}
        _, cells = scipy_reference(p, regimen.times, regimen.amounts, times)
        np.testing.assert_allclose(ds["neutrophils"][i], cells, rtol=1e-6)


def test_the_cited_set_is_sourced_and_converted_with_the_molar_mass():
    assert docetaxel.EC50 == pytest.approx(7.17 * 807.879)  # µmol/L -> ng/mL
    table = docetaxel.model().describe()
    for name in docetaxel.TYPICAL:
        assert table.loc[("parameter", name), "source"].startswith(("[R]", "[I]"))


def test_any_pk_model_with_a_rate_matrix_drives_the_chain():
    """The solver uses only the PK interface (rate matrix, central compartment,
    concentration scale): a PK model with a different compartment layout gives
    the same counts when it describes the same system."""

    class CentralFirst(OneCompartmentOral):  # the same model, compartments listed the other way
        COMPARTMENTS = ("central", "depot")
        CENTRAL, DOSE_COMPARTMENT = 0, 1

        @classmethod
        def rate_matrix(cls, p):
            return OneCompartmentOral.rate_matrix(p)[:, ::-1, ::-1]

    pk = {k: np.array([CITED[k]]) for k in OneCompartmentOral.PARAMETERS}
    pd = {k: np.array([CITED[k]]) for k in PD_NAMES}
    dose_times, amounts, times = SCHEDULES["irregular"]
    a = FribergMyelosuppression.solver(OneCompartmentOral, pk, pd).run(dose_times, amounts, times)
    b = FribergMyelosuppression.solver(CentralFirst, pk, pd).run(dose_times, amounts, times)
    np.testing.assert_allclose(b[1], a[1], rtol=1e-9)
    np.testing.assert_allclose(b[0], a[0], rtol=1e-9, atol=1e-9)


def test_a_trial_reduces_doses_when_counts_fall():
    """Daily oral dosing of a suppressive drug (the cited chain, a slow PK) with
    a rule that steps the dose down below 1.5 x10^9/L."""
    rule = TitrationRule(ladder_mg=(0, 5, 10, 20), low=1.5, high=4.0, interrupt_above=50.0, resume_below=40.0,
                         interrupt_at_lowest=False, step_below_low="down", name="reduce on low counts")
    model = docetaxel.model(ka=0.5, cl=10.0, v=100.0, emax=2.0, ec50=100.0)
    trial = Trial((Arm("titrated", 20, 20.0, rule), Arm("fixed 20 mg", 10, 20.0)), duration_days=42,
                  model=model, endpoints=Endpoints(response=1.5, primary_day=42, target=(1.5, 4.0), above=4.0,
                                                   below=1.0))
    led = trial.run(seed=5, progress=False).ledger
    titrated = led[led["arm"] == "titrated"]
    downs = titrated[titrated["action"] == "down"]
    assert len(downs) > 0 and (downs["observed"] < 1.5).all()
    assert (downs["dose_mg"] < downs["dose_before_mg"]).all()
    last = led[led["day"] == 42]
    assert last.loc[last["arm"] == "titrated", "true"].mean() > last.loc[last["arm"] == "fixed 20 mg", "true"].mean()


CACHE_PROBE = """
import numpy as np
from pkpd import ode
from pkpd.friberg import FribergMyelosuppression
from pkpd.one_compartment import OneCompartmentOral
s = FribergMyelosuppression.solver(OneCompartmentOral, {"ka": 1.0, "cl": 2.0, "v": 10.0},
                                   {"circ0": 5.0, "mtt": 90.0, "gamma": 0.2, "emax": 1.0, "ec50": 100.0})
s.run([0.0], [10.0], [1.0, 2.0])
print(sum(ode.integrate.stats.cache_hits.values()), sum(ode.integrate.stats.cache_misses.values()))
"""


def test_the_compiled_solver_is_loaded_from_the_disk_cache_in_a_new_process():
    for _ in range(2):  # the first may compile (a cold cache); the second must load
        out = subprocess.run([sys.executable, "-c", CACHE_PROBE], capture_output=True, text=True, check=True)
    hits, misses = map(int, out.stdout.split())
    assert (hits, misses) == (1, 0), out.stdout
