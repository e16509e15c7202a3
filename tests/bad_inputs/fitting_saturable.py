"""Fitting the nonlinear (saturable) PK model: designs and specifications it cannot take.

Each case stops before any kernel is compiled or any sampling starts.
"""

from __future__ import annotations

import pandas as pd

from bad_inputs import Case
from pkpd.checks import PKPDInputError
from pkpd.nonmem import read_nonmem
from pkpd.popfit import Param, PopPKModel
from pkpd.popfit.model import prepare
from pkpd.popfit.pkpd_model import hetrombopag_pkpd_model
from pkpd.saturable import OneCompartmentSaturable
from saturable_study import saturable_spec


def _steady_state_data():
    """Subject 7 on 10 mg daily given as a steady-state dose (SS=1, II=24) at 0 h."""
    table = pd.DataFrame({"ID": 7, "TIME": [0.0, 2.0, 6.0, 12.0], "AMT": [10.0, 0, 0, 0], "EVID": [1, 0, 0, 0],
                          "MDV": [1, 0, 0, 0], "CMT": [1, 2, 2, 2], "SS": [1, 0, 0, 0], "II": [24.0, 0, 0, 0],
                          "DV": [0.0, 20.0, 35.0, 30.0]})
    return read_nonmem(table, dv_unit="ng/mL")


CASES = [
    Case("fitting-saturable-steady-state-dose", lambda tmp: prepare(saturable_spec(), _steady_state_data()),
         PKPDInputError, ("SS=1", "ID 7", "OneCompartmentSaturable")),
    Case("fitting-saturable-missing-km",
         lambda tmp: PopPKModel(pk=OneCompartmentSaturable, params=(Param("ka", 0.4), Param("cl", 4.0),
                                                                    Param("v", 250.0), Param("vmax", 0.1))),
         PKPDInputError, ("'km'", "ng/mL")),
    Case("fitting-saturable-platelets-need-linear-pk",
         lambda tmp: hetrombopag_pkpd_model(pk=OneCompartmentSaturable, params=saturable_spec().params),
         PKPDInputError, ("'plt'", "OneCompartmentSaturable")),
]
