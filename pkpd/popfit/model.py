"""Hierarchical (population) PK models in PyMC: what to fit, and the builder.

A :class:`PopPKModel` is a plain description -- structural parameters with
their priors, inter-individual variability (IIV), covariates, residual error,
concentration unit -- and :func:`build_model` turns it plus a dataset into a
``pymc.Model``.

Statistical model (subject i, observation j)::

    log P_i   = log P_tv + sum_c theta_c log(COV_ic / ref_c) + eta_P,i     (power covariate model)
    eta_i     = L z_i,  z_i ~ N(0, I)                                      (non-centred IIV;
                L = diag(omega) or the Cholesky factor of an LKJ covariance)
    or, for a ``Param(centred=True)``: log P_i ~ N(log P_pop,i, omega_P)    (centred; variable
                ``log_<P>_ind``; eta_P,i = log P_i - log P_pop,i)
    optional: sum_i log sigmoid((log ka_i - log k_i) / 0.1)                  (``ka_above_k``: no flip-flop)
    IPRED_ij  = the PK structure's concentration (``PopPKModel.pk``, a pkpd.exposure.PKModel;
                default one-compartment oral), through its fitting kernel
    DV_ij     ~ Normal(IPRED_ij, sd_ij),  sd_ij^2 = sigma_add^2 + (sigma_prop IPRED_ij)^2
    BLQ rows  : P(DV < LLOQ) = Phi((LLOQ - IPRED_ij) / sd_ij)              (Beal's M3)

Priors (all overridable, see :meth:`PopPKModel.with_param`):

* typical value ``P_tv ~ LogNormal(log median, sd_log)``, median from the
  literature (defaults: hetrombopag, :mod:`pkpd.drugs.hetrombopag`; :func:`theophylline_model`);
* ``omega_P ~ HalfNormal(scale)``: SD of log P between subjects, with the scale
  chosen so the prior median (0.674 x scale) is near the published IIV;
* covariate exponent ``theta ~ Normal(exponent, sd)`` (allometric 0.75 for CL,
  1 for V) or fixed;
* ``sigma_prop ~ HalfNormal`` (fraction), ``sigma_add ~ HalfNormal`` (in the
  concentration unit).

Variable names: typical values named as the structure's parameters (``ka``,
``cl``, ``v`` for one compartment); ``omega_ka`` ...;
``eta_ka`` ... (per subject); ``theta_cl_wt`` ...; ``sigma_prop``, ``sigma_add``.

Observation types
-----------------
Each kind of observation (concentrations, CMT 2; platelets, CMT 3; ...) is an
:class:`Observation` (``Endpoint`` is its deprecated name: in the rest of pkpd
an endpoint is a trial outcome).  Further observation types are :class:`Observation` objects:
a ``predict(xp, indiv, block)`` function receives the *individual* parameters
(``{name: array (..., n_subjects)}``, PK and any extra :class:`Param` such as
``emax``) and an :class:`~pkpd.popfit.design.ObservationBlock` and returns the
prediction at the block's observations; the builder adds its residual error
and likelihood.  ``xp`` is ``pytensor.tensor`` while building the model and
``numpy`` when predicting from posterior draws (plots, VPC); give
``predict_numpy`` when the two need different code.

An observation can also give pkpd's compiled log density
(:mod:`pkpd.popfit.density`) what it needs, through its ``compiled`` hook
returning :class:`CompiledTerms`; observations without it are fitted on the
PyMC graph.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..checks import PKPDInputError
from ..drugs import hetrombopag, theophylline
from ..exposure import PKModel
from ..one_compartment import OneCompartmentOral
from ..saturable import OneCompartmentSaturable
from . import kernels, structures
from .design import CONC_CMT, FitData, ObservationBlock, as_dataset, flatten
from .pk_op import (
    DESIGN_FIELDS,
    concentrations_numpy,
    concentrations_op,
    concentrations_tensor,
    design_arrays,
)

#: mg/L -> unit factors for concentrations (dose mg / volume L = mg/L).
CONC_UNITS = {"mg/L": 1.0, "ug/mL": 1.0, "ng/mL": 1000.0}

#: Fraction of a HalfNormal's scale at its median: median = 0.6745 x scale.
_HALFNORMAL_MEDIAN = 0.6745

#: SD of a HalfNormal divided by its scale: sqrt(1 - 2/pi).
_HALFNORMAL_SD = float(np.sqrt(1.0 - 2.0 / np.pi))


def omega_from_cv(cv: float) -> float:
    """SD of log P for a log-normal IIV given as a CV (e.g. 0.635 for 63.5%)."""
    return float(np.sqrt(np.log1p(cv**2)))


def halfnormal_scale_for_median(median: float) -> float:
    """HalfNormal scale whose median is ``median``."""
    return float(median / _HALFNORMAL_MEDIAN)


# ================================================================= specification
@dataclass(frozen=True)
class Param:
    """A structural parameter: log-normal typical value and optional log-normal IIV.

    name : variable name of the typical value (``ka``, ``cl``, ``v``, ``emax``...).
    median : prior median of the typical value, in ``unit``.
    sd_log : prior SD of log(typical value); 1 allows a factor e either way.
    omega_scale : HalfNormal scale of the IIV SD omega (log scale);
        ``None`` = no IIV for this parameter.
    unit, source : documentation (shown in summaries).
    centred : sample the individual values directly, ``log P_i ~ Normal(log
        P_pop,i, omega)`` (variable ``log_<name>_ind``), instead of non-centred
        (``eta_i = omega z_i``, the default).  Centred mixes better when every
        subject's data pin its own value down (rich PK sampling); non-centred
        when they do not (sparse data, PD).
    """

    name: str
    median: float
    sd_log: float = 1.0
    omega_scale: float | None = 0.5
    unit: str = ""
    source: str = ""
    centred: bool = False

    def __post_init__(self):
        if not self.name.isidentifier():
            raise PKPDInputError(f"Param name must be an identifier like 'cl'; got {self.name!r}.")
        for field_name in ("median", "sd_log"):
            value = getattr(self, field_name)
            if not (np.isfinite(value) and value > 0):
                raise PKPDInputError(
                    f"Param {self.name!r}: {field_name} must be finite and > 0{_in(self.unit if field_name == 'median' else '')}; "
                    f"got {value!r}. Give a positive prior {field_name}."
                )
        if self.omega_scale is not None and not (np.isfinite(self.omega_scale) and self.omega_scale > 0):
            raise PKPDInputError(
                f"Param {self.name!r}: omega_scale must be > 0 (HalfNormal scale of the log-scale IIV SD) or None "
                f"for no IIV; got {self.omega_scale!r}."
            )


@dataclass(frozen=True)
class Covariate:
    """Power covariate model ``P_i = P_tv (COV_i / reference)^theta``.

    param : structural parameter (e.g. ``cl``).  covariate : data column (e.g. ``WT``,
    a time-constant covariate, kg).  reference : value at which P = P_tv (70 kg).
    exponent : prior mean of theta (or its value when fixed).  sd : prior SD of
    theta; ``None`` fixes theta at ``exponent`` (e.g. allometric 0.75 / 1).
    The variable is named ``theta_<param>_<covariate>`` (lower case).
    """

    param: str
    covariate: str = "WT"
    reference: float = 70.0
    exponent: float = 0.75
    sd: float | None = 0.25

    def __post_init__(self):
        if not (np.isfinite(self.reference) and self.reference > 0):
            raise PKPDInputError(
                f"Covariate {self.covariate!r} on {self.param!r}: reference must be > 0 (e.g. 70 kg); got {self.reference!r}."
            )
        if self.sd is not None and not (np.isfinite(self.sd) and self.sd > 0):
            raise PKPDInputError(
                f"Covariate {self.covariate!r} on {self.param!r}: sd must be > 0 or None (fixed); got {self.sd!r}."
            )

    @property
    def var_name(self) -> str:
        return f"theta_{self.param}_{self.covariate.lower()}"


@dataclass(frozen=True)
class ResidualError:
    """Residual error of one endpoint.

    kind : ``"proportional"`` (sd = sigma_prop IPRED), ``"additive"`` (sd = sigma_add)
        or ``"combined"`` (sd^2 = sigma_add^2 + (sigma_prop IPRED)^2).
    prop_scale : HalfNormal scale of sigma_prop (a fraction; 0.3 -> prior median 0.2).
    add_scale : HalfNormal scale of sigma_add, in the endpoint's unit.
    """

    kind: str = "proportional"
    prop_scale: float = 0.3
    add_scale: float = 1.0

    KINDS = ("proportional", "additive", "combined")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise PKPDInputError(f"ResidualError kind must be one of {self.KINDS}; got {self.kind!r}.")
        for name in ("prop_scale", "add_scale"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise PKPDInputError(f"ResidualError {name} must be > 0; got {value!r}.")

    @property
    def has_prop(self) -> bool:
        return self.kind in ("proportional", "combined")

    @property
    def has_add(self) -> bool:
        return self.kind in ("additive", "combined")


@dataclass(frozen=True)
class CompiledTerms:
    """What pkpd's compiled log density (:mod:`pkpd.popfit.density`) needs of one
    observation type: which of its compiled prediction kernels to run, and that
    kernel's arrays.

    kernel : ``"concentration"`` (any covered PK structure,
        :mod:`pkpd.popfit.structures`) or ``"platelets"`` (the transit model of
        :mod:`pkpd.popfit.platelet_op`).
    arrays : the kernel's arrays by their field name in
        :data:`pkpd.popfit.density.FIELDS` (without the kernel's prefix
        ``conc_`` / ``plt_``); ``rows`` are positions among the model's
        parameters (-1: the value comes with the kernel's arrays).
    header : the kernel's integer / float settings by name (e.g. ``code``, the
        structure's code; ``n_transit``, ``h``).
    unsupported : why the compiled kernel cannot take this block (then the fit
        uses the PyMC graph), or None.
    """

    kernel: str
    arrays: dict = field(default_factory=dict)
    header: dict = field(default_factory=dict)
    unsupported: str | None = None


@dataclass(frozen=True)
class Observation:
    """One kind of observation (one CMT) with its prediction and residual error.

    name : name of the observed variable (``conc``, ``plt``...).
    cmt : NONMEM compartment of its observations.  unit : its unit.
    predict : ``predict(xp, indiv, block) -> (..., block.n)``, see module docs.
    error : :class:`ResidualError`.
    sigma_suffix : residual SDs are named ``sigma_prop<suffix>`` / ``sigma_add<suffix>``
        (empty for the concentrations, e.g. ``"_plt"`` for platelets).
    predict_numpy : optional NumPy-only version of ``predict`` (same signature).
    compiled : optional ``compiled(spec, data, block) -> CompiledTerms``: how
        pkpd's compiled log density predicts this observation (``spec`` the
        :class:`PopPKModel`, ``data`` its :class:`FitData`).  None: the model
        is fitted on its PyMC graph.
    pk_structures : the PK model classes this observation's prediction works
        with (None: any), checked by :class:`PopPKModel`.
    """

    name: str
    cmt: int
    unit: str
    predict: Callable
    error: ResidualError = field(default_factory=ResidualError)
    sigma_suffix: str = ""
    predict_numpy: Callable | None = None
    compiled: Callable | None = None
    pk_structures: tuple | None = None

    def predict_np(self, indiv, block):
        fn = self.predict_numpy or self.predict
        return fn(np, indiv, block)

    def compiled_terms(self, spec, data) -> CompiledTerms | None:
        """The :class:`CompiledTerms` of this observation in ``data``, or None without a ``compiled`` hook."""
        return None if self.compiled is None else self.compiled(spec, data, data.blocks[self.cmt])

    @property
    def sigma_prop_name(self) -> str:
        return f"sigma_prop{self.sigma_suffix}"

    @property
    def sigma_add_name(self) -> str:
        return f"sigma_add{self.sigma_suffix}"


class ConcentrationPrediction:
    """Concentrations (in ``conc_unit``) of the PK model class ``structure`` at a
    block's observations: the :class:`Observation` ``predict`` hook.

    In the PyMC model (``xp = pytensor.tensor``) one compiled Op over the
    structure's fitting kernel (:func:`pkpd.popfit.pk_op.concentrations_op`);
    with NumPy (posterior draws) the same compiled loop.  One-compartment
    designs with steady-state doses use the reference tensor expression of
    :mod:`pkpd.popfit.kernels` in both.
    """

    def __init__(self, structure: type, conc_unit: str):
        self.structure = structure
        self.scale = CONC_UNITS[conc_unit]

    def _reference(self, block) -> bool:
        return block.design.any_steady and self.structure is OneCompartmentOral

    def __call__(self, xp, indiv, block: ObservationBlock):
        s, names = block.subject, list(self.structure.PARAMETERS)
        if self._reference(block):
            if xp is np:
                return kernels.one_compartment_oral(np, *(indiv[n][..., s] for n in names), block.design, self.scale)
            return concentrations_tensor(*(indiv[n] for n in names), s, block.design, self.scale)
        if xp is np:
            return concentrations_numpy(self.structure, indiv, s, block.design, self.scale)
        return concentrations_op(self.structure, [indiv[n] for n in names], s, block.design, self.scale)

    def compiled(self, spec: "PopPKModel", data: FitData, block: ObservationBlock) -> CompiledTerms:
        """The compiled density's concentration kernel: the structure's code, the
        rows of its parameters among the model's, and the dose design."""
        return CompiledTerms(
            "concentration",
            arrays={"rows": [spec.param_names.index(n) for n in self.structure.PARAMETERS], "subject": block.subject,
                    **dict(zip(DESIGN_FIELDS, design_arrays(block.design)))},
            header={"code": structures.code(self.structure)},
            unsupported="steady-state doses" if block.design.any_steady else None,
        )


