"""Sampling, posterior predictions and convergence diagnostics.

:func:`fit` builds the model, samples it with nutpie -- through pkpd's
precompiled log density (:mod:`pkpd.popfit.density`) when it covers the model,
else the PyMC model's graph compiled with numba; PyMC's own NUTS when nutpie is
unavailable -- and returns an
``arviz.InferenceData`` with the groups

* ``posterior``: population parameters, etas, and per-draw predictions
  ``conc_ipred`` (individual, with the subject's etas) and ``conc_pred``
  (population: etas = 0, covariates kept);
* ``posterior_predictive``: ``conc`` = IPRED + residual noise (seeded);
* ``log_likelihood``: pointwise ``conc`` (M3 ``log Phi`` for BLQ rows), for LOO;
* ``observed_data``: ``conc`` (LLOQ for BLQ rows) and ``constant_data`` (time h,
  subject ID, BLQ flag, LLOQ);
* ``sample_stats``.

Predictions, noise and log-likelihood are computed from the stored draws with
the model's own arithmetic: the observations' compiled forward kernels
(concentrations: :func:`pkpd.popfit.pk_op.conc_forward`; platelets: the
likelihood Op's forward kernel) and the compiled density's per-observation
terms (:func:`pkpd.popfit.density.pointwise_loglik`), so the pointwise
log-likelihood is the one that was sampled and nothing but the sampler's logp
needs compiling.

Diagnostics (:func:`diagnose`) follow Vehtari et al. (2021, Bayesian Analysis
16:667): rank-normalised split R-hat <= 1.01 and bulk and tail ESS >= 400 (100
per chain x 4); plus no divergent transitions (Betancourt 2017) and E-BFMI >= 0.3
per chain.  A diagnostic that cannot be computed (R-hat of one chain, anything
from fewer than 4 draws per chain) counts as failed: the fit is then not known
to have converged.  A failed check prints a loud message *and* raises a
:class:`ConvergenceWarning` (a ``UserWarning``) so scripts and tests can catch it.

Each population parameter's posterior SD is also compared with its prior SD
(:meth:`~pkpd.popfit.model.BuiltModel.prior_sds`, stored in the posterior
variable's attrs ``prior_sd`` / ``prior_sd_scale``): a posterior contraction
``1 - var_post / var_prior`` (Schad, Betancourt & Vasishth 2021, Psychol Methods
26:103, "Toward a principled Bayesian workflow") below :data:`CONTRACTION_MIN`
= 0.1 means the data say next to nothing about that parameter and its
estimate is the prior's; it raises an :class:`UninformedParameterWarning`.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from ..checks import PKPDInputError, whole
from .density import CompiledDensity, pointwise_loglik, supports
from .design import CONC_CMT
from .model import BuiltModel, PopPKModel, build_model, individual_params, residual_sd

#: Thresholds of :func:`diagnose` (Vehtari et al. 2021; Betancourt 2017).
RHAT_MAX = 1.01
ESS_MIN = 400
EBFMI_MIN = 0.3

#: Posterior contraction 1 - var_post / var_prior (Schad, Betancourt & Vasishth
#: 2021) below which a parameter counts as not informed by the data.  The limit
#: is pkpd's choice: 0.1 = the posterior SD is more than 95% of the prior SD,
#: i.e. the data removed less than a tenth of the prior variance.  The estimated
#: contraction of an uninformed parameter scatters around 0 by ~sqrt(2 / ESS)
#: (0.07 at ESS 400), so a borderline case may go either way.
CONTRACTION_MIN = 0.1

#: Largest seed :func:`fit` accepts: every random generator it seeds (nutpie, PyMC, NumPy) takes 32-bit seeds.
SEED_MAX = 2**32 - 1

#: Max number of (draw x observation x dose) elements evaluated at once in NumPy.
_CHUNK_ELEMENTS = 4_000_000

#: arviz needs this many draws per chain for R-hat and ESS.
_MIN_DRAWS_PER_CHAIN = 4


class ConvergenceWarning(UserWarning):
    """The sampler's diagnostics say the posterior draws cannot be trusted yet."""


class UninformedParameterWarning(UserWarning):
    """A population parameter's posterior is about its prior: the data do not inform it."""


