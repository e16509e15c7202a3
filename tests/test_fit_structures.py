"""The fitting kernels of the PK structures: ``unit_response`` / ``unit_response_ss``
of the one-compartment model against the textbook Bateman function (an
independent closed form), its derivatives against central finite differences
of that formula, the steady state against a long explicit train of doses; and
the dispatch of :mod:`pkpd.popfit.structures` / the generic loops of
:mod:`pkpd.popfit.pk_op` against the PK models' own concentrations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pkpd.checks import PKPDInputError
from pkpd.exposure import MG_PER_L_TO_NG_PER_ML
from pkpd.nonmem import read_nonmem
from pkpd.one_compartment import OneCompartmentOral, unit_response, unit_response_ss
from pkpd.popfit import Param, PopPKModel, structures
from pkpd.popfit.design import PLATELET_CMT, dose_design, flatten
from pkpd.popfit.pk_op import conc_vjp, concentrations_numpy, design_arrays
from pkpd.popfit.pkpd_model import block_regimens
from pkpd.regimen import Dose, Regimen
from pkpd.two_compartment import TwoCompartmentOral


def _textbook(t, ka, cl, v):
    """C (mg/L) after 1 mg: ka / (V (ka - k)) (e^{-k t} - e^{-ka t}); ka t e^{-k t} / V at ka == k."""
    k = cl / v
    if ka == k:
        return ka * t * np.exp(-k * t) / v
    return ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))


def _fd(f, p, rel=1e-6):
    """Central finite differences of f at p, one parameter at a time."""
    out = []
    for i in range(len(p)):
        h = rel * p[i]
        up, down = list(p), list(p)
        up[i] += h
        down[i] -= h
        out.append((f(up) - f(down)) / (2 * h))
    return np.array(out)


@pytest.mark.parametrize("ka", [1.2, 0.05, 0.3])  # above, below k = 0.1/h and far from it
@pytest.mark.parametrize("t", [0.0, 0.5, 6.0, 72.0])
def test_unit_response_is_the_bateman_function_with_its_gradient(ka, t):
    p = np.array([ka, 5.0, 50.0])
    grad = np.empty(3)
    value = unit_response(t, p, grad)
    np.testing.assert_allclose(value, _textbook(t, *p), rtol=1e-12, atol=1e-300)
    np.testing.assert_allclose(grad, _fd(lambda q: _textbook(t, *q), list(p)), rtol=1e-6, atol=1e-12)


def test_unit_response_at_ka_equal_k_is_the_limit():
    """At ka == k the divided difference D = (e^{-k t} - e^{-ka t})/(ka - k) is t e^{-k t}
    and its derivative in either rate -t^2 e^{-k t}/2 (Taylor expansion about the tie)."""
    ka, cl, v = 0.1, 5.0, 50.0  # k = cl / v = 0.1 = ka
    k = cl / v
    grad = np.empty(3)
    for t in (0.5, 10.0, 100.0):
        e = np.exp(-k * t)
        c = ka * t * e / v
        dd_rate = -t * t * e / 2
        dc_dk = ka * dd_rate / v
        want = [(t * e + ka * dd_rate) / v, dc_dk / v, -c / v - dc_dk * k / v]
        np.testing.assert_allclose(unit_response(t, np.array([ka, cl, v]), grad), c, rtol=1e-13)
        np.testing.assert_allclose(grad, want, rtol=1e-12)


def _train(tau, ii, ka, cl, v, n=4000):
    """The steady state as an explicit sum over n past doses (mg/L per mg), and
    the sum of the single-dose gradients (tested above)."""
    value, grad, g = 0.0, np.zeros(3), np.empty(3)
    for m in range(n):
        value += _textbook(tau + m * ii, ka, cl, v)
        unit_response(tau + m * ii, np.array([ka, cl, v]), g)
        grad += g
    return value, grad


@pytest.mark.parametrize("ka", [1.2, 0.1, 0.02])  # 0.1 = k
@pytest.mark.parametrize("tau", [0.0, 3.0, 24.0])
def test_unit_response_ss_is_the_sum_of_an_infinite_train(ka, tau):
    p, ii = np.array([ka, 5.0, 50.0]), 24.0
    grad = np.empty(3)
    value = unit_response_ss(tau, ii, p, grad)
    want, want_grad = _train(tau, ii, *p)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-11, atol=1e-14 * np.abs(want_grad).max())


@pytest.mark.parametrize("structure, values", [
    (OneCompartmentOral, {"ka": [0.9, 0.2], "cl": [5.0, 8.0], "v": [40.0, 90.0]}),
    (TwoCompartmentOral, {"ka": [0.9, 0.2], "cl": [5.0, 8.0], "v1": [40.0, 20.0], "q": [3.0, 12.0],
                          "v2": [60.0, 100.0]}),
])
def test_generic_loop_equals_each_model_s_own_concentrations(structure, values):
    """The compiled loop (structure code -> unit_response) against the model's
    dose-to-dose propagation (pkpd.exposure), with a reset, a steady-state train
    and several doses; its gradient against finite differences of itself."""
    regimens = (Regimen((Dose(0.0, 100.0), Dose(12.0, 50.0), Dose(40.0, 80.0, reset=True))),
                Regimen((Dose(0.0, 30.0, ss=1, ii=24.0), Dose(24.0, 30.0), Dose(48.0, 60.0))))
    subject = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    times = np.array([1.0, 12.0, 30.0, 60.0, 2.0, 24.0, 50.0, 70.0])
    design = dose_design(regimens, subject, times)
    indiv = {k: np.array(v) for k, v in values.items()}
    got = concentrations_numpy(structure, indiv, subject, design, MG_PER_L_TO_NG_PER_ML)
    p = structure.parameter_arrays(**indiv)
    for s, reg in enumerate(regimens):
        want = structure.concentrations({k: a[s:s + 1] for k, a in p.items()}, reg, times[subject == s])[0]
        np.testing.assert_allclose(got[subject == s], want, rtol=1e-10)

    code = structures.code(structure)
    params = np.stack([indiv[n] for n in structure.PARAMETERS])
    g = np.linspace(-1.0, 1.0, times.size)
    vjp = conc_vjp(code, params, subject, *design_arrays(design), 1.0, g)
    total = lambda q: float(g @ concentrations_numpy(  # noqa: E731
        structure, dict(zip(structure.PARAMETERS, q)), subject, design, 1.0))
    fd = np.array([_fd(lambda q: total(np.array(q).reshape(params.shape)), list(params.ravel()))]).reshape(params.shape)
    np.testing.assert_allclose(vjp, fd, rtol=1e-5, atol=1e-9 * np.abs(fd).max())


def test_pk_structure_is_checked():
    with pytest.raises(PKPDInputError, match="must include 'q'"):
        PopPKModel(pk=TwoCompartmentOral, params=(Param("ka", 1.0), Param("cl", 5.0), Param("v1", 30.0),
                                                  Param("v2", 60.0)))
    with pytest.raises(PKPDInputError, match="pk must be a PK model class"):
        PopPKModel(pk="two-compartment")
    with pytest.raises(PKPDInputError, match="has no fitting kernels"):
        structures.code(dict)


def test_platelet_doses_are_the_data_regimens():
    """The platelet observations' doses are the data's Regimen doses themselves (up to each
    subject's last count), not times rebuilt from the padded design: a dose at 24 + 1/3 h
    keeps its exact time."""
    t_dose = 24.0 + 1.0 / 3.0
    table = pd.DataFrame({
        "ID": 1, "TIME": [0.0, 0.0, t_dose, 30.0, 48.0, 500.0], "AMT": [5.0, 0, 7.5, 0, 0, 5.0],
        "EVID": [1, 0, 1, 0, 0, 1], "MDV": [1, 0, 1, 0, 0, 1], "CMT": [1, 3, 1, 2, 3, 1],
        "DV": [0, 250.0, 0, 12.0, 260.0, 0]})
    data = read_nonmem(table, dv_unit="ng/mL")
    block = flatten(data, cmts=(2, PLATELET_CMT)).blocks[PLATELET_CMT]
    subjects, regimens = block_regimens(block)
    assert list(subjects) == [0]
    assert regimens[0].doses == data.subjects[0].regimen.doses[:2]  # exact times; the 500 h dose is after the counts
