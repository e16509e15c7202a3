"""One-compartment PK under the names of earlier versions (deprecated).

The model lives in :mod:`pkpd.one_compartment` (its kernels) and
:mod:`pkpd.exposure` (what every PK model shares), hetrombopag's values in
:mod:`pkpd.drugs.hetrombopag`.  This module keeps
``pkpd.pk.concentrations(regimen, times, ka, cl, v)``, the ``HETROMBOPAG_*``
constants and ``OneCompartmentOral()`` with hetrombopag's values as defaults
working; the constants warn (``DeprecationWarning``) with the new spelling.
New code: ``pkpd.one_compartment.OneCompartmentOral(ka=..., cl=..., v=...)``,
``OneCompartmentOral.concentrations(params, regimen, times)`` and
``pkpd.drugs.hetrombopag.KA``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import warnings

from . import one_compartment
from .drugs import hetrombopag as _hetrombopag
from .exposure import MG_PER_L_TO_NG_PER_ML
from .one_compartment import exp_divdiff, exp_divdiff_array, steady_state_amounts
from .regimen import Regimen

__all__ = ["MG_PER_L_TO_NG_PER_ML", "OneCompartmentOral",
           "check_parameters", "concentrations", "exp_divdiff", "exp_divdiff_array", "steady_state_amounts"]


@dataclass(frozen=True)
class OneCompartmentOral(one_compartment.OneCompartmentOral):
    """:class:`pkpd.one_compartment.OneCompartmentOral` with hetrombopag's
    values (:mod:`pkpd.drugs.hetrombopag`) as defaults."""

    ka: float | np.ndarray = _hetrombopag.KA
    cl: float | np.ndarray = _hetrombopag.CL
    v: float | np.ndarray = _hetrombopag.V


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


#: Old constant -> its new spelling.
_MOVED = {"HETROMBOPAG_KA": "KA", "HETROMBOPAG_CL": "CL", "HETROMBOPAG_V": "V"}


def __getattr__(name):
    if name not in _MOVED:
        raise AttributeError(f"module 'pkpd.pk' has no attribute {name!r}")
    warnings.warn(f"pkpd.pk.{name} is deprecated; use pkpd.drugs.hetrombopag.{_MOVED[name]}", DeprecationWarning,
                  stacklevel=2)
    return getattr(_hetrombopag, _MOVED[name])