def concentration_observation(conc_unit: str, error: ResidualError, structure: type = OneCompartmentOral
                              ) -> Observation:
    """The concentration observations (CMT 2) in ``conc_unit``, predicted by the
    PK model class ``structure`` (:class:`ConcentrationPrediction`)."""
    predict = ConcentrationPrediction(structure, conc_unit)
    return Observation("conc", CONC_CMT, conc_unit, predict, error, "", compiled=predict.compiled)


def deprecated(old: str, new: str, value, stacklevel: int = 3):
    """``value`` under its former name ``old``, with a DeprecationWarning naming
    ``new`` (``stacklevel`` 3: the caller of the function that calls this)."""
    warnings.warn(f"{old} is deprecated; use {new} (an observation type; endpoints are trial outcomes in pkpd).",
                  DeprecationWarning, stacklevel=stacklevel)
    return value


def __getattr__(name):
    if name == "Endpoint":
        return deprecated("pkpd.popfit.model.Endpoint", "pkpd.popfit.Observation", Observation)
    if name == "concentration_endpoint":
        return deprecated("concentration_endpoint", "concentration_observation", concentration_observation)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


#: Hetrombopag PK priors: centred on its typical values, log-SD 1, omega
#: priors with the drug's IIV as median (values and sources in
#: :mod:`pkpd.drugs.hetrombopag`).
HETROMBOPAG_PARAMS = tuple(
    Param(name, hetrombopag.HEALTHY_TYPICAL[name], 1.0,
          halfnormal_scale_for_median(omega_from_cv(hetrombopag.HEALTHY_IIV[name])), unit,
          f"{hetrombopag.SOURCES[name]}; IIV {hetrombopag.HEALTHY_IIV[name]:.1%} CV")
    for name, unit in OneCompartmentOral.PARAMETERS.items()
)


