"""Closed-form PK (pkpd.pk.concentrations) versus an ODE solver, per subject-day.

Population: log-normal inter-individual variability around the hetrombopag
defaults (ka 0.34 /h CV 50%, CL/F 7.66 L/h CV 63.5%, V/F 265 L CV 77%; see
docs/science.md), seeded.  Regimen: 5 mg once daily for 56 days,
concentrations on an hourly grid.

The ODE reference is scipy's solve_ivp, one subject at a time, restarted at
every dose with the dose added to the depot (the usual way to integrate bolus
doses).  It runs on a subset and is scaled to subject-days per second.

    python benchmarks/bench_pk.py [--subjects 10000] [--days 56] [--ode-subjects 20] [--method LSODA]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from scipy.integrate import solve_ivp

from pkpd.pk import HETROMBOPAG_CL, HETROMBOPAG_KA, HETROMBOPAG_V, concentrations
from pkpd.regimen import Regimen

DOSE_MG = 5.0


def population(n: int, seed: int = 20240601):
    """ka (1/h), CL/F (L/h), V/F (L) with log-normal IIV (omega^2 = ln(1 + CV^2))."""
    rng = np.random.default_rng(seed)

    def lognormal(typical, cv):
        return typical * np.exp(rng.normal(0.0, np.sqrt(np.log1p(cv**2)), n))

    return lognormal(HETROMBOPAG_KA, 0.50), lognormal(HETROMBOPAG_CL, 0.635), lognormal(HETROMBOPAG_V, 0.77)


def ode_subject(dose_times, times, ka, cl, v, method, rtol):
    """ng/mL at ``times`` for one subject, integrating dose interval by dose interval."""
    k = cl / v

    def rhs(t, y):
        return [-ka * y[0], ka * y[0] - k * y[1]]

    jac = [[-ka, 0.0], [ka, -k]]
    out = np.zeros(times.size)
    state = np.zeros(2)
    ends = list(dose_times[1:]) + [times[-1] + 1.0]
    for start, end in zip(dose_times, ends):
        state = state + [DOSE_MG, 0.0]
        sel = (times >= start) & (times < end)
        t_eval = times[sel]
        stop = min(end, times[-1])
        kwargs = {"jac": jac} if method in ("LSODA", "BDF", "Radau") else {}
        sol = solve_ivp(rhs, (start, stop), state, method=method, rtol=rtol, atol=1e-12,
                        t_eval=np.r_[t_eval, stop] if stop > t_eval[-1] else t_eval, **kwargs)
        out[sel] = sol.y[1][: t_eval.size] / v * 1000.0
        state = sol.y[:, -1]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=56)
    parser.add_argument("--ode-subjects", type=int, default=20)
    parser.add_argument("--method", default="LSODA", choices=["LSODA", "RK45", "DOP853", "BDF"])
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--repeats", type=int, default=3, help="closed form: best of this many runs")
    parser.add_argument("--chunk", type=int, default=100, help="subjects per call in the blocked run")
    args = parser.parse_args()

    ka, cl, v = population(args.subjects)
    regimen = Regimen.daily(DOSE_MG, days=args.days)
    times = np.arange(0.0, 24.0 * args.days + 1e-9, 1.0)
    subject_days = args.subjects * args.days

    wall = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        conc = concentrations(regimen, times, ka, cl, v)
        wall.append(time.perf_counter() - t0)
    t_closed = min(wall)
    # The same call on blocks of subjects keeps the temporaries in cache (same numbers, less memory traffic).
    wall = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        blocks = [concentrations(regimen, times, ka[i:i + args.chunk], cl[i:i + args.chunk], v[i:i + args.chunk])
                  for i in range(0, args.subjects, args.chunk)]
        wall.append(time.perf_counter() - t0)
    t_chunked = min(wall)
    assert np.array_equal(np.concatenate(blocks), conc)

    m = min(args.ode_subjects, args.subjects)
    t0 = time.perf_counter()
    ode = np.array([ode_subject(regimen.times, times, ka[i], cl[i], v[i], args.method, args.rtol) for i in range(m)])
    t_ode = time.perf_counter() - t0

    rate_closed = subject_days / t_closed
    rate_ode = m * args.days / t_ode
    positive = conc[:m] > 0
    max_rel = np.max(np.abs(ode[positive] - conc[:m][positive]) / conc[:m][positive])

    print(f"subjects           : {args.subjects} (ODE on the first {m})")
    print(f"days               : {args.days} daily {DOSE_MG:g} mg doses, hourly grid ({times.size} times)")
    print(f"cores              : {os.cpu_count()} (numpy / scipy as installed; no explicit parallelism)")
    print(f"output             : {conc.shape} array of ng/mL, {conc.nbytes / 1e6:.0f} MB")
    print(f"closed form        : {t_closed:8.3f} s wall (best of {args.repeats})  "
          f"{rate_closed:14,.0f} subject-days/s")
    print(f"closed form blocks : {t_chunked:8.3f} s wall ({args.chunk} subjects per call)  "
          f"{subject_days / t_chunked:14,.0f} subject-days/s")
    print(f"solve_ivp {args.method:<8} : {t_ode:8.3f} s wall for {m} subjects (rtol {args.rtol:g})  "
          f"{rate_ode:14,.0f} subject-days/s")
    print(f"speed-up           : {rate_closed / rate_ode:,.0f}x (one call), "
          f"{subject_days / t_chunked / rate_ode:,.0f}x (blocks)")
    print(f"ODE vs closed form : max relative difference {max_rel:.1e} on the {m} subjects")


if __name__ == "__main__":
    main()
