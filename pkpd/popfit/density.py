"""The log density of a population model as one compiled function: the sampler's fast path.

:func:`pkpd.popfit.build_model` writes the model in PyMC, and nutpie can
compile that graph with PyTensor's numba backend.  That works for every model
but costs 0.3 s of numba compilation per graph node the first time on a
machine (60 s for the PK/PD model, 28 s for theophylline) and 7-10 s on every
fit for nutpie's wrapper, which cannot be cached.  This module writes the same
density by hand, the way mrgsolve keeps a separate fast path for its hot loop:

* :func:`_population` / :func:`_population_grad`: LogNormal typical values,
  Normal covariate exponents, HalfNormal omegas, non-centred or centred etas;
* :func:`_residual`: Normal residuals (additive, proportional, combined) and
  Beal's M3 ``log Phi`` for BLQ rows, with HalfNormal residual SDs;
* the predictions: :func:`pkpd.popfit.pk_op.conc_jacobian` (any PK structure
  of :mod:`pkpd.popfit.structures`, by its code: superposed, or for a
  nonlinear model integrated in sequence with its sensitivities; the loop of
  the Op's forward and reverse passes) and, with
  platelets, :func:`pkpd.popfit.platelet_op.platelet_forward` /
  ``platelet_vjp`` -- the kernels the PyTensor Ops run.

Each observation type says what its kernel needs through its ``compiled``
hook (:class:`pkpd.popfit.model.CompiledTerms`): which kernel, and its arrays;
this module does not know the observation classes.

Everything is a module-level numba function compiled with ``cache=True``, and
so is the C callback nutpie calls: it reads the model's arrays through a table
of addresses (``user_data``) instead of closing over them, so nothing is
compiled per model and a machine compiles it once.

The density is the one of the PyMC model on PyMC's unconstrained space (log
for positive variables, with the log-Jacobian), term for term;
``tests/test_density.py`` checks the value and gradient against PyMC's own
``compile_logp`` / ``compile_dlogp`` (a difference of a constant ~1e-9 per
HalfNormal, which rounds its normalising constant, cancels in every NUTS step).
Models this module does not cover fall back to the PyTensor graph
(:func:`supports` says why): correlated IIV (LKJ), steady-state doses, and
observation types without a ``compiled`` hook (or more than one per kernel).

Units follow :mod:`pkpd.popfit.model`: h, mg, L; concentrations and EC50 in the
model's ``conc_unit``; platelets 10^9/L.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .model import CLEARANCE, CONC_UNITS, KA_ABOVE_K_SCALE, BuiltModel
from .pk_op import conc_jacobian
from .platelet_op import PARAMS as PLATELET_PARAMS
from .platelet_op import platelet_forward, platelet_vjp

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_LOG_HALFNORMAL = 0.5 * math.log(2.0 / math.pi)  # log of the HalfNormal density's constant sqrt(2/pi)

# ================================================================= the table of arrays
#: The arrays of a model, in the order of the address table.  Integer arrays are
#: int64, the others float64; every array is C-contiguous and at most 3-D.
FIELDS = (
    "ints", "floats",  # scalar headers, indexed by the I_* and F_* constants below
    "tv_pos", "tv_mu", "tv_sd",  # per parameter: position of log typical value in x, prior mean / SD of it
    "cov_param", "cov_pos", "cov_mu", "cov_sd", "lcov",  # per covariate effect; lcov (C, S) = log(COV / ref)
    "om_pos", "om_scale", "centred", "eta_pos",  # per parameter: log omega position (-1: no IIV) ...
    "conc_rows", "conc_subject", "conc_tau", "conc_amount", "conc_ii", "conc_steady",  # the concentrations:
    "conc_dv", "conc_lloq",  # row of each structure parameter among the parameters, the dose design, data,
    "conc_episodes", "conc_order", "conc_time", "conc_dose_time", "conc_dose_amount",  # its dose episodes
    "plt_rows", "plt_subjects", "plt_fixed_pk",  # platelets: parameter of each kernel row, subjects, fixed PK
    "plt_dose", "plt_mapped", "plt_obs_subject", "plt_obs_step", "plt_tau", "plt_lags", "plt_coef",
    "plt_gz", "plt_gw", "plt_dv", "plt_lloq",
    "out_pos", "out_exp", "out_eta",  # expand: x position of each output, exp() or not; IIV rows for etas
)
_INT_FIELDS = {"ints", "tv_pos", "cov_param", "cov_pos", "om_pos", "centred", "eta_pos", "conc_rows", "conc_subject",
               "conc_steady", "conc_episodes", "conc_order", "plt_rows",
               "plt_subjects", "plt_mapped", "plt_obs_subject", "plt_obs_step", "out_pos", "out_exp", "out_eta"}
_T = {name: k for k, name in enumerate(FIELDS)}
_T_INTS, _T_FLOATS = _T["ints"], _T["floats"]
_T_TV_POS, _T_TV_MU, _T_TV_SD = _T["tv_pos"], _T["tv_mu"], _T["tv_sd"]
_T_COV_PARAM, _T_COV_POS, _T_COV_MU, _T_COV_SD, _T_LCOV = (_T[k] for k in ("cov_param", "cov_pos", "cov_mu", "cov_sd",
                                                                          "lcov"))
_T_OM_POS, _T_OM_SCALE, _T_CENTRED, _T_ETA_POS = _T["om_pos"], _T["om_scale"], _T["centred"], _T["eta_pos"]
_T_CONC = _T["conc_rows"]  # conc_rows ... conc_lloq follow in FIELDS order
_T_PLT = _T["plt_rows"]  # plt_rows ... plt_lloq follow in FIELDS order
_T_OUT_POS, _T_OUT_EXP, _T_OUT_ETA = _T["out_pos"], _T["out_exp"], _T["out_eta"]

#: Integer header: subjects, the ka > k barrier flag and the rows of its absorption rate,
#: clearance and central volume among the parameters, the PK structure's code, per
#: observation type the number of quantified rows and the x positions of log sigma_prop /
#: log sigma_add (-1: none).
(I_S, I_KA_ABOVE_K, I_KA, I_CL, I_V, I_CONC_CODE, I_CONC_NQ, I_CONC_SP, I_CONC_SA, I_HAS_PLT, I_PLT_NQ, I_PLT_SP,
 I_PLT_SA, I_N_TRANSIT, I_N_OUT) = range(15)
#: Float header: concentration unit factor, HalfNormal scales of the residual SDs, platelet grid step (h).
F_CONC_SCALE, F_CONC_SP_SCALE, F_CONC_SA_SCALE, F_PLT_SP_SCALE, F_PLT_SA_SCALE, F_PLT_H = range(6)


@intrinsic
def _void_pointer(typingctx, address):
    """The integer ``address`` as a ``void*`` (to view memory with :func:`numba.carray`)."""
    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], cgutils.voidptr_t)

    return types.voidptr(address), codegen


@numba.njit(cache=True)
def _f(table, k):
    """Array ``k`` of the table as float64, viewed 3-D (rows: address, d0, d1, d2)."""
    return numba.carray(_void_pointer(table[k, 0]), (table[k, 1], table[k, 2], table[k, 3]), np.float64)


@numba.njit(cache=True)
def _i(table, k):
    """Array ``k`` of the table as int64, viewed 3-D."""
    return numba.carray(_void_pointer(table[k, 0]), (table[k, 1], table[k, 2], table[k, 3]), np.int64)


# ================================================================= scalar pieces
@numba.njit(cache=True, error_model="numpy")
def _log_ndtr(z):
    """log Phi(z), the standard normal log CDF, to ~1e-15 relative for every z."""
    if z > 0.0:
        return math.log1p(-0.5 * math.erfc(z / math.sqrt(2.0)))
    if z > -30.0:
        return math.log(0.5 * math.erfc(-z / math.sqrt(2.0)))
    # asymptotic series of the Mills ratio: truncation error < 1e-13 below z = -30
    q = 1.0 / (z * z)
    series = 1.0 - q * (1.0 - q * (3.0 - q * (15.0 - q * (105.0 - q * 945.0))))
    return -0.5 * z * z - math.log(-z) - _HALF_LOG_2PI + math.log(series)


@numba.njit(cache=True, error_model="numpy")
def _halfnormal_log(u, scale):
    """Log density of sigma = e^u ~ HalfNormal(scale), with the log-Jacobian u, and its derivative in u."""
    r = math.exp(u) / scale
    return _LOG_HALFNORMAL - math.log(scale) - 0.5 * r * r + u, 1.0 - r * r


# ================================================================= priors and IIV
@numba.njit(cache=True)
def _population_arrays(table):
    """The table's arrays of the population part (see :data:`FIELDS`), 1-D except lcov (C, S)."""
    S = _i(table, _T_INTS)[0, 0, I_S]
    tv_pos, tv_mu, tv_sd = _i(table, _T_TV_POS)[0, 0], _f(table, _T_TV_MU)[0, 0], _f(table, _T_TV_SD)[0, 0]
    cov_param, cov_pos = _i(table, _T_COV_PARAM)[0, 0], _i(table, _T_COV_POS)[0, 0]
    cov_mu, cov_sd, lcov = _f(table, _T_COV_MU)[0, 0], _f(table, _T_COV_SD)[0, 0], _f(table, _T_LCOV)[0]
    om_pos, om_scale = _i(table, _T_OM_POS)[0, 0], _f(table, _T_OM_SCALE)[0, 0]
    centred, eta_pos = _i(table, _T_CENTRED)[0, 0], _i(table, _T_ETA_POS)[0, 0]
    return S, tv_pos, tv_mu, tv_sd, cov_param, cov_pos, cov_mu, cov_sd, lcov, om_pos, om_scale, centred, eta_pos


