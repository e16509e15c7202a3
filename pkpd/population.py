"""Population model specifications: structure, typical values, variability and residual error.

A :class:`PKPDModel` is a small frozen description, not a simulator: it names
its structure (a PK model of :mod:`pkpd.exposure` and a PD model of
:mod:`pkpd.response`), says which parameters a population has (typical
values, log-normal inter-individual variability, optional correlations), how
observations scatter around the model (residual error) and, for a disease
population, how the baseline and the drug response differ between patients.
:func:`pkpd.simulate` and :func:`pkpd.simulate_population` turn it into
numbers; a drug's file (:mod:`pkpd.drugs`) fills it with sourced values.

The parameters are the PK model's followed by the PD model's, with their
units (for the default structure: ka 1/h, cl L/h, v L, emax fold, ec50 ng/mL,
hill -, n_transit -, mtt h, gamma -, plt0 10^9/L, lifespan h).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from statistics import NormalDist
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np
import pandas as pd

from .checks import PKPDInputError, nonnegative, real
from .exposure import PKModel
from .fluctuation import Fluctuation
from .one_compartment import OneCompartmentOral
from .pd import TransitPlatelets
from .response import PDModel, Solver

#: Parameter names of the default structure (one-compartment oral PK, transit
#: platelets) in their canonical order, with units.
PARAMETER_UNITS = MappingProxyType({**OneCompartmentOral.PARAMETERS, **TransitPlatelets.PARAMETERS})
PARAMETERS = tuple(PARAMETER_UNITS)


def did_you_mean(name: str, known) -> str:
    close = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def known_parameters(values: Mapping, where: str, known=PARAMETERS) -> None:
    """Refuse names that are not model parameters, suggesting the nearest one."""
    for name in values:
        if name not in known:
            raise PKPDInputError(
                f"{where} got unknown parameter {name!r}.{did_you_mean(str(name), known)} "
                f"Known parameters: {', '.join(known)}."
            )


# The standard normal CDF and quantile, from the standard library (Wichura's AS241
# in C) rather than scipy.special, whose import alone costs ~0.25 s of a fresh
# process that only simulates.
_STANDARD_NORMAL = NormalDist()
_quantiles = np.vectorize(_STANDARD_NORMAL.inv_cdf, otypes=[float])


def _ndtr(x: float) -> float:
    """Standard normal CDF at the scalar ``x``."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _ndtri(u: np.ndarray) -> np.ndarray:
    """Standard normal quantiles of ``u`` in (0, 1) (a draw of exactly 0, probability 2^-53, is moved
    to the smallest positive double, where the quantile is finite)."""
    return _quantiles(np.clip(u, np.finfo(float).tiny, 1.0 - np.finfo(float).epsneg))


