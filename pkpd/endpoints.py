"""Trial endpoints: the registry of trial outcomes and how each is reported.

An endpoint is one function of every patient's visit data
(:class:`VisitData`) returning one value per patient, registered with a name,
a description (what it measures, in which unit) and its kind:

* ``"binomial"``: a yes/no per patient, reported as the share of patients with
  a Clopper-Pearson 95% interval;
* ``"mean"``: a value per patient, reported as the mean with a normal 95%
  interval (mean +- 1.96 SD/sqrt(N)).

Values are in ``unit`` ``"fraction"`` (0-1, printed in percent) or ``"%"``.
A new endpoint is one decorated function here or in user code, e.g.::

    @endpoint("day28_above_100", "true platelets > 100 on day 28", kind="binomial")
    def day28_above_100(v):
        return v.daily[:, 28] > 100

Every :class:`~pkpd.trial.TrialResult` computed after the registration
reports it.  Thresholds come from the trial's
:class:`~pkpd.trial.Endpoints` (``v.settings``, 10^9/L and days); a
description may name them as ``{response}``, ``{primary_day}``,
``{target[0]}``, ``{above}``, ``{below}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from . import titration as tt
from .checks import PKPDInputError
from .intervals import clopper_pearson

KINDS = ("binomial", "mean")
UNITS = ("fraction", "%")


# ================================================================= what an endpoint sees
@dataclass(frozen=True)
class VisitData:
    """Every simulated patient's course, as endpoint functions see it
    (S patients, G visit days of the run).

    settings : the trial's :class:`~pkpd.trial.Endpoints` (thresholds in
        10^9/L, days since the first dose).
    day : (G,) the run's visit days, days since the first dose (0 =
        baseline): the assessment visits and every arm's decision visits.
    assessment : (G,) True on the assessment visits
        (:attr:`pkpd.trial.Trial.visit_days`), the same for every arm.
    observed, true : (S, G) observed and true platelets on each of ``day``, 10^9/L.
    action : (S, G) the titration action at each visit (codes of
        :data:`pkpd.titration.ACTIONS`).
    daily : (S, duration_days + 1) true platelets on days 0, 1, ..., 10^9/L (float32).
    """

    settings: Any
    day: np.ndarray
    assessment: np.ndarray
    observed: np.ndarray
    true: np.ndarray
    action: np.ndarray
    daily: np.ndarray

    @cached_property
    def stopped_day(self) -> np.ndarray:
        """(S,) day on which treatment was stopped for lack of response (inf: never)."""
        stop = self.action == tt.STOP
        return np.where(stop.any(axis=1), self.day[np.argmax(stop, axis=1)], np.inf)

    @cached_property
    def responding(self) -> np.ndarray:
        """(S, post-baseline assessments): observed count >= ``settings.response``."""
        return self.observed[:, self.assessment & (self.day > 0)] >= self.settings.response

    @cached_property
    def after_baseline(self) -> np.ndarray:
        """(S, duration_days): true daily platelets from day 1 on, 10^9/L (float64)."""
        return self.daily[:, 1:].astype(float)


# ================================================================= registry
@dataclass(frozen=True)
class Endpoint:
    """One registered trial outcome (see the module docstring).

    compute : ``compute(visits)`` -> one value per patient, or None where
        the endpoint is not defined for the trial (e.g. no primary day).
    response : defined by the response threshold ``Endpoints.response``
        (left out where most patients are above it at baseline).
    """

    name: str
    description: str
    kind: str
    unit: str
    compute: Callable[[VisitData], Any]
    response: bool = False

    def describe(self, settings, observable: str = "platelets") -> str:
        """The description with the trial's thresholds and the PD model's
        response (``observable``, e.g. platelets) filled in."""
        return self.description.format(**vars(settings), observable=observable)

    def interval(self, values: np.ndarray, n: int) -> tuple[float, float, float, str]:
        """Estimate, 95% interval of one trial of ``n`` patients and its method."""
        est = float(np.nanmean(values))
        if self.kind == "binomial":
            lo, hi = clopper_pearson(est * n, n)
            return est, float(lo), float(hi), "Clopper-Pearson 95%"
        half = 1.96 * np.nanstd(values, ddof=1) / np.sqrt(n) if values.size > 1 else np.nan
        lo, hi = est - half, est + half
        if self.unit == "fraction":
            lo, hi = max(lo, 0.0), min(hi, 1.0)
        return est, float(lo), float(hi), "normal 95% (mean +- 1.96 SD/sqrt(N))"


#: Every registered endpoint by name, in the order tables list them.
#: Remove one with ``del REGISTRY[name]``.
REGISTRY: dict[str, Endpoint] = {}

#: Columns of the per-patient table that are not endpoints.
_ID_COLUMNS = ("replicate", "arm")


def endpoint(name: str, description: str, kind: str = "mean", unit: str = "fraction", response: bool = False):
    """Register the decorated function ``f(visits: VisitData)`` as the
    endpoint ``name`` (see the module docstring); returns ``f`` unchanged."""
    if not isinstance(name, str) or not name.isidentifier() or name in _ID_COLUMNS:
        raise PKPDInputError(f"endpoint name must be a Python identifier other than {_ID_COLUMNS}; got {name!r}, e.g. 'day28_above_100'.")
    if name in REGISTRY:
        raise PKPDInputError(f"endpoint {name!r} is already registered; choose another name or remove it first (del REGISTRY[{name!r}]).")
    if kind not in KINDS:
        raise PKPDInputError(f"endpoint {name!r}: kind must be one of {KINDS}; got {kind!r}.")
    if unit not in UNITS:
        raise PKPDInputError(f"endpoint {name!r}: unit must be one of {UNITS}; got {unit!r}.")

    def register(compute):
        REGISTRY[name] = Endpoint(name, description, kind, unit, compute, bool(response))
        return compute

    return register


def response_endpoints() -> list[str]:
    """The registered endpoints defined by the response threshold."""
    return [k for k, e in REGISTRY.items() if e.response]


class _Descriptions(Mapping):
    """Endpoint name -> (description, kind) of every registered endpoint (a read-only view of :data:`REGISTRY`)."""

    def __getitem__(self, name):
        e = REGISTRY[name]
        return e.description, e.kind

    def __iter__(self):
        return iter(REGISTRY)

    def __len__(self):
        return len(REGISTRY)

    def __repr__(self):
        return repr(dict(self))


#: Endpoint name -> (description, kind), for every registered endpoint.
ENDPOINTS = _Descriptions()


# ================================================================= the endpoints
@endpoint("responders_primary", "observed {observable} >= {response:g} at day {primary_day:g} (primary)",
          kind="binomial", response=True)
def responders_primary(v: VisitData):
    """Observed count >= response on the primary day; a patient stopped before
    it is a non-responder when ``stopped_as_nonresponders``.  None without a primary day."""
    e = v.settings
    if e.primary_day is None:
        return None
    primary = v.observed[:, np.flatnonzero(v.day == e.primary_day)[0]] >= e.response
    if e.stopped_as_nonresponders:
        primary &= ~(v.stopped_day <= e.primary_day)
    return primary


@endpoint("responded_once", "observed {observable} >= {response:g} at least once after baseline", kind="binomial", response=True)
def responded_once(v: VisitData):
    return v.responding.any(axis=1)


@endpoint("stopped", "treatment stopped for lack of response", kind="binomial")
def stopped(v: VisitData):
    return np.isfinite(v.stopped_day)


@endpoint("assessments_responding", "fraction of post-baseline assessments >= {response:g}", response=True)
def assessments_responding(v: VisitData):
    r = v.responding
    return r.mean(axis=1) if r.shape[1] else np.full(len(r), np.nan)


@endpoint("time_in_range", "fraction of days with true {observable} in {target[0]:g}-{target[1]:g}")
def time_in_range(v: VisitData):
    d = v.after_baseline
    return ((d >= v.settings.target[0]) & (d <= v.settings.target[1])).mean(axis=1)


@endpoint("time_above", "fraction of days with true {observable} > {above:g}")
def time_above(v: VisitData):
    return (v.after_baseline > v.settings.above).mean(axis=1)


@endpoint("time_below", "fraction of days with true {observable} < {below:g}")
def time_below(v: VisitData):
    return (v.after_baseline < v.settings.below).mean(axis=1)


@endpoint("peak_rise_pct", "peak rise of true {observable} from baseline, %", unit="%")
def peak_rise_pct(v: VisitData):
    # against day 0 of the same float32 record: a flat course is exactly 0 %
    return (v.daily.max(axis=1).astype(float) / v.daily[:, 0] - 1.0) * 100.0


#: The built-in endpoints defined by the response threshold (``Endpoints.response``).
RESPONSE_ENDPOINTS = tuple(response_endpoints())


# ================================================================= tables
def patient_values(visits: VisitData, replicate: np.ndarray, arm: np.ndarray) -> pd.DataFrame:
    """One row per patient: replicate, arm (code) and the value of every
    registered endpoint defined for the trial."""
    out = {"replicate": replicate, "arm": arm}
    for name, e in REGISTRY.items():
        values = e.compute(visits)
        if values is None:
            continue
        values = np.asarray(values)
        if values.shape != arm.shape:
            raise PKPDInputError(
                f"endpoint {name!r}: its function must return one value per patient, shape {arm.shape}; "
                f"got shape {values.shape}."
            )
        out[name] = values
    return pd.DataFrame(out)


def endpoint_names(values: pd.DataFrame) -> list[str]:
    """The endpoints of a :func:`patient_values` table, in registry order."""
    return [k for k in REGISTRY if k in values]


def endpoint_table(values: pd.DataFrame, arms, replicates: int, settings, observable: str = "platelets") -> pd.DataFrame:
    """The endpoint table of :attr:`pkpd.trial.TrialResult.endpoints` from
    :func:`patient_values` (arm codes index ``arms``, each with ``name`` and
    ``n`` patients per trial; ``observable``: what the counts are)."""
    rows = []
    for i, arm in enumerate(arms):
        mi = values[values["arm"] == i]
        for name in endpoint_names(mi):
            e = REGISTRY[name]
            est, lo, hi, method = e.interval(mi[name].to_numpy(float), arm.n)
            reps = mi.groupby("replicate")[name].mean().to_numpy(float)
            r_lo, r_hi = np.percentile(reps, [2.5, 97.5]) if replicates > 1 else (np.nan, np.nan)
            rows.append({
                "arm": arm.name, "endpoint": name, "description": e.describe(settings, observable), "kind": e.kind, "unit": e.unit,
                "n": arm.n, "replicates": replicates, "estimate": est,
                "trial_low": lo, "trial_high": hi, "trial_interval": f"{method}, one trial of n",
                "replicate_low": float(r_lo), "replicate_high": float(r_hi),
                "replicate_interval": f"2.5-97.5 percentiles of {replicates} replicate trials" if replicates > 1 else "",
            })
    return pd.DataFrame(rows)


# ================================================================= as text
def percent(x, endpoint: str = "", digits: int = 1) -> str:
    """An endpoint value as text in percent ("12.3%"; "" for NaN).  Fractions
    are multiplied by 100; an endpoint in unit "%" (``peak_rise_pct``) is
    already in percent.  Rounded first, so that a rounding-level negative
    prints as "0.0%", not "-0.0%"."""
    if x is None or pd.isna(x):
        return ""
    factor = 1.0 if endpoint in REGISTRY and REGISTRY[endpoint].unit == "%" else 100.0
    return f"{round(factor * float(x), digits) + 0.0:.{digits}f}%"


def _interval(lo, hi, endpoint: str = "") -> str:
    """"[12.3%, 45.6%]" ("" when the interval is not defined)."""
    return "" if pd.isna(lo) or pd.isna(hi) else f"[{percent(lo, endpoint)}, {percent(hi, endpoint)}]"
