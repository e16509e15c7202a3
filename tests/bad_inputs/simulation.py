"""Bad simulation inputs: report times, population sizes, seeds and PK
parameters.  Every refusal comes before a subject is drawn or an array is
allocated: times past MAX_HORIZON_H, and results larger than
MAX_RESULT_BYTES, are refused by their size alone.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from bad_inputs import Case
from pkpd import OneCompartmentOral, PKPDInputError, Regimen, simulate, simulate_population
from pkpd.drugs import hetrombopag
from pkpd.pk import concentrations

E = PKPDInputError
REG = Regimen.daily(5, 3)
TIMES = [0.0, 24.0, 48.0]


def _model():
    return hetrombopag.model("healthy")


def _pop(times=TIMES, **kw):
    return lambda _: simulate_population(_model(), REG, times, **kw)


CASES = [
    # report times
    Case("simulation-times-1e9-h", lambda _: simulate(_model(), REG, [0, 1e9]), E, ("times", "1000000000", "MAX_HORIZON_H")),
    Case("simulation-times-nan", lambda _: simulate(_model(), REG, [0, np.nan, 48]), E, ("times", "nan", "element 1")),
    Case("simulation-times-unsorted", lambda _: simulate(_model(), REG, [0, 48, 24]), E, ("times", "24.0", "48.0")),
    Case("simulation-times-negative", lambda _: simulate(_model(), REG, [-1, 24]), E, ("times", "-1")),
    Case("simulation-times-2d", lambda _: simulate(_model(), REG, [[0, 24], [48, 72]]), E, ("times", "(2, 2)")),
    Case("simulation-times-empty", lambda _: simulate(_model(), REG, []), E, ("times", "(0,)")),
    Case("simulation-times-text", lambda _: simulate(_model(), REG, ["0", "24"]), E, ("times", "'0'")),
    Case("simulation-times-bool", lambda _: simulate(_model(), REG, [0.0, True]), E, ("times", "True")),
    Case("simulation-times-too-many", lambda _: simulate(_model(), REG, np.zeros(6_000_000)), E,
         ("6,000,000 report times", "GB", "MAX_RESULT_BYTES")),
    Case("simulation-population-times-past-horizon", _pop(n=10, seed=1, times=[0, 2e5]), E, ("times", "200000")),
    Case("simulation-regimen-not-a-regimen", lambda _: simulate(_model(), [5, 5], TIMES), E, ("regimen", "list")),
    # population size
    Case("simulation-population-too-large", _pop(n=10**7, seed=1, times=np.arange(0, 721, 24.0)), E,
         ("10,000,000 subjects", "31 report times", "GB", "fewer subjects")),
    Case("simulation-n-bool", _pop(n=True, seed=1), E, ("population size n", "True")),
    Case("simulation-n-float", _pop(n=10.0, seed=1), E, ("population size n", "10.0")),
    Case("simulation-n-fraction", _pop(n=2.5, seed=1), E, ("population size n", "2.5")),
    Case("simulation-n-zero", _pop(n=0, seed=1), E, ("population size n", "got 0")),
    Case("simulation-n-negative", _pop(n=-3, seed=1), E, ("population size n", "-3")),
    Case("simulation-n-text", _pop(n="100", seed=1), E, ("population size n", "'100'")),
    Case("simulation-n-and-parameters", lambda _: simulate_population(
        _model(), REG, TIMES, n=5, parameters=_model().typical_parameters().drop(columns="responder")), E, ("n=5", "parameters")),
    Case("simulation-parameters-not-a-frame", lambda _: simulate_population(_model(), REG, TIMES, parameters={"ka": [1.0]}),
         E, ("parameters", "dict")),
    Case("simulation-observed-text", _pop(n=5, seed=1, observed="no"), E, ("observed", "'no'")),
    # seeds
    Case("simulation-seed-negative", _pop(n=5, seed=-1), E, ("seed", "-1")),
    Case("simulation-seed-float", _pop(n=5, seed=1.5), E, ("seed", "1.5")),
    Case("simulation-seed-text", _pop(n=5, seed="abc"), E, ("seed", "'abc'")),
    Case("simulation-seed-bool", _pop(n=5, seed=True), E, ("seed", "True")),
    Case("simulation-seed-list", _pop(n=5, seed=[1, -2]), E, ("seed", "[1, -2]")),
    # PK parameters and the closed-form PK
    Case("simulation-pk-ka-zero", lambda _: OneCompartmentOral(ka=0.0), E, ("ka", "0.0")),
    Case("simulation-pk-ka-negative", lambda _: OneCompartmentOral(ka=-0.3), E, ("ka", "-0.3")),
    Case("simulation-pk-cl-nan", lambda _: OneCompartmentOral(cl=np.nan), E, ("cl", "nan")),
    Case("simulation-pk-v-inf", lambda _: OneCompartmentOral(v=np.inf), E, ("v", "inf")),
    Case("simulation-pk-ka-bool", lambda _: OneCompartmentOral(ka=True), E, ("ka", "True")),
    Case("simulation-pk-cl-text", lambda _: OneCompartmentOral(cl="7.66"), E, ("cl", "'7.66'")),
    Case("simulation-pk-subject-in-array", lambda _: OneCompartmentOral(cl=[7.66, -1.0]), E, ("cl", "-1.0", "element 1")),
    Case("simulation-pk-shapes-differ", lambda _: OneCompartmentOral(ka=[0.3, 0.4], cl=[1.0, 2.0, 3.0]), E,
         ("ka", "(2,)", "(3,)")),
    Case("simulation-pk-2d-parameters", lambda _: OneCompartmentOral(ka=np.ones((2, 2))), E, ("ka", "(2, 2)")),
    Case("simulation-pk-k-overflows", lambda _: OneCompartmentOral(cl=1e300, v=1e-300), E, ("cl/v", "inf", "1e+300")),
    Case("simulation-pk-times-past-horizon", lambda _: OneCompartmentOral().concentration(REG, [0, 1e9]), E,
         ("times", "1000000000")),
    Case("simulation-pk-times-text", lambda _: OneCompartmentOral().concentration(REG, ["0", "1"]), E, ("times", "'0'")),
    Case("simulation-pk-regimen-not-a-regimen", lambda _: concentrations([5], TIMES, 0.3, 7.0, 265.0), E, ("regimen", "list")),
    Case("simulation-pk-too-many-cells", lambda _: concentrations(REG, np.zeros(20_000), np.full(10_000, 0.3), 7.0, 265.0),
         E, ("10,000 subjects", "20,000 report times", "GB")),
]


def test_simulation_refusals_come_before_any_work():
    """Each refusal is immediate (measured < 0.1 s each; the bound leaves room
    for a loaded machine): nothing is drawn, allocated or stepped first."""
    _model()
    for case in CASES:
        start = time.perf_counter()
        with pytest.raises(case.error):
            case.call(None)
        assert time.perf_counter() - start < 1.0, case.id


def test_seed_kinds_that_numpy_takes_still_work():
    """A Generator or SeedSequence is a seed too, and the same int seed gives the same population."""
    model = _model()
    a = simulate_population(model, REG, TIMES, n=3, seed=np.random.default_rng(4), observed=False)
    b = simulate_population(model, REG, TIMES, n=3, seed=np.random.SeedSequence(4), observed=False)
    np.testing.assert_array_equal(a.cl.values, b.cl.values)
    c = simulate_population(model, REG, TIMES, n=3, seed=np.int64(4), observed=False)
    assert c.sizes == {"id": 3, "time": 3}
    for p in ("ka", "cl", "v", "plt0"):
        np.testing.assert_array_equal(a[p].values, c[p].values)
