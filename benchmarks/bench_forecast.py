"""Validation benchmark of pkpd.forecast on simulated ITP patients.

    python benchmarks/bench_forecast.py [--patients 500] [--seed 1] [--restarts 20] [--truth linear|saturable]

Patients: one arm of a pkpd.Trial (hetrombopag ITP model, linear PK) starting at
2.5 mg on the label-style titration rule, 8 weeks, weekly counts; read back from
its NONMEM records.  For each patient one visit (week 2-8, seeded) is forecast
from the records before it, for the dose the trial gave (leave-future-out).
Prints: the coverage of the 90 % predictive interval (target 85-95 %), RMSE of
the forecast median vs the population-only prediction, timings (cold = first call
in a fresh process, warm = later calls) and the agreement of the MAP with a
reference optimiser (scipy L-BFGS-B, exact gradient, from ``--restarts`` random
prior draws) to 1e-3 relative in the objective, for both responder statuses;
then a trial of the label rule against the model-guided rule (``--guided`` patients per arm).

``--truth saturable`` simulates the patients from another model variant than the one
forecasting: the calibrated dose-dependent ITP model (``hetrombopag.model("itp",
pk="saturable")``: saturable PK, Hill coefficient ~2, disease fluctuation), while the
forecasts keep the default linear-PK model, so that the coverage shows what a
misspecified model does (``--restarts 0`` skips the MAP check).

``--population-draws M`` runs, instead, the leave-future-out check with population
uncertainty: each patient's typical values are one of the 1000 posterior draws shipped
with pkpd (``pkpd.datasets.posterior_typical_draws()``, a fit of healthy subjects, carried
to ITP as notebook 04 does: ka, cl, v, emax, mtt as drawn, EC50 scaled by the ITP / healthy
default ratio; the disease's parameters the ITP model's), drawn at random per patient
(a pkpd.Trial replicate of one patient per draw); each forecast uses M of the draws
(``forecast(population=..., n_population_draws=M)``) and is compared with the forecast from the
model's fixed typical values and with the population-only prediction over the draws.

    python benchmarks/bench_forecast.py --population-draws 30 --patients 150

BLAS is held to one thread (OPENBLAS_NUM_THREADS=1, set before numpy loads):
the reference L-BFGS-B otherwise waits on BLAS threads on a shared machine.
"""

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from scipy import optimize  # noqa: E402
from tqdm import tqdm  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--restarts", type=int, default=20, help="random starts of the reference MAP (0: skip that check)")
    ap.add_argument("--truth", choices=("linear", "saturable"), default="linear",
                    help="the model the patients are simulated from (forecasts always use the linear default)")
    ap.add_argument("--timing-patients", type=int, default=50)
    ap.add_argument("--guided", type=int, default=40, help="patients per arm of the guided vs label trial (0: skip)")
    ap.add_argument("--population-draws", type=int, default=0,
                    help="run only the check with population uncertainty, M population draws per forecast (0: skip)")
    args = ap.parse_args(argv)
    if args.population_draws:
        return population_check(args)

    t0 = time.perf_counter()
    import pkpd
    from pkpd.drugs import hetrombopag
    from pkpd.forecast import ForecastWarning, ModelGuidedRule, fit_individual, forecast
    from pkpd.forecast.likelihood import PatientDensity
    from pkpd.forecast.posterior import find_map, fit_status
    from pkpd.forecast.validation import leave_future_out, summarise, trial_histories
    import_s = time.perf_counter() - t0

    print(f"cores: {os.cpu_count()} (os.cpu_count; shared machine), BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}, "
          f"patients {args.patients}, seed {args.seed}")
    print(f"import pkpd + pkpd.forecast (cold, numba cache warm on disk): {import_s:.2f} s")
    model = hetrombopag.model("itp")
    truth = model if args.truth == "linear" else hetrombopag.model("itp", pk="saturable")
    trial = pkpd.Trial(arms=(pkpd.Arm("2.5 mg start, titrated", args.patients, 2.5, rule=pkpd.TitrationRule()),),
                       duration_days=56, model=truth)
    result = trial.run(seed=args.seed, progress=False)
    histories = trial_histories(result)
    ids = list(histories)
    print(f"simulated {len(ids)} patients x 56 days, 9 counts each (day 0-56), from the {args.truth}-PK model; "
          "forecasts by the linear-PK default")

    # ---------------------------------------------------------------- timing
    h8 = {pid: histories[pid].until(49 * 24.0) for pid in ids[: args.timing_patients]}  # counts on days 0-49: 8
    first = next(iter(h8.values()))
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        forecast(first, model, seed=0)
    print(f"first forecast in this process (cold: numba cache load, ArviZ import): {time.perf_counter() - t:.2f} s")
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        for pid, h in h8.items():
            d = PatientDensity(model, h, True)
            t = time.perf_counter()
            find_map(d, d.prior.mean[None, :])
            one = time.perf_counter() - t
            t = time.perf_counter()
            fit_status(d, 1.0, np.random.default_rng(pid), 3)
            status = time.perf_counter() - t
            t = time.perf_counter()
            post = fit_individual(h, model, seed=pid)
            full = time.perf_counter() - t
            t = time.perf_counter()
            forecast(h, model, seed=pid)
            fc = time.perf_counter() - t
            rows.append((one, status, full, fc, post.pareto_k))
    tm = pd.DataFrame(rows, columns=["map_1_start", "map_3_starts_laplace", "posterior", "forecast", "k"])
    print(f"\nwarm timings over {len(tm)} patients with 8 counts (median / 90th percentile, ms):")
    for col, what in (("map_1_start", "MAP, responder, 1 start (exact gradient, TNC)"),
                      ("map_3_starts_laplace", "MAP, 3 starts + Laplace Hessian (one status)"),
                      ("posterior", "full individual posterior (2 statuses, 2000 draws, PSIS)"),
                      ("forecast", "full forecast (posterior + 5 candidates x 1000 draws)")):
        print(f"  {what:60s} {1e3 * tm[col].median():8.1f} / {1e3 * tm[col].quantile(0.9):8.1f}")

    # ---------------------------------------------------------------- leave-future-out
    rng = np.random.default_rng(args.seed)
    targets = 24.0 * 7 * rng.integers(2, 9, size=len(ids))
    out = []
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        for i, pid in enumerate(tqdm(ids, desc="leave-future-out", file=sys.stderr)):
            out.append(leave_future_out(histories[pid], model, targets[i], seed=(args.seed, i)))
    lfo = pd.DataFrame(out)
    s = summarise(lfo)
    print(f"\nleave-future-out over {s['patients']} patients ({time.perf_counter() - t:.0f} s, warm):")
    print(f"  coverage of the 90 % predictive interval: {s['coverage_90']:.3f} (target 0.85-0.95); "
          f"population-only interval: {s['pop_coverage_90']:.3f}")
    print(f"  RMSE of log counts: forecast {s['rmse_log_forecast']:.3f}, population-only {s['rmse_log_population']:.3f}")
    print(f"  RMSE of counts (10^9/L): forecast {s['rmse_forecast']:.1f}, population-only {s['rmse_population']:.1f}")
    print(f"  Pareto k > 0.7: {s['pareto_k_above_0.7']:.3f} of patients; warnings in {(lfo['warnings'] > 0).mean():.3f}")
    by = lfo.groupby("counts_known").agg(patients=("covered", "size"), coverage=("covered", "mean"),
                                         width_log=("p95", "size"))
    by["width_log"] = lfo.groupby("counts_known").apply(lambda g: np.log(g["p95"] / g["p5"]).median(),
                                                        include_groups=False)
    print("  by counts known before the forecast (median log width of the 90 % interval):")
    print(by.to_string(float_format=lambda x: f"{x:.3f}"))

    # ---------------------------------------------------------------- MAP agreement
    if not args.restarts:
        ids = []
    agree, worse, better = 0, 0, 0
    rng = np.random.default_rng(args.seed + 1)
    t = time.perf_counter()
    for pid in tqdm(ids, desc="MAP vs restarts", file=sys.stderr):
        for responder in (True, False):
            d = PatientDensity(model, histories[pid], responder)
            ours = fit_status(d, 0.5, np.random.default_rng(pid), 3).objective
            bounds = list(zip(d.lower, d.upper))
            starts = rng.multivariate_normal(d.prior.mean, d.prior.cov, size=args.restarts)
            ref = min(optimize.minimize(d, np.clip(x0, d.lower, d.upper), jac=True, method="L-BFGS-B", bounds=bounds,
                                        options={"ftol": 1e-13, "gtol": 1e-9, "maxiter": 2000}).fun for x0 in starts)
            rel = (ours - ref) / abs(ref)
            agree += abs(rel) <= 1e-3
            worse += rel > 1e-3
            better += rel < -1e-3
    n = 2 * len(ids)
    if n:
        print(f"\nMAP agreement with L-BFGS-B from {args.restarts} random starts, {n} fits ({len(ids)} patients x 2 "
              f"statuses, {time.perf_counter() - t:.0f} s): within 1e-3 relative {agree / n:.4f}; ours worse {worse}, "
              f"ours better {better}")

    # ---------------------------------------------------------------- model-guided titration as a trial arm
    if args.guided:
        arms = (pkpd.Arm("label rule", args.guided, 2.5, rule=pkpd.TitrationRule()),
                pkpd.Arm("model-guided", args.guided, 2.5, rule=ModelGuidedRule(seed=args.seed)))
        t = time.perf_counter()
        res = pkpd.Trial(arms=arms, duration_days=56, model=model).run(seed=args.seed + 2, progress=False)
        keep = ["responders_primary", "responded_once", "platelet_increased", "time_in_range", "time_above",
                "time_below"]
        table = res.endpoints.set_index(["endpoint", "arm"])["estimate"].unstack("arm").loc[keep]
        print(f"\nmodel-guided titration vs the label rule, {args.guided} patients per arm, 56 days, one trial, "
              f"common seed ({time.perf_counter() - t:.0f} s):")
        print(table.to_string(float_format=lambda x: f"{x:.3f}"))


