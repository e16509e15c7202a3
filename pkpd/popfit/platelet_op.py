"""The platelet prediction of :mod:`pkpd.popfit.platelets` as one compiled PyTensor Op.

:func:`pkpd.popfit.platelets.predict_platelets` writes the prediction as a
tensor expression (log-depth scans) so that PyTensor can differentiate it.
That graph has ~700 mid-size operations; on the numba backend it costs about
2 ms per log-density gradient for 40 subjects x 8 weeks, most of it in
dispatching.  Here the same recurrences run as plain loops in numba, with a
hand-written reverse pass (the discrete adjoint):

forward, per subject (step ``j`` of ``h`` hours, ``t_j`` = 1 if it starts with a dose)::

    (ag, ac)_j = [[a, 0], [b, c]] (ag, ac)_{j-1} + (dose_j, 0)     PK amounts after the dose
    E_jq = emax C_jq / (ec50 + C_jq),  C_jq = scale (ac_j e^{-k tau_q} + ag_j B(tau_q)) / v
    x_j = Phi x_{j-1} + W[t_j] E_j                                  chain deviation (N = n + 1)
    PLT_i = plt0 (1 + kdeg x_{k_i - 1}[n])

reverse, given the cotangent ``g_i`` of every prediction: ``lam_j = Phi^T
lam_{j+1} + (injections of g at step j)``; then ``dE_j = W^T lam_j`` and the
sums ``Phi_bar = sum lam_{j+1} x_j^T``, ``W_bar = sum lam_j E_j^T``, contracted
with the derivatives of Phi and W with respect to ktr and kdeg (computed in
closed form at set-up).  The cost is about three forward passes, whatever the
number of parameters.

Exactly the same arithmetic as :func:`predict_platelets` (same grid, nodes
and quadrature; tested against it and against finite differences), so the
accuracy statement there holds here.  Units as there: ka 1/h, cl L/h, v L,
emax fold, ec50 in the concentration unit (``conc_scale`` x mg/L), mtt h,
lifespan h, plt0 10^9/L.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numba
import numba.extending
import numpy as np

from .. import one_compartment
from ..one_compartment import OneCompartmentOral, bateman
from ..pd import gauss_legendre
from . import pk_op
from .platelets import (
    CHAIN_QUADRATURE,
    NODES,
    PlateletGrid,
    node_offsets,
    node_weights,
    predict_platelets,
)

#: Chain states (4 transit compartments + platelets) and input nodes per step the
#: kernels are compiled for: loops of known length run about twice as fast.  Other
#: chain lengths use the tensor expression of :mod:`pkpd.popfit.platelets`.
N_TRANSIT = 4
_N = N_TRANSIT + 1
_M = NODES
#: The PK parameters driving the platelets: the one-compartment oral model's (the
#: kernels integrate its closed form between steps).
PK = tuple(OneCompartmentOral.PARAMETERS)
#: Parameter order of the Op's first inputs and of its gradient's outputs.
PARAMS = PK + ("emax", "ec50", "mtt", "lifespan", "plt0")


@numba.extending.intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` with one rounding (LLVM's fma).  An explicit instruction, unlike
    fast-math contraction, which LLVM may apply differently to a function's separately
    compiled and inlined copies -- and a seed must give the same draws in every process."""
    sig = numba.types.float64(numba.types.float64, numba.types.float64, numba.types.float64)

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return sig, codegen


# ================================================================= scalar pieces
@numba.njit(cache=True)
def _erlang(n, ktr, tau, out, d_ktr):
    """Erlang terms e^{-ktr tau} (ktr tau)^i / i! for i < n into ``out`` and
    their ktr-derivatives tau (out[i-1] - out[i]) into ``d_ktr``."""
    value = math.exp(-ktr * tau)
    for i in range(n):
        if i > 0:
            value = value * ktr * tau / i
        out[i] = value
        d_ktr[i] = tau * ((out[i - 1] if i > 0 else 0.0) - value)


