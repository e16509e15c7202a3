"""Time the joint hetrombopag PK + platelet fit: compile, sampling, ESS per second.

Study (simulated with the defaults of ``pkpd.drugs.hetrombopag.model("healthy")``
by the independent simulator, read back through ``pkpd.read_nonmem``):
40 healthy subjects in four groups of 10 (2.5 / 5 / 7.5 / 10 mg once daily for
28 days), 8 concentrations in the first 48 h (0.5, 1, 2, 4, 8, 12, 24, 48 h)
and 10 platelet counts over 8 weeks (days 0, 3, 7, 10, 14, 21, 28, 35, 42, 56)
per subject.  Fitted with nutpie (numba), 4 chains x 1000 draws after 500
tuning (the target fixes the draws, not the warm-up; nutpie 0.16's own default is 400)
on 2 cores, two models (``--model``):

* ``full``: ``pkpd.popfit.hetrombopag_pkpd_model()`` unchanged, IIV on ka, cl,
  v, emax, ec50 and plt0 as simulated.  With concentrations around EC50 the
  data barely separate the IIV of Emax (15% CV) from that of EC50 (70% CV):
  both move log(Emax/EC50), so omega_emax and omega_ec50 mix slowly.
* ``no-emax-iiv``: the same without IIV on Emax
  (``.with_param("emax", omega_scale=None)``), the usual choice when a design
  cannot support both (its 15% is absorbed by omega_ec50).

Each fit runs in a fresh Python process:

* ``warm`` (default): the user's PyTensor / numba caches.  The compiled
  likelihood is keyed by the data (the observations are constants of the
  graph), so the first fit of a new data set compiles it anew even here;
  a repeat of the same benchmark hits the cache.
* ``cold``: empty temporary caches (the first fit ever on a machine).

``--density``: ``compiled`` (default) is what ``pkpd.fit`` uses, pkpd's
hand-written, disk-cached numba log density (:mod:`pkpd.popfit.density`);
``pytensor`` is the baseline, the PyMC model's PyTensor graph compiled by
nutpie with numba (``pkpd.fit(..., density="pytensor")``); ``both`` runs the
two and prints the ratio (the baseline costs ~2 min per cold fit).

Prints compile time, sampling time, total, divergences, max R-hat, min bulk
ESS of the population parameters and of the etas, ESS per second of
sampling, leapfrog steps per draw and the cost of one log-density gradient
(sampling time x cores / leapfrog steps).  ``--profile`` (instead of the fits)
times one log-density gradient of the joint model with the platelet likelihood
as the compiled Op against the baseline, the same recurrence as a tensor
expression with PyTensor's automatic gradient, and of the PK part alone.

Target: under 120 s in total with min bulk ESS >= 400 and no divergences.

``--saturable-cost`` (instead of the fits) times what integrating the
dose-dependent PK would add to one gradient of this design, against the
gradient budget of the target.

    python benchmarks/bench_fit_pkpd.py [--mode warm|cold|both] [--model both|full|no-emax-iiv]
                                        [--density compiled|pytensor|both] [--profile] [--saturable-cost]
                                        [--draws 1000] [--tune 500] [--chains 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from fit_child import cache_modes, densities, machine_line, print_ratios, run_child

T_START = time.perf_counter()

DOSES_MG = (2.5, 5.0, 7.5, 10.0)
PER_GROUP = 10
DOSING_DAYS = 28
PK_TIMES_H = (0.5, 1, 2, 4, 8, 12, 24, 48)
PLT_DAYS = (0, 3, 7, 10, 14, 21, 28, 35, 42, 56)


def study(seed: int):
    """(dataset, truth table) of the benchmark study."""
    from pkpd import Regimen, read_nonmem
    from pkpd.drugs import hetrombopag
    from pkpd.popfit.simulate_pkpd import simulate_pkpd_records

    groups = [(Regimen.daily(d, DOSING_DAYS), PER_GROUP) for d in DOSES_MG]
    records, truth = simulate_pkpd_records(hetrombopag.model("healthy", pk="linear"), groups, PK_TIMES_H,
                                           [24.0 * d for d in PLT_DAYS], seed=seed)
    return read_nonmem(records, dv_unit="ng/mL"), truth


MODELS = ("full", "no-emax-iiv")


def fitted_model(name: str):
    from pkpd.popfit import hetrombopag_pkpd_model

    model = hetrombopag_pkpd_model()
    return model if name == "full" else model.with_param("emax", omega_scale=None)


def child(args) -> None:
    """One fit; prints a JSON line with the measurements."""
    import warnings

    import pkpd
    from pkpd.popfit import build_model, diagnose

    data, _ = study(args.seed)
    t0 = time.perf_counter()
    built = build_model(fitted_model(args.model), data)
    t_build = time.perf_counter() - t0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = pkpd.fit(built, None, draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed,
                         progress=False, verbose=False, density=args.density, mass_matrix=args.mass_matrix)
    diag = diagnose(idata, var_names=built.free_param_names)
    a = idata.attrs
    steps = float(idata.sample_stats["n_steps"].sum())
    # post-tuning steps only are in sample_stats; the tuning phase costs about as much per draw
    per_grad_ms = a["sampling_s"] * a["cores"] / (steps * (1 + args.tune / args.draws)) * 1e3
    out = {
        "build_s": t_build, "compile_s": a["compile_s"], "sampling_s": a["sampling_s"],
        "postprocess_s": a["postprocess_s"], "fit_total_s": a["total_s"] + t_build,
        "process_wall_s": time.perf_counter() - T_START,
        "cores": a["cores"], "chains": a["chains"], "draws": a["draws"], "tune": a["tune"],
        "divergences": diag.n_divergent, "max_rhat": diag.max_rhat,
        "min_ess_bulk_pop": float(diag.summary["ess_bulk"].min()),
        "worst_pop_param": str(diag.summary["ess_bulk"].idxmin()),
        "min_ess_bulk_eta": float(diag.eta_summary["min_ess_bulk"]),
        "n_steps_mean": float(idata.sample_stats["n_steps"].mean()),
        "max_depth": int(idata.sample_stats["depth"].max()),
        "grad_ms": per_grad_ms,
        "convergence_warnings": sum("CONVERGENCE" in str(w.message) for w in caught),
    }
    print(diag, file=sys.stderr)
    print("RESULT " + json.dumps(out), flush=True)


def profile(args) -> None:
    """Cost of one log-density gradient (numba backend): the joint model with the
    platelet likelihood as the compiled Op (what pkpd.fit uses), the same model with
    the baseline tensor expression and PyTensor's automatic gradient
    (pkpd.popfit.platelets.predict_platelets), and the PK part alone."""
    import contextlib
    import dataclasses
    from unittest import mock

    import pytensor
    import pytensor.tensor as pt

    from pkpd.popfit import build_model, pkpd_model
    from pkpd.popfit.platelets import predict_platelets

    def tensor_expression(*args, **kwargs):
        return predict_platelets(pt, *args, **kwargs)

    data, _ = study(args.seed)
    joint = fitted_model("full")
    cases = {
        "joint, compiled Op": (joint, contextlib.nullcontext()),
        "joint, tensor expression": (joint, mock.patch.object(pkpd_model, "predict_platelets_tensor",
                                                              tensor_expression)),
        "PK part only": (dataclasses.replace(joint, endpoints=()), contextlib.nullcontext()),
    }
    cost = {}
    for label, (spec, patch) in cases.items():
        with patch:
            m = build_model(spec, data).pymc_model
        inputs = m.value_vars
        logp = m.logp()
        outputs = [logp, *pt.grad(logp, inputs)]
        point = m.initial_point()
        values = [point[v.name] for v in inputs]
        t0 = time.perf_counter()
        # as pkpd.fit compiles (sampling._compile_nutpie): without fast-math, which makes draws depend on the cache
        with pytensor.config.change_flags(numba__fastmath=False):
            f = pytensor.function(inputs, outputs, mode="NUMBA")
            f(*values)
        t_compile = time.perf_counter() - t0
        n = 300
        t0 = time.perf_counter()
        for _ in range(n):
            f(*values)
        cost[label] = (time.perf_counter() - t0) / n * 1e3
        print(f"[profile] {label:26s}: log density + gradient {cost[label]:.3f} ms "
              f"(numba; compiled in {t_compile:.0f} s)", flush=True)
    pk = cost["PK part only"]
    op, base = cost["joint, compiled Op"] - pk, cost["joint, tensor expression"] - pk
    print(f"[profile] platelet part: compiled Op {op:.3f} ms vs tensor expression {base:.3f} ms: "
          f"{base / op:.1f}x faster ({len(DOSES_MG) * PER_GROUP} subjects x {PLT_DAYS[-1]} days, 1 core)")


def saturable_cost(args) -> None:
    """What one log-density gradient of this design would cost in integrating the
    dose-dependent PK (pkpd.saturable.OneCompartmentSaturable, no closed form), set
    against the gradient budget of the 120 s target.

    The platelet likelihood needs the concentration at every input node of its grid
    (8 per 24 h step, 56 steps) and, for NUTS, its derivatives in the 5 PK
    parameters; the 8 PK samples need the same.  Timed per subject, one core, for
    the 40 subjects of the study (healthy saturable model, its IIV, seed --seed):
    (a) the fitting kernel (Dormand-Prince with forward sensitivities,
    ``pkpd.saturable.conc_sensitivities``); (b) concentrations only, same kernel.
    """
    import numpy as np

    from pkpd.drugs import hetrombopag
    from pkpd.pd import gauss_legendre
    from pkpd.popfit.platelets import NODES
    from pkpd.saturable import conc_sensitivities

    n = len(DOSES_MG) * PER_GROUP
    model = hetrombopag.model("healthy", pk="saturable")
    params = model.sample_parameters(n, seed=args.seed)
    doses = np.repeat(DOSES_MG, PER_GROUP)
    z, _ = gauss_legendre(NODES)
    days = PLT_DAYS[-1]
    times = np.sort(np.concatenate([(24.0 * np.arange(days)[:, None] + 24.0 * z[None, :]).ravel(), PK_TIMES_H]))
    dose_times = 24.0 * np.arange(DOSING_DAYS)
    conc = np.empty(times.size)
    cost = {}
    for label, n_sens in (("(a) fitting kernel, conc + 5 sensitivities", 5), ("(b) same kernel, conc only", 0)):
        sens = np.empty((times.size, n_sens))
        row = lambda i: [params[k].iloc[i] for k in ("ka", "cl", "v", "vmax", "km")]  # noqa: E731
        conc_sensitivities(*row(0), dose_times, np.full(DOSING_DAYS, doses[0]), times, conc, sens)  # compile/load
        t0 = time.perf_counter()
        for i in range(n):
            conc_sensitivities(*row(i), dose_times, np.full(DOSING_DAYS, doses[i]), times, conc, sens)
        cost[label] = (time.perf_counter() - t0) / n
    gradients = args.chains * (args.draws + args.tune) * args.leapfrog / 2  # per core, 2 cores
    budget_ms = (120.0 - args.compile_s) / gradients * 1e3
    print(f"[saturable] {n} subjects, {times.size} concentration times each ({days} days x {NODES} nodes + "
          f"{len(PK_TIMES_H)} samples), {DOSING_DAYS} daily doses; one core:")
    for label, c in cost.items():
        print(f"[saturable]   {label:44s}: {c * 1e6:8.0f} us per subject, {c * n * 1e3:7.2f} ms per gradient")
    print(f"[saturable] budget of the 120 s target: ({120:g} s - {args.compile_s:g} s compile) / "
          f"({args.chains} x {args.draws + args.tune} x {args.leapfrog:g} leapfrog steps / 2 cores) = "
          f"{budget_ms:.2f} ms per gradient for everything (the linear model uses ~0.33 ms of it)")
    worst = cost["(a) fitting kernel, conc + 5 sensitivities"] * n
    print(f"[saturable] (a) alone is {worst * 1e3 / budget_ms:.0f}x the budget: the fit would sample for "
          f"~{worst * gradients / 3600:.1f} h on 2 cores")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("both", "cold", "warm"), default="warm")
    parser.add_argument("--model", choices=("both",) + MODELS, default="both")
    parser.add_argument("--density", choices=("both", "compiled", "pytensor"), default="compiled")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20240503)
    parser.add_argument("--mass-matrix", choices=("diag", "low_rank", "both"), default="diag",
                        help="nutpie's mass-matrix adaptation (pkpd.fit(mass_matrix=...)); both: each in turn")
    parser.add_argument("--profile", action="store_true", help="only time the log-density gradient (Op vs baseline)")
    parser.add_argument("--saturable-cost", action="store_true",
                        help="only time what the dose-dependent PK would add to one gradient, against the budget")
    parser.add_argument("--leapfrog", type=float, default=57.0,
                        help="leapfrog steps per draw for --saturable-cost (the linear fit's 52-62)")
    parser.add_argument("--compile-s", type=float, default=25.0,
                        help="compile and import time for --saturable-cost (the linear fit's cold ~25 s)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.profile:
        profile(args)
        return
    if args.saturable_cost:
        saturable_cost(args)
        return

    print(machine_line())
    print(f"study: {len(DOSES_MG) * PER_GROUP} subjects ({', '.join(f'{d:g}' for d in DOSES_MG)} mg daily x "
          f"{DOSING_DAYS} d), {len(PK_TIMES_H)} concentrations in 48 h and {len(PLT_DAYS)} platelet counts over "
          f"{PLT_DAYS[-1] // 7} weeks each")
    results = {}
    models = MODELS if args.model == "both" else (args.model,)
    for model in models:
        for density, mass in ((d, m) for d in densities(args.density)
                              for m in (("diag", "low_rank") if args.mass_matrix == "both" else (args.mass_matrix,))):
            child_args = ["--draws", str(args.draws), "--tune", str(args.tune), "--chains", str(args.chains),
                          "--seed", str(args.seed), "--model", model, "--density", density, "--mass-matrix", mass]
            for mode, env in cache_modes(args.mode):
                label = f"{mode} {model}{'' if mass == 'diag' else ' low-rank'} {density}"
                results[label], stderr = run_child(__file__, label, child_args, env)
                print("\n".join(l for l in stderr.splitlines() if "BLAS" not in l and "pytensor" not in l.lower()),
                      flush=True)  # the child's diagnostics table

    rows = [("build PyMC model", "build_s", "s"), ("compile / load the log density", "compile_s", "s"),
            ("sampling", "sampling_s", "s"), ("post-processing (IPRED/PRED, log-lik.)", "postprocess_s", "s"),
            ("total (build + pkpd.fit)", "fit_total_s", "s"), ("process wall time incl. imports", "process_wall_s", "s")]
    print()
    print(f"{'':44s}" + "".join(f"{m:>30s}" for m in results))
    for label, key, unit in rows:
        print(f"{label:44s}" + "".join(f"{r[key]:>29.1f}{unit}" for r in results.values()))
    for label, key, fmt in (("divergences", "divergences", "{:>30d}"), ("max R-hat", "max_rhat", "{:>30.4f}"),
                            ("min bulk ESS (population params)", "min_ess_bulk_pop", "{:>30.0f}"),
                            ("  lowest", "worst_pop_param", "{:>30s}"),
                            ("min bulk ESS (etas)", "min_ess_bulk_eta", "{:>30.0f}"),
                            ("mean leapfrog steps per draw", "n_steps_mean", "{:>30.1f}"),
                            ("max tree depth", "max_depth", "{:>30d}"),
                            ("ms per log-density gradient", "grad_ms", "{:>30.2f}")):
        print(f"{label:44s}" + "".join(fmt.format(r[key]) for r in results.values()))
    print(f"{'min bulk ESS (population) / sampling s':44s}" + "".join(
        f"{r['min_ess_bulk_pop'] / r['sampling_s']:>30.2f}" for r in results.values()))
    r0 = next(iter(results.values()))
    print(f"\n{r0['chains']} chains x {r0['draws']} draws after {r0['tune']} tuning on {r0['cores']} cores")
    for mode, r in results.items():
        ok = r["fit_total_s"] < 120 and r["divergences"] == 0 and min(r["min_ess_bulk_pop"], r["min_ess_bulk_eta"]) >= 400
        print(f"[{mode}] {'meets' if ok else 'MISSES'} the target (< 120 s total, min bulk ESS >= 400, no divergences): "
              f"total {r['fit_total_s']:.0f} s, min bulk ESS {min(r['min_ess_bulk_pop'], r['min_ess_bulk_eta']):.0f}, "
              f"{r['divergences']} divergences")
    print_ratios(results)


if __name__ == "__main__":
    main()
