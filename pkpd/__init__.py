"""pkpd: pharmacokinetic / pharmacodynamic modelling in Python.

Data flows one way: regimen -> exposure (pk) -> response (pd) -> endpoints.
Units throughout: time h, dose mg, concentration ng/mL, platelets 10^9/L.

``import pkpd`` imports no submodule: each public name and each submodule
(``pkpd.trial``, ``pkpd.forecast``, ...) is imported on first use
(:func:`lazy_loader.attach`), so that the package and the ``pkpd`` command
load numba, matplotlib, scipy.stats, xarray or the PyMC stack only when a
computation needs them.
"""

from typing import TYPE_CHECKING

import lazy_loader as _lazy

from ._version import __version__ as __version__

#: Public names by the submodule that defines them, imported on first access.
_ATTRS = {
    "checks": ["PKPDInputError"],
    "nca": ["nca"],
    "nonmem": ["Dataset", "Subject", "read_nonmem"],
    "pk": ["OneCompartmentOral"],
    "saturable": ["OneCompartmentSaturable"],
    "regimen": ["Dose", "Regimen"],
    "fluctuation": ["Fluctuation"],
    "simulate": ["simulate", "simulate_population"],
    "titration": ["TitrationRule"],
    "trial": ["Arm", "Endpoints", "Trial"],
    "scenario": ["load_scenario", "run_scenario"],
    "calibrate": ["Parameter", "Target", "calibrate"],
    "utility": ["Utility"],
    "optimize": ["optimize_rule"],
    "sweep": ["sweep"],
    # Bayesian population fitting (PyMC / PyTensor / ArviZ)
    "popfit": ["ConvergenceWarning", "PopPKModel", "UninformedParameterWarning", "fit", "hetrombopag_pkpd_model"],
}
#: The other submodules, so that ``pkpd.<module>`` works after ``import pkpd`` alone.  Not listed:
#: calibrate, nca, simulate and sweep, whose ``pkpd.<name>`` is the function of that name (as it
#: always was; lazy_loader keeps an import of the submodule from replacing it).
_SUBMODULES = [
    "checks", "cli", "datasets", "distributed", "drugs", "endpoints", "exposure", "fluctuation", "forecast",
    "friberg", "intervals", "models", "nonmem", "ode", "one_compartment", "optimize", "output", "pd", "pk",
    "popfit", "population", "regimen", "response", "saturable", "scenario", "titration", "trial", "trial_plots",
    "trial_result", "two_compartment", "units", "utility",
]
__getattr__, _lazy_dir, _ = _lazy.attach(__name__, _SUBMODULES, _ATTRS)

__all__ = ["Dataset", "Dose", "Fluctuation", "OneCompartmentOral", "OneCompartmentSaturable", "drugs", "PKPDInputError", "Regimen", "Subject", "nca", "read_nonmem"]
__all__ += ["Arm", "Endpoints", "TitrationRule", "Trial", "load_scenario", "models", "run_scenario", "simulate", "simulate_population"]
__all__ += ["Utility", "optimize_rule", "sweep"]
__all__ += ["ConvergenceWarning", "PopPKModel", "UninformedParameterWarning", "fit", "hetrombopag_pkpd_model"]
__all__ += ["forecast"]


def __dir__():
    return sorted(set(globals()) | set(_lazy_dir()))


if TYPE_CHECKING:  # the same names, for type checkers and IDEs (never imported at run time)
    from . import drugs, forecast, models
    from .calibrate import Parameter, Target, calibrate
    from .checks import PKPDInputError
    from .fluctuation import Fluctuation
    from .nca import nca
    from .nonmem import Dataset, Subject, read_nonmem
    from .optimize import optimize_rule
    from .pk import OneCompartmentOral
    from .popfit import ConvergenceWarning, PopPKModel, UninformedParameterWarning, fit, hetrombopag_pkpd_model
    from .regimen import Dose, Regimen
    from .saturable import OneCompartmentSaturable
    from .scenario import load_scenario, run_scenario
    from .simulate import simulate, simulate_population
    from .sweep import sweep
    from .titration import TitrationRule
    from .trial import Arm, Endpoints, Trial
    from .utility import Utility
