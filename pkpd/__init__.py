"""pkpd: pharmacokinetic / pharmacodynamic modelling in Python.

Data flows one way: regimen -> exposure (pk) -> response (pd) -> endpoints.
Units throughout: time h, dose mg, concentration ng/mL, platelets 10^9/L.
"""

from .checks import PKPDInputError
from .pk import OneCompartmentOral
from .regimen import Dose, Regimen

__version__ = "0.1.0"

__all__ = ["Dose", "OneCompartmentOral", "PKPDInputError", "Regimen"]
