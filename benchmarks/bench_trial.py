"""Benchmark: the phase III ITP scenario with 10,000 virtual patients per arm.

The design of ``scenarios/itp_phase3.toml`` (start 2.5 mg + titration, start
5 mg + titration, placebo; label-style rule; weekly visits) run for 8 weeks
(to the primary endpoint) with 10,000 patients in each arm, end to end: draw
the population, simulate visit by visit with titration decisions, build the
endpoint table, the dose ledger and the per-visit dose distribution.

Timed twice in one process: the first run includes loading the numba kernels
from their on-disk cache (or compiling them if the cache is cold); the second
is warm.  The 5 s target is checked on import + first run.  The baseline is the way one would write it without pkpd: one patient
at a time, scipy ``solve_ivp`` (LSODA) on the PK + transit-compartment ODEs,
restarted at every daily dose, the same rule applied at each weekly visit.  It
runs on a small subset and is extrapolated linearly to the full population.

    python benchmarks/bench_trial.py [--per-arm 10000] [--weeks 8] [--baseline-patients 12]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

T_IMPORT = time.perf_counter()
import numpy as np  # noqa: E402
from scipy.integrate import solve_ivp  # noqa: E402

import pkpd  # noqa: E402
from pkpd.scenario import load_scenario  # noqa: E402
T_IMPORT = time.perf_counter() - T_IMPORT

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "itp_phase3.toml"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from hardware import kernel_flops, print_fraction  # noqa: E402


def end_to_end(trial, seed):
    """Simulate and build the result tables; returns (result, seconds)."""
    start = time.perf_counter()
    result = trial.run(seed=seed, progress=False)
    result.endpoints, result.ledger, result.doses  # noqa: B018 (built on access)
    return result, time.perf_counter() - start


def ode_patient(p, rule, start_mg, weeks, rng_noise, residual):
    """One patient: LSODA between daily doses, the rule at each weekly visit."""
    n = int(p["n_transit"])
    ktr, kdeg = n / p["mtt"], 1.0 / p["lifespan"]
    kin, k = p["plt0"] * kdeg, p["cl"] / p["v"]

    def rhs(t, y):
        c = y[1] / p["v"] * 1000.0  # ng/mL
        e = p["emax"] * c / (p["ec50"] + c) if c > 0 else 0.0
        d = np.empty_like(y)
        d[0] = -p["ka"] * y[0]
        d[1] = p["ka"] * y[0] - k * y[1]
        d[2] = kin * (1 + e) - ktr * y[2]
        d[3:n + 2] = ktr * (y[2:n + 1] - y[3:n + 2])
        d[n + 2] = ktr * y[n + 1] - kdeg * y[n + 2]
        return d

    y = np.r_[0.0, 0.0, np.full(n, kin / ktr), p["plt0"]]
    state = rule.start(start_mg, 1) if rule is not None else None
    dose = start_mg
    for week in range(1, weeks + 1):
        for day in range(7):
            y[0] += dose
            t0 = ((week - 1) * 7 + day) * 24.0
            y = solve_ivp(rhs, (t0, t0 + 24.0), y, method="LSODA", rtol=1e-8, atol=1e-10).y[:, -1]
        observed = residual.sample(np.array([y[-1]]), rng_noise)
        if rule is not None and week * 7 < weeks * 7:
            state, _ = rule.step(state, week * 7.0, observed)
            dose = rule.ladder_mg[state.level[0]]
    return y[-1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-arm", type=int, default=10_000)
    ap.add_argument("--weeks", type=int, default=8)
    ap.add_argument("--baseline-patients", type=int, default=12)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args(argv)

    scenario = load_scenario(SCENARIO)
    base = scenario.trial
    trial = replace(base, arms=tuple(replace(a, n=args.per_arm) for a in base.arms),
                    duration_days=7.0 * args.weeks, endpoints=replace(base.endpoints, primary_day=min(56.0, 7.0 * args.weeks)))
    n_total = trial.n_per_trial
    print(f"phase III ITP scenario ({SCENARIO.name}): {len(trial.arms)} arms x {args.per_arm:,} patients = {n_total:,} patients, "
          f"{trial.duration_days:g} days ({args.weeks} weeks, weekly visits)")
    print(f"cores: {os.cpu_count()} (numba threads: {__import__('numba').get_num_threads()}); python {sys.version.split()[0]}, "
          f"numpy {np.__version__}, pkpd {pkpd.__version__}")
    print(f"import pkpd: {T_IMPORT:.2f} s")

    result, first = end_to_end(trial, args.seed)
    _, warm = end_to_end(trial, args.seed + 1)
    print(f"first run (incl. numba cache load): {first:.2f} s   "
          f"({n_total * trial.duration_days / first:,.0f} patient-days/s)")
    print(f"warm run:                           {warm:.2f} s   "
          f"({n_total * trial.duration_days / warm:,.0f} patient-days/s)")
    small = replace(trial, arms=tuple(replace(a, n=200) for a in trial.arms))
    flops = kernel_flops(lambda: end_to_end(small, args.seed))
    print_fraction(n_total * trial.duration_days / warm, flops / (small.n_per_trial * trial.duration_days),
                   "patient-day (platelet kernel; warm run)")
    e = result.endpoints
    rates = e[e.endpoint == "responders_primary"].set_index("arm")["estimate"]
    print("week-8 responders: " + ", ".join(f"{a} {100 * r:.1f}%" for a, r in rates.items()))

    # ---------------------------------------------------------- baseline
    m = args.baseline_patients
    rng = np.random.default_rng(args.seed)
    params = trial.model.sample_parameters(m * len(trial.arms), seed=rng)
    start = time.perf_counter()
    for i, arm in enumerate(trial.arms):
        for j in range(m):
            ode_patient(params.iloc[i * m + j], arm.rule, arm.start_mg, args.weeks, rng, trial.model.residual_plt)
    per_patient = (time.perf_counter() - start) / (m * len(trial.arms))
    extrapolated = per_patient * n_total
    print(f"baseline (per-patient solve_ivp LSODA loop, {m * len(trial.arms)} patients timed, "
          f"{per_patient * 1000:.0f} ms/patient): {extrapolated:,.0f} s extrapolated to {n_total:,} patients")
    print(f"speed-up: {extrapolated / warm:,.0f}x warm, {extrapolated / first:,.0f}x first run")
    total = T_IMPORT + first
    ok = total < 5.0
    print(f"target: end to end under 5 s -> {'met' if ok else 'NOT met'} "
          f"(import {T_IMPORT:.2f} s + first run {first:.2f} s = {total:.2f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
