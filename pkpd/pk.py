"""One-compartment PK under the names of earlier versions.

The model lives in :mod:`pkpd.one_compartment` (its kernels) and
:mod:`pkpd.exposure` (what every PK model shares), hetrombopag's values in
:mod:`pkpd.drugs.hetrombopag`.  This module keeps
``pkpd.pk.concentrations(regimen, times, ka, cl, v)``, the ``HETROMBOPAG_*``
constants and ``OneCompartmentOral()`` with hetrombopag's values as defaults
working.  New code: ``pkpd.one_compartment.OneCompartmentOral(ka=..., cl=...,
v=...)`` or ``OneCompartmentOral.concentrations(params, regimen, times)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import one_compartment
from .drugs.hetrombopag import CL as HETROMBOPAG_CL
from .drugs.hetrombopag import KA as HETROMBOPAG_KA
from .drugs.hetrombopag import V as HETROMBOPAG_V
from .exposure import MG_PER_L_TO_NG_PER_ML
from .one_compartment import exp_divdiff, steady_state_amounts
from .regimen import Regimen

__all__ = ["HETROMBOPAG_CL", "HETROMBOPAG_KA", "HETROMBOPAG_V", "MG_PER_L_TO_NG_PER_ML", "OneCompartmentOral",
           "check_parameters", "concentrations", "exp_divdiff", "steady_state_amounts"]


@dataclass(frozen=True)
class OneCompartmentOral(one_compartment.OneCompartmentOral):
    """:class:`pkpd.one_compartment.OneCompartmentOral` with hetrombopag's
    values (:mod:`pkpd.drugs.hetrombopag`) as defaults."""

    ka: float | np.ndarray = HETROMBOPAG_KA
    cl: float | np.ndarray = HETROMBOPAG_CL
    v: float | np.ndarray = HETROMBOPAG_V


def check_parameters(ka, cl, v) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``ka`` (1/h), ``cl`` (L/h), ``v`` (L) as broadcast arrays over subjects, checked."""
    p = one_compartment.OneCompartmentOral.parameter_arrays(ka=ka, cl=cl, v=v)
    return p["ka"], p["cl"], p["v"]


def concentrations(regimen: Regimen, times, ka, cl, v) -> np.ndarray:
    """Concentrations (ng/mL), (n_subjects, n_times), of the one-compartment
    model with ``ka`` (1/h), ``cl`` (L/h), ``v`` (L) (scalars or arrays over
    subjects): :meth:`pkpd.exposure.PKModel.concentrations`."""
    model = one_compartment.OneCompartmentOral
    return model.concentrations(model.parameter_arrays(ka=ka, cl=cl, v=v), regimen, times)