# ================================================================= diagnostics
@dataclass
class Diagnostics:
    """Convergence diagnostics of a fit.

    summary : per population parameter mean, sd, 5%/95% quantiles, R-hat, bulk
        and tail ESS, and the posterior contraction ``1 - var_post / var_prior``
        (NaN when the prior SD is unknown).  eta_summary : worst R-hat / ESS
        over all etas.
    n_divergent, n_draws : divergent transitions after warm-up, total draws.
    ebfmi : E-BFMI per chain.  problems : failed or uncomputable convergence
    checks (empty when all pass).  uninformed : one message per parameter whose
    contraction is below ``thresholds["contraction_min"]``.
    """

    summary: pd.DataFrame
    eta_summary: dict
    n_divergent: int
    n_draws: int
    ebfmi: np.ndarray
    problems: list = field(default_factory=list)
    thresholds: dict = field(default_factory=dict)
    uninformed: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every convergence check was computed and passed."""
        return not self.problems

    @property
    def max_rhat(self) -> float:
        """Worst R-hat (NaN when it could not be computed, e.g. one chain)."""
        return _nan_extreme(np.nanmax, list(self.summary["r_hat"]) + [self.eta_summary.get("max_r_hat", np.nan)])

    @property
    def min_ess_bulk(self) -> float:
        values = list(self.summary["ess_bulk"]) + [self.eta_summary.get("min_ess_bulk", np.nan)]
        return _nan_extreme(np.nanmin, values)

    def __str__(self) -> str:
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            table = self.summary.to_string(float_format=lambda x: f"{x:.4g}")
        lines = [table]
        e = self.eta_summary
        if e:
            lines.append(
                f"etas ({e['n']} values): max R-hat {_fmt(e['max_r_hat'], '.3f')}, min ESS bulk "
                f"{_fmt(e['min_ess_bulk'], '.0f')}, min ESS tail {_fmt(e['min_ess_tail'], '.0f')}"
            )
        lines.append(
            f"divergences {self.n_divergent} / {self.n_draws} draws; "
            f"E-BFMI per chain {', '.join(_fmt(b, '.2f') for b in self.ebfmi)}"
        )
        t = self.thresholds
        if self.ok:
            lines.append(
                f"OK: R-hat <= {t['rhat_max']}, ESS bulk and tail >= {t['ess_min']}, no divergences, "
                f"E-BFMI >= {t['ebfmi_min']}."
            )
        else:
            lines.append("!" * 78)
            lines.append("CONVERGENCE PROBLEMS -- do not trust these results yet:")
            lines += [f"  * {p}" for p in self.problems]
            lines.append("!" * 78)
        if self.uninformed:
            lines.append(f"NOT INFORMED BY THE DATA (posterior contraction 1 - var_post/var_prior < "
                         f"{t['contraction_min']}):")
            lines += [f"  * {u}" for u in self.uninformed]
        return "\n".join(lines)


def _nan_extreme(fn, values) -> float:
    values = np.asarray(values, float)
    return float(fn(values)) if np.isfinite(values).any() else float("nan")


def _fmt(value, spec: str) -> str:
    return format(value, spec) if np.isfinite(value) else "not computed"


def diagnose(
    idata, var_names=None, rhat_max: float = RHAT_MAX, ess_min: float = ESS_MIN, ebfmi_min: float = EBFMI_MIN,
    contraction_min: float = CONTRACTION_MIN,
) -> Diagnostics:
    """Check R-hat, bulk/tail ESS, divergences and E-BFMI of ``idata``, and
    compare each parameter's posterior SD with its prior SD.

    var_names : population parameters to tabulate; default every posterior
        variable that has no subject/observation dimension.  Variables named
        ``eta_*`` (per subject) are checked too, summarised in one line.
    contraction_min : a parameter whose posterior contraction ``1 - var_post /
        var_prior`` is below this is reported in ``uninformed``.  The prior SD
        comes from the variable's attrs ``prior_sd`` (on the scale
        ``prior_sd_scale``, ``"log"`` or ``"linear"``), which :func:`fit` sets;
        variables without it get no contraction.
    """
    import arviz as az

    post = idata.posterior
    n_chains, per_chain = int(post.sizes["chain"]), int(post.sizes["draw"])
    if var_names is None:
        var_names = [
            v for v in post.data_vars
            if not v.startswith("eta_") and not v.endswith(("_ipred", "_pred"))
            and not any(str(d).endswith("_obs") or d == "subject" for d in post[v].dims)
        ]
    eta_names = [v for v in post.data_vars if v.startswith("eta_") and not v.endswith("_z")]
    rows = []
    for v in var_names:
        da = post[v]
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        stacked = da.stack(_k=extra) if extra else da.expand_dims(_k=[0], axis=-1)
        for k in range(stacked.sizes["_k"]):
            x = stacked.isel(_k=k).transpose("chain", "draw").values
            index = [str(i) for i in np.atleast_1d(stacked["_k"].values[k])]
            label = v if not extra else f"{v}[{','.join(index)}]"
            if np.ptp(x) < 1e-12 * max(1.0, np.abs(x).max()):  # a constant, e.g. a correlation matrix's diagonal
                continue
            if v.endswith("_corr") and len(index) == 2 and extra and \
                    list(post[v].coords[extra[0]].values).index(stacked["_k"].values[k][0]) < \
                    list(post[v].coords[extra[1]].values).index(stacked["_k"].values[k][1]):
                continue  # a correlation matrix is symmetric: report the lower triangle only
            rows.append(_row(az, label, x, da.attrs))
    columns = ["mean", "sd", "q5", "q95", "r_hat", "ess_bulk", "ess_tail", "contraction"]
    table = pd.DataFrame(rows).set_index("param") if rows else pd.DataFrame(columns=columns + ["_scale"])
    summary = table[columns].astype(float)

    eta_summary = {}
    if eta_names:
        eta_ds = post[eta_names]
        enough = per_chain >= _MIN_DRAWS_PER_CHAIN
        rh = az.rhat(eta_ds) if enough and n_chains >= 2 else None
        eb = az.ess(eta_ds, method="bulk") if enough else None
        et = az.ess(eta_ds, method="tail") if enough else None
        worst = lambda fn, res: _nan_extreme(fn, [] if res is None else np.concatenate(
            [np.ravel(res[v].values) for v in eta_names]))
        eta_summary = {
            "n": int(sum(post[v].size // (n_chains * per_chain) for v in eta_names)),
            "max_r_hat": worst(np.nanmax, rh), "min_ess_bulk": worst(np.nanmin, eb),
            "min_ess_tail": worst(np.nanmin, et),
        }

    stats = idata.sample_stats if "sample_stats" in idata.groups() else {}
    n_div = int(stats["diverging"].sum()) if "diverging" in stats else 0
    n_draws = n_chains * per_chain
    ebfmi = np.atleast_1d(az.bfmi(idata)) if "energy" in stats and per_chain > 1 else np.array([np.nan])

    problems = []
    if per_chain < _MIN_DRAWS_PER_CHAIN:
        problems.append(f"R-hat and ESS not computed ({per_chain} draws per chain; they need >= "
                        f"{_MIN_DRAWS_PER_CHAIN}, 1000 are usual): run more draws.")
    elif n_chains < 2:
        problems.append("R-hat not computed (1 chain; run >= 2 chains, 4 recommended): chains that disagree "
                        "(several modes, poor mixing) cannot be detected from one chain.")
    else:
        for column, name in (("r_hat", "R-hat"), ("ess_bulk", "bulk ESS"), ("ess_tail", "tail ESS")):
            bad = summary.index[summary[column].isna()].tolist()
            if bad:
                problems.append(f"{name} not computed for {', '.join(bad)} (non-finite draws?).")
    worst_rhat = summary["r_hat"].max() if len(summary) else np.nan
    if np.isfinite(worst_rhat) and worst_rhat > rhat_max:
        bad = summary.index[summary["r_hat"] > rhat_max].tolist()
        problems.append(f"R-hat {worst_rhat:.4f} > {rhat_max} for {', '.join(bad)}: chains disagree (multimodal, "
                        f"non-identifiable or not yet mixed); run longer or reparameterise / fix a parameter.")
    if eta_summary and eta_summary["max_r_hat"] > rhat_max:
        problems.append(f"R-hat {eta_summary['max_r_hat']:.4f} > {rhat_max} for some etas.")
    for column, name, fix in (("ess_bulk", "bulk ESS", "too few effective draws"),
                              ("ess_tail", "tail ESS", "too few effective draws in the 5% and 95% tails")):
        low = summary[column].min() if len(summary) else np.nan
        if np.isfinite(low) and low < ess_min:
            bad = summary.index[summary[column] < ess_min].tolist()
            problems.append(f"{name} {low:.0f} < {ess_min} for {', '.join(bad)}: {fix}; increase draws (or chains).")
        key = "min_" + column
        if eta_summary and eta_summary[key] < ess_min:
            problems.append(f"{name} {eta_summary[key]:.0f} < {ess_min} for some etas.")
    if "diverging" not in stats:
        problems.append("divergences not recorded (no 'diverging' in sample_stats): cannot check them.")
    if n_div:
        problems.append(f"{n_div} divergent transitions: the sampler missed part of the posterior; raise "
                        f"target_accept (e.g. 0.95) or reparameterise.")
    if not np.isfinite(ebfmi).any():
        problems.append("E-BFMI not computed (no 'energy' in sample_stats, or 1 draw per chain).")
    low_bfmi = np.nanmin(ebfmi) if np.isfinite(ebfmi).any() else np.nan
    if np.isfinite(low_bfmi) and low_bfmi < ebfmi_min:
        problems.append(f"E-BFMI {low_bfmi:.2f} < {ebfmi_min}: heavy-tailed energy, poor exploration "
                        f"(often a funnel); reparameterise or tighten priors.")

    uninformed = [_uninformed_message(label, row, contraction_min) for label, row in table.iterrows()
                  if np.isfinite(row["contraction"]) and row["contraction"] < contraction_min]
    thresholds = {"rhat_max": rhat_max, "ess_min": ess_min, "ebfmi_min": ebfmi_min,
                  "contraction_min": contraction_min}
    return Diagnostics(summary, eta_summary, n_div, n_draws, ebfmi, problems, thresholds, uninformed)


def _row(az, label, x, attrs):
    """Summary row of one scalar's draws ``x`` (chain, draw); ``attrs`` may hold its prior SD."""
    n_chains, per_chain = x.shape
    enough = per_chain >= _MIN_DRAWS_PER_CHAIN
    prior_sd, scale = attrs.get("prior_sd"), attrs.get("prior_sd_scale", "linear")
    contraction, post_sd = np.nan, np.nan
    if prior_sd is not None and x.size > 1:
        post_sd = float(np.std(np.log(x) if scale == "log" else x))
        contraction = 1.0 - (post_sd / float(prior_sd)) ** 2
    return {
        "param": label, "mean": float(x.mean()), "sd": float(x.std()),
        "q5": float(np.quantile(x, 0.05)), "q95": float(np.quantile(x, 0.95)),
        "r_hat": float(az.rhat(x)) if enough and n_chains >= 2 else np.nan,
        "ess_bulk": float(az.ess(x, method="bulk")) if enough else np.nan,
        "ess_tail": float(az.ess(x, method="tail")) if enough else np.nan,
        "contraction": contraction, "_post_sd": post_sd, "_prior_sd": prior_sd, "_scale": scale,
    }