@numba.njit(cache=True, error_model="numpy")
def _population(x, table):
    """Prior log density of the population variables and etas, the population
    log parameters ``pop`` (P, S) (typical value and covariates) and the
    individual ones ``log_ind`` (P, S)."""
    S, tv_pos, tv_mu, tv_sd, cov_param, cov_pos, cov_mu, cov_sd, lcov, om_pos, om_scale, centred, eta_pos = \
        _population_arrays(table)
    P = tv_pos.size
    lp = 0.0
    pop = np.empty((P, S))
    for p in range(P):
        u = x[tv_pos[p]]
        r = (u - tv_mu[p]) / tv_sd[p]
        lp += -0.5 * r * r - math.log(tv_sd[p]) - _HALF_LOG_2PI  # LogNormal + log-Jacobian = Normal in log
        for i in range(S):
            pop[p, i] = u
    for c in range(cov_pos.size):
        theta = cov_mu[c]
        if cov_pos[c] >= 0:
            theta = x[cov_pos[c]]
            r = (theta - cov_mu[c]) / cov_sd[c]
            lp += -0.5 * r * r - math.log(cov_sd[c]) - _HALF_LOG_2PI
        for i in range(S):
            pop[cov_param[c], i] += theta * lcov[c, i]
    log_ind = pop.copy()
    for p in range(P):
        if om_pos[p] < 0:
            continue
        lw = x[om_pos[p]]
        w = math.exp(lw)
        lp += _halfnormal_log(lw, om_scale[p])[0]
        for i in range(S):
            e = x[eta_pos[p] + i]
            if centred[p]:  # e is log P_i ~ Normal(pop, omega)
                r = (e - pop[p, i]) / w
                lp += -0.5 * r * r - lw - _HALF_LOG_2PI
                log_ind[p, i] = e
            else:  # e is z_i ~ Normal(0, 1), eta = omega z
                lp += -0.5 * e * e - _HALF_LOG_2PI
                log_ind[p, i] = pop[p, i] + w * e
    return lp, pop, log_ind


