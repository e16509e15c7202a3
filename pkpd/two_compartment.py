"""Two-compartment PK with first-order oral absorption, in closed form.

Model (doses are boluses into the depot ``Ag``; F is folded into CL/F, V1/F)::

    dAg/dt = -ka*Ag
    dAc/dt =  ka*Ag - (k10 + k12)*Ac + k21*Ap,   k10 = CL/V1, k12 = Q/V1
    dAp/dt =  k12*Ac - k21*Ap,                    k21 = Q/V2,  C = Ac / V1

The disposition rates alpha > beta > 0 are the roots of
``l^2 - (k10 + k12 + k21) l + k10 k21``.  Any function f of the rate matrix K
(eigenvalues -ka, -alpha, -beta) has the closed form :func:`_fill` in the
divided differences ``f[.]`` of f there and the weight
``w = (k10 + k12 - beta)/(alpha - beta)`` in [0, 1]: every entry is a sum of
non-negative terms.  Two f are used:

* ``f(z) = e^{z tau}``: the propagator ``e^{K tau}`` (divided differences by
  :func:`pkpd.one_compartment.exp_divdiff` and :func:`exp_divdiff2`, exact as
  ka meets alpha or beta and as tau -> 0);
* ``h(z) = e^{z tau}/(1 - e^{z ii})``: the sum over an infinite train of
  doses every ``ii`` h, ``sum_j e^{K (tau + j ii)}`` (:func:`unit_response_ss`),
  by the Leibniz rule from the divided differences of both factors.

The amounts at steady state (NONMEM SS=1/2) are the generic fixed point of
:mod:`pkpd.exposure`, a linear solve that agrees with the series to ~1e-14.

Units: ka 1/h, cl L/h, v1 L, q L/h, v2 L; amounts mg, concentrations mg/L
(reported in ng/mL by :mod:`pkpd.exposure`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from .checks import PKPDInputError, plain
from .exposure import PKModel
from .one_compartment import exp_divdiff

#: Below this spread (rate differences x time) the Taylor series gives the
#: second divided difference of e^{-u}: the recursion loses ~1e-16/x to
#: cancellation there; 18 terms of the series are exact to rounding below 1.
SERIES_BELOW = 1.0
SERIES_TERMS = 18


# ================================================================= scalar kernels
@numba.njit(cache=True)
def exp_divdiff2(t, r1, r2, r3):
    """Second divided difference ``f[-r1, -r2, -r3]`` of ``f(z) = e^{z t}``
    (rates 1/h, t h), symmetric in the rates, >= 0, exact to rounding for equal
    or close rates: ``t^2 e^{-lo t} g[0, x, y]`` with ``g(u) = e^{-u}``."""
    lo, hi = min(r1, r2, r3), max(r1, r2, r3)
    mid = max(min(r1, r2), min(max(r1, r2), r3))  # the median, without arithmetic
    x, y = (mid - lo) * t, (hi - lo) * t
    if y >= SERIES_BELOW:
        g = (exp_divdiff(0.0, 1.0, x) - exp_divdiff(x, 1.0, y - x)) / y
    else:
        # g[0, x, y] = sum_m (-1)^m h_m(x, y)/(m + 2)!, h_m the complete symmetric polynomial.
        g, h, xm, fact, sign = 0.5, 1.0, 1.0, 2.0, 1.0
        for m in range(1, SERIES_TERMS):
            xm *= x
            h = y * h + xm
            fact *= m + 2
            sign = -sign
            g += sign * h / fact
    return t * t * math.exp(-lo * t) * g


@numba.njit(cache=True)
def _dd1(t, r1, r2):
    """``f[-r1, -r2]`` of ``f(z) = e^{z t}``, based at the smaller rate so that
    the exponent is never formed by cancellation."""
    return exp_divdiff(r1 * t, t, r2 - r1) if r1 <= r2 else exp_divdiff(r2 * t, t, r1 - r2)


@numba.njit(cache=True)
def _dd(tau, ii, r1, r2, r3, order):
    """Divided difference of order 0, 1 or 2 at ``-r1[, -r2[, -r3]]`` of
    ``e^{z tau}`` (ii <= 0: one dose) or of ``e^{z tau}/(1 - e^{z ii})`` (an
    infinite train every ii h; Leibniz rule with ``v = 1/(1 - e^{z ii})``,
    ``v[a,b] = E[a,b] v_a v_b``, ``v[a,b,c] = v_a v_b v_c (E[a,b] E[b,c] + E[a,b,c] (1 - E_b))``,
    E the divided differences of ``e^{z ii}``: all terms >= 0)."""
    u0 = math.exp(-r1 * tau)
    u01 = _dd1(tau, r1, r2) if order >= 1 else 0.0
    u012 = exp_divdiff2(tau, r1, r2, r3) if order >= 2 else 0.0
    if ii <= 0.0:
        return (u0, u01, u012)[order]
    v0 = 1.0 / -math.expm1(-r1 * ii)
    if order == 0:
        return u0 * v0
    v1 = 1.0 / -math.expm1(-r2 * ii)
    e01 = _dd1(ii, r1, r2)
    if order == 1:
        return u0 * e01 * v0 * v1 + u01 * v1
    v2 = 1.0 / -math.expm1(-r3 * ii)
    e12 = _dd1(ii, r2, r3)
    v12 = e12 * v1 * v2
    v012 = v0 * v1 * v2 * (e01 * e12 + exp_divdiff2(ii, r1, r2, r3) * -math.expm1(-r2 * ii))
    return u0 * v012 + u01 * v12 + u012 * v2


@numba.njit(cache=True)
def _disposition(cl, v1, q, v2):
    """(k10, k12, k21, alpha, beta, D = alpha - beta, w, 1 - w), each
    difference formed without cancellation: ``(a - d + D)(d - a + D) = 4 k12 k21``
    with a = k10 + k12, d = k21."""
    k10, k12, k21 = cl / v1, q / v1, q / v2
    a, d = k10 + k12, k21
    D = math.sqrt((a - d) ** 2 + 4.0 * k12 * k21)
    alpha = 0.5 * (a + d + D)
    beta = k10 * k21 / alpha
    plus = (a - d + D) if a >= d else 4.0 * k12 * k21 / (d - a + D)  # 2 (a - beta)
    minus = (d - a + D) if d >= a else 4.0 * k12 * k21 / (a - d + D)  # 2 (alpha - a)
    return k10, k12, k21, alpha, beta, D, 0.5 * plus / D, 0.5 * minus / D


@numba.njit(cache=True)
def _absorbed(tau, ii, ka, alpha, beta, w, wc):
    """Central amount (mg per mg dosed) of f(K): ``ka (w f[alpha, ka] + (1 - w) f[beta, ka])``."""
    return ka * (w * _dd(tau, ii, alpha, ka, 0.0, 1) + wc * _dd(tau, ii, beta, ka, 0.0, 1))


@numba.njit(cache=True)
def _fill(tau, ka, cl, v1, q, v2, out):
    """out (3x3) = ``e^{K tau}``, the form of any f(K) with f(z) = e^{z tau}."""
    ii = 0.0
    _, k12, k21, alpha, beta, _, w, wc = _disposition(cl, v1, q, v2)
    fa, fb = _dd(tau, ii, alpha, 0.0, 0.0, 0), _dd(tau, ii, beta, 0.0, 0.0, 0)
    fab = _dd(tau, ii, alpha, beta, 0.0, 1)
    out[0, 0] = _dd(tau, ii, ka, 0.0, 0.0, 0)
    out[0, 1] = out[0, 2] = 0.0
    out[1, 0] = _absorbed(tau, ii, ka, alpha, beta, w, wc)
    out[2, 0] = ka * k12 * _dd(tau, ii, alpha, beta, ka, 2)
    out[1, 1] = w * fa + wc * fb
    out[2, 2] = wc * fa + w * fb
    out[2, 1] = k12 * fab
    out[1, 2] = k21 * fab


@numba.njit(parallel=True, cache=True)
def _matrices(ka, cl, v1, q, v2, taus, out):
    """out[s, t] = e^{K_s tau} at tau = taus[t] (see :func:`_fill`)."""
    for s in numba.prange(ka.size):
        for t in range(taus.size):
            _fill(taus[t], ka[s], cl[s], v1[s], q[s], v2[s], out[s, t])


@numba.njit(parallel=True, cache=True)
def _rates(cl, v1, q, v2, out):
    """out[:, s] = (alpha, beta, alpha - beta) of subject s, 1/h."""
    for s in numba.prange(cl.size):
        out[0, s], out[1, s], out[2, s] = _disposition(cl[s], v1[s], q[s], v2[s])[3:6]


@numba.njit(cache=True)
def _response(tau, ii, p, grad):
    """Central concentration (mg/L per mg) of f(K) at tau and its exact
    gradient over p = (ka, cl, v1, q, v2): chain rule through alpha, beta, w,
    with ``d f[., .]/d node = f[., ., node]``."""
    ka, cl, v1, q, v2 = p[0], p[1], p[2], p[3], p[4]
    k10, k12, _, alpha, beta, D, w, wc = _disposition(cl, v1, q, v2)
    c = _absorbed(tau, ii, ka, alpha, beta, w, wc) / v1
    grad[0] = c / ka - ka / v1 * (w * _dd(tau, ii, alpha, ka, ka, 2) + wc * _dd(tau, ii, beta, ka, ka, 2))
    faa, fbb = _dd(tau, ii, alpha, alpha, ka, 2), _dd(tau, ii, beta, beta, ka, 2)
    fab = _dd(tau, ii, alpha, beta, ka, 2)
    # d(alpha, beta, D w)/d(cl, v1, q, v2), reduced to sums of products of one sign
    # (alpha and beta solve l^2 - (a + d) l + k10 k21 = 0, and a = w alpha + (1 - w) beta).
    rest = k12 + (D + k10) * wc  # alpha - k10 w, as alpha - a = D (1 - w)
    ab = w * wc * (alpha + beta)
    dalpha = (k10 * w / cl, -w * alpha / v1, rest / q, -wc * alpha / v2)
    dbeta = (beta * rest / (alpha * cl), -beta * wc / v1, beta * k10 * w / (alpha * q), -beta * w / v2)
    ddw = (2.0 * k10 * w * wc / cl, -ab / v1, -2.0 * k10 * w * wc / q, ab / v2)
    for j in range(4):
        # dw (f[alpha, ka] - f[beta, ka]) = -(D dw) f[alpha, beta, ka]: finite as D -> 0.
        grad[j + 1] = -ka / v1 * (ddw[j] * fab + w * faa * dalpha[j] + wc * fbb * dbeta[j])
    grad[2] -= c / v1
    return c


@numba.njit(cache=True)
def unit_response(tau, p, grad):
    """Concentration (mg/L per mg dosed) ``tau`` >= 0 h after one oral dose,
    p = (ka 1/h, cl L/h, v1 L, q L/h, v2 L); fills ``grad[k] = dC/dp[k]``."""
    return _response(tau, 0.0, p, grad)


@numba.njit(cache=True)
def unit_response_ss(tau, ii, p, grad):
    """As :func:`unit_response`, at steady state of one dose every ``ii`` h
    (tau in [0, ii] h after the last dose)."""
    return _response(tau, ii, p, grad)


# ================================================================= the model
@dataclass(frozen=True)
class TwoCompartmentOral(PKModel):
    """Two-compartment model with first-order oral absorption: parameters as in
    MEANINGS, each a scalar or an array over subjects (a published set:
    :mod:`pkpd.drugs.eltrombopag`)."""

    PARAMETERS = {"ka": "1/h", "cl": "L/h", "v1": "L", "q": "L/h", "v2": "L"}
    COMPARTMENTS = ("depot", "central", "peripheral")
    CENTRAL = 1
    VOLUME = "v1"
    #: The platelet solver is validated up to this distribution rate (as ka and CL/V in pkpd.checks).
    LIMITS = {"disposition rate alpha": (0.0, 100.0, "1/h", "above that the distribution half-life is under 25 s: "
                                                           "CL and Q are in L/h, V1 and V2 in L")}
    MEANINGS = {"ka": "first-order absorption rate constant", "cl": "apparent clearance CL/F",
                "v1": "apparent central volume V1/F", "q": "apparent intercompartmental clearance Q/F",
                "v2": "apparent peripheral volume V2/F"}

    ka: float | np.ndarray
    cl: float | np.ndarray
    v1: float | np.ndarray
    q: float | np.ndarray
    v2: float | np.ndarray

    # ------------------------------------------------------------ the interface
    @classmethod
    def check_rates(cls, p) -> None:
        with np.errstate(all="ignore"):
            cls._refuse_bad_rates(p, dict(zip(("k10 = cl/v1", "k12 = q/v1", "k21 = q/v2"), cls.micro_rates(p))))
            cls._refuse_bad_rates(p, dict(zip(("alpha", "beta", "alpha - beta"), cls.disposition_rates(p))))

    @classmethod
    def _refuse_bad_rates(cls, p, rates) -> None:
        for name, rate in rates.items():
            bad = ~(np.isfinite(rate) & (rate > 0))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                given = ", ".join(f"{k}={plain(p[k][i])!r} {u}" for k, u in cls.PARAMETERS.items() if k != "ka")
                raise PKPDInputError(f"the rate {name} must be a finite number > 0 (1/h); got {plain(rate[i])!r} "
                                     f"from {given}. Check the units: cl and q in L/h, v1 and v2 in L.")

    @classmethod
    def solver_rates(cls, p):
        return {"ka": p["ka"], "disposition rate alpha": cls.disposition_rates(p)[0]}

    @classmethod
    def propagators(cls, p, taus) -> np.ndarray:
        taus = np.ascontiguousarray(taus, dtype=float)
        out = np.empty((p["ka"].size, taus.size, 3, 3))
        _matrices(p["ka"], p["cl"], p["v1"], p["q"], p["v2"], taus, out)
        return out

    @classmethod
    def rate_matrix(cls, p) -> np.ndarray:
        k10, k12, k21 = cls.micro_rates(p)
        out = np.zeros((k10.size, 3, 3))
        out[:, 0, 0], out[:, 1, 0] = -p["ka"], p["ka"]
        out[:, 1, 1], out[:, 1, 2], out[:, 2, 1], out[:, 2, 2] = -(k10 + k12), k21, k12, -k21
        return out

    @staticmethod
    def micro_rates(p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(k10, k12, k21) = (cl/v1, q/v1, q/v2), 1/h."""
        return p["cl"] / p["v1"], p["q"] / p["v1"], p["q"] / p["v2"]

    @staticmethod
    def disposition_rates(p) -> np.ndarray:
        """(alpha, beta, alpha - beta), 1/h, shape (3, n_subjects): the fast and slow disposition rates."""
        out = np.empty((3, p["cl"].size))
        _rates(p["cl"], p["v1"], p["q"], p["v2"], out)
        return out
