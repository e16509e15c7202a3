"""The one-compartment oral concentrations of :mod:`pkpd.popfit.kernels` as one compiled PyTensor Op.

:func:`pkpd.popfit.kernels.one_compartment_oral` writes the concentrations as
a tensor expression; with its automatic gradient and the indexing of the
per-subject parameters it is ~25 nodes of the log-density graph and ~50 us of
every gradient (40 subjects x 8 samples, numba backend).  Here the same sum
runs as a numba loop with a hand-written reverse pass::

    C_i = scale / v_s  sum_d amount_id B(tau_id; ka_s, k_s),   k = CL / V,  s = subject of i

    dC_i/dka = scale / v sum_d amount B_ka,   dC_i/dk = scale / v sum_d amount B_k
    dC_i/dcl = dC_i/dk / v,                   dC_i/dv = -C_i / v - dC_i/dk k / v

with ``B`` the Bateman function and its derivatives from :func:`_bateman`
(exact at and near ka == k).  The Op takes the per-subject parameters, so the
gather ``ka[subject]`` and its scatter-add gradient happen inside the loop.

Steady-state doses (NONMEM SS=1/2) are not handled here: such designs use the
tensor expression (:func:`concentrations_tensor` decides).  Units: ka 1/h, cl
L/h, v L, amounts mg, tau h; concentrations mg/L x ``scale`` (1000 for ng/mL).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numba
import numpy as np

from . import kernels

#: Below this x the Taylor series replaces (1 - e^{-x})/x and its derivative
#: (the closed form of the derivative loses ~1e-16/x^2 to cancellation).
_SERIES_BELOW = 0.02


# ================================================================= scalar pieces
@numba.njit(cache=True)
def _psi(x):
    """((1 - e^{-x})/x, its derivative) for x >= 0, exact to rounding."""
    if x < _SERIES_BELOW:
        value = 1.0 - x * (1.0 / 2 - x * (1.0 / 6 - x * (1.0 / 24 - x * (1.0 / 120 - x * (1.0 / 720 - x / 5040)))))
        slope = -1.0 / 2 + x * (1.0 / 3 - x * (1.0 / 8 - x * (1.0 / 30 - x * (1.0 / 144 - x / 840))))
        return value, slope
    em = -math.expm1(-x)
    return em / x, (x * (1.0 - em) - em) / (x * x)  # e^{-x} = 1 - em: one transcendental call


@numba.njit(cache=True)
def _bateman(tau, ka, k):
    """Central amount ``tau`` h after a unit depot dose, B = ka (e^{-k tau} - e^{-ka tau})/(ka - k),
    and its derivatives (dB/dka, dB/dk).  Stable at ka == k and for either order."""
    # D = (e^{-k tau} - e^{-ka tau})/(ka - k) is symmetric in (ka, k): write it with lo <= hi.
    lo, hi = (k, ka) if k <= ka else (ka, k)
    x = (hi - lo) * tau
    p, dp = _psi(x)
    base = tau * math.exp(-lo * tau)
    d = base * p
    d_lo = -tau * d - base * dp * tau
    d_hi = base * dp * tau
    d_ka, d_k = (d_hi, d_lo) if k <= ka else (d_lo, d_hi)
    return ka * d, d + ka * d_ka, ka * d_k


# ================================================================= forward and reverse
@numba.njit(cache=True)
def conc_forward(params, subject, tau, amount, scale):
    """Concentrations (n_obs,) for ``params`` (3, S) = (ka, cl, v) per subject."""
    out = np.empty(subject.size)
    for i in range(subject.size):
        s = subject[i]
        ka, v = params[0, s], params[2, s]
        k = params[1, s] / v
        acc = 0.0
        for d in range(tau.shape[1]):
            if amount[i, d] != 0.0:
                acc += amount[i, d] * _bateman(tau[i, d], ka, k)[0]
        out[i] = scale * acc / v
    return out


@numba.njit(cache=True)
def conc_vjp(params, subject, tau, amount, scale, g):
    """Gradient (3, S) of ``sum_i g_i C_i`` with respect to ``params`` (ka, cl, v)."""
    grad = np.zeros(params.shape)
    for i in range(subject.size):
        s = subject[i]
        ka, v = params[0, s], params[2, s]
        k = params[1, s] / v
        acc = acc_ka = acc_k = 0.0
        for d in range(tau.shape[1]):
            if amount[i, d] != 0.0:
                b, b_ka, b_k = _bateman(tau[i, d], ka, k)
                acc += amount[i, d] * b
                acc_ka += amount[i, d] * b_ka
                acc_k += amount[i, d] * b_k
        w = g[i] * scale / v  # cotangent of the amount sum
        c_k = w * acc_k
        grad[0, s] += w * acc_ka
        grad[1, s] += c_k / v
        grad[2, s] -= (w * acc + c_k * k) / v
    return grad


# ================================================================= the PyTensor Ops
def _pytensor_ops():
    """Build the Op classes on first use (PyTensor is imported only when fitting)."""
    import pytensor.tensor as pt
    from pytensor.gradient import DisconnectedType
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op
    from pytensor.link.numba.dispatch.basic import numba_njit, register_funcify_default_op_cache_key

    class _ScaleOp(Op):
        """Props shared by the forward and gradient Ops: the unit factor from mg/L."""

        __props__ = ("scale",)

        def __init__(self, scale: float):
            self.scale = float(scale)

    class ConcOp(_ScaleOp):
        """``ConcOp(scale)(params (3, S), subject, tau, amount)`` -> concentrations (n_obs,)."""

        def make_node(self, params, subject, tau, amount):
            inputs = [pt.as_tensor_variable(x) for x in (params, subject, tau, amount)]
            return Apply(self, inputs, [pt.dvector()])

        def perform(self, node, inputs, outputs):
            outputs[0][0] = conc_forward(*inputs, self.scale)

        def connection_pattern(self, node):
            return [[True], [False], [False], [False]]

        def L_op(self, inputs, outputs, output_grads):
            grad = ConcVJPOp(self.scale)(*inputs, output_grads[0])
            return [grad] + [DisconnectedType()() for _ in inputs[1:]]

    class ConcVJPOp(_ScaleOp):
        """Gradient (3, S) of ``sum_i g_i C_i``: ``ConcVJPOp(scale)(params, subject, tau, amount, g)``."""

        def make_node(self, *inputs):
            return Apply(self, [pt.as_tensor_variable(x) for x in inputs], [pt.dmatrix()])

        def perform(self, node, inputs, outputs):
            *args, g = inputs
            outputs[0][0] = conc_vjp(*args, self.scale, g)

    @register_funcify_default_op_cache_key(ConcOp)
    def _numba_forward(op, node=None, **kwargs):
        scale = op.scale

        @numba_njit
        def forward(params, subject, tau, amount):
            return conc_forward(params, subject, tau, amount, scale)

        return forward, _SOURCE_VERSION

    @register_funcify_default_op_cache_key(ConcVJPOp)
    def _numba_vjp(op, node=None, **kwargs):
        scale = op.scale

        @numba_njit
        def vjp(params, subject, tau, amount, g):
            return conc_vjp(params, subject, tau, amount, scale, g)

        return vjp, _SOURCE_VERSION

    return ConcOp


_CONC_OP = None
#: Salt of PyTensor's numba cache key (otherwise only the Op's props): a changed
#: kernel must not reuse a cached wrapper of the old one.
_SOURCE_VERSION = int(hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:15], 16)


def concentrations_tensor(ka, cl, v, subject, design, scale: float = 1.0):
    """PyTensor concentrations at the observations of ``design`` (see
    :func:`pkpd.popfit.kernels.one_compartment_oral`), from per-subject ``ka``
    (1/h), ``cl`` (L/h), ``v`` (L) of shape (S,) and each observation's
    ``subject`` index: one Op node, or the tensor expression when the design
    has steady-state doses."""
    import pytensor.tensor as pt

    if design.any_steady:
        return kernels.one_compartment_oral(pt, ka[subject], cl[subject], v[subject], design, scale)
    global _CONC_OP
    if _CONC_OP is None:
        _CONC_OP = _pytensor_ops()
    params = pt.stack([pt.as_tensor_variable(p).astype("float64") for p in (ka, cl, v)])
    constants = (np.asarray(subject, dtype=np.int64), np.ascontiguousarray(design.tau, dtype=float),
                 np.ascontiguousarray(design.amount, dtype=float))
    return _CONC_OP(scale)(params, *map(pt.constant, constants))