@dataclass(frozen=True)
class ResidualError:
    """Residual error of one observation type: y = f (1 + prop eps1) + add eps2,
    eps ~ N(0, 1).  ``add`` is in the observation's unit (ng/mL or 10^9/L).

    ``lognormal=True`` uses y = f exp(prop eps1) instead (always positive, the
    usual choice for platelet counts)."""

    prop: float = 0.0
    add: float = 0.0
    lognormal: bool = False

    def __post_init__(self):
        nonnegative("residual prop", self.prop)
        nonnegative("residual add", self.add)

    def sample(self, pred: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Observed values around ``pred``, never negative."""
        pred = np.asarray(pred, float)
        if self.lognormal:
            out = pred * np.exp(self.prop * rng.standard_normal(pred.shape))
        else:
            out = pred * (1 + self.prop * rng.standard_normal(pred.shape))
        if self.add:
            out = out + self.add * rng.standard_normal(pred.shape)
        return np.maximum(out, 0.0)


@dataclass(frozen=True)
class Baseline:
    """Distribution of PLT0 (10^9/L): log-normal with ``median`` and ``sd_log``,
    truncated to [low, high] by inverse-CDF sampling (no rejection loop)."""

    median: float
    sd_log: float
    low: float = 0.0
    high: float = np.inf

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        mu = np.log(self.median)
        lo = _ndtr((np.log(self.low) - mu) / self.sd_log) if self.low > 0 else 0.0
        hi = _ndtr((np.log(self.high) - mu) / self.sd_log) if np.isfinite(self.high) else 1.0
        u = rng.uniform(lo, hi, n)
        return np.exp(mu + self.sd_log * _ndtri(u))


@dataclass(frozen=True)
class PKPDModel:
    """A population PK/PD model specification (immutable).

    typical : typical value of each parameter of the structure (``parameters``
        lists them with units).
    iiv : log-normal inter-individual variability as CV (e.g. 0.3 = 30%);
        parameters not listed have none.  CV is converted with
        omega^2 = ln(1 + CV^2).
    corr : correlations between etas, {("cl", "v"): 0.5, ...}.
    residual_conc, residual_plt : residual error of concentrations (ng/mL) and
        platelet counts (10^9/L).
    baseline : if given, PLT0 is drawn from it instead of typical*exp(eta).
    nonresponder_fraction : share of patients in whom the drug has no effect
        (the PD model's ``DRUG_EFFECT`` parameter, e.g. Emax, is 0), a known
        feature of TPO-receptor agonists in ITP.
    pk, pd : the structure, a :class:`pkpd.exposure.PKModel` and a
        :class:`pkpd.response.PDModel` class (default one-compartment oral
        PK and transit platelets).
    fluctuation : within-patient fluctuation of disease activity (a
        :class:`pkpd.fluctuation.Fluctuation` on the response's production),
        or None.
    """

    name: str
    population: str
    typical: Mapping[str, float]
    iiv: Mapping[str, float] = field(default_factory=dict)
    corr: Mapping[tuple[str, str], float] = field(default_factory=dict)
    residual_conc: ResidualError = ResidualError(prop=0.2)
    residual_plt: ResidualError = ResidualError(prop=0.2)
    baseline: Baseline | None = None
    nonresponder_fraction: float = 0.0
    sources: Mapping[str, str] = field(default_factory=dict)
    pk: type[PKModel] = OneCompartmentOral
    pd: type[PDModel] = TransitPlatelets
    fluctuation: Fluctuation | None = None

    def __post_init__(self):
        if not (isinstance(self.pk, type) and issubclass(self.pk, PKModel)):
            raise PKPDInputError(f"pk must be a PK model class (a pkpd.exposure.PKModel); got {self.pk!r}.")
        if not (isinstance(self.pd, type) and issubclass(self.pd, PDModel)):
            raise PKPDInputError(f"pd must be a PD model class (a pkpd.response.PDModel); got {self.pd!r}.")
        names = self.parameter_names
        known_parameters(self.typical, "typical", names)
        missing = set(names) - set(self.typical)
        if missing:
            raise PKPDInputError(f"typical values missing for {sorted(missing)}; give all of {list(names)}.")
        pk_values = {p: self.typical[p] for p in self.pk.PARAMETERS}
        self.pk.check_solver_range(self.pk.parameter_arrays(**pk_values))
        self.pd.check(**{p: self.typical[p] for p in self.pd.PARAMETERS})
        for name, cv in self.iiv.items():
            if name not in names or name in self.pd.WHOLE:
                raise PKPDInputError(f"iiv names unknown or discrete parameter {name!r}; use one of "
                                     f"{[p for p in names if p not in self.pd.WHOLE]}.")
            nonnegative(f"iiv[{name!r}] (CV)", cv)
        for (a, b), r in self.corr.items():
            if a not in self.iiv or b not in self.iiv:
                raise PKPDInputError(f"corr {(a, b)} names a parameter without IIV; add it to iiv first.")
            if not -1 < r < 1:
                raise PKPDInputError(f"corr {(a, b)} must lie in (-1, 1); got {r!r}.")
        real("nonresponder_fraction", self.nonresponder_fraction)
        if not 0 <= self.nonresponder_fraction < 1:
            raise PKPDInputError(
                f"nonresponder_fraction must be in [0, 1); got {self.nonresponder_fraction!r}."
            )
        object.__setattr__(self, "typical", MappingProxyType({k: float(self.typical[k]) for k in names}))
        object.__setattr__(self, "iiv", MappingProxyType(dict(self.iiv)))
        object.__setattr__(self, "corr", MappingProxyType(dict(self.corr)))
        self.omega_matrix()  # fails early if the correlations are not positive definite

    # ------------------------------------------------------------ structure
    @property
    def parameter_names(self) -> tuple[str, ...]:
        """The structure's parameters: the PK model's, then the PD model's."""
        return (*self.pk.PARAMETERS, *self.pd.PARAMETERS)

    @property
    def parameter_units(self) -> Mapping[str, str]:
        """Unit of each parameter, by name."""
        return MappingProxyType({**self.pk.PARAMETERS, **self.pd.PARAMETERS})

    def solver(self, parameters: pd.DataFrame, rng: np.random.Generator | None = None, **options) -> Solver:
        """The PD model's solver for individual ``parameters`` (a DataFrame with
        one row per subject and a column per parameter).

        ``rng`` (a numpy Generator) draws the model's disease fluctuation, if it
        has one; without it the fluctuation is left out (the deterministic
        course, as for a typical individual)."""
        names = self.parameter_names
        missing = [p for p in names if p not in parameters]
        if missing:
            raise PKPDInputError(f"parameters lack columns {missing}; give every one of {list(names)}.")
        if len(parameters) < 1:
            raise PKPDInputError("parameters has no rows; the population size must be >= 1.")
        pk_params = self.pk.parameter_arrays(**{p: parameters[p].to_numpy(float) for p in self.pk.PARAMETERS})
        pd_params = self.pd.check(**{p: parameters[p].to_numpy(float) for p in self.pd.PARAMETERS})
        if self.fluctuation is not None and self.fluctuation.sd_log > 0:
            options = {**options, "fluctuation": self.fluctuation, "rng": rng}
        return self.pd.solver(self.pk, pk_params, pd_params, **options)

    # ------------------------------------------------------------ transforms
    def with_typical(self, **values) -> "PKPDModel":
        """A copy with some typical values replaced (pharmpy-style functional update)."""
        known_parameters(values, "with_typical", self.parameter_names)
        return dataclasses.replace(self, typical={**self.typical, **values})

    def with_(self, **fields) -> "PKPDModel":
        """A copy with other fields replaced (iiv, corr, residual_plt, ...)."""
        names = [f.name for f in dataclasses.fields(self)]
        for name in fields:
            if name not in names:
                hint = did_you_mean(name, names)
                if name in self.parameter_names:
                    hint = f" {name!r} is a parameter: use with_typical({name}=...)."
                raise PKPDInputError(f"with_ got unknown field {name!r}.{hint} Fields: {', '.join(names)}.")
        return dataclasses.replace(self, **fields)

    # ------------------------------------------------------------ variability
    def omega_matrix(self) -> tuple[list[str], np.ndarray]:
        """Names with IIV and their eta covariance matrix (log scale)."""
        names = [p for p in self.parameter_names if self.iiv.get(p, 0) > 0]
        sd = np.sqrt(np.log1p(np.array([self.iiv[p] for p in names]) ** 2))
        corr = np.eye(len(names))
        for (a, b), r in self.corr.items():
            if a in names and b in names:
                i, j = names.index(a), names.index(b)
                corr[i, j] = corr[j, i] = r
        if names and np.linalg.eigvalsh(corr).min() <= 0:
            raise PKPDInputError(f"the correlations {dict(self.corr)} do not form a positive-definite matrix.")
        return names, corr * np.outer(sd, sd)

    def sample_parameters(self, n: int, seed=None) -> pd.DataFrame:
        """Draw ``n`` individuals: DataFrame with ID (1..n), every parameter and
        ``responder`` (bool).  Reproducible for a given seed."""
        if int(n) != n or n < 1:
            raise PKPDInputError(f"population size n must be a whole number >= 1; got {n!r}.")
        n = int(n)
        rng = np.random.default_rng(seed)
        names, cov = self.omega_matrix()
        eta = rng.multivariate_normal(np.zeros(len(names)), cov, size=n, method="cholesky") if names else None
        out = {"ID": np.arange(1, n + 1)}
        for p in self.parameter_names:
            out[p] = np.full(n, self.typical[p])
        for i, p in enumerate(names):
            out[p] = out[p] * np.exp(eta[:, i])
        if self.baseline is not None:
            out[self.pd.BASELINE] = self.baseline.sample(n, rng)
        responder = rng.uniform(size=n) >= self.nonresponder_fraction
        out[self.pd.DRUG_EFFECT] = np.where(responder, out[self.pd.DRUG_EFFECT], 0.0)
        out["responder"] = responder
        return pd.DataFrame(out)

    def typical_parameters(self) -> pd.DataFrame:
        """One row: the typical individual (ID 1, a responder)."""
        return pd.DataFrame({"ID": [1], **{p: [v] for p, v in self.typical.items()}, "responder": [True]})

    def describe(self) -> pd.DataFrame:
        """Everything that defines the model, one number per row.

        Index (part, name); columns value, unit, iiv_cv (CV, parameters only),
        meaning and source.  Parts: ``parameter`` (typical values with their
        IIV), ``correlation`` (between etas), ``residual`` (concentration
        error and platelet visit noise), ``baseline`` (how PLT0 is drawn:
        from its IIV, or the screened ITP baseline and its enrolment rule),
        ``response`` (share of non-responders) and ``disease`` (the
        within-patient fluctuation, when the model has one).  ``print(model.describe()
        .to_string())`` shows it whole.
        """
        units, meanings = self.parameter_units, {**self.pk.MEANINGS, **self.pd.MEANINGS}
        rows = [("parameter", p, self.typical[p], units[p], self.iiv.get(p, 0.0), meanings.get(p, ""),
                 self.sources.get(p, "")) for p in self.parameter_names]
        nan = np.nan
        for (a, b), r in self.corr.items():
            rows.append(("correlation", f"{a}, {b}", r, "-", nan, f"correlation of eta_{a} and eta_{b}",
                         self.sources.get("corr", "")))
        for key, what, unit in (("residual_conc", "concentration", "ng/mL"), ("residual_plt", self.pd.OBSERVABLE, self.pd.UNIT)):
            err: ResidualError = getattr(self, key)
            law = (f"observed = true x exp({err.prop:g} eps)" if err.lognormal
                   else f"observed = true x (1 + {err.prop:g} eps)")
            if key == "residual_plt":
                law += ": visit-to-visit noise of each count, seen by titration and endpoints"
            rows.append(("residual", f"{what} prop", err.prop, "log SD" if err.lognormal else "-", nan, law,
                         self.sources.get(key, "")))
            rows.append(("residual", f"{what} add", err.add, unit, nan, f"additive error of {what}, {unit}",
                         self.sources.get(key, "")))
        rows += self._baseline_rows()
        if self.fluctuation is not None:
            f, src = self.fluctuation, self.sources.get("fluctuation", "")
            rows += [("disease", "fluctuation sd_log", f.sd_log, "log SD", nan,
                      f"stationary SD of log production (AR(1) per {f.interval_h:g} h, pkpd.Fluctuation)", src),
                     ("disease", "fluctuation time_h", f.time_h, "h", nan,
                      "correlation time of the disease-activity fluctuation", src)]
        rows.append(("response", "nonresponder_fraction", self.nonresponder_fraction, "-", nan,
                     f"share of patients without drug effect ({self.pd.DRUG_EFFECT} = 0)", self.sources.get("nonresponder_fraction", "")))
        table = pd.DataFrame(rows, columns=["part", "name", "value", "unit", "iiv_cv", "meaning", "source"])
        return table.set_index(["part", "name"])

    def _baseline_rows(self) -> list[tuple]:
        """describe() rows for how PLT0 is drawn."""
        nan, src = np.nan, self.sources.get("baseline", "")
        b = self.baseline
        if b is None:
            b = self.pd.BASELINE
            return [("baseline", b, self.typical[b], self.pd.UNIT, self.iiv.get(b, 0.0),
                     f"{b} = typical {b} x exp(eta), no screening", self.sources.get(b, ""))]
        screened = isinstance(b, ScreenedBaseline)
        what = "screening count" if screened else "PLT0"
        rows = [
            ("baseline", "median", b.median, "10^9/L", nan, f"median of the log-normal {what} before truncation", src),
            ("baseline", "sd_log", b.sd_log, "log SD", nan, f"SD of the log {what}", src),
            ("baseline", "low", b.low, "10^9/L", nan, f"enrolled if the {what} is >= low", src),
            ("baseline", "high", b.high, "10^9/L", nan, "... and < high", src),
        ]
        if screened:
            rows.append(("baseline", "noise", b.noise, "log SD", nan,
                         "noise of the one screening count; true PLT0 drawn given it (regression to the mean)", src))
        return rows

    def __repr__(self) -> str:
        def num(p):
            return f"{p} {self.typical[p]:.3g}"

        extra = []
        if self.baseline is not None:
            # the median is that of the referred population, before enrolment truncates it
            extra.append(f"baseline {'screening count' if isinstance(self.baseline, ScreenedBaseline) else 'PLT0'} "
                         f"log-normal (median {self.baseline.median:g}) enrolled in "
                         f"[{self.baseline.low:g}, {self.baseline.high:g})")
        if self.nonresponder_fraction:
            extra.append(f"{self.nonresponder_fraction:.0%} non-responders")
        if self.fluctuation is not None and self.fluctuation.sd_log > 0:
            extra.append(f"disease fluctuation log SD {self.fluctuation.sd_log:g} over {self.fluctuation.time_h:g} h")
        noise = self.residual_plt
        extra.append(f"{self.pd.OBSERVABLE} noise {'log SD' if noise.lognormal else 'prop'} {noise.prop:g}")
        iiv = [p for p in self.parameter_names if self.iiv.get(p, 0) > 0]
        return (f"PKPDModel({self.name!r}, {self.population!r}: "
                + ", ".join(num(p) for p in self.parameter_names)
                + f"; IIV on {', '.join(iiv) or 'none'}; " + "; ".join(extra) + "; all of it: .describe())")


@dataclass(frozen=True)
class ScreenedBaseline(Baseline):
    """PLT0 of patients enrolled on one noisy screening count.

    The *screening* count follows the truncated log-normal of :class:`Baseline`
    (``median``, ``sd_log``, enrolled if in [low, high)): that is the baseline a
    trial reports.  A count is the true value times exp(``noise`` eps), eps ~
    N(0, 1), so the true log-count of the referred population has SD
    sqrt(sd_log^2 - noise^2), and the true PLT0 of an enrolled patient is drawn
    from its conditional law given the screening count (a normal on the log
    scale).  Enrolling on a count below a threshold selects counts that
    happened to be low: the true PLT0 lies above the screening count on
    average, and later counts regress towards it (regression to the mean;
    Barnett et al., Int J Epidemiol 2005;34:215).  This is why some placebo
    patients are above 50 x10^9/L at week 8 [I].

    :meth:`sample` returns the true PLT0 (10^9/L); :meth:`sample_screening`
    returns both counts.
    """

    noise: float = 0.0

    def __post_init__(self):
        nonnegative("ScreenedBaseline noise (log SD)", self.noise)
        if not self.noise < self.sd_log:
            raise PKPDInputError(
                f"ScreenedBaseline noise ({self.noise}) must be below sd_log ({self.sd_log}): the screening counts "
                "cannot scatter less than their noise alone. Lower the noise or widen sd_log."
            )

    def sample_screening(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(screening count, true PLT0) of ``n`` enrolled patients, 10^9/L."""
        mu, s_obs = np.log(self.median), self.sd_log
        lo = _ndtr((np.log(self.low) - mu) / s_obs) if self.low > 0 else 0.0
        hi = _ndtr((np.log(self.high) - mu) / s_obs) if np.isfinite(self.high) else 1.0
        log_screen = mu + s_obs * _ndtri(rng.uniform(lo, hi, n))
        var_true = s_obs**2 - self.noise**2
        shrink = var_true / s_obs**2
        sd_cond = np.sqrt(var_true * self.noise**2) / s_obs
        log_true = mu + shrink * (log_screen - mu) + sd_cond * rng.standard_normal(n)
        return np.exp(log_screen), np.exp(log_true)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """True PLT0 of ``n`` enrolled patients, 10^9/L."""
        return self.sample_screening(n, rng)[1]
