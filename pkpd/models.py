"""Population model specifications under the names of earlier versions (deprecated).

The specification classes live in :mod:`pkpd.population`, hetrombopag's
values and model in :mod:`pkpd.drugs.hetrombopag`.  The old names keep
working and warn (``DeprecationWarning``) with the new spelling, e.g.
``pkpd.models.hetrombopag("itp")`` -> ``pkpd.drugs.hetrombopag.model("itp")``.
"""

import warnings

from . import population as _population
from .drugs import hetrombopag as _hetrombopag

#: Old name -> (new spelling, object).
_MOVED = {
    "hetrombopag": ("pkpd.drugs.hetrombopag.model", _hetrombopag.model),
    **{name: (f"pkpd.drugs.hetrombopag.{name}", getattr(_hetrombopag, name))
       for name in ("ITP_BASELINE", "ITP_EC50", "ITP_NONRESPONDER_FRACTION", "ITP_PLATELET_NOISE")},
    **{name: (f"pkpd.population.{name}", getattr(_population, name))
       for name in ("PARAMETER_UNITS", "PARAMETERS", "Baseline", "PKPDModel", "ResidualError", "ScreenedBaseline")},
}
__all__ = sorted(_MOVED)


def __getattr__(name):
    if name not in _MOVED:
        raise AttributeError(f"module 'pkpd.models' has no attribute {name!r}")
    new, value = _MOVED[name]
    warnings.warn(f"pkpd.models.{name} is deprecated; use {new}", DeprecationWarning, stacklevel=2)
    return value