#: Hetrombopag PK priors of the saturable model (:class:`pkpd.saturable.OneCompartmentSaturable`):
#: centred on its typical values (``SATURABLE_*`` of :mod:`pkpd.drugs.hetrombopag`, with their
#: sources), log-SD 1; IIV priors on ka, cl and v as :data:`HETROMBOPAG_PARAMS`, none on vmax and km
#: (population values: a subject seen at one dose level cannot separate them from its own cl).
HETROMBOPAG_SATURABLE_PARAMS = tuple(
    Param(name, value, 1.0,
          halfnormal_scale_for_median(omega_from_cv(hetrombopag.HEALTHY_IIV[name]))
          if name in hetrombopag.HEALTHY_IIV else None, unit,
          hetrombopag.SATURABLE_SOURCES[name]
          + (f"; IIV {hetrombopag.HEALTHY_IIV[name]:.1%} CV" if name in hetrombopag.HEALTHY_IIV else ""))
    for (name, unit), value in zip(OneCompartmentSaturable.PARAMETERS.items(),
                                   (hetrombopag.SATURABLE_KA, hetrombopag.SATURABLE_CL, hetrombopag.SATURABLE_V,
                                    hetrombopag.SATURABLE_VMAX, hetrombopag.SATURABLE_KM))
)

