"""Trial endpoints: the registry of trial outcomes and how each is reported.

An endpoint is one function of every patient's visit data
(:class:`VisitData`) returning one value per patient, registered with a name,
a description (what it measures, in which unit) and its kind:

* ``"binomial"``: a yes/no per patient, reported as the share of patients with
  a Clopper-Pearson 95% interval;
* ``"mean"``: a value per patient, reported as the mean with a normal 95%
  interval (mean +- 1.96 SD/sqrt(N));
* ``"time_to_event"``: a time per patient at risk and whether the event was
  seen (``compute`` returns ``(time, event)``; NaN time = not at risk),
  reported as the Kaplan-Meier median (:func:`km_median`) with the number
  of events and of patients at risk.

Values are in ``unit`` ``"fraction"`` (0-1, printed in percent), ``"%"`` or
``"days"`` (times to event).
A new endpoint is one decorated function here or in user code, e.g.::

    @endpoint("day28_above_100", "true platelets > 100 on day 28", kind="binomial")
    def day28_above_100(v):
        return v.daily[:, 28] > 100

Every :class:`~pkpd.trial.TrialResult` computed after the registration
reports it.  Thresholds come from the trial's
:class:`~pkpd.trial.Endpoints` (``v.settings``, 10^9/L and days); a
description may name them as ``{response}``, ``{primary_day}``,
``{target[0]}``, ``{above}``, ``{below}``, ``{relapse_below}``, ...
(every field of :class:`~pkpd.trial.Endpoints`) and ``{once_window}`` (" up
to day D" when ``once_within_days`` is set).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import lazy_loader as lazy
import numpy as np
import pandas as pd

stats = lazy.load("scipy.stats", suppress_warning=True)  # on first use (~0.7 s to import): Kaplan-Meier only

from . import titration as tt
from .checks import PKPDInputError
from .intervals import clopper_pearson

KINDS = ("binomial", "mean", "time_to_event")
UNITS = ("fraction", "%", "days")


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
    taper_start : (S,) day the patient's taper stage began (NaN: no taper
        stage), days since the first dose; None = no taper in the trial.
    taper_responder : (S,) responding (observed count >= the taper stage's
        ``responder_at_least``) at the taper start, i.e. tapered.
    """

    settings: Any
    day: np.ndarray
    assessment: np.ndarray
    observed: np.ndarray
    true: np.ndarray
    action: np.ndarray
    daily: np.ndarray
    taper_start: np.ndarray | None = None
    taper_responder: np.ndarray | None = None

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
        window = "" if settings.once_within_days is None else f" up to day {settings.once_within_days:g}"
        return self.description.format(**vars(settings), observable=observable, once_window=window)

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
#: Suffix of the per-patient column of a time-to-event endpoint's event flags.
EVENT_SUFFIX = "__event"


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


@endpoint("responded_once", "observed {observable} >= {response:g} at least once after baseline{once_window}",
          kind="binomial", response=True)
def responded_once(v: VisitData):
    """Any post-baseline assessment >= response, on days up to
    ``once_within_days`` (None: the whole trial; 56 = the phase III's "within
    8 weeks", Mei et al., J Hematol Oncol 2021;14:37, Table 2)."""
    w = v.settings.once_within_days
    if w is None:
        return v.responding.any(axis=1)
    days = v.day[v.assessment & (v.day > 0)]
    return v.responding[:, days <= w].any(axis=1)


#: Share of assessments of the "responded at >= 75 % of assessments" endpoint (Mei et al., J Hematol Oncol
#: 2021;14:37, Table 2: 32.7 % / 57.3 % / 2.4 % within 8 weeks from the 2.5 mg / 5 mg start / placebo).
MOSTLY = 0.75


@endpoint("responded_mostly", "observed {observable} >= {response:g} at >= 75 % of post-baseline assessments{once_window}",
          kind="binomial", response=True)
def responded_mostly(v: VisitData):
    """Observed count >= response at 75 % or more of the post-baseline
    assessments on days up to ``once_within_days`` (the window of
    :func:`responded_once`): how steadily a patient stays in response."""
    w = v.settings.once_within_days
    r = v.responding
    if w is not None:
        r = r[:, v.day[v.assessment & (v.day > 0)] <= w]
    return r.mean(axis=1) >= MOSTLY if r.shape[1] else np.zeros(len(r), bool)


@endpoint("platelet_increased",
          "observed {observable} > {increased_above:g} at an assessment on days 1-{increased_within_days:g}",
          kind="binomial")
