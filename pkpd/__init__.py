"""pkpd: pharmacokinetic / pharmacodynamic modelling in Python.

Data flows one way: regimen -> exposure (pk) -> response (pd) -> endpoints.
Units throughout: time h, dose mg, concentration ng/mL, platelets 10^9/L.
"""

from .checks import PKPDInputError
from .nca import nca
from .nonmem import Dataset, Subject, read_nonmem
from .pk import OneCompartmentOral
from .regimen import Dose, Regimen

__version__ = "0.1.0"

__all__ = ["Dataset", "Dose", "OneCompartmentOral", "PKPDInputError", "Regimen", "Subject", "nca", "read_nonmem"]