#: The clearance parameter of the ``ka_above_k`` barrier, L/h (k = CL / central volume).
CLEARANCE = "cl"

#: Width (log units) of the ``ka_above_k`` barrier: its log density is -0.69 at
#: ka = k and > -0.001 once ka > 2 k.
KA_ABOVE_K_SCALE = 0.1


@dataclass(frozen=True)
class PopPKModel:
    """Population PK model (what to fit, not how).

    params : structural parameters: one per parameter of ``pk`` (named as in
        ``pk.PARAMETERS``), plus any PD parameters the observations use.
    covariates : power covariate models (:class:`Covariate`).
    error : residual error of the concentrations.
    conc_unit : unit of predicted and observed concentrations ("ng/mL", "mg/L"
        or "ug/mL"); must equal the dataset's DV unit (no silent conversion).
    correlated_iiv : estimate the correlation of the etas (LKJ prior with
        shape ``lkj_eta``; 1 = uniform over correlation matrices).
    drop_predose : leave concentrations before the first dose out of the
        likelihood (their prediction is identically 0).
    endpoints : further :class:`Observation` types (e.g. platelets) fitted jointly.
    ka_above_k : assume absorption faster than elimination in every subject
        (no flip-flop kinetics): adds ``log sigmoid((log ka_i - log k_i) / 0.1)``
        per subject (``k_i = cl_i / V_i``, V the structure's central volume
        ``pk.VOLUME``, ka its ``pk.ABSORPTION``; :data:`KA_ABOVE_K_SCALE`).  A
        one-compartment oral profile is fitted equally well with ka and k
        swapped (and V rescaled); a chain can get stuck with one subject in that
        mirror mode (seen in the hetrombopag PK/PD fit of notebook 02: R-hat
        1.5).  The barrier is ~0 where ka_i > 2 k_i and removes the mirror;
        leave it off for drugs whose absorption may be slower than elimination.
    pk : the PK structure, a :class:`pkpd.exposure.PKModel` class with fitting
        kernels (:mod:`pkpd.popfit.structures`); default
        :class:`pkpd.one_compartment.OneCompartmentOral`.
    """

    params: tuple = HETROMBOPAG_PARAMS
    covariates: tuple = ()
    error: ResidualError = field(default_factory=ResidualError)
    conc_unit: str = "ng/mL"
    correlated_iiv: bool = False
    lkj_eta: float = 2.0
    drop_predose: bool = True
    endpoints: tuple = ()
    name: str = "one-compartment oral (hetrombopag priors)"
    ka_above_k: bool = False
    pk: type = OneCompartmentOral

    def __post_init__(self):
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "covariates", tuple(self.covariates))
        object.__setattr__(self, "endpoints", tuple(self.endpoints))
        if not (isinstance(self.pk, type) and issubclass(self.pk, PKModel)):
            raise PKPDInputError(
                f"pk must be a PK model class such as pkpd.one_compartment.OneCompartmentOral; got {self.pk!r}."
            )
        structures.code(self.pk)  # has fitting kernels
        names = [p.name for p in self.params]
        missing = [n for n in self.pk.PARAMETERS if n not in names]
        if missing:
            raise PKPDInputError(
                f"PopPKModel params must include {missing[0]!r}: pk={self.pk.__name__} has the parameters "
                f"{list(self.pk.PARAMETERS)} (units {list(self.pk.PARAMETERS.values())}); got {names}. "
                f"Give one Param per parameter of the PK model."
            )
        if self.ka_above_k and CLEARANCE not in self.pk.PARAMETERS:
            raise PKPDInputError(
                f"ka_above_k compares {self.pk.ABSORPTION} with {CLEARANCE}/{self.pk.VOLUME}, but "
                f"pk={self.pk.__name__} has no parameter {CLEARANCE!r}; set ka_above_k=False."
            )
        for ep in self.endpoints:
            if ep.pk_structures is not None and self.pk not in ep.pk_structures:
                raise PKPDInputError(
                    f"the {ep.name!r} observations are predicted for the PK models "
                    f"{[m.__name__ for m in ep.pk_structures]} only; got pk={self.pk.__name__}."
                )
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise PKPDInputError(f"PopPKModel params must have unique names; {sorted(dup)} repeated.")
        if self.conc_unit not in CONC_UNITS:
            raise PKPDInputError(
                f"conc_unit must be one of {list(CONC_UNITS)}; got {self.conc_unit!r}."
            )
        for c in self.covariates:
            if c.param not in names:
                raise PKPDInputError(
                    f"Covariate {c.covariate!r} is on {c.param!r}, which is not a parameter ({names})."
                )
        if not (np.isfinite(self.lkj_eta) and self.lkj_eta > 0):
            raise PKPDInputError(f"lkj_eta must be > 0 (1 = uniform); got {self.lkj_eta!r}.")
        ep_names = ["conc"] + [e.name for e in self.endpoints]
        if len(set(ep_names)) != len(ep_names):
            raise PKPDInputError(f"endpoint names must be unique; got {ep_names}.")

    # ------------------------------------------------------------- views
    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def iiv_names(self) -> list[str]:
        """Parameters with IIV, in order."""
        return [p.name for p in self.params if p.omega_scale is not None]

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise PKPDInputError(f"no parameter {name!r}; the model has {self.param_names}.")

    def concentration_observation(self) -> Observation:
        """The concentrations (CMT 2) as this model predicts them."""
        return concentration_observation(self.conc_unit, self.error, self.pk)

    def all_observations(self) -> tuple:
        """Every observation type: the concentrations, then :attr:`endpoints`."""
        return (self.concentration_observation(),) + self.endpoints

    def all_endpoints(self) -> tuple:
        """Deprecated name of :meth:`all_observations`."""
        return deprecated("PopPKModel.all_endpoints()", "PopPKModel.all_observations()", self.all_observations())

    # ------------------------------------------------------------- editing
    def with_param(self, name: str, **changes) -> "PopPKModel":
        """A copy with one parameter's prior changed, e.g. ``with_param("ka", median=1.2, omega_scale=None)``."""
        p = self.param(name)
        new = dataclasses.replace(p, **changes)
        return dataclasses.replace(self, params=tuple(new if q.name == name else q for q in self.params))

    def with_param_added(self, param: Param) -> "PopPKModel":
        """A copy with an extra structural parameter (e.g. a PD parameter)."""
        return dataclasses.replace(self, params=self.params + (param,))

    def describe(self) -> str:
        """Human-readable summary of the model and its priors."""
        lines = [f"PopPKModel: {self.name}", f"  concentrations in {self.conc_unit}; residual error {self.error.kind}"]
        for p in self.params:
            iiv = f"omega ~ HalfNormal({p.omega_scale:.3g})" if p.omega_scale is not None else "no IIV"
            iiv += ", centred etas" if p.centred and p.omega_scale is not None else ""
            lines.append(f"  {p.name:>6} ~ LogNormal(log {p.median:g} {p.unit}, {p.sd_log:g}); {iiv}  {p.source}")
        for c in self.covariates:
            prior = f"~ Normal({c.exponent:g}, {c.sd:g})" if c.sd is not None else f"= {c.exponent:g} (fixed)"
            lines.append(f"  {c.param} x ({c.covariate}/{c.reference:g})^{c.var_name} {prior}")
        if self.error.has_prop:
            lines.append(f"  sigma_prop ~ HalfNormal({self.error.prop_scale:g})")
        if self.error.has_add:
            lines.append(f"  sigma_add ~ HalfNormal({self.error.add_scale:g} {self.conc_unit})")
        if self.correlated_iiv:
            lines.append(f"  IIV correlation ~ LKJ({self.lkj_eta:g})")
        if self.ka_above_k:
            lines.append(f"  ka_i > CL_i/V_i in every subject (no flip-flop): log-sigmoid barrier, width "
                         f"{KA_ABOVE_K_SCALE:g} in log(ka/k)")
        return "\n".join(lines)