@numba.njit(cache=True)
def _plt_from(r, ktr, kdeg, tau, gz, gw):
    """:func:`pkpd.popfit.platelets.plt_from` for one tau, with d/dktr and d/dkdeg."""
    value = 0.0
    d_ktr = 0.0
    d_kdeg = 0.0
    for g in range(gz.size):
        u = tau * gz[g]
        # decay e^{-kdeg (tau - u)} times Erlang_{r-1}(u), Erlang_{r-2}(u): one exp for both
        e1 = math.exp(-kdeg * (tau - u) - ktr * u)
        e2 = 0.0
        for i in range(1, r):
            e2 = e1
            e1 = e1 * ktr * u / i
        f = ktr * e1
        value += gw[g] * f
        d_kdeg -= gw[g] * (tau - u) * f
        d_ktr += gw[g] * (e1 + ktr * u * (e2 - e1))
    return tau * value, tau * d_ktr, tau * d_kdeg


@numba.njit(cache=True)
def _chain(n, ktr, kdeg, h, lags, coef, gz, gw):
    """Phi = e^{A h} (N x N) and W[t] (2 x N x m) with their ktr and kdeg derivatives."""
    N = n + 1
    m = coef.shape[2]
    phi = np.zeros((3, N, N))  # value, d/dktr, d/dkdeg
    w = np.zeros((3, 2, N, m))
    erl = np.empty(n)
    derl = np.empty(n)
    _erlang(n, ktr, h, erl, derl)
    for i in range(n):
        for j in range(i + 1):
            phi[0, i, j] = erl[i - j]
            phi[1, i, j] = derl[i - j]
    for j in range(n):
        phi[0, n, j], phi[1, n, j], phi[2, n, j] = _plt_from(n - j, ktr, kdeg, h, gz, gw)
    phi[0, n, n] = math.exp(-kdeg * h)
    phi[2, n, n] = -h * phi[0, n, n]
    for t in range(2):
        for kq in range(lags.shape[1]):
            lag = lags[t, kq]
            _erlang(n, ktr, lag, erl, derl)
            p, p_ktr, p_kdeg = _plt_from(n, ktr, kdeg, lag, gz, gw)
            for q in range(m):
                c = coef[t, kq, q]
                for i in range(n):
                    w[0, t, i, q] += c * erl[i]
                    w[1, t, i, q] += c * derl[i]
                w[0, t, n, q] += c * p
                w[1, t, n, q] += c * p_ktr
                w[2, t, n, q] += c * p_kdeg
    return phi, w


# ================================================================= forward and reverse
#: Per subject and step the forward pass keeps ag, ac and the chain state x (N values):
#: the reverse pass reads them instead of running the forward pass again.
@numba.njit(cache=True)
def _node_pk(ka, k, tau, ek, bq):
    """e^{-k tau} and B(tau) at the input nodes (2, m) into ``ek`` and ``bq[0]``, with
    dB/dka and dB/dk into ``bq[1]`` and ``bq[2]``."""
    for t in range(tau.shape[0]):
        for q in range(tau.shape[1]):
            ek[t, q] = math.exp(-k * tau[t, q])
            bq[0, t, q], bq[1, t, q], bq[2, t, q] = bateman(tau[t, q], ka, k)