def platelet_increased(v: VisitData):
    """A count-based proxy of the adverse event "platelet count increased":
    any post-baseline assessment above ``increased_above`` (400 x10^9/L) up to
    day ``increased_within_days`` (70 = the 10-week double-blind stage).  The
    phase III reported the event in 2.4% (2.5 mg start), 14.0% (5 mg start)
    and 2.4% (placebo) (Mei et al., J Hematol Oncol 2021;14:37, Table 2);
    the investigators' AE reports need not follow one threshold [I]."""
    e = v.settings
    cols = v.assessment & (v.day > 0) & (v.day <= e.increased_within_days)
    return (v.observed[:, cols] > e.increased_above).any(axis=1)


@endpoint("time_to_relapse",
          "days from the taper start to the first observed {observable} < {relapse_below:g}, tapered responders",
          kind="time_to_event", unit="days")
def time_to_relapse(v: VisitData):
    """Among patients responding at the start of their taper stage: days
    from the taper start to the first assessment with an observed count
    below ``relapse_below`` (50 x10^9/L), an event; without one, censored at
    the last assessment (end of follow-up).  Phase III taper to withdrawal:
    171 of 194 relapsed, median 15.0 days (95% CI 14.0-16.0) (Mei et al.,
    J Thromb Haemost 2022;20:716, doi 10.1111/jth.15602).  None without a
    taper stage in the trial."""
    if v.taper_start is None or not np.isfinite(v.taper_start).any():
        return None
    start = v.taper_start
    at_risk = v.taper_responder & np.isfinite(start)
    cols = np.flatnonzero(v.assessment)
    day = v.day[cols]
    after = day[None, :] > np.where(at_risk, start, np.inf)[:, None]
    low = after & (v.observed[:, cols] < v.settings.relapse_below)
    event = low.any(axis=1)
    first = np.where(event, day[np.argmax(low, axis=1)], day[-1])
    time = np.where(at_risk, first - start, np.nan)
    return time, event & at_risk


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


# ================================================================= Kaplan-Meier
def km_median(time, event, confidence: float = 0.95) -> tuple[float, float, float]:
    """Kaplan-Meier median of right-censored times and its confidence interval.

    time : times (any unit, e.g. days), finite, >= 0.
    event : True where the event was seen at ``time``, False where censored.

    The survival curve and its pointwise Greenwood band ("linear", clipped
    to 0-1) come from :func:`scipy.stats.ecdf` on a
    :class:`scipy.stats.CensoredData`.  The median is the first time the
    curve is at or below 0.5; its interval inverts the band the
    Brookmeyer-Crowley way (Brookmeyer & Crowley, Biometrics 1982;38:29): the
    lower limit is the first time the lower band is at or below 0.5, the upper
    limit the first time the upper band is (as R's ``survfit`` with
    ``conf.type = "plain"``).  NaN where a curve never reaches 0.5 (not
    reached; also the upper limit when only the step to 0 would cross) and
    for no times or no events at all.
    """
    time = np.asarray(time, float)
    event = np.asarray(event, bool)
    if time.size == 0:
        return np.nan, np.nan, np.nan
    data = stats.CensoredData(uncensored=time[event], right=time[~event])
    sf = stats.ecdf(data).sf
    t, p = sf.quantiles, sf.probabilities
    if not event.any():
        return np.nan, np.nan, np.nan
    band = sf.confidence_interval(confidence, method="linear")
    # Greenwood's variance is undefined where the curve reaches 0: there the lower band is 0 and
    # the upper one unknown, so it does not cross (an upper limit "not reached", as R's survfit)
    low = np.where(np.isnan(band.low.probabilities), p, band.low.probabilities)
    high = band.high.probabilities

    def first_at_or_below_half(curve):
        hit = np.flatnonzero(curve <= 0.5 + 1e-12)
        return float(t[hit[0]]) if hit.size else np.nan

    return first_at_or_below_half(p), first_at_or_below_half(low), first_at_or_below_half(high)


