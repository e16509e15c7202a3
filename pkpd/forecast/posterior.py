"""One patient's posterior: MAP, Laplace approximation and importance resampling.

For each responder status with prior mass (responder; non-responder when the
model has a ``nonresponder_fraction``) :func:`fit_individual`

1. finds the MAP of ``z`` (:class:`~pkpd.forecast.likelihood.PatientDensity`)
   with scipy's bounded truncated Newton method (TNC) on the prior box, from the prior mean and
   ``n_starts - 1`` seeded prior draws, with exact gradients where the
   compiled kernels cover the model (finite differences otherwise);
2. takes the Laplace approximation there: the Hessian by central differences
   of the gradient, the log evidence ``-f* + d/2 log 2 pi - 1/2 log det H``;
3. draws from a mixture over status of multivariate t proposals (``df``
   degrees of freedom, scale ``proposal_scale`` times the Laplace covariance;
   each status gets at least ``MIN_STATUS_SHARE`` of the draws), weights every draw by
   target / proposal through the simulation solver, smooths the weights by
   Pareto-smoothed importance sampling (``arviz.psislw``; Vehtari et al.,
   J Mach Learn Res 2024;25:72) and reports Pareto k; while k > 0.7 it draws
   again with the proposal scale doubled (``retries`` times at most), since with
   few counts the posterior is skewed and wider than the Laplace approximation.

The posterior probability of responding is the weight of the responder
draws.

Population uncertainty (``population=``, :mod:`pkpd.forecast.population`):
the prior is then a set of M population models, one per posterior draw of a
population fit (a seeded subset of ``n_population_draws`` of the draws given),
each with prior mass 1/M.  The target is the joint posterior of (population
draw m, status s, z) given the patient's data,
p(m, s, z | y) ∝ (1/M) P(s) p(y | z, theta_m, s) p(z | theta_m), z measured
from draw m's typical values.  Steps 1-2 run for every (m, s) (the first
draw's MAP, mapped to the others' coordinates, is their start; the prior mean and prior
draws if that fails); step 3 draws
from the mixture over (m, s) of their t proposals, each component's share its
Laplace posterior mass (floored, ``MIN_DRAW_SHARE``), and weighs each draw
by the exact joint density over its own component's proposal density, so the
draws of a population draw weigh in by its marginal likelihood of the
patient's data; PSIS and Pareto k are those of the pooled weights.  Without
``population`` this is the same computation with M = 1 (the model's fixed
values).  The weight of each population draw and their effective number
(1 / sum of squared weights) are in :meth:`IndividualPosterior.population_weights`
and :meth:`IndividualPosterior.diagnostics`.  When the model has a disease fluctuation (:class:`pkpd.Fluctuation`),
the MAP and Laplace steps leave it out (its mean path, 0) and each proposal
draw carries a fluctuation path drawn from its prior; the importance weights
then condition the path on the counts as well, and the predictions continue
each draw's path.  Warnings (:class:`ForecastWarning`): Pareto k > 0.7, a MAP
on the prior box, an optimiser that did not converge, an effective sample size
below ``MIN_ESS``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import arviz as az
import numpy as np
import pandas as pd
from scipy import optimize, stats

from ..checks import PKPDInputError
from ..population import PKPDModel
from .history import PatientHistory
from .likelihood import PatientDensity, Prior, pooled_batch
from .population import DEFAULT_POPULATION_DRAWS, PopulationDraws, population_draws

#: Pareto k above which importance sampling is not to be trusted (Vehtari et al. 2024).
PARETO_K_LIMIT = 0.7
#: Effective sample size of the importance weights below which a warning is given.
MIN_ESS = 100
#: Smallest share of the proposal draws each responder status gets.
MIN_STATUS_SHARE = 0.1
#: Within a responder status, the share of the proposal draws spread evenly over the population
#: draws (the rest follows their Laplace posterior mass), so that no draw goes unexplored.
MIN_DRAW_SHARE = 0.2
#: Largest projected gradient component (per unit z) accepted as a converged MAP.
GRADIENT_TOLERANCE = 1e-3
#: Step in z of the finite-difference Hessian (central differences of the exact gradient).
HESSIAN_STEP = 1e-4
#: The same on the simulator path, whose gradient is itself a finite difference (error ~1e-4):
#: a step of 1e-2 keeps the Hessian's error near 1e-2 relative.
HESSIAN_STEP_SIMULATOR = 1e-2


class ForecastWarning(UserWarning):
    """A forecast step whose result should not be trusted as it stands."""


@dataclass
class StatusFit:
    """MAP and Laplace approximation for one responder status."""

    responder: bool
    z: np.ndarray
    objective: float
    hessian: np.ndarray
    cov: np.ndarray
    log_evidence: float
    success: bool
    message: str
    evaluations: int
    on_bound: list
    prior_share: float
    draw: int | None = None  # the population draw (position among the draws used), None without population

    def row(self, names) -> dict:
        return {"status": "responder" if self.responder else "non-responder",
                **({} if self.draw is None else {"population_draw": self.draw}), "prior": self.prior_share,
                "objective": self.objective, "log_evidence": self.log_evidence, "converged": self.success,
                "evaluations": self.evaluations, "on_bound": ", ".join(self.on_bound) or "-",
                **{f"map_{n}": v for n, v in zip(names, self.z)}}


def find_map(density: PatientDensity, starts: np.ndarray) -> tuple[optimize.OptimizeResult, int]:
    """scipy's bounded truncated Newton (TNC) from each start (rows of ``starts``); the best
    result and the total evaluations.  TNC rather than L-BFGS-B: on a shared machine
    L-BFGS-B's calls into a threaded BLAS made a 7-parameter MAP take ~170 ms instead of ~3 ms."""
    bounds = list(zip(density.lower, density.upper))
    best, evaluations = None, 0
    for x0 in starts:
        x0 = np.clip(x0, density.lower, density.upper)
        res = optimize.minimize(density, x0, jac=True, method="TNC", bounds=bounds,
                                options={"maxfun": 2000, "ftol": 1e-12, "xtol": 1e-10, "gtol": 1e-8})
        evaluations += res.nfev
        if best is None or res.fun < best.fun:
            best = res
    if not best.success:  # TNC stops with "linear search failed" at a flat optimum: judge by the gradient
        g = density(best.x)[1]
        g = np.where((best.x <= density.lower + 1e-9) & (g > 0) | (best.x >= density.upper - 1e-9) & (g < 0), 0.0, g)
        if np.abs(g).max() < GRADIENT_TOLERANCE:
            best.success = True
            best.message = f"{best.message}; projected gradient {np.abs(g).max():.1e} below {GRADIENT_TOLERANCE:g}"
    return best, evaluations


