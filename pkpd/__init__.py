"""pkpd: pharmacokinetic / pharmacodynamic modelling in Python.

Data flows one way: regimen -> exposure (pk) -> response (pd) -> endpoints.
Units throughout: time h, dose mg, concentration ng/mL, platelets 10^9/L.
"""

from .checks import PKPDInputError
from .nca import nca
from .nonmem import Dataset, Subject, read_nonmem
from .pk import OneCompartmentOral
from .saturable import OneCompartmentSaturable
from . import drugs
from .regimen import Dose, Regimen
from .fluctuation import Fluctuation
from . import models
from .simulate import simulate, simulate_population
from .titration import TitrationRule
from .trial import Arm, Endpoints, Trial
from .scenario import load_scenario, run_scenario
from .calibrate import Parameter, Target, calibrate
from .utility import Utility
from .optimize import optimize_rule
from .sweep import sweep

from ._version import __version__ as __version__

__all__ = ["Dataset", "Dose", "Fluctuation", "OneCompartmentOral", "OneCompartmentSaturable", "drugs", "PKPDInputError", "Regimen", "Subject", "nca", "read_nonmem"]
__all__ += ["Arm", "Endpoints", "TitrationRule", "Trial", "load_scenario", "models", "run_scenario", "simulate", "simulate_population"]
__all__ += ["Utility", "optimize_rule", "sweep"]

# Bayesian population fitting is imported on first use only, so that
# ``import pkpd`` and the ``pkpd`` command never load PyMC / PyTensor / ArviZ.
_LAZY = {"ConvergenceWarning": "popfit", "PopPKModel": "popfit", "fit": "popfit",
         "hetrombopag_pkpd_model": "popfit", "UninformedParameterWarning": "popfit"}
__all__ += ["ConvergenceWarning", "PopPKModel", "UninformedParameterWarning", "fit", "hetrombopag_pkpd_model"]
__all__ += ["forecast"]


def __getattr__(name):
    if name == "forecast":  # the subpackage pkpd.forecast (individual dose forecasting), on first use
        from importlib import import_module

        return import_module(".forecast", __name__)
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
