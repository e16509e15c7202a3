"""The saturable one-compartment kernel against independent references.

References: scipy's solve_ivp (DOP853, rtol 1e-13, restarted at every dose,
depot and central both ODE states), the linear closed form of
:mod:`pkpd.one_compartment` when vmax -> 0, and five-point central finite
differences of the solve_ivp reference for the sensitivities.
"""

from __future__ import annotations

import subprocess
import sys

import numba
import numpy as np
import pytest
from scipy.integrate import solve_ivp

from pkpd import OneCompartmentSaturable, PKPDInputError
from pkpd.one_compartment import OneCompartmentOral
from pkpd.regimen import Dose, Regimen
from pkpd.saturable import OK, conc_sensitivities

NAMES = ("ka", "cl", "v", "vmax", "km")


def reference(theta, dose_times, amounts, times):
    """Concentrations (ng/mL), (n_sets, T), for each parameter row of ``theta``
    (n_sets, 5), all integrated together by solve_ivp, restarted at each dose."""
    theta = np.atleast_2d(np.asarray(theta, float))
    ka, cl, v, vmax, km = theta.T

    def rhs(t, y):
        ag, ac = y[0::2], y[1::2]
        c = 1000.0 * ac / v
        d = np.empty_like(y)
        d[0::2] = -ka * ag
        d[1::2] = ka * ag - cl / v * ac - vmax * c / (km + c)
        return d

    times = np.asarray(times, float)
    out = np.zeros((theta.shape[0], times.size))
    y = np.zeros(2 * theta.shape[0])
    ends = list(dose_times[1:]) + [max(times[-1], dose_times[-1])]
    for i, (start, end) in enumerate(zip(dose_times, ends)):
        y[0::2] += amounts[i]
        last = i == len(dose_times) - 1
        sel = (times >= start) & ((times < end) | last)
        grid = np.unique(np.r_[times[sel], end])
        if end > start:
            r = solve_ivp(rhs, (start, end), y, t_eval=grid, rtol=1e-13, atol=1e-40, method="DOP853")
            assert r.success
            at = np.searchsorted(grid, times[sel])
            out[:, sel] = 1000.0 * r.y[1::2, at] / v[:, None]
            y = r.y[:, -1].copy()
        else:
            out[:, sel] = 1000.0 * y[1::2, None] / v[:, None]
    return out


def kernel(theta, dose_times, amounts, times, sensitivities=True):
    times = np.asarray(times, float)
    conc = np.empty(times.size)
    sens = np.empty((times.size, 5 if sensitivities else 0))
    status = conc_sensitivities(*map(float, theta), np.asarray(dose_times, float), np.asarray(amounts, float),
                                times, conc, sens)
    assert status == OK
    return conc, sens


def assert_close(conc, ref, rtol):
    """Relative error <= rtol wherever the reference is above 1e-8 of its peak
    (below that the references themselves are not relatively exact), and
    within rtol * 1e-8 * peak everywhere."""
    peak = ref.max()
    big = ref > 1e-8 * peak
    rel = np.abs(conc[big] / ref[big] - 1)
    assert rel.max() <= rtol, (rel.max(), np.flatnonzero(big)[rel.argmax()])
    assert np.abs(conc[~big] - ref[~big]).max(initial=0.0) <= rtol * 1e-8 * peak


SINGLE_TIMES = np.array([0, 0.25, 1, 2, 3, 4, 6, 8, 10, 12, 24, 36, 48, 72, 96, 120.0])
#: (ka, cl, v, vmax, km): healthy-like values, fast absorption, strong and
#: weak saturation, Km huge (linear through vmax/km) and tiny (zero-order).
PARAMETER_SETS = [
    (0.3, 7.66, 265.0, 5.0, 50.0),
    (1.5, 2.0, 80.0, 2.0, 500.0),
    (0.1, 15.0, 400.0, 20.0, 10.0),
    (0.3, 7.66, 265.0, 3.0, 1e6),
    (0.3, 7.66, 265.0, 0.5, 0.1),
]


@pytest.mark.parametrize("theta", PARAMETER_SETS)
@pytest.mark.parametrize("dose", [2.5, 10.0, 40.0])
def test_single_dose_matches_solve_ivp(theta, dose):
    conc, _ = kernel(theta, [0.0], [dose], SINGLE_TIMES, sensitivities=False)
    assert conc[0] == 0.0
    assert_close(conc, reference(theta, np.array([0.0]), [dose], SINGLE_TIMES)[0], 1e-8)