def hessian(density: PatientDensity, z: np.ndarray, step: float = HESSIAN_STEP) -> np.ndarray:
    """Central differences of the gradient, symmetrised."""
    d = z.size
    H = np.empty((d, d))
    for i in range(d):
        e = np.zeros(d)
        e[i] = step
        H[:, i] = (density(z + e)[1] - density(z - e)[1]) / (2 * step)
    return 0.5 * (H + H.T)


def _positive_definite(H: np.ndarray) -> tuple[np.ndarray, bool]:
    w, v = np.linalg.eigh(H)
    floor = 1e-6 * max(float(np.abs(w).max()), 1.0)
    if (w > floor).all():
        return H, True
    return (v * np.maximum(w, floor)) @ v.T, False


def fit_status(density: PatientDensity, prior_share: float, rng: np.random.Generator, n_starts: int,
               starts: np.ndarray | None = None, draw: int | None = None) -> StatusFit:
    """MAP and Laplace approximation of one status (see the module docstring).
    ``starts`` (k, d): the optimiser's starting points instead of the prior mean and
    ``n_starts - 1`` prior draws (e.g. a warm start from an earlier MAP)."""
    p = density.prior
    if starts is None:
        starts = [p.mean]
        if n_starts > 1:
            starts += list(rng.multivariate_normal(p.mean, p.cov, size=n_starts - 1))
    res, evaluations = find_map(density, np.atleast_2d(np.asarray(starts, float)))
    z = np.asarray(res.x, float)
    span = density.upper - density.lower
    on = [n for n, x, lo, hi, s in zip(p.names, z, density.lower, density.upper, span)
          if min(x - lo, hi - x) < 1e-6 * s]
    # finite differences of a finite-difference gradient need a larger step (see HESSIAN_STEP_SIMULATOR)
    step = HESSIAN_STEP if density.method == "adjoint" else HESSIAN_STEP_SIMULATOR
    H, pd_ok = _positive_definite(hessian(density, z, step))
    cov = np.linalg.inv(H)
    cov = 0.5 * (cov + cov.T)
    sign, logdet = np.linalg.slogdet(H)
    log_ev = -float(res.fun) + 0.5 * z.size * math.log(2 * math.pi) - 0.5 * logdet + math.log(prior_share)
    # the prior's normalising constant (shared by both statuses, but part of the evidence)
    log_ev -= 0.5 * np.linalg.slogdet(2 * math.pi * p.cov)[1]
    message = str(res.message) + ("" if pd_ok else "; Hessian not positive definite (floored)")
    return StatusFit(density.responder, z, float(res.fun), H, cov, log_ev, bool(res.success) and pd_ok, message,
                     evaluations, on, prior_share, draw)


