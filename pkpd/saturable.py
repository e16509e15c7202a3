"""One-compartment oral PK with parallel linear and saturable elimination.

Model (doses are boluses into the depot ``Ag``; F is folded into CL/F, V/F
and Vmax/F)::

    dAg/dt = -ka Ag
    dAc/dt =  ka Ag - (CL/V) Ac - Vmax C / (Km + C),    C = 1000 Ac / V

Units: ka 1/h, cl L/h (the linear part), v L, vmax mg/h, km ng/mL; amounts
mg, C ng/mL (1000 Ac/V: mg/L to ng/mL).

Why this form.  In healthy volunteers hetrombopag's terminal half-life rises
with dose, from 11.9 h to 40.1 h over single doses of 5-40 mg, with Tmax about
8 h, Cmax about dose-proportional, AUC greater than dose-proportional and
steady state after 7 days of daily dosing (Zheng et al., Basic Clin Pharmacol
Toxicol 2017, doi 10.1111/bcpt.12815).  Michaelis-Menten elimination in
parallel with a linear clearance gives exactly these trends: the saturable
path removes a larger share of a small dose, so the apparent clearance falls
and both t1/2 and AUC/dose rise with dose, while the absorption-limited peak
stays near-proportional.  The published population model (Wang et al., Br J
Clin Pharmacol 2022;88:2084) is target-mediated (TMDD) with dual sequential
absorption, but only its linear CL/F (7.66 L/h) is available, not the rest of
its parameter table, so a TMDD model cannot be parameterised from sources;
the MM form is the quasi-steady-state limit of TMDD with the fewest
parameters, and each is set in :mod:`pkpd.drugs.hetrombopag` with its reason.

Integration.  ``Ag`` has a closed form, ``Ag(t) = Ag(t_d) e^{-ka (t - t_d)}``
after the last dose at ``t_d``, so only ``Ac`` is integrated, with the
project's Dormand-Prince 5(4) stepper and controller (:mod:`pkpd.ode`), and
with it, when asked, the forward sensitivity equations of ``Ac`` in the five
parameters (inside the error control).  Sensitivities are integrated scaled
to amounts (mg), ``s_j dAc/dtheta_j``, with ``s`` = ka, cl, v,
max(vmax, cl Km/1000), max(Km/1000, largest dose / V) (mg/L), so that one
absolute tolerance fits every component and a vanishing vmax or Km keeps a
meaningful scale.  Steady state (NONMEM SS=1/2) is the fixed point of one dose
interval, found by Newton's method with the derivative of the interval map
from the variational equation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from . import ode
from .checks import PKPDInputError, plain
from .exposure import PKModel
from .one_compartment import OneCompartmentOral, bateman
from .regimen import Regimen

#: Relative tolerance of the Dormand-Prince error control: concentrations are
#: then accurate to about 1e-10 relative (tests/test_saturable.py).
RTOL = 1e-11
#: Absolute tolerance per mg of the largest dose: tiny, so that the control is
#: relative down to concentrations 1e-20 of the peak (washout tails stay exact).
ATOL_PER_MG = 1e-24
#: Newton iterations allowed for a steady state, and its relative tolerance.
SS_MAX_ITER = 60
SS_RTOL = 1e-12

# Slots of a subject's parameter row (the RHS reads it): ka, k = cl/v, v,
# vmax, km (mg/L), the depot just after the last dose and its ka-derivative,
# the time of that dose, and the sensitivity scales of vmax and km.
_KA, _K, _V, _VMAX, _KM, _G0, _GKA0, _TD, _SVMAX, _SKM = range(10)
N_ROW = 10
#: Status codes of the kernels.
OK, TOO_MANY_STEPS, SS_NOT_CONVERGED, SS_WITH_SENSITIVITIES, NOT_CONVERGED = 0, 1, 2, 3, 4


@numba.njit(cache=True)
def saturable_rhs(t, y, p, dy):
    """d/dt of (Ac, [scaled sensitivities]) (mg/h).  ``y`` has 1 component
    (Ac), 2 (Ac and dAc/dAc(0), the variational equation) or 6 (Ac and
    s_j dAc/dtheta_j for ka, cl, v, vmax, km)."""
    ka, k, v, vmax, km = p[_KA], p[_K], p[_V], p[_VMAX], p[_KM]
    tau = t - p[_TD]
    e = math.exp(-ka * tau)
    g = p[_G0] * e
    ac = y[0]
    c = ac / v
    den = km + c
    dy[0] = ka * g - k * ac - vmax * c / den
    if y.size == 1:
        return
    slope = vmax * km / (den * den)  # d(MM rate)/dc, mg/h per mg/L
    jac = -k - slope / v
    if y.size == 2:
        dy[1] = jac * y[1]
        return
    g_ka = (p[_GKA0] - tau * p[_G0]) * e  # dAg/dka
    dy[1] = jac * y[1] + ka * (g + ka * g_ka)
    dy[2] = jac * y[2] - k * ac
    dy[3] = jac * y[3] + k * ac + slope * c
    dy[4] = jac * y[4] - p[_SVMAX] * c / den
    dy[5] = jac * y[5] + p[_SKM] * vmax * c / (den * den)


@numba.njit(cache=True)
def _row(ka, cl, v, vmax, km, dose_scale):
    """A parameter row (see the slots above); ``dose_scale`` mg sets the km scale."""
    p = np.zeros(N_ROW)
    p[_KA], p[_K], p[_V], p[_VMAX], p[_KM] = ka, cl / v, v, vmax, km / 1000.0
    p[_SVMAX] = max(vmax, cl * km / 1000.0)
    p[_SKM] = max(km / 1000.0, dose_scale / v)
    return p


@numba.njit(cache=True)
def _depot_at(p, t):
    """(Ag, dAg/dka) at time t >= the last dose (mg, mg h)."""
    tau = t - p[_TD]
    e = math.exp(-p[_KA] * tau)
    return p[_G0] * e, (p[_GKA0] - tau * p[_G0]) * e


@numba.njit(cache=True)
def _set_depot(p, t, ag, ag_ka):
    """The depot is ``ag`` (mg), with ka-derivative ``ag_ka``, at time t."""
    p[_G0], p[_GKA0], p[_TD] = ag, ag_ka, t


@numba.njit(cache=True)
def _go(y, p, t, target, ctl, k, work, err, atol):
    """Integrate ``y`` from t to ``target`` (h).  ``ctl`` = [h, err_old, fresh]:
    the controller's state, fresh (1.0) after an event that changed f.
    Returns False if a segment needed more than ode.MAX_STEPS steps."""
    if not target > t:
        return True
    if ctl[2] != 0.0:
        saturable_rhs(t, y, p, k[0])
    h, err_old, steps = ode._advance(saturable_rhs, t, target, y, p, 0.0 if ctl[2] != 0.0 else ctl[0], ctl[1],
                                     k, work, err, RTOL, atol)
    ctl[0], ctl[1], ctl[2] = h, err_old, 0.0
    return steps < ode.MAX_STEPS


@numba.njit(cache=True)
def _steady_central(p, dose, ii, atol):
    """Central amount (mg) just after a dose at steady state of ``dose`` mg
    every ``ii`` h (the depot at steady state is dose / (1 - e^{-ka ii})):
    Newton on Phi(x) - x, Phi the map of one interval.  Returns (x, status)."""
    q = p.copy()
    _set_depot(q, 0.0, dose / -math.expm1(-q[_KA] * ii), 0.0)
    y = np.empty(2)
    k = np.empty((ode.STAGES, 2))
    work, err, ctl = np.empty(2), np.empty(2), np.empty(3)
    x = 0.0
    for _ in range(SS_MAX_ITER):
        y[0], y[1] = x, 1.0
        ctl[2] = 1.0
        if not _go(y, q, 0.0, ii, ctl, k, work, err, atol):
            return x, TOO_MANY_STEPS
        if 4.4e-16 > SS_RTOL * (1.0 - y[1]):
            # Rounding in Phi(x) - x (2 ulp) is amplified by 1/(1 - Phi'): the tolerance is out of reach.
            return x, SS_NOT_CONVERGED
        step = (y[0] - x) / (1.0 - y[1])
        x += step
        if abs(step) <= SS_RTOL * abs(x):
            return x, OK
    return x, SS_NOT_CONVERGED


@numba.njit(cache=True)
def run_subject(ka, cl, v, vmax, km, dose_times, amounts, kind, ii, reset, times, conc, sens):
    """One subject from an empty system: boluses ``amounts`` (mg) at sorted
    ``dose_times`` (h) into the depot, with NONMEM SS flags ``kind`` (0, 1, 2)
    and intervals ``ii`` (h), ``reset`` (empty the system first); ``conc``
    (T,) gets ng/mL at sorted ``times`` (h) -- a dose at a report time is given
    before the report -- and ``sens`` (T, 5) its derivatives in (ka, cl, v,
    vmax, km), or nothing when ``sens`` is (T, 0).  Returns a status code
    (OK, TOO_MANY_STEPS, SS_NOT_CONVERGED, SS_WITH_SENSITIVITIES); on failure
    the outputs from the failing event on are NaN."""
    n_sens = sens.shape[1]
    n = 1 + n_sens
    dose_scale = 0.0
    for i in range(amounts.size):
        dose_scale = max(dose_scale, amounts[i])
    atol = ATOL_PER_MG * dose_scale
    p = _row(ka, cl, v, vmax, km, dose_scale)
    scale = np.array([ka, cl, v, p[_SVMAX], p[_SKM]])
    y = np.zeros(n)
    k = np.empty((ode.STAGES, n))
    work, err = np.empty(n), np.empty(n)
    ctl = np.array([0.0, 1e-4, 1.0])
    if dose_scale == 0.0:  # no drug, ever
        conc[:] = 0.0
        sens[:] = 0.0
        return OK
    t = dose_times[0]  # nothing moves before the first dose
    _set_depot(p, t, 0.0, 0.0)
    status = OK
    i, r = 0, 0
    while r < times.size:
        if i < dose_times.size and dose_times[i] <= times[r]:
            td = dose_times[i]
            if not _go(y, p, t, td, ctl, k, work, err, atol):
                status = TOO_MANY_STEPS
                break
            t = td
            ag, ag_ka = _depot_at(p, td)
            if reset[i]:
                ag, ag_ka = 0.0, 0.0
                y[:] = 0.0
            if kind[i] != 0:
                if n_sens:
                    status = SS_WITH_SENSITIVITIES
                    break
                x, status = _steady_central(p, amounts[i], ii[i], atol)
                if status != OK:
                    break
                ag_ss = amounts[i] / -math.expm1(-ka * ii[i])
                if kind[i] == 1:
                    ag, y[0] = ag_ss, x
                else:
                    ag, y[0] = ag + ag_ss, y[0] + x
            else:
                ag += amounts[i]
            _set_depot(p, td, ag, ag_ka)
            ctl[2] = 1.0
            i += 1
        else:
            if not _go(y, p, t, times[r], ctl, k, work, err, atol):
                status = TOO_MANY_STEPS
                break
            t = times[r]
            conc[r] = 1000.0 * y[0] / v
            for j in range(n_sens):
                sens[r, j] = 1000.0 * y[1 + j] / (v * scale[j])
            if n_sens:
                sens[r, 2] = 1000.0 * (y[3] - y[0]) / (v * v)
                sens[r, 4] /= 1000.0  # per ng/mL of Km: the km scale is in mg/L
            r += 1
    for q in range(r, times.size):
        conc[q] = np.nan
        for j in range(n_sens):
            sens[q, j] = np.nan
    return status


@numba.njit(cache=True)
def conc_sensitivities(ka, cl, v, vmax, km, dose_times, amounts, times, conc, sens):
    """Concentrations (ng/mL) of one subject at sorted ``times`` (h) after
    boluses ``amounts`` (mg) at sorted ``dose_times`` (h) into the depot of an
    empty system (a dose at a report time is given before the report) into
    ``conc`` (T,), and their derivatives in (ka 1/h, cl L/h, v L, vmax mg/h,
    km ng/mL) into ``sens`` (T, 5) -- skipped when ``sens`` is (T, 0).

    Returns OK (0), or TOO_MANY_STEPS (1) if a dose interval needed more than
    :data:`pkpd.ode.MAX_STEPS` steps (the outputs from there on are NaN).
    Accuracy: conc ~1e-10 relative, sens ~1e-8 relative (to the largest of
    the scaled sensitivities, see the module docstring).
    """
    d = dose_times.size
    return run_subject(ka, cl, v, vmax, km, dose_times, amounts, np.zeros(d, np.int64), np.zeros(d),
                       np.zeros(d, np.bool_), times, conc, sens)


# ================================================================= populations
@numba.njit(parallel=True, cache=True)
def _population(theta, dose_times, amounts, kind, ii, reset, times, out, status):
    """run_subject for every row of ``theta`` (S, 5), in parallel."""
    for s in numba.prange(theta.shape[0]):
        status[s] = run_subject(theta[s, 0], theta[s, 1], theta[s, 2], theta[s, 3], theta[s, 4], dose_times, amounts,
                                kind, ii, reset, times, out[s], np.empty((times.size, 0)))


# ================================================================= the platelet solver's fast path
# The platelet solver needs the concentration at 13 node times of every step; the
# Dormand-Prince stepper, run to 1e-10 there, costs 10-50x more than a Gauss method of
# order 8 that treats the linear part in closed form and only the saturable
# correction numerically (pieces ending on the nodes, so no interpolation).
def _gauss_tableau(q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The q-stage Gauss-Legendre collocation method (order 2q; Hairer & Wanner,
    Solving ODEs II, IV.5): nodes c (q,), A[i, j] = int_0^{c_i} l_j and
    b[j] = int_0^1 l_j for the Lagrange polynomials l_j on c (Legendre basis)."""
    x, _ = np.polynomial.legendre.leggauss(q)
    c = 0.5 * (x + 1.0)
    to_lagrange = np.linalg.inv(np.polynomial.legendre.legvander(x, q - 1))  # l_j = sum_n M[n, j] P_n
    A, b = np.zeros((q, q)), np.zeros(q)
    for n in range(q):
        integral = np.polynomial.legendre.legint(np.eye(q)[n], lbnd=-1) / 2.0  # int_0^s P_n(2u - 1) du
        A += np.outer(np.polynomial.legendre.legval(x, integral), to_lagrange[n])
        b += np.polynomial.legendre.legval(1.0, integral) * to_lagrange[n]
    return c, A, b