# ================================================================= tables
def patient_values(visits: VisitData, replicate: np.ndarray, arm: np.ndarray) -> pd.DataFrame:
    """One row per patient: replicate, arm (code) and the value of every
    registered endpoint defined for the trial."""
    out = {"replicate": replicate, "arm": arm}
    for name, e in REGISTRY.items():
        values = e.compute(visits)
        if values is None:
            continue
        if e.kind == "time_to_event":
            values, events = values
            out[f"{name}{EVENT_SUFFIX}"] = np.asarray(events, bool)
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
    per_rep = replicate_values(values)
    for i, arm in enumerate(arms):
        mi = values[values["arm"] == i]
        for name in endpoint_names(mi):
            e = REGISTRY[name]
            events = at_risk = np.nan
            if e.kind == "time_to_event":
                est, lo, hi, method, events, at_risk = _km_row(mi, name)
                if at_risk == 0:  # e.g. a placebo arm without a taper: nothing to report
                    continue
            else:
                est, lo, hi, method = e.interval(mi[name].to_numpy(float), arm.n)
            reps = per_rep.loc[per_rep["arm"] == i, name].to_numpy(float)
            reps = reps[np.isfinite(reps)]
            r_lo, r_hi = np.percentile(reps, [2.5, 97.5]) if replicates > 1 and reps.size else (np.nan, np.nan)
            rows.append({
                "arm": arm.name, "endpoint": name, "description": e.describe(settings, observable), "kind": e.kind, "unit": e.unit,
                "n": arm.n, "replicates": replicates, "estimate": est,
                "trial_low": lo, "trial_high": hi, "trial_interval": f"{method}, one trial of n",
                "replicate_low": float(r_lo), "replicate_high": float(r_hi),
                "replicate_interval": f"2.5-97.5 percentiles of {replicates} replicate trials" if replicates > 1 else "",
                "events": events, "at_risk": at_risk,
            })
    return pd.DataFrame(rows)


def _km_of(values: pd.DataFrame, name: str) -> tuple[float, float, float]:
    """:func:`km_median` of the patients at risk in ``values`` (a per-patient table)."""
    time = values[name].to_numpy(float)
    risk = np.isfinite(time)
    return km_median(time[risk], values[f"{name}{EVENT_SUFFIX}"].to_numpy(bool)[risk])


def _km_row(values: pd.DataFrame, name: str) -> tuple:
    """Estimate, interval, method, events and patients at risk of a
    time-to-event endpoint for one arm (all replicates pooled for the estimate
    and the counts; with replicates, the interval of one trial is the median
    over the replicates of each one's interval)."""
    est, lo, hi = _km_of(values, name)
    if values["replicate"].nunique() > 1:
        per = np.array([_km_of(g, name) for _, g in values.groupby("replicate")])
        lo, hi = (float(np.nanmedian(per[:, k])) if np.isfinite(per[:, k]).any() else np.nan for k in (1, 2))
    risk = np.isfinite(values[name].to_numpy(float))
    events = values[f"{name}{EVENT_SUFFIX}"].to_numpy(bool) & risk
    method = "Kaplan-Meier median, Greenwood band crossing 0.5 (Brookmeyer-Crowley) 95%"
    return est, lo, hi, method, float(events.sum()), float(risk.sum())


def replicate_values(values: pd.DataFrame) -> pd.DataFrame:
    """Each endpoint's value per replicate trial and arm (code), wide: the
    share or mean of its patients, and for a time-to-event endpoint the
    Kaplan-Meier median (NaN: not reached or nobody at risk)."""
    names = endpoint_names(values)
    plain = [k for k in names if REGISTRY[k].kind != "time_to_event"]
    table = values.groupby(["replicate", "arm"])[plain].mean()
    for k in names:
        if REGISTRY[k].kind == "time_to_event":
            groups = values.groupby(["replicate", "arm"])[[k, f"{k}{EVENT_SUFFIX}"]]
            table[k] = groups.apply(lambda g, k=k: _km_of(g, k)[0])
    return table[names].reset_index()


# ================================================================= as text
def percent(x, endpoint: str = "", digits: int = 1) -> str:
    """An endpoint value as text in percent ("12.3%"; "" for NaN).  Fractions
    are multiplied by 100; an endpoint in unit "%" (``peak_rise_pct``) is
    already in percent; one in unit "days" prints as days ("15.0 d").
    Rounded first, so that a rounding-level negative prints as "0.0%", not
    "-0.0%"."""
    if x is None or pd.isna(x):
        return ""
    if endpoint in REGISTRY and REGISTRY[endpoint].unit == "days":
        return f"{round(float(x), digits) + 0.0:.{digits}f} d"
    factor = 1.0 if endpoint in REGISTRY and REGISTRY[endpoint].unit == "%" else 100.0
    return f"{round(factor * float(x), digits) + 0.0:.{digits}f}%"


def _interval(lo, hi, endpoint: str = "") -> str:
    """"[12.3%, 45.6%]" ("" when the interval is not defined)."""
    return "" if pd.isna(lo) or pd.isna(hi) else f"[{percent(lo, endpoint)}, {percent(hi, endpoint)}]"
