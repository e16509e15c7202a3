"""Bad inputs of the PK structure of a population model (``PopPKModel(pk=...)``)."""

from __future__ import annotations

import pkpd.popfit
from bad_inputs import Case, WarnCase
from pkpd.checks import PKPDInputError
from pkpd.one_compartment import OneCompartmentOral
from pkpd.popfit import Param, PopPKModel, hetrombopag_pkpd_model, platelet_endpoint
from pkpd.two_compartment import TwoCompartmentOral

E = PKPDInputError
_ONE_CMT = (Param("ka", 1.0), Param("cl", 5.0), Param("v", 30.0))
_TWO_CMT = (Param("ka", 1.0), Param("cl", 5.0), Param("v1", 30.0), Param("q", 3.0), Param("v2", 60.0))


def _model(**fields):
    return lambda tmp_path: PopPKModel(**fields)


CASES = [
    Case("fitting-pk-not-a-class", _model(pk="two-compartment"), E, ("pk", "'two-compartment'")),
    Case("fitting-pk-instance", _model(pk=OneCompartmentOral(ka=1.0, cl=5.0, v=30.0)), E, ("pk", "OneCompartmentOral")),
    Case("fitting-pk-no-kernels", _model(pk=dict), E, ("pk", "dict")),
    Case("fitting-pk-missing-param", _model(pk=TwoCompartmentOral, params=_ONE_CMT), E,
         ("params", "'v1'", "TwoCompartmentOral")),
    Case("fitting-pk-platelets-need-one-compartment",
         lambda tmp_path: hetrombopag_pkpd_model(pk=TwoCompartmentOral, params=_TWO_CMT), E,
         ("pk=TwoCompartmentOral", "'plt'")),
    WarnCase("fitting-pk-deprecated-platelet-endpoint", lambda tmp_path: platelet_endpoint(), DeprecationWarning,
             ("platelet_endpoint", "platelet_observation")),
    WarnCase("fitting-pk-deprecated-endpoint-class", lambda tmp_path: pkpd.popfit.Endpoint, DeprecationWarning,
             ("Endpoint", "Observation")),
]