#: Stages of the Gauss method of the fast path (order 8).
GAUSS_STAGES = 4
GAUSS_C, GAUSS_A, GAUSS_B = _gauss_tableau(GAUSS_STAGES)
#: Longest piece as a fraction of the time scales of the nonlinear part: its
#: rate k + |dN/dAc|, the absorption rate ka (weighted by how much N depends on
#: Ac: at saturation it hardly does) and the time for Ac to change by (Km V + Ac),
#: the distance to the pole of N = Vmax Ac / (Km V + Ac) at Ac = -Km V.  With 0.35 the order-8
#: method is exact to ~1e-11 per piece (tests/test_saturable.py holds it to 1e-9).
PIECE_FRACTION = 0.35
#: Below this share of Km V in the system (depot and central), N = Vmax Ac / (Km V + Ac)
#: is linear to 1e-10 relative and the piece is the linear closed form (also: no drug).
LINEAR_BELOW = 1e-10
NEWTON_MAX_ITER = 12
#: Newton stops when its update is below this share of the amounts (1e-14 is at rounding: it would
#: often never be met).
NEWTON_RTOL = 1e-13


@numba.njit(cache=True)
def _solve_small(J, r):
    """Solve J x = r in place (r becomes x) by Gaussian elimination with partial pivoting."""
    m = r.size
    for i in range(m):
        p = i
        for q in range(i + 1, m):
            if abs(J[q, i]) > abs(J[p, i]):
                p = q
        if p != i:
            for c in range(m):
                J[i, c], J[p, c] = J[p, c], J[i, c]
            r[i], r[p] = r[p], r[i]
        for q in range(i + 1, m):
            f = J[q, i] / J[i, i]
            for c in range(i + 1, m):
                J[q, c] -= f * J[i, c]
            r[q] -= f * r[i]
    for i in range(m - 1, -1, -1):
        acc = r[i]
        for c in range(i + 1, m):
            acc -= J[i, c] * r[c]
        r[i] = acc / J[i, i]


