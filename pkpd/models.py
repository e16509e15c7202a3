"""Population model specifications under the names of earlier versions.

The specification classes live in :mod:`pkpd.population`, hetrombopag's
values and model in :mod:`pkpd.drugs.hetrombopag`; this module keeps
``pkpd.models.hetrombopag("itp")``, ``pkpd.models.PKPDModel`` and the ITP
constants working.  New code: ``pkpd.drugs.hetrombopag.model("itp")``.
"""

from .drugs.hetrombopag import (
    ITP_BASELINE,
    ITP_EC50,
    ITP_NONRESPONDER_FRACTION,
    ITP_PLATELET_NOISE,
)
from .drugs.hetrombopag import model as hetrombopag
from .population import PARAMETER_UNITS, PARAMETERS, Baseline, PKPDModel, ResidualError, ScreenedBaseline

__all__ = ["Baseline", "ITP_BASELINE", "ITP_EC50", "ITP_NONRESPONDER_FRACTION", "ITP_PLATELET_NOISE", "PARAMETERS",
           "PARAMETER_UNITS", "PKPDModel", "ResidualError", "ScreenedBaseline", "hetrombopag"]