def itp_population(draws, healthy, itp_ec50):
    """Posterior draws of a healthy-subject fit carried to ITP (notebook 04): the drug's parameters
    as drawn, EC50 relative to the healthy default, the disease's left to the ITP model."""
    return draws[["ka", "cl", "v", "emax", "mtt"]].assign(ec50=itp_ec50 * draws["ec50"] / healthy.typical["ec50"])


def population_check(args):
    """Leave-future-out with population uncertainty (see the module docstring)."""
    import pkpd
    import pkpd.datasets
    from pkpd.drugs import hetrombopag
    from pkpd.forecast import ForecastWarning
    from pkpd.forecast.validation import leave_future_out, summarise, trial_histories

    model = hetrombopag.model("itp")
    draws = itp_population(pkpd.datasets.posterior_typical_draws(), hetrombopag.model("healthy"), hetrombopag.ITP_EC50)
    rng = np.random.default_rng(args.seed)
    picked = draws.iloc[rng.integers(len(draws), size=args.patients)].reset_index(drop=True)
    trial = pkpd.Trial(arms=(pkpd.Arm("2.5 mg start, titrated", 1, 2.5, rule=pkpd.TitrationRule()),),
                       duration_days=56, model=model)
    result = trial.run(seed=args.seed, replicates=args.patients, typical_draws=picked, progress=False)
    histories = trial_histories(result)
    ids = list(histories)
    print(f"cores: {os.cpu_count()} (shared machine), BLAS threads {os.environ['OPENBLAS_NUM_THREADS']}; "
          f"{len(ids)} patients x 56 days, 9 counts each, each from its own posterior draw of the typical values "
          f"(of {len(draws)}: {', '.join(draws.columns)}); forecasts with {args.population_draws} population draws each")
    print("posterior draws used (median and 5-95 %):")
    print(draws.quantile([0.05, 0.5, 0.95]).T.assign(itp_model=[model.typical[c] for c in draws.columns])
          .to_string(float_format=lambda x: f"{x:.3g}"))
    targets = 24.0 * 7 * rng.integers(2, 9, size=len(ids))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ForecastWarning)
        leave_future_out(histories[ids[0]], model, targets[0], seed=0, population=draws)  # warm-up (numba cache, ArviZ)
        out = {}
        for label, options in (("population uncertainty", dict(population=draws, n_population_draws=args.population_draws)),
                               ("fixed typical values", {})):
            rows = []
            t = time.perf_counter()
            for i, pid in enumerate(tqdm(ids, desc=label, file=sys.stderr)):
                rows.append(leave_future_out(histories[pid], model, targets[i], seed=(args.seed, i),
                                             n_population=1000, **options))
            out[label] = (pd.DataFrame(rows), time.perf_counter() - t)
    # population-only: over the draws in the first run, from the model's fixed values in the second
    for label, (lfo, seconds) in out.items():
        s = summarise(lfo)
        print(f"\nleave-future-out, forecasts with {label} ({seconds:.0f} s, {seconds / len(lfo):.2f} s per forecast, "
              f"posterior {lfo['seconds'].median():.2f} s median):")
        print(f"  coverage of the 90 % predictive interval: {s['coverage_90']:.3f} (target 0.85-0.95); "
              f"population-only interval: {s['pop_coverage_90']:.3f}")
        print(f"  RMSE of log counts: forecast {s['rmse_log_forecast']:.3f}, population-only {s['rmse_log_population']:.3f}")
        print(f"  RMSE of counts (10^9/L): forecast {s['rmse_forecast']:.1f}, population-only {s['rmse_population']:.1f}")
        print(f"  Pareto k > 0.7: {s['pareto_k_above_0.7']:.3f} of patients; warnings in {(lfo['warnings'] > 0).mean():.3f}")
        if lfo["population_ess"].notna().any():
            print(f"  effective population draws: median {lfo['population_ess'].median():.1f} of {args.population_draws} "
                  f"(5 % {lfo['population_ess'].quantile(0.05):.1f})")
        by = lfo.groupby("counts_known").agg(patients=("covered", "size"), coverage=("covered", "mean"))
        by["width_log"] = lfo.groupby("counts_known").apply(lambda g: np.log(g["p95"] / g["p5"]).median(),
                                                            include_groups=False)
        print("  by counts known before the forecast (median log width of the 90 % interval):")
        print(by.to_string(float_format=lambda x: f"{x:.3f}"))


if __name__ == "__main__":
    main()