@numba.njit(cache=True)
def _piece(dt, y0, ag, ka, k, vm, kmg, lin, w, f, fy, J, r):
    """Central amount (mg) ``dt`` h after (Ac = y0, Ag = ag): Ac = L + w, with L
    the linear part in closed form (Bateman) and the correction w' = -k w - N(L + w),
    w(0) = 0, by Gauss collocation solved with Newton's method.  Returns (Ac, converged)."""
    q = GAUSS_C.size
    n0 = vm * y0 / (kmg + y0)
    for i in range(q):
        s = GAUSS_C[i] * dt
        lin[i] = y0 * math.exp(-k * s) + ag * bateman(s, ka, k)[0]
        w[i] = -n0 * s  # the saturated path removes ~Vmax per hour
    converged = False
    for _ in range(NEWTON_MAX_ITER):
        for j in range(q):
            d = kmg + lin[j] + w[j]
            f[j] = -k * w[j] - vm * (lin[j] + w[j]) / d
            fy[j] = -k - vm * kmg / (d * d)
        for i in range(q):
            acc = w[i]
            for j in range(q):
                acc -= dt * GAUSS_A[i, j] * f[j]
                J[i, j] = -dt * GAUSS_A[i, j] * fy[j]
            J[i, i] += 1.0
            r[i] = -acc
        _solve_small(J, r)
        big = 0.0
        for i in range(q):
            w[i] += r[i]
            big = max(big, abs(r[i]))
        if big <= NEWTON_RTOL * (abs(y0) + kmg):
            converged = True
            break
    w1 = 0.0
    for j in range(q):
        w1 += dt * GAUSS_B[j] * (-k * w[j] - vm * (lin[j] + w[j]) / (kmg + lin[j] + w[j]))
    return y0 * math.exp(-k * dt) + ag * bateman(dt, ka, k)[0] + w1, converged


