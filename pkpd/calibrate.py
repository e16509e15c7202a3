"""Calibration of a population model to published summary endpoints.

Model-based meta-analysis style: the data are published counts (``k`` of
``n`` patients with a binomial trial endpoint, e.g. 99 of 168 responders at
week 8), each tied to a trial design (a scenario file or a
:class:`~pkpd.trial.Trial`) and an arm; the unknowns are a few model
parameters.  Both are data:

* :class:`Target` (``design, endpoint, arm, k, n, source``), also as a
  DataFrame or CSV (:func:`targets_frame`, :func:`targets_from_frame`);
* :class:`Parameter` (``name, low, high, log``).  A name addresses the model:
  a typical value (``"ec50"``, :meth:`PKPDModel.with_typical`), a number
  field of :class:`~pkpd.population.PKPDModel` (``"nonresponder_fraction"``,
  :meth:`PKPDModel.with_`), or a number inside a dataclass field
  (``"residual_plt.prop"``, ``"baseline.noise"``: :func:`dataclasses.replace`
  of that field).

**Objective.**  Minus the binomial log-likelihood of the published counts at
the model's simulated rates, summed over the targets:
``-sum_i log Binom(k_i; n_i, p_i)``.  ``p_i`` is the share of simulated
patients of the arm with the endpoint, over ``replicates`` replicate trials
of the design (``replicates x`` the design's arm size virtual patients), clipped
to ``[floor, 1 - floor]`` with ``floor = 0.5 / (n_sim + 1)``, so that a
simulated 0 of ``n_sim`` (which only says the rate is below about
``1 / n_sim``) does not make the likelihood -inf.  Deviances
``2 [k log(k / (n p)) + (n - k) log((n - k) / (n (1 - p)))]`` against the
saturated model are reported per target; the objective is half their sum
plus a constant.

**Common random numbers.**  Every candidate runs every design with the same
seed, so the same virtual patients, the same IIV draws, the same
non-responder lottery and the same visit noise: the objective changes only
through the parameters, not through Monte Carlo reshuffling.  The model draws
a fixed number of random numbers whatever the parameter values, with one
exception: an IIV or an additive residual error that is exactly 0 draws
nothing, so a bound of 0 on such a parameter shifts the streams; keep its
lower bound above 0.

**Optimiser.**  The objective is a sum of squared signed deviance residuals
(``deviance = sum r_i^2``), so a bounded trust-region Gauss-Newton method,
:func:`scipy.optimize.least_squares` (``"trf"``), uses its structure: about
``p + 1`` simulations per iteration and a handful of iterations, where a
simplex method needs hundreds for 6 parameters.  It works on the unit cube
(each parameter scaled to [0, 1] between its bounds, on the log scale for
``log=True``) with a forward-difference Jacobian of step :data:`JACOBIAN_STEP`
(0.05 of the range): with common random numbers the simulated rates are step
functions of the parameters with steps of ``1 / n_sim``, far below the rate
change over such a step, so the difference quotients are smooth.
``method="Nelder-Mead"`` or ``"Powell"`` (:func:`scipy.optimize.minimize`
with the same bounds) are derivative-free alternatives.  Deterministic for a
seed.

**Where it runs.**  ``workers`` (see :mod:`pkpd.distributed`) is passed to
every simulation's :meth:`Trial.run <pkpd.trial.Trial.run>`, which spreads
the replicates over the workers; a local cluster (``workers=2``) is started
once for a whole :meth:`Calibrator.fit` or :meth:`Calibrator.evaluate`.
Every replicate keeps its seed, so the calibration is bit-identical whatever
``workers``.

**Intervals.**  95% profile-likelihood intervals: for each parameter, the
values where the objective, minimised over the other parameters, rises by
``chi2(1).ppf(0.95) / 2 = 1.92`` above its minimum.  Each side is found by
secant steps on the signed root of the profile deviance (nearly linear in the
parameter; regula falsi once the limit is bracketed), re-optimising the
other parameters at each step for at most :data:`PROFILE_ITERATIONS`
iterations, to a root deviance of 1.96 +- 0.08.  With ``"trf"`` each step
starts from the other parameters' optimum of the residuals linearised with
the fit's Jacobian at the optimum (from the nearest inner step) and updates
that Jacobian by secant (Broyden) steps, so a step costs about as many
simulations as iterations, not ``p + 1`` per iteration.  An interval that reaches a bound is reported as the bound
(``low_at_bound`` / ``high_at_bound``); a limit not bracketed in 10 steps is
NaN.  Should a profile point fit better than the optimum, the optimum moves
there (later profiles are measured from it).  The Monte Carlo error of the
simulated rates is not in the interval; the target table gives it
(``model_se``).  A parametric bootstrap would need one full refit per
bootstrap sample, which the time budget (6 parameters in 10 minutes) does
not allow.
"""

from __future__ import annotations

import dataclasses
import functools
import sys
import time
import tomllib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import optimize
from scipy.special import xlogy
from scipy.stats import binom, chi2
from tqdm import tqdm

from . import drugs
from .checks import PKPDInputError, _is_real, whole
from .distributed import check_workers, client_for
from .endpoints import REGISTRY
from .intervals import clopper_pearson
from .population import PKPDModel, did_you_mean
from .scenario import Scenario, load_scenario
from .trial import Trial
from .trial_plots import _figure

#: Rise of the objective (minus log-likelihood) that bounds a 95% profile interval: chi2(1 df) 0.95 / 2.
PROFILE_DROP = float(chi2.ppf(0.95, 1) / 2)
#: Most optimiser iterations ("trf"; function evaluations for the simplex methods: x 10) when the
#: other parameters are re-optimised at one profile point, starting from the neighbouring point's values.
PROFILE_ITERATIONS = 4
#: Fixed columns of a target table (:func:`targets_frame`).
TARGET_COLUMNS = ("design", "endpoint", "arm", "k", "n", "source", "label")
METHODS = ("trf", "Nelder-Mead", "Powell")
#: Forward-difference step of the "trf" Jacobian, as a share of each parameter's (log) range: large
#: enough that a step moves a simulated rate by many patients (the rates are step functions of the
#: parameters, steps of 1 / n_sim), small enough to follow the curvature.
JACOBIAN_STEP = 0.05


