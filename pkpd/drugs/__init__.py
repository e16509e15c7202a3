"""Drugs: one file per drug, holding every number of its models with its source.

``pkpd.drugs.hetrombopag.model("itp")`` builds a drug's population model;
:func:`model` does the same by name, as scenario files do (``drug =
"hetrombopag"``, ``population = "itp"``).  To add a drug, add its file here
(with ``POPULATIONS``, ``STRUCTURES`` -- the PK and PD classes of its models --
and ``model``) and its name to :data:`DRUGS`.
"""

from __future__ import annotations

from types import MappingProxyType

from ..checks import PKPDInputError
from ..population import PKPDModel, did_you_mean
from . import docetaxel, eltrombopag, hetrombopag

#: The drugs pkpd ships, by name: modules with ``model(population, **overrides)``
#: and ``POPULATIONS`` (the first is the default population).
DRUGS = MappingProxyType({"hetrombopag": hetrombopag, "eltrombopag": eltrombopag, "docetaxel": docetaxel})
#: Every parameter name of the drugs' model structures (what a scenario's [model]
#: table may override; each drug's model refuses the names it does not have).  From
#: the structure classes, not built models: building one loads compiled kernels.
PARAMETERS = tuple(dict.fromkeys(p for d in DRUGS.values() for s in d.STRUCTURES for p in s.PARAMETERS))


def model(drug: str = "hetrombopag", population: str = "healthy", **overrides) -> PKPDModel:
    """The default population model of ``drug`` for ``population``, with typical values ``overrides``."""
    if drug not in DRUGS:
        raise PKPDInputError(f"unknown drug {drug!r}.{did_you_mean(str(drug), DRUGS)} Known drugs: {', '.join(DRUGS)}.")
    return DRUGS[drug].model(population, **overrides)
