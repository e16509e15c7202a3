"""Concentrations of any covered PK structure as one compiled PyTensor Op.

One loop over the observations and their active doses, for every PK model
(:mod:`pkpd.popfit.structures`): with ``u`` the model's ``unit_response``
(mg/L per mg, and its gradient in the parameters ``p``)::

    C_i = scale sum_d amount_id u(tau_id; p_s),       s = subject of observation i
    d/dp_s sum_i g_i C_i = scale sum_i g_i sum_d amount_id du/dp(tau_id; p_s)

(steady-state doses use the model's ``unit_response_ss`` with their interval).

A nonlinear structure (:func:`pkpd.popfit.structures.sequential`) cannot
superpose: per dose episode (one subject's doses from an empty system,
:class:`~pkpd.popfit.design.DoseEpisode`) its kernel integrates the doses in
sequence and gives the concentrations at the episode's observation times with
their forward sensitivities, ``d C_i / d p_s``, the same Jacobian.
The Op takes the per-subject parameters, (P, S) in the model's ``PARAMETERS``
order, so the gather ``p[subject]`` and its scatter-add gradient happen inside
the loop.  The same two loops are the concentration term of the compiled log
density (:mod:`pkpd.popfit.density`).

:func:`concentrations_tensor` (one-compartment, by ka, cl, v) keeps designs
with steady-state doses on the tensor expression of :mod:`pkpd.popfit.kernels`,
the independent reference.  Units: amounts mg, tau and ii h; concentrations
mg/L x ``scale`` (1000 for ng/mL).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numba
import numpy as np

from ..one_compartment import OneCompartmentOral
from . import kernels, structures
from ..units import MG_PER_L_TO_NG_PER_ML
from .structures import conc_sequence, sequential, unit_response


# ================================================================= forward and reverse
@numba.njit(cache=True)
def _column(params, s, p):
    """``p[:] = params[:, s]``: the parameters of subject ``s`` as one contiguous vector."""
    for k in range(p.size):
        p[k] = params[k, s]


@numba.njit(cache=True)
def _superposed(code, params, subject, tau, amount, ii, steady, scale):
    """Concentrations and Jacobian of a linear structure: one kernel call per observation and dose."""
    p, grad = np.empty(params.shape[0]), np.empty(params.shape[0])
    out, jac = np.zeros(subject.size), np.zeros((subject.size, params.shape[0]))
    for i in range(subject.size):
        _column(params, subject[i], p)
        for d in range(tau.shape[1]):
            if amount[i, d] != 0.0:
                a = scale * amount[i, d]
                out[i] += a * unit_response(code, tau[i, d], ii[i, d], steady[i, d], p, grad)
                for k in range(p.size):
                    jac[i, k] += a * grad[k]
    return out, jac


@numba.njit(cache=True)
def _sequenced(code, params, n_obs, episodes, order, time, dose_time, dose_amount, scale, with_jacobian):
    """Concentrations and (``with_jacobian``) Jacobian of a nonlinear structure:
    one kernel call per dose episode, over its observation times."""
    P = params.shape[0]
    p = np.empty(P)
    out = np.zeros(n_obs)
    jac = np.zeros((n_obs, P if with_jacobian else 0))
    factor = scale / MG_PER_L_TO_NG_PER_ML  # the kernel gives ng/mL
    for e in range(episodes.shape[0]):
        s, lo, hi, d_lo, d_hi = episodes[e, 0], episodes[e, 1], episodes[e, 2], episodes[e, 3], episodes[e, 4]
        if hi == lo:
            continue
        _column(params, s, p)
        conc = np.empty(hi - lo)
        sens = np.empty((hi - lo, P if with_jacobian else 0))
        if conc_sequence(code, p, dose_time[d_lo:d_hi], dose_amount[d_lo:d_hi], time[lo:hi], conc, sens) != 0:
            # the integration gave up (a step budget exhausted): never a number that was not computed
            raise ValueError("the PK model's integration failed for these parameters (too many steps)")
        for j in range(hi - lo):
            i = order[lo + j]
            out[i] = factor * conc[j]
            for k in range(sens.shape[1]):
                jac[i, k] = factor * sens[j, k]
    return out, jac


@numba.njit(cache=True)
def conc_jacobian(code, params, subject, tau, amount, ii, steady, episodes, order, time, dose_time, dose_amount,
                  scale):
    """Concentrations (n_obs,) of structure ``code`` for ``params`` (P, S) per
    subject, and their derivatives (n_obs, P) in the parameters of each
    observation's subject: by superposition over ``tau``, ``amount``, ``ii``,
    ``steady``, or for a nonlinear structure in sequence over the dose
    episodes (``episodes`` ... ``dose_amount``, :meth:`DoseDesign.sequence`)."""
    if sequential(code):
        return _sequenced(code, params, subject.size, episodes, order, time, dose_time, dose_amount, scale, True)
    return _superposed(code, params, subject, tau, amount, ii, steady, scale)


@numba.njit(cache=True)
def conc_forward(code, params, subject, tau, amount, ii, steady, episodes, order, time, dose_time, dose_amount,
                 scale):
    """Concentrations (n_obs,) of structure ``code`` for ``params`` (P, S) per subject."""
    if sequential(code):  # no sensitivities: the kernel integrates the states only
        return _sequenced(code, params, subject.size, episodes, order, time, dose_time, dose_amount, scale, False)[0]
    return _superposed(code, params, subject, tau, amount, ii, steady, scale)[0]


@numba.njit(cache=True)
def conc_vjp(code, params, subject, tau, amount, ii, steady, episodes, order, time, dose_time, dose_amount, scale,
             g):
    """Gradient (P, S) of ``sum_i g_i C_i`` with respect to ``params``."""
    jac = conc_jacobian(code, params, subject, tau, amount, ii, steady, episodes, order, time, dose_time,
                        dose_amount, scale)[1]
    out = np.zeros(params.shape)
    for i in range(subject.size):
        for k in range(params.shape[0]):
            out[k, subject[i]] += g[i] * jac[i, k]
    return out


#: The names of :func:`design_arrays`, in order (the loops' arguments after ``subject``).
DESIGN_FIELDS = ("tau", "amount", "ii", "steady", "episodes", "order", "time", "dose_time", "dose_amount")


def design_arrays(design) -> tuple:
    """The arrays of :data:`DESIGN_FIELDS` of a :class:`~pkpd.popfit.design.DoseDesign`
    as the loops take them: the padded superposition design, then its dose
    episodes (:meth:`~pkpd.popfit.design.DoseDesign.sequence`)."""
    return (np.ascontiguousarray(design.tau, dtype=float), np.ascontiguousarray(design.amount, dtype=float),
            np.ascontiguousarray(design.ii, dtype=float), np.ascontiguousarray(design.steady, dtype=np.int64),
            *design.sequence())


def concentrations_numpy(structure, indiv: dict, subject, design, scale: float = 1.0) -> np.ndarray:
    """Concentrations (..., n_obs) for individual parameters ``{name: (..., S)}``
    with leading draw axes, by the compiled loop (the likelihood's own arithmetic)."""
    code = structures.code(structure)
    names = list(structure.PARAMETERS)
    stacked = np.stack([np.asarray(indiv[n], dtype=float) for n in names], axis=-2)  # (..., P, S)
    lead = stacked.shape[:-2]
    flat = stacked.reshape((-1,) + stacked.shape[-2:])
    subject = np.ascontiguousarray(subject, dtype=np.int64)
    arrays = design_arrays(design)
    out = np.empty((flat.shape[0], subject.size))
    for k in range(flat.shape[0]):
        out[k] = conc_forward(code, np.ascontiguousarray(flat[k]), subject, *arrays, float(scale))
    return out.reshape(lead + (subject.size,))


# ================================================================= the PyTensor Ops
def _pytensor_ops():
    """Build the Op classes on first use (PyTensor is imported only when fitting)."""
    import pytensor.tensor as pt
    from pytensor.gradient import DisconnectedType
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.link.numba.dispatch.basic import (
        numba_njit,
        register_funcify_default_op_cache_key,
    )

    class _ConcOpBase(Op):
        """Props shared by the forward and gradient Ops: the structure's code and the unit factor from mg/L."""

        __props__ = ("code", "scale")

        def __init__(self, code: int, scale: float):
            self.code, self.scale = int(code), float(scale)

    class ConcOp(_ConcOpBase):
        """``ConcOp(code, scale)(params (P, S), subject, *design_arrays)`` -> concentrations (n_obs,)."""

        def make_node(self, params, *constants):
            inputs = [pt.as_tensor_variable(x) for x in (params, *constants)]
            return Apply(self, inputs, [pt.dvector()])

        def perform(self, node, inputs, outputs):
            outputs[0][0] = conc_forward(self.code, *inputs, self.scale)

        def connection_pattern(self, node):
            return [[True]] + [[False]] * (len(node.inputs) - 1)

        def L_op(self, inputs, outputs, output_grads):
            grad = ConcVJPOp(self.code, self.scale)(*inputs, output_grads[0])
            return [grad] + [DisconnectedType()() for _ in inputs[1:]]

    class ConcVJPOp(_ConcOpBase):
        """Gradient (P, S) of ``sum_i g_i C_i``: ``ConcVJPOp(code, scale)(params, subject, *design_arrays, g)``."""

        def make_node(self, *inputs):
            return Apply(self, [pt.as_tensor_variable(x) for x in inputs], [pt.dmatrix()])

        def perform(self, node, inputs, outputs):
            *args, g = inputs
            outputs[0][0] = conc_vjp(self.code, *args, self.scale, g)

    @register_funcify_default_op_cache_key(ConcOp)
    def _numba_forward(op, node=None, **kwargs):
        code, scale = op.code, op.scale

        @numba_njit
        def forward(params, subject, tau, amount, ii, steady, episodes, order, time, dose_time, dose_amount):
            return conc_forward(code, params, subject, tau, amount, ii, steady, episodes, order, time, dose_time,
                                dose_amount, scale)

        return forward, _SOURCE_VERSION

    @register_funcify_default_op_cache_key(ConcVJPOp)
    def _numba_vjp(op, node=None, **kwargs):
        code, scale = op.code, op.scale

        @numba_njit
        def vjp(params, subject, tau, amount, ii, steady, episodes, order, time, dose_time, dose_amount, g):
            return conc_vjp(code, params, subject, tau, amount, ii, steady, episodes, order, time, dose_time,
                            dose_amount, scale, g)

        return vjp, _SOURCE_VERSION

    return ConcOp


_CONC_OP = None
#: Salt of PyTensor's numba cache key (otherwise only the Op's props): a changed
#: kernel must not reuse a cached wrapper of the old one.
_SOURCE_VERSION = int(hashlib.sha256(b"".join(
    Path(f).read_bytes() for f in (__file__, structures.__file__,
                                   *(sys.modules[s.__module__].__file__ for s in structures.STRUCTURES))
)).hexdigest()[:15], 16)


def concentrations_op(structure, params, subject, design, scale: float = 1.0):
    """PyTensor concentrations of the PK model class ``structure`` at the
    observations of ``design`` (one Op node), from its per-subject parameters
    ``params`` (a list of (S,) tensors in ``structure.PARAMETERS`` order) and
    each observation's ``subject`` index."""
    import pytensor.tensor as pt

    global _CONC_OP
    if _CONC_OP is None:
        _CONC_OP = _pytensor_ops()
    stacked = pt.stack([pt.as_tensor_variable(p).astype("float64") for p in params])
    constants = (np.asarray(subject, dtype=np.int64), *design_arrays(design))
    return _CONC_OP(structures.code(structure), scale)(stacked, *map(pt.constant, constants))


def concentrations_tensor(ka, cl, v, subject, design, scale: float = 1.0):
    """One-compartment oral concentrations at the observations of ``design``
    from per-subject ``ka`` (1/h), ``cl`` (L/h), ``v`` (L) of shape (S,): the
    Op of :func:`concentrations_op`, or the reference tensor expression
    (:func:`pkpd.popfit.kernels.one_compartment_oral`) when the design has
    steady-state doses."""
    import pytensor.tensor as pt

    if design.any_steady:
        return kernels.one_compartment_oral(pt, ka[subject], cl[subject], v[subject], design, scale)
    return concentrations_op(OneCompartmentOral, (ka, cl, v), subject, design, scale)