@numba.njit(cache=True, error_model="numpy")
def _population_grad(x, table, pop, g_log, grad):
    """Add to ``grad`` the gradient of the prior of :func:`_population` plus that
    of a function whose gradient in the individual log parameters is ``g_log`` (P, S)."""
    S, tv_pos, tv_mu, tv_sd, cov_param, cov_pos, cov_mu, cov_sd, lcov, om_pos, om_scale, centred, eta_pos = \
        _population_arrays(table)
    P = tv_pos.size
    g_pop = np.zeros((P, S))
    for p in range(P):
        if om_pos[p] < 0:
            for i in range(S):
                g_pop[p, i] += g_log[p, i]
            continue
        lw = x[om_pos[p]]
        w = math.exp(lw)
        g_om = _halfnormal_log(lw, om_scale[p])[1]
        for i in range(S):
            e = x[eta_pos[p] + i]
            if centred[p]:
                r = (e - pop[p, i]) / w
                grad[eta_pos[p] + i] += g_log[p, i] - r / w
                g_pop[p, i] += r / w
                g_om += r * r - 1.0
            else:
                grad[eta_pos[p] + i] += g_log[p, i] * w - e
                g_pop[p, i] += g_log[p, i]
                g_om += g_log[p, i] * w * e
        grad[om_pos[p]] += g_om
    for c in range(cov_pos.size):
        if cov_pos[c] >= 0:
            g = -(x[cov_pos[c]] - cov_mu[c]) / (cov_sd[c] * cov_sd[c])
            for i in range(S):
                g += g_pop[cov_param[c], i] * lcov[c, i]
            grad[cov_pos[c]] += g
    for p in range(P):
        g = -(x[tv_pos[p]] - tv_mu[p]) / (tv_sd[p] * tv_sd[p])
        for i in range(S):
            g += g_pop[p, i]
        grad[tv_pos[p]] += g


# ================================================================= residual error
@numba.njit(cache=True, error_model="numpy")
def observation_logp(f, sd, dv, lloq, quantified):
    """Log-likelihood of one observation given its prediction ``f`` and residual SD
    ``sd``, and its derivatives in ``f`` and ``sd``: Normal(dv; f, sd) when
    ``quantified``, else Beal's M3 ``log P(DV < lloq) = log Phi((lloq - f) / sd)``."""
    if quantified:
        r = (dv - f) / sd
        return -0.5 * r * r - math.log(sd) - _HALF_LOG_2PI, r / sd, (r * r - 1.0) / sd
    z = (lloq - f) / sd
    log_cdf = _log_ndtr(z)
    ratio = math.exp(-0.5 * z * z - _HALF_LOG_2PI - log_cdf)  # phi(z) / Phi(z)
    return log_cdf, -ratio / sd, -ratio * z / sd


@numba.njit(cache=True, error_model="numpy")
def pointwise_loglik(pred, sd, dv, lloq, nq):
    """:func:`observation_logp` of every observation (rows < ``nq`` quantified) for
    predictions and SDs ``(n_draws, n_obs)``: the pointwise log-likelihood of a fit."""
    out = np.empty(pred.shape)
    for d in range(pred.shape[0]):
        for i in range(pred.shape[1]):
            out[d, i] = observation_logp(pred[d, i], sd[d, i], dv[i], lloq[i], i < nq)[0]
    return out