def theophylline_model(**changes) -> PopPKModel:
    """One-compartment oral model with literature priors for theophylline (adults).

    Typical values, prior widths, IIV priors, weight exponents and the
    combined residual error come from :mod:`pkpd.drugs.theophylline` (with
    their sources): CL 2.8 L/h and V 35 L at 70 kg, ka 1.5 /h; CL ~
    (WT/70)^theta, theta ~ N(0.75, 0.25), V ~ (WT/70)^theta, theta ~ N(1,
    0.25); concentrations in mg/L (the data's DV unit).

    ``changes`` are passed to :func:`dataclasses.replace` (e.g. ``correlated_iiv=True``).
    """
    params = tuple(Param(name, typical, log_sd, halfnormal_scale_for_median(iiv), unit, source)
                   for name, (typical, log_sd, iiv, unit, source) in theophylline.PK_PRIORS.items())
    covariates = tuple(Covariate(name, "WT", theophylline.REFERENCE_WEIGHT_KG, mean, sd)
                       for name, (mean, sd) in theophylline.WEIGHT_EXPONENTS.items())
    model = PopPKModel(
        params=params,
        covariates=covariates,
        error=ResidualError("combined", prop_scale=halfnormal_scale_for_median(theophylline.RESIDUAL_PROP_MEDIAN),
                            add_scale=theophylline.RESIDUAL_ADD_SCALE_MG_L),
        conc_unit=theophylline.CONC_UNIT,
        name="theophylline one-compartment oral",
    )
    return dataclasses.replace(model, **changes)


