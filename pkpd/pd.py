"""Platelet response: the megakaryocyte-maturation transit-compartment model.

Equations (the TPO-receptor-agonist structure of ``docs/science.md``;
Wang et al., Br J Clin Pharmacol 2022;88:2084 for hetrombopag)::

    E(C)    = Emax * C^h / (EC50^h + C^h)
    ktr     = n / MTT,  kdeg = 1 / lifespan,  kin = PLT0 * kdeg
    dP1/dt  = kin * (1 + E(C)) * (PLT0 / PLT)^gamma - ktr * P1
    dPi/dt  = ktr * (P(i-1) - Pi)                         i = 2..n
    dPLT/dt = ktr * Pn - kdeg * PLT

starting from the drug-free steady state Pi = kin/ktr, PLT = PLT0.

How it is solved
----------------
The chain is linear, ``x' = A x + b u(t)`` with ``u = kin (1+E(C)) (PLT0/PLT)^gamma``
entering P1 only.  Over a step of length ``h`` the exact solution is

    x(t+h) = e^{A h} x(t) + integral_0^h e^{A (h-s)} b u(t+s) ds.

We never step across a dose, so ``u`` is analytic on every step (C is a closed
form there).  ``u`` is interpolated at ``m`` Gauss-Legendre nodes (Lagrange
polynomials; right after a dose the nodes sit on an exponential time map that
crowds them into the fast absorption phase) and the integral of the interpolant
against the matrix exponential is done to machine precision: ``e^{A h}`` and
the node weights ``integral e^{A(h-s)} b l_j(s) ds`` are computed once per
subject and step length (closed-form Erlang terms, and a Gauss rule of higher
order for the weights).  A step then costs two small matrix-vector products
per subject.  The only error is the interpolation of ``u``.

Steps end at doses (and at the disease fluctuation's interval ends), not at
report times: a report inside a step is read from the step's start and its
input with the propagators to that time (dense output, the same collocation
solution), so hourly output costs a few multiply-adds per report, not a step.

Accuracy control
----------------
Every step estimates that error from the interpolant's highest Legendre
coefficients (their size, extrapolated with their decay to degree 2m, where
Gauss nodes put the integral's error).  A subject whose estimate exceeds
``STEP_TOLERANCE`` (per day of steps; per dose for the first step after a
dose) is run again with finer steps: a geometrically graded first step after
each dose when that step failed (a potent drug switches E on within seconds,
and E ~ t^hill at a dose into an empty system), half the longest step when
another did (fast elimination through EC50 is a switch of width
1/(hill CL/V)).  Reruns do not map their nodes: on mapped steps the
estimate is unreliable (it overstates most errors by 10-10^7, so it is
divided by MAPPED_OVERESTIMATE, and misses those of fast elimination), so a
subject with CL/V * h > 3 on a mapped step is never trusted with it: the
first pass skips such subjects (they are known from their parameters) and
they run unmapped, with graded steps after every dose, at once.  Only those
subjects pay for it: the typical subjects of the default models need no
refinement, about 5% of the default healthy population (its CL/V tail) do.

Accepted range and accuracy: every parameter set inside
``pkpd.checks.PARAMETER_LIMITS`` (ka and CL/V up to 100 /h, Emax 0-100, Hill
0.25-5, 1-20 transit compartments, MTT and lifespan from 1 h, gamma 0-1; EC50,
CL, V and PLT0 any positive value) and doses up to ``MAX_DOSE_MG``.  Against
scipy's DOP853 at rtol 1e-12 (restarted at each dose) the platelet error is
below 1e-8 relative on random parameter sets drawn across that range,
extremes included, ~5e-11 for the typical default subjects and below 1e-8
across 2000 subjects of the default healthy population over 8 weeks of daily
dosing (``tests/test_pd.py``).  Outside the range the parameters are refused.
A drug so potent that E is switched on before the first node of the first
step after a dose into no drug (EC50 well below the concentration reached
within minutes) would escape both the nodes and the error estimate (errors of
1e-8 to 6e-7 measured before this was handled): such subjects are known from
the dose and their PK before the run (:meth:`TransitSolver._switch_levels`) and
are run again at once with that step graded geometrically down to a first
piece whose first node comes before the switch, the rest of the step mapped
as after any dose (``test_potent_first_dose_meets_the_accuracy``).

With feedback (gamma > 0) ``u`` depends on PLT: the step is solved as
exponential collocation, iterating the node values of PLT to a fixed point
(a contraction: PLT reacts to P1 only through the n-compartment delay) by
Jacobi sweeps, every node from the last sweep's values, until no node moves
by more than ``FEEDBACK_CONVERGED``; a step that does not converge within
``FEEDBACK_SWEEPS`` fails its error estimate and is run again with half the
step.  (Gauss-Seidel would need fewer sweeps, but each node would wait for
the one before it: a serial chain that costs more than the extra sweeps.)

All kernels are vectorised over subjects: arrays of shape (n_subjects,) in,
no per-subject Python loop.
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import itertools
import warnings
from dataclasses import dataclass, field

import numba

import numpy as np

from .checks import PKPDInputError, nonnegative, parameter_in_range, plain, positive
from .exposure import PKModel
from .fluctuation import Fluctuation
from .one_compartment import OneCompartmentOral
from .response import PDModel, run_inputs

#: Gauss-Legendre nodes per step and the longest step (h) of the default solver.
DEFAULT_NODES = 12
DEFAULT_MAX_STEP_H = 24.0
#: Most fixed-point sweeps per step when gamma > 0 (each contracts the node
#: error by roughly gamma * (ktr h)^n / n!, far below 1e-3 for the published
#: ranges, so a step usually converges in 4-6); a step still moving after
#: them fails its error estimate and the subject is run again with half the step.
FEEDBACK_SWEEPS = 30
#: A step's sweeps stop once no node's platelets moved by more than this share
#: in the last sweep (the state's error is then about that times the contraction).
FEEDBACK_CONVERGED = 1e-14
#: In a sweep, a node whose platelets moved by a share |r| below this since the
#: last evaluation updates its feedback (plt0/plt)^gamma by the series of
#: (1 + r)^-gamma to r^5 instead of a pow call: the truncation is below
#: |binom(-gamma, 6)| r^6 < 1e-12 relative for gamma <= 1 (pkpd.checks' limit).
FEEDBACK_SERIES_BELOW = 0.01
#: Geometric refinement of the first step after a dose when hill is not a
#: whole number (from an empty system E(C) ~ t^hill, not a polynomial).
GRADED_LEVELS = 6
#: Steps that start at a dose, when ka*h > MAP_MIN_KA_H for some subject, place
#: their nodes on an exponential time map of rate MAP_ALPHA (see _build): the
#: absorption transient then costs no extra steps.
MAP_ALPHA = 4.0
MAP_MIN_KA_H = 2.0
#: Extra Gauss points (beyond the m input nodes) for the input-response integrals.
QUADRATURE_EXTRA = 12
#: Largest ||A h||_1 of the chain matrix over one step (sets the step for very
#: fast chains: short MTT or lifespan), keeping the series in _chain_response
#: well conditioned.
MAX_CHAIN_NORM = 4.0
#: Largest accepted per-step error estimate (relative to the baseline state).
#: The estimate bounds the interpolation error of the input, not its integral
#: (which Gauss nodes make far smaller), so it is conservative.
STEP_TOLERANCE = 3e-8
#: On steps with mapped nodes the estimate exceeds the error by 10 to 10^7
#: (measured against fully refined runs of the default populations: the map
#: stretches the step's end, where the slow kernel smooths the input), so it
#: is divided by this before the comparison [I, calibrated; the accuracy
#: tests in tests/test_pd.py hold it to account].
MAPPED_OVERESTIMATE = 1e5
#: Mapped steps are trusted only while CL/V * h <= 3 (e^{-k h} >= MAP_MIN_DECAY):
#: beyond, the map stretches the elimination at the step's end and the error
#: estimate misses errors of up to 3e-5 (measured in the tail of the default
#: healthy population, CL/V ~0.3 /h); such subjects run unmapped (see _fast_eliminators).
MAP_MIN_DECAY = float(np.exp(-3.0))
#: Subjects per block of a run with ``keep_tables=False``: each block builds
#: its propagators, runs and frees them, so that their memory (about 1 kB per
#: subject and step kind) stays bounded whatever the population size.
SUBJECT_BLOCK = 16384
#: Most halvings of a potent first dose's first piece (max_step_h / 2^40: ~1e-10 h).
MAX_SWITCH_LEVELS = 40
#: The graded pieces of a potent first dose stop at h/2^(G+1), G = this; the mapped rest of the step follows.
SWITCH_KEEP_LEVELS = 1
#: Refinement rounds (each: graded levels doubled, at least GRADED_LEVELS, or half the step)
#: before the solver gives up with a warning.
MAX_REFINEMENTS = 10


def emax_effect(conc, emax, ec50, hill):
    """Drug effect E(C) = Emax C^h / (EC50^h + C^h), dimensionless (fold increase).

    conc and ec50 in ng/mL.  Written as Emax / (1 + (EC50/C)^h) so that it is
    exact at C = 0 and does not overflow for large C or h.
    """
    conc = np.asarray(conc, float)
    with np.errstate(divide="ignore"):
        ratio = np.where(conc > 0, (ec50 / np.where(conc > 0, conc, 1.0)) ** hill, np.inf)
    return emax / (1.0 + ratio)


@dataclass(frozen=True)
class TransitParams:
    """Per-subject PD parameters as arrays of shape (n_subjects,).

    emax (fold), ec50 (ng/mL), hill (-), mtt (h), gamma (-), plt0 (10^9/L),
    lifespan (h); ``n_transit`` is one whole number shared by all subjects.
    """

    emax: np.ndarray
    ec50: np.ndarray
    hill: np.ndarray
    mtt: np.ndarray
    gamma: np.ndarray
    plt0: np.ndarray
    lifespan: np.ndarray
    n_transit: int

    @classmethod
    def from_values(cls, emax, ec50, hill, n_transit, mtt, gamma, plt0, lifespan):
        """Validate and broadcast scalars or arrays to a common (n_subjects,) shape."""
        n = np.asarray(n_transit)
        if n.size != 1 and np.unique(n).size != 1:
            raise PKPDInputError(
                f"n_transit must be one whole number shared by all subjects; got {np.unique(n)}. "
                "Simulate groups with different n_transit separately."
            )
        n = n.ravel()[0]
        if not np.isfinite(n) or n != int(n) or n < 1:
            raise PKPDInputError(
                f"n_transit must be a whole number >= 1; got {plain(n)!r}. Give the number of transit compartments, e.g. 4."
            )
        parameter_in_range("n_transit", n)
        values = dict(
            emax=nonnegative("emax", emax),
            ec50=positive("ec50", ec50, "ng/mL"),
            hill=positive("hill", hill),
            mtt=positive("mtt", mtt, "h"),
            gamma=nonnegative("gamma", gamma),
            plt0=positive("plt0", plt0, "10^9/L"),
            lifespan=positive("lifespan", lifespan, "h"),
        )
        for name in ("emax", "hill", "mtt", "gamma", "lifespan"):
            parameter_in_range(name, values[name])
        arrays = np.broadcast_arrays(*(np.atleast_1d(v) for v in values.values()))
        return cls(**{k: np.array(a, float) for k, a in zip(values, arrays)}, n_transit=int(n))

    @property
    def n_subjects(self) -> int:
        return self.plt0.size

    @property
    def ktr(self):
        """Transit rate n/MTT, 1/h."""
        return self.n_transit / self.mtt

    @property
    def kdeg(self):
        """Platelet elimination rate 1/lifespan, 1/h."""
        return 1.0 / self.lifespan

    @property
    def kin(self):
        """Baseline production PLT0*kdeg, 10^9/L/h."""
        return self.plt0 * self.kdeg

    def subset(self, idx) -> "TransitParams":
        """The parameters of the subjects ``idx`` (an index array)."""
        arrays = {f.name: getattr(self, f.name)[idx] for f in dataclasses.fields(self) if f.name != "n_transit"}
        return TransitParams(**arrays, n_transit=self.n_transit)

    def baseline_state(self) -> np.ndarray:
        """Drug-free steady state (n_subjects, n_transit + 1): Pi = kin/ktr, PLT = PLT0."""
        x = np.empty((self.n_subjects, self.n_transit + 1))
        x[:, :-1] = (self.kin / self.ktr)[:, None]
        x[:, -1] = self.plt0
        return x


# ---------------------------------------------------------------- step propagators
@functools.lru_cache(maxsize=64)
def _gauss_legendre(m: int) -> tuple[np.ndarray, np.ndarray]:
    x, w = np.polynomial.legendre.leggauss(m)
    return 0.5 * (x + 1.0), 0.5 * w


def gauss_legendre(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1] (computed once per m)."""
    return tuple(a.copy() for a in _gauss_legendre(m))


