"""Closed-loop benchmark of model-guided titration (pkpd.forecast.ModelGuidedRule) against the label rule.

    python benchmarks/bench_guided.py [--patients 1000] [--decisions 10] [--seed 1] [--posterior laplace]
    python benchmarks/bench_guided.py --agreement 50 --agreement-decisions 8 --patients 0
    python benchmarks/bench_guided.py --patients 200 --hold-margin 0 0.05 0.1

Trial: the phase III ITP population (``pkpd.drugs.hetrombopag.model("itp")``), one arm
starting at 2.5 mg, weekly decisions on days 7, 14, ..., 7 x ``--decisions`` and a last
assessment a week later (duration 7 x (decisions + 1) days).  The same patients (the same
trial seed: the same parameters and visit noise) are run once with the label rule
``pkpd.TitrationRule()`` and once with ``ModelGuidedRule(posterior=...)``.  Prints the
``time_in_range`` endpoint (true count 50-250, fraction of days), P(true count > 400 on any
day), P(observed count > 400 at any visit), dose changes per patient (up, down, interrupt,
resume), the wall time (warm: numba caches loaded by a small run first) and seconds per
patient-visit.  ``--hold-margin`` runs the guided rule once per value of its
``hold_margin`` (a cost of changing the dose), on the same patients.

``--agreement N``: the choice of the Laplace path against the full importance-sampling
forecast (``posterior="importance"``; the rule's default is the Laplace path) at every decision of N patients on the guided rule
(the course follows the importance path's choices; the Laplace path is warm-started from
its own MAPs of the earlier visits), and the agreement rate with a Clopper-Pearson 95 %
interval (:func:`pkpd.intervals.clopper_pearson`).

BLAS is held to one thread (set before numpy loads): the MAP's small linear algebra only
waits on BLAS threads on a shared machine.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

CHANGES = ("up", "down", "interrupt", "resume", "stop")


def endpoints(days):
    import pkpd
    return pkpd.Endpoints(primary_day=None, increased_within_days=days)


def outcomes(result) -> dict:
    """time in range, P(any true daily count > 400), P(any observed visit count > 400), dose changes per patient."""
    est = result.endpoints.set_index("endpoint")["estimate"]
    v = result.visit_data()
    led = result.ledger
    n = v.daily.shape[0]
    return {"time_in_range": float(est["time_in_range"]),
            "p_true_above_400": float((v.daily[:, 1:] > 400).any(axis=1).mean()),
            "p_observed_above_400": float((v.observed[:, 1:] > 400).any(axis=1).mean()),
            "dose_changes_per_patient": float(led["action"].isin(CHANGES).sum() / n)}


def agreement(model, n, decisions, seed, n_laplace):
    """Laplace vs importance choices at every decision of ``n`` guided patients (see the module docstring)."""
    import pkpd
    from pkpd.forecast import ModelGuidedRule
    from pkpd.intervals import clopper_pearson

    records = []
    bar = tqdm(total=n * decisions, desc="agreement: patient-visits", file=sys.stderr)

    class Both(ModelGuidedRule):
        def step(self, state, day, observed):
            y = np.asarray(observed, float)
            t = time.perf_counter()
            fast, map_z = self.with_(posterior="laplace").laplace_doses(state, day, y)
            t_fast = time.perf_counter() - t
            t = time.perf_counter()
            new, codes = super().step(state, day, observed)
            t_full = time.perf_counter() - t
            full = self.doses_mg[new.level]
            for i in range(y.size):
                records.append((day, float(y[i]), float(self.doses_mg[state.level[i]]), float(fast[i]),
                                float(full[i])))
            records.append(("time", t_fast, t_full, y.size, 0.0))
            bar.update(y.size)
            return replace(new, map_z=map_z), codes

    rule = Both(seed=seed, n_laplace=n_laplace, posterior="importance", name="importance path, Laplace recorded")
    trial = pkpd.Trial(arms=(pkpd.Arm("guided", n, 2.5, rule=rule),), duration_days=7 * (decisions + 1), model=model,
                       endpoints=endpoints(7 * (decisions + 1)))
    trial.run(seed=seed, progress=False)
    bar.close()
    times = [r for r in records if r[0] == "time"]
    rows = np.array([r for r in records if r[0] != "time"], float)
    same = rows[:, 3] == rows[:, 4]
    k, m = int(same.sum()), same.size
    lo, hi = (float(x) for x in clopper_pearson(k, m))
    print(f"\nagreement of the Laplace path with the importance path: {k}/{m} patient-visits = {k / m:.3f} "
          f"(95 % CI {lo:.3f}-{hi:.3f}); {n} patients x {decisions} decisions, n_laplace {n_laplace}, seed {seed}")
    t_fast = sum(t[1] for t in times) / m
    t_full = sum(t[2] for t in times) / m
    print(f"  seconds per patient-visit (warm, batch of {n}): Laplace {t_fast:.4f}, importance {t_full:.3f}")
    by_day = {}
    for day, *_, f, g in rows:
        by_day.setdefault(day, []).append(f == g)
    print("  by decision day: " + ", ".join(f"{d:g}: {np.mean(v):.2f}" for d, v in sorted(by_day.items())))
    diff = rows[~same]
    if diff.size:
        step = np.sign(diff[:, 3] - diff[:, 4])
        print(f"  disagreements: Laplace higher {int((step > 0).sum())}, lower {int((step < 0).sum())}; "
              f"first few (day, observed, current, laplace, importance):")
        for r in diff[:8]:
            print(f"    {r[0]:g} d, {r[1]:.0f} x10^9/L, {r[2]:g} -> {r[3]:g} vs {r[4]:g} mg")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=1000, help="patients of the closed-loop trial (0: skip it)")
    ap.add_argument("--decisions", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--posterior", choices=("laplace", "importance"), default="laplace")
    ap.add_argument("--n-laplace", type=int, default=200)
    ap.add_argument("--agreement", type=int, default=0, help="patients of the agreement check (0: skip)")
    ap.add_argument("--agreement-decisions", type=int, default=8)
    ap.add_argument("--hold-margin", type=float, nargs="*", default=[0.0],
                    help="ModelGuidedRule(hold_margin=...) values, one guided run each (e.g. 0 0.05 0.1)")
    args = ap.parse_args(argv)

    import pkpd
    from pkpd.drugs import hetrombopag
    from pkpd.forecast import ModelGuidedRule

    model = hetrombopag.model("itp")
    print(f"cores: {os.cpu_count()} (os.cpu_count; shared machine, one process), BLAS threads "
          f"{os.environ['OPENBLAS_NUM_THREADS']}, seed {args.seed}")
    # warm: load the numba caches before timing
    t = time.perf_counter()
    warm = pkpd.Trial(arms=(pkpd.Arm("warm", 2, 2.5, rule=ModelGuidedRule(posterior="laplace", n_laplace=50)),),
                      duration_days=14, model=model, endpoints=endpoints(14))
    warm.run(seed=0, progress=False)
    print(f"warm-up run (cold caches loaded): {time.perf_counter() - t:.1f} s")

    if args.agreement:
        agreement(model, args.agreement, args.agreement_decisions, args.seed, args.n_laplace)

    if args.patients:
        days = 7 * (args.decisions + 1)
        out = {}
        rules = [("label rule", pkpd.TitrationRule())]
        for margin in args.hold_margin:
            rules.append((f"model-guided ({args.posterior}" + (f", hold {margin:g})" if margin else ")"),
                          ModelGuidedRule(posterior=args.posterior, n_laplace=args.n_laplace, seed=args.seed,
                                          hold_margin=margin)))
        for label, rule in rules:
            trial = pkpd.Trial(arms=(pkpd.Arm(label, args.patients, 2.5, rule=rule),), duration_days=days, model=model,
                               endpoints=endpoints(days))
            t = time.perf_counter()
            res = trial.run(seed=args.seed, progress=True)
            wall = time.perf_counter() - t
            out[label] = {**outcomes(res), "wall_s": wall,
                          "s_per_patient_visit": wall / (args.patients * args.decisions)}
        print(f"\nclosed-loop trial: {args.patients} patients per rule (the same patients and noise, seed {args.seed}), "
              f"start 2.5 mg, {args.decisions} weekly decisions (days 7-{7 * args.decisions}), {days} days, "
              f"warm, 1 process on a {os.cpu_count()}-core shared machine")
        import pandas as pd
        print(pd.DataFrame(out).to_string(float_format=lambda x: f"{x:.4f}"))


if __name__ == "__main__":
    main()