def hetrombopag_saturable_model(**changes) -> PopPKModel:
    """Hetrombopag PK with saturable elimination
    (:class:`pkpd.saturable.OneCompartmentSaturable`, parameters ka 1/h, cl L/h,
    v L, vmax mg/h, km ng/mL) and the priors :data:`HETROMBOPAG_SATURABLE_PARAMS`;
    concentrations in ng/mL, 20% proportional error prior median.  Vmax and Km
    are told apart only by the dose-dependence of the profiles: fit several
    dose levels (e.g. the 5-40 mg single ascending doses).  ``changes`` are
    :class:`PopPKModel` fields."""
    fields = {"params": HETROMBOPAG_SATURABLE_PARAMS, "pk": OneCompartmentSaturable,
              "name": "one-compartment oral, saturable elimination (hetrombopag priors)", **changes}
    return PopPKModel(**fields)


# ================================================================= individual parameters
def individual_params(xp, model: PopPKModel, typical: dict, thetas: dict, etas: dict, data: FitData) -> dict:
    """Individual parameters ``{name: (..., n_subjects)}``.

    typical : ``{name: (...)}`` typical values; thetas : ``{var_name: (...)}`` covariate
    exponents (fixed ones may be absent); etas : ``{name: (..., n_subjects)}`` (absent
    = 0, i.e. population prediction).  ``xp`` is numpy or pytensor.tensor.
    """
    out = {}
    for p in model.params:
        log_p = xp.log(typical[p.name])[..., None] if xp is np else xp.log(typical[p.name])
        for c in model.covariates:
            if c.param != p.name:
                continue
            theta = thetas.get(c.var_name, c.exponent)
            if xp is np:
                theta = np.asarray(theta)[..., None]
            log_p = log_p + theta * np.log(data.covariate(c.covariate) / c.reference)
        if p.name in etas:
            log_p = log_p + etas[p.name]
        else:  # make sure every individual parameter has the subject axis
            log_p = log_p + xp.zeros(data.n_subjects)
        out[p.name] = xp.exp(log_p)
    return out


def residual_sd(xp, error: ResidualError, pred, sigma_prop=None, sigma_add=None):
    """Residual SD at ``pred`` (same unit), broadcasting draws on leading axes."""
    if error.kind == "proportional":
        return sigma_prop * pred
    if error.kind == "additive":
        return sigma_add + 0.0 * pred
    return xp.sqrt(sigma_add**2 + (sigma_prop * pred) ** 2)


# ================================================================= builder
@dataclass
class BuiltModel:
    """A PyMC model together with what was used to build it.

    pymc_model : the ``pymc.Model`` (None from :func:`prepare`).  spec : the
    :class:`PopPKModel`.  data : the flattened :class:`FitData`.  endpoints :
    the :class:`Observation` types with observations in the data.  Pass a BuiltModel to :func:`pkpd.fit` again
    to refit (other seed, more draws) without recompiling.
    """

    pymc_model: object
    spec: PopPKModel
    data: FitData
    endpoints: tuple
    #: compiled sampler model, cached by :func:`pkpd.popfit.fit` (refits skip compilation)
    compiled: dict = field(default_factory=dict, repr=False)

    @property
    def free_param_names(self) -> list[str]:
        """Population-level variables (typical values, thetas, omegas, sigmas)."""
        names = list(self.spec.param_names)
        names += [c.var_name for c in self.spec.covariates if c.sd is not None]
        names += [f"omega_{n}" for n in self.spec.iiv_names]
        if self.spec.correlated_iiv and len(self.spec.iiv_names) > 1:
            names += ["omega_corr"]
        for ep in self.endpoints:
            if ep.error.has_prop:
                names.append(ep.sigma_prop_name)
            if ep.error.has_add:
                names.append(ep.sigma_add_name)
        return names

    def prior_sds(self) -> dict:
        """Prior SD of each population variable, ``{name: (scale, sd)}``, on the
        scale where its prior is Normal or HalfNormal (so that a posterior SD
        can be compared with it: a parameter the data do not inform keeps it).

        * typical value ``P ~ LogNormal(log median, sd_log)``: scale ``"log"``,
          SD of log P = ``sd_log``;
        * covariate exponent ``theta ~ Normal(exponent, sd)``: ``"linear"``, ``sd``;
        * omega, sigma ``~ HalfNormal(s)``: ``"linear"``, ``s sqrt(1 - 2/pi)``;
        * IIV correlation under ``LKJ(eta)`` in d dimensions: ``"linear"``; each
          r has (r + 1)/2 ~ Beta(a, a), a = eta - 1 + d/2 (Lewandowski, Kurowicka
          & Joe 2009, J Multivar Anal 100:1989, section 3.2), so SD 1 / sqrt(2a + 1).
        """
        spec = self.spec
        out = {p.name: ("log", float(p.sd_log)) for p in spec.params}
        out.update({c.var_name: ("linear", float(c.sd)) for c in spec.covariates if c.sd is not None})
        out.update({f"omega_{n}": ("linear", spec.param(n).omega_scale * _HALFNORMAL_SD) for n in spec.iiv_names})
        d = len(spec.iiv_names)
        if spec.correlated_iiv and d > 1:
            a = spec.lkj_eta - 1.0 + d / 2.0
            out["omega_corr"] = ("linear", float(1.0 / np.sqrt(2.0 * a + 1.0)))
        for ep in self.endpoints:
            if ep.error.has_prop:
                out[ep.sigma_prop_name] = ("linear", ep.error.prop_scale * _HALFNORMAL_SD)
            if ep.error.has_add:
                out[ep.sigma_add_name] = ("linear", ep.error.add_scale * _HALFNORMAL_SD)
        return out