@pytest.mark.parametrize("theta", PARAMETER_SETS[:3] + PARAMETER_SETS[4:])
@pytest.mark.parametrize("dose", [2.5, 40.0])
def test_daily_doses_match_solve_ivp(theta, dose):
    dose_times = np.arange(14) * 24.0
    times = np.r_[np.arange(0, 14 * 24, 6.0), 14 * 24 + SINGLE_TIMES[1:]]  # includes every dose time
    conc, _ = kernel(theta, dose_times, np.full(14, dose), times)
    ref = reference(theta, dose_times, np.full(14, dose), times)[0]
    assert_close(conc, ref, 1e-8)
    fast, _ = kernel(theta, dose_times, np.full(14, dose), times, sensitivities=False)
    assert_close(fast, ref, 1e-8)


def test_uneven_doses_and_reports_before_the_first_dose():
    theta = PARAMETER_SETS[0]
    dose_times, amounts = np.array([5.0, 5.0, 30.0, 31.5, 200.0]), np.array([10.0, 2.5, 40.0, 0.0, 7.5])
    times = np.array([0.0, 4.0, 5.0, 6.0, 30.0, 31.5, 50.0, 199.0, 200.0, 260.0])
    conc, _ = kernel(theta, dose_times, amounts, times)
    assert (conc[:2] == 0).all()
    keep = np.flatnonzero(amounts > 0)
    assert_close(conc, reference(theta, dose_times[keep], amounts[keep], times)[0], 1e-8)


@pytest.mark.parametrize("ka, cl, v", [(0.34, 7.66, 265.0), (2.0, 1.0, 50.0), (0.05, 20.0, 300.0)])
def test_vanishing_vmax_is_the_linear_closed_form(ka, cl, v):
    regimen = Regimen.from_doses(np.arange(14) * 24.0, np.linspace(2.5, 40.0, 14))
    times = np.arange(0.5, 16 * 24, 1.5)
    linear = OneCompartmentOral(ka=ka, cl=cl, v=v).concentration(regimen, times)
    conc, _ = kernel((ka, cl, v, 1e-13, 50.0), regimen.times, regimen.amounts, times)
    assert_close(conc, linear, 1e-9)


def five_point(theta, j, h, dose_times, amounts, times):
    """d conc / d theta_j by the five-point central difference with step h (error O(h^4))."""
    rows = []
    for m in (-2, -1, 1, 2):
        t = np.array(theta, float)
        t[j] += m * h
        rows.append(t)
    c = reference(np.array(rows), dose_times, amounts, times)
    return (c[0] - 8 * c[1] + 8 * c[2] - c[3]) / (12 * h)


@pytest.mark.parametrize("theta", [PARAMETER_SETS[0], PARAMETER_SETS[2], (0.3, 7.66, 265.0, 1e-6, 50.0),
                                   PARAMETER_SETS[4]])
def test_sensitivities_match_finite_differences(theta):
    dose_times, amounts = np.arange(3) * 24.0, np.array([5.0, 40.0, 20.0])
    times = np.r_[2.0, 8.0, 24.0, 30.0, 48.0, 56.0, 96.0, 120.0]
    conc, sens = kernel(theta, dose_times, amounts, times)
    scale = np.array([theta[0], theta[1], theta[2], max(theta[3], theta[1] * theta[4] / 1000), theta[4]])
    for j, name in enumerate(NAMES):
        fd = five_point(theta, j, 1e-3 * scale[j], dose_times, amounts, times)
        # In log-parameter units, relative to the sensitivity itself or to C, whichever is larger.
        err = np.abs(scale[j] * (sens[:, j] - fd)) / np.maximum(np.abs(scale[j] * fd), conc)
        assert err.max() <= 1e-7, (name, err.max())


def test_no_doses_and_no_times():
    conc, sens = kernel(PARAMETER_SETS[0], [], [], [1.0, 2.0])
    assert (conc == 0).all() and (sens == 0).all()
    conc, _ = kernel(PARAMETER_SETS[0], [0.0], [5.0], [])
    assert conc.size == 0


