"""Population platelet simulation (closed-form PK + exact-step transit PD) versus scipy LSODA.

Population: the default healthy hetrombopag model with its inter-individual
variability (pkpd.drugs.hetrombopag.model("healthy")), seeded.  Regimen: 5 mg once
daily for 56 days; platelets reported daily.  Our figure includes everything a
user waits for: drawing parameters, building propagators and running, with the
numba kernels already compiled (the first call in a fresh clone compiles them
once and caches them on disk; that time is printed separately).

The baseline integrates the whole PK/PD ODE system for one subject at a time with
scipy's LSODA (rtol 1e-8), restarting at each dose; it runs on a subset and is
scaled to subject-days per second.  Its difference from ours is printed too.

    python benchmarks/bench_pd.py [--subjects 10000] [--days 56] [--ode-subjects 20]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numba  # noqa: E402

from pkpd import Regimen  # noqa: E402
from pkpd.drugs import hetrombopag  # noqa: E402
from pkpd.simulate import solver_for  # noqa: E402
from reference_ode import platelets_ode  # noqa: E402


def ours(model, regimen, times, n, seed):
    params = model.sample_parameters(n, seed=seed)
    _, plt, _ = solver_for(params).run(regimen.times, regimen.amounts, times)
    return params, plt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=56)
    ap.add_argument("--ode-subjects", type=int, default=20)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()

    model = hetrombopag.model("healthy")
    regimen = Regimen.daily(5.0, args.days)
    times = np.arange(args.days + 1) * 24.0
    subject_days = args.subjects * args.days

    t0 = time.perf_counter()
    ours(model, regimen, times, 10, args.seed)  # compile or load the numba cache
    warmup = time.perf_counter() - t0
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        params, plt = ours(model, regimen, times, args.subjects, args.seed)
        walls.append(time.perf_counter() - t0)
    wall = min(walls)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    k = args.ode_subjects
    t0 = time.perf_counter()
    ref = np.array([
        platelets_ode(params.iloc[i].to_dict(), regimen.times, regimen.amounts, times, method="LSODA", rtol=1e-8, atol=1e-10)[1]
        for i in range(k)
    ])
    ode_wall = time.perf_counter() - t0
    err = np.max(np.abs(plt[:k] / ref - 1))

    rate = subject_days / wall
    ode_rate = k * args.days / ode_wall
    print(f"subjects x days   : {args.subjects} x {args.days} (5 mg daily, platelets daily); cores: {os.cpu_count()}, numba threads: {numba.get_num_threads()}")
    print(f"pkpd              : {wall:8.3f} s wall (best of 3)  {rate:14,.0f} subject-days/s")
    print(f"  first call      : {warmup:8.3f} s (numba compile or cache load, 10 subjects)")
    print(f"scipy LSODA loop  : {ode_wall:8.3f} s for {k} subjects   {ode_rate:14,.0f} subject-days/s (rtol 1e-8)")
    print(f"speed-up          : {rate / ode_rate:,.0f}x")
    print(f"peak memory (RSS) : {peak_mb:,.0f} MB for the whole process")
    print(f"max |ours/LSODA-1|: {err:.1e} on {k} subjects (LSODA's own rtol is 1e-8)")


if __name__ == "__main__":
    main()