def lagrange_basis(nodes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Values l_j(points) of the Lagrange polynomials on ``nodes``; shape points.shape + (m,).

    Product form: stable for the modest m used here (nodes are Gauss points,
    whose Lebesgue constant grows slowly)."""
    points = np.asarray(points, float)[..., None]
    out = np.ones(points.shape[:-1] + (nodes.size,))
    for k, ck in enumerate(nodes):
        others = np.arange(nodes.size) != k
        out[..., others] *= (points - ck) / (nodes[others] - ck)
    return out


#: 1/j for j < 128 (index 0 unused): the chain series' divisions as multiplications.
_RECIPROCALS = 1.0 / np.maximum(np.arange(128.0), 1.0)


@functools.lru_cache(maxsize=256)
def _basis_at(nodes: int, ends: tuple) -> np.ndarray:
    """The Lagrange polynomials on the ``nodes`` Gauss nodes at the quadrature
    points ``ends[t] * z_k`` (z: the Gauss rule of nodes + QUADRATURE_EXTRA
    points), shape (T, K, m): the same for every step of these ends, whatever its
    length and time map, so computed once (read-only)."""
    c = gauss_legendre(nodes)[0]
    qz = gauss_legendre(nodes + QUADRATURE_EXTRA)[0]
    out = lagrange_basis(c, np.asarray(ends)[:, None] * qz[None, :])
    out.flags.writeable = False
    return out


@numba.njit(cache=True)
def _chain_response(r, ktr, kdeg, tau):
    """PLT at ``tau`` h after a unit amount placed ``r`` compartments upstream
    (r = 1: in Pn; r = n: in P1), i.e. the PLT row of e^{A tau}.

    Closed form: e^{-kdeg tau} (ktr tau)^r / r! * sum_j r/(r+j) (-delta tau)^j / j!
    with delta = ktr - kdeg; the series is entire and needs no special case
    when ktr == kdeg.  The step rule keeps |delta tau| <= MAX_CHAIN_NORM, so
    the alternating sum loses at most ~2 digits.
    """
    x = -(ktr - kdeg) * tau
    term = 1.0  # x^j / j!
    total = 1.0
    j = 0
    while True:
        j += 1
        if r + j < _RECIPROCALS.size:  # multiplications by tabled 1/j, not divisions
            term *= x * _RECIPROCALS[j]
            add = term * r * _RECIPROCALS[r + j]
        else:
            term *= x / j
            add = term * r / (r + j)
        total += add
        if abs(add) < 1e-18 * abs(total) and j > 2:
            break
    lead = 1.0
    for i in range(1, r + 1):
        lead *= ktr * tau * _RECIPROCALS[i]  # r <= 20 transit compartments (pkpd.checks)
    return np.exp(-kdeg * tau) * lead * total


@numba.njit(cache=True)
def _impulse(n, ktr, kdeg, tau, out):
    """out = e^{A tau} e_1: the chain's response to a unit amount put in P1."""
    e = np.exp(-ktr * tau)
    lead = 1.0
    for i in range(n):
        out[i] = e * lead  # e^{-ktr tau} (ktr tau)^i / i!
        lead *= ktr * tau * _RECIPROCALS[i + 1]
    out[n] = _chain_response(n, ktr, kdeg, tau)


@numba.njit(parallel=True, cache=True)
def _propagators(ktr, kdeg, n, taus, lags, coef):
    """Exact chain propagators for each subject and each tau in ``taus``.

    Returns phi (S, T, N, N) = e^{A tau}, in closed form (Erlang terms for the
    transit block, :func:`_chain_response` for PLT), and the input weights
    w (S, T, N, m) = sum_k coef[t, k, j] e^{A lags[t, k]} e_1: a quadrature of
    integral e^{A (tau - s)} e_1 l_j(s) ds, the response to the j-th Lagrange
    polynomial of the step's input (see :meth:`PKPDSolver._build`).
    """
    S = ktr.size
    T = taus.size
    big_n = n + 1
    K = lags.shape[1]
    m = coef.shape[2]
    phi = np.zeros((S, T, big_n, big_n))
    w = np.zeros((S, T, big_n, m))
    for s in numba.prange(S):
        col = np.empty(big_n)
        cols = np.empty((K, big_n))
        for t in range(T):
            tau = taus[t]
            _impulse(n, ktr[s], kdeg[s], tau, col)
            for j in range(n):  # P-block is Toeplitz: column j is col shifted by j
                for i in range(j, n):
                    phi[s, t, i, j] = col[i - j]
                phi[s, t, n, j] = _chain_response(n - j, ktr[s], kdeg[s], tau)
            phi[s, t, n, n] = np.exp(-kdeg[s] * tau)
            # The K responses first, then each weight summed in a register (not K
            # read-modify-writes of the 4-D w), over k in the same order.
            for k in range(K):
                _impulse(n, ktr[s], kdeg[s], lags[t, k], cols[k])
            for i in range(big_n):
                for j in range(m):
                    acc = 0.0
                    for k in range(K):
                        acc += coef[t, k, j] * cols[k, i]
                    w[s, t, i, j] = acc
    return phi, w


@numba.njit(parallel=True, cache=True)
def _dense_rows(ktr, kdeg, n, taus, lags, coef):
    """The PLT rows only of :func:`_propagators`' phi and w (what a report
    inside a step needs): x (S, T, N) and w (S, T, m)."""
    S = ktr.size
    T = taus.size
    K = lags.shape[1]
    m = coef.shape[2]
    x = np.zeros((S, T, n + 1))
    w = np.zeros((S, T, m))
    for s in numba.prange(S):
        for t in range(T):
            for j in range(n):
                x[s, t, j] = _chain_response(n - j, ktr[s], kdeg[s], taus[t])
            x[s, t, n] = np.exp(-kdeg[s] * taus[t])
            for k in range(K):
                r = _chain_response(n, ktr[s], kdeg[s], lags[t, k])
                for j in range(m):
                    w[s, t, j] += coef[t, k, j] * r
    return x, w


# ---------------------------------------------------------------- the time-stepping kernel
#: Operation codes of a simulation plan (see TransitSolver.run): OP_DENSE reads a
#: report inside the step just taken (dense output), OP_REPORT the current state.
OP_DOSE, OP_STEP, OP_REPORT, OP_DENSE = 0, 1, 2, 3


@numba.njit(cache=True)
def _matvec(tables, k, s, v, out):
    """out = tables[k, s] @ v: a PK table (rows x compartments) of step kind k, subject s."""
    for i in range(out.size):
        acc = 0.0
        for j in range(v.size):
            acc += tables[k, s, i, j] * v[j]
        out[i] = acc


@numba.njit(parallel=True, cache=True)
def _run_plan(ops, args, amounts, phi, w, phi_nodes, w_nodes, pk_nodes, pk_end,
              step_h, first, mapped, top, decay_power, scale, central, into, ktr, kin, emax, ec50, hill, gamma, plt0, sweeps,
              a_pk, x, conc_out, plt_out, err_first, err_rest, given, step_no, path, seg,
              dense_x, dense_w, dense_pk, dense_of, sweeps_done, skip):
    """Execute a plan of DOSE / STEP / REPORT operations for every subject.

    State (a_pk: PK amounts, mg, doses into compartment ``into``; x: P1..Pn, PLT) is
    updated in place.  ``args`` holds the dose column, the step-length index or
    the report column of each operation.  The PK tables are the PK model's
    exact propagators: ``pk_nodes`` gives the concentration (ng/mL) at each
    node from the amounts at the step's start, ``pk_end`` the amounts at its
    end (its central diagonal is the elimination factor e^{-k h} over the step).

    Each step also estimates its own interpolation error: the two highest
    Legendre coefficients of the input's interpolant (``top`` maps node values
    to them) bound how far it strays from ``u``; times the step length h and
    over P1's baseline kin/ktr, that is a relative error of the state.  The
    coefficients are extrapolated to degree 2m with their decay (Gauss nodes
    make the integral converge twice as fast as the interpolant), and divided
    by h: what is compared with the tolerance is an error per hour, so that
    many short steps do not add up to more than a few long ones.  The
    largest estimate of each subject goes to ``err_first`` (steps that start at
    a dose, ``first``) or ``err_rest``.

    Nonlinear PK models give their concentrations instead: ``given`` (S,
    n_steps, m + 1) holds them at the nodes and end of each step (step
    ``step_no[o]``; ``given`` has no steps for linear models) and the PK
    amounts are then not propagated here.  Production is multiplied by
    ``exp(path[s, seg[o]])`` on each step: the disease fluctuation of
    :mod:`pkpd.fluctuation` (a path of zeros when there is none).

    The chain's tables (phi, w, their node rows and the dense rows) have
    one row per subject, or a single row that every subject shares when all
    have the same chain rates (ktr, kdeg).

    Dense output: an OP_DENSE operation right after a step reports the
    state at a time inside that step from the step's start and its input
    (its converged node values, feedback included), with the tables of
    offset ``dense_of[o]``: ``dense_x`` (D, S, N) the PLT row of e^{A tau},
    ``dense_w`` (D, S, m) the PLT row of the input weights to tau and
    ``dense_pk`` (D, S, n_pk) the concentration at tau from the PK amounts
    at the step's start (linear PK only).  A report then costs N + m + n_pk
    multiply-adds instead of a step of its own.

    ``sweeps_done`` (S,) counts each subject's fixed-point sweeps (feedback
    on): at most ``sweeps`` per step, fewer once the node values converged.
    Subjects with ``skip[s]`` are left as they are (their state unchanged,
    their outputs unwritten): the solver runs them elsewhere.
    """
    S = a_pk.shape[0]
    m = pk_nodes.shape[2]
    n_pk = a_pk.shape[1]
    big_n = x.shape[1]
    feedback = sweeps > 0
    whole_power = int(decay_power)
    half_power = decay_power != whole_power
    for s in numba.prange(S):
        u = np.empty(m)
        new = np.empty(big_n)
        fed = np.empty(m)
        free = np.empty(m)
        level, factor = np.empty(m), np.empty(m)  # node platelets and (plt0/plt)^gamma at their last update
        node = np.empty(m)  # node platelets of the current sweep
        # (1 + r)^-gamma = 1 + b1 r + ... + b5 r^5 + O(r^6), b_k = binom(-gamma, k)
        b1 = -gamma[s]
        b2 = b1 * (b1 - 1.0) / 2.0
        b3 = b2 * (b1 - 2.0) / 3.0
        b4 = b3 * (b1 - 3.0) / 4.0
        b5 = b4 * (b1 - 4.0) / 5.0
        xs = x[s].copy()
        prev = np.empty(big_n)
        amt = a_pk[s].copy()
        amt_prev = np.empty(n_pk)
        amt_new = np.empty(n_pk)
        conc = np.empty(m)
        nonlinear = given.shape[1] > 0
        same_doses = amounts.shape[0] == 1  # one row: the same doses for every subject
        # chain tables of one row: every subject has the same chain rates (shared propagators)
        cr = np.int64(s) if phi.shape[1] > 1 else np.int64(0)
        c_now = amt[central] * scale[s]
        for o in range(0 if skip[s] else ops.size):  # a skipped subject writes back its state unchanged
            op, a = ops[o], args[o]
            if op == OP_DOSE:
                amt[into] += amounts[0, a] if same_doses else amounts[s, a]
            elif op == OP_REPORT:
                conc_out[s, a] = c_now if nonlinear else amt[central] * scale[s]
                plt_out[s, a] = xs[big_n - 1]
            elif op == OP_DENSE:
                d = dense_of[o]
                acc = 0.0
                for j in range(big_n):
                    acc += dense_x[d, cr, j] * prev[j]
                for j in range(m):
                    acc += dense_w[d, cr, j] * u[j]
                plt_out[s, a] = acc
                acc = 0.0
                for j in range(n_pk):
                    acc += dense_pk[d, s, j] * amt_prev[j]
                conc_out[s, a] = acc
            else:
                two = n_pk == 2  # the usual depot + central: kept in registers
                a0, a1 = amt[0], amt[n_pk - 1]
                if nonlinear:
                    for j in range(m):
                        conc[j] = given[s, step_no[o], j]
                    c_now = given[s, step_no[o], m]
                elif two:
                    pkn = pk_nodes[a, s]
                    for j in range(m):
                        conc[j] = pkn[j, 0] * a0 + pkn[j, 1] * a1
                else:
                    _matvec(pk_nodes, a, s, amt, conc)
                production = kin[s] * np.exp(path[s, seg[o]])
                for j in range(m):
                    c = conc[j]
                    if c <= 0.0:
                        e = 0.0
                    elif hill[s] == 1.0:
                        e = emax[s] * c / (ec50[s] + c)
                    else:
                        e = emax[s] / (1.0 + (ec50[s] / c) ** hill[s])
                    u[j] = production * (1.0 + e)
                if feedback and gamma[s] > 0.0:
                    # Jacobi sweeps on the node platelets: each sweep computes every node
                    # from the previous sweep's inputs, so the m node sums are independent
                    # (no serial chain from node to node, as Gauss-Seidel has), then
                    # updates the fed-back input u (plt0/plt)^gamma once per node.  The
                    # start (the step's first count) takes one pow; later updates, where
                    # the node moved by a share r < FEEDBACK_SERIES_BELOW, multiply the last
                    # factor by the series of (1 + r)^-gamma: a few multiply-adds, not a pow.
                    pn, wn = phi_nodes[a, cr], w_nodes[a, cr]
                    g = gamma[s]
                    start = (plt0[s] / xs[big_n - 1]) ** g
                    for j in range(m):
                        acc = 0.0
                        for i in range(big_n):
                            acc += pn[j, i] * xs[i]
                        free[j] = acc
                        level[j] = xs[big_n - 1]
                        factor[j] = start
                        fed[j] = u[j] * start
                    moving = True
                    for _ in range(sweeps):
                        for j in range(m):
                            acc = free[j]
                            for i in range(m):
                                acc += wn[j, i] * fed[i]
                            node[j] = acc
                        worst = 0.0
                        for j in range(m):
                            r = (node[j] - level[j]) / level[j]
                            worst = max(worst, abs(r))
                            if abs(r) < FEEDBACK_SERIES_BELOW:
                                factor[j] *= 1.0 + r * (b1 + r * (b2 + r * (b3 + r * (b4 + r * b5))))
                            else:
                                factor[j] = (plt0[s] / node[j]) ** g
                            level[j] = node[j]
                            fed[j] = u[j] * factor[j]
                        sweeps_done[s] += 1
                        if worst < FEEDBACK_CONVERGED:
                            moving = False
                            break
                    if moving:
                        err_rest[s] = np.inf  # not converged: rerun with half the step
                    for j in range(m):
                        u[j] = fed[j]
                # Coefficients m-1..m-4: e1 = |a_{m-1}| + |a_{m-2}|, e0 = |a_{m-3}| + |a_{m-4}|.
                # Four independent sums, interleaved (one pass over u, no serial chain of 4 m adds).
                c0 = c1 = c2 = c3 = 0.0
                for j in range(m):
                    uj = u[j]
                    c0 += top[0, j] * uj
                    c1 += top[1, j] * uj
                    c2 += top[2, j] * uj
                    c3 += top[3, j] * uj
                e1 = abs(c0) + abs(c1)
                e0 = abs(c2) + abs(c3)
                # No extrapolation on the first graded piece: at a branch point
                # (E ~ t^hill) the coefficients decay algebraically, not geometrically.
                decay = 1.0 if (e1 >= e0 or first[a] == 2) else e1 / e0
                # decay^decay_power, decay_power = (m + 1) / 2: squarings and a square root, not a pow
                damp = np.sqrt(decay) if half_power else 1.0
                for _ in range(whole_power):
                    damp *= decay
                est = e1 * damp * ktr[s] / kin[s]  # relative error per hour of step
                if first[a]:  # once per dose: its error, not its rate, counts
                    if mapped[a] and pk_end[a, s, central, central] < MAP_MIN_DECAY:
                        est = np.inf  # the map stretches a fast elimination: rerun unmapped
                    err_first[s] = max(err_first[s], est * step_h[a] / (MAPPED_OVERESTIMATE if mapped[a] else 1.0))
                else:
                    err_rest[s] = max(err_rest[s], est)
                # 2-D views of this step's tables: no 4-D index arithmetic in the inner loops.
                pa, wa = phi[a, cr], w[a, cr]
                for i in range(big_n):
                    acc = 0.0
                    for j in range(big_n):
                        acc += pa[i, j] * xs[j]
                    for j in range(m):
                        acc += wa[i, j] * u[j]
                    new[i] = acc
                prev[:] = xs  # the step's start, for reports inside it (OP_DENSE)
                xs[:] = new
                amt_prev[:] = amt
                if nonlinear:
                    pass  # the PK model propagated its own amounts
                elif two:
                    amt[0] = pk_end[a, s, 0, 0] * a0 + pk_end[a, s, 0, 1] * a1
                    amt[1] = pk_end[a, s, 1, 0] * a0 + pk_end[a, s, 1, 1] * a1
                else:
                    _matvec(pk_end, a, s, amt, amt_new)
                    amt[:] = amt_new
        x[s] = xs
        a_pk[s] = amt


# ---------------------------------------------------------------- the solver
@dataclass
class TransitSolver:
    """Closed-form PK and exact-step platelet PD for many subjects at once.

    ``pk``: the PK model class (a :class:`pkpd.exposure.PKModel`), ``pk_params``
    its parameters as arrays over subjects (or scalars); ``pd`` holds the PD
    arrays.  Propagators are cached per step length, so calling :meth:`run`
    visit by visit (titration trials) reuses them.

    ``graded_levels`` (None: GRADED_LEVELS when some hill is not a whole
    number, else 0) splits the first step after each dose geometrically;
    ``tolerance`` is the largest accepted per-step error estimate (relative).
    Subjects whose estimate exceeds it are run again with finer steps (see
    :meth:`run`), up to MAX_REFINEMENTS times.  Subjects whose transit chain
    needs steps shorter than ``max_step_h`` (``||A h||_1 <= MAX_CHAIN_NORM``:
    a short MTT) run as groups of their own, one per halving of the step, so
    that their steps do not become everyone's.

    ``fluctuation`` (a :class:`pkpd.fluctuation.Fluctuation`) multiplies
    production by a seeded within-patient disease process drawn from ``rng``
    (a numpy Generator); without ``rng`` the path is zero (the typical,
    deterministic course).  A PK model with ``LINEAR = False`` integrates its
    own amounts (:meth:`~pkpd.exposure.PKModel.run_steps`) and hands the
    concentrations at each step's nodes to the platelet kernel.

    ``keep_tables`` keeps the propagators for later :meth:`run` calls (a
    trial run visit by visit reuses them); False, for a single run of a large
    population, runs blocks of :data:`SUBJECT_BLOCK` subjects, each building
    and freeing its own, so memory stays near the outputs' size.
    ``output_dtype="float32"`` returns the concentrations and platelets as
    float32, half the memory, rounded to 6e-8 relative (2^-24: above the
    solver's 1e-8 accuracy); the solver itself always works in float64.
    """

    pk: type[PKModel]
    pk_params: dict
    pd: TransitParams
    nodes: int = DEFAULT_NODES
    max_step_h: float = DEFAULT_MAX_STEP_H
    graded_levels: int | None = None
    tolerance: float = STEP_TOLERANCE
    refinements: int = 0
    map_first_steps: bool = True
    grade_every_dose: bool = False
    keep_tables: bool = True
    output_dtype: str = "float64"
    fluctuation: Fluctuation | None = None
    rng: np.random.Generator | None = field(default=None, repr=False)
    _path: np.ndarray | None = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)
    _stacked: tuple | None = field(default=None, repr=False)
    _dense: dict = field(default_factory=dict, repr=False)
    _dense_stacked: tuple | None = field(default=None, repr=False)
    _finer: dict = field(default_factory=dict, repr=False)
    _potent_rerun: bool = field(default=False, repr=False)

    def __post_init__(self):
        S = self.pd.n_subjects
        arrays = self.pk.parameter_arrays(**self.pk_params)
        for name, a in arrays.items():
            if a.size not in (1, S):
                raise PKPDInputError(f"{name} has {a.size} values but there are {S} subjects; give one per subject.")
        self.pk_params = {k: np.ascontiguousarray(np.broadcast_to(a, (S,))) for k, a in arrays.items()}
        self.pk.check_solver_range(self.pk_params)
        self._c, q = gauss_legendre(self.nodes)
        # Legendre coefficients m-1, m-2, m-3, m-4 of the interpolant from its node values.
        legendre = np.polynomial.legendre.legvander(2 * self._c - 1, self.nodes - 1)  # (m, m): P_k(c_j)
        self._top = np.ascontiguousarray(((2 * np.arange(self.nodes) + 1) * q[:, None] * legendre).T[::-1][:4])
        # Keep ||A h||_1 <= MAX_CHAIN_NORM for the Taylor series of the chain.  Subjects whose chains
        # need shorter steps (a short MTT) form groups of their own (see _run_groups), so that one
        # fast subject does not shorten every subject's steps.
        own = np.minimum(self.max_step_h, MAX_CHAIN_NORM / np.maximum(2 * self.pd.ktr, self.pd.ktr + self.pd.kdeg))
        levels = np.maximum(np.ceil(np.log2(self.max_step_h / own) - 1e-9), 0.0)
        self._group_solvers = []
        self._requested_step_h = self.max_step_h
        self.max_step_h = float(own.min())
        self._feedback = bool((self.pd.gamma > 0).any())
        # Subjects with the same chain rates share one set of chain propagators.
        self._shared_chain = bool(S > 1 and (self.pd.ktr == self.pd.ktr[0]).all() and (self.pd.kdeg == self.pd.kdeg[0]).all())
        if self.graded_levels is None:
            self.graded_levels = GRADED_LEVELS if (self.pd.hill != np.round(self.pd.hill)).any() else 0
        self._ka_max = float(self.pk_params[self.pk.ABSORPTION].max())
        self._scale = np.ascontiguousarray(self.pk.conc_scale(self.pk_params))
        self._groups = [np.flatnonzero(levels == g) for g in np.unique(levels)] if np.ptp(levels) > 0 else None
        self._fast = self._fast_eliminators(levels, own)
        if self.fluctuation is not None and not isinstance(self.fluctuation, Fluctuation):
            raise PKPDInputError(f"fluctuation must be a pkpd.Fluctuation or None; got {type(self.fluctuation).__name__}.")
        if self.output_dtype not in ("float64", "float32"):
            raise PKPDInputError(f"output_dtype must be 'float64' or 'float32'; got {self.output_dtype!r}.")
        if self.rng is not None and not isinstance(self.rng, np.random.Generator):
            raise PKPDInputError(f"rng must be a numpy Generator (np.random.default_rng(seed)); got {type(self.rng).__name__}.")
        self._fluctuating = (self.fluctuation is not None and self.fluctuation.sd_log > 0 and
                             (self.rng is not None or self._path is not None))
        if self._path is None:
            self._path = np.zeros((S, 0))

    def _fast_eliminators(self, levels, own) -> np.ndarray:
        """Subjects (bool, (S,)) whose elimination over a mapped first step
        after a dose exceeds CL/V h = 3 (central decay below MAP_MIN_DECAY).

        Their mapped step always fails its check and they are run again
        unmapped with graded steps (:meth:`_refine`), so the kernel skips them
        and they go to that rerun at once: one pass instead of two, the same
        numbers.  Steps shorter than the longest (doses closer together) only
        make such a subject refine more than it needs.
        """
        fast = np.zeros(levels.size, bool)
        if self.map_first_steps and self.refinements == 0:
            for g in np.unique(levels):
                h = own[levels == g].min()  # the longest step of the subjects' group (see _run_groups)
                if self._ka_max * h > MAP_MIN_KA_H:
                    decay = self.pk.propagators(self.pk_params, np.array([h]))[:, 0, self.pk.CENTRAL, self.pk.CENTRAL]
                    fast |= (levels == g) & (decay < MAP_MIN_DECAY)
        return fast

    def initial_state(self) -> dict:
        """Drug-free state at t = 0: no drug in any PK compartment, platelets at baseline."""
        S = self.pd.n_subjects
        return {"t": 0.0, "a": np.zeros((S, self.pk.n_compartments())), "x": self.pd.baseline_state()}

    def _step_key(self, h: float, after_dose: bool, first: int) -> tuple:
        """Cache key of the propagators for a step of h hours."""
        return (float(f"{h:.12g}"), self.map_first_steps and after_dose and self._ka_max * h > MAP_MIN_KA_H, first)

    def _build_all(self, keys, dense_keys=()) -> None:
        """Build the propagators of every step key and dense-output key (a
        step key and the report's place sigma in it) not yet cached, in one kernel call."""
        chain = (self.pd.ktr[:1], self.pd.kdeg[:1]) if self._shared_chain else (self.pd.ktr, self.pd.kdeg)
        new = [k for k in dict.fromkeys(keys) if k not in self._cache]
        if new:
            parts = [self._build_inputs(*k) for k in new]
            phi_all, w_all = _propagators(*chain, self.pd.n_transit,
                                          *(np.concatenate([q[i] for q in parts]) for i in range(3)))
            start = 0
            for key, q in zip(new, parts):
                end = start + q[0].size
                self._cache[key] = self._build(*key, phi_all[:, start:end], w_all[:, start:end])
                start = end
        new_dense = [k for k in dict.fromkeys(dense_keys) if k not in self._dense]
        if new_dense:
            parts = [self._build_inputs(*k[0], ends=np.array([k[1]])) for k in new_dense]
            taus = np.concatenate([q[0] for q in parts])
            x, w = _dense_rows(*chain, self.pd.n_transit, taus,
                               *(np.concatenate([q[i] for q in parts]) for i in (1, 2)))
            conc = self._scale[:, None, None] * self.pk.propagators(self.pk_params, taus)[:, :, self.pk.CENTRAL, :]
            for i, key in enumerate(new_dense):
                self._dense[key] = {"x": x[:, i], "w": w[:, i], "pk": conc[:, i]}

    def _build_inputs(self, h: float, mapped: bool, first: int, ends=None):
        """Step ends (taus), quadrature lags and Lagrange coefficients of one
        step kind; ``ends`` (places sigma in [0, 1]) for dense output instead."""
        c = self._c
        phi, dphi = self._time_map(mapped)
        qz, qw = gauss_legendre(c.size + QUADRATURE_EXTRA)
        # End of the step, then (with feedback) each node: tau = h phi(c_end).
        if ends is None:
            ends = np.concatenate([[1.0], c]) if self._feedback else np.array([1.0])
        sig = ends[:, None] * qz[None, :]  # quadrature points in sigma, (T, K)
        taus = h * phi(ends)
        lags = taus[:, None] - h * phi(sig)
        coef = (ends[:, None] * qw[None, :] * h * dphi(sig))[..., None] * _basis_at(c.size, tuple(ends.tolist()))
        return taus, lags, coef

    def _dense_key(self, step_key: tuple, offset_h: float) -> tuple:
        """Cache key of a report ``offset_h`` hours into a step: the step's key
        and the report's place sigma (the inverse of the step's time map)."""
        h, mapped, _ = step_key
        f = offset_h / h
        sigma = np.log1p(f * np.expm1(MAP_ALPHA)) / MAP_ALPHA if mapped else f
        return step_key, float(f"{sigma:.12g}")

    @staticmethod
    def _time_map(mapped: bool):
        alpha = MAP_ALPHA if mapped else 0.0

        def phi(x):
            return np.expm1(alpha * x) / np.expm1(alpha) if alpha else x

        def dphi(x):
            return alpha * np.exp(alpha * x) / np.expm1(alpha) if alpha else np.ones_like(x)

        return phi, dphi

    def _build(self, h: float, mapped: bool, first: int, phi_all, w_all) -> dict:
        """Propagators and PK factors for one step of ``h`` hours.

        The step's input is interpolated in sigma in [0, 1] with s = h phi(sigma).
        Right after a dose the absorption transient is fast, so ``mapped`` steps
        use phi(sigma) = (e^{a sigma} - 1)/(e^a - 1), which crowds the nodes
        into the first hours; otherwise phi(sigma) = sigma.  ``first`` marks
        steps that start at a dose (see :meth:`_steps`; their error estimate
        is kept apart).
        """
        p, c = self.pd, self._c
        phi, _ = self._time_map(mapped)
        S, m, big_n = p.n_subjects, c.size, p.n_transit + 1
        # PK amounts from the step's start to each node and to its end.
        P = self.pk.propagators(self.pk_params, np.append(h * phi(c), h))
        # Copies, not views: a view would keep the whole of phi_all, w_all and P alive.
        # Without feedback the node tables are never read: one zero row stands for every subject.
        own = np.ascontiguousarray
        return {
            "offsets": np.append(h * phi(c), h),
            "phi": own(phi_all[:, 0]), "w": own(w_all[:, 0]),
            "phi_nodes": own(phi_all[:, 1:, -1, :]) if self._feedback else np.zeros((1, m, big_n)),
            "w_nodes": own(w_all[:, 1:, -1, :]) if self._feedback else np.zeros((1, m, m)),
            "pk_nodes": self._scale[:, None, None] * P[:, :m, self.pk.CENTRAL, :], "pk_end": own(P[:, m]),
            "step_h": np.float64(h), "first": np.int64(first), "mapped": np.int64(mapped),
        }

    def _switch_levels(self, amount, new) -> np.ndarray:
        """Halvings (S,) of the first step after a dose into no drug that put its
        first node before a potent drug switches E on: for each subject ``new``
        (dosed ``amount`` mg into no drug; 0 for the others) the smallest L with
        C <= EC50 / 2 (E below Emax / (1 + 2^hill)) at the first Gauss node of a
        step of max_step_h / 2^L.  Nodes placed after the switch do not see it,
        and neither does the error estimate, which reads only them."""
        amount = np.broadcast_to(amount, new.shape)
        taus = self._c[0] * self.max_step_h / 2.0 ** np.arange(MAX_SWITCH_LEVELS + 1)

        def low(who, taus):  # C <= EC50 / 2 at each tau, for the subjects ``who``
            unit = self.pk.propagators({k: v[who] for k, v in self.pk_params.items()}, taus)
            conc = unit[:, :, self.pk.CENTRAL, self.pk.DOSE_COMPARTMENT] * (self._scale[who] * amount[who])[:, None]
            return conc <= 0.5 * self.pd.ec50[who][:, None]

        levels = np.zeros(new.size, np.int64)
        new = new.copy()
        new[new] = ~low(new, taus[:1])[:, 0]  # most subjects are below already at the full step
        if new.any():
            ok = low(new, taus)
            levels[new] = np.where(ok.any(axis=1), np.argmax(ok, axis=1), MAX_SWITCH_LEVELS)
        return levels

    def _steps(self, span: float, after_dose: bool, into_empty: bool = False,
               switch: int = 0) -> list[tuple[float, bool, int]]:
        """(length h, starts right after a dose, first) of the steps covering
        ``span`` h; first = 1 for a step that starts at a dose, 2 for the first
        piece of a graded one, else 0.

        Equal steps <= max_step_h.  Right after a dose into an empty system C
        rises like t and E(C) like t^hill, which no polynomial interpolates
        well when hill is not a whole number; a potent drug (EC50 far below
        the peak) also switches E on within seconds.  With ``graded_levels``
        = L > 0 the first step after such a dose (``into_empty``: some subject
        dosed had no drug) is split geometrically (h/2^L, h/2^L, h/2^(L-1),
        ..., h/2).  ``switch`` = K (the halvings a potent first dose needs,
        :meth:`_switch_levels`; given only to reruns) grades the step after a dose
        into no drug h/2^K, h/2^K, ..., h/2^(G+1) (G = SWITCH_KEEP_LEVELS), the rest
        of it one step mapped as after any dose, or sets L >= K where every dose is
        graded (``grade_every_dose``).  After a dose on top of drug still in the system C is
        positive and E(C(t)) smooth, so that step is not split; should a
        nearly washed-out system still make it too hard, its error estimate
        fails and the subject is run again with graded steps after every dose
        (``grade_every_dose``, see :meth:`run`).
        """
        if span <= 1e-12:
            return []
        n = int(np.ceil(span / self.max_step_h - 1e-9))
        h = span / n
        steps = [(h, after_dose, int(after_dose))] + [(h, False, 0)] * (n - 1)
        if after_dose and into_empty and switch > SWITCH_KEEP_LEVELS and not self.grade_every_dose:
            # h/2^K, h/2^K, h/2^(K-1), ..., h/2^(G+1): then the step's rest, mapped, as after any dose
            pieces = h * np.r_[1.0, 2.0 ** np.arange(switch - SWITCH_KEEP_LEVELS)] / 2.0**switch
            # first = 2 (no decay extrapolation in its estimate) only at a branch point (hill not whole)
            first = [(x, False, (2 if self.graded_levels else 1) if i == 0 else 0) for i, x in enumerate(pieces)]
            return first + [(h - pieces.sum(), True, 1)] + steps[1:]
        levels = max(self.graded_levels, switch) if into_empty else self.graded_levels
        if after_dose and (into_empty or self.grade_every_dose) and levels:
            pieces = h * np.r_[1.0, 2.0 ** np.arange(levels)] / 2.0**levels
            steps = [(x, False, 2 if i == 0 else 0) for i, x in enumerate(pieces)] + steps[1:]
        return steps

    def run(self, dose_times, amounts, times, state: dict | None = None):
        """Simulate from ``state`` (default: drug-free at t = 0).

        dose_times : (D,) sorted dose times, h, shared by all subjects.
        amounts : (S, D) or (D,) doses in mg (0 = no dose for that subject).
        times : (T,) sorted report times, h, >= the state's time.
        Returns (conc (S, T) ng/mL, platelets (S, T) 10^9/L, final state).  A
        dose at a report time is given before the report (NONMEM order).

        Subjects whose per-step error estimate exceeds ``tolerance`` are run
        again from ``state`` with finer steps: more graded levels after each
        dose when the first piece after a dose failed, half the longest step
        when another step did.
        """
        state = self.initial_state() if state is None else {k: np.copy(v) for k, v in state.items()}
        S = self.pd.n_subjects
        t0 = float(state["t"])
        # One dose row for everyone stays one row (the kernel reads row 0), not S copies.
        shared = np.ndim(amounts) <= 1 and self.pk.LINEAR
        dose_times, amounts, times = run_inputs(1 if shared else S, t0, dose_times, amounts, times)
        if self._groups is not None:
            return self._run_groups(dose_times, amounts, times, state)
        if not self.keep_tables and S > SUBJECT_BLOCK:
            return self._run_blocks(dose_times, amounts, times, state)
        start = {k: np.copy(v) for k, v in state.items()}
        ops, args, seg = [], [], []
        t = t0
        # The first pass leaves its steps as they are and hands subjects with a potent first dose to a
        # rerun (potent, below); reruns (of those subjects, or refinements) grade that dose for them.
        first_pass = not self._potent_rerun and self.refinements == 0
        dosed = into_empty = False
        switch = 0
        needed = np.zeros(S, np.int64)  # halvings each subject's first dose into no drug needs (_switch_levels)
        empty = ~state["a"].any(axis=1)  # subjects with no drug in the system (so far in this plan)
        doses = dose_times[dose_times >= t0 - 1e-9]
        events = np.union1d(doses, times)
        interval = self.fluctuation.interval_h if self._fluctuating else np.inf
        if self._fluctuating and events.size:  # the fluctuation is constant between its interval ends
            ends = interval * np.arange(np.floor(t0 / interval) + 1, np.ceil(events[-1] / interval))
            doses = np.union1d(doses, ends)
            events = np.union1d(events, ends)
        if self.pk.LINEAR and times.size:
            # Dense output: only doses, fluctuation ends and the run's ends bound steps; the
            # other report times are read inside the step that spans them.
            bounds = np.union1d(doses, [times[-1], *times[times <= t0 + 1e-9]])
            at = np.clip(np.searchsorted(bounds, events), 1, bounds.size - 1) if bounds.size > 1 else np.zeros(events.size, int)
            near = np.minimum(np.abs(events - bounds[at]), np.abs(events - bounds[np.maximum(at - 1, 0)]))
            events = events[near <= 1e-9]
        # Plain lists and bisect: the plan is built in Python, one event at a time.
        report_at, dose_at = times.tolist(), dose_times.tolist()

        def within(values, lo, hi):  # indices of the sorted values in [lo, hi]
            return range(bisect.bisect_left(values, lo), bisect.bisect_right(values, hi))

        keys = {}
        for event in events.tolist():
            begin = t
            steps = self._steps(event - t, dosed, into_empty, switch)
            for k, (h, after_dose, first) in enumerate(steps):
                key = keys.get((h, after_dose, first))
                if key is None:
                    key = keys[h, after_dose, first] = self._step_key(h, after_dose, first)
                ops.append(OP_STEP)
                args.append(key)
                seg.append(int(np.floor(begin / interval + 1e-9)) if self._fluctuating else 0)
                end = begin + h
                # reports inside this step, and at its end unless the event below reports them
                for i in range(bisect.bisect_right(report_at, begin + 1e-9), bisect.bisect_left(report_at, end - 1e-9)):
                    ops.append(OP_DENSE)
                    args.append((i, self._dense_key(key, report_at[i] - begin)))
                    seg.append(0)
                if k < len(steps) - 1:
                    for i in within(report_at, end - 1e-9, end + 1e-9):
                        ops.append(OP_REPORT)
                        args.append(i)
                        seg.append(0)
                begin = end
            t = max(t, event)
            dosed = into_empty = False
            switch = 0
            for j in within(dose_at, event - 1e-9, event + 1e-9):
                ops.append(OP_DOSE)
                args.append(j)
                seg.append(0)
                given = amounts[:, j] != 0
                dosed = dosed or bool(given.any())
                new = given & empty
                if new.any():
                    into_empty = True
                    needed = np.maximum(needed, self._switch_levels(amounts[:, j], new))
                    switch = 0 if first_pass else int(needed.max())
                empty &= ~given
            for i in within(report_at, event - 1e-9, event + 1e-9):
                ops.append(OP_REPORT)
                args.append(i)
                seg.append(0)
        self._build_all([a for o, a in zip(ops, args) if o == OP_STEP], [a[1] for o, a in zip(ops, args) if o == OP_DENSE])
        index = {key: i for i, key in enumerate(self._cache)}
        dense_index = {key: i for i, key in enumerate(self._dense)}
        dense_of = np.array([dense_index[a[1]] if o == OP_DENSE else -1 for o, a in zip(ops, args)], np.int64)
        args = np.array([index[a] if o == OP_STEP else a[0] if o == OP_DENSE else a for o, a in zip(ops, args)], np.int64)
        ops = np.array(ops, np.int64)
        seg = np.array(seg, np.int64)
        dense = self._dense_tables()
        conc = np.full((S, times.size), np.nan)
        plt = np.full((S, times.size), np.nan)
        err_first, err_rest = np.zeros(S), np.zeros(S)
        tables = self._tables() if (ops == OP_STEP).any() else self._empty_tables()
        step_no = np.cumsum(ops == OP_STEP) - 1
        given = np.zeros((S, 0, self.nodes + 1))
        a_end = state["a"]
        if not self.pk.LINEAR:  # the PK model integrates its amounts through the plan itself
            a_end = state["a"].copy()
            given = self.pk.run_steps(self.pk_params, a_end, ops, args, amounts, tables["offsets"],
                                      self.pk.DOSE_COMPARTMENT)
        path = self._fluctuation_path(int(seg.max(initial=0)) + 1)
        # Subjects whose first dose into no drug switches E on before the first node: run again at once.
        potent = (needed > SWITCH_KEEP_LEVELS) & ~self._fast if first_pass else np.zeros(S, bool)
        skip = self._fast | potent
        p = self.pd
        _run_plan(
            ops, args, amounts,
            tables["phi"], tables["w"], tables["phi_nodes"], tables["w_nodes"],
            tables["pk_nodes"], tables["pk_end"],
            tables["step_h"], tables["first"], tables["mapped"], self._top, (self.nodes + 1) / 2.0,
            self._scale, self.pk.CENTRAL, self.pk.DOSE_COMPARTMENT, p.ktr, p.kin, p.emax, p.ec50, p.hill, p.gamma, p.plt0,
            FEEDBACK_SWEEPS if self._feedback else 0,
            state["a"], state["x"], conc, plt, err_first, err_rest, given, step_no, path, seg,
            dense["x"], dense["w"], dense["pk"], dense_of, np.zeros(S, np.int64), skip,
        )
        state["a"] = a_end
        state["t"] = max(t, t0)
        self._refine((err_first > self.tolerance) | self._fast, err_rest > self.tolerance / 24.0, start, state,
                     dose_times, amounts, times, conc, plt, potent)
        if self.output_dtype != "float64":
            conc, plt = conc.astype(self.output_dtype), plt.astype(self.output_dtype)
        return conc, plt, state

    def _run_groups(self, dose_times, amounts, times, state):
        """:meth:`run` for each group of subjects whose chains allow the same
        longest step, each a solver of its own, kept for later runs (its
        propagators are reused visit by visit)."""
        S = self.pd.n_subjects
        if self._fluctuating:  # the whole path first, from this solver's stream, as one run would draw it
            end = max(float(times[-1]) if times.size else 0.0, float(dose_times[-1]) if dose_times.size else 0.0)
            self._fluctuation_path(int(np.floor(end / self.fluctuation.interval_h + 1e-9)) + 2)
        if not self._group_solvers:
            self._group_solvers = [self._subsolver(idx, max_step_h=self._requested_step_h) for idx in self._groups]
        conc, plt = (np.empty((S, times.size), self.output_dtype) for _ in range(2))
        out = {"t": state["t"], "a": state["a"].copy(), "x": state["x"].copy()}
        for idx, group in zip(self._groups, self._group_solvers):
            if self._fluctuating:
                group._path = self._path[idx]
            self._run_subset(group, idx, dose_times, amounts, times, state, conc, plt, out)
        return conc, plt, out

    def _subsolver(self, idx, **settings) -> "TransitSolver":
        """A solver of the subjects ``idx`` with this solver's settings (``settings`` replace some)."""
        kw = dict(nodes=self.nodes, max_step_h=self.max_step_h, graded_levels=self.graded_levels,
                  grade_every_dose=self.grade_every_dose, tolerance=self.tolerance, refinements=self.refinements,
                  map_first_steps=self.map_first_steps, keep_tables=self.keep_tables, fluctuation=self.fluctuation,
                  _path=self._path[idx] if self._fluctuating else None)
        return TransitSolver(self.pk, {k: v[idx] for k, v in self.pk_params.items()}, self.pd.subset(idx),
                             **{**kw, **settings})

    @staticmethod
    def _run_subset(solver, idx, dose_times, amounts, times, state, conc, plt, out) -> None:
        """Run ``solver`` (of the subjects ``idx``) from their part of ``state``;
        its platelets, concentrations and end state go into ``conc``, ``plt``
        and ``out``, in place."""
        c, p, end = solver.run(dose_times, amounts if amounts.shape[0] == 1 else amounts[idx], times,
                               {"t": state["t"], "a": state["a"][idx], "x": state["x"][idx]})
        conc[idx], plt[idx] = c, p
        for k in ("a", "x"):
            out[k][idx] = end[k]
        out["t"] = end["t"]

    def _run_blocks(self, dose_times, amounts, times, state):
        """:meth:`run` in blocks of :data:`SUBJECT_BLOCK` subjects, each a solver
        of its own that is dropped after its block (see ``keep_tables``)."""
        S = self.pd.n_subjects
        end = max(float(times[-1]) if times.size else 0.0, float(dose_times[-1]) if dose_times.size else 0.0)
        if self._fluctuating:  # the whole path first, from this solver's stream, as one run would draw it
            self._fluctuation_path(int(np.floor(end / self.fluctuation.interval_h + 1e-9)) + 2)
        conc, plt = (np.empty((S, times.size), self.output_dtype) for _ in range(2))
        out = {"t": state["t"], "a": state["a"].copy(), "x": state["x"].copy()}
        for lo in range(0, S, SUBJECT_BLOCK):
            idx = np.arange(lo, min(lo + SUBJECT_BLOCK, S))
            self._run_subset(self._subsolver(idx, keep_tables=True), idx, dose_times, amounts, times, state, conc,
                             plt, out)
        return conc, plt, out

    def _refine(self, bad_first, bad_rest, start, state, dose_times, amounts, times, conc, plt, potent=None):
        """Run again, in place, the subjects whose error estimate failed, each
        group with finer steps (a solver of its own, cached for later runs);
        ``potent`` subjects (skipped by the first pass) with the same steps but a
        short first piece after a dose into no drug (see :meth:`_steps`)."""
        if potent is not None and potent.any():
            idx = np.flatnonzero(potent)
            key = ("potent", idx.tobytes())
            if key not in self._finer:
                self._finer[key] = self._subsolver(idx, keep_tables=True)
                self._finer[key]._potent_rerun = True
            if self._fluctuating:
                self._finer[key]._path = self._path[idx]
            self._run_subset(self._finer[key], idx, dose_times, amounts, times, start, conc, plt, state)
        if not (bad_first | bad_rest).any():
            return
        S = self.pd.n_subjects
        if self.refinements >= MAX_REFINEMENTS:
            bad = np.flatnonzero(bad_first | bad_rest)
            warnings.warn(
                f"platelet solver: the step error estimate of {bad.size} subject(s) (first: index {bad[0]}) stays "
                f"above the tolerance {self.tolerance:g} after {MAX_REFINEMENTS} refinements; their platelets may "
                "be less accurate than documented. Check the parameters against pkpd.checks (rate limits).",
                RuntimeWarning, stacklevel=3,
            )
            return
        # The fast eliminators (always refined) apart from the rest (which vary from run to run),
        # so that a trial's visits reuse one refined solver for them, not a new one per visit.
        for finer_first, finer_rest, fast in itertools.product((True, False), (True, False), (True, False)):
            if not (finer_first or finer_rest):
                continue
            idx = np.flatnonzero((bad_first == finer_first) & (bad_rest == finer_rest) & (self._fast == fast))
            if not idx.size:
                continue
            key = (finer_first, finer_rest, idx.tobytes())
            if key not in self._finer:
                self._finer[key] = self._subsolver(
                    idx, max_step_h=self.max_step_h / 2 if finer_rest else self.max_step_h,
                    graded_levels=max(2 * self.graded_levels, GRADED_LEVELS) if finer_first else self.graded_levels,
                    grade_every_dose=self.grade_every_dose or finer_first, refinements=self.refinements + 1,
                    map_first_steps=False, keep_tables=True)
                # Steps the finer solver shares with this one: slice their tables, which
                # keeps their layout (shared chain rows, node tables), so the finer solver keeps it too.
                self._finer[key]._shared_chain, self._finer[key]._feedback = self._shared_chain, self._feedback
                self._finer[key]._cache.update(
                    (kind, {k: v if np.ndim(v) == 0 or k == "offsets" or v.shape[0] != S else v[idx]
                            for k, v in tables.items()})
                    for kind, tables in self._cache.items()
                    if not kind[1]
                )
            if self._fluctuating:  # this run's path, drawn by this solver (none: no fluctuation, or no rng)
                self._finer[key]._path = self._path[idx]
            self._run_subset(self._finer[key], idx, dose_times, amounts, times, start, conc, plt, state)

    def _fluctuation_path(self, n_intervals: int) -> np.ndarray:
        """The disease-fluctuation path (S, >= n_intervals) of eta, drawn as far
        as needed (zeros without a fluctuation)."""
        if not self._fluctuating:
            return np.zeros((self.pd.n_subjects, 1))
        if self.rng is not None:
            self._path = self.fluctuation.extend(self._path, n_intervals, self.rng)
        return np.ascontiguousarray(self._path)

    def _tables(self) -> dict:
        """The cached propagators stacked along a leading step-kind axis; re-stacked
        only when a new step length was added (visit-by-visit runs reuse them)."""
        if self._stacked is None or self._stacked[0] != len(self._cache):
            first = next(iter(self._cache.values()))
            if len(self._cache) == 1:  # one step kind: a view with a leading axis, not a copy
                stacked = {name: np.asarray(first[name])[None] for name in first}
            else:
                stacked = {name: np.stack([c[name] for c in self._cache.values()]) for name in first}
            for i, c in enumerate(self._cache.values()):  # the cache keeps views of the stack, not a second copy
                c.update({name: stacked[name][i] for name in first})
            self._stacked = (len(self._cache), stacked)
        return self._stacked[1]

    def _dense_tables(self) -> dict:
        """The cached dense-output tables stacked along a leading axis (one
        empty entry when there are none)."""
        if self._dense_stacked is None or self._dense_stacked[0] != len(self._dense):
            if self._dense:
                stacked = {k: np.stack([d[k] for d in self._dense.values()]) for k in ("x", "w", "pk")}
                for i, d in enumerate(self._dense.values()):
                    d.update({k: stacked[k][i] for k in ("x", "w", "pk")})
            else:
                S, m, big_n = self.pd.n_subjects, self._c.size, self.pd.n_transit + 1
                stacked = {"x": np.zeros((1, S, big_n)), "w": np.zeros((1, S, m)),
                           "pk": np.zeros((1, S, self.pk.n_compartments()))}
            self._dense_stacked = (len(self._dense), stacked)
        return self._dense_stacked[1]

    def _empty_tables(self) -> dict:
        S, m, big_n, n_pk = self.pd.n_subjects, self._c.size, self.pd.n_transit + 1, self.pk.n_compartments()
        z = np.zeros
        return {
            "offsets": z((1, m + 1)),
            "phi": z((1, S, big_n, big_n)), "w": z((1, S, big_n, m)), "phi_nodes": z((1, S, m, big_n)),
            "w_nodes": z((1, S, m, m)), "pk_nodes": z((1, S, m, n_pk)), "pk_end": z((1, S, n_pk, n_pk)),
            "step_h": z(1), "first": np.zeros(1, np.int64), "mapped": np.zeros(1, np.int64),
        }