def _uninformed_message(label, row, contraction_min) -> str:
    of = f" of log({label})" if row["_scale"] == "log" else ""
    return (f"{label} is not informed by the data: posterior SD{of} {row['_post_sd']:.3g} vs prior SD "
            f"{row['_prior_sd']:.3g} (contraction {row['contraction']:.2f} < {contraction_min}), so its estimate "
            f"is the prior's. Add data that vary with it, fix it (Covariate sd=None; omega_scale=None for an "
            f"IIV) or give it a tighter prior.")


def record_priors(idata, built: BuiltModel) -> None:
    """Store each population variable's prior SD in its posterior attrs
    (``prior_sd``, ``prior_sd_scale``; see :meth:`BuiltModel.prior_sds`), where
    :func:`diagnose` finds them."""
    post = idata.posterior
    for name, (scale, sd) in built.prior_sds().items():
        if name in post:
            post[name].attrs.update(prior_sd=float(sd), prior_sd_scale=scale)


def warn_if_problems(diag: Diagnostics, stacklevel: int = 3, printed: bool = False) -> None:
    """Print the problems loudly (unless the full report was ``printed`` already),
    emit one :class:`ConvergenceWarning` listing them and one
    :class:`UninformedParameterWarning` per parameter the data do not inform."""
    if not diag.ok:
        text = "pkpd.fit: CONVERGENCE PROBLEMS: " + " | ".join(diag.problems)
        if not printed:
            print("\n" + "!" * 78 + "\n" + text + "\n" + "!" * 78, flush=True)
        warnings.warn(text, ConvergenceWarning, stacklevel=stacklevel)
    for message in diag.uninformed:
        if not printed:
            print("pkpd.fit: " + message, flush=True)
        warnings.warn("pkpd.fit: " + message, UninformedParameterWarning, stacklevel=stacklevel)


