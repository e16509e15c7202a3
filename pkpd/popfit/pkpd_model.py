"""Joint population PK / platelet (PD) model of hetrombopag for :func:`pkpd.fit`.

The concentration part is :class:`~pkpd.popfit.model.PopPKModel`'s one-compartment
oral model; this module adds the platelet observations (CMT 3, 10^9/L) as an
:class:`~pkpd.popfit.model.Observation` and the PD parameters as
:class:`~pkpd.popfit.model.Param` objects, so that PK and PD are fitted jointly
(one posterior, the platelets inform the PK parameters through the drug effect).

Structural PD model (``docs/science.md``; Wang et al., Br J Clin
Pharmacol 2022;88:2084): drug-stimulated production of megakaryocyte
progenitors, ``n_transit`` = 4 maturation compartments, then circulating
platelets, from the drug-free steady state::

    E(C) = Emax C / (EC50 + C)          (hill = 1)
    ktr = 4 / MTT,  kdeg = 1 / lifespan,  kin = PLT0 kdeg
    dP1/dt = kin (1 + E(C)) - ktr P1    (gamma = 0: no feedback)
    ...    dPLT/dt = ktr P4 - kdeg PLT

Fitting assumes gamma = 0 and hill = 1 (the defaults of
``pkpd.drugs.hetrombopag.model``): the platelet response is then linear in the
drug input, which :mod:`pkpd.popfit.platelets` turns into a fixed-size tensor
expression with exact gradients.

Individual parameters are log-normal (``P_i = P_tv exp(eta_i)``) like the PK
ones.  Default priors, centred on ``pkpd.drugs.hetrombopag.model("healthy")``
(see :data:`HETROMBOPAG_PD_PARAMS` for the sources):

======== ========= ======== ================ ===============================================
param    median    sd_log   IIV (prior med.) why
======== ========= ======== ================ ===============================================
emax     10 fold   0.5      15% CV           [I] romiplostim 9-11.2 (Petrov 2024; Wang 2010)
ec50     40 ng/mL  1.0      70% CV           [I] rough calibration to one day-6 number (Yang 2020)
mtt      168 h     0.3      none             [I] published 140-230 h for TPO-RAs
lifespan 205 h     0.3      none             [R] 205 h (Harker 2000); 8-10 d healthy
plt0     250 e9/L  0.5      30% CV           [R] healthy range 150-450 x10^9/L
======== ========= ======== ================ ===============================================

Concentrations: combined residual error (see :data:`CONC_ERROR` for why not
purely proportional).  Platelet residual error: proportional, ``sigma_prop_plt ~ HalfNormal`` with a
prior median of 20% (published 9-44% [R]).  The simulator's healthy default
draws platelet noise log-normally (``exp(0.2 eps)``); at 20% the proportional
normal likelihood is a close approximation (mean +2%, well inside the
uncertainty of PLT0 in a study of tens of subjects).

Pre-dose platelet counts (time <= first dose) are *kept*: they measure PLT0,
and the prediction there is exactly PLT0.

``pkpd.fit``'s IPRED/PRED and pointwise log-likelihood use the fitting
arithmetic itself (the Op's forward kernel over the draws), so the
log-likelihood is the one that was sampled, as LOO needs.  The plots
(individual fits, VPCs) do *not* reuse it: :meth:`PlateletPrediction.simulate`
runs the independent exact-step simulator :func:`pkpd.simulate.solver_for`
with draws x subjects flattened into one population, so the plots check the
fitting code as well.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import numpy as np
import pandas as pd

from ..checks import PKPDInputError
from ..drugs import hetrombopag
from ..one_compartment import OneCompartmentOral
from ..regimen import Regimen
from ..simulate import solver_for
from .design import PLATELET_CMT, ObservationBlock
from .model import (
    CONC_UNITS,
    HETROMBOPAG_PARAMS,
    CompiledTerms,
    Observation,
    Param,
    PopPKModel,
    ResidualError,
    build_model,
    deprecated,
    halfnormal_scale_for_median,
    omega_from_cv,
)
from .platelet_op import N_TRANSIT
from .platelet_op import PARAMS as KERNEL_PARAMS
from .platelet_op import (
    PK,
    compiled_for,
    grid_constants,
    predict_platelets_kernel,
    predict_platelets_tensor,
)
from .platelets import platelet_grid
from .sampling import fit, posterior_individual_params

#: PD parameters held fixed in fitting (the fitting kernel assumes them; its chain
#: length is platelet_op.N_TRANSIT).
GAMMA = 0.0
HILL = 1.0

#: Blocks whose platelet grid / dose tables are kept (one per fitted data set
#: and per plotted grid; a handful is plenty).
_CACHE_SIZE = 16


def _pd_params() -> tuple:
    """PD priors centred on the healthy defaults of :mod:`pkpd.drugs.hetrombopag`."""
    model = hetrombopag.model("healthy", pk="linear")
    typ, iiv, src = model.typical, model.iiv, model.sources

    def omega(name):
        cv = iiv.get(name, 0.0)
        return halfnormal_scale_for_median(omega_from_cv(cv)) if cv > 0 else None

    return (
        Param("emax", typ["emax"], 0.5, omega("emax"), "fold", src["emax"] + "; prior log-SD 0.5"),
        Param("ec50", typ["ec50"], 1.0, omega("ec50"), "ng/mL", src["ec50"] + "; prior log-SD 1"),
        Param("mtt", typ["mtt"], 0.3, omega("mtt"), "h", src["mtt"] + "; prior log-SD 0.3 (140-230 h within 1 SD)"),
        Param("lifespan", typ["lifespan"], 0.3, omega("lifespan"), "h", src["lifespan"] + "; prior log-SD 0.3"),
        Param("plt0", typ["plt0"], 0.5, omega("plt0"), "10^9/L", src["plt0"] + "; prior log-SD 0.5"),
    )


#: Hetrombopag PD priors (healthy subjects); IIV on emax (15%), ec50 (70%) and
#: plt0 (30%) as in ``pkpd.drugs.hetrombopag.model("healthy")``, none on mtt and lifespan.
HETROMBOPAG_PD_PARAMS = _pd_params()
PD_NAMES = ("emax", "ec50", "mtt", "lifespan", "plt0")

#: Default platelet residual error: proportional, prior median 20% [I] (published 9-44%).
PLATELET_ERROR = ResidualError("proportional", prop_scale=halfnormal_scale_for_median(0.20))

#: Default concentration residual error of the joint model [I]: combined,
#: sigma_prop prior median 20% (scale 0.3, as the PK model) plus an additive
#: floor sigma_add ~ HalfNormal(0.3 ng/mL) (prior median 0.2 ng/mL, an
#: assay-level SD).  Not purely proportional: with rich sampling up to 120 h
#: after the last dose, starting points whose jittered etas predict ~0 ng/mL
#: there have a log density of ~-1e27 under a proportional error, and nutpie's
#: step size collapsed to 0 in such chains (3 of 6 chains of the 9-subject
#: phase I fit of notebook 02 never moved); the floor bounds the density and
#: every chain then mixed.  The data can still shrink sigma_add to ~0.
CONC_ERROR = ResidualError("combined", prop_scale=0.3, add_scale=0.3)


# ================================================================= doses of a block
def block_regimens(block: ObservationBlock) -> tuple[np.ndarray, list]:
    """The subjects of ``block`` and the doses that act on their observations.

    Returns ``(subjects, regimens)``: the sorted subject indices present in the
    block and, for each, a :class:`Regimen` of every dose at or before its last
    observation (h, mg), from the block's regimens (the data's) -- exactly
    the doses of the data that the model's predictions at these observations
    depend on (later doses cannot act on them).

    Raises :class:`PKPDInputError` for steady-state doses or resets (EVID 3/4),
    which the platelet model (drug-free start, no reset of the marrow) cannot
    represent.
    """
    if block.design.any_steady or any(d.ss for r in block.regimens for d in r.doses):
        raise PKPDInputError(
            "platelet observations follow a steady-state dose (SS=1/2); the platelet model starts drug-free and "
            "cannot take it. Write the run-in doses out explicitly (EVID 1 records with ADDL/II)."
        )
    if not block.regimens:
        raise PKPDInputError(
            "the platelet block has no regimens (ObservationBlock.regimens); build the blocks with "
            "pkpd.popfit.flatten, which stores each subject's Regimen."
        )
    subjects = np.unique(block.subject)
    regimens = []
    for s in subjects:
        last = block.time[block.subject == s].max()
        doses = tuple(d for d in block.regimens[s].doses if d.time <= last)  # a dose at t acts before t's count
        reset = next((d for d in doses if d.reset), None)
        if reset is not None:
            raise PKPDInputError(
                f"subject index {s}: a reset (EVID 3/4) at {reset.time:g} h empties the system before platelet "
                "observations, which the platelet model (no reset of the marrow) cannot represent. Split the "
                "subject at the reset or drop the reset."
            )
        regimens.append(Regimen(doses))
    return subjects, regimens


# ================================================================= the observation type
class PlateletPrediction:
    """Platelets (10^9/L) at a block's observations, for fitting and for draws.

    Called as ``predict(xp, indiv, block)`` (the :class:`Observation` hook):
    ``indiv`` holds individual parameters ``{name: (..., n_subjects)}`` -- PK
    ``ka`` (1/h), ``cl`` (L/h), ``v`` (L) and PD ``emax`` (fold), ``ec50`` (in
    the model's concentration unit), ``mtt`` (h), ``lifespan`` (h), ``plt0``
    (10^9/L).  With ``xp = pytensor.tensor`` it builds the likelihood's
    prediction as one compiled Op with a hand-written adjoint
    (:func:`pkpd.popfit.platelet_op.predict_platelets_tensor`; the same
    arithmetic as :func:`pkpd.popfit.platelets.predict_platelets`); with
    ``xp = numpy`` it runs the Op's forward kernel over posterior draws
    (:func:`~pkpd.popfit.platelet_op.predict_platelets_kernel`: IPRED, PRED
    and log-likelihood of a fit).  The :class:`PlateletGrid` of a block is
    built once and cached.  :meth:`simulate` (the ``predict_numpy`` hook,
    used by the plots and VPCs) computes the same from the independent simulator.

    conc_unit : unit of concentrations and EC50 ("ng/mL", "mg/L", "ug/mL").
    fixed_pk : optional ``{"ka", "cl", "v"}`` arrays, one value per subject of
        the data (in the data's subject order): the PK driving the platelets
        is then fixed (sequential fitting, :func:`fit_sequential`) instead of
        the sampled individual PK parameters.
    """

    def __init__(self, conc_unit: str = "ng/mL", fixed_pk: dict | None = None):
        if conc_unit not in CONC_UNITS:
            raise PKPDInputError(f"conc_unit must be one of {list(CONC_UNITS)}; got {conc_unit!r}.")
        self.conc_unit = conc_unit
        self.conc_scale = CONC_UNITS[conc_unit]
        if fixed_pk is not None:
            missing = [k for k in PK if k not in fixed_pk]
            if missing:
                raise PKPDInputError(f"fixed_pk needs ka (1/h), cl (L/h) and v (L) per subject; {missing} missing.")
            fixed_pk = {k: np.asarray(fixed_pk[k], float) for k in PK}
            for k, a in fixed_pk.items():
                if a.ndim != 1 or not np.all(np.isfinite(a) & (a > 0)):
                    raise PKPDInputError(f"fixed_pk[{k!r}] must be a 1-D array of finite values > 0 (one per subject).")
        self.fixed_pk = fixed_pk
        self._cache: OrderedDict = OrderedDict()

    # ------------------------------------------------------------- per-block tables
    def _tables(self, block: ObservationBlock) -> dict:
        """Subjects, regimens and platelet grid of ``block`` (built once per block)."""
        key = id(block)
        hit = self._cache.get(key)
        if hit is not None and hit["block"] is block:
            self._cache.move_to_end(key)
            return hit
        subjects, regimens = block_regimens(block)
        position = np.searchsorted(subjects, block.subject)  # block row -> index among present subjects
        tables = {
            "block": block, "subjects": subjects, "regimens": regimens, "position": position,
            "grid": None,
        }
        self._cache[key] = tables
        while len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)
        return tables

    def grid(self, block: ObservationBlock):
        """The :class:`~pkpd.popfit.platelets.PlateletGrid` of ``block`` (cached)."""
        tables = self._tables(block)
        if tables["grid"] is None:
            tables["grid"] = platelet_grid(tables["regimens"], tables["position"], block.time)
        return tables["grid"]

    def _pk(self, indiv: dict, subjects: np.ndarray) -> list:
        if self.fixed_pk is None:
            return [indiv[k][..., subjects] for k in PK]
        n = len(self.fixed_pk["ka"])
        if subjects.max(initial=-1) >= n:
            raise PKPDInputError(
                f"fixed_pk has {n} subjects but the data have platelet observations for subject index "
                f"{int(subjects.max())}; fixed_pk must hold one value per subject of the data, in its order."
            )
        return [self.fixed_pk[k][subjects] for k in PK]

    # ------------------------------------------------------------- the hook
    def __call__(self, xp, indiv: dict, block: ObservationBlock):
        """The fitting prediction: ``xp`` pytensor.tensor (parameters of shape (n_subjects,)) or numpy
        (parameters of shape (..., n_subjects), leading axes = posterior draws)."""
        grid = self.grid(block)
        subjects = self._tables(block)["subjects"]
        ka, cl, v = self._pk(indiv, subjects)
        pd_ = [indiv[k][..., subjects] for k in PD_NAMES]
        if xp is np:  # leading draw axes allowed: IPRED / PRED and the pointwise log-likelihood of a fit
            return predict_platelets_kernel(ka, cl, v, *pd_, grid=grid, n_transit=N_TRANSIT,
                                            conc_scale=self.conc_scale)
        # in the PyMC model: one compiled Op with a hand-written adjoint (same arithmetic, ~10x faster)
        return predict_platelets_tensor(ka, cl, v, *pd_, grid=grid, n_transit=N_TRANSIT, conc_scale=self.conc_scale)

    def compiled(self, spec: PopPKModel, data, block: ObservationBlock) -> CompiledTerms:
        """The :class:`Observation`'s ``compiled`` hook: the platelet kernel's
        arrays for pkpd's compiled log density (:mod:`pkpd.popfit.density`).

        ``rows``: position among ``spec``'s parameters of each kernel parameter
        (:data:`pkpd.popfit.platelet_op.PARAMS`), -1 for PK fixed per subject
        (``fixed_pk``, (3, n) over ``subjects``); ``subjects``: the data's
        subject indices with platelet observations; then the grid's constants
        (:func:`~pkpd.popfit.platelet_op.grid_constants`).
        """
        grid = self.grid(block)
        subjects = self._tables(block)["subjects"]
        fixed = self.fixed_pk
        names = spec.param_names
        rows = [-1 if fixed is not None and k in PK else names.index(k) for k in KERNEL_PARAMS]
        fixed_pk = np.zeros((len(PK), subjects.size)) if fixed is None else np.stack([fixed[k][subjects] for k in PK])
        constants = dict(zip(("dose", "mapped", "obs_subject", "obs_step", "tau", "lags", "coef", "gz", "gw"),
                             grid_constants(grid)))
        unsupported = None
        if not compiled_for(N_TRANSIT, grid):
            unsupported = "a platelet grid the kernels are not compiled for"
        elif self.conc_scale != CONC_UNITS[spec.conc_unit]:
            unsupported = "EC50 in another concentration unit than the model's"
        return CompiledTerms("platelets", {"rows": rows, "subjects": subjects, "fixed_pk": fixed_pk, **constants},
                             {"n_transit": N_TRANSIT, "h": grid.h}, unsupported)

    def numpy(self, xp, indiv: dict, block: ObservationBlock) -> np.ndarray:
        """The :class:`Observation`'s ``predict_numpy`` hook: :meth:`simulate` (``xp`` is ignored)."""
        return self.simulate(indiv, block)

    def simulate(self, indiv: dict, block: ObservationBlock) -> np.ndarray:
        """Platelets (10^9/L), shape ``(..., block.n)``, from the independent
        simulator :func:`pkpd.simulate.solver_for` for individual parameters
        with leading draw axes (draws x subjects run as one population)."""
        tables = self._tables(block)
        subjects, regimens, position = tables["subjects"], tables["regimens"], tables["position"]
        lead = np.shape(indiv["plt0"])[:-1]
        n_draws = int(np.prod(lead, dtype=int))
        pk = self._pk(indiv, subjects)
        columns = {}
        for name, values in zip(PK + PD_NAMES, pk + [indiv[k][..., subjects] for k in PD_NAMES]):
            columns[name] = np.broadcast_to(values, lead + (subjects.size,)).reshape(-1)
        # EC50 in the model's concentration unit -> ng/mL, the simulator's unit
        columns["ec50"] = columns["ec50"] * (CONC_UNITS["ng/mL"] / self.conc_scale)
        params = pd.DataFrame({**columns, "hill": HILL, "n_transit": N_TRANSIT, "gamma": GAMMA})
        dose_times = np.unique(np.concatenate([r.times for r in regimens] + [np.empty(0)]))
        amounts = np.zeros((subjects.size, dose_times.size))
        for i, r in enumerate(regimens):
            np.add.at(amounts[i], np.searchsorted(dose_times, r.times), r.amounts)
        report = np.unique(block.time)
        _, plt, _ = solver_for(params).run(dose_times, np.tile(amounts, (n_draws, 1)), report)
        plt = plt.reshape(n_draws, subjects.size, report.size)
        out = plt[:, position, np.searchsorted(report, block.time)]
        return out.reshape(lead + (block.n,))


def platelet_observation(error: ResidualError = PLATELET_ERROR, conc_unit: str = "ng/mL",
                         fixed_pk: dict | None = None) -> Observation:
    """The platelet observations: CMT 3, 10^9/L, residual SDs named ``sigma_prop_plt`` /
    ``sigma_add_plt``, driven by one-compartment oral PK.  See
    :class:`PlateletPrediction` for ``conc_unit`` and ``fixed_pk``."""
    predict = PlateletPrediction(conc_unit, fixed_pk)
    return Observation("plt", PLATELET_CMT, "10^9/L", predict, error, "_plt", predict.numpy,
                       compiled=predict.compiled, pk_structures=(OneCompartmentOral,))


def platelet_endpoint(error: ResidualError = PLATELET_ERROR, conc_unit: str = "ng/mL",
                      fixed_pk: dict | None = None) -> Observation:
    """Deprecated name of :func:`platelet_observation`."""
    return deprecated("platelet_endpoint", "platelet_observation", platelet_observation(error, conc_unit, fixed_pk),
                      stacklevel=3)


def hetrombopag_pkpd_model(pd_params=HETROMBOPAG_PD_PARAMS, plt_error: ResidualError = PLATELET_ERROR,
                           error: ResidualError = CONC_ERROR, centred_pk: bool = True, **changes) -> PopPKModel:
    """Hetrombopag PK (``HETROMBOPAG_PARAMS``) + platelet PD, fitted jointly.

    pd_params : the five PD :class:`Param` objects (names emax, ec50, mtt,
        lifespan, plt0); default :data:`HETROMBOPAG_PD_PARAMS`.  Change one
        prior afterwards with ``model.with_param("mtt", sd_log=0.5)`` or
        ``with_param("emax", omega_scale=None)`` (no IIV).
    plt_error : residual error of the platelet counts (proportional, prior
        median 20%, by default; :data:`PLATELET_ERROR`).
    error : residual error of the concentrations (combined, :data:`CONC_ERROR`;
        ``sigma_add`` in ``conc_unit``).
    centred_pk : centred IIV for ka, cl and v (:class:`Param` ``centred``):
        a joint PK/PD study samples concentrations in every subject, which pin
        the individual PK down; non-centred etas then mix slowly (notebook 02,
        19 samples per subject: bulk ESS of cl ~115 non-centred, >3000 centred).
        Set False for sparse PK (a few samples per subject).
    changes : other :class:`PopPKModel` fields (``conc_unit``,
        ``correlated_iiv``, ``name`` ...).

    n_transit = 4, gamma = 0 and hill = 1 are fixed (see the module docs).
    ``ka_above_k`` is on by default: hetrombopag absorbs ~12 times faster than
    it is eliminated (ka 0.34/h, k 0.029/h; ``HETROMBOPAG_PARAMS``), so the
    flip-flop mirror mode is not a real alternative (see :class:`PopPKModel`).
    """
    pd_params = tuple(pd_params)
    names = sorted(p.name for p in pd_params)
    if names != sorted(PD_NAMES):
        raise PKPDInputError(
            f"pd_params must be exactly the PD parameters {list(PD_NAMES)} (one Param each); got {names}. "
            "n_transit (4), gamma (0) and hill (1) are fixed in fitting."
        )
    conc_unit = changes.get("conc_unit", "ng/mL")
    pk_params = tuple(dataclasses.replace(p, centred=centred_pk) for p in HETROMBOPAG_PARAMS)
    fields = {"params": pk_params + pd_params, "error": error, "name": "hetrombopag PK + platelets (joint)",
              "ka_above_k": True, **changes}
    fields["endpoints"] = tuple(changes.get("endpoints", ())) + (platelet_observation(plt_error, conc_unit),)
    return PopPKModel(**fields)


# ================================================================= sequential fitting
def individual_pk_medians(idata, built) -> pd.DataFrame:
    """Posterior median of each subject's PK parameters (those of ``built.spec.pk``:
    ka 1/h, cl L/h, v L for one compartment), indexed by ID."""
    indiv = posterior_individual_params(idata, built)
    return pd.DataFrame(
        {k: np.median(indiv[k].reshape(-1, indiv[k].shape[-1]), axis=0) for k in built.spec.pk.PARAMETERS},
        index=pd.Index(built.data.ids, name="ID"),
    )


def _platelet_observation_of(model: PopPKModel) -> Observation:
    eps = [e for e in model.endpoints if e.cmt == PLATELET_CMT]
    if len(eps) != 1 or not isinstance(eps[0].predict, PlateletPrediction):
        raise PKPDInputError(
            "sequential fitting needs a model with one platelet observation type from platelet_observation(), "
            "e.g. hetrombopag_pkpd_model()."
        )
    return eps[0]


def sequential_pd_model(model: PopPKModel, pk_estimates: pd.DataFrame, data) -> PopPKModel:
    """Stage 2 of a sequential fit: ``model`` with its platelets driven by fixed
    individual PK parameters.

    pk_estimates : DataFrame indexed by subject ID with columns ka (1/h),
        cl (L/h), v (L), e.g. :func:`individual_pk_medians` of a PK fit.
    data : the Dataset the model will be fitted to; every subject in it needs
        a row (matched by ID, stored in the data's subject order).
    """
    ep = _platelet_observation_of(model)
    ids = list(data.ids) if hasattr(data, "ids") else list(data)
    missing = [i for i in ids if i not in pk_estimates.index]
    if missing:
        raise PKPDInputError(
            f"pk_estimates has no row for subject ID {missing[0]!r} ({len(missing)} missing); give ka, cl, v for "
            f"every subject of the data (index = ID), e.g. individual_pk_medians() of a PK fit of the same data."
        )
    fixed = {k: pk_estimates.loc[ids, k].to_numpy(float) for k in PK}
    new = platelet_observation(ep.error, ep.predict.conc_unit, fixed)
    return dataclasses.replace(model, endpoints=tuple(new if e is ep else e for e in model.endpoints),
                               name=f"{model.name}: PD with fixed individual PK")


def fit_sequential(model: PopPKModel, data, seed: int, pk_fit: dict | None = None, **fit_kwargs):
    """Sequential PK then PD fit (the "IPP" approach, individual PK parameters
    fixed; Zhang, Beal & Sheiner, J Pharmacokinet Pharmacodyn 2003;30:387).

    1. the PK part of ``model`` (no platelet observations) is fitted to the
       concentrations;
    2. each subject's ka, cl, v are fixed at their posterior medians
       (:func:`individual_pk_medians`) and ``model`` is fitted again with the
       platelets driven by them (:func:`sequential_pd_model`).  Stage 2 still
       contains the PK part (a PopPKModel always fits the concentrations), but
       it no longer influences the platelets, so its PK posterior is just a
       second PK fit and stage 2 costs about as much as a joint fit:
       sequential fitting here buys robustness to PD misspecification, not
       speed.  It ignores the uncertainty of the individual PK parameters.

    model : a joint model such as :func:`hetrombopag_pkpd_model`.  data : a
    Dataset with CMT 2 and CMT 3 observations.  seed : for both stages.
    pk_fit : extra :func:`pkpd.fit` arguments for stage 1 only.  fit_kwargs :
    for both stages (draws, tune, chains, ...).

    Returns ``(idata_pk, idata_pd, pk_estimates)``.  Predictions and VPCs of
    ``idata_pd`` use the fixed PK of the data's subjects (a VPC's new subjects
    get new PD etas but these PK parameters).
    """
    ep = _platelet_observation_of(model)
    pk_model = dataclasses.replace(model, endpoints=tuple(e for e in model.endpoints if e is not ep),
                                   name=f"{model.name}: PK stage")
    pk_built = build_model(pk_model, data)
    idata_pk = fit(pk_built, None, seed=seed, **{**fit_kwargs, **(pk_fit or {})})
    estimates = individual_pk_medians(idata_pk, pk_built)
    pd_built = build_model(sequential_pd_model(model, estimates, pk_built.data), data)
    idata_pd = fit(pd_built, None, seed=seed, **fit_kwargs)
    return idata_pk, idata_pd, estimates