# ================================================================= targets
def design_trial(design) -> Trial:
    """The :class:`~pkpd.trial.Trial` of a design: a scenario file (path), a
    loaded :class:`~pkpd.scenario.Scenario` or a Trial."""
    if isinstance(design, Trial):
        return design
    if isinstance(design, Scenario):
        return design.trial
    if isinstance(design, (str, Path)):
        return load_scenario(design).trial
    raise PKPDInputError(f"target design must be a scenario file path, a pkpd Scenario or a pkpd.Trial; got "
                         f"{type(design).__name__} {design!r}.")


def binomial_endpoints() -> list[str]:
    """The registered endpoints with a yes/no per patient."""
    return [k for k, e in REGISTRY.items() if e.kind == "binomial"]


@dataclass(frozen=True)
class Target:
    """One published result: ``k`` of ``n`` patients of ``arm`` of ``design``
    had the binomial ``endpoint`` (a name of :data:`pkpd.endpoints.REGISTRY`).

    design : a scenario file path, a :class:`~pkpd.scenario.Scenario` or a
        :class:`~pkpd.trial.Trial` (its model is the one calibrated, unless
        :func:`calibrate` gets ``model``).
    source : the citation.  label : a short name for tables (default
        ``"arm: endpoint"``).
    """

    design: object
    endpoint: str
    arm: str
    k: int
    n: int
    source: str
    label: str | None = None

    def __post_init__(self):
        trial = design_trial(self.design)
        if self.endpoint not in REGISTRY or REGISTRY[self.endpoint].kind != "binomial":
            known = binomial_endpoints()
            raise PKPDInputError(f"target endpoint {self.endpoint!r} is not a registered binomial endpoint."
                                 f"{did_you_mean(str(self.endpoint), known)} Use one of {known}.")
        arms = [a.name for a in trial.arms]
        if self.arm not in arms:
            raise PKPDInputError(f"target arm {self.arm!r} is not an arm of design {trial.name!r}."
                                 f"{did_you_mean(str(self.arm), arms)} Arms: {arms}.")
        n = whole(f"target n (patients) of {self.arm!r}", self.n)
        k = whole(f"target k (patients with {self.endpoint}) of {self.arm!r}", self.k, low=0)
        if k > n:
            raise PKPDInputError(f"target k = {k} is more than n = {n} patients ({self.arm!r}, {self.endpoint}); "
                                 "k counts the patients with the endpoint among the n.")
        if not isinstance(self.source, str):
            raise PKPDInputError(f"target source must be a citation text; got {self.source!r}.")
        object.__setattr__(self, "k", k)
        object.__setattr__(self, "n", n)
        if self.label is None:
            object.__setattr__(self, "label", f"{self.arm}: {self.endpoint}")

    @property
    def rate(self) -> float:
        return self.k / self.n


def targets_frame(targets) -> pd.DataFrame:
    """Targets as a DataFrame (columns :data:`TARGET_COLUMNS`); a design that
    is a path stays a path (text in a CSV)."""
    return pd.DataFrame([{c: getattr(t, c) for c in TARGET_COLUMNS} for t in targets], columns=list(TARGET_COLUMNS))


def targets_from_frame(frame) -> list[Target]:
    """Targets from a DataFrame or a CSV file with the columns of
    :func:`targets_frame` (``label`` optional)."""
    if isinstance(frame, (str, Path)):
        frame = pd.read_csv(frame, keep_default_na=False)
    if not isinstance(frame, pd.DataFrame):
        raise PKPDInputError(f"targets must be a DataFrame, a CSV path or a list of Target; got {type(frame).__name__}.")
    missing = [c for c in TARGET_COLUMNS[:-1] if c not in frame.columns]
    if missing:
        raise PKPDInputError(f"target table lacks columns {missing}; give {list(TARGET_COLUMNS)} (label optional).")
    out = []
    for i, row in enumerate(frame.to_dict("records")):
        label = row.get("label")
        label = None if label is None or (isinstance(label, float) and np.isnan(label)) or label == "" else label
        try:
            out.append(Target(row["design"], row["endpoint"], row["arm"], row["k"], row["n"], row["source"], label))
        except PKPDInputError as err:
            raise PKPDInputError(f"target table row {i}: {err}") from None
    return out


def scenario_targets(design, endpoints=None) -> list[Target]:
    """The published results of a scenario file (its ``[[arms.published]]``
    tables) as targets, optionally only those of ``endpoints`` (names)."""
    scenario = design if isinstance(design, Scenario) else _load_once(design)
    return [Target(scenario, p.endpoint, arm, p.responders, p.n, p.source, f"{scenario.name}: {arm}: {p.endpoint}")
            for arm, p in scenario.published_all if endpoints is None or p.endpoint in endpoints]


def _load_once(path) -> Scenario:
    """The scenario file ``path``, loaded once while its content is unchanged: the
    targets of one file then share one Scenario, whose design a calibration
    simulates once (designs are told apart by identity), with the same virtual
    patients for every endpoint of it, as in the trial that published them."""
    path = Path(path)
    if not path.is_file():
        return load_scenario(path)  # its error names the file and the fix
    stat = path.stat()
    return _load_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=32)
def _load_cached(path: str, mtime_ns: int, size: int) -> Scenario:
    return load_scenario(path)


def _as_targets(targets, what: str) -> list[Target]:
    if isinstance(targets, (pd.DataFrame, str, Path)):
        return targets_from_frame(targets)
    targets = list(targets)
    bad = [t for t in targets if not isinstance(t, Target)]
    if bad:
        raise PKPDInputError(f"{what} must be pkpd.calibrate.Target objects (or a DataFrame of them); got {bad[0]!r}.")
    return targets


