"""Benchmark: calibrate 6 parameters of the ITP model to 11 published
hetrombopag endpoints (target: under 10 minutes on 2 cores), then their 95 %
profile-likelihood intervals.

The problem of notebook 03, written once in ``scenarios/itp_calibration.toml``
(targets, held-out targets, parameters and bounds, the two starts,
replicates, seed; docs/calibration.md): six parameters (EC50, Hill, EC50 IIV,
the disease fluctuation's size and time scale, the visit noise); fitted the
phase III (Mei et al., J Hematol Oncol 2021;14:37) week-8 response, "responded
at least once within 8 weeks" and the adverse-event proxy of the 2.5 and 5 mg
starts, and the first-in-patient day-28 response (J Thromb Haemost
2020;18:3053); 4 held out.

Times ``pkpd.calibrate.calibrate`` only (loading the problem is not timed);
prints the virtual patients and days per simulation, the number of
simulations of each stage, the cores, the first (cold: numba kernels loaded
in this process) and the median later (warm) simulation, the fit's wall time
(the target) and the total with the intervals.

    python benchmarks/bench_calibrate.py [--replicates 15] [--no-intervals]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from pkpd.calibrate import calibrate, load_problem

PROBLEM = Path(__file__).resolve().parents[1] / "scenarios" / "itp_calibration.toml"
TARGET_MINUTES = 10.0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=None, help="default: the problem file's")
    ap.add_argument("--no-intervals", action="store_true")
    args = ap.parse_args(argv)
    problem = load_problem(PROBLEM)
    if args.replicates is not None:
        problem["replicates"] = args.replicates
    replicates = problem["replicates"]
    start = time.perf_counter()
    res = calibrate(**problem, intervals=not args.no_intervals)
    wall = time.perf_counter() - start
    fitted = [res.problem.trials[i] for i in res.problem._fit_designs]
    h = res.history
    fit_stage = h["stage"].str.startswith("fit")
    fit_wall = float(h.loc[fit_stage, "seconds"].sum())
    print(res)
    print(res.parameters.to_string())
    print(res.targets.drop(columns=["source", "arm", "endpoint"]).to_string())
    print(f"\nparameters {len(problem['parameters'])}, fitted targets {len(problem['targets'])}, "
          f"held out {len(problem['holdout'])}, designs {len(res.problem.trials)}, starts {1 + len(problem['starts'])}")
    for t in fitted:
        print(f"per simulation: {t.name}: {t.n_per_trial * replicates:,} virtual patients "
              f"({replicates} replicates x {t.n_per_trial}), {t.duration_days:g} days")
    for stage, n in h.groupby("stage", sort=False).size().items():
        print(f"  {stage}: {n} simulations, {h.loc[h['stage'] == stage, 'seconds'].sum():.0f} s")
    print(f"simulations {len(h)}; cores {os.cpu_count()}")
    print(f"cold first simulation {h['seconds'].iloc[0]:.2f} s, warm median {np.median(h['seconds'].iloc[1:]):.2f} s")
    print(f"fit ({1 + len(problem['starts'])} starts) {fit_wall:.0f} s ({fit_wall / 60:.1f} min; target < "
          f"{TARGET_MINUTES:g} min: {'met' if fit_wall < 60 * TARGET_MINUTES else 'MISSED'}); total wall time "
          f"{wall:.0f} s ({wall / 60:.1f} min){' with the intervals' if not args.no_intervals else ''}")
    return 0 if fit_wall < 60 * TARGET_MINUTES else 1


if __name__ == "__main__":
    raise SystemExit(main())
