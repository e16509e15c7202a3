"""Frequentist coverage of pkpd.fit's 90% credible intervals over simulated studies.

``--model pk`` (default), each study: 24 subjects, 100 mg single oral dose, 9 samples (0.5-36 h), weights
uniform 50-100 kg, truth ka 1 /h, CL 5 L/h, V 50 L (omega 0.4 / 0.3 / 0.2),
CL ~ WT^0.75, V ~ WT^1, proportional 15% + additive 0.02 mg/L error, values
below 0.1 mg/L reported BLQ (M3).  Data are simulated with pkpd.pk (not the
fitting kernels), each study with its own seed; fitted with 4 chains x 1000
draws after 700 tuning.  For a calibrated method each interval covers its true
value with probability 0.9, so with 20 studies expect 18/20 (binomial 95%
range 15-20).

``--model pkpd``, each study: 24 healthy subjects in three groups of 8 (2.5 /
5 / 7.5 mg once daily for 28 days), 8 concentrations in the first 48 h and 10
platelet counts over 8 weeks, simulated from ``pkpd.drugs.hetrombopag.model("healthy")``
by the independent simulator (closed-form PK, exact-step transit PD, log-normal
platelet noise) and read back through ``pkpd.read_nonmem``; fitted with
``pkpd.popfit.hetrombopag_pkpd_model()`` (IIV as simulated) whose prior medians
are moved off the truth (x0.7 to x1.5, see PKPD_PRIOR_SHIFT) so that the
intervals must come from the data; 4 chains x 500 draws after 500 tuning.
Coverage of the eight typical values (ka, cl, v, emax, ec50, mtt, lifespan, plt0).

``--model saturable``, each study: the one-compartment model with saturable
(Michaelis-Menten) elimination, pkpd.saturable.OneCompartmentSaturable; 24
subjects in four single-dose groups of 6 (5 / 10 / 20 / 40 mg, the healthy
single ascending dose design), 12 samples to 96 h, truth ka 0.4 /h, CL 4 L/h,
V 250 L, Vmax 0.1 mg/h, Km 20 ng/mL (omega CL 0.3, V 0.25), 10% proportional
error, simulated by scipy's solve_ivp (tests/saturable_study.py, not the fitting
kernel); priors of ``saturable_spec()`` (medians x0.6-1.6 off the truth); 4
chains x 500 draws after 500 tuning.  Coverage of the five typical values, the
two omegas and sigma_prop.

    python benchmarks/bench_fit_coverage.py [--model pk|pkpd|saturable] [--studies 20] [--first-seed 1]

Prints one line per study (progress) and the coverage table at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy.stats import beta, binom

from pkpd.popfit import ConvergenceWarning, Covariate, Param, PopPKModel, ResidualError, diagnose, fit
from pkpd.popfit.simulate import PopulationTruth, simulate_study
from pkpd.regimen import Regimen

TRUTH = PopulationTruth(ka=1.0, cl=5.0, v=50.0, omega={"ka": 0.4, "cl": 0.3, "v": 0.2},
                        theta={"cl": 0.75, "v": 1.0}, sigma_prop=0.15, sigma_add=0.02)
TIMES_H = [0.5, 1, 2, 4, 6, 8, 12, 24, 36]
LLOQ_MG_L = 0.1
SPEC = PopPKModel(
    params=(Param("ka", 1.5, 1.0, 0.6, "1/h"), Param("cl", 3.0, 1.0, 0.6, "L/h"), Param("v", 30.0, 1.0, 0.6, "L")),
    covariates=(Covariate("cl", "WT", 70.0, 0.75, 0.25), Covariate("v", "WT", 70.0, 1.0, 0.25)),
    error=ResidualError("combined", prop_scale=0.3, add_scale=0.1), conc_unit="mg/L",
    name="coverage study model",
)
TRUE_VALUES = {
    "ka": TRUTH.ka, "cl": TRUTH.cl, "v": TRUTH.v, "theta_cl_wt": 0.75, "theta_v_wt": 1.0,
    "omega_ka": 0.4, "omega_cl": 0.3, "omega_v": 0.2, "sigma_prop": 0.15, "sigma_add": 0.02,
}

#: PK/PD study: prior medians of the fitted model = truth x these factors.
PKPD_PRIOR_SHIFT = {"ka": 1.5, "cl": 0.7, "v": 1.4, "emax": 0.7, "ec50": 1.5, "mtt": 1.2, "lifespan": 0.85,
                    "plt0": 1.2}
PKPD_DOSES_MG = (2.5, 5.0, 7.5)
PKPD_PER_GROUP = 8
PKPD_PK_TIMES_H = (0.5, 1, 2, 4, 8, 12, 24, 48)
PKPD_PLT_DAYS = (0, 3, 7, 10, 14, 21, 28, 35, 42, 56)


def pk_study(seed: int):
    """(data, model, true values, fit settings) of one PK study."""
    data, _ = simulate_study(TRUTH, 24, Regimen.single(100.0), TIMES_H, seed=seed, conc_unit="mg/L", lloq=LLOQ_MG_L)
    return data, SPEC, TRUE_VALUES, dict(draws=1000, tune=700, chains=4)


def pkpd_study(seed: int):
    """(data, model, true values, fit settings) of one PK/PD study."""
    from pkpd import read_nonmem
    from pkpd.drugs import hetrombopag
    from pkpd.popfit import hetrombopag_pkpd_model, simulate_pkpd_records

    truth = hetrombopag.model("healthy", pk="linear")
    groups = [(Regimen.daily(d, 28), PKPD_PER_GROUP) for d in PKPD_DOSES_MG]
    records, _ = simulate_pkpd_records(truth, groups, PKPD_PK_TIMES_H, [24.0 * d for d in PKPD_PLT_DAYS], seed=seed)
    spec = hetrombopag_pkpd_model()
    for name, factor in PKPD_PRIOR_SHIFT.items():
        spec = spec.with_param(name, median=truth.typical[name] * factor)
    true_values = {name: truth.typical[name] for name in PKPD_PRIOR_SHIFT}
    return read_nonmem(records, dv_unit="ng/mL"), spec, true_values, dict(draws=500, tune=500, chains=4)


def saturable_study(seed: int):
    """(data, model, true values, fit settings) of one saturable-elimination study."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the study simulator lives with the tests
    import saturable_study as study

    data, _ = study.saturable_study(per_group=6, seed=seed, centre_etas=False)
    true_values = {**study.TRUTH, **{f"omega_{k}": v for k, v in study.OMEGA.items()}, "sigma_prop": study.SIGMA_PROP}
    return data, study.saturable_spec(), true_values, dict(draws=500, tune=500, chains=4)