def PKPDSolver(ka, cl, v, pd: TransitParams, **options) -> TransitSolver:
    """The exact-step platelet solver with one-compartment oral PK (ka 1/h,
    cl L/h, v L, arrays over subjects or scalars): the spelling of earlier
    versions, kept working.  Equals ``TransitSolver(OneCompartmentOral,
    {"ka": ka, "cl": cl, "v": v}, pd, **options)``; deprecated (it warns with that spelling)."""
    warnings.warn('pkpd.pd.PKPDSolver(ka, cl, v, pd) is deprecated; use pkpd.pd.TransitSolver(OneCompartmentOral, '
                  '{"ka": ka, "cl": cl, "v": v}, pd)', DeprecationWarning, stacklevel=2)
    return TransitSolver(OneCompartmentOral, {"ka": ka, "cl": cl, "v": v}, pd, **options)


class TransitPlatelets(PDModel):
    """The megakaryocyte-maturation transit model of platelets (this module's
    equations), solved by :class:`TransitSolver`: the PD model interface of
    :mod:`pkpd.response`."""

    PARAMETERS = {"emax": "fold", "ec50": "ng/mL", "hill": "-", "n_transit": "-", "mtt": "h", "gamma": "-",
                  "plt0": "10^9/L", "lifespan": "h"}
    WHOLE = ("n_transit",)
    OBSERVABLE = "platelets"
    UNIT = "10^9/L"
    BASELINE = "plt0"
    DRUG_EFFECT = "emax"
    SINGLE_RUN_OPTIONS = {"keep_tables": False}
    MEANINGS = {
        "emax": "maximal stimulation of platelet production", "ec50": "plasma concentration of half-maximal effect",
        "hill": "Hill coefficient", "n_transit": "megakaryocyte maturation transit compartments",
        "mtt": "mean maturation time", "gamma": "feedback of platelets on production (0 = off)",
        "plt0": "baseline platelet count", "lifespan": "platelet lifespan in circulation",
    }

    @classmethod
    def check(cls, **values) -> TransitParams:
        return TransitParams.from_values(**values)

    @classmethod
    def solver(cls, pk, pk_params, pd_params, **options) -> TransitSolver:
        """The solver; ``options`` are those of :class:`TransitSolver` (e.g.
        ``fluctuation`` and ``rng``)."""
        pd = pd_params if isinstance(pd_params, TransitParams) else TransitParams.from_values(**pd_params)
        return TransitSolver(pk, dict(pk_params), pd, **options)