# ================================================================= parameters
@dataclass(frozen=True)
class Parameter:
    """A model parameter to calibrate, between ``low`` and ``high`` (its unit).

    name : a typical value (``"ec50"``), a number field of the model
        (``"nonresponder_fraction"``) or ``"field.attribute"`` of a dataclass
        field (``"residual_plt.prop"``), or ``"iiv.name"`` for the
        inter-individual CV of a parameter that has IIV (``"iiv.ec50"``).
    log : search on the log scale (needs low > 0).
    start : the starting value (default: the model's current value).
    """

    name: str
    low: float
    high: float
    log: bool = True
    start: float | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise PKPDInputError(f"parameter name must be a text such as 'ec50'; got {self.name!r}.")
        for key in ("low", "high") + (("start",) if self.start is not None else ()):
            value = getattr(self, key)
            if not _is_real(value) or not np.isfinite(value):
                raise PKPDInputError(f"parameter {self.name!r}: {key} must be a finite number; got {value!r}.")
            object.__setattr__(self, key, float(value))
        if not self.low < self.high:
            raise PKPDInputError(f"parameter {self.name!r}: low ({self.low:g}) must be below high ({self.high:g}); "
                                 "give the search range as low < high.")
        if self.log and self.low <= 0:
            raise PKPDInputError(f"parameter {self.name!r}: low = {self.low:g} is not > 0, which a log-scale search "
                                 "needs; give low > 0 or log=False.")
        if self.start is not None:
            self.check_start(self.start, "start")

    def check_start(self, value: float, what: str) -> None:
        if not self.low <= value <= self.high:
            raise PKPDInputError(f"parameter {self.name!r}: {what} {value:g} is outside its bounds "
                                 f"[{self.low:g}, {self.high:g}]; widen the bounds or give start inside them.")

    def to_unit(self, value):
        """The value on the optimiser's [0, 1] scale."""
        if self.log:
            return (np.log(value) - np.log(self.low)) / (np.log(self.high) - np.log(self.low))
        return (value - self.low) / (self.high - self.low)

    def from_unit(self, u):
        u = np.clip(u, 0.0, 1.0)
        if self.log:
            return float(np.exp(np.log(self.low) + u * (np.log(self.high) - np.log(self.low))))
        return float(self.low + u * (self.high - self.low))


def _number(x) -> bool:
    return _is_real(x) and not isinstance(x, (bool, np.bool_))


def addressable(model: PKPDModel) -> list[str]:
    """Every parameter name :class:`Parameter` can address in ``model``."""
    names = [p for p in model.parameter_names if p not in model.pd.WHOLE]
    for f in dataclasses.fields(model):
        value = getattr(model, f.name)
        if _number(value):
            names.append(f.name)
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            names += [f"{f.name}.{g.name}" for g in dataclasses.fields(value) if _number(getattr(value, g.name))]
    names += [f"iiv.{p}" for p in model.iiv]  # the CV of a parameter that has IIV
    return names


def check_names(model: PKPDModel, names) -> None:
    """Refuse a name :func:`current_value` cannot address, with a did-you-mean."""
    known = addressable(model)
    for name in names:
        if name in known:
            continue
        if name in model.pd.WHOLE:
            raise PKPDInputError(f"parameter {name!r} is a whole number shared by all patients and cannot be "
                                 "calibrated continuously; fix it in the model instead.")
        raise PKPDInputError(f"parameter name {name!r} addresses nothing in model {model.name!r}."
                             f"{did_you_mean(name, known)} Addressable: {', '.join(known)}.")


def current_value(model: PKPDModel, name: str) -> float:
    """The model's value of an addressable ``name``."""
    if name in model.typical:
        return float(model.typical[name])
    head, _, attr = name.partition(".")
    if head == "iiv":
        return float(model.iiv[attr])
    value = getattr(model, head)
    return float(getattr(value, attr) if attr else value)


def apply(model: PKPDModel, values) -> PKPDModel:
    """A copy of ``model`` with the addressed ``values`` ({name: value}) set."""
    check_names(model, values)
    typical = {k: v for k, v in values.items() if k in model.typical}
    fields, nested = {}, {}
    for k, v in values.items():
        if k in typical:
            continue
        head, _, attr = k.partition(".")
        if attr:
            nested.setdefault(head, {})[attr] = v
        else:
            fields[k] = v
    for head, subs in nested.items():
        if head == "iiv":
            fields[head] = {**model.iiv, **subs}
        else:
            fields[head] = dataclasses.replace(getattr(model, head), **subs)
    out = model.with_typical(**typical) if typical else model
    return out.with_(**fields) if fields else out


# ================================================================= a problem as a file
#: Keys of a calibration problem file (:func:`load_problem`), per table.
PROBLEM_KEYS = {
    "problem": ("name", "description", "replicates", "seed"),
    "model": ("drug", "population", "pk"),
    "parameters": ("name", "low", "high", "log"),
    "targets": ("design", "endpoints", "arms"),
}
_PROBLEM_TABLES = ("problem", "model", "start", "starts", "parameters", "targets", "holdout")


def _keys(table, allowed, where: str, required=()) -> dict:
    if not isinstance(table, dict):
        raise PKPDInputError(f"{where} must be a table; got {table!r}.")
    for key in table:
        if key not in allowed:
            raise PKPDInputError(f"unknown key {where}.{key}.{did_you_mean(str(key), allowed)} Allowed: {list(allowed)}.")
    missing = [k for k in required if k not in table]
    if missing:
        raise PKPDInputError(f"{where} lacks {missing[0]!r}; give {', '.join(required)}.")
    return table