STUDIES = {"pk": pk_study, "pkpd": pkpd_study, "saturable": saturable_study}
TYPICAL = ("ka", "cl", "v", "vmax", "km", "emax", "ec50", "mtt", "lifespan", "plt0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=tuple(STUDIES), default="pk")
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    args = parser.parse_args()

    covered = {}
    n_warned, t_all = 0, time.perf_counter()
    for i in range(args.studies):
        seed = args.first_seed + i
        t0 = time.perf_counter()
        data, spec, true_values, settings = STUDIES[args.model](seed)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            idata = fit(spec, data, seed=seed, progress=False, verbose=False, **settings)
        warned = any(issubclass(w.category, ConvergenceWarning) for w in caught)
        n_warned += warned
        diag = diagnose(idata, var_names=list(true_values))
        missed = []
        for name, value in true_values.items():
            lo, hi = np.quantile(idata.posterior[name].values, [0.05, 0.95])
            covered.setdefault(name, []).append(lo < value < hi)
            if not lo < value < hi:
                missed.append(f"{name} [{lo:.3g}, {hi:.3g}]")
        n_blq = int(idata.constant_data["conc_blq"].sum()) if "conc_blq" in idata.constant_data else 0
        print(f"study {i + 1:2d}/{args.studies} (seed {seed}): {n_blq} BLQ, divergences {diag.n_divergent}, "
              f"max R-hat {diag.max_rhat:.3f}{' (warned)' if warned else ''}, "
              f"missed: {', '.join(missed) or 'none'}  [{time.perf_counter() - t0:.1f} s]", flush=True)

    n = args.studies
    lo_ok, hi_ok = binom.ppf(0.025, n, 0.9), binom.ppf(0.975, n, 0.9)
    print(f"\n{args.model} model: coverage of the 90% central credible intervals over {n} simulated studies "
          f"(expected {0.9 * n:.0f}; 95% binomial range {lo_ok:.0f}-{hi_ok:.0f})")
    print(f"{'parameter':>12s} {'true':>7s} {'covered':>8s} {'rate':>6s}  Clopper-Pearson 95% CI")
    for name, hits in covered.items():
        k = int(np.sum(hits))
        cp_lo = beta.ppf(0.025, k, n - k + 1) if k > 0 else 0.0
        cp_hi = beta.ppf(0.975, k + 1, n - k) if k < n else 1.0
        flag = "" if lo_ok <= k <= hi_ok else "  <-- outside the binomial range"
        print(f"{name:>12s} {true_values[name]:>7.3g} {k:>5d}/{n:<2d} {k / n:>6.2f}  [{cp_lo:.2f}, {cp_hi:.2f}]{flag}")
    typical = [h for name in TYPICAL if name in covered for h in covered[name]]
    k = int(np.sum(typical))
    print(f"typical values pooled: {k}/{len(typical)} = {k / len(typical):.2f} "
          f"(95% CI [{beta.ppf(0.025, k, len(typical) - k + 1):.2f}, "
          f"{beta.ppf(0.975, k + 1, len(typical) - k) if k < len(typical) else 1.0:.2f}])")
    print(f"fits with a ConvergenceWarning: {n_warned}/{n}; total time {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
