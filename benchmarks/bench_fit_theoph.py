"""Time the Bayesian theophylline fit end to end: imports, build, compile, sampling.

Each measurement runs in a fresh Python process so that imports are counted:

* ``cold``: empty PyTensor/numba caches (a temporary ``base_compiledir`` and
  ``NUMBA_CACHE_DIR``), i.e. the first fit ever on a machine;
* ``warm``: the same caches, filled by the cold run (every later fit of the
  same model structure).

``--density``: ``compiled`` is what ``pkpd.fit`` uses (pkpd's hand-written,
disk-cached numba log density, :mod:`pkpd.popfit.density`); ``pytensor`` is
the baseline, the PyMC model's PyTensor graph compiled by nutpie with numba
(``pkpd.fit(..., density="pytensor")``); ``both`` (default) runs the two, each
cold with its own empty caches, and prints the ratio.

Prints absolute times (s), cores, chains x draws, divergences, max R-hat, the
smallest bulk ESS of the population parameters and ESS per second of sampling.
The acceptance target is a whole fit, compilation included, under
20 s on the 2-core machine with 4 chains x 1000 draws after 1000 tuning.

    python benchmarks/bench_fit_theoph.py [--mode both|cold|warm] [--density both|compiled|pytensor]
                                          [--draws 1000] [--tune 1000] [--chains 4]

``--mode warm`` alone uses the user's normal caches.
"""

from __future__ import annotations

import argparse
import json
import time

from fit_child import cache_modes, densities, machine_line, print_ratios, run_child

T_START = time.perf_counter()


def child(args) -> None:
    """One fit; prints a JSON line with the measurements."""
    import warnings

    t0 = time.perf_counter()
    import numpy as np

    import pkpd
    from pkpd.nonmem import load_theophylline
    from pkpd.popfit import build_model, diagnose, theophylline_model

    import pymc  # noqa: F401  (imported by the fit anyway; counted here as import time)
    import nutpie  # noqa: F401

    t_import = time.perf_counter() - t0
    data = load_theophylline()
    built = build_model(theophylline_model(), data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = pkpd.fit(built, None, draws=args.draws, tune=args.tune, chains=args.chains, seed=args.seed,
                         progress=False, verbose=False, density=args.density)
    names = built.free_param_names
    diag = diagnose(idata, var_names=names)
    a = idata.attrs
    out = {
        "import_s": t_import, "build_s": a["build_s"], "compile_s": a["compile_s"], "sampling_s": a["sampling_s"],
        "postprocess_s": a["postprocess_s"], "fit_total_s": a["total_s"],
        "process_wall_s": time.perf_counter() - T_START,
        "cores": a["cores"], "chains": a["chains"], "draws": a["draws"], "tune": a["tune"],
        "divergences": diag.n_divergent, "max_rhat": diag.max_rhat, "min_ess_bulk": diag.min_ess_bulk,
        "median_ess_bulk": float(np.median(diag.summary["ess_bulk"])),
        "convergence_warnings": sum("CONVERGENCE" in str(w.message) for w in caught),
        "n_steps_mean": float(idata.sample_stats["n_steps"].mean()),
    }
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("both", "cold", "warm"), default="both")
    parser.add_argument("--density", choices=("both", "compiled", "pytensor"), default="both")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--seed", type=int, default=20240501)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    print(machine_line())
    results = {}
    for density in densities(args.density):
        child_args = ["--draws", str(args.draws), "--tune", str(args.tune), "--chains", str(args.chains),
                      "--seed", str(args.seed), "--density", density]
        for mode, env in cache_modes(args.mode):
            label = f"{mode} {density}"
            results[label] = run_child(__file__, label, child_args, env)[0]

    rows = [
        ("imports (pkpd, pymc, nutpie)", "import_s", "s"), ("build PyMC model", "build_s", "s"),
        ("compile / load the log density", "compile_s", "s"), ("sampling", "sampling_s", "s"),
        ("post-processing (IPRED, PP, loglik)", "postprocess_s", "s"), ("pkpd.fit total", "fit_total_s", "s"),
        ("process wall time incl. imports", "process_wall_s", "s"),
    ]
    print()
    header = f"{'':40s}" + "".join(f"{m:>17s}" for m in results)
    print(header)
    for label, key, unit in rows:
        print(f"{label:40s}" + "".join(f"{r[key]:>16.1f}{unit}" for r in results.values()))
    for label, key, fmt in (("divergences", "divergences", "{:>17d}"), ("max R-hat", "max_rhat", "{:>17.4f}"),
                            ("min bulk ESS (population params)", "min_ess_bulk", "{:>17.0f}"),
                            ("mean leapfrog steps per draw", "n_steps_mean", "{:>17.1f}")):
        print(f"{label:40s}" + "".join(fmt.format(r[key]) for r in results.values()))
    print(f"{'min bulk ESS / sampling s':40s}" + "".join(f"{r['min_ess_bulk'] / r['sampling_s']:>17.0f}"
                                                         for r in results.values()))
    r0 = next(iter(results.values()))
    print(f"\n{r0['chains']} chains x {r0['draws']} draws after {r0['tune']} tuning on {r0['cores']} cores "
          f"({r0['chains'] * r0['draws']} draws kept)")
    for mode, r in results.items():
        verdict = "meets" if r["fit_total_s"] < 20 and r["divergences"] == 0 and r["max_rhat"] <= 1.01 else "MISSES"
        print(f"[{mode}] {verdict} the target (fit incl. compilation < 20 s, no divergences, R-hat <= 1.01): "
              f"fit {r['fit_total_s']:.1f} s, {r['process_wall_s']:.1f} s with imports")
    print_ratios(results)


if __name__ == "__main__":
    main()