def _target_tables(tables, where: str, folder: Path) -> list[Target]:
    """[[targets]] / [[holdout]] tables: a scenario file's published results, by endpoint and arm."""
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise PKPDInputError(f"{where} must be [[{where}]] tables with design = \"a scenario file\".")
    out = []
    for i, table in enumerate(tables):
        w = f"{where}[{i}]"
        table = _keys(table, PROBLEM_KEYS["targets"], w, required=("design",))
        design = table["design"]
        if not isinstance(design, str):
            raise PKPDInputError(f"{w}.design must be a scenario file path in quotes (relative to the problem file); "
                                 f"got {design!r}.")
        for key in ("endpoints", "arms"):
            value = table.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise PKPDInputError(f"{w}.{key} must be a list of names in quotes, e.g. {key} = [\"...\"]; got {value!r}.")
        try:
            found = scenario_targets(folder / design, table.get("endpoints") or None)
        except PKPDInputError as err:
            raise PKPDInputError(f"{w}: {err}") from None
        arms = table.get("arms")
        if arms:
            known = sorted({t.arm for t in found})
            for arm in arms:
                if arm not in known:
                    raise PKPDInputError(f"{w}.arms names {arm!r}, not an arm with these published results."
                                         f"{did_you_mean(arm, known)} Arms: {known}.")
            found = [t for t in found if t.arm in arms]
        if not found:
            raise PKPDInputError(f"{w}: {design} has no [[arms.published]] result for endpoints "
                                 f"{table.get('endpoints')}; name endpoints it publishes.")
        out += found
    return out


def load_problem(path) -> dict:
    """A calibration problem from a TOML file, as the keyword arguments of
    :func:`calibrate` (``targets, parameters, holdout, model, starts,
    replicates, seed``): the problem written once, as data, for every run of it
    (``calibrate(**load_problem(path), intervals=...)``).  Layout
    (``scenarios/itp_calibration.toml``)::

        [problem]      name, description, replicates, seed
        [model]        drug, population, pk          (as in a scenario file)
        [start]        "name" = value, ...           (addressable names: set on the model, the search's start)
        [[starts]]     "name" = value, ...           (more starting points of the calibrated parameters)
        [[parameters]] name, low, high, log          (a Parameter; log defaults to true)
        [[targets]]    design, endpoints, arms       (a scenario file's published results, relative to
        [[holdout]]    design, endpoints, arms        this file; default every endpoint and arm)
    """
    path = Path(path)
    if not path.is_file():
        raise PKPDInputError(f"calibration problem file {str(path)!r} not found; give the path to a .toml file "
                             "(e.g. scenarios/itp_calibration.toml).")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise PKPDInputError(f"calibration problem file {path}: not valid UTF-8 TOML ({err}); fix the syntax.") from None
    try:
        for key in data:
            if key not in _PROBLEM_TABLES:
                raise PKPDInputError(f"unknown table [{key}].{did_you_mean(str(key), _PROBLEM_TABLES)} "
                                     f"Allowed: {list(_PROBLEM_TABLES)}.")
        for key in ("parameters", "targets"):
            if key not in data:
                raise PKPDInputError(f"no [[{key}]] tables; a problem needs its parameters and its targets.")
        problem = _keys(data.get("problem", {}), PROBLEM_KEYS["problem"], "problem")
        model = drugs.model(**_keys(data.get("model", {}), PROBLEM_KEYS["model"], "model"))
        start = data.get("start", {})
        if not isinstance(start, dict) or not all(_number(v) for v in start.values()):
            raise PKPDInputError(f"[start] must be name = number lines (e.g. ec50 = 26.5); got {start!r}.")
        if start:
            try:
                model = apply(model, start)
            except PKPDInputError as err:
                raise PKPDInputError(f"start: {err}") from None
        params = data["parameters"]
        if not isinstance(params, list) or not all(isinstance(p, dict) for p in params):
            raise PKPDInputError("parameters must be [[parameters]] tables with name, low and high.")
        parameters = []
        for i, p in enumerate(params):
            p = _keys(p, PROBLEM_KEYS["parameters"], f"parameters[{i}]", required=("name", "low", "high"))
            try:
                parameters.append(Parameter(**p))
            except (PKPDInputError, TypeError) as err:
                raise PKPDInputError(f"parameters[{i}]: {err}") from None
        names = [p.name for p in parameters]
        try:
            check_names(model, names)
        except PKPDInputError as err:
            raise PKPDInputError(f"parameters: {err}") from None
        starts = data.get("starts", [])
        if not isinstance(starts, list) or not all(isinstance(p, dict) and all(_number(v) for v in p.values())
                                                   for p in starts):
            raise PKPDInputError(f"starts must be [[starts]] tables of name = number lines; got {starts!r}.")
        for i, point in enumerate(starts):
            unknown = [k for k in point if k not in names]
            if unknown:
                raise PKPDInputError(f"starts[{i}] names {unknown[0]!r}, not a calibrated parameter."
                                     f"{did_you_mean(unknown[0], names)} Calibrated: {names}.")
        targets = _target_tables(data["targets"], "targets", path.parent)
        holdout = _target_tables(data.get("holdout", []), "holdout", path.parent)
    except PKPDInputError as err:
        raise PKPDInputError(f"calibration problem file {path}: {err}") from None
    out = {"targets": targets, "parameters": parameters, "holdout": holdout, "model": model, "starts": starts}
    for key in ("replicates", "seed"):
        if key in problem:
            out[key] = problem[key]
    return out


# ================================================================= the problem
def _signed_deviance(k, n, p):
    """Signed deviance residuals of counts ``k`` of ``n`` at rates ``p`` against the saturated model."""
    dev = 2 * (xlogy(k, k / (n * p)) + xlogy(n - k, (n - k) / (n * (1 - p))))
    return np.sign(k - n * p) * np.sqrt(np.maximum(dev, 0.0))


