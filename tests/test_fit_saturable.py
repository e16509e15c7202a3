"""Fitting the saturable (Michaelis-Menten) one-compartment model: a nonlinear
PK model, predicted per dose episode by integrating the doses in sequence
(:func:`pkpd.popfit.pk_op.conc_jacobian`) with the kernel's forward sensitivities.

References: concentrations against ``scipy.integrate.solve_ivp`` of the ODE
(:mod:`saturable_study`); the compiled log density and its gradient against
central finite differences of itself and against PyMC's graph (the PyTensor
Op path, with PyTensor's gradient through the Op); a fit of simulated single
ascending doses (5-40 mg) recovers the truth.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

from saturable_study import (
    OMEGA,
    SIGMA_PROP,
    TRUTH,
    reference_concentrations,
    saturable_spec,
    saturable_study,
)

from pkpd.checks import PKPDInputError
from pkpd.popfit import build_model, diagnose, structures
from pkpd.popfit.model import prepare
from pkpd.popfit.design import dose_design
from pkpd.popfit.pk_op import conc_vjp, concentrations_numpy, design_arrays
from pkpd.regimen import Dose, Regimen
from pkpd.saturable import OneCompartmentSaturable

pytest.importorskip("pymc")


#: Sampling times of the recovery fit, h.
TIMES_72H = (0.5, 1.0, 2.0, 4.0, 8.0, 12.0, 24.0, 48.0, 72.0)


def _fd(f, x, h):
    """Central finite differences of the scalar f at x (step h per component)."""
    out = np.empty(x.size)
    for k in range(x.size):
        up, down = x.copy(), x.copy()
        up[k] += h[k]
        down[k] -= h[k]
        out[k] = (f(up) - f(down)) / (2 * h[k])
    return out


REGIMENS = (Regimen((Dose(0.0, 40.0), Dose(24.0, 20.0), Dose(60.0, 10.0, reset=True))),
            Regimen((Dose(2.0, 5.0), Dose(26.0, 5.0), Dose(50.0, 5.0))))
#: Observation rows deliberately out of time order and interleaved between subjects,
#: with one before the first dose (0), one at a dose time and one at the reset.
SUBJECT = np.array([0, 1, 0, 0, 1, 0, 1, 1, 0, 1])
TIMES = np.array([30.0, 26.0, 1.0, 60.0, 80.0, 90.0, 1.0, 3.0, 12.0, 51.0])
VALUES = {"ka": np.array([0.5, 1.2]), "cl": np.array([3.0, 6.0]), "v": np.array([200.0, 120.0]),
          "vmax": np.array([0.2, 0.05]), "km": np.array([15.0, 40.0])}


def test_sequential_loop_is_the_ode_per_episode_with_its_gradient():
    """Doses integrated in sequence per subject, a reset (EVID 4) starting a new
    episode from empty, against solve_ivp; the vector-Jacobian product against
    finite differences of the loop's own concentrations."""
    design = dose_design(REGIMENS, SUBJECT, TIMES)
    got = concentrations_numpy(OneCompartmentSaturable, VALUES, SUBJECT, design, 1000.0)  # ng/mL
    for s, reg in enumerate(REGIMENS):
        p = {k: v[s] for k, v in VALUES.items()}
        for i in np.flatnonzero(SUBJECT == s):
            doses = [d for d in reg.doses if d.time <= TIMES[i]]
            start = max([k for k, d in enumerate(doses) if d.reset] + [0])
            want = reference_concentrations(p, [d.time for d in doses[start:]] or [TIMES[i]],
                                            [d.amount for d in doses[start:]] or [0.0], [TIMES[i]])[0]
            np.testing.assert_allclose(got[i], want, rtol=1e-7, atol=1e-12)
    assert got[6] == 0.0  # subject 1 at 1 h, before its first dose at 2 h
    code = structures.code(OneCompartmentSaturable)
    params = np.stack([VALUES[n] for n in OneCompartmentSaturable.PARAMETERS])
    g = np.linspace(-1.0, 1.0, TIMES.size)
    vjp = conc_vjp(code, params, SUBJECT, *design_arrays(design), 1000.0, g)

    def total(q):
        values = dict(zip(OneCompartmentSaturable.PARAMETERS, q.reshape(params.shape)))
        return float(g @ concentrations_numpy(OneCompartmentSaturable, values, SUBJECT, design, 1000.0))

    fd = _fd(total, params.ravel(), 1e-5 * params.ravel()).reshape(params.shape)
    np.testing.assert_allclose(vjp, fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max())


@pytest.fixture(scope="module")
def sad():
    data, indiv = saturable_study(per_group=2, seed=3)
    return build_model(saturable_spec(), data), indiv