@numba.njit
def _from_compiled_code(theta, dose_times, amounts, times):
    conc = np.empty(times.size)
    sens = np.empty((times.size, 5))
    status = conc_sensitivities(theta[0], theta[1], theta[2], theta[3], theta[4], dose_times, amounts, times,
                                conc, sens)
    return status, conc, sens


def test_callable_from_compiled_code():
    theta = np.array(PARAMETER_SETS[0])
    dose_times, amounts, times = np.array([0.0, 24.0]), np.array([5.0, 5.0]), np.array([8.0, 30.0])
    status, conc, sens = _from_compiled_code(theta, dose_times, amounts, times)
    want, want_sens = kernel(theta, dose_times, amounts, times)
    assert status == OK
    np.testing.assert_array_equal(conc, want)
    np.testing.assert_array_equal(sens, want_sens)


# ---------------------------------------------------------------- the model class

SUBJECTS = dict(ka=np.array([0.38, 1.2, 0.2]), cl=np.array([7.66, 3.0, 12.0]), v=np.array([420.0, 150.0, 600.0]),
                vmax=np.array([0.0135, 2.0, 5.0]), km=np.array([0.2, 30.0, 300.0]))


def _rows():
    return np.stack([SUBJECTS[n] for n in NAMES], axis=1)


def test_population_concentrations_match_solve_ivp():
    p = OneCompartmentSaturable.parameter_arrays(**SUBJECTS)
    regimen = Regimen.from_doses([0.0, 24.0, 30.0, 72.0], [5.0, 40.0, 2.5, 7.5])
    times = np.array([0.0, 1.0, 8.0, 24.0, 30.0, 48.0, 72.0, 100.0, 200.0])
    c = OneCompartmentSaturable.concentrations(p, regimen, times)
    for s, theta in enumerate(_rows()):
        assert_close(c[s], reference(theta, regimen.times, regimen.amounts, times)[0], 1e-8)
    scalar = OneCompartmentSaturable(**{k: float(v[0]) for k, v in SUBJECTS.items()}).concentration(regimen, times)
    np.testing.assert_array_equal(scalar, c[0])


def test_steady_state_records_are_the_limit_of_a_long_train():
    p = OneCompartmentSaturable.parameter_arrays(**SUBJECTS)
    t0 = 79 * 24.0
    after = np.array([0.0, 6.0, 24.0])
    times = t0 + after

    def at_t0(*doses):
        return OneCompartmentSaturable.concentrations(p, Regimen(list(doses)), times)

    ss = at_t0(Dose(t0, 7.5, ss=1, ii=24.0))
    train = OneCompartmentSaturable.concentrations(p, Regimen.daily(7.5, 80), times)  # 1e-15 of the transient left
    np.testing.assert_allclose(ss, train, rtol=1e-9)
    # SS=1 discards what earlier doses left; SS=2 adds to it (NONMEM); a reset empties the system.
    earlier = Dose(t0 - 5.0, 40.0)
    np.testing.assert_allclose(at_t0(earlier, Dose(t0, 7.5, ss=1, ii=24.0)), ss, rtol=1e-10)
    two = at_t0(earlier, Dose(t0, 7.5, ss=2, ii=24.0))
    for s, theta in enumerate(_rows()):
        ag_ss = 7.5 / -np.expm1(-theta[0] * 24.0)
        ac_ss = ss[s, 0] * theta[2] / 1000.0
        want = _from_amounts(theta, _amounts_after(theta, 40.0, 5.0) + np.array([ag_ss, ac_ss]), after)
        np.testing.assert_allclose(two[s], want, rtol=1e-8)
    np.testing.assert_allclose(at_t0(earlier, Dose(t0, 7.5, reset=True)), at_t0(Dose(t0, 7.5)), rtol=1e-10)


def _rhs(theta):
    ka, cl, v, vmax, km = theta

    def rhs(t, y):
        c = 1000.0 * y[1] / v
        return [-ka * y[0], ka * y[0] - cl / v * y[1] - vmax * c / (km + c)]

    return rhs


def _amounts_after(theta, dose, hours):
    r = solve_ivp(_rhs(theta), (0.0, hours), [dose, 0.0], rtol=1e-13, atol=1e-40, method="DOP853")
    return r.y[:, -1]