class Calibrator:
    """The calibration problem: targets, parameters, designs, seeds, and the
    objective with common random numbers.  :func:`calibrate` builds one and
    calls :meth:`fit`; use it directly to evaluate the objective.

    replicates : replicate trials per design per evaluation (virtual patients
        per arm = replicates x the design's arm size).
    seed : root seed; design i runs with ``seeds[i]`` at every evaluation.
    workers : where each simulation's replicates run (see
        :mod:`pkpd.distributed`); :meth:`fit` and :meth:`evaluate` start a
        local cluster once for the whole call.  Results are bit-identical
        whatever ``workers``.  For many direct :meth:`objective` calls, give
        a ``distributed.Client`` (a number starts a cluster per call).
    """

    def __init__(self, targets, parameters, holdout=(), model: PKPDModel | None = None, replicates: int = 50,
                 seed: int = 1, progress: bool = True, workers=None):
        self.targets = _as_targets(targets, "targets")
        self.holdout = _as_targets(holdout, "holdout")
        if not self.targets:
            raise PKPDInputError("targets is empty; give at least one Target (a published k of n).")
        self.parameters = list(parameters)
        bad = [p for p in self.parameters if not isinstance(p, Parameter)]
        if bad or not self.parameters:
            raise PKPDInputError(f"parameters must be a non-empty list of pkpd.calibrate.Parameter; got {bad[0] if bad else '[]'!r}.")
        names = [p.name for p in self.parameters]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise PKPDInputError(f"parameter {dup[0]!r} is listed twice; calibrate each parameter once.")
        if model is not None and not isinstance(model, PKPDModel):
            raise PKPDInputError(f"model must be a pkpd PKPDModel or None; got {type(model).__name__}.")
        self.replicates = whole("replicates", replicates)
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise PKPDInputError(f"seed must be a whole number >= 0; got {seed!r}.")
        self.seed = int(seed)
        self.progress = progress
        self.workers = check_workers(workers)
        self._client = None  # the client of a fit or evaluate under way (None: use self.workers)
        #: step of the forward-difference Jacobian ("trf"), on the [0, 1] scale of each parameter
        self.jacobian_step = JACOBIAN_STEP
        # designs by identity (a path by its resolved text): each is simulated once per evaluation
        self._design_keys, self.trials = [], []
        self._design_of = []
        for t in self.targets + self.holdout:
            key = str(Path(t.design).resolve()) if isinstance(t.design, (str, Path)) else id(t.design)
            if key not in self._design_keys:
                self._design_keys.append(key)
                trial = design_trial(t.design)
                trial.check_size(self.replicates)
                self.trials.append(trial if model is None else dataclasses.replace(trial, model=model))
            self._design_of.append(self._design_keys.index(key))
        self.model = self.trials[0].model if model is None else model
        for trial in self.trials:
            check_names(trial.model, names)
        self.start = {}
        for p in self.parameters:
            value = current_value(self.model, p.name) if p.start is None else p.start
            p.check_start(value, "start" if p.start is not None else "the model's current value (the default start)")
            self.start[p.name] = value
        self.seeds = [int(s) for s in np.random.SeedSequence(self.seed).generate_state(len(self.trials))]
        self._fit_designs = sorted({self._design_of[i] for i in range(len(self.targets))})
        self._cache: dict = {}
        self._jacobian = None  # the last "trf" optimisation's Jacobian (unit scale), at its solution
        self.history: list[dict] = []
        self.stage = "start"
        self._bar = None

    # ------------------------------------------------------------ evaluation
    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def values(self, u) -> dict[str, float]:
        """Parameter values ({name: value}) of a point of the unit cube."""
        return {p.name: p.from_unit(x) for p, x in zip(self.parameters, np.asarray(u, float))}

    def unit(self, values) -> np.ndarray:
        return np.array([p.to_unit(values[p.name]) for p in self.parameters], float)

    def simulate(self, values, designs=None) -> list[dict]:
        """Simulated rate and patient count of every target and holdout at
        ``values`` (same seeds every time: common random numbers)."""
        designs = range(len(self.trials)) if designs is None else designs
        rates = {}
        for d in designs:
            trial = self.trials[d]
            try:
                run = dataclasses.replace(trial, model=apply(trial.model, values))
            except PKPDInputError as err:
                raise PKPDInputError(f"calibration at {values}: {err}") from None
            result = run.run(seed=self.seeds[d], replicates=self.replicates, progress=False,
                             workers=self.workers if self._client is None else self._client)
            for i, t in enumerate(self.targets + self.holdout):
                if self._design_of[i] == d:
                    _, table = result.one_endpoint(t.endpoint, "target endpoint")
                    arm = next(a for a in trial.arms if a.name == t.arm)
                    rates[i] = {"rate": float(table.loc[t.arm, "estimate"]), "n_sim": arm.n * self.replicates}
        return [rates.get(i) for i in range(len(self.targets) + len(self.holdout))]

    @staticmethod
    def floor(n_sim: int) -> float:
        """Smallest simulated rate used in the likelihood: 0.5 / (n_sim + 1)."""
        return 0.5 / (n_sim + 1)

    def _clipped(self, sims) -> np.ndarray:
        f = np.array([self.floor(s["n_sim"]) for s in sims])
        return np.clip([s["rate"] for s in sims], f, 1 - f)

    def _evaluate(self, values, sims=None) -> tuple[np.ndarray, float]:
        """(signed deviance residuals, objective) of the fitted targets at
        ``values``, each point simulated once and logged in ``history``
        (``sims``: :meth:`simulate`'s result at ``values``, if already made)."""
        key = tuple(round(values[n], 12) for n in self.names)
        if key not in self._cache:
            t0 = time.perf_counter()
            sims = (self.simulate(values, self._fit_designs) if sims is None else sims)[: len(self.targets)]
            k = np.array([t.k for t in self.targets], float)
            n = np.array([t.n for t in self.targets], float)
            p = self._clipped(sims)
            r = _signed_deviance(k, n, p)
            objective = float(-binom.logpmf(k, n, p).sum())
            self._cache[key] = r, objective
            self.history.append({"evaluation": len(self.history) + 1, "stage": self.stage, **values,
                                 "objective": objective, "deviance": float(r @ r),
                                 "seconds": time.perf_counter() - t0})
            if self._bar is not None:
                self._bar.update(1)
        return self._cache[key]

    def residuals(self, values) -> np.ndarray:
        """Signed deviance residuals of the fitted targets at ``values``
        ({name: value}; parameters not given keep their start): their
        squares sum to the deviance."""
        values = self._complete(values)
        return self._evaluate(values)[0]

    def objective(self, values) -> float:
        """Minus the binomial log-likelihood of the fitted targets at ``values``
        ({name: value}; parameters not given keep their start)."""
        return self._evaluate(self._complete(values))[1]

    def _complete(self, values) -> dict:
        unknown = [k for k in values if k not in self.names]
        if unknown:
            raise PKPDInputError(f"values name {unknown[0]!r}, not a calibrated parameter."
                                 f"{did_you_mean(str(unknown[0]), self.names)} Calibrated: {self.names}.")
        return {**self.start, **{k: float(v) for k, v in values.items()}}

    def _res_u(self, u) -> np.ndarray:
        return self._evaluate(self.values(u))[0]

    # ------------------------------------------------------------ optimisation
    def _minimise(self, fun_res, x0, method: str, max_evaluations: int, jacobian=None):
        """Minimise 0.5 sum(fun_res(x)^2) over [0, 1]^len(x0); returns (x, 0.5 sum r^2).
        ``jacobian`` ("trf" only): a Jacobian near x0 to start secant (Broyden)
        updates from, instead of forward differences at every iteration."""
        x0 = np.clip(np.asarray(x0, float), 0.0, 1.0)
        if method == "trf":
            jac = "2-point" if jacobian is None else _Broyden(fun_res, x0, jacobian)
            sol = optimize.least_squares(fun_res, x0, bounds=(0.0, 1.0), method="trf", jac=jac,
                                         diff_step=self.jacobian_step, x_scale=1.0, ftol=1e-4, xtol=1e-3, gtol=1e-6,
                                         max_nfev=max_evaluations)
            x = sol.x
            self._jacobian = np.array(sol.jac)
        else:
            def f(x):
                r = fun_res(x)
                return 0.5 * float(r @ r)

            options = {"maxfev": max_evaluations, "xatol": 2e-3, "fatol": 1e-3} if method == "Nelder-Mead" else \
                {"maxfev": max_evaluations, "xtol": 2e-3, "ftol": 1e-4}
            if method == "Nelder-Mead":
                simplex = [x0] + [np.where(np.eye(len(x0))[i] > 0, np.where(x0 + 0.1 <= 1, x0 + 0.1, x0 - 0.1), x0)
                                  for i in range(len(x0))]
                options["initial_simplex"] = np.array(simplex)
            x = optimize.minimize(f, x0, method=method, bounds=[(0.0, 1.0)] * len(x0), options=options).x
        r = fun_res(x)
        return np.asarray(x, float), 0.5 * float(r @ r)

    def fit(self, method: str = "trf", intervals=True, max_evaluations: int = 400, starts=()) -> "CalibrationResult":
        """Calibrate: minimise the objective from the start (and from each of
        ``starts``, keeping the lowest), then profile the parameters
        ``intervals`` names (True: all, False: none, or a list of names).
        ``max_evaluations`` caps each optimisation."""
        if method not in METHODS:
            raise PKPDInputError(f"method must be one of {METHODS}; got {method!r}.{did_you_mean(str(method), METHODS)}")
        max_evaluations = whole("max_evaluations", max_evaluations)
        profiled = self._profiled(intervals)
        if isinstance(starts, dict) or not all(isinstance(s, dict) for s in starts):
            raise PKPDInputError(f"starts must be a list of {{name: value}} points; got {starts!r}.")
        extra = []
        for i, point in enumerate(starts, 2):
            point = self._complete(point)
            for p in self.parameters:
                p.check_start(point[p.name], f"start {i}")
            extra.append(point)
        t0 = time.perf_counter()
        self._bar = tqdm(desc="calibrate: simulations", unit="eval", file=sys.stderr, disable=not self.progress, leave=False)
        try:
            with self._where():  # one cluster (when workers asks for one) for every simulation
                self.stage = "fit"
                u0 = self.unit(self.start)
                u_hat, half_dev = self._minimise(self._res_u, u0, method, max_evaluations)
                jacobian = self._jacobian if method == "trf" else None  # at the optimum: the profiles start from it
                for i, point in enumerate(extra, 2):  # a local optimiser: other starts may find a lower optimum
                    self.stage = f"fit (start {i})"
                    u, h = self._minimise(self._res_u, self.unit(point), method, max_evaluations)
                    if h < half_dev:
                        u_hat, half_dev, jacobian = u, h, self._jacobian if method == "trf" else None
                profiles = {}
                for j, p in enumerate(self.parameters):
                    if p.name in profiled:
                        self.stage = f"profile {p.name}"
                        profiles[p.name], u_hat, half_dev = self._profile(j, u_hat, half_dev, method, max_evaluations,
                                                                          jacobian)
                self.stage = "estimate"
                estimate = self.values(u_hat)
                self.residuals(estimate)
                sims = self.simulate(estimate)
        finally:
            self._bar.close()
            self._bar = None
        return CalibrationResult(self, estimate, profiles, sims, half_dev, time.perf_counter() - t0, method)

    @contextmanager
    def _where(self):
        """Within it, every simulation runs on one client for :attr:`workers`
        (a local cluster started once, closed at the end; nested calls reuse it)."""
        if self._client is not None or self.workers is None:
            yield
            return
        with client_for(self.workers) as client:
            self._client = client
            try:
                yield
            finally:
                self._client = None

    def _profiled(self, intervals) -> list[str]:
        """The names ``intervals`` asks to profile (True: all, False: none, or names)."""
        if isinstance(intervals, (bool, np.bool_)):
            return list(self.names) if intervals else []
        if not isinstance(intervals, (list, tuple)) or not all(isinstance(n, str) for n in intervals):
            raise PKPDInputError(f"intervals must be True, False or a list of calibrated parameter names; got "
                                 f"{intervals!r}. Calibrated: {self.names}.")
        for n in intervals:
            if n not in self.names:
                raise PKPDInputError(f"intervals names {n!r}, not a calibrated parameter."
                                     f"{did_you_mean(n, self.names)} Calibrated: {self.names}.")
        return list(intervals)

    def evaluate(self, values=None) -> "CalibrationResult":
        """The targets table (published vs model) at ``values`` ({name: value};
        parameters not given keep their start) without fitting: e.g. a model's
        current values, or a held-out check of an earlier calibration."""
        t0 = time.perf_counter()
        values = self._complete(values or {})
        self.stage = "evaluate"
        with self._where():
            sims = self.simulate(values)  # every design once: the fitted targets' residuals come from it too
            r, _ = self._evaluate(values, sims)
        return CalibrationResult(self, values, {}, sims, 0.5 * float(r @ r), time.perf_counter() - t0, "none")

    def _profile(self, j: int, u_hat, half_dev: float, method: str, max_evaluations: int, jacobian=None):
        """Both 95% profile limits of parameter ``j`` on the unit scale, as
        (low, high, low_at_bound, high_at_bound, points); also returns the
        optimum, moved if the profile found a lower objective.  A limit not
        bracketed within the steps is NaN.  With the fit's ``jacobian`` (at
        the optimum, "trf") each profile point starts from the linearised
        optimum of the other parameters and updates their Jacobian by secant
        steps: a point then costs a few simulations, not a few times p + 1."""
        goal, tol = np.sqrt(2 * PROFILE_DROP), 0.08  # signed root deviance 1.96 +- 0.08 (deviance 3.84 +- 0.3)
        others = [i for i in range(len(u_hat)) if i != j]
        points = []

        def profile_at(t, start, t_start):
            """(nuisance optimum, half deviance) with parameter j fixed at t, from
            the nuisance values ``start`` of the profile point at ``t_start``."""
            def res(v):
                u = np.empty(len(u_hat))
                u[j], u[others] = t, v
                return self._res_u(u)

            if others:  # warm start from the neighbouring profile point: a few iterations suffice
                cap = PROFILE_ITERATIONS if method == "trf" else 10 * PROFILE_ITERATIONS
                nuisance = None
                if jacobian is not None:
                    # the other parameters' optimum of the linearised residuals: r + J_j dt + J_o dv -> min
                    u = np.empty(len(u_hat))
                    u[j], u[others] = t_start, start
                    nuisance = jacobian[:, others]
                    step = np.linalg.lstsq(nuisance, -(self._res_u(u) + jacobian[:, j] * (t - t_start)), rcond=None)[0]
                    start = np.clip(start + step, 0.0, 1.0)
                v, h = self._minimise(res, start, method, min(max_evaluations, cap), nuisance)
            else:
                r = res(np.empty(0))
                v, h = np.empty(0), 0.5 * float(r @ r)
            points.append((t, h))
            return v, h

        limits, at_bound = [], []
        for side in (-1.0, 1.0):
            edge = 0.0 if side < 0 else 1.0
            inner = [(u_hat[j], 0.0, u_hat[others])]  # points inside the interval: (t, root rise, nuisance)
            outer = None  # the nearest point outside: (t, root rise)
            t, limit, bound = float(np.clip(u_hat[j] + side * 0.05, 0.0, 1.0)), np.nan, False
            for _ in range(10):
                if t == inner[-1][0]:  # the estimate or the last point sits on the bound
                    limit, bound = edge, True
                    break
                v, h = profile_at(t, inner[-1][2], inner[-1][0])
                if h < half_dev - 1e-9:  # a lower objective than the fit's: the optimum moves there
                    u_hat = u_hat.copy()
                    u_hat[j], u_hat[others] = t, v
                    half_dev = h
                r = np.sqrt(max(2 * (h - half_dev), 0.0))
                if abs(r - goal) < tol:
                    limit = t
                    break
                if r > goal:
                    outer = (t, r)
                else:
                    inner.append((t, r, v))
                t_in, r_in = inner[-1][:2]
                if outer is not None:  # regula falsi inside the bracket
                    t = t_in + (goal - r_in) * (outer[0] - t_in) / (outer[1] - r_in)
                    continue
                if t == edge:
                    limit, bound = edge, True
                    break
                t_prev, r_prev = inner[-2][:2]
                dist = abs(t_in - t_prev)
                slope = (r_in - r_prev) / dist  # rise of the root deviance per unit outwards
                ahead = (goal - r_in) / slope if slope > 0 else 2 * dist
                t = float(np.clip(t_in + side * min(ahead, 4 * dist), 0.0, 1.0))
            else:
                if outer is not None:
                    t_in, r_in = inner[-1][:2]
                    limit = t_in + (goal - r_in) * (outer[0] - t_in) / (outer[1] - r_in)
            limits.append(float(limit))
            at_bound.append(bound)
        return (limits[0], limits[1], at_bound[0], at_bound[1], points), u_hat, half_dev


