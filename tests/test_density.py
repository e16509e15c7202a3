"""pkpd's compiled log density (pkpd.popfit.density) against PyMC's own.

The reference is the PyMC model that :func:`pkpd.popfit.build_model` writes,
compiled by PyTensor (its log density with the Jacobians of the log
transforms, and PyTensor's automatic gradient of it) -- an independent
implementation of the same density.  PyMC's HalfNormal rounds its normalising
constant by ~2e-9, so the log densities are compared up to a constant (their
differences between points) and absolutely to 1e-7; the gradients to 1e-9
relative.  Models cover every branch: combined, proportional and additive
error; BLQ rows (M3); free and fixed covariate exponents; parameters with and
without IIV, centred and non-centred; the ka > k barrier; platelets, joint
and with fixed PK (sequential).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special

pytest.importorskip("pymc")

from pkpd.checks import PKPDInputError  # noqa: E402
from pkpd.nonmem import load_theophylline, read_nonmem  # noqa: E402
from pkpd.popfit import Covariate, Param, PopPKModel, ResidualError, build_model, fit, theophylline_model  # noqa: E402
from pkpd.popfit.density import CompiledDensity, _log_ndtr, supports  # noqa: E402
from pkpd.popfit.pkpd_model import hetrombopag_pkpd_model, sequential_pd_model  # noqa: E402
from pkpd.popfit.simulate import PopulationTruth, simulate_study  # noqa: E402
from pkpd.regimen import Regimen  # noqa: E402
from studies import pkpd_records, small_blq_dataset  # noqa: E402
from two_compartment_study import two_compartment_spec, two_compartment_study  # noqa: E402


def _pymc_functions(built):
    from pytensor.compile.mode import Mode

    m = built.pymc_model
    mode = Mode(linker="py", optimizer="fast_compile")  # no C compilation: the reference only needs to be right
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # one term per variable, summed here (the Python linker cannot add more than 32 terms in one node)
        terms = m.compile_fn(m.logp(sum=False), inputs=m.value_vars, on_unused_input="ignore", mode=mode)
        return (lambda point: sum(float(np.sum(t)) for t in terms(point))), m.compile_dlogp(mode=mode)


def _pymc_point(density, x):
    return {f"{name}_log__" if exp else name: x[pos].reshape(shape) for name, pos, exp, shape in density.slots}


def _pymc_gradient_in_our_order(built, density, flat):
    m = built.pymc_model
    sizes = {v.name: int(np.prod(m.initial_point()[v.name].shape, dtype=int)) for v in m.value_vars}
    parts, at = {}, 0
    for v in m.value_vars:
        parts[v.name] = flat[at:at + sizes[v.name]]
        at += sizes[v.name]
    return np.concatenate([parts[f"{name}_log__" if exp else name] for name, _, exp, _ in density.slots])


def _check_against_pymc(built, seed=0, n_points=4):
    density = CompiledDensity.of(built)
    logp_ref, dlogp_ref = _pymc_functions(built)
    ours, refs = [], []
    for k in range(n_points):  # jittered starting points and prior draws: far apart, some far in the tails
        x = density.initial_point([seed, k], init="prior" if k % 2 else "support_point")
        value, grad = density(x)
        point = _pymc_point(density, x)
        ref_grad = _pymc_gradient_in_our_order(built, density, dlogp_ref(point))
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-9 * np.abs(ref_grad).max())
        ours.append(value)
        refs.append(float(logp_ref(point)))
    ours, refs = np.array(ours), np.array(refs)
    np.testing.assert_allclose(ours, refs, rtol=1e-13, atol=1e-7)
    np.testing.assert_allclose(ours - ours[0], refs - refs[0], rtol=0, atol=1e-9 * np.abs(refs).max())
    return density


# ================================================================ concentrations
def test_theophylline_density_and_gradient_equal_pymc():
    _check_against_pymc(build_model(theophylline_model(), load_theophylline()))


def test_two_compartment_density_and_gradient_equal_pymc():
    """The compiled density of a two-compartment model (its unit_response kernel through the
    generic loop), with a centred v1, a non-centred cl, a free weight exponent and the ka > k barrier."""
    data, _ = two_compartment_study(n_subjects=4, seed=5)
    spec = two_compartment_spec(covariates=(Covariate("cl", "WT", 70.0, 0.75, 0.25),), ka_above_k=True)
    spec = spec.with_param("cl", centred=False)
    built = build_model(spec, data)
    assert supports(built) is None
    _check_against_pymc(built, seed=4)


@pytest.mark.parametrize("error", ["combined", "proportional", "additive"])
def test_blq_centred_fixed_covariate_and_no_iiv_equal_pymc(error):
    """M3 rows, a fixed and a free exponent, ka without IIV, v centred, and the ka > k barrier."""
    spec = PopPKModel(
        params=(Param("ka", 1.0, 0.7, None), Param("cl", 4.0, 0.8, 0.5), Param("v", 40.0, 0.6, 0.3, centred=True)),
        covariates=(Covariate("cl", "WT", 70.0, 0.75, None), Covariate("v", "WT", 70.0, 1.0, 0.2)),
        error=ResidualError(error, prop_scale=0.2, add_scale=0.1), conc_unit="mg/L", ka_above_k=True,
    )
    built = build_model(spec, small_blq_dataset(6))
    assert built.data.blocks[2].n_blq > 0, "the test needs BLQ rows"
    density = _check_against_pymc(built, seed=1)
    # the etas of the expanded draws are PyMC's Deterministics
    from pytensor.compile.mode import Mode

    x = density.initial_point(5, init="prior")
    names = ["eta_cl", "eta_v", "cl", "omega_v", "log_v_ind"]
    m = built.pymc_model
    outputs = m.replace_rvs_by_values([m[n] for n in names])  # as functions of the value variables
    fn = m.compile_fn(outputs, inputs=m.value_vars, on_unused_input="ignore",
                      mode=Mode(linker="py", optimizer="fast_compile"))
    expected = fn(_pymc_point(density, x))
    got = density.expand(x)
    for name, value in zip(names, expected):
        np.testing.assert_allclose(got[name], value, rtol=1e-12)


def test_log_normal_cdf_matches_scipy_over_the_whole_range():
    z = np.concatenate([np.linspace(-300, -30.001, 200), np.linspace(-30, 40, 2000)])
    np.testing.assert_allclose([_log_ndtr(v) for v in z], special.log_ndtr(z), rtol=5e-13, atol=1e-300)


# ================================================================ platelets
@pytest.fixture(scope="module")
def pkpd_data():
    return read_nonmem(pkpd_records(), dv_unit="ng/mL")


@pytest.mark.parametrize("centred_pk", [True, False])
def test_joint_pkpd_density_equals_pymc(pkpd_data, centred_pk):
    built = build_model(hetrombopag_pkpd_model(centred_pk=centred_pk), pkpd_data)
    assert CompiledDensity.of(built).platelets
    _check_against_pymc(built, seed=2)


def test_sequential_pd_density_equals_pymc(pkpd_data):
    fixed = pd.DataFrame({"ka": [0.25, 0.5, 0.3], "cl": [7.0, 9.0, 5.0], "v": [260.0, 300, 200]},
                         index=pd.Index([3, 2, 1], name="ID"))
    spec = sequential_pd_model(hetrombopag_pkpd_model(centred_pk=False), fixed, pkpd_data)
    _check_against_pymc(build_model(spec, pkpd_data), seed=3)


# ================================================================ what it does not cover
def test_uncovered_models_use_the_pytensor_graph():
    built = build_model(theophylline_model(correlated_iiv=True), load_theophylline())
    assert supports(built) == "correlated IIV (LKJ)"
    with pytest.raises(PKPDInputError, match="correlated IIV"):
        fit(built, None, draws=10, tune=10, chains=1, seed=1, density="compiled", progress=False, verbose=False)
    with pytest.raises(PKPDInputError, match="density must be"):
        fit(built, None, draws=10, tune=10, chains=1, seed=1, density="numba", progress=False, verbose=False)
    with pytest.raises(ValueError, match="does not cover"):
        CompiledDensity.of(built)
    truth = PopulationTruth(ka=0.8, cl=5.0, v=50.0, sigma_prop=0.1, sigma_add=0.02)
    data, _ = simulate_study(truth, 3, Regimen.daily(100.0, 3, steady_state=True), [2.0, 6.0, 24.0], seed=1,
                             conc_unit="mg/L")
    spec = PopPKModel(error=ResidualError("combined"), conc_unit="mg/L")
    assert supports(build_model(spec, data, check_units=False)) == "steady-state doses"