@numba.njit(cache=True, error_model="numpy")
def _residual(pred, dv, lloq, nq, x, sp_pos, sa_pos, sp_scale, sa_scale, grad):
    """Log-likelihood of one endpoint's observations given ``pred`` (rows < nq
    quantified, the rest BLQ with M3), plus the HalfNormal priors of its residual
    SDs; adds the SDs' gradient to ``grad`` and returns (log density, d/d pred)."""
    lp = 0.0
    sp = sa = 0.0
    g_sp = g_sa = 0.0
    if sp_pos >= 0:
        sp = math.exp(x[sp_pos])
        lp_s, g_sp = _halfnormal_log(x[sp_pos], sp_scale)
        lp += lp_s
    if sa_pos >= 0:
        sa = math.exp(x[sa_pos])
        lp_s, g_sa = _halfnormal_log(x[sa_pos], sa_scale)
        lp += lp_s
    g_pred = np.empty(pred.size)
    for i in range(pred.size):
        f = pred[i]
        if sa_pos < 0:
            sd = sp * f  # proportional
        elif sp_pos < 0:
            sd = sa  # additive
        else:
            sd = math.sqrt(sa * sa + (sp * f) * (sp * f))
        lp_i, d_f, d_sd = observation_logp(f, sd, dv[i], lloq[i], i < nq)
        lp += lp_i
        # the SD's dependence on the prediction and on the log sigmas
        if sa_pos < 0:
            g_pred[i] = d_f + d_sd * sp
            g_sp += d_sd * sd
        elif sp_pos < 0:
            g_pred[i] = d_f
            g_sa += d_sd * sd
        else:
            g_pred[i] = d_f + d_sd * sp * sp * f / sd
            g_sp += d_sd * (sp * f) * (sp * f) / sd
            g_sa += d_sd * sa * sa / sd
    if sp_pos >= 0:
        grad[sp_pos] += g_sp
    if sa_pos >= 0:
        grad[sa_pos] += g_sa
    return lp, g_pred


# ================================================================= the log density
@numba.njit(cache=True, error_model="numpy")
def _log_density_pk(x, grad, table):
    """Log density of a concentrations-only model at the unconstrained point ``x``;
    writes its gradient into ``grad``.  Also returns what the platelets need."""
    ints, floats = _i(table, _T_INTS)[0, 0], _f(table, _T_FLOATS)[0, 0]
    lp, pop, log_ind = _population(x, table)
    P, S = log_ind.shape
    ind = np.exp(log_ind)
    g_log = np.zeros((P, S))
    for k in range(grad.size):
        grad[k] = 0.0
    ka, cl, v = ints[I_KA], ints[I_CL], ints[I_V]
    if ints[I_KA_ABOVE_K]:  # log sigmoid((log ka - log k) / scale) per subject
        for i in range(S):
            gap = (log_ind[ka, i] - log_ind[cl, i] + log_ind[v, i]) / KA_ABOVE_K_SCALE
            lp -= max(-gap, 0.0) + math.log1p(math.exp(-abs(gap)))  # -softplus(-gap)
            d = 1.0 / (1.0 + math.exp(gap)) / KA_ABOVE_K_SCALE
            g_log[ka, i] += d
            g_log[cl, i] -= d
            g_log[v, i] += d

    rows, subject = _i(table, _T_CONC)[0, 0], _i(table, _T_CONC + 1)[0, 0]
    tau, amount, ii = _f(table, _T_CONC + 2)[0], _f(table, _T_CONC + 3)[0], _f(table, _T_CONC + 4)[0]
    steady = _i(table, _T_CONC + 5)[0]
    dv, lloq = _f(table, _T_CONC + 6)[0, 0], _f(table, _T_CONC + 7)[0, 0]
    episodes, order, time = _i(table, _T_CONC + 8)[0], _i(table, _T_CONC + 9)[0, 0], _f(table, _T_CONC + 10)[0, 0]
    dose_time, dose_amount = _f(table, _T_CONC + 11)[0, 0], _f(table, _T_CONC + 12)[0, 0]
    code = ints[I_CONC_CODE]
    pk = np.empty((rows.size, S))
    for r in range(rows.size):
        for i in range(S):
            pk[r, i] = ind[rows[r], i]
    scale = floats[F_CONC_SCALE]
    pred, jac = conc_jacobian(code, pk, subject, tau, amount, ii, steady, episodes, order, time, dose_time,
                              dose_amount, scale)
    lp_obs, g_pred = _residual(pred, dv, lloq, ints[I_CONC_NQ], x, ints[I_CONC_SP], ints[I_CONC_SA],
                               floats[F_CONC_SP_SCALE], floats[F_CONC_SA_SCALE], grad)
    for i in range(subject.size):  # d/d log p = p d/dp
        s = subject[i]
        for r in range(rows.size):
            g_log[rows[r], s] += g_pred[i] * jac[i, r] * pk[r, s]
    return lp + lp_obs, pop, ind, g_log


@numba.njit(cache=True, error_model="numpy")
def log_density_pk(x, grad, table):
    """Log density of a concentrations-only model at ``x``; its gradient into ``grad``."""
    lp, pop, _, g_log = _log_density_pk(x, grad, table)
    _population_grad(x, table, pop, g_log, grad)
    return lp