@numba.njit(cache=True)
def platelet_forward(params, dose, mapped, obs_subject, obs_step, tau, lags, coef, gz, gw, n, h, conc_scale):
    """Platelets (10^9/L) at the observations, and what :func:`platelet_vjp` reuses:
    the states (S, J, 2 + N) and the node PK tables (S, 4, 2, m) of :func:`_node_pk`.
    ``params`` (8, S) in :data:`PARAMS` order."""
    S, J = dose.shape
    N, m = _N, _M  # compile-time sizes: LLVM unrolls and vectorises the small loops
    states = np.empty((S, J, 2 + N))  # ag, ac, x[0..n]
    tables = np.empty((S, 4, 2, m))  # e^{-k tau}, B, dB/dka, dB/dk at the nodes
    ek, bq = np.empty((2, m)), np.empty((3, 2, m))  # contiguous copies for the hot loop
    effect = np.empty(m)
    x, x_new = np.empty(N), np.empty(N)
    phi, w = _chain(n, n / params[5, 0], 1.0 / params[6, 0], h, lags, coef, gz, gw)
    phi0, w0 = phi[0].copy(), w[0].copy()
    for s in range(S):
        if s > 0 and (params[5, s] != params[5, s - 1] or params[6, s] != params[6, s - 1]):
            phi, w = _chain(n, n / params[5, s], 1.0 / params[6, s], h, lags, coef, gz, gw)
            phi0, w0 = phi[0].copy(), w[0].copy()
        ka, cl, v, emax, ec50 = params[0, s], params[1, s], params[2, s], params[3, s], params[4, s]
        k = cl / v
        factor = conc_scale / v
        a, b, c = math.exp(-ka * h), bateman(h, ka, k)[0], math.exp(-k * h)
        _node_pk(ka, k, tau, ek, bq)
        tables[s, 0], tables[s, 1:] = ek, bq
        g_prev = c_prev = 0.0
        x[:] = 0.0
        for j in range(J):
            ag = a * g_prev + dose[s, j]
            ac = b * g_prev + c * c_prev
            g_prev, c_prev = ag, ac
            t = mapped[s, j]
            for q in range(m):
                conc = factor * (ac * ek[t, q] + ag * bq[0, t, q])
                effect[q] = emax * conc / (ec50 + conc)
            for r in range(N):
                acc = 0.0
                for cc in range(N):  # full rows (zeros above the diagonal): a fixed trip count vectorises
                    acc = _fma(phi0[r, cc], x[cc], acc)
                for q in range(m):
                    acc = _fma(w0[t, r, q], effect[q], acc)
                x_new[r] = acc
            st = states[s, j]
            st[0], st[1] = ag, ac
            for r in range(N):
                x[r] = x_new[r]
                st[2 + r] = x_new[r]
    pred = np.empty(obs_subject.size)
    for i in range(obs_subject.size):
        s, k = obs_subject[i], obs_step[i]
        d = states[s, k - 1, 2 + n] if k >= 1 else 0.0
        pred[i] = params[7, s] * (1.0 + d / params[6, s])
    return pred, states, tables