@numba.njit(cache=True)
def _advance_gauss(t, target, y, ag, ka, k, vm, kmg, lin, w, f, fy, J, r):
    """(Ac, Ag, converged) at ``target`` h from (Ac = y, Ag = ag) at ``t`` h, in pieces."""
    ok = True
    if y + ag <= LINEAR_BELOW * kmg:  # N is linear to rounding here: the closed form at rate k + vmax/(km v)
        tau = target - t
        kl = k + vm / kmg
        return y * math.exp(-kl * tau) + ag * bateman(tau, ka, kl)[0], ag * math.exp(-ka * tau), ok
    while t < target:
        d = kmg + y
        slope = ka * ag - k * y - vm * y / d
        grad = vm * kmg / (d * d)  # |dN/dAc|: the correction's own rate, and the weight of its forcing
        # N(L(t)) forces the correction on the absorption time scale, in proportion to dN/dAc.
        dt = PIECE_FRACTION / (k + grad + ka * min(1.0, 10.0 * grad / ka))
        if slope != 0.0:
            dt = min(dt, PIECE_FRACTION * d / abs(slope))
        if t + dt >= target:
            dt = target - t
        elif t + 1.5 * dt >= target:
            dt = 0.5 * (target - t)
        y, good = _piece(dt, y, ag, ka, k, vm, kmg, lin, w, f, fy, J, r)
        ok = ok and good
        ag *= math.exp(-ka * dt)
        t = target if dt == target - t else t + dt
    return y, ag, ok