@numba.njit(cache=True, error_model="numpy")
def log_density_pkpd(x, grad, table):
    """Log density of a concentrations + platelets model at ``x``; its gradient into ``grad``."""
    lp, pop, ind, g_log = _log_density_pk(x, grad, table)
    lp += _platelets(x, table, ind, g_log, grad)
    _population_grad(x, table, pop, g_log, grad)
    return lp


@numba.njit(cache=True, error_model="numpy")
def _platelets(x, table, ind, g_log, grad):
    """Platelet log-likelihood; adds its gradient to ``g_log`` and ``grad``."""
    ints, floats = _i(table, _T_INTS)[0, 0], _f(table, _T_FLOATS)[0, 0]
    rows, subjects, fixed_pk = _i(table, _T_PLT)[0, 0], _i(table, _T_PLT + 1)[0, 0], _f(table, _T_PLT + 2)[0]
    dose, mapped = _f(table, _T_PLT + 3)[0], _i(table, _T_PLT + 4)[0]
    obs_subject, obs_step = _i(table, _T_PLT + 5)[0, 0], _i(table, _T_PLT + 6)[0, 0]
    tau, lags, coef = _f(table, _T_PLT + 7)[0], _f(table, _T_PLT + 8)[0], _f(table, _T_PLT + 9)
    gz, gw = _f(table, _T_PLT + 10)[0, 0], _f(table, _T_PLT + 11)[0, 0]
    dv, lloq = _f(table, _T_PLT + 12)[0, 0], _f(table, _T_PLT + 13)[0, 0]
    n, h, scale = ints[I_N_TRANSIT], floats[F_PLT_H], floats[F_CONC_SCALE]
    params = np.empty((8, subjects.size))
    for r in range(8):
        for j in range(subjects.size):
            params[r, j] = ind[rows[r], subjects[j]] if rows[r] >= 0 else fixed_pk[r, j]
    pred, states, tables = platelet_forward(params, dose, mapped, obs_subject, obs_step, tau, lags, coef, gz, gw,
                                            n, h, scale)
    lp, g_pred = _residual(pred, dv, lloq, ints[I_PLT_NQ], x, ints[I_PLT_SP], ints[I_PLT_SA],
                           floats[F_PLT_SP_SCALE], floats[F_PLT_SA_SCALE], grad)
    g_params = platelet_vjp(params, dose, mapped, obs_subject, obs_step, tau, lags, coef, gz, gw, n, h, scale,
                            states, tables, g_pred)
    for r in range(8):
        if rows[r] >= 0:
            for j in range(subjects.size):
                g_log[rows[r], subjects[j]] += g_params[r, j] * params[r, j]
    return lp


@numba.njit(cache=True, error_model="numpy")
def expand(x, out, table):
    """The posterior variables at ``x`` into ``out``: each free variable on its
    own scale, then the etas (``eta = log P_i - log P_pop,i``) of each IIV parameter."""
    pos, use_exp, eta_rows = _i(table, _T_OUT_POS)[0, 0], _i(table, _T_OUT_EXP)[0, 0], _i(table, _T_OUT_ETA)[0, 0]
    for k in range(pos.size):
        out[k] = math.exp(x[pos[k]]) if use_exp[k] else x[pos[k]]
    _, pop, log_ind = _population(x, table)
    at = pos.size
    for p in eta_rows:
        for i in range(pop.shape[1]):
            out[at] = log_ind[p, i] - pop[p, i]
            at += 1


# ================================================================= C callbacks for nutpie
_LOGP_SIGNATURE = types.int64(types.uint64, types.CPointer(types.double), types.CPointer(types.double),
                              types.CPointer(types.double), types.voidptr)
_EXPAND_SIGNATURE = types.int64(types.uint64, types.uint64, types.CPointer(types.double),
                                types.CPointer(types.double), types.voidptr)


@numba.njit(cache=True)
def _report(lp, grad, logp_ptr):
    """Store the log density for nutpie and return its status code."""
    logp_ptr[0] = lp
    if not np.isfinite(lp):
        return 4  # nutpie's code for a non-finite log density: the step is rejected
    for k in range(grad.size):
        if not np.isfinite(grad[k]):
            return 3  # non-finite gradient
    return 0


# nutpie's log-density callbacks; ``user_data`` points to the (len(FIELDS), 4) address table.
# A kernel may raise far out in the tails during warm-up (a parameter under- or
# overflowing): that is reported as a non-finite density, so the step is rejected.
# Two bodies that differ only in the kernel they call: each must name a module-level
# kernel to stay cacheable, and a PK model must not compile the platelet code (~13 s).
def _logp_pk_c(dim, x_ptr, grad_ptr, logp_ptr, user_data):
    table = numba.carray(user_data, (len(FIELDS), 4), np.int64)
    grad = numba.carray(grad_ptr, (dim,))
    try:
        lp = log_density_pk(numba.carray(x_ptr, (dim,)), grad, table)
    except Exception:  # noqa: BLE001
        lp = -np.inf
    return _report(lp, grad, logp_ptr)