# ================================================================= fitting
def fit(
    model: PopPKModel,
    data,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int | None = None,
    *,
    cores: int | None = None,
    sampler: str = "nutpie",
    target_accept: float = 0.9,
    init: str = "support_point",
    progress: bool = True,
    verbose: bool = True,
    check_units: bool = True,
    density: str = "auto",
    mass_matrix: str = "diag",
):
    """Fit a population PK model by NUTS and return an ``arviz.InferenceData``.

    Parameters
    ----------
    model : :class:`PopPKModel` (e.g. :func:`~pkpd.popfit.theophylline_model`), or a
        :class:`BuiltModel` from :func:`~pkpd.popfit.build_model` or an earlier fit:
        it carries its data (``data`` is then ignored, pass None) and its
        compiled sampler, so refitting skips preparing it again.
    data : :class:`pkpd.nonmem.Dataset` (or flattened :class:`FitData`); its DV
        unit must be the model's ``conc_unit``.
    draws, tune, chains : kept draws and warm-up iterations per chain, number of chains.
    seed : seeds the sampler and the posterior-predictive noise.  ``None`` draws a
        fresh seed, prints it and stores it in ``idata.attrs["seed"]``.
    cores : chains run in parallel (default: min(chains, CPU count)).
    sampler : ``"nutpie"`` (compiled numba logp; default) or ``"pymc"``.  If
        nutpie cannot be used the fit falls back to PyMC with a warning.
    target_accept : NUTS step-size adaptation target.  0.9 (PyMC's default is 0.8)
        because hierarchical PK posteriors have regions of high curvature (small
        residual SD, data-rich non-centred etas) where 0.8 gives occasional
        divergences; raise to 0.95 if some remain.
    init : ``"support_point"`` (default) starts the chains near the prior
        medians, jittered; ``"prior"`` starts each chain at its own prior draw
        (overdispersed starts: R-hat then reveals multimodality such as the
        flip-flop ka <-> k of oral models, at the price of chains that may stay
        in a minor mode).  Use ``"prior"`` to check a model for several modes.
    progress : show the sampler's progress bar.  verbose : print timings,
        the parameter table and diagnostics.
    density : how nutpie evaluates the log density.  ``"auto"`` (default):
        pkpd's hand-written, precompiled numba density
        (:mod:`pkpd.popfit.density`; the same density, nothing to compile per
        model) when it covers the model, else the PyTensor graph of the PyMC
        model compiled with numba (correlated IIV, steady-state doses, custom
        endpoints).  ``"pytensor"`` always uses the graph; ``"compiled"``
        requires pkpd's density and raises if the model is not covered.
    mass_matrix : nutpie's mass-matrix adaptation: ``"diag"`` (default, from draws and
        gradients) or ``"low_rank"`` (diagonal plus a low-rank correction along the
        posterior's strongest correlations, such as Emax-EC50; nutpie's
        ``low_rank_modified_mass_matrix``).  nutpie only.

    Returns ``arviz.InferenceData`` (groups described in the module docs);
    ``idata.attrs`` holds timings (s), sampler, cores, chains, draws, tune, seed;
    each population variable's attrs hold its prior SD (``prior_sd``,
    ``prior_sd_scale``), so that ``diagnose(idata)`` reports the contraction.
    Emits :class:`ConvergenceWarning` when a diagnostic fails or cannot be
    computed (one chain gives no R-hat), and :class:`UninformedParameterWarning`
    for each parameter whose posterior is about its prior (see :func:`diagnose`).
    """
    draws, tune, chains = whole("draws", draws, 1), whole("tune", tune, 0), whole("chains", chains, 1)
    if cores is not None:
        cores = whole("cores", cores, 1)
    if seed is not None:
        seed = whole("seed", seed, 0, SEED_MAX, "or None for a fresh seed")
    if sampler not in ("nutpie", "pymc"):
        raise PKPDInputError(f"sampler must be 'nutpie' or 'pymc'; got {sampler!r}.")
    if init not in ("prior", "support_point"):
        raise PKPDInputError(f"init must be 'prior' or 'support_point'; got {init!r}.")
    if mass_matrix not in ("diag", "low_rank"):
        raise PKPDInputError(f"mass_matrix must be 'diag' or 'low_rank'; got {mass_matrix!r}.")
    if mass_matrix != "diag" and sampler != "nutpie":
        raise PKPDInputError(f"mass_matrix={mass_matrix!r} is nutpie's; use sampler='nutpie' or mass_matrix='diag'.")
    if density not in ("auto", "compiled", "pytensor"):
        raise PKPDInputError(f"density must be 'auto', 'compiled' or 'pytensor'; got {density!r}.")
    if isinstance(target_accept, (bool, str)) or not 0 < target_accept < 1:
        raise PKPDInputError(f"target_accept must be in (0, 1), e.g. 0.8; got {target_accept!r}.")
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**31))
        print(f"pkpd.fit: no seed given, using seed={seed} (pass seed= to reproduce)", flush=True)
    seed = int(seed)
    cores = cores or min(chains, os.cpu_count() or 1)
    timings = {}
    t_start = time.perf_counter()

    t0 = time.perf_counter()
    if isinstance(model, BuiltModel) and model.pymc_model is None:
        raise PKPDInputError("model is a BuiltModel from prepare() without a PyMC model; use build_model() or pass "
                             "the PopPKModel itself.")
    built = model if isinstance(model, BuiltModel) else build_model(model, data, check_units=check_units)
    timings["build_s"] = time.perf_counter() - t0
    spec, fd = built.spec, built.data
    if verbose:
        block = fd.blocks[CONC_CMT]
        note = "".join(f"; left out: {n} {reason}" for reason, n in fd.excluded["reason"].value_counts().items()) \
            if len(fd.excluded) else ""
        print(
            f"pkpd.fit: {spec.name}: {fd.n_subjects} subjects, {block.n} concentrations ({spec.conc_unit}, "
            f"{block.n_blq} BLQ){note}", flush=True,
        )

    used, used_density = sampler, "pytensor"
    idata = None
    if sampler == "nutpie":
        try:
            idata, t_compile, t_sample, used_density = _sample_nutpie(
                built, draws, tune, chains, cores, seed, target_accept, progress, verbose, init, density, mass_matrix)
            timings["compile_s"], timings["sampling_s"] = t_compile, t_sample
        except ImportError as exc:  # nutpie or numba missing
            warnings.warn(f"nutpie unavailable ({exc}); falling back to PyMC's NUTS.", RuntimeWarning, stacklevel=2)
            used = "pymc"
    if idata is None:
        idata, t_compile, t_sample = _sample_pymc(built, draws, tune, chains, cores, seed, target_accept, progress,
                                                  verbose, init)
        timings["compile_s"], timings["sampling_s"] = t_compile, t_sample

    t0 = time.perf_counter()
    add_predictions(idata, built, seed)
    record_priors(idata, built)
    timings["postprocess_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    n_draws = chains * draws
    idata.attrs.update({
        "sampler": used, "chains": int(chains), "draws": int(draws), "tune": int(tune), "cores": cores,
        "seed": seed, "target_accept": float(target_accept), "init": init, "model": spec.name,
        "density": used_density, "mass_matrix": mass_matrix, **{k: round(v, 3) for k, v in timings.items()},
    })

    diag = diagnose(idata, var_names=built.free_param_names)
    if verbose:
        print(
            f"pkpd.fit: {used}, {chains} chains x {draws} draws (+{tune} tune) on {cores} cores, seed {seed}\n"
            f"  build {timings['build_s']:.1f} s, compile {timings['compile_s']:.1f} s, "
            f"sampling {timings['sampling_s']:.1f} s, post-processing {timings['postprocess_s']:.1f} s, "
            f"total {timings['total_s']:.1f} s ({n_draws} draws)", flush=True,
        )
        print(diag, flush=True)
    warn_if_problems(diag, printed=verbose)
    return idata


def _compile_nutpie(pymc_model, init: str = "support_point"):
    """The nutpie (numba) sampler model of ``pymc_model``, its log density compiled
    without fast-math, so that a seed gives the same draws in every process.

    With fast-math (PyTensor's default ``numba__fastmath``) the compiled code
    depends on the process's history, not only on the graph: numba links a
    copy of every called function into the caller and re-optimises it there,
    and a call binds to whichever definition of that symbol the process loaded
    first -- the separately compiled callee when the graph is compiled in this
    process (first fit of a data set), the caller's own copy when the function
    comes from PyTensor's on-disk cache (later fits).  Under fast-math the two
    may round differently (reassociated sums, reciprocals), which changes the
    log density in the last bits and, over a few hundred NUTS steps, the draws.
    IEEE arithmetic makes every copy round alike; it costs ~2% per gradient.
    (Custom Ops' numba kernels must likewise be compiled without ``fastmath``.)
    """
    import nutpie
    import pytensor

    with warnings.catch_warnings(), pytensor.config.change_flags(numba__fastmath=False):
        warnings.filterwarnings("ignore", category=FutureWarning)
        # PyTensor's C backend (used only for the initial points) complains about BLAS; irrelevant here.
        warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*", category=UserWarning)
        return nutpie.compile_pymc_model(pymc_model, backend="numba", default_initialization_strategy=init)


def _density_kind(built, density: str) -> str:
    """``"compiled"`` (pkpd's numba density) or ``"pytensor"``, as ``density`` asks and the model allows."""
    if density == "pytensor":
        return "pytensor"
    reason = supports(built)
    if reason is None:
        return "compiled"
    if density == "compiled":
        raise PKPDInputError(f"density='compiled' does not cover this model ({reason}); use density='auto' or "
                             f"'pytensor'.")
    return "pytensor"


def _sample_nutpie(built, draws, tune, chains, cores, seed, target_accept, progress, verbose, init, density,
                   mass_matrix="diag"):
    import nutpie

    kind = _density_kind(built, density)
    key = ("nutpie", init, kind)
    t0 = time.perf_counter()
    compiled = built.compiled.get(key)
    if compiled is None and kind == "compiled":
        if verbose:
            print("pkpd.fit: loading pkpd's compiled log density (numba compiles it once per machine: ~8 s, ~20 s "
                  "with platelets)...", flush=True)
        compiled = CompiledDensity.of(built).nutpie_model(init)
        built.compiled[key] = compiled
    elif compiled is None:
        if verbose:
            print("pkpd.fit: compiling the model's PyTensor graph with nutpie (numba; 8-30 s, up to a minute on "
                  "a machine's first fit)...", flush=True)
        compiled = _compile_nutpie(built.pymc_model, init)
        built.compiled[key] = compiled
    t_compile = time.perf_counter() - t0
    if verbose:
        print(f"pkpd.fit: compiled in {t_compile:.1f} s; sampling {chains} chains x ({tune} tune + {draws} draws) "
              f"on {cores} cores...", flush=True)
    t0 = time.perf_counter()
    idata = nutpie.sample(
        compiled, draws=draws, tune=tune, chains=chains, cores=cores, seed=seed, save_warmup=False,
        progress_bar=progress, target_accept=target_accept,
        low_rank_modified_mass_matrix=mass_matrix == "low_rank",
    )
    t_sample = time.perf_counter() - t0
    _drop_transformed(idata)
    return idata, t_compile, t_sample, kind


def _sample_pymc(built, draws, tune, chains, cores, seed, target_accept, progress, verbose, init):
    import pymc as pm

    if verbose:
        print("pkpd.fit: sampling with PyMC's NUTS (C backend)...", flush=True)
    t0 = time.perf_counter()
    initvals = None
    if init == "prior":  # overdispersed starting points, one prior draw per chain
        rng = np.random.default_rng([seed, 7])
        with built.pymc_model:
            prior = pm.sample_prior_predictive(draws=chains, random_seed=rng, var_names=[
                v.name for v in built.pymc_model.free_RVs])
        initvals = [{v.name: prior.prior[v.name].values[0, c] for v in built.pymc_model.free_RVs}
                    for c in range(chains)]
    with built.pymc_model:
        idata = pm.sample(
            draws=draws, tune=tune, chains=chains, cores=cores, random_seed=seed, target_accept=target_accept,
            progressbar=progress, compute_convergence_checks=False, nuts_sampler="pymc", initvals=initvals,
        )
    t_all = time.perf_counter() - t0
    for group in [g for g in idata.groups() if g not in ("posterior", "sample_stats")]:
        del idata[group]
    # PyMC does not separate compilation from sampling; report it all as sampling.
    return idata, 0.0, t_all


def _drop_transformed(idata) -> None:
    post = idata.posterior
    drop = [v for v in post.data_vars if v.endswith("__")]
    if drop:
        idata.posterior = post.drop_vars(drop)


# ================================================================= predictions
def posterior_individual_params(idata, built: BuiltModel, population: bool = False) -> dict:
    """Individual parameters per draw, ``{name: (chain, draw, subject)}`` (NumPy).

    population=True sets the etas to 0 (typical subject with its own covariates).
    """
    post = idata.posterior
    spec = built.spec
    typical = {p: post[p].values for p in spec.param_names}
    thetas = {c.var_name: post[c.var_name].values for c in spec.covariates if c.sd is not None}
    etas = {} if population else {n: post[f"eta_{n}"].values for n in spec.iiv_names}
    return individual_params(np, spec, typical, thetas, etas, built.data)


def predict_draws(built: BuiltModel, endpoint, indiv: dict, block=None, fitted: bool = False) -> np.ndarray:
    """Predictions of ``endpoint`` for individual parameters with leading draw axes.

    indiv : ``{name: (..., n_subjects)}``.  fitted : use the likelihood's own
    arithmetic (``endpoint.predict`` with NumPy) rather than ``predict_numpy``
    (for platelets: the independent simulator of the plots).  Evaluated in
    chunks of draws so that memory stays bounded.  Returns ``(..., block.n)``.
    """
    predict = (lambda part, blk: endpoint.predict(np, part, blk)) if fitted else endpoint.predict_np
    block = block if block is not None else built.data.blocks[endpoint.cmt]
    first = next(iter(indiv.values()))
    lead = first.shape[:-1]
    flat = {k: v.reshape(-1, v.shape[-1]) for k, v in indiv.items()}
    n = next(iter(flat.values())).shape[0]
    per_draw = max(1, block.n * max(1, block.design.n_doses))
    step = max(1, _CHUNK_ELEMENTS // per_draw)
    out = np.empty((n, block.n))
    for start in range(0, n, step):
        part = {k: v[start:start + step] for k, v in flat.items()}
        out[start:start + step] = predict(part, block)
    return out.reshape(lead + (block.n,))


def _sigmas(post, ep):
    sp = post[ep.sigma_prop_name].values[..., None] if ep.error.has_prop else None
    sa = post[ep.sigma_add_name].values[..., None] if ep.error.has_add else None
    return sp, sa


def add_predictions(idata, built: BuiltModel, seed: int) -> None:
    """Add IPRED/PRED draws, posterior predictive, pointwise log-likelihood,
    observed and constant data to ``idata`` (in place)."""
    post = idata.posterior
    chain, draw = post["chain"].values, post["draw"].values
    rng = np.random.default_rng([seed, 20250])
    indiv = posterior_individual_params(idata, built)
    indiv_pop = posterior_individual_params(idata, built, population=True)
    new_post, pp, ll, obs, const = {}, {}, {}, {}, {}
    ids = np.asarray(built.data.ids)
    for ep in built.endpoints:
        block = built.data.blocks[ep.cmt]
        dim = f"{ep.name}_obs"
        ipred = predict_draws(built, ep, indiv, block, fitted=True)  # the sampled likelihood's own predictions
        pred = predict_draws(built, ep, indiv_pop, block, fitted=True)
        sp, sa = _sigmas(post, ep)
        sd = residual_sd(np, ep.error, ipred, sp, sa)
        y_rep = ipred + sd * rng.standard_normal(ipred.shape)
        flat = ipred.reshape(-1, block.n)
        loglik = pointwise_loglik(flat, np.ascontiguousarray(np.broadcast_to(sd, ipred.shape)).reshape(flat.shape), block.dv, block.lloq,
                                  block.n_quantified).reshape(ipred.shape)  # the sampled density's own terms
        coords3 = {"chain": chain, "draw": draw, dim: np.arange(block.n)}
        new_post[f"{ep.name}_ipred"] = xr.DataArray(ipred, coords=coords3, dims=("chain", "draw", dim))
        new_post[f"{ep.name}_pred"] = xr.DataArray(pred, coords=coords3, dims=("chain", "draw", dim))
        pp[ep.name] = xr.DataArray(y_rep, coords=coords3, dims=("chain", "draw", dim))
        ll[ep.name] = xr.DataArray(loglik, coords=coords3, dims=("chain", "draw", dim))
        observed = np.where(block.blq, block.lloq, block.dv)
        obs[ep.name] = xr.DataArray(observed, coords={dim: np.arange(block.n)}, dims=(dim,))
        const[f"{ep.name}_time"] = xr.DataArray(block.time, dims=(dim,), attrs={"unit": "h"})
        const[f"{ep.name}_id"] = xr.DataArray(ids[block.subject], dims=(dim,))
        const[f"{ep.name}_subject"] = xr.DataArray(block.subject, dims=(dim,))
        const[f"{ep.name}_blq"] = xr.DataArray(block.blq, dims=(dim,))
        const[f"{ep.name}_lloq"] = xr.DataArray(block.lloq, dims=(dim,), attrs={"unit": ep.unit})
    idata.posterior = post.assign(new_post)
    groups = {
        "posterior_predictive": xr.Dataset(pp),
        "log_likelihood": xr.Dataset(ll),
        "observed_data": xr.Dataset(obs),
        "constant_data": xr.Dataset(const),
    }
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        for name, ds in groups.items():
            if name in idata.groups():
                del idata[name]
        idata.add_groups(groups)
