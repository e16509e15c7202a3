"""Explicit adaptive Runge-Kutta integration of many small ODE systems at once.

The Dormand-Prince 5(4) pair (Dormand & Prince, J Comput Appl Math
1980;6:19; the tableau of Hairer, Norsett & Wanner, Solving ODEs I, 2nd ed.,
Table II.5.2), first same as last, with Hairer's PI step-size controller
(ibid. II.4 and the ``dopri5`` code: exponents 0.2 - 0.75 beta and beta =
0.04, safety 0.9, step ratio in [0.2, 10]) and the weighted RMS error norm
with ``atol + rtol * max(|y0|, |y1|)``.

:func:`integrate` runs a *plan* of operations for every subject in parallel
(``prange``): integrate to a time (the last step is shortened to land on it
exactly, so report times are hit, not interpolated), add a dose to one
component, or record some components.  After a dose the step size is chosen
afresh (Hairer's starting-step estimate), so no step ever spans a dose.

The right-hand side is a ``numba.cfunc`` of signature :data:`RHS` --
``rhs(t, y, p, dy)`` with ``p`` one subject's parameter row -- passed as a
first-class function: the compiled kernel is then cached on disk once per
machine (``cache=True``), whatever the model (a plain jitted function as an
argument would be part of the cache key and recompile in every process).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import types

#: Signature of a right-hand side: (t h, state, parameters, derivative out).
RHS = types.void(types.float64, types.float64[::1], types.float64[::1], types.float64[::1])

# Dormand-Prince 5(4): nodes C, stage coefficients A (row i gives stage i+1),
# 5th-order weights B (= the last row of A: first same as last) and the
# error weights E = B - B*, B* the embedded 4th-order solution.
C = np.array([0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0])
A = np.array([
    [0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
    [1 / 5, 0.0, 0.0, 0.0, 0.0, 0.0],
    [3 / 40, 9 / 40, 0.0, 0.0, 0.0, 0.0],
    [44 / 45, -56 / 15, 32 / 9, 0.0, 0.0, 0.0],
    [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729, 0.0, 0.0],
    [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656, 0.0],
    [35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84],
])
B = A[6].copy()
E = np.array([71 / 57600, 0.0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40])
STAGES = 7

#: PI controller (Hairer's dopri5): beta, safety, smallest and largest step ratio.
BETA = 0.04
EXPONENT = 0.2 - 0.75 * BETA
SAFETY = 0.9
MIN_FACTOR, MAX_FACTOR = 0.2, 10.0
#: Steps allowed per subject and plan before the subject is marked failed.
MAX_STEPS = 1_000_000

#: Plan operations: integrate to ``time``, add ``amounts[s, arg]`` to component
#: ``dose_into``, record components ``record`` into column ``arg``.
OP_INTEGRATE, OP_DOSE, OP_RECORD = 0, 1, 2


@numba.njit(cache=True)
def _norm(err, y0, y1, rtol, atol):
    """Weighted RMS norm of ``err`` (1 = on tolerance)."""
    acc = 0.0
    for i in range(err.size):
        scale = atol + rtol * max(abs(y0[i]), abs(y1[i]))
        acc += (err[i] / scale) ** 2
    return np.sqrt(acc / err.size)


# Inlined into callers (here and in kernels of models that pass a jitted right-hand side): a
# dispatcher passed as an argument to a separately compiled function would make the caller uncacheable.
@numba.njit(cache=True, inline="always")
def _initial_step(rhs, t, y, p, f0, rtol, atol, span, work, f1):
    """Hairer's starting step (Solving ODEs I, II.4): from |y|, |f| and a
    finite-difference estimate of |f'|, for a 5th-order method; at most ``span``."""
    zero = np.zeros_like(y)
    d0, d1 = _norm(y, y, zero, rtol, atol), _norm(f0, y, zero, rtol, atol)
    h0 = 1e-6 if (d0 < 1e-5 or d1 < 1e-5) else 0.01 * d0 / d1
    h0 = min(h0, span)
    for i in range(y.size):
        work[i] = y[i] + h0 * f0[i]
    rhs(t + h0, work, p, f1)
    for i in range(y.size):
        work[i] = f1[i] - f0[i]
    d2 = _norm(work, y, zero, rtol, atol) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** 0.2
    return min(100.0 * h0, h1, span)


@numba.njit(cache=True, inline="always")
def _advance(rhs, t, t_end, y, p, h, err_old, k, work, err, rtol, atol):
    """Integrate ``y`` in place from t to exactly t_end, starting with step h
    (0: estimate one).  ``k[0]`` holds f(t, y) on entry and on exit.
    Returns (the step to try next, the controller's previous error, steps taken)."""
    n = y.size
    steps = 0
    if h <= 0.0:
        h = _initial_step(rhs, t, y, p, k[0], rtol, atol, t_end - t, work, k[1])
        err_old = 1e-4
    while t < t_end and steps < MAX_STEPS:
        last = t + h >= t_end * (1.0 - 1e-15)
        step = t_end - t if last else h
        for s in range(1, STAGES):
            for i in range(n):
                acc = y[i]
                for j in range(s):
                    acc += step * A[s, j] * k[j, i]
                work[i] = acc
            rhs(t + C[s] * step, work, p, k[s])
        for i in range(n):
            acc = 0.0
            for j in range(STAGES):
                acc += E[j] * k[j, i]
            err[i] = step * acc
        e = _norm(err, y, work, rtol, atol)  # work holds the 5th-order solution (the FSAL stage)
        steps += 1
        grow = e ** EXPONENT
        if e <= 1.0:
            factor = min(MAX_FACTOR, max(MIN_FACTOR, SAFETY / (grow * err_old ** -BETA) if e > 0 else MAX_FACTOR))
            y[:] = work
            k[0] = k[STAGES - 1]
            err_old = max(e, 1e-4)
            t = t_end if last else t + step
            h = step * factor if not last else max(h, step * factor)
        else:
            h = step * max(MIN_FACTOR, SAFETY / grow)
    return h, err_old, steps


@numba.njit(parallel=True, cache=True)
def integrate(rhs, ops, args, op_times, t0, y, params, amounts, dose_into, record, rtol, atol, out, failed):
    """Run the plan (``ops``, ``args``, ``op_times``) from time ``t0`` for every
    subject: y (S, n) is updated in place, ``out`` (S, T, len(record)) gets the
    recorded components, ``failed[s]`` is set when a subject needed more than
    MAX_STEPS steps (its later records are left as they were)."""
    S, n = y.shape
    for s in numba.prange(S):
        ys = y[s].copy()
        p = params[s]
        k = np.empty((STAGES, n))
        work, err = np.empty(n), np.empty(n)
        t, h, err_old, fresh = t0, 0.0, 1e-4, True
        for o in range(ops.size):
            if ops[o] == OP_INTEGRATE and op_times[o] > t:
                if fresh:
                    rhs(t, ys, p, k[0])
                h, err_old, steps = _advance(rhs, t, op_times[o], ys, p, 0.0 if fresh else h, err_old, k, work, err,
                                             rtol, atol)
                fresh = False
                if steps >= MAX_STEPS:
                    failed[s] = True
                    break
                t = op_times[o]
            elif ops[o] == OP_DOSE:
                ys[dose_into] += amounts[s, args[o]]
                fresh = True  # f changed: new derivative and a new starting step
            elif ops[o] == OP_RECORD:
                for c in range(record.size):
                    out[s, args[o], c] = ys[record[c]]
        y[s] = ys
