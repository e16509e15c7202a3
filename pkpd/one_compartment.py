"""One-compartment PK with first-order oral absorption, in closed form.

Model (doses are boluses into the depot ``Ag``; F is folded into CL/F and V/F)::

    dAg/dt = -ka*Ag
    dAc/dt =  ka*Ag - k*Ac,   k = CL/V,   C = Ac / V

Between events the solution is exact: ``Ag(t+tau) = Ag e^{-ka tau}`` and
``Ac(t+tau) = Ac e^{-k tau} + Ag B(tau)``, with the Bateman function
``B(tau) = ka (e^{-k tau} - e^{-ka tau}) / (ka - k)``.  Propagating these
amounts from dose to dose (:mod:`pkpd.exposure`) *is* superposition of
single-dose Bateman curves, summed recursively so that cost grows with doses +
times, not doses x times.  Steady state (NONMEM SS=1/2) uses the geometric
series of an infinite train of doses, in a form stable at ka == k.

The Bateman function and its parameter derivatives are written once, here
(:func:`bateman`); the simulator, the fitting Ops and the compiled log density
call it.  The divided difference ``(e^{-a t} - e^{-b t})/(b - a)`` is
evaluated in a form that stays exact when ka == k (it tends to t e^{-k t}).

Units: dose mg, CL L/h, V L give mg/L (= ug/mL); concentrations are reported
in ng/mL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from .checks import PKPDInputError, plain
from .exposure import PKModel

#: Below this x the Taylor series replaces (1 - e^{-x})/x and its derivative:
#: the closed form of the derivative loses ~1e-16/x^2 to cancellation, and the
#: 7-term series is exact to rounding up to here (its error is < x^7/40320).
SERIES_BELOW = 0.02


# ================================================================= scalar kernels
@numba.njit(cache=True)
def phi1(x):
    """``(1 - e^{-x})/x`` and its derivative, for x >= 0, exact to rounding."""
    if x < SERIES_BELOW:
        value = 1.0 - x * (1.0 / 2 - x * (1.0 / 6 - x * (1.0 / 24 - x * (1.0 / 120 - x * (1.0 / 720 - x / 5040)))))
        slope = -1.0 / 2 + x * (1.0 / 3 - x * (1.0 / 8 - x * (1.0 / 30 - x * (1.0 / 144 - x / 840))))
        return value, slope
    em = -math.expm1(-x)
    return em / x, (x * (1.0 - em) - em) / (x * x)  # e^{-x} = 1 - em: one transcendental call


@numba.njit(cache=True)
def exp_divdiff(p, s, d):
    """``(e^{-p} - e^{-(p + d*s)}) / d`` without cancellation or 0/0, for scalars.

    Equals ``e^{-min(p, p+d s)} * s * phi1(|d s|)`` for any sign of ``d`` and
    ``s``; as ``d -> 0`` it tends to ``s e^{-p}``.  Arrays: :func:`exp_divdiff_array`.
    """
    return math.exp(-min(p, p + d * s)) * s * phi1(abs(d * s))[0]


@numba.njit(cache=True)
def _exp_divdiff_flat(p, s, d, out):
    for i in range(out.size):
        out[i] = exp_divdiff(p[i], s[i], d[i])


def exp_divdiff_array(p, s, d) -> np.ndarray:
    """:func:`exp_divdiff` elementwise over broadcast arrays.  (Not a numba ufunc:
    an eagerly compiled ufunc is loaded at import, ~0.2 s of every fresh process.)"""
    p, s, d = (np.ascontiguousarray(a, dtype=float) for a in np.broadcast_arrays(p, s, d))
    out = np.empty(p.shape)
    _exp_divdiff_flat(p.reshape(-1), s.reshape(-1), d.reshape(-1), out.reshape(-1))
    return out


@numba.njit(cache=True)
def bateman(tau, ka, k):
    """Central amount ``tau`` h after a unit depot dose,
    ``B = ka (e^{-k tau} - e^{-ka tau})/(ka - k)``, and its derivatives
    ``(B, dB/dka, dB/dk)``.  Stable at ka == k and for either order."""
    # D = (e^{-k tau} - e^{-ka tau})/(ka - k) is symmetric in (ka, k): write it with lo <= hi.
    lo, hi = (k, ka) if k <= ka else (ka, k)
    p, dp = phi1((hi - lo) * tau)
    base = tau * math.exp(-lo * tau)
    d = base * p
    d_lo = -tau * d - base * dp * tau
    d_hi = base * dp * tau
    d_ka, d_k = (d_hi, d_lo) if k <= ka else (d_lo, d_hi)
    return ka * d, d + ka * d_ka, ka * d_k


def steady_state_amounts(dose, ii, ka, k):
    """Depot and central amounts just after a dose at steady state of ``dose``
    every ``ii`` hours (infinite past train, geometric series)."""
    ag = dose / -np.expm1(-ka * ii)
    # Central: sum over past doses j >= 1 of B(j*ii).  With a = k, b = ka:
    # sum_j (e^{-a j ii} - e^{-b j ii})/(b - a), written as a divided
    # difference of r -> e^{-r ii}/(1 - e^{-r ii}) that is stable at ka == k.
    d = ka - k
    first = exp_divdiff_array(k * ii, ii, d)
    second = exp_divdiff_array(k * ii + ka * ii, 0.0, d)
    ac = dose * ka * (first - second) / (-np.expm1(-k * ii) * -np.expm1(-ka * ii))
    return ag, ac


@numba.njit(parallel=True, cache=True)
def _propagators(ka, k, taus, out):
    """out[s, t] = [[e^{-ka tau}, 0], [B(tau), e^{-k tau}]] for tau = taus[t]."""
    for s in numba.prange(ka.size):
        for t in range(taus.size):
            tau = taus[t]
            out[s, t, 0, 0] = math.exp(-ka[s] * tau)
            out[s, t, 0, 1] = 0.0
            out[s, t, 1, 0] = ka[s] * exp_divdiff(k[s] * tau, tau, ka[s] - k[s])
            out[s, t, 1, 1] = math.exp(-k[s] * tau)


# ================================================================= the model
@dataclass(frozen=True)
class OneCompartmentOral(PKModel):
    """One-compartment model with first-order oral absorption.

    ka : absorption rate constant, 1/h.  cl : apparent clearance CL/F, L/h.
    v : apparent volume V/F, L.  Each may be a scalar or an array over
    subjects (hetrombopag's values: :mod:`pkpd.drugs.hetrombopag`).
    """

    PARAMETERS = {"ka": "1/h", "cl": "L/h", "v": "L"}
    COMPARTMENTS = ("depot", "central")
    CENTRAL = 1
    VOLUME = "v"
    MEANINGS = {"ka": "first-order absorption rate constant", "cl": "apparent clearance CL/F",
                "v": "apparent volume V/F"}

    ka: float | np.ndarray
    cl: float | np.ndarray
    v: float | np.ndarray

    # ------------------------------------------------------------ the interface
    @classmethod
    def check_rates(cls, p) -> None:
        with np.errstate(over="ignore", under="ignore"):
            k = p["cl"] / p["v"]
        bad = ~(np.isfinite(k) & (k > 0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise PKPDInputError(
                f"k = cl/v must be a finite number > 0 (1/h); got {plain(k[i])!r} from cl={plain(p['cl'][i])!r} L/h "
                f"and v={plain(p['v'][i])!r} L. Check the units: cl in L/h, v in L."
            )

    @classmethod
    def solver_rates(cls, p):
        return {"ka": p["ka"], "elimination rate cl/v": p["cl"] / p["v"]}

    @classmethod
    def propagators(cls, p, taus) -> np.ndarray:
        taus = np.ascontiguousarray(taus, dtype=float)
        out = np.empty((p["ka"].size, taus.size, 2, 2))
        _propagators(p["ka"], p["cl"] / p["v"], taus, out)
        return out

    @classmethod
    def rate_matrix(cls, p) -> np.ndarray:
        ka, k = p["ka"], p["cl"] / p["v"]
        out = np.zeros((ka.size, 2, 2))
        out[:, 0, 0], out[:, 1, 0], out[:, 1, 1] = -ka, ka, -k
        return out

    @classmethod
    def steady_state(cls, p, dose, ii) -> np.ndarray:
        return np.stack(steady_state_amounts(dose, ii, p["ka"], p["cl"] / p["v"]), axis=-1)

    # ------------------------------------------------------------ derived quantities
    @property
    def k(self):
        """Elimination rate constant CL/V, 1/h."""
        return np.asarray(self.cl) / np.asarray(self.v)

    @property
    def half_life(self):
        """Terminal half-life ln2 / min(k, ka), h."""
        return np.log(2) / np.minimum(self.k, self.ka)

    @property
    def tmax_single_dose(self):
        """Time of the single-dose peak ln(ka/k)/(ka - k), h (1/k when ka == k)."""
        ka, k = np.asarray(self.ka, float), self.k
        d = ka - k
        return np.where(np.abs(d) > 1e-12 * ka, np.log(ka / k) / np.where(d == 0, 1, d), 1 / k)


# ================================================================= fitting kernels
# The interface the fitting kernels (:mod:`pkpd.popfit.structures`) call for
# every PK model: mg/L per mg dosed and its exact gradient in the model's
# parameters, ``p = (ka, cl, v)`` in ``PARAMETERS`` order.
@numba.njit(cache=True)
def unit_response(tau, p, grad):
    """Concentration (mg/L) ``tau >= 0`` h after one 1 mg depot dose, ``B(tau)/v``;
    ``grad`` gets its derivatives in (ka 1/h, cl L/h, v L).

    With k = cl/v: d/dka = B_ka/v, d/dcl = B_k/v^2, d/dv = -(B + k B_k)/v^2.
    """
    ka, cl, v = p[0], p[1], p[2]
    k = cl / v
    b, b_ka, b_k = bateman(tau, ka, k)
    grad[0] = b_ka / v
    grad[1] = b_k / (v * v)
    grad[2] = -(b + k * b_k) / (v * v)
    return b / v


@numba.njit(cache=True)
def unit_response_ss(tau, ii, p, grad):
    """Concentration (mg/L) ``tau`` h (0 <= tau <= ii) after a dose of an
    infinite train of 1 mg every ``ii > 0`` h; ``grad`` gets its derivatives
    in (ka, cl, v).

    The amounts just after a dose at steady state are the fixed point of one
    interval, ``ag = 1/(1 - e^{-ka ii})`` and ``ac = ag B(ii)/(1 - e^{-k ii})``;
    then ``C = (ac e^{-k tau} + ag B(tau)) / v``: every term is stable at
    ka == k (through :func:`bateman`).
    """
    ka, cl, v = p[0], p[1], p[2]
    k = cl / v
    ag = 1.0 / -math.expm1(-ka * ii)
    ag_ka = -ag * ag * ii * math.exp(-ka * ii)
    den = -math.expm1(-k * ii)
    b_ii, b_ii_ka, b_ii_k = bateman(ii, ka, k)
    ac = ag * b_ii / den
    ac_ka = (ag_ka * b_ii + ag * b_ii_ka) / den
    ac_k = ag * b_ii_k / den - ac * ii * math.exp(-k * ii) / den
    b, b_ka, b_k = bateman(tau, ka, k)
    ek = math.exp(-k * tau)
    a = ac * ek + ag * b
    a_ka = ac_ka * ek + ag_ka * b + ag * b_ka
    a_k = ac_k * ek - ac * tau * ek + ag * b_k
    grad[0] = a_ka / v
    grad[1] = a_k / (v * v)
    grad[2] = -(a + k * a_k) / (v * v)
    return a / v
