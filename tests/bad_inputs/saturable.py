"""Bad inputs of the saturable (Michaelis-Menten) PK model: impossible
parameters, a missing one, a steady state that cannot converge, a too-stiff
system, a regimen that is not one."""

from __future__ import annotations

import numpy as np

from bad_inputs import Case
from pkpd import OneCompartmentSaturable, PKPDInputError, Regimen
from pkpd.regimen import Dose

E = PKPDInputError
PK = dict(ka=0.38, cl=7.66, v=420.0, vmax=0.0135, km=0.2)


def _conc(regimen, times=(1.0,), **changes):
    return OneCompartmentSaturable(**{**PK, **changes}).concentration(regimen, list(times))


CASES = [
    Case("saturable-negative-vmax", lambda _: OneCompartmentSaturable(**{**PK, "vmax": -1.0}), E, ("vmax", "-1.0")),
    Case("saturable-zero-km", lambda _: OneCompartmentSaturable(**{**PK, "km": 0.0}), E, ("km", "0.0")),
    Case("saturable-nan-ka", lambda _: OneCompartmentSaturable(**{**PK, "ka": np.nan}), E, ("ka", "nan")),
    Case("saturable-missing-km", lambda _: OneCompartmentSaturable.parameter_arrays(ka=0.38, cl=7.66, v=420.0, vmax=1.0),
         E, ("km", "missing")),
    Case("saturable-rate-underflows", lambda _: OneCompartmentSaturable(**{**PK, "vmax": 1e-300, "km": 1e300}), E,
         ("vmax/(km/1000 v)", "0.0", "vmax=1e-300", "km=1e+300")),
    Case("saturable-ss-cannot-converge", lambda _: _conc(Regimen([Dose(0.0, 5.0, ss=1, ii=1e-7)])), E,
         ("steady state", "II=1e-07", "did not converge")),
    Case("saturable-not-a-regimen", lambda _: _conc([(0.0, 5.0)]), E, ("regimen", "list")),
]
