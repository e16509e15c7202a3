"""Rule search on the phase III design, and a sweep on a 2-worker LocalCluster against one process.

Part 1 runs ``pkpd.optimize_rule`` on the phase III design's titrated arms
scaled to ``--patients`` patients and ``--days`` days, ``--candidates``
candidates over the 8 fields of ``pkpd.optimize.DEFAULT_SPACE``, on
``--workers`` local worker processes, and prints the time per candidate (so
the target, 200 candidates x 10,000 patients x 24 weeks, can be extrapolated),
the best rule and its held-out gain with the paired 95 % interval.

Part 2 runs one ``pkpd.sweep`` (exactly ``--points`` grid points of EC50 x
the rule's ``low``, ``--sweep-patients`` patients x 84 days each) in one process and on a 2-worker LocalCluster (started
before the clock) and prints the parallel efficiency T1 / (2 T2).

    python benchmarks/bench_optimize.py                       # the target configuration
    python benchmarks/bench_optimize.py --candidates 16       # a shorter run

Timings depend on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numba
import numpy as np

import pkpd
from pkpd.distributed import local_client
from pkpd.optimize import DEFAULT_SPACE, optimize_rule, scaled_design

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=200)
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=168)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=20210237)
    ap.add_argument("--points", type=int, default=8, help="sweep grid points")
    ap.add_argument("--sweep-patients", type=int, default=2_000)
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument("--plot", default=None, help="save the trade-off figure here (PNG)")
    args = ap.parse_args()

    cores = os.cpu_count()
    print(f"cores on the machine: {cores}; load average {os.getloadavg()[0]:.2f} (other work shares them)")
    scenario = pkpd.load_scenario(ROOT / "scenarios" / "itp_phase3.toml")
    t = time.perf_counter()
    scaled_design(scenario, 100, 28).run(seed=0, progress=False)
    print(f"warm-up run in this process: {time.perf_counter() - t:.2f} s (numba kernels from the disk cache: warm)")

    if not args.skip_search:
        design = scaled_design(scenario, args.patients, args.days)
        print(f"\n== optimize_rule: {args.candidates} candidates x {design.n_per_trial} patients "
              f"({', '.join(f'{a.name} {a.n}' for a in design.arms)}) x {args.days} days, "
              f"{len(DEFAULT_SPACE)} fields, {args.workers} worker(s), batch {args.batch_size}")
        t = time.perf_counter()
        res = optimize_rule(design=design, budget=args.candidates, seed=args.seed, workers=args.workers,
                            batch_size=args.batch_size, progress=True)
        total = time.perf_counter() - t
        per = res.elapsed_s / (args.candidates + 1)
        print(res)
        print(f"search: {res.elapsed_s:.1f} s for {args.candidates + 1} runs (base + candidates) = {per:.2f} s per "
              f"candidate ({design.n_per_trial * (args.days + 1) / per / 1e6:.2f} M patient-days/s over "
              f"{args.workers} workers); whole call incl. cluster start and held-out runs {total:.1f} s")
        full = 200 * per * (10_000 * 169) / (design.n_per_trial * (args.days + 1))
        print(f"extrapolated to 200 candidates x 10,000 patients x 24 weeks on {args.workers} workers: {full / 60:.1f} min")
        h = res.holdout
        u = h.loc["utility"]
        print(f"held out (seed {res.holdout_seed}, {int(u['patients'])} patients): gain {u['difference']:+.3f} utility "
              f"per patient, paired t 95% CI [{u['difference_low']:+.3f}, {u['difference_high']:+.3f}]")
        print(h[["base", "best", "difference", "difference_low", "difference_high"]].to_string(
            float_format=lambda x: f"{x:.4g}"))
        feasible = res.candidates["feasible"] & res.candidates["valid"]
        print(f"feasible candidates: {int(feasible.sum()) - 1} of {args.candidates}")
        if args.plot:
            res.plot().savefig(args.plot, dpi=120)
            print(f"wrote {args.plot}")

    # ---------------------------------------------------------------- sweep: 1 process vs 2 workers
    trial = scaled_design(scenario, args.sweep_patients, 84)
    # exactly --points points (EC50 values x low values, the most even factorisation): an odd count
    # leaves one worker idle in the last round, which caps the efficiency (9 tasks on 2 workers: 90 %)
    n_low = max(d for d in range(1, int(np.sqrt(args.points)) + 1) if args.points % d == 0)
    ec50 = list(np.linspace(12.0, 30.0, args.points // n_low))
    low = list(np.linspace(30.0, 70.0, n_low))
    grid = {"ec50": ec50, "low": low}
    runs = len(ec50) * len(low)
    print(f"\n== sweep: {runs} points x {trial.n_per_trial} patients x 84 days")
    threads = numba.get_num_threads()
    pkpd.sweep(trial, {"ec50": ec50[:1]}, seed=1, progress=False)  # warm-up
    t = time.perf_counter()
    pkpd.sweep(trial, grid, seed=1, progress=False)
    t1_threads = time.perf_counter() - t
    numba.set_num_threads(1)  # the baseline of parallel efficiency: one process on one core
    t, cpu = time.perf_counter(), time.process_time()
    one = pkpd.sweep(trial, grid, seed=1, progress=False)
    t1, cpu1 = time.perf_counter() - t, time.process_time() - cpu
    numba.set_num_threads(threads)
    t = time.perf_counter()
    with local_client(2) as client:
        start = time.perf_counter() - t
        t = time.perf_counter()
        cold = pkpd.sweep(trial, grid, seed=1, workers=client, progress=False)
        t2_cold = time.perf_counter() - t
        before = client.run(_cpu_seconds)
        t = time.perf_counter()
        two = pkpd.sweep(trial, grid, seed=1, workers=client, progress=False)
        t2 = time.perf_counter() - t
        after = client.run(_cpu_seconds)
    cpu2 = sum(after[w] - before[w] for w in after)
    same = one.identical(two) and one.identical(cold)
    print(f"one process, numba {threads} threads: {t1_threads:.2f} s (for reference)")
    print(f"one process, one thread (warm): {t1:.2f} s wall, {cpu1:.2f} s CPU")
    print(f"2-worker LocalCluster: cluster start {start:.1f} s (not counted); first sweep on fresh workers {t2_cold:.2f} s "
          f"(cold: each worker imports pkpd and loads the numba cache), second {t2:.2f} s (warm)")
    print(f"warm: speed-up {t1 / t2:.2f}, parallel efficiency {t1 / (2 * t2):.0%}; cold: {t1 / (2 * t2_cold):.0%}; "
          f"results identical: {same}")
    print(f"CPU seconds: one process {cpu1:.2f}, the 2 workers together {cpu2:.2f} (warm): the work the cluster adds is "
          f"{cpu2 / cpu1 - 1:+.0%}; wall-time efficiency below CPU efficiency {cpu1 / cpu2:.0%} means the cores were "
          "shared with other work")


def _cpu_seconds() -> float:
    """CPU time of the calling (worker) process, s."""
    return time.process_time()


if __name__ == "__main__":  # worker processes import this file
    main()