def _from_amounts(theta, y0, times):
    r = solve_ivp(_rhs(theta), (0.0, times[-1]), y0, t_eval=times, rtol=1e-13, atol=1e-40, method="DOP853")
    return 1000.0 * r.y[1] / theta[2]


def test_run_steps_matches_solve_ivp():
    """A plan like the platelet solver's: doses, steps of two kinds, reports; from a non-empty start."""
    p = OneCompartmentSaturable.parameter_arrays(**SUBJECTS)
    start = np.array([[2.0, 1.0], [0.0, 0.5], [0.0, 0.0]])
    a = start.copy()
    ops = np.array([0, 1, 1, 2, 0, 0, 1, 1, 1], np.int64)
    args = np.array([0, 0, 1, 0, 1, 0, 1, 0, 1], np.int64)
    amounts = np.array([[5.0, 40.0], [2.5, 7.5], [10.0, 0.0]])
    offsets = np.array([[0.0, 0.5, 2.0, 6.0], [0.0, 8.0, 16.0, 24.0]])
    out = OneCompartmentSaturable.run_steps(p, a, ops, args, amounts, offsets, 0)
    assert out.shape == (3, 5, 4)
    for s, theta in enumerate(_rows()):
        y, rows = start[s].copy(), []
        for o, arg in zip(ops, args):
            if o == 0:
                y[0] += amounts[s, arg]
            elif o == 1:
                r = solve_ivp(_rhs(theta), (0.0, offsets[arg, -1]), y, t_eval=offsets[arg], rtol=1e-13, atol=1e-40,
                              method="DOP853")
                rows.append(1000.0 * r.y[1] / theta[2])
                y = r.y[:, -1].copy()
        np.testing.assert_allclose(out[s], np.array(rows), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(a[s], y, rtol=1e-9)


def test_linear_part_and_its_limits():
    """propagators/rate_matrix: the linear part above Km (elimination cl/v, the
    saturable path removing ~vmax); concentrations follow cl/v + vmax/(km/1000 v)
    far below Km and cl/v far above it (with vmax/(v C) -> 0)."""
    p = OneCompartmentSaturable.parameter_arrays(**SUBJECTS)
    k_high = SUBJECTS["cl"] / SUBJECTS["v"]
    k0 = k_high + SUBJECTS["vmax"] / (SUBJECTS["km"] / 1000 * SUBJECTS["v"])
    K = OneCompartmentSaturable.rate_matrix(p)
    np.testing.assert_allclose(K[:, 1, 1], -k_high)
    P = OneCompartmentSaturable.propagators(p, np.array([3.0]))
    np.testing.assert_allclose(P[:, 0, 1, 1], np.exp(-3.0 * k_high))
    # A dose of 1e-9 mg stays far below Km: its decay after absorption is the low-concentration rate.
    c = OneCompartmentSaturable.concentrations(p, Regimen.single(1e-9), np.array([200.0, 201.0]))
    slow = np.minimum(k0, SUBJECTS["ka"])
    np.testing.assert_allclose(np.log(c[:, 0] / c[:, 1]), slow, rtol=1e-4)


def test_bad_parameters_are_refused():
    with pytest.raises(PKPDInputError, match="vmax"):
        OneCompartmentSaturable(ka=0.3, cl=7.66, v=420.0, vmax=-1.0, km=0.2)


CACHE_PROBE = """
import warnings
import numpy as np
from pkpd import saturable
warnings.simplefilter("error")  # numba warns when a kernel cannot be cached
c = np.empty(1)
saturable.conc_sensitivities(0.38, 7.66, 420.0, 0.0135, 0.2, np.zeros(1), np.ones(1), np.ones(1), c, np.empty((1, 5)))
stats = saturable.conc_sensitivities.stats
print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
"""


def test_the_kernel_is_loaded_from_the_disk_cache_in_a_new_process():
    """A jitted right-hand side passed to pkpd.ode's stepper must not make the kernel uncacheable."""
    for _ in range(2):  # the first may compile (a cold cache); the second must load
        out = subprocess.run([sys.executable, "-c", CACHE_PROBE], capture_output=True, text=True, check=True)
    assert tuple(map(int, out.stdout.split())) == (1, 0), out.stdout
