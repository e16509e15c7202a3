"""Population platelet simulation (closed-form PK + exact-step transit PD) versus scipy LSODA.

Population: the default healthy hetrombopag model with its inter-individual
variability (pkpd.drugs.hetrombopag.model("healthy")), seeded.  Regimen: 5 mg once
daily for 56 days; platelets reported daily (``--output-every-h 1``: hourly),
feedback ``--gamma`` (default 0, the model's value).  Our figure includes everything a
user waits for: drawing parameters, building propagators and running, with the
numba kernels already compiled (the first call in a fresh clone compiles them
once and caches them on disk; that time is printed separately).

The baseline integrates the whole PK/PD ODE system for one subject at a time with
scipy's LSODA (rtol 1e-8), restarting at each dose; it runs on a subset and is
scaled to subject-days per second.  Its difference from ours is printed too.

When R with deSolve is installed (``apt-get install r-base-core r-cran-desolve``)
and the peer scripts are found (``--peers``, default ``../shared/peers`` beside
the checkout), the same workload also runs in R deSolve (lsoda, compiled C
right-hand side, analytic Jacobian, rtol 1e-8; one R process) on
``--desolve-subjects`` of the same subjects, and the per-core ratio is printed.

    python benchmarks/bench_pd.py [--subjects 10000] [--days 56] [--gamma 0.15] [--output-every-h 1]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numba  # noqa: E402

from pkpd import Regimen  # noqa: E402
from pkpd.drugs import hetrombopag  # noqa: E402
from pkpd.simulate import solver_for  # noqa: E402
from reference_ode import platelets_ode  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardware import kernel_flops, print_fraction  # noqa: E402


def ours(model, regimen, times, n, seed, dtype="float64"):
    params = model.sample_parameters(n, seed=seed)
    solver = solver_for(params, model, keep_tables=False, output_dtype=dtype)  # one run: tables freed per block
    _, plt, _ = solver.run(regimen.times, regimen.amounts, times)
    return params, plt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subjects", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=56)
    ap.add_argument("--ode-subjects", type=int, default=20)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--gamma", type=float, default=None, help="feedback exponent for every subject (default: the model's)")
    ap.add_argument("--output-every-h", type=float, default=24.0, help="report interval, h (24: daily, 1: hourly)")
    ap.add_argument("--peers", default=str(Path(__file__).resolve().parents[2] / "shared" / "peers"))
    ap.add_argument("--desolve-subjects", type=int, default=300)
    ap.add_argument("--float32", action="store_true", help="float32 output (half the memory)")
    args = ap.parse_args()

    model = hetrombopag.model("healthy")
    if args.gamma is not None:
        model = model.with_typical(gamma=args.gamma)
    regimen = Regimen.daily(5.0, args.days)
    times = np.arange(0.0, args.days * 24.0 + 1e-9, args.output_every_h)
    subject_days = args.subjects * args.days

    t0 = time.perf_counter()
    ours(model, regimen, times, 10, args.seed)  # compile or load the numba cache
    warmup = time.perf_counter() - t0
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        params, plt = ours(model, regimen, times, args.subjects, args.seed, "float32" if args.float32 else "float64")
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
    gamma = float(params["gamma"].iloc[0])
    print(f"subjects x days   : {args.subjects} x {args.days} (5 mg daily, gamma {gamma:g}, {times.size} report times every "
          f"{args.output_every_h:g} h); cores: {os.cpu_count()}, numba threads: {numba.get_num_threads()}")
    print(f"pkpd              : {wall:8.3f} s wall (best of 3)  {rate:14,.0f} subject-days/s")
    print(f"  first call      : {warmup:8.3f} s (numba compile or cache load, 10 subjects)")
    print(f"scipy LSODA loop  : {ode_wall:8.3f} s for {k} subjects   {ode_rate:14,.0f} subject-days/s (rtol 1e-8)")
    print(f"speed-up          : {rate / ode_rate:,.0f}x")
    print(f"peak memory (RSS) : {peak_mb:,.0f} MB for the whole process = {peak_mb * 2**20 / args.subjects:,.0f} B per "
          f"subject ({times.size} report times, {plt.dtype} output)")
    print(f"max |ours/LSODA-1|: {err:.1e} on {k} subjects (LSODA's own rtol is 1e-8)")
    few = params.iloc[:50].reset_index(drop=True)
    flops = kernel_flops(lambda: solver_for(few, model).run(regimen.times, regimen.amounts, times))
    print_fraction(rate, flops / (len(few) * args.days), "subject-day")
    desolve = run_desolve(Path(args.peers), params, args, gamma)
    if desolve:
        threads = numba.get_num_threads()
        print(f"R deSolve         : {desolve:14,.0f} subject-days/s (one core)")
        print(f"vs deSolve        : {rate / desolve:,.0f}x on {threads} thread(s); per core {rate / threads / desolve:,.0f}x")


def run_desolve(peers: Path, params, args, gamma: float) -> float | None:
    """Subject-days/s of the R deSolve peer on the same subjects, or None (and why) when it cannot run."""
    script = peers / "hetrombopag_desolve.R"
    if not script.is_file() or shutil.which("Rscript") is None:
        print(f"R deSolve         : not run (needs Rscript with deSolve and {script})")
        return None
    if args.days != 56 or int(params["n_transit"].iloc[0]) != 4:
        print("R deSolve         : not run (the peer script is fixed at 56 days and 4 transit compartments)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        for f in ("hetrombopag_desolve.R", "hetrombopag_desolve.c"):
            shutil.copy(peers / f, tmp)
        os.makedirs(Path(tmp) / "data")
        params.iloc[: args.desolve_subjects].to_csv(Path(tmp) / "data" / "hetrombopag_pop_params.csv", index=False)
        env = {**os.environ, "HETRO_OUT_H": f"{args.output_every_h:g}", "HETRO_GAMMA": f"{gamma:g}"}
        run = subprocess.run(["Rscript", "hetrombopag_desolve.R", "data/hetrombopag_pop_params.csv",
                              str(args.desolve_subjects), "3"], cwd=tmp, env=env, capture_output=True, text=True)
    found = re.search(r"median [\d.]+ s: (\d+) subject-days/s", run.stdout)
    if run.returncode or not found:
        print(f"R deSolve         : failed ({run.stderr.strip()[-300:]})")
        return None
    return float(found.group(1))


if __name__ == "__main__":
    main()