def prepare(model: PopPKModel, data, check_units: bool = True) -> BuiltModel:
    """Check ``model`` against ``data`` and flatten the data, without building
    the PyMC model (``pymc_model`` is None).  Used by the plots and the VPC.

    data : a :class:`pkpd.nonmem.Dataset` (whose ``units["dv"]`` must equal
        ``model.conc_unit``), or an already flattened :class:`FitData`.
    check_units : compare the observed concentrations with the prior typical
        prediction and raise if they differ ~100-fold or more (a DV unit error).
    """
    if isinstance(data, BuiltModel):
        return data
    fit_data = _fit_data(model, data)
    endpoints = tuple(ep for ep in model.all_observations() if ep.cmt in fit_data.blocks)
    if not endpoints or endpoints[0].cmt != CONC_CMT:
        raise PKPDInputError(
            f"the data have no concentration observations (CMT {CONC_CMT}) left to fit; "
            f"CMTs present: {sorted(fit_data.blocks)}."
        )
    if not structures.linear(model.pk):
        _check_sequential_doses(model, fit_data)
    if check_units:
        _check_magnitude(model, fit_data)
    for ep in endpoints:
        block = fit_data.blocks[ep.cmt]
        if ep.error.kind == "proportional" and not model.drop_predose and ep.cmt == CONC_CMT:
            raise PKPDInputError(
                "drop_predose=False keeps concentrations whose prediction is 0, where a proportional error has "
                "zero variance; use ResidualError('combined') or drop_predose=True."
            )
        if ep.error.kind == "proportional" and block.n_quantified and (block.dv[~block.blq] <= 0).any():
            raise PKPDInputError(
                f"{ep.name}: {int((block.dv[~block.blq] <= 0).sum())} quantified observations are <= 0, impossible "
                f"under a proportional error; flag them BLQ=1 with an LLOQ, or use a combined error."
            )
    return BuiltModel(None, model, fit_data, endpoints)


def build_model(model: PopPKModel, data, check_units: bool = True) -> BuiltModel:
    """Build the PyMC model of ``model`` for ``data`` (see :func:`prepare` for
    ``data`` and ``check_units``).  Returns a :class:`BuiltModel`."""
    import pymc as pm
    import pytensor.tensor as pt

    built = prepare(model, data, check_units)
    fit_data, endpoints = built.data, built.endpoints

    iiv = model.iiv_names
    coords = {"subject": list(fit_data.ids), "iiv_param": iiv, "iiv_param_": iiv}
    for ep in endpoints:
        coords[f"{ep.name}_obs"] = np.arange(fit_data.blocks[ep.cmt].n)

    with pm.Model(coords=coords) as pm_model:
        typical = {p.name: pm.LogNormal(p.name, mu=np.log(p.median), sigma=p.sd_log) for p in model.params}
        thetas = {
            c.var_name: pm.Normal(c.var_name, mu=c.exponent, sigma=c.sd)
            for c in model.covariates if c.sd is not None
        }
        population = individual_params(pt, model, typical, thetas, {}, fit_data)  # eta = 0, per subject
        etas = _iiv(pm, pt, model, iiv, {n: pt.log(population[n]) for n in iiv})
        indiv = individual_params(pt, model, typical, thetas, etas, fit_data)
        if model.ka_above_k:
            ka, cl, v = (indiv[n] for n in (model.pk.ABSORPTION, CLEARANCE, model.pk.VOLUME))
            gap = (pt.log(ka) - pt.log(cl / v)) / KA_ABOVE_K_SCALE
            pm.Potential("ka_above_k", -pt.softplus(-gap).sum())  # log sigmoid
        for ep in endpoints:
            block = fit_data.blocks[ep.cmt]
            pred = ep.predict(pt, indiv, block)
            sigma_prop = pm.HalfNormal(ep.sigma_prop_name, sigma=ep.error.prop_scale) if ep.error.has_prop else None
            sigma_add = pm.HalfNormal(ep.sigma_add_name, sigma=ep.error.add_scale) if ep.error.has_add else None
            sd = residual_sd(pt, ep.error, pred, sigma_prop, sigma_add)
            nq = block.n_quantified
            if nq:
                pm.Normal(ep.name, mu=pred[:nq], sigma=sd[:nq], observed=block.dv[:nq])
            if block.n_blq:
                lloq = block.lloq[nq:]
                pm.Censored(
                    f"{ep.name}_blq", pm.Normal.dist(mu=pred[nq:], sigma=sd[nq:]),
                    lower=lloq, upper=None, observed=lloq,
                )
    built.pymc_model = pm_model
    return built