@numba.njit(cache=True)
def platelet_vjp(params, dose, mapped, obs_subject, obs_step, tau, lags, coef, gz, gw, n, h, conc_scale, states,
                 tables, g_pred):
    """Gradient (8, S) of ``sum_i g_pred[i] PLT_i`` with respect to ``params``, from the
    ``states`` and ``tables`` of :func:`platelet_forward` at the same ``params``."""
    S, J = dose.shape
    N, m = _N, _M  # compile-time sizes: LLVM unrolls and vectorises the small loops
    grad = np.zeros((8, S))
    inject = np.zeros((S, J))  # cotangent of x_j[n]
    kdeg_bar = np.zeros(S)
    for i in range(obs_subject.size):  # PLT_i = plt0 (1 + kdeg x_{k-1}[n])
        s, k = obs_subject[i], obs_step[i]
        if k >= 1:
            d = states[s, k - 1, 2 + n]
            inject[s, k - 1] += g_pred[i] * params[7, s] / params[6, s]
            grad[7, s] += g_pred[i] * (1.0 + d / params[6, s])
            kdeg_bar[s] += g_pred[i] * params[7, s] * d
        else:
            grad[7, s] += g_pred[i]
    ek, bq = np.empty((2, m)), np.empty((3, 2, m))
    ek_bar, bq_bar = np.empty((2, m)), np.empty((2, m))
    lam, lam_prev = np.empty(N), np.empty(N)
    phi_bar = np.empty((N, N))
    w_bar = np.empty((2, N, m))
    phi, w = _chain(n, n / params[5, 0], 1.0 / params[6, 0], h, lags, coef, gz, gw)
    for s in range(S):
        ka, cl, v, emax, ec50 = params[0, s], params[1, s], params[2, s], params[3, s], params[4, s]
        mtt, lifespan = params[5, s], params[6, s]
        ktr, kdeg, k = n / mtt, 1.0 / lifespan, cl / v
        inv_v = 1.0 / v
        factor = conc_scale * inv_v
        if s > 0 and (mtt != params[5, s - 1] or lifespan != params[6, s - 1]):  # no IIV: shared tables
            phi, w = _chain(n, ktr, kdeg, h, lags, coef, gz, gw)
        a, c = math.exp(-ka * h), math.exp(-k * h)
        b, b_ka, b_k = bateman(h, ka, k)
        ek[:], bq[:] = tables[s, 0], tables[s, 1:]
        phi_bar[:] = 0.0
        w_bar[:] = 0.0
        lam[:] = 0.0
        ek_bar[:] = 0.0
        bq_bar[:] = 0.0
        g_bar = c_bar = 0.0  # cotangents of ag_j, ac_j carried back from step j + 1
        a_bar = b_bar = cc_bar = v_bar = emax_bar = ec50_bar = 0.0
        for j in range(J - 1, -1, -1):
            lam[n] += inject[s, j]
            t = mapped[s, j]
            ag, ac = states[s, j, 0], states[s, j, 1]
            agj_bar, acj_bar = g_bar, c_bar
            # x_j = Phi x_{j-1} + W[t] E_j, E = emax C / (ec50 + C), C = scale (ac ek + ag B) / v
            for q in range(m):
                e_bar = 0.0
                for r in range(N):
                    e_bar = _fma(w[0, t, r, q], lam[r], e_bar)
                conc = factor * (ac * ek[t, q] + ag * bq[0, t, q])
                inv = 1.0 / (ec50 + conc)
                ratio = conc * inv
                for r in range(N):
                    w_bar[t, r, q] = _fma(lam[r], emax * ratio, w_bar[t, r, q])
                emax_bar += e_bar * ratio
                ec50_bar -= e_bar * emax * ratio * inv
                conc_bar = e_bar * emax * ec50 * inv * inv
                v_bar -= conc_bar * conc * inv_v
                amount_bar = conc_bar * factor
                acj_bar += amount_bar * ek[t, q]
                agj_bar += amount_bar * bq[0, t, q]
                ek_bar[t, q] += amount_bar * ac
                bq_bar[t, q] += amount_bar * ag
            if j > 0:
                for r in range(N):
                    for cc in range(N):
                        phi_bar[r, cc] = _fma(lam[r], states[s, j - 1, 2 + cc], phi_bar[r, cc])
                for cc in range(N):
                    acc = 0.0
                    for r in range(N):
                        acc = _fma(phi[0, r, cc], lam[r], acc)
                    lam_prev[cc] = acc
                lam[:] = lam_prev
                # ag_j = a ag_{j-1} + dose_j ; ac_j = b ag_{j-1} + c ac_{j-1}
                ag_prev, ac_prev = states[s, j - 1, 0], states[s, j - 1, 1]
                a_bar += agj_bar * ag_prev
                b_bar += acj_bar * ag_prev
                cc_bar += acj_bar * ac_prev
                g_bar = a * agj_bar + b * acj_bar
                c_bar = c * acj_bar
        # --- PK rates: ka and k = cl / v
        ka_bar = a_bar * (-h * a) + b_bar * b_ka
        k_bar = cc_bar * (-h * c) + b_bar * b_k
        for t in range(2):
            for q in range(m):
                k_bar += ek_bar[t, q] * (-tau[t, q] * ek[t, q])
                ka_bar += bq_bar[t, q] * bq[1, t, q]
                k_bar += bq_bar[t, q] * bq[2, t, q]
        grad[0, s] = ka_bar
        grad[1, s] = k_bar * inv_v
        grad[2, s] = v_bar - k_bar * k * inv_v
        grad[3, s] = emax_bar
        grad[4, s] = ec50_bar
        # --- chain rates: contract the cotangents of Phi and W with their derivatives
        ktr_bar = 0.0
        kd_bar = kdeg_bar[s]
        for r in range(N):
            for cc in range(N):
                ktr_bar += phi_bar[r, cc] * phi[1, r, cc]
                kd_bar += phi_bar[r, cc] * phi[2, r, cc]
        for t in range(2):
            for r in range(N):
                for q in range(m):
                    ktr_bar += w_bar[t, r, q] * w[1, t, r, q]
                    kd_bar += w_bar[t, r, q] * w[2, t, r, q]
        grad[5, s] = ktr_bar * (-ktr / mtt)
        grad[6, s] = kd_bar * (-kdeg / lifespan)
    return grad