class _Broyden:
    """A secant Jacobian for :func:`scipy.optimize.least_squares`: it starts
    from a Jacobian near the start (the fit's, at the optimum) and is updated
    from the residuals at each point the optimiser asks for (Broyden's rank-one
    update; Dennis & Schnabel, Numerical Methods for Unconstrained
    Optimization, 1983, 8.1), so an iteration costs one simulation instead of
    ``len(x) + 1``.  The residuals at those points are already simulated (and
    cached) when the optimiser asks."""

    def __init__(self, fun, x0, jacobian):
        self.fun, self.x, self.J = fun, np.array(x0, float), np.array(jacobian, float)
        self.r = None

    def __call__(self, x):
        r = self.fun(x)
        dx = np.asarray(x, float) - self.x
        if self.r is not None and dx @ dx > 0:
            self.J += np.outer(r - self.r - self.J @ dx, dx) / (dx @ dx)
        self.x, self.r = np.array(x, float), r
        return self.J.copy()


def calibrate(targets, parameters, holdout=(), model: PKPDModel | None = None, replicates: int = 50, seed: int = 1,
              method: str = "trf", intervals=True, max_evaluations: int = 400,
              progress: bool = True, workers=None, starts=()) -> "CalibrationResult":
    """Fit ``parameters`` (:class:`Parameter` list) to published ``targets``
    (:class:`Target` list, DataFrame or CSV) by maximum binomial likelihood
    with common random numbers (see the module docstring).

    holdout : targets reported as out-of-sample predictions, not fitted.
    model : run every design with this model (default: each design's own).
    replicates : replicate trials per design and evaluation (>= 50 advised:
        the Monte Carlo SE of a rate is then about 0.005 for 170 patients).
    method : ``"trf"`` (:func:`scipy.optimize.least_squares`), ``"Nelder-Mead"``
        or ``"Powell"``.
    intervals : 95% profile-likelihood intervals: True (every parameter), a
        list of parameter names (those only; each costs ~10-40 simulations), or
        False (estimates only).
    max_evaluations : cap of the fit (``"trf"``: its iterations' function
        evaluations, Jacobian evaluations not counted; simplex methods: all).
    starts : more starting points ({name: value}, parameters not given keep
        the start), each fitted in turn; the lowest optimum is kept (the
        optimisers are local; ``history`` logs each fit's simulations).
    workers : where each simulation's replicates run (see
        :mod:`pkpd.distributed`: None here, N for a local cluster of N
        processes started once for the calibration, a ``distributed.Client``
        or a scheduler address); the result is bit-identical whatever ``workers``.
    Returns a :class:`CalibrationResult`.
    """
    problem = Calibrator(targets, parameters, holdout, model, replicates, seed, progress, workers)
    return problem.fit(method, intervals, max_evaluations, starts)


