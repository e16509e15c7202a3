"""Bad two-compartment PK parameters: impossible derived rates and rates
outside the platelet solver's validated range are refused, naming the rate,
the value and the fix."""

from __future__ import annotations

import numpy as np

from bad_inputs import Case
from pkpd import PKPDInputError, Regimen, simulate
from pkpd.population import PKPDModel
from pkpd.two_compartment import TwoCompartmentOral

E = PKPDInputError
PK = dict(ka=0.45, cl=0.668, v1=8.76, q=0.399, v2=11.3)
PD = dict(emax=10.0, ec50=1500.0, hill=1.0, n_transit=4, mtt=168.0, gamma=0.0, plt0=30.0, lifespan=48.0)


def _simulate(**changes):
    model = PKPDModel(name="two-compartment", population="test", typical={**PK, **PD, **changes}, pk=TwoCompartmentOral)
    return simulate(model, Regimen.single(1.0), [1.0])


CASES = [
    Case("two-compartment-k12-underflows", lambda _: TwoCompartmentOral(**{**PK, "v1": 1e300, "q": 1e-300}), E,
         ("k12 = q/v1", "0.0", "q=1e-300", "v1=1e+300", "L/h")),
    Case("two-compartment-k21-overflows", lambda _: TwoCompartmentOral(**{**PK, "v2": 1e-300, "q": 1e300}), E,
         ("k21 = q/v2", "inf", "v2=1e-300")),
    Case("two-compartment-negative-q", lambda _: TwoCompartmentOral(**{**PK, "q": -1.0}), E, ("q", "-1.0")),
    Case("two-compartment-nan-v2", lambda _: TwoCompartmentOral(**{**PK, "v2": np.nan}), E, ("v2", "nan")),
    Case("two-compartment-one-compartment-names", lambda _: TwoCompartmentOral.parameter_arrays(ka=1, cl=1, v=1, q=1, v2=1),
         E, ("unknown", "'v'", "v1")),
    Case("two-compartment-alpha-beyond-solver", lambda _: _simulate(q=2000.0, v1=5.0), E,
         ("disposition rate alpha", "577.08", "PARAMETER_LIMITS")),
    Case("two-compartment-ka-beyond-solver", lambda _: _simulate(ka=500.0), E, ("ka", "500")),
]