@numba.njit(parallel=True, cache=True)
def _run_steps(theta, a, ops, args, amounts, offsets, into, out, status):
    """The plan of :meth:`OneCompartmentSaturable.run_steps` for every subject, in parallel."""
    q = GAUSS_C.size
    for s in numba.prange(theta.shape[0]):
        ka, cl, v, vmax, km = theta[s, 0], theta[s, 1], theta[s, 2], theta[s, 3], theta[s, 4]
        k, kmg = cl / v, km * v / 1000.0  # Km in mg of the central compartment
        lin, w, f, fy, r = np.empty(q), np.empty(q), np.empty(q), np.empty(q), np.empty(q)
        J = np.empty((q, q))
        ag, y = a[s, 0], a[s, 1]
        j = 0
        for o in range(ops.size):
            if ops[o] == 0:
                if into == 0:
                    ag += amounts[s, args[o]]
                else:
                    y += amounts[s, args[o]]
            elif ops[o] == 1:
                row = offsets[args[o]]
                t = 0.0
                for m in range(row.size):
                    y, ag, ok = _advance_gauss(t, row[m], y, ag, ka, k, vmax, kmg, lin, w, f, fy, J, r)
                    if not ok:
                        status[s] = NOT_CONVERGED
                    t = max(t, row[m])
                    out[s, j, m] = 1000.0 * y / v
                j += 1
        a[s, 0], a[s, 1] = ag, y


