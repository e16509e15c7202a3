"""Bayesian population PK and PK/PD fitting with PyMC and nutpie.

>>> import pkpd
>>> from pkpd.popfit import theophylline_model
>>> idata = pkpd.fit(theophylline_model(), pkpd.nonmem.load_theophylline(), seed=1)  # doctest: +SKIP

Modules: :mod:`~pkpd.popfit.model` (model specification and PyMC builder),
:mod:`~pkpd.popfit.kernels` (closed-form one-compartment PK for NumPy and PyTensor: the reference),
:mod:`~pkpd.popfit.structures` (the PK models the compiled kernels cover),
:mod:`~pkpd.popfit.design` (dataset -> padded arrays),
:mod:`~pkpd.popfit.sampling` (:func:`fit`, diagnostics),
:mod:`~pkpd.popfit.plots` (individual fits, GOF, VPC, shrinkage),
:mod:`~pkpd.popfit.pkpd_model` (joint PK + platelet model, sequential fitting),
:mod:`~pkpd.popfit.platelets` (the platelet prediction for fitting, as a tensor expression: the reference),
:mod:`~pkpd.popfit.platelet_op` (the same as one compiled Op with its adjoint, used in the model),
:mod:`~pkpd.popfit.pk_op` (the concentrations of any covered PK model as one compiled Op),
:mod:`~pkpd.popfit.density` (the model's log density as one precompiled numba function: what
:func:`fit` samples),
:mod:`~pkpd.popfit.simulate_pkpd` (simulated PK/PD studies as NONMEM records).
"""

from .design import FitData, as_dataset, dose_design, flatten
from .model import (
    BuiltModel,
    CompiledTerms,
    Covariate,
    Observation,
    Param,
    PopPKModel,
    ResidualError,
    build_model,
    concentration_observation,
    deprecated,
    hetrombopag_saturable_model,
    theophylline_model,
)
from .pkpd_model import (
    HETROMBOPAG_PD_PARAMS,
    fit_sequential,
    hetrombopag_pkpd_model,
    individual_pk_medians,
    platelet_endpoint,
    platelet_observation,
    sequential_pd_model,
)
from .sampling import (
    ConvergenceWarning,
    Diagnostics,
    UninformedParameterWarning,
    diagnose,
    fit,
)
from .simulate_pkpd import simulate_pkpd_records

__all__ = [
    "BuiltModel", "CompiledTerms", "ConvergenceWarning", "Covariate", "Diagnostics", "FitData", "Observation", "Param",
    "PopPKModel", "ResidualError", "as_dataset", "build_model", "diagnose", "dose_design", "fit", "flatten",
    "theophylline_model", "hetrombopag_saturable_model", "UninformedParameterWarning",
    "HETROMBOPAG_PD_PARAMS", "fit_sequential", "hetrombopag_pkpd_model", "individual_pk_medians",
    "concentration_observation", "platelet_endpoint", "platelet_observation", "sequential_pd_model",
    "simulate_pkpd_records",
]


def __getattr__(name):
    if name == "Endpoint":  # the observation type's former name; an endpoint is a trial outcome in pkpd
        return deprecated("pkpd.popfit.Endpoint", "pkpd.popfit.Observation", Observation, stacklevel=3)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