def _logp_pkpd_c(dim, x_ptr, grad_ptr, logp_ptr, user_data):
    table = numba.carray(user_data, (len(FIELDS), 4), np.int64)
    grad = numba.carray(grad_ptr, (dim,))
    try:
        lp = log_density_pkpd(numba.carray(x_ptr, (dim,)), grad, table)
    except Exception:  # noqa: BLE001
        lp = -np.inf
    return _report(lp, grad, logp_ptr)


_CALLBACKS = {}


def _callback(name: str):
    """The compiled C callback ``"pk"``, ``"pkpd"`` or ``"expand"``.  numba compiles
    each once per machine, on first use, and later processes load it from its cache."""
    if name not in _CALLBACKS:
        python, signature = {"pk": (_logp_pk_c, _LOGP_SIGNATURE), "pkpd": (_logp_pkpd_c, _LOGP_SIGNATURE),
                             "expand": (_expand_c, _EXPAND_SIGNATURE)}[name]
        _CALLBACKS[name] = numba.cfunc(signature, cache=True)(python)
    return _CALLBACKS[name]


def _expand_c(dim, n_out, x_ptr, out_ptr, user_data):
    table = numba.carray(user_data, (len(FIELDS), 4), np.int64)
    expand(numba.carray(x_ptr, (dim,)), numba.carray(out_ptr, (n_out,)), table)
    return 0


# ================================================================= a model's arrays
#: The compiled prediction kernels, by the name an observation's CompiledTerms
#: gives, and the prefix of their fields in :data:`FIELDS`.
KERNELS = {"concentration": "conc_", "platelets": "plt_"}


def _terms(built: BuiltModel) -> tuple[dict, str | None]:
    """``{kernel: (observation, CompiledTerms)}`` of ``built``'s observation types,
    and None; or ``({}, the reason the compiled density does not cover it)``."""
    spec = built.spec
    if spec.correlated_iiv and len(spec.iiv_names) > 1:
        return {}, "correlated IIV (LKJ)"
    found = {}
    for ob in built.endpoints:
        terms = ob.compiled_terms(spec, built.data)
        if terms is None or terms.kernel not in KERNELS or terms.kernel in found:
            return {}, f"observation type {ob.name!r}"
        if terms.unsupported is not None:
            return {}, terms.unsupported
        found[terms.kernel] = (ob, terms)
    if "concentration" not in found:
        return {}, "no concentration observations"
    return found, None


def supports(built: BuiltModel) -> str | None:
    """None if :class:`CompiledDensity` covers ``built``, else the reason it does not."""
    return _terms(built)[1]


def _padded(a, dtype):
    """``a`` as a C-contiguous array with a 3-D shape (leading 1s), and that shape."""
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.size == 0:  # an empty array still needs a valid address
        a = np.zeros(1, dtype=dtype)[:0]
    return a, (1,) * (3 - a.ndim) + a.shape