# ================================================================= the model
@dataclass(frozen=True)
class OneCompartmentSaturable(PKModel):
    """One-compartment oral model with linear and Michaelis-Menten elimination
    (the equations and why: the module docstring).

    ka : absorption rate constant, 1/h.  cl : linear apparent clearance CL/F,
    L/h.  v : apparent volume V/F, L.  vmax : capacity of the saturable path
    Vmax/F, mg/h.  km : concentration of half-saturation, ng/mL.  Scalars or
    arrays over subjects (hetrombopag's values:
    :data:`pkpd.drugs.hetrombopag.SATURABLE_KA` and the rest of that block).

    Concentrations are integrated (``LINEAR = False``); :meth:`propagators`
    and :meth:`rate_matrix` are the model's linear part as C -> 0 (rates ka
    and cl/v + vmax/(km/1000 v)), the fastest the drug can be eliminated,
    used only by solvers' step-size heuristics.
    """

    ka: float | np.ndarray
    cl: float | np.ndarray
    v: float | np.ndarray
    vmax: float | np.ndarray
    km: float | np.ndarray

    PARAMETERS = {"ka": "1/h", "cl": "L/h", "v": "L", "vmax": "mg/h", "km": "ng/mL"}
    COMPARTMENTS = ("depot", "central")
    CENTRAL = 1
    VOLUME = "v"
    ABSORPTION = "ka"
    LINEAR = False
    MEANINGS = {"ka": "first-order absorption rate constant", "cl": "linear apparent clearance CL/F",
                "v": "apparent volume V/F", "vmax": "capacity of the saturable elimination Vmax/F",
                "km": "concentration of half-saturation of the saturable elimination"}

    # ------------------------------------------------------------ the interface
    @staticmethod
    def low_concentration_rate(p) -> np.ndarray:
        """Elimination rate constant as C -> 0, cl/v + vmax/(km/1000 v), 1/h."""
        return p["cl"] / p["v"] + p["vmax"] / (p["km"] / 1000.0 * p["v"])

    @classmethod
    def check_rates(cls, p) -> None:
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            rates = {"k = cl/v": p["cl"] / p["v"], "vmax/(km/1000 v)": cls.low_concentration_rate(p) - p["cl"] / p["v"]}
        for name, rate in rates.items():
            bad = ~(np.isfinite(rate) & (rate > 0))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                values = ", ".join(f"{q}={plain(p[q][i])!r}" for q in cls.PARAMETERS)
                raise PKPDInputError(
                    f"{name} must be a finite number > 0 (1/h); got {plain(rate[i])!r} from {values}. "
                    "Check the units: cl in L/h, v in L, vmax in mg/h, km in ng/mL."
                )

    @classmethod
    def solver_rates(cls, p):
        return {"ka": p["ka"], "elimination rate cl/v": cls.low_concentration_rate(p)}

    @classmethod
    def propagators(cls, p, taus) -> np.ndarray:
        """``e^{K tau}`` of the linear part above Km, (n_subjects, n_taus, 2, 2):
        elimination cl/v, the saturable path then removing a near-constant Vmax.
        That is the regime of the drug's effect (Km is far below EC50), so the
        platelet solver's step heuristics read it; concentrations never do."""
        return OneCompartmentOral.propagators(p, taus)

    @classmethod
    def rate_matrix(cls, p) -> np.ndarray:
        """``K`` of the linear part above Km (see :meth:`propagators`), (n_subjects, 2, 2), 1/h."""
        return OneCompartmentOral.rate_matrix(p)

    @classmethod
    def theta(cls, p) -> np.ndarray:
        """The parameters as (n_subjects, 5) rows in ``PARAMETERS`` order."""
        return np.ascontiguousarray(np.stack([p[name] for name in cls.PARAMETERS], axis=1))

    @classmethod
    def concentrations(cls, p, regimen: Regimen, times) -> np.ndarray:
        """Concentrations (ng/mL), (n_subjects, n_times), at sorted ``times`` (h),
        integrated (1e-9 relative); NONMEM SS=1/2 doses by the fixed point of
        one interval (SS=2 adds it to what earlier doses left, as NONMEM does),
        resets empty the system.  A dose at a report time is given first."""
        times = cls.report_times(p, regimen, times)
        doses = regimen.doses
        theta = cls.theta(p)
        out = np.zeros((theta.shape[0], times.size))
        status = np.zeros(theta.shape[0], np.int64)
        _population(theta, regimen.times, regimen.amounts, np.array([d.ss for d in doses], np.int64),
                    np.array([d.ii for d in doses], float), np.array([d.reset for d in doses], np.bool_), times, out,
                    status)
        cls._refuse(p, status, regimen)
        return out

    @classmethod
    def run_steps(cls, p, a, ops, args, amounts, offsets, into) -> np.ndarray:
        """Run a plan of the platelet solver for every subject.

        p: checked (S,) parameter arrays.  a: (S, 2) amounts (mg) at the plan's
        start, updated in place to its end.  ops, args: int64 (O,): op 0 adds
        ``amounts[s, args[o]]`` (mg) to compartment ``into``; op 1 advances
        ``offsets[args[o], -1]`` h, recording the concentration (ng/mL) at
        ``offsets[args[o], :]`` h after the step's start (offsets (K, m+1),
        increasing); op 2 does nothing.  Returns (S, number of op-1 steps,
        m+1) concentrations (ng/mL), in step order (1e-9 relative).
        """
        ops = np.ascontiguousarray(ops, np.int64)
        theta = cls.theta(p)
        offsets = np.ascontiguousarray(offsets, float)
        out = np.zeros((theta.shape[0], int(np.count_nonzero(ops == 1)), offsets.shape[1]))
        status = np.zeros(theta.shape[0], np.int64)
        _run_steps(theta, a, ops, np.ascontiguousarray(args, np.int64), np.ascontiguousarray(amounts, float),
                   offsets, int(into), out, status)
        cls._refuse(p, status, None)
        return out

    @classmethod
    def _refuse(cls, p, status, regimen) -> None:
        """PKPDInputError for the first subject whose integration failed."""
        if not status.any():
            return
        i = int(np.flatnonzero(status)[0])
        values = ", ".join(f"{q}={plain(p[q][i])!r}" for q in cls.PARAMETERS)
        if status[i] == SS_NOT_CONVERGED:
            ss = [d for d in regimen.doses if d.ss]
            raise PKPDInputError(
                f"the steady state of {ss[0].amount:g} mg every II={ss[0].ii:g} h (SS={ss[0].ss}) did not converge to "
                f"{SS_RTOL:g} relative in {SS_MAX_ITER} Newton steps for subject {i} ({values}). "
                "Use an II of at least a few minutes and check the parameter units."
            )
        if status[i] == NOT_CONVERGED:
            raise PKPDInputError(
                f"the collocation of subject {i} ({values}) did not converge in {NEWTON_MAX_ITER} Newton steps: "
                "the parameters make the saturable path too stiff. Check the units (ka 1/h, cl L/h, v L, "
                "vmax mg/h, km ng/mL)."
            )
        raise PKPDInputError(
            f"the integration of subject {i} ({values}) needed more than {ode.MAX_STEPS} steps in one interval: "
            "the parameters make it too stiff. Check the units (ka 1/h, cl L/h, v L, vmax mg/h, km ng/mL)."
        )