def _fit_data(model: PopPKModel, data) -> FitData:
    if isinstance(data, FitData):
        fit_data = data
    else:
        dataset = as_dataset(data)
        fit_data = flatten(dataset, cmts=tuple(ep.cmt for ep in model.all_observations()),
                           drop_predose=model.drop_predose)
    if fit_data.units.get("dv") != model.conc_unit:
        raise PKPDInputError(
            f"conc_unit: the model predicts concentrations in {model.conc_unit!r} but the data's DV unit is "
            f"{fit_data.units.get('dv')!r}. Build the model with conc_unit={fit_data.units.get('dv')!r} "
            f"(priors on sigma_add are in that unit), or read the data with the right dv_unit."
        )
    return fit_data


def _iiv(pm, pt, model: PopPKModel, iiv: list[str], population_log: dict) -> dict:
    """Etas ``{name: (n_subjects,)}``, named ``eta_<name>``: non-centred unless
    the parameter says ``centred`` (correlated IIV is always non-centred).

    Centred means the individual value itself is sampled, ``log_<name>_ind ~
    Normal(population_log, omega)`` (``population_log``: log typical value with
    covariate effects, per subject), and ``eta = log_<name>_ind - population_log``:
    when the data fix each subject's value, the typical value then moves freely
    (sampling ``eta ~ Normal(0, omega)`` instead would tie it to every eta)."""
    if not iiv:
        return {}
    if model.correlated_iiv and any(model.param(n).centred for n in iiv):
        raise PKPDInputError(
            "centred etas are not available with correlated_iiv=True (the LKJ model is non-centred); "
            "set centred=False for " + ", ".join(n for n in iiv if model.param(n).centred) + "."
        )
    scales = np.array([model.param(n).omega_scale for n in iiv])
    if model.correlated_iiv and len(iiv) > 1:
        chol, corr, sds = pm.LKJCholeskyCov(
            "omega_chol", n=len(iiv), eta=model.lkj_eta,
            sd_dist=pm.HalfNormal.dist(sigma=scales, shape=len(iiv)), compute_corr=True, store_in_trace=False,
        )
        pm.Deterministic("omega_corr", corr, dims=("iiv_param", "iiv_param_"))
        z = pm.Normal("eta_z", 0.0, 1.0, dims=("subject", "iiv_param"))
        eta = pt.dot(z, chol.T)
        out = {}
        for k, n in enumerate(iiv):
            pm.Deterministic(f"omega_{n}", sds[k])
            out[n] = pm.Deterministic(f"eta_{n}", eta[:, k], dims="subject")
        return out
    out = {}
    for n, scale in zip(iiv, scales):
        omega = pm.HalfNormal(f"omega_{n}", sigma=scale)
        if model.param(n).centred:
            log_ind = pm.Normal(f"log_{n}_ind", population_log[n], omega, dims="subject")
            out[n] = pm.Deterministic(f"eta_{n}", log_ind - population_log[n], dims="subject")
        else:
            z = pm.Normal(f"eta_{n}_z", 0.0, 1.0, dims="subject")
            out[n] = pm.Deterministic(f"eta_{n}", omega * z, dims="subject")
    return out


def _check_sequential_doses(model: PopPKModel, data: FitData) -> None:
    """Raise for doses a nonlinear PK model cannot take: it integrates each
    subject's doses in sequence, and a steady-state dose (SS 1/2) would need
    the fixed point of the nonlinear dose-to-dose map."""
    for sid, reg in zip(data.ids, data.regimens):
        for d in reg.doses:
            if d.ss:
                raise PKPDInputError(
                    f"SS: subject ID {sid!r} has a steady-state dose (SS={d.ss}) at {d.time:g} h, which "
                    f"pk={model.pk.__name__} (nonlinear) cannot fit; give the doses leading to steady state "
                    f"explicitly (SS=0, e.g. with ADDL), or fit a linear PK model."
                )


def _check_magnitude(model: PopPKModel, data: FitData) -> None:
    """Raise if observed concentrations are >= 100x off the prior typical prediction."""
    block = data.blocks[CONC_CMT]
    quant = ~block.blq & (block.dv > 0)
    if quant.sum() < 3:
        return
    typical = {p.name: np.asarray(p.median) for p in model.params}
    thetas = {c.var_name: c.exponent for c in model.covariates}
    indiv = individual_params(np, model, typical, thetas, {}, data)
    pred = model.concentration_observation().predict_np(indiv, block)
    ok = quant & (pred > 0)
    if ok.sum() < 3:
        return
    ratio = float(np.median(block.dv[ok] / pred[ok]))
    if not (1e-2 < ratio < 1e2):
        raise PKPDInputError(
            f"conc_unit: observed concentrations are a median {ratio:.3g} times the prior typical prediction "
            f"(both in {model.conc_unit}). A ratio near 1000 or 0.001 means mg/L and ng/mL are mixed: check the "
            f"dataset's dv_unit and the model's conc_unit; otherwise move the priors of ka/cl/v (median) towards "
            f"the data, or pass check_units=False."
        )


def _in(unit: str) -> str:
    return f" (in {unit})" if unit else ""