@dataclass
class IndividualPosterior:
    """One patient's posterior (see the module docstring).

    ``fits``: one :class:`StatusFit` per status (and population draw); ``draws`` (n, d)
    of z with ``responder`` (n,), ``component`` (n,) the fit each draw was proposed
    from (its status and population draw) and ``paths`` (n, G) or None;
    ``log_weights`` (n,) Pareto-smoothed and normalised; ``pareto_k``; ``ess``
    (effective sample size of the weights); ``p_responder``; ``population``: the
    :class:`~pkpd.forecast.population.PopulationDraws` used, or None (the model's
    fixed values); ``densities``: one :class:`PatientDensity` per fit.
    """

    model: PKPDModel
    history: PatientHistory
    density: PatientDensity
    fits: list
    draws: np.ndarray
    responder: np.ndarray
    paths: np.ndarray | None
    log_weights: np.ndarray
    pareto_k: float
    ess: float
    p_responder: float
    seconds: float = 0.0
    warnings: list = field(default_factory=list)
    proposal_scale: float = 1.0
    component: np.ndarray | None = None
    densities: list | None = None
    population: PopulationDraws | None = None

    def __post_init__(self):
        if self.densities is None:
            self.densities = [self.density] * len(self.fits)
        if self.component is None:
            self.component = np.zeros(self.draws.shape[0], int)

    @property
    def names(self) -> list:
        """The estimated parameters (z = log(param / typical))."""
        return list(self.density.prior.names)

    @property
    def weights(self) -> np.ndarray:
        return np.exp(self.log_weights)

    def map_fit(self) -> StatusFit:
        """The fit (status, population draw) with the largest log evidence."""
        return max(self.fits, key=lambda f: f.log_evidence)

    def map_parameters(self) -> pd.DataFrame:
        """Individual parameters at the MAP of each fit (one row each)."""
        frames = [d.frame(f.z[None, :], [f.responder]).assign(responder=f.responder, **(
            {} if f.draw is None else {"population_draw": f.draw})) for f, d in zip(self.fits, self.densities)]
        return pd.concat(frames, ignore_index=True)

    def resample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` draw indices by systematic resampling of the weights."""
        w = self.weights / self.weights.sum()
        u = (rng.uniform() + np.arange(n)) / n
        return np.minimum(np.searchsorted(np.cumsum(w), u), w.size - 1)

    def rows(self, index=None) -> np.ndarray:
        """Individual parameter rows (n, P) of the draws (all, or ``index``), in
        ``model.parameter_names`` order, each from its own population draw's typical values."""
        index = np.arange(self.draws.shape[0]) if index is None else np.asarray(index)
        comp = self.component[index]
        out = np.empty((index.size, len(self.model.parameter_names)))
        for k in np.unique(comp):
            sel = comp == k
            out[sel] = self.densities[k].rows(self.draws[index[sel]], self.responder[index[sel]])
        return out

    def frame(self, index=None) -> pd.DataFrame:
        """:meth:`rows` as a DataFrame."""
        return pd.DataFrame(self.rows(index), columns=list(self.model.parameter_names))

    def residual_groups(self, index) -> list:
        """[(platelet ResidualError, mask over ``index``)]: the draws grouped by their model's residual error."""
        comp = self.component[np.asarray(index)]
        errors = [d.model.residual_plt for d in self.densities]
        groups = {}
        for k in np.unique(comp):
            groups.setdefault(errors[k], []).append(k)
        return [(err, np.isin(comp, ks)) for err, ks in groups.items()]

    def parameters(self, index=None) -> pd.DataFrame:
        """Individual parameters of the draws (all, or ``index``), with responder and weight
        (and the population draw, with population uncertainty)."""
        index = np.arange(self.draws.shape[0]) if index is None else np.asarray(index)
        out = self.frame(index).assign(responder=self.responder[index], weight=self.weights[index])
        if self.population is not None:
            out["population_draw"] = [self.fits[k].draw for k in self.component[index]]
        return out

    def summary(self) -> pd.DataFrame:
        """Per estimated parameter: typical value, MAP (most probable status and population
        draw), weighted posterior median and 5-95 % interval, in the parameter's unit."""
        units = self.model.parameter_units
        w = self.weights / self.weights.sum()
        best = self.map_fit()
        best_density = self.densities[next(i for i, f in enumerate(self.fits) if f is best)]
        typical = np.array([d.prior.typical for d in self.densities])[self.component]  # each draw's own (n, d)
        values = typical * np.exp(self.draws)
        out = []
        for i, n in enumerate(self.names):
            vals = values[:, i]
            o = np.argsort(vals)
            cw = np.cumsum(w[o])
            q = [vals[o][min(np.searchsorted(cw, a), vals.size - 1)] for a in (0.05, 0.5, 0.95)]
            out.append({"parameter": n, "unit": units[n], "typical": self.model.typical[n],
                        "map": best_density.prior.typical[i] * math.exp(best.z[i]),
                        "median": q[1], "p5": q[0], "p95": q[2]})
        return pd.DataFrame(out).set_index("parameter")

    def population_weights(self) -> pd.DataFrame | None:
        """One row per population draw used: its row in the draws given, prior weight 1/M,
        posterior weight (the importance weight of its draws, both statuses), Laplace share
        (the proposal's), and its values.  None without population uncertainty."""
        if self.population is None:
            return None
        pop = self.population
        w = self.weights / self.weights.sum()
        draw_of = np.array([f.draw for f in self.fits])
        post = np.bincount(draw_of[self.component], weights=w, minlength=pop.size)
        ev = np.array([f.log_evidence for f in self.fits])
        lap = np.exp(ev - ev.max())
        lap = np.bincount(draw_of, weights=lap / lap.sum(), minlength=pop.size)
        table = pd.DataFrame({"row": pop.rows, "prior": 1.0 / pop.size, "posterior": post, "laplace": lap})
        return pd.concat([table, pop.table], axis=1).rename_axis("population_draw")

    @property
    def population_ess(self) -> float:
        """Effective number of population draws, 1 / sum of their squared posterior weights (NaN without)."""
        table = self.population_weights()
        return float("nan") if table is None else float(1.0 / np.sum(table["posterior"] ** 2))

    def diagnostics(self) -> pd.DataFrame:
        """One row per status (and population draw): prior share, MAP objective, log evidence, convergence,
        bounds, MAP z; plus the importance-sampling figures as columns (and, with population uncertainty,
        the number of population draws, their effective number and each row's posterior weight)."""
        table = pd.DataFrame([f.row(self.names) for f in self.fits])
        w = self.weights / self.weights.sum()
        p_fit = np.bincount(self.component, weights=w, minlength=len(self.fits))
        if self.population is None:
            p_status = [self.p_responder if f.responder else 1 - self.p_responder for f in self.fits]
        else:
            p_status = p_fit
        table = table.assign(pareto_k=self.pareto_k, ess=self.ess, draws=self.draws.shape[0],
                             proposal_scale=self.proposal_scale, p_status=p_status)
        if self.population is not None:
            table = table.assign(population_draws=self.population.size, population_ess=self.population_ess)
        return table

    def __repr__(self) -> str:
        k = "ok" if self.pareto_k <= PARETO_K_LIMIT else "UNRELIABLE"
        pop = ("" if self.population is None else
               f"; population uncertainty included: {self.population.size} of {self.population.total} population draws "
               f"(effective {self.population_ess:.1f})")
        return (f"IndividualPosterior(patient {self.history.id!r}, {self.density.method} MAP over {', '.join(self.names)}; "
                f"P(responder) {self.p_responder:.2f}; {self.draws.shape[0]} draws, Pareto k {self.pareto_k:.2f} ({k}), "
                f"ESS {self.ess:.0f}{pop}; {self.seconds:.2f} s)")


def _psis(log_w: np.ndarray) -> tuple[np.ndarray, float]:
    """Pareto-smoothed, normalised log weights and k (arviz.psislw)."""
    finite = np.isfinite(log_w)
    out = np.full(log_w.shape, -np.inf)
    if finite.sum() < 10:
        raise PKPDInputError("importance sampling: fewer than 10 proposal draws have a finite density; "
                             "the patient's data may contradict the model (check units: counts in 10^9/L, doses in mg).")
    lw, k = az.psislw(log_w[finite] - log_w[finite].max())
    out[finite] = lw
    return out, float(np.asarray(k))


def fit_individual(history: PatientHistory, model: PKPDModel, *, seed=None, n_draws: int = 2000, n_starts: int = 3,
                   df: float = 5.0, proposal_scale: float = 1.5, horizon_h: float | None = None,
                   method: str = "auto", enrolled: bool = True, retries: int = 2, population=None,
                   n_population_draws: int | None = DEFAULT_POPULATION_DRAWS) -> IndividualPosterior:
    """The posterior of one patient (see the module docstring).

    history : a :class:`~pkpd.forecast.history.PatientHistory`.
    model : the population model (a :class:`pkpd.population.PKPDModel`).
    seed : random seed (population draws picked, starts, proposal draws, fluctuation paths).
    n_draws : importance-sampling proposal draws.
    df, proposal_scale : degrees of freedom of the t proposals and a factor on their
        (Laplace) covariance.  retries : while Pareto k > 0.7, draw again this many times
        at most, each time with the proposal scale doubled.
    horizon_h : how far (h) fluctuation paths are drawn (default: the history's end).
    method : "auto", "adjoint" or "simulator" (see :class:`PatientDensity`).
    enrolled : the patient was enrolled on a screening count like the model's
        population (see :class:`~pkpd.forecast.likelihood.Prior`).
    population : the uncertainty of the population parameters: posterior draws of them (a
        DataFrame, one row per draw, columns named like the model's parameters, e.g.
        :func:`pkpd.datasets.posterior_typical_draws`) or the result of :func:`pkpd.fit`
        (see :mod:`pkpd.forecast.population`); None: the model's values, fixed.
    n_population_draws : how many of those draws are used (a seeded random subset; None: all).
        The MAP and Laplace steps run once per draw and status (about 10-20 ms each).
    """
    if int(n_draws) != n_draws or n_draws < 100:
        raise PKPDInputError(f"n_draws must be a whole number >= 100; got {n_draws!r}.")
    if int(n_starts) != n_starts or n_starts < 1:
        raise PKPDInputError(f"n_starts must be a whole number >= 1; got {n_starts!r}.")
    if not (proposal_scale > 0 and df > 0):
        raise PKPDInputError(f"proposal_scale and df must be > 0; got {proposal_scale!r} and {df!r}.")
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    pop = None if population is None else population_draws(population, model, n_population_draws, rng)
    models = [model] if pop is None else list(pop.models)
    M = len(models)
    priors = [Prior(m, history, enrolled=bool(enrolled)) for m in models]
    if priors[0].dim == 0:
        raise PKPDInputError(f"model {model.name!r} has no inter-individual variability and no baseline law, so a "
                             "patient's data cannot move its parameters; give it iiv (e.g. model.with_(iiv={...})).")
    f = model.nonresponder_fraction
    statuses = [(True, 1.0 - f)] + ([(False, f)] if f > 0 else [])
    # one component per (population draw, status): its density and its MAP + Laplace fit
    densities, fits = [], []
    for r, share in statuses:
        first = None
        for k, (m, prior) in enumerate(zip(models, priors)):
            density = PatientDensity(m, history, r, prior, method)
            if first is None:
                fit = fit_status(density, share / M, rng, int(n_starts), draw=None if pop is None else k)
                first = (fit, prior)
            else:  # warm start: the first draw's MAP in this draw's coordinates
                z0 = first[0].z + np.log(first[1].typical / prior.typical)
                fit = fit_status(density, share / M, rng, 1, starts=z0[None, :], draw=k)
                if not (fit.success and np.isfinite(fit.objective)):  # and the first draw's starts, as a fallback
                    fit = fit_status(density, share / M, rng, int(n_starts), draw=k)
            densities.append(density)
            fits.append(fit)
    caught = _fit_warnings(fits, pop)
    # --- importance sampling from the mixture of t proposals over (population draw, status)
    share = _proposal_shares(fits, M)
    fl = model.fluctuation
    n_paths = 0
    if fl is not None and fl.sd_log > 0:
        n_paths = int(np.ceil(max(history.last_time_h, horizon_h or 0.0) / fl.interval_h)) + 2
    # log prior mass of each component: P(status) / M and the normalising constant of its z prior
    log_prior = np.array([math.log(fit.prior_share) - 0.5 * np.linalg.slogdet(2 * math.pi * d.prior.cov)[1]
                          for fit, d in zip(fits, densities)])
    scale = float(proposal_scale)
    for attempt in range(1 + int(retries)):
        Z, resp, comp, paths, lw, k = _importance(densities, fits, share, int(n_draws), df, scale, rng, fl, n_paths,
                                                  log_prior)
        if k <= PARETO_K_LIMIT or attempt == int(retries):
            break
        scale *= 2.0  # a wider proposal: the Laplace approximation was too narrow (skewed posterior)
    w = np.exp(lw)
    w /= w.sum()
    ess = float(1.0 / np.sum(w**2))
    if ess < MIN_ESS:
        caught.append(f"importance sampling: effective sample size {ess:.0f} of {w.size} draws (< {MIN_ESS}): "
                      "intervals and probabilities are noisy; give more n_draws")
    if k > PARETO_K_LIMIT:
        caught.append(f"importance sampling: Pareto k {k:.2f} > {PARETO_K_LIMIT}: the Laplace proposal misses the "
                      "posterior; intervals and probabilities may be off (more n_draws, or a richer history)")
    for message in caught:
        warnings.warn(message, ForecastWarning, stacklevel=3)
    with np.errstate(divide="ignore"):
        log_w_final = np.log(w)
    main = densities[0]
    return IndividualPosterior(model, history, main, fits, Z, resp, paths, log_w_final, k, ess,
                               float(w[resp].sum()), time.perf_counter() - start, caught, scale, comp, densities, pop)


def _fit_warnings(fits, pop) -> list:
    """The MAP problems of the fits, one message per status and kind (population draws counted)."""
    caught = []
    for responder in (True, False):
        mine = [f for f in fits if f.responder == responder]
        if not mine:
            continue
        who = "responder" if responder else "non-responder"
        of = "" if pop is None else f" in {{n}} of {len(mine)} population draws"
        failed = [f for f in mine if not f.success]
        if failed:
            caught.append(f"MAP ({who}): the optimiser did not converge ({failed[0].message})"
                          + of.format(n=len(failed)))
        bound = [f for f in mine if f.on_bound]
        if bound:
            names = sorted({n for f in bound for n in f.on_bound})
            caught.append(f"MAP ({who}) on the prior box (+-5 prior SD) for {', '.join(names)}" + of.format(n=len(bound))
                          + ": the data pull the parameter further than the population model allows")
    return caught


def _proposal_shares(fits, M: int) -> np.ndarray:
    """Each fit's share of the proposal draws: per status the Laplace posterior mass (at least
    ``MIN_STATUS_SHARE`` each), within a status the draws' Laplace mass mixed with an even spread
    (``MIN_DRAW_SHARE``)."""
    ev = np.array([fit.log_evidence for fit in fits])
    mass = np.exp(ev - ev.max())
    status = np.array([fit.responder for fit in fits])
    kinds = [s for s in (True, False) if (status == s).any()]
    per = np.array([mass[status == s].sum() for s in kinds])
    per /= per.sum()
    if len(kinds) > 1:
        per = np.maximum(per, MIN_STATUS_SHARE)
        per /= per.sum()
    share = np.empty(len(fits))
    for s, p in zip(kinds, per):
        sel = status == s
        within = mass[sel] / mass[sel].sum()
        if M > 1:
            within = (1.0 - MIN_DRAW_SHARE) * within + MIN_DRAW_SHARE / sel.sum()
        share[sel] = p * within
    return share


def _importance(densities, fits, share, n_draws, df, scale, rng, fluctuation, n_paths, log_prior):
    """Draws (z, status, component, path) from the mixture of t proposals (one per fit), Pareto-smoothed
    log weights and k.  Each component gets round(share x n_draws) draws (at least one); a draw's weight
    is the joint target of its (population draw, status, z) over its component's proposal density
    (its share of the draws times the t density)."""
    counts = np.maximum(np.round(share * n_draws).astype(int), 1)
    total = counts.sum()
    Z, resp, comp, logq = [], [], [], []
    for c, (fit, n) in enumerate(zip(fits, counts)):
        dist = stats.multivariate_t(loc=fit.z, shape=scale * fit.cov, df=df, allow_singular=True)
        draws = np.atleast_2d(dist.rvs(size=int(n), random_state=rng)).reshape(int(n), -1)
        Z.append(draws)
        resp.append(np.full(int(n), fit.responder))
        comp.append(np.full(int(n), c))
        logq.append(math.log(n / total) + np.atleast_1d(dist.logpdf(draws)))
    Z, resp, comp, logq = np.concatenate(Z), np.concatenate(resp), np.concatenate(comp), np.concatenate(logq)
    paths = fluctuation.extend(np.zeros((Z.shape[0], 0)), n_paths, rng) if n_paths else None
    target = -pooled_batch(densities, comp, Z, resp, paths)
    log_w = target + log_prior[comp] - logq
    lw, k = _psis(log_w)
    return Z, resp, comp, paths, lw, k