# ================================================================= constants of a grid
def grid_constants(grid: PlateletGrid) -> tuple:
    """The arrays the kernels take after ``params``: dose (S, J), mapped (S, J)
    int64, obs_subject, obs_step, node offsets tau (2, m) h, quadrature lags
    (2, K) h, coefficients (2, K, m), chain Gauss nodes and weights."""
    tau = np.stack([node_offsets(grid.h, grid.nodes, m_) for m_ in (False, True)])
    weights = [node_weights(grid.h, grid.nodes, m_) for m_ in (False, True)]
    lags = np.stack([wt[0] for wt in weights])
    coef = np.stack([wt[1] for wt in weights])
    gz, gw = gauss_legendre(CHAIN_QUADRATURE)
    return (np.ascontiguousarray(grid.dose, dtype=float), grid.mapped.astype(np.int64),
            grid.obs_subject.astype(np.int64), grid.obs_step.astype(np.int64), tau, lags, coef, gz, gw)


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

    class _KernelOp(Op):
        """Props shared by the forward and gradient Ops: chain length, grid step (h), conc scale."""

        __props__ = ("n_transit", "h", "conc_scale")

        def __init__(self, n_transit: int, h: float, conc_scale: float):
            self.n_transit, self.h, self.conc_scale = int(n_transit), float(h), float(conc_scale)

    class PlateletOp(_KernelOp):
        """``PlateletOp(n, h, scale)(params (8, S), *grid constants)`` -> (PLT (n_obs,), states (S, J, 2 + N),
        node PK tables (S, 4, 2, m))."""

        def make_node(self, params, *constants):
            inputs = [pt.as_tensor_variable(params), *map(pt.as_tensor_variable, constants)]
            return Apply(self, inputs, [pt.dvector(), pt.dtensor3(), pt.dtensor4()])

        def perform(self, node, inputs, outputs):
            for out, value in zip(outputs, platelet_forward(*inputs, self.n_transit, self.h, self.conc_scale)):
                out[0] = value

        def connection_pattern(self, node):
            return [[True, True, True]] + [[False, False, False]] * (len(node.inputs) - 1)

        def L_op(self, inputs, outputs, output_grads):
            # states and tables are an internal hand-over to the reverse pass: not differentiated
            grad = PlateletVJPOp(self.n_transit, self.h, self.conc_scale)(*inputs, outputs[1], outputs[2],
                                                                          output_grads[0])
            return [grad] + [DisconnectedType()() for _ in inputs[1:]]

    class PlateletVJPOp(_KernelOp):
        """Gradient (8, S) of ``sum_i g_i PLT_i``: ``PlateletVJPOp(...)(params, *constants, states, tables, g)``."""

        def make_node(self, *inputs):
            inputs = list(map(pt.as_tensor_variable, inputs))
            return Apply(self, inputs, [pt.dmatrix()])

        def perform(self, node, inputs, outputs):
            *args, states, tables, g = inputs
            outputs[0][0] = platelet_vjp(*args, self.n_transit, self.h, self.conc_scale, states, tables, g)

    @register_funcify_default_op_cache_key(PlateletOp)
    def _numba_forward(op, node=None, **kwargs):
        n, h, scale = op.n_transit, op.h, op.conc_scale

        @numba_njit
        def forward(params, dose, mapped, obs_subject, obs_step, tau, lags, coef, gz, gw):
            return platelet_forward(params, dose, mapped, obs_subject, obs_step, tau, lags, coef, gz, gw, n, h, scale)

        return forward, _SOURCE_VERSION

    @register_funcify_default_op_cache_key(PlateletVJPOp)
    def _numba_vjp(op, node=None, **kwargs):
        n, h, scale = op.n_transit, op.h, op.conc_scale

        @numba_njit
        def vjp(params, dose, mapped, obs_subject, obs_step, tau, lags, coef, gz, gw, states, tables, g):
            return platelet_vjp(params, dose, mapped, obs_subject, obs_step, tau, lags, coef, gz, gw, n, h, scale,
                                states, tables, g)

        return vjp, _SOURCE_VERSION

    return PlateletOp, PlateletVJPOp