# ================================================================= result
class CalibrationResult:
    """A calibration: ``parameters`` (estimate, 95% profile interval, start,
    bounds), ``targets`` (published vs model), ``model`` (the calibrated
    model), ``history`` (every simulation), ``plot()``."""

    def __init__(self, problem: Calibrator, estimate: dict, profiles: dict, sims: list, half_dev: float, seconds: float,
                 method: str):
        self.problem = problem
        self.estimate = estimate
        self.seconds = seconds
        self.method = method
        self.model = apply(problem.model, estimate)
        rows = []
        for p in problem.parameters:
            row = {"parameter": p.name, "estimate": estimate[p.name], "low": np.nan, "high": np.nan,
                   "start": problem.start[p.name], "lower_bound": p.low, "upper_bound": p.high, "log": p.log,
                   "low_at_bound": False, "high_at_bound": False}
            if p.name in profiles:
                lo, hi, lo_b, hi_b, _ = profiles[p.name]
                row.update(low=p.from_unit(lo), high=p.from_unit(hi), low_at_bound=lo_b, high_at_bound=hi_b)
            rows.append(row)
        self.parameters = pd.DataFrame(rows).set_index("parameter")
        #: each parameter's profile: its value and the rise of the profile deviance (3.84 at the 95% limits)
        self.profiles = {name: pd.DataFrame([(problem.parameters[problem.names.index(name)].from_unit(t), 2 * (h - half_dev))
                                             for t, h in pr[4]], columns=[name, "deviance_rise"]).sort_values(name)
                         for name, pr in profiles.items()}
        self.targets = self._target_table(sims)
        self.history = pd.DataFrame(problem.history)

    def _target_table(self, sims) -> pd.DataFrame:
        pr = self.problem
        rows = []
        for i, (t, s) in enumerate(zip(pr.targets + pr.holdout, sims)):
            f = pr.floor(s["n_sim"])
            p = float(np.clip(s["rate"], f, 1 - f))
            lo, hi = clopper_pearson(t.k, t.n)
            r = float(_signed_deviance(float(t.k), float(t.n), p))
            rows.append({"label": t.label, "arm": t.arm, "endpoint": t.endpoint, "k": t.k, "n": t.n,
                         "published_rate": t.rate, "published_low": float(lo), "published_high": float(hi),
                         "model_rate": s["rate"], "model_se": float(np.sqrt(p * (1 - p) / s["n_sim"])),
                         "n_simulated": s["n_sim"], "objective": float(-binom.logpmf(t.k, t.n, p)),
                         "deviance": r * r, "holdout": i >= len(pr.targets), "source": t.source})
        return pd.DataFrame(rows)

    @property
    def objective(self) -> float:
        """Minus the binomial log-likelihood of the fitted targets at the estimate."""
        return float(self.targets.loc[~self.targets["holdout"], "objective"].sum())

    def __repr__(self) -> str:
        parts = []
        for name, r in self.parameters.iterrows():
            ci = f" [{r['low']:.3g}, {r['high']:.3g}]" if np.isfinite(r["low"]) else ""
            parts.append(f"{name} {r['estimate']:.3g}{ci}")
        fit = self.targets[~self.targets["holdout"]]
        held = int(self.targets["holdout"].sum())
        return (f"<CalibrationResult: {', '.join(parts)}; {len(fit)} targets (deviance {fit['deviance'].sum():.2f})"
                + (f", {held} held out" if held else "") + f"; {len(self.history)} simulations, {self.seconds:.0f} s"
                "\n .parameters, .targets, .model, .history, .plot()>")

    def plot(self):
        """Published rate (Clopper-Pearson 95%) beside the model rate (+- 1.96
        Monte Carlo SE) of every target; held-out targets marked.  Returns the figure."""
        t = self.targets
        fig = _figure(7.0, 0.45 * len(t) + 1.4)
        ax = fig.subplots()
        y = np.arange(len(t))[::-1]
        ax.errorbar(t["published_rate"], y + 0.12, xerr=[t["published_rate"] - t["published_low"],
                    t["published_high"] - t["published_rate"]], fmt="kd", capsize=3, label="published (95% CI)")
        for held, color, name in ((False, "C0", "model (+-1.96 MC SE)"), (True, "C3", "model, held out")):
            s = t["holdout"] == held
            if s.any():
                ax.errorbar(t.loc[s, "model_rate"], y[s.to_numpy()] - 0.12, xerr=1.96 * t.loc[s, "model_se"],
                            fmt="o", color=color, capsize=3, label=name)
        ax.set_yticks(y, t["label"])
        ax.set_xlim(0, 1)
        ax.set_xlabel("share of patients")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        return fig