@dataclass
class CompiledDensity:
    """The log density of a :class:`BuiltModel`: its arrays for :func:`log_density_pk` /
    :func:`log_density_pkpd`, and the nutpie model that samples it.

    ``x`` (length :attr:`n_dim`) holds, in order: log typical value of each
    parameter; free covariate exponents; log omega of each IIV parameter; the
    S etas (non-centred ``eta_<P>_z``) or log individual values (centred
    ``log_<P>_ind``) of each IIV parameter; per observation type log sigma_prop and
    log sigma_add.  :attr:`names` / :attr:`shapes` describe the expanded draws
    (every free variable on its own scale, then ``eta_<P>``).
    """

    built: BuiltModel
    arrays: dict
    table: np.ndarray
    n_dim: int
    slots: list  # (variable name, its positions in x, stored as log, shape)
    names: list
    shapes: list

    @classmethod
    def of(cls, built: BuiltModel) -> "CompiledDensity":
        found, reason = _terms(built)
        if reason is not None:
            raise ValueError(f"the compiled density does not cover this model: {reason}")
        spec, data = built.spec, built.data
        S, names = data.n_subjects, spec.param_names
        slots, at = [], 0

        def take(name, exp, per_subject=False):
            nonlocal at
            size = S if per_subject else 1
            slots.append((name, np.arange(at, at + size), exp, (S,) if per_subject else ()))
            at += size
            return at - size

        tv_pos = [take(p.name, True) for p in spec.params]
        free_cov = [c for c in spec.covariates if c.sd is not None]
        cov_pos = {c.var_name: take(c.var_name, False) for c in free_cov}
        om_pos = {n: take(f"omega_{n}", True) for n in spec.iiv_names}
        eta_pos = {n: take(f"log_{n}_ind" if spec.param(n).centred else f"eta_{n}_z", False, per_subject=True)
                   for n in spec.iiv_names}
        err_pos = {}
        for ob in built.endpoints:
            sp = take(ob.sigma_prop_name, True) if ob.error.has_prop else -1
            sa = take(ob.sigma_add_name, True) if ob.error.has_add else -1
            err_pos[ob.name] = (sp, sa)
        n_dim = at

        ints = np.zeros(15, np.int64)
        floats = np.zeros(6)
        ints[I_S], ints[I_KA_ABOVE_K] = S, spec.ka_above_k
        if spec.ka_above_k:
            ints[I_KA], ints[I_CL], ints[I_V] = (names.index(k) for k in (spec.pk.ABSORPTION, CLEARANCE,
                                                                         spec.pk.VOLUME))
        arrays = {
            "tv_pos": tv_pos, "tv_mu": [np.log(p.median) for p in spec.params], "tv_sd": [p.sd_log for p in spec.params],
            "cov_param": [names.index(c.param) for c in spec.covariates],
            "cov_pos": [cov_pos.get(c.var_name, -1) for c in spec.covariates],
            "cov_mu": [c.exponent for c in spec.covariates],
            "cov_sd": [c.sd if c.sd is not None else 1.0 for c in spec.covariates],
            "lcov": np.array([np.log(data.covariate(c.covariate) / c.reference) for c in spec.covariates]
                             ).reshape(len(spec.covariates), S),
            "om_pos": [om_pos.get(n, -1) for n in names],
            "om_scale": [p.omega_scale if p.omega_scale is not None else 1.0 for p in spec.params],
            "centred": [int(p.centred) for p in spec.params],
            "eta_pos": [eta_pos.get(n, -1) for n in names],
        }
        conc_ob, conc = found["concentration"]
        block = data.blocks[conc_ob.cmt]
        arrays.update({"conc_" + k: v for k, v in conc.arrays.items()}, conc_dv=block.dv, conc_lloq=block.lloq)
        ints[I_CONC_CODE], ints[I_CONC_NQ] = conc.header["code"], block.n_quantified
        ints[I_CONC_SP], ints[I_CONC_SA] = err_pos[conc_ob.name]
        floats[F_CONC_SCALE] = CONC_UNITS[spec.conc_unit]
        floats[F_CONC_SP_SCALE], floats[F_CONC_SA_SCALE] = conc_ob.error.prop_scale, conc_ob.error.add_scale
        arrays.update(_platelet_arrays(found.get("platelets"), data, ints, floats, err_pos))
        arrays["ints"], arrays["floats"] = ints, floats
        out_pos = np.concatenate([pos for _, pos, _, _ in slots])
        out_exp = np.concatenate([np.full(pos.size, exp, np.int64) for _, pos, exp, _ in slots])
        arrays["out_pos"], arrays["out_exp"] = out_pos, out_exp
        arrays["out_eta"] = [names.index(n) for n in spec.iiv_names]
        ints[I_N_OUT] = out_pos.size + S * len(spec.iiv_names)

        kept, rows = {}, []
        for name in FIELDS:
            dtype = np.int64 if name in _INT_FIELDS else np.float64
            kept[name], shape = _padded(arrays[name], dtype)
            rows.append((kept[name].ctypes.data, *shape))
        table = np.array(rows, dtype=np.int64)

        out_names = [name for name, _, _, _ in slots] + [f"eta_{n}" for n in spec.iiv_names]
        out_shapes = [shape for _, _, _, shape in slots] + [(S,)] * len(spec.iiv_names)
        return cls(built, kept, table, n_dim, slots, out_names, out_shapes)

    # ------------------------------------------------------------- evaluation
    def __call__(self, x) -> tuple[float, np.ndarray]:
        """(log density, gradient) at the unconstrained point ``x``."""
        x = np.ascontiguousarray(x, dtype=float)
        grad = np.empty(self.n_dim)
        kernel = log_density_pkpd if self.platelets else log_density_pk
        return float(kernel(x, grad, self.table)), grad

    def expand(self, x) -> dict:
        """``{name: value}`` of the posterior variables at ``x``."""
        out = np.empty(int(self.arrays["ints"][I_N_OUT]))
        expand(np.ascontiguousarray(x, dtype=float), out, self.table)
        values, at = {}, 0
        for name, shape in zip(self.names, self.shapes):
            size = int(np.prod(shape, dtype=int))
            values[name] = out[at:at + size].reshape(shape)
            at += size
        return values

    def initial_point(self, seed, init: str = "support_point") -> np.ndarray:
        """A starting point like PyMC's: the support points (LogNormal mean,
        HalfNormal scale, Normal mean, centred etas at the population value)
        jittered by U(-1, 1) in x, or (``init="prior"``) a draw from the prior."""
        rng = np.random.default_rng(seed)
        spec, S = self.built.spec, self.built.data.n_subjects
        x = np.empty(self.n_dim)
        centred = {}
        prior = init == "prior"
        for name, pos, _, _ in self.slots:
            p = next((q for q in spec.params if q.name == name), None)
            cov = next((c for c in spec.covariates if c.var_name == name), None)
            if p is not None:
                mu = np.log(p.median)
                x[pos] = rng.normal(mu, p.sd_log) if prior else mu + 0.5 * p.sd_log**2
            elif cov is not None:
                x[pos] = rng.normal(cov.exponent, cov.sd) if prior else cov.exponent
            elif name.startswith("omega_"):
                scale = spec.param(name[6:]).omega_scale
                x[pos] = np.log(abs(rng.normal(0, scale)) if prior else scale)
            elif name.startswith("sigma_"):
                ep = next(e for e in self.built.endpoints if name in (e.sigma_prop_name, e.sigma_add_name))
                scale = ep.error.prop_scale if name == ep.sigma_prop_name else ep.error.add_scale
                x[pos] = np.log(abs(rng.normal(0, scale)) if prior else scale)
            elif name.startswith("eta_"):
                x[pos] = rng.normal(size=S) if prior else 0.0
            else:  # log_<P>_ind: filled below, at the population value of the start
                centred[name[4:-4]] = pos
        if centred:
            _, pop, _ = _population(x, self.table)
            names = spec.param_names
            for n, pos in centred.items():
                row = pop[names.index(n)]
                omega = np.exp(x[self._slot(f"omega_{n}")[0]])
                x[pos] = row + rng.normal(size=S) * omega if prior else row
        if not prior:
            x += rng.uniform(-1.0, 1.0, self.n_dim)
        return x

    @property
    def platelets(self) -> bool:
        return bool(self.arrays["ints"][I_HAS_PLT])

    def _slot(self, name: str) -> np.ndarray:
        return next(pos for n, pos, _, _ in self.slots if n == name)

    # ------------------------------------------------------------- nutpie
    def nutpie_model(self, init: str = "support_point"):
        """A nutpie model that samples this density through the cached C callbacks."""
        sizes = [int(np.prod(s, dtype=int)) for s in self.shapes]
        ends = np.cumsum(sizes)
        return _nutpie_model(
            logp=_callback("pkpd" if self.platelets else "pk"), expand=_callback("expand"), user_data=self.table,
            n_dim=self.n_dim, names=self.names, shapes=self.shapes,
            slices=[slice(int(e - n), int(e)) for n, e in zip(sizes, ends)],
            subjects=pd.Index(list(self.built.data.ids), name="subject"),
            initial_point=lambda seed: self.initial_point(seed, init), keep_alive={"pkpd_density": self},
        )