_OPS = None
#: Salt of PyTensor's numba cache key: its key is otherwise only the Op's props, and a
#: cached wrapper from an earlier version of these kernels (here or in pk_op) would be reused.
_SOURCE_VERSION = int(hashlib.sha256(Path(__file__).read_bytes() + Path(pk_op.__file__).read_bytes()
                                     + Path(one_compartment.__file__).read_bytes())
                      .hexdigest()[:15], 16)


def platelet_op(n_transit: int, h: float, conc_scale: float):
    """The :class:`PlateletOp` for a chain of ``n_transit`` compartments on a grid of ``h`` hours."""
    global _OPS
    if _OPS is None:
        _OPS = _pytensor_ops()
    return _OPS[0](n_transit, h, conc_scale)


def compiled_for(n_transit: int, grid: PlateletGrid) -> bool:
    """Whether the kernels' compile-time sizes (:data:`N_TRANSIT` compartments,
    :data:`_M` nodes per step) fit; other sizes use the tensor expression."""
    return n_transit == N_TRANSIT and grid.nodes.size == _M


def predict_platelets_kernel(ka, cl, v, emax, ec50, mtt, lifespan, plt0, grid: PlateletGrid,
                             n_transit: int = 4, conc_scale: float = 1000.0) -> np.ndarray:
    """NumPy front end of the forward kernel, for posterior draws: parameters of
    shape ``(..., S)`` (leading draw axes broadcast) -> platelets ``(..., n_obs)``
    (10^9/L).  The same arithmetic as the fitted likelihood, so IPRED and the
    pointwise log-likelihood match the density that was sampled."""
    values = np.broadcast_arrays(*(np.asarray(p, dtype=float) for p in (ka, cl, v, emax, ec50, mtt, lifespan, plt0)))
    lead, n_sub = values[0].shape[:-1], values[0].shape[-1]
    params = np.ascontiguousarray(np.stack([x.reshape(-1, n_sub) for x in values], axis=1))  # (draws, 8, S)
    out = np.empty((params.shape[0], grid.obs_subject.size))
    if compiled_for(n_transit, grid):
        constants = grid_constants(grid)
        for d in range(params.shape[0]):
            out[d] = platelet_forward(params[d], *constants, n_transit, grid.h, conc_scale)[0]
    else:  # sizes the kernels are not compiled for: the NumPy tensor expression
        for d in range(params.shape[0]):
            out[d] = predict_platelets(np, *params[d], grid=grid, n_transit=n_transit, conc_scale=conc_scale)
    return out.reshape(lead + (out.shape[-1],))


def predict_platelets_tensor(ka, cl, v, emax, ec50, mtt, lifespan, plt0, grid: PlateletGrid,
                             n_transit: int = 4, conc_scale: float = 1000.0):
    """PyTensor front end: the same call as ``predict_platelets(pt, ...)``, one Op node."""
    import pytensor.tensor as pt

    if not compiled_for(n_transit, grid):
        return predict_platelets(pt, ka, cl, v, emax, ec50, mtt, lifespan, plt0, grid, n_transit, conc_scale)
    params = pt.stack([pt.as_tensor_variable(p).astype("float64") for p in (ka, cl, v, emax, ec50, mtt, lifespan, plt0)])
    constants = [pt.constant(c) for c in grid_constants(grid)]
    return platelet_op(n_transit, grid.h, conc_scale)(params, *constants)[0]
