"""The individual posterior density of one patient: the population model's
inter-individual variability as the prior, the residual errors as the likelihood.

The unknowns are the patient's log-parameter deviations ``z`` from the typical
values (``param = typical x exp(z)``): every parameter with IIV (prior
N(0, Omega), Omega from :meth:`pkpd.population.PKPDModel.omega_matrix`), and
the baseline response (e.g. PLT0) when the model draws it from a
:class:`~pkpd.population.Baseline` instead (prior: its truncated log-normal
law).  For a :class:`~pkpd.population.ScreenedBaseline` the prior is the law of
the true value in the referred population (log SD sqrt(sd_log^2 - noise^2))
and, for a patient ``enrolled`` like the model's population (the default), the
probability that the unseen screening count fell in [low, high) multiplies it:
together exactly the law :meth:`ScreenedBaseline.sample` draws from.  Counts
in the history, a day-0 count included, are further measurements.  With
``enrolled=False`` (a patient not selected on a screening count) the
enrolment term is left out.  The prior is truncated to a box of +-``BOX_SD``
prior SDs (negligible mass outside).

Responder status is discrete: :class:`PatientDensity` is the density for one
status; in a non-responder the PD model's ``DRUG_EFFECT`` parameter is 0, so
the drug parameters keep their prior.

-log posterior = sum over counts and concentrations of -log p(y | f(z)) + the
prior terms.  Residual errors (:class:`pkpd.population.ResidualError`):
log-normal ``log y ~ N(log f, prop^2)`` or normal ``y ~ N(f, (prop f)^2 + add^2)``.

Predictions: for the structure the compiled fitting kernels cover (one-
compartment oral PK, transit platelets with 4 compartments, hill 1, gamma 0,
no IIV outside those kernels' parameters) the density and its *exact* gradient
come from :func:`pkpd.popfit.platelet_op.platelet_forward` / ``platelet_vjp``
(the discrete adjoint) and :func:`pkpd.one_compartment.unit_response`; any
other model uses the simulation solver (:meth:`PKPDModel.solver`) with central
finite differences.  Batches of parameter sets (importance sampling) always go
through the simulation solver, which also carries a disease-fluctuation path.
Units: h, mg, ng/mL, 10^9/L.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pandas as pd
from scipy.special import log_ndtr, ndtr

from ..checks import PKPDInputError
from ..one_compartment import OneCompartmentOral, unit_response
from ..pd import TransitPlatelets
from ..popfit import platelet_op
from ..popfit.platelets import platelet_grid
from ..population import PKPDModel, ResidualError, ScreenedBaseline
from ..regimen import Regimen
from ..units import MG_PER_L_TO_NG_PER_ML
from .history import PatientHistory

#: Half-width of the prior box, in prior SDs (mass outside < 1e-6 per parameter).
BOX_SD = 5.0
#: Step in z of the finite-difference gradient on the simulator path: the solver's relative
#: accuracy (~1e-8) makes the rounding error ~1e-8 f / FD_STEP, the truncation error ~FD_STEP^2.
FD_STEP = 1e-3
#: Largest kdeg h and ktr h for which the compiled kernels' chain quadrature is exact
#: (pkpd.popfit.platelets.CHAIN_QUADRATURE); the box is narrowed to keep inside it.
KERNEL_MAX_RATE_STEP = 4.0


@numba.njit(cache=True)
def _conc_grad(ka, cl, v, obs_t, dose_t, dose_a, out, grad):
    """One-compartment concentrations (ng/mL) at ``obs_t`` and their gradient in (ka, cl, v)."""
    p = np.array([ka, cl, v])
    g = np.zeros(3)
    for i in range(obs_t.size):
        c = 0.0
        gi0 = gi1 = gi2 = 0.0
        for d in range(dose_t.size):
            tau = obs_t[i] - dose_t[d]
            if tau < 0 or dose_a[d] == 0:
                continue
            c += dose_a[d] * unit_response(tau, p, g)
            gi0 += dose_a[d] * g[0]
            gi1 += dose_a[d] * g[1]
            gi2 += dose_a[d] * g[2]
        out[i] = 1000.0 * c
        grad[i, 0], grad[i, 1], grad[i, 2] = 1000.0 * gi0, 1000.0 * gi1, 1000.0 * gi2


def residual_nll(err: ResidualError, y: np.ndarray, f: np.ndarray):
    """-log p(y | f) per observation and its derivative in f (arrays broadcast)."""
    f = np.asarray(f, float)
    if err.lognormal:
        s = err.prop
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (np.log(y) - np.log(f)) / s
            nll = 0.5 * r * r + math.log(s) + np.log(y) + 0.5 * math.log(2 * math.pi)
            d = -r / (s * f)
        bad = ~(f > 0)
        return np.where(bad, np.inf, nll), np.where(bad, 0.0, d)
    var = (err.prop * f) ** 2 + err.add**2
    with np.errstate(divide="ignore", invalid="ignore"):
        r = y - f
        nll = 0.5 * r * r / var + 0.5 * np.log(2 * math.pi * var)
        dvar = 2 * err.prop**2 * f
        d = -r / var + 0.5 * dvar * (1.0 / var - r * r / var**2)
    bad = ~(var > 0)
    return np.where(bad, np.inf, nll), np.where(bad, 0.0, d)


def _check_residual(err: ResidualError, field: str, y: np.ndarray, first_dose_h: float, times: np.ndarray) -> None:
    if err.lognormal and err.add > 0:
        raise PKPDInputError(f"{field}: a log-normal error with an additive part (add {err.add:g}) has no closed-form "
                             "likelihood; use add = 0 or a normal residual error for forecasting.")
    if err.lognormal and y.size and (y <= 0).any():
        raise PKPDInputError(f"{field}: value {y[y <= 0][0]:g} is not > 0, impossible under the model's log-normal "
                             "error; remove it or correct it.")
    if not err.lognormal and err.add == 0 and (times <= first_dose_h).any():
        raise PKPDInputError(f"{field}: an observation at {times[times <= first_dose_h][0]:g} h is at or before the first "
                             "dose, where the model predicts exactly 0 and a proportional error gives it no likelihood; drop it.")


class Prior:
    """The Gaussian prior of ``z`` (names, mean, covariance), its box and the
    enrolment (screening) term; :meth:`nlp` is -log prior and its gradient."""

    def __init__(self, model: PKPDModel, history: PatientHistory, enrolled: bool = True):
        names, omega = model.omega_matrix()
        mean = np.zeros(len(names))
        cov = omega
        self.model = model
        self.baseline_index = None
        self.selection = None
        b = model.baseline
        base = model.pd.BASELINE
        if b is not None:
            if base in names:  # the baseline law replaces the IIV of PLT0 (as sample_parameters does)
                keep = [i for i, n in enumerate(names) if n != base]
                names, mean, cov = [names[i] for i in keep], mean[keep], cov[np.ix_(keep, keep)]
            sd = b.sd_log
            low, high = b.low, b.high
            if isinstance(b, ScreenedBaseline):
                sd = math.sqrt(b.sd_log**2 - b.noise**2)
                if enrolled:
                    self.selection = b  # the unseen screening count was in [low, high)
                low, high = 0.0, np.inf
            names = [*names, base]
            mean = np.append(mean, math.log(b.median / model.typical[base]))
            c = np.zeros((len(names), len(names)))
            c[:-1, :-1] = cov
            c[-1, -1] = sd**2
            cov = c
            self.baseline_index = len(names) - 1
            self._trunc = (low, high)
        self.names = list(names)
        self.mean, self.cov = mean, cov
        self.sd = np.sqrt(np.diag(cov)) if len(names) else np.zeros(0)
        self.precision = np.linalg.inv(cov) if len(names) else np.zeros((0, 0))
        self.lower, self.upper = mean - BOX_SD * self.sd, mean + BOX_SD * self.sd
        if self.baseline_index is not None:
            typ = model.typical[base]
            low, high = self._trunc
            if low > 0:
                self.lower[-1] = max(self.lower[-1], math.log(low / typ))
            if np.isfinite(high):
                self.upper[-1] = min(self.upper[-1], math.log(high / typ))
        self.typical = np.array([model.typical[n] for n in self.names])

    @property
    def dim(self) -> int:
        return len(self.names)

    def inside(self, Z: np.ndarray) -> np.ndarray:
        return ((Z >= self.lower - 1e-12) & (Z <= self.upper + 1e-12)).all(axis=-1)

    def nlp(self, z: np.ndarray):
        """-log prior (up to a constant) of ``z`` (d,) and its gradient."""
        dz = z - self.mean
        g = self.precision @ dz
        value = 0.5 * float(dz @ g)
        if self.selection is not None:
            v, dv = self._selection(z[self.baseline_index])
            value += v
            g = g.copy()
            g[self.baseline_index] += dv
        return value, g

    def nlp_batch(self, Z: np.ndarray) -> np.ndarray:
        dz = Z - self.mean
        value = 0.5 * np.einsum("si,ij,sj->s", dz, self.precision, dz)
        if self.selection is not None:
            value = value + np.array([self._selection(x)[0] for x in Z[:, self.baseline_index]])
        return value

    def _selection(self, zb: float):
        """-log P(screening count in [low, high) | true baseline) and its derivative in zb."""
        b = self.selection
        x = math.log(self.typical[self.baseline_index]) + zb
        a = (math.log(b.low) - x) / b.noise if b.low > 0 else -np.inf
        c = (math.log(b.high) - x) / b.noise if np.isfinite(b.high) else np.inf
        p = ndtr(c) - ndtr(a)
        if p <= 1e-300:
            return float(-log_ndtr(-abs(c))) + 700.0, 0.0
        pdf = lambda u: 0.0 if not np.isfinite(u) else math.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)  # noqa: E731
        return -math.log(p), (pdf(c) - pdf(a)) / b.noise / p


def kernel_covers(model: PKPDModel, names) -> bool:
    """Whether the compiled fitting kernels (exact adjoint) cover this model."""
    t = model.typical
    return (model.pk is OneCompartmentOral and model.pd is TransitPlatelets and t["hill"] == 1 and t["gamma"] == 0
            and int(t["n_transit"]) == platelet_op.N_TRANSIT and set(names) <= set(platelet_op.PARAMS))


class PatientDensity:
    """-log posterior of ``z`` for one responder status (see the module docstring).

    ``method``: "adjoint" (compiled kernels, exact gradient), "simulator"
    (finite differences through the simulation solver) or "auto" (the
    adjoint where :func:`kernel_covers` says so).
    """

    def __init__(self, model: PKPDModel, history: PatientHistory, responder: bool = True,
                 prior: Prior | None = None, method: str = "auto"):
        if not isinstance(model, PKPDModel):
            raise PKPDInputError(f"model must be a pkpd.population.PKPDModel; got {type(model).__name__}.")
        if method not in ("auto", "adjoint", "simulator"):
            raise PKPDInputError(f"method must be 'auto', 'adjoint' or 'simulator'; got {method!r}.")
        self.model, self.history, self.responder = model, history, bool(responder)
        self.prior = Prior(model, history) if prior is None else prior
        h = history
        _check_residual(model.residual_plt, "counts", h.counts, h.first_dose_h, h.count_times_h)
        _check_residual(model.residual_conc, "conc_ng_ml", h.conc_ng_ml, h.first_dose_h, h.conc_times_h)
        self._index = [model.parameter_names.index(n) for n in self.prior.names]
        self._typical_row = np.array([model.typical[p] for p in model.parameter_names])
        covered = kernel_covers(model, self.prior.names)
        if method == "adjoint" and not covered:
            raise PKPDInputError("method 'adjoint' needs one-compartment oral PK, 4 transit compartments, hill 1, gamma 0 "
                                 "and IIV only on the kernels' parameters; use method='simulator'.")
        self.method = "adjoint" if (method == "adjoint" or (method == "auto" and covered)) else "simulator"
        self.lower, self.upper = self.prior.lower.copy(), self.prior.upper.copy()
        if self.method == "adjoint":
            try:
                self._setup_kernel()
            except PKPDInputError:
                if method == "adjoint":
                    raise
                self.method = "simulator"
        self.times = np.union1d(h.count_times_h, h.conc_times_h)
        self._count_at = np.searchsorted(self.times, h.count_times_h)
        self._conc_at = np.searchsorted(self.times, h.conc_times_h)

    # ------------------------------------------------------------ parameters
    @property
    def dim(self) -> int:
        return self.prior.dim

    def rows(self, Z: np.ndarray, responder=None) -> np.ndarray:
        """Full parameter rows (S, P) in ``model.parameter_names`` order for ``Z`` (S, d)."""
        Z = np.atleast_2d(Z)
        out = np.tile(self._typical_row, (Z.shape[0], 1))
        out[:, self._index] = self.prior.typical * np.exp(Z)
        resp = np.full(Z.shape[0], self.responder) if responder is None else np.asarray(responder, bool)
        out[~resp, self.model.parameter_names.index(self.model.pd.DRUG_EFFECT)] = 0.0
        return out

    def frame(self, Z: np.ndarray, responder=None) -> pd.DataFrame:
        """The individual parameters of ``Z`` as a DataFrame (one row per set)."""
        rows = self.rows(Z, responder)
        return pd.DataFrame(rows, columns=list(self.model.parameter_names))

    # ------------------------------------------------------------ compiled kernels
    def _setup_kernel(self) -> None:
        h = self.history
        grid = platelet_grid([Regimen.from_doses(h.dose_times_h, h.dose_mg)], np.zeros(h.counts.size, int),
                             h.count_times_h)
        self._grid = grid
        self._const = platelet_op.grid_constants(grid)
        self._kernel = platelet_op
        self._kparams = platelet_op.PARAMS
        self._kpos = [self._kparams.index(n) for n in self.prior.names]
        self._kbase = np.array([self.model.typical[p] for p in self._kparams])
        # keep kdeg h and ktr h inside the kernels' exact range
        for name, rate in (("lifespan", 1.0), ("mtt", float(self.model.typical["n_transit"]))):
            if name in self.prior.names:
                i = self.prior.names.index(name)
                least = rate * grid.h / KERNEL_MAX_RATE_STEP
                self.lower[i] = max(self.lower[i], math.log(least / self.model.typical[name]))
        if self.lower.size and (self.lower > self.upper).any():
            raise PKPDInputError("the prior box leaves no room inside the kernels' range; use method='simulator'.")

    def _kernel_value_grad(self, z: np.ndarray):
        k, h = self._kernel, self.history
        par = self._kbase.copy()
        par[self._kpos] = self.prior.typical * np.exp(z)
        if not self.responder:
            par[self._kparams.index("emax")] = 0.0
        params = par[:, None].copy()
        n = int(self.model.typical["n_transit"])
        pred, states, tables = k.platelet_forward(params, *self._const, n, self._grid.h, MG_PER_L_TO_NG_PER_ML)
        nll, d = residual_nll(self.model.residual_plt, h.counts, pred)
        value = float(nll.sum())
        gp = k.platelet_vjp(params, *self._const, n, self._grid.h, MG_PER_L_TO_NG_PER_ML, states, tables, d)[:, 0]
        if h.conc_ng_ml.size:
            c = np.empty(h.conc_ng_ml.size)
            dc = np.empty((h.conc_ng_ml.size, 3))
            _conc_grad(par[0], par[1], par[2], h.conc_times_h, h.dose_times_h, h.dose_mg, c, dc)
            nll_c, d_c = residual_nll(self.model.residual_conc, h.conc_ng_ml, c)
            value += float(nll_c.sum())
            gp[:3] += d_c @ dc
        grad = gp[self._kpos] * par[self._kpos]
        return value, grad

    # ------------------------------------------------------------ simulator
    def nll_batch(self, Z: np.ndarray, responder=None, paths: np.ndarray | None = None) -> np.ndarray:
        """-log likelihood (S,) of parameter sets ``Z`` (S, d) through the
        simulation solver; ``paths`` (S, G): disease-fluctuation paths."""
        Z = np.atleast_2d(Z)
        h = self.history
        options = {}
        if paths is not None and self.model.fluctuation is not None and self.model.fluctuation.sd_log > 0:
            options["_path"] = np.ascontiguousarray(paths)
        solver = self.model.solver(self.frame(Z, responder), **options)
        conc, plt, _ = solver.run(h.dose_times_h, h.dose_mg, self.times)
        nll, _ = residual_nll(self.model.residual_plt, h.counts, plt[:, self._count_at])
        out = nll.sum(axis=1)
        if h.conc_ng_ml.size:
            nll_c, _ = residual_nll(self.model.residual_conc, h.conc_ng_ml, conc[:, self._conc_at])
            out = out + nll_c.sum(axis=1)
        return out

    def _simulator_value_grad(self, z: np.ndarray):
        d = self.dim
        Z = np.tile(z, (2 * d + 1, 1))
        for i in range(d):
            Z[1 + 2 * i, i] += FD_STEP
            Z[2 + 2 * i, i] -= FD_STEP
        v = self.nll_batch(Z)
        grad = (v[1::2] - v[2::2]) / (2 * FD_STEP)
        return float(v[0]), grad

    # ------------------------------------------------------------ the density
    def __call__(self, z) -> tuple[float, np.ndarray]:
        """-log posterior (up to a constant) of ``z`` (d,) and its gradient."""
        z = np.asarray(z, float)
        if self.method == "adjoint":
            value, grad = self._kernel_value_grad(z)
        else:
            value, grad = self._simulator_value_grad(z)
        p, gp = self.prior.nlp(z)
        if not np.isfinite(value):
            return np.inf, np.zeros_like(z)
        return value + p, grad + gp

    def batch(self, Z: np.ndarray, responder=None, paths=None) -> np.ndarray:
        """-log posterior (S,) of ``Z`` (S, d) through the simulation solver (inf outside the box)."""
        Z = np.atleast_2d(Z)
        resp = np.full(Z.shape[0], self.responder) if responder is None else np.asarray(responder, bool)
        return pooled_batch([self], np.zeros(Z.shape[0], int), Z, resp, paths)


def pooled_batch(densities, which: np.ndarray, Z: np.ndarray, responder: np.ndarray, paths=None) -> np.ndarray:
    """-log posterior (S,) of ``Z`` (S, d), row s under ``densities[which[s]]`` with status
    ``responder[s]`` (inf outside that density's prior box), in one run of the simulation
    solver.  The densities share the patient and the model's structure (pk, pd,
    fluctuation); they may differ in typical values, IIV and residual errors (one per
    population draw, :mod:`pkpd.forecast.population`).  Each density's -log prior is its
    quadratic form (and screening term) without the normalising constant."""
    Z = np.atleast_2d(Z)
    which = np.asarray(which, int)
    responder = np.asarray(responder, bool)
    first = densities[0]
    h, model = first.history, first.model
    out = np.full(Z.shape[0], np.inf)
    ok = np.zeros(Z.shape[0], bool)
    rows = np.empty((Z.shape[0], len(model.parameter_names)))
    for k, d in enumerate(densities):
        sel = which == k
        if sel.any():
            ok[sel] = d.prior.inside(Z[sel])
            rows[sel] = d.rows(Z[sel], responder[sel])
    if not ok.any():
        return out
    options = {}
    if paths is not None and model.fluctuation is not None and model.fluctuation.sd_log > 0:
        options["_path"] = np.ascontiguousarray(paths[ok])
    solver = model.solver(pd.DataFrame(rows[ok], columns=list(model.parameter_names)), **options)
    conc, plt, _ = solver.run(h.dose_times_h, h.dose_mg, first.times)
    kept = np.flatnonzero(ok)
    for k, d in enumerate(densities):
        sel = which[kept] == k
        if not sel.any():
            continue
        nll, _ = residual_nll(d.model.residual_plt, h.counts, plt[sel][:, first._count_at])
        value = nll.sum(axis=1)
        if h.conc_ng_ml.size:
            nll_c, _ = residual_nll(d.model.residual_conc, h.conc_ng_ml, conc[sel][:, first._conc_at])
            value = value + nll_c.sum(axis=1)
        out[kept[sel]] = value + d.prior.nlp_batch(Z[kept[sel]])
    return out