def _nutpie_model(logp, expand, user_data, n_dim, names, shapes, slices, subjects, initial_point, keep_alive):
    """nutpie's sampler model for a log density given as numba C callbacks.

    nutpie (0.16) has no public constructor for this: ``nutpie.from_pyfunc``
    takes Python callables (called under the GIL on every gradient, so
    parallel chains would serialise), and ``compile_pymc_model`` compiles a
    PyMC graph.  Its ``CompiledPyMCModel`` dataclass is what
    ``compile_pymc_model(backend="numba")`` returns: C addresses of the
    log-density and expand callbacks plus a ``user_data`` pointer, which is
    exactly this.  Its constructor takes private fields (``_n_dim``,
    ``_shapes``, ``_coords``); this is the only place pkpd fills them.

    logp, expand : numba cfuncs with nutpie's signatures (see
    :data:`_LOGP_SIGNATURE`, :data:`_EXPAND_SIGNATURE`); user_data : the array
    whose address they receive; names, shapes, slices : the expanded draws;
    subjects : coordinate of the per-subject variables; keep_alive : objects
    that must live as long as the model (the arrays ``user_data`` points into).
    """
    from nutpie.compile_pymc import CompiledPyMCModel

    dims = {name: ("subject",) for name, shape in zip(names, shapes) if shape}
    return CompiledPyMCModel(
        dims=dims, compiled_logp_func=logp, compiled_expand_func=expand, initial_point_func=initial_point,
        shared_data=keep_alive, user_data=user_data, n_expanded=int(slices[-1].stop),
        shape_info=(names, slices, shapes), logp_func=None, expand_func=None,
        _n_dim=n_dim, _shapes=dict(zip(names, map(tuple, shapes))), _coords={"subject": subjects},
    )


def _platelet_arrays(found, data, ints, floats, err_pos) -> dict:
    """The platelet fields of the table from the platelet observation's
    ``(observation, CompiledTerms)``, or empty placeholders (``found`` None)."""
    if found is None:
        return {"plt_rows": np.full(len(PLATELET_PARAMS), -1), "plt_fixed_pk": np.zeros((3, 0)),
                **{k: np.zeros(0, np.int64) if k in _INT_FIELDS else np.zeros(0) for k in FIELDS
                   if k.startswith("plt_") and k not in ("plt_rows", "plt_fixed_pk")}}
    ob, terms = found
    block = data.blocks[ob.cmt]
    ints[I_HAS_PLT], ints[I_PLT_NQ], ints[I_N_TRANSIT] = 1, block.n_quantified, terms.header["n_transit"]
    ints[I_PLT_SP], ints[I_PLT_SA] = err_pos[ob.name]
    floats[F_PLT_SP_SCALE], floats[F_PLT_SA_SCALE] = ob.error.prop_scale, ob.error.add_scale
    floats[F_PLT_H] = terms.header["h"]
    return {"plt_" + k: v for k, v in terms.arrays.items()} | {"plt_dv": block.dv, "plt_lloq": block.lloq}