def _truth_point(density, indiv):
    """x at the true typical values, omegas and sigma, and each subject's true values."""
    x = density.initial_point(0)
    for name, pos, exp, _ in density.slots:
        if name in TRUTH:
            x[pos] = np.log(TRUTH[name])
        elif name.startswith("omega_"):
            x[pos] = np.log(OMEGA[name[6:]])
        elif name == "sigma_prop":
            x[pos] = np.log(SIGMA_PROP)
        elif name.startswith("log_") and name.endswith("_ind"):
            x[pos] = np.log(indiv[name[4:-4]].to_numpy())
    return x


def test_compiled_density_gradient_matches_finite_differences(sad):
    from pkpd.popfit.density import CompiledDensity, supports

    built, indiv = sad
    assert supports(built) is None
    density = CompiledDensity.of(built)
    x = _truth_point(density, indiv)
    for point in (x, x + np.random.default_rng(1).normal(0.0, 0.05, x.size)):
        value, grad = density(point)
        assert np.isfinite(value)
        fd = _fd(lambda q: density(q)[0], point, np.full(point.size, 1e-5))
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def test_compiled_density_equals_the_pymc_graph(sad):
    """The hand-written density against PyMC's model of the same spec (the Op path)."""
    from pytensor.compile.mode import Mode

    from pkpd.popfit.density import CompiledDensity

    built, indiv = sad
    density = CompiledDensity.of(built)
    m = built.pymc_model
    mode = Mode(linker="py", optimizer="fast_compile")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        terms = m.compile_fn(m.logp(sum=False), inputs=m.value_vars, on_unused_input="ignore", mode=mode)
        dlogp = m.compile_dlogp(mode=mode)
    sizes = {v.name: int(np.prod(m.initial_point()[v.name].shape, dtype=int)) for v in m.value_vars}
    x = _truth_point(density, indiv)
    values = []
    for point in (x, x + np.random.default_rng(2).normal(0.0, 0.1, x.size)):
        value, grad = density(point)
        named = {f"{n}_log__" if exp else n: point[pos].reshape(shape) for n, pos, exp, shape in density.slots}
        flat, parts, at = dlogp(named), {}, 0
        for v in m.value_vars:
            parts[v.name] = flat[at:at + sizes[v.name]]
            at += sizes[v.name]
        ref_grad = np.concatenate([parts[f"{n}_log__" if exp else n] for n, _, exp, _ in density.slots])
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-9 * np.abs(ref_grad).max())
        values.append((value, sum(float(np.sum(t)) for t in terms(named))))
    (a0, r0), (a1, r1) = values
    np.testing.assert_allclose([a0, a1], [r0, r1], rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(a1 - a0, r1 - r0, atol=1e-8 * abs(r0))


def test_steady_state_doses_are_refused_for_a_nonlinear_model():
    data, _ = saturable_study(per_group=1, seed=1)
    records = data.to_dataframe()
    dose = records.index[records["EVID"] == 1][0]
    records.loc[dose, ["SS", "II"]] = (1, 24.0)
    from pkpd.nonmem import read_nonmem

    with pytest.raises(PKPDInputError, match="SS=1"):
        prepare(saturable_spec(), read_nonmem(records, dv_unit="ng/mL"))


def test_fit_of_single_ascending_doses_recovers_the_truth():
    """Three subjects at each of 5, 10, 20, 40 mg, sampled to 72 h: every typical value
    (Vmax and Km included, identified by the dose-dependence of the profiles), the
    omegas and sigma in their 90% intervals, no divergences, R-hat < 1.1 (a short
    run: cl, vmax and km trade off along a ridge -- the low-concentration clearance
    cl + 1000 vmax / km is what one dose level fixes -- and mix slowly, bulk ESS
    ~35-60 of 600, at which R-hat itself scatters by a few hundredths; 1.1 asks
    only that the chains are not grossly apart, and pkpd.fit warns loudly).  The kernel integrates each subject with its sensitivities at
    rtol 1e-12 (~1 ms per subject and gradient), so the study is kept small
    (~110 s of sampling on two loaded cores)."""
    import pkpd

    pytest.importorskip("nutpie")
    data, _ = saturable_study(per_group=3, seed=11, times=TIMES_72H)
    built = build_model(saturable_spec(), data)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short run: ESS below the 400 of diagnose() is expected
        idata = pkpd.fit(built, None, draws=300, tune=600, chains=2, seed=5, target_accept=0.95, progress=False,
                         verbose=False)
    elapsed = time.perf_counter() - t0
    assert idata.attrs["density"] == "compiled"
    assert int(idata.sample_stats["diverging"].sum()) == 0
    truth = {**TRUTH, **{f"omega_{k}": v for k, v in OMEGA.items()}, "sigma_prop": SIGMA_PROP}
    assert diagnose(idata, var_names=list(truth)).max_rhat < 1.1
    post = idata.posterior
    for name, value in truth.items():
        lo, hi = np.quantile(post[name].values, [0.05, 0.95])
        assert lo <= value <= hi, f"{name}: truth {value} outside the 90% interval [{lo:.3g}, {hi:.3g}]"
    print(f"saturable fit: {elapsed:.0f} s")
