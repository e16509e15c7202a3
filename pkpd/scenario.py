"""Scenario files: a virtual trial written as TOML, checked, run and saved.

A scenario file has these tables (every key is checked; an unknown key, a
wrong type, thresholds in an impossible order or a start dose off its ladder
stop the load with an error naming the key and the fix)::

    [scenario]     name, description, seed, replicates
    [model]        population ("itp" | "healthy"), nonresponder_fraction,
                   and any typical-value override (ec50 = 20.0, ...)
    [trial]        duration_days, visit_every_days, treatment_days
    [endpoints]    response, primary_day, target, above, below,
                   stopped_as_nonresponders, once_within_days,
                   increased_above, increased_within_days, relapse_below
    [rules.NAME]   the fields of pkpd.TitrationRule (all optional); kind = "model-guided"
                   makes it a pkpd.forecast.ModelGuidedRule (with its fields max_p_above,
                   horizon_visits, posterior, n_laplace, n_draws, n_predict, seed,
                   hold_margin)
    [[arms]]       name, n, start_mg, rule (a NAME above; none = fixed dose)
    [[arms.stages]]  kind ("fixed" | "titration" | "taper" | "off"), days, and
                   per kind dose_mg, rule, taper_every_days, ladder_mg,
                   responder_at_least, nonresponders (pkpd.trial.Stage); an
                   arm without stages is one stage for the whole trial
    [arms.published]  endpoint, responders, n, source: a published result to
                   print beside the simulated one ([[arms.published]] for
                   several endpoints of one arm; the first is the headline)
                   print beside the simulated one

See ``scenarios/itp_phase3.toml`` for a complete, commented example.
:func:`run_scenario` loads, runs, compares with the published numbers and
writes the outputs (CSV tables, NONMEM records, PNG plots).
"""

from __future__ import annotations

import shutil

import difflib
import tomllib
from importlib import import_module
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from .checks import PKPDInputError
from . import drugs
from .output import DEFAULT_ROOT, check_name, default_folder, write_folder
from .titration import TitrationRule
from .endpoints import ENDPOINTS, _interval, percent
from .intervals import clopper_pearson
from .trial import Arm, Endpoints, Stage, Trial
from .trial_result import TrialResult

#: Default parent of the output folders (relative to the working directory):
#: a run without ``out`` writes to ``pkpd-results/<scenario name>``.
DEFAULT_OUT = DEFAULT_ROOT

# Key -> (expected type, what it means).  Types: "number", "whole", "bool",
# "text", "numbers" (list of numbers), "pair" (two numbers).
_SCHEMA = {
    "scenario": {
        "name": ("text", "a short name, used for the output folder"),
        "description": ("text", "one line shown in reports"),
        "seed": ("whole", "random seed (whole number >= 0)"),
        "replicates": ("whole", "replicate trials (>= 1)"),
    },
    "model": {
        "drug": ("text", f"one of {', '.join(drugs.DRUGS)} (pkpd.drugs; default hetrombopag)"),
        "population": ("text", 'the drug\'s population, e.g. "itp" or "healthy"'),
        "pk": ("text", 'hetrombopag\'s PK model: "linear" (default) or "saturable" (dose-dependent, calibrated ITP model)'),
        "nonresponder_fraction": ("number", "share of patients without drug effect, 0-1"),
        **{p: ("number", f"typical {p} override") for p in drugs.PARAMETERS},
    },
    "trial": {
        "duration_days": ("whole", "days of follow-up"),
        "visit_every_days": ("whole", "days between assessment visits"),
        "treatment_days": ("whole", "days of dosing (default: whole trial)"),
    },
    "endpoints": {
        "response": ("number", "response threshold, 10^9/L"),
        "primary_day": ("whole_or_false", "day of the primary assessment (false = none)"),
        "target": ("pair", "[low, high] range for time in range, 10^9/L"),
        "above": ("number", "threshold for time above, 10^9/L"),
        "below": ("number", "threshold for time below, 10^9/L"),
        "stopped_as_nonresponders": ("bool", "stopped patients count as non-responders"),
        "once_within_days": ("whole_or_false", "responded_once counts assessments up to this day (false = whole trial)"),
        "increased_above": ("number", "platelet_increased threshold, 10^9/L"),
        "increased_within_days": ("whole", "platelet_increased counts assessments up to this day"),
        "relapse_below": ("number", "time_to_relapse: a count below this after the taper start, 10^9/L"),
    },
    "rule": {
        "ladder_mg": ("numbers", "dose levels, mg, e.g. [0, 2.5, 3.75, 5, 7.5]"),
        "visit_every_days": ("whole", "days between decision visits"),
        "low": ("number", "step up (or down, see step_below_low) below this, 10^9/L"),
        "high": ("number", "step down (or up) above this, 10^9/L"),
        "step_below_low": ("text", '"up" (a drug that raises counts, default) or "down" (one that lowers them)'),
        "interrupt_above": ("number", "interrupt above this, 10^9/L"),
        "resume_below": ("number", "resume once below this, 10^9/L"),
        "resume_levels_down": ("whole", "levels below the pre-interruption dose to resume at"),
        "interrupt_at_lowest": ("bool", "interrupt when above high on the lowest level"),
        "step_up_after_days": ("number", "days on the current dose before a step up"),
        "min_days_between_changes": ("number", "days between dose changes"),
        "confirm_up": ("whole", "consecutive low counts before stepping up"),
        "confirm_down": ("whole", "consecutive high counts before stepping down"),
        "confirm_interrupt": ("whole", "consecutive very high counts before interrupting"),
        "confirm_resume": ("whole", "consecutive counts below resume_below before resuming"),
        "stop_after_days_at_max": ("number", "stop if below low after this many days at the top level"),
        "name": ("text", "label of the rule"),
        "kind": ("text", '"label" (pkpd.TitrationRule, default) or "model-guided" (pkpd.forecast.ModelGuidedRule)'),
        "max_p_above": ("number", "model-guided: largest accepted P(count > interrupt_above)"),
        "horizon_visits": ("whole", "model-guided: visits ahead forecast"),
        "posterior": ("text", 'model-guided: "importance" or "laplace"'),
        "n_laplace": ("whole", "model-guided: Laplace draws per patient"),
        "n_draws": ("whole", "model-guided: importance-sampling draws per forecast"),
        "n_predict": ("whole", "model-guided: simulated posterior draws per forecast"),
        "seed": ("whole", "model-guided: seed of the decisions"),
        "hold_margin": ("number", "model-guided: keep a safe current dose while its P(50-250) is within this of the best"),
    },
    "arm": {
        "name": ("text", "arm label"),
        "n": ("whole", "patients per trial"),
        "start_mg": ("number", "once-daily dose from day 0, mg (0 without rule = placebo)"),
        "rule": ("text", "name of a [rules.NAME] table; leave out for a fixed dose"),
        "published": ("table_or_tables", "published result(s): endpoint, responders, n, source"),
        "stages": ("tables", "[[arms.stages]] tables: kind, days, ..."),
    },
    "stage": {
        "kind": ("text", '"fixed", "titration", "taper" or "off"'),
        "days": ("whole", "duration of the stage, days"),
        "dose_mg": ("number", "fixed: dose held; titration: start dose (default: the dose carried in), mg"),
        "rule": ("text", "titration: name of a [rules.NAME] table (default: the arm's rule)"),
        "taper_every_days": ("whole", "taper: days between one-level steps down"),
        "ladder_mg": ("numbers", "taper: dose levels, mg"),
        "responder_at_least": ("number", "taper: observed count at the taper start to be tapered, 10^9/L"),
        "nonresponders": ("text", 'taper: "stay" (keep their dose) or "stop" (stop treatment)'),
    },
    "published": {
        "endpoint": ("text", f"one of {list(ENDPOINTS)[:3]} (binomial endpoints)"),
        "responders": ("whole", "patients with the endpoint"),
        "n": ("whole", "patients in the published arm"),
        "source": ("text", "citation"),
    },
}
_TOP = ("scenario", "model", "trial", "endpoints", "rules", "arms")
_EXAMPLES = {"number": "70", "whole": "70", "whole_or_false": "56", "bool": "true", "text": '"label"', "numbers": "[0, 2.5, 5]", "pair": "[50, 250]"}


# ================================================================= validation
def _type_ok(value, kind: str) -> bool:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "number":
        return number
    if kind == "whole":
        return number and float(value).is_integer()
    if kind == "whole_or_false":
        return value is False or (number and float(value).is_integer())
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "text":
        return isinstance(value, str)
    if kind == "table":
        return isinstance(value, dict)
    if kind == "tables":
        return isinstance(value, list) and all(isinstance(v, dict) for v in value)
    if kind == "table_or_tables":
        return isinstance(value, dict) or (isinstance(value, list) and all(isinstance(v, dict) for v in value))
    if kind in ("numbers", "pair"):
        ok = isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        return ok and (kind == "numbers" or len(value) == 2)
    raise AssertionError(kind)


def _check_table(table, schema: str, where: str, required: tuple[str, ...] = ()) -> dict:
    """Unknown keys, missing keys and types of one TOML table."""
    if not isinstance(table, dict):
        raise PKPDInputError(f"{where} must be a table ([{where}] section); got {type(table).__name__}.")
    allowed = _SCHEMA[schema]
    for key, value in table.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise PKPDInputError(
                f"unknown key {where}.{key}; {hint}allowed keys in {where}: {sorted(allowed)}. Remove or rename it."
            )
        kind, meaning = allowed[key]
        if not _type_ok(value, kind):
            what = {"whole": "a whole number", "whole_or_false": "a whole number or false", "numbers": "a list of numbers", "pair": "a list of two numbers",
                    "table": "a table", "tables": "a list of [[tables]]",
                    "table_or_tables": "a table or a list of [[tables]]", "text": "a text in quotes"}.get(kind, f"a {kind}")
            raise PKPDInputError(
                f"{where}.{key} must be {what} ({meaning}); got {value!r} ({type(value).__name__}). "
                f"Write e.g. {key} = {_EXAMPLES.get(kind, '...')}."
            )
    missing = [k for k in required if k not in table]
    if missing:
        raise PKPDInputError(f"{where} lacks required key(s) {missing}; add e.g. {missing[0]} = {_EXAMPLES[allowed[missing[0]][0]]}.")
    return table


def _rule_class(where: str, kind, body: dict):
    """The rule class of ``[rules.NAME] kind``; keys of the model-guided rule only with it."""
    guided = ("max_p_above", "horizon_visits", "posterior", "n_laplace", "n_draws", "n_predict", "seed", "hold_margin")
    if kind == "model-guided":
        # the forecasting stack (ArviZ) loads only for a guided rule
        return import_module(".forecast", __package__).ModelGuidedRule
    if kind != "label":
        raise PKPDInputError(f'{where}.kind = {kind!r}: use "label" (pkpd.TitrationRule) or "model-guided" '
                             "(pkpd.forecast.ModelGuidedRule).")
    extra = [k for k in guided if k in body]
    if extra:
        raise PKPDInputError(f'{where}.{extra[0]} belongs to a model-guided rule; add kind = "model-guided" or remove it.')
    return TitrationRule


def _stage(where: str, body, rules: Mapping[str, TitrationRule]) -> Stage:
    """One [[arms.stages]] table as a :class:`~pkpd.trial.Stage` (its rule looked up by name)."""
    body = dict(_check_table(body, "stage", where, required=("kind", "days")))
    rname = body.pop("rule", None)
    if rname is not None:
        if rname not in rules:
            raise PKPDInputError(f"{where}.rule = {rname!r} names no [rules.{rname}] table; defined rules: {sorted(rules)}.")
        body["rule"] = rules[rname]
    if "ladder_mg" in body:
        body["ladder_mg"] = tuple(body["ladder_mg"])
    return _wrap(where, Stage, **body)


def _wrap(where: str, build, *args, **kwargs):
    """Call ``build``; prefix a PKPDInputError with the scenario key it came from."""
    try:
        return build(*args, **kwargs)
    except PKPDInputError as err:
        raise PKPDInputError(f"{where}: {err}") from None


# ================================================================= scenario
@dataclass(frozen=True)
class Published:
    """A published binomial result: ``responders`` of ``n`` patients (source cited)."""

    endpoint: str
    responders: int
    n: int
    source: str = ""

    def __post_init__(self):
        if self.endpoint not in ENDPOINTS or ENDPOINTS[self.endpoint][1] != "binomial":
            binomial = [k for k, (_, kind) in ENDPOINTS.items() if kind == "binomial"]
            raise PKPDInputError(f"published endpoint {self.endpoint!r} is not a binomial endpoint; use one of {binomial}.")
        if not 0 <= self.responders <= self.n or self.n < 1:
            raise PKPDInputError(f"published responders ({self.responders}) must lie in 0..n (n={self.n}, >= 1).")

    @property
    def rate(self) -> float:
        return self.responders / self.n

    @property
    def interval(self) -> tuple[float, float]:
        """Clopper-Pearson 95% interval of the published share."""
        lo, hi = clopper_pearson(self.responders, self.n)
        return float(lo), float(hi)


@dataclass(frozen=True)
class Scenario:
    """A loaded, validated scenario: the trial design plus run settings."""

    name: str
    trial: Trial
    seed: int | None = None
    replicates: int = 1
    description: str = ""
    published: Mapping[str, Published] = field(default_factory=dict)
    path: Path | None = None
    #: every published result as (arm name, Published); ``published`` holds each arm's first (the headline)
    published_all: tuple[tuple[str, Published], ...] = ()

    def __post_init__(self):
        if not self.published_all and self.published:
            object.__setattr__(self, "published_all", tuple(self.published.items()))

    def __repr__(self) -> str:
        where = f", from {self.path}" if self.path is not None else ""
        return f"Scenario({self.name!r}: {self.trial!r}, seed {self.seed}, {self.replicates} replicate(s){where})"

    @classmethod
    def load(cls, path) -> "Scenario":
        """Read and validate a scenario TOML file."""
        path = Path(path)
        if path.is_dir():
            raise PKPDInputError(f"scenario {str(path)!r} is a folder; give the path to a .toml file "
                                 f"(e.g. scenarios/itp_phase3.toml).")
        if not path.is_file():
            raise PKPDInputError(f"scenario file {str(path)!r} not found; give the path to a .toml file (e.g. scenarios/itp_phase3.toml).")
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise PKPDInputError(f"scenario file {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start}); "
                                 "save it as UTF-8.") from None
        except tomllib.TOMLDecodeError as err:
            raise PKPDInputError(f"scenario file {path}: not valid TOML ({err}); fix the syntax.") from None
        return _wrap(f"scenario file {path}", cls.from_dict, data, path=path)

    @classmethod
    def from_dict(cls, data: dict, path: Path | None = None) -> "Scenario":
        """Build from the parsed TOML (see the module docs for the layout)."""
        if "problem" in data and "scenario" not in data:
            raise PKPDInputError(
                "this is a calibration problem file ([problem] table), not a scenario; it is read by "
                "pkpd.calibrate.load_problem: calibrate(**load_problem(path)) (see notebooks/03_itp_calibration.ipynb "
                "and benchmarks/bench_calibrate.py).")
        for key in data:
            if key not in _TOP:
                close = difflib.get_close_matches(key, _TOP, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise PKPDInputError(f"unknown table [{key}]; {hint}allowed: {list(_TOP)}.")
        sc = _check_table(data.get("scenario", {}), "scenario", "scenario", required=("name",))
        check_name("scenario.name", sc["name"])  # it becomes a folder name: no path text
        mo = dict(_check_table(data.get("model", {}), "model", "model"))
        tr = _check_table(data.get("trial", {}), "trial", "trial", required=("duration_days",))
        en = _check_table(data.get("endpoints", {}), "endpoints", "endpoints")

        def keyed(where, schema, build, *args, **kwargs):
            """Call ``build``; an error that starts with one of the table's keys is
            reported as ``where.key ...``, any other as ``where: ...``."""
            try:
                return build(*args, **kwargs)
            except PKPDInputError as err:
                msg = str(err)
                if any(msg.startswith(f"{top}.") or msg.startswith(f"{top}[") for top in _TOP):
                    raise PKPDInputError(msg) from None  # already names its key
                lead = any(msg.startswith(k) and not (msg[len(k):len(k) + 1].isalnum() or msg[len(k):len(k) + 1] == "_")
                           for k in _SCHEMA[schema])
                raise PKPDInputError(f"{where}.{msg}" if lead else f"{where}: {msg}") from None

        rules_raw = data.get("rules", {})
        if not isinstance(rules_raw, dict):
            raise PKPDInputError("rules must be tables [rules.NAME]; e.g. [rules.label] with ladder_mg = [0, 2.5, 5].")
        rules = {}
        for rname, body in rules_raw.items():
            where = f"rules.{rname}"
            body = _check_table(body, "rule", where)
            body = {**body, "name": body.get("name", rname)}
            if "ladder_mg" in body:
                body["ladder_mg"] = tuple(body["ladder_mg"])
            rules[rname] = keyed(where, "rule", _rule_class(where, body.pop("kind", "label"), body), **body)

        drug = mo.pop("drug", "hetrombopag")
        # without a population: ITP where the drug has it (pkpd's main use), else the drug's first
        known = drugs.DRUGS[drug].POPULATIONS if drug in drugs.DRUGS else ("itp",)
        population = mo.pop("population", "itp" if "itp" in known else known[0])
        nonresponders = mo.pop("nonresponder_fraction", None)
        model = _wrap("model", drugs.model, drug, population, **mo)
        if nonresponders is not None:
            model = _wrap("model.nonresponder_fraction", model.with_, nonresponder_fraction=nonresponders)
        # a model-guided rule forecasts with the scenario's model
        rules = {k: r if type(r) is TitrationRule else r.with_(model=model) for k, r in rules.items()}

        arms_raw = data.get("arms")
        if isinstance(arms_raw, dict):
            raise PKPDInputError("arms must be a list of [[arms]] tables (double brackets), one per arm; "
                                 "got a single [arms] table. Write [[arms]] above each arm.")
        if not isinstance(arms_raw, list) or not arms_raw:
            raise PKPDInputError('arms missing: add at least one [[arms]] table with name, n and start_mg.')
        arms, published, every = [], {}, []
        for i, body in enumerate(arms_raw):
            where = f"arms[{i}]"
            body = dict(_check_table(body, "arm", where, required=("name", "n", "start_mg")))
            where = f"arms[{i}] ({body['name']!r})"
            pub = body.pop("published", None)
            stages = [_stage(f"{where}.stages[{k}]", st, rules) for k, st in enumerate(body.pop("stages", []))]
            rname = body.pop("rule", None)
            if rname is not None and rname not in rules:
                raise PKPDInputError(f"{where}.rule = {rname!r} names no [rules.{rname}] table; defined rules: {sorted(rules)}.")
            rule = rules.get(rname) if rname is not None else None
            if rule is not None and not stages:
                _wrap(f"{where}.start_mg", rule.level_of, body["start_mg"], "start dose")
            arms.append(keyed(f"arms[{i}]", "arm", Arm, body["name"], int(body["n"]), float(body["start_mg"]), rule,
                              tuple(stages)))
            for j, pub in enumerate([] if pub is None else [pub] if isinstance(pub, dict) else pub):
                at = f"{where}.published" + (f"[{j}]" if j else "")
                pub = _check_table(pub, "published", at, required=("endpoint", "responders", "n"))
                found = _wrap(at, Published, pub["endpoint"], int(pub["responders"]), int(pub["n"]), pub.get("source", ""))
                published.setdefault(body["name"], found)
                every.append((body["name"], found))

        en = {k: (tuple(v) if k == "target" else v) for k, v in en.items()}
        for key in ("primary_day", "once_within_days"):
            if en.get(key) is False:
                en[key] = None
        endpoints = keyed("endpoints", "endpoints", Endpoints, **en)
        trial = keyed("trial", "trial", Trial, tuple(arms), model=model, endpoints=endpoints, name=sc["name"], **tr)
        # the run's size with the file's replicates, so that a check refuses what a run could not hold
        replicates = trial.check_size(sc.get("replicates", 1), field="scenario.replicates")
        seed = sc.get("seed")
        if seed is not None and seed < 0:
            raise PKPDInputError(f"scenario.seed must be a whole number >= 0; got {seed}.")
        return cls(sc["name"], trial, None if seed is None else int(seed), replicates, sc.get("description", ""), published, path,
                   tuple(every))

    def run(self, seed=None, replicates: int | None = None, progress: bool = True, workers=None) -> "ScenarioResult":
        """Simulate the scenario (seed / replicates override the file's).
        ``workers``: where the replicates run (see :mod:`pkpd.distributed`,
        :meth:`Trial.run`); the result is bit-identical whatever ``workers``."""
        seed = self.seed if seed is None else seed
        replicates = self.replicates if replicates is None else replicates
        return ScenarioResult(self, self.trial.run(seed=seed, replicates=replicates, progress=progress, workers=workers))


class ScenarioResult:
    """A scenario's :class:`~pkpd.trial.TrialResult` plus the published comparison.

    endpoints : the trial's endpoint table with, where the scenario gives a
        published result, its share, Clopper-Pearson 95% interval, source and
        whether the simulated estimate lies inside (``published_*`` columns).
    summary() : one row per arm, the headline endpoint beside the published one.
    comparison() : the text table of every reported endpoint (``pkpd run`` prints it).
    plot_response() : the headline endpoint by arm beside the published interval.
    out_dir : where :meth:`save` wrote the files (None before).
    """

    def __init__(self, scenario: Scenario, result: TrialResult):
        self.scenario = scenario
        self.result = result
        self.out_dir: Path | None = None

    def __repr__(self) -> str:
        res, name = self.result, self.result.headline_endpoint
        e = self.endpoints
        parts = []
        for r in e[e["endpoint"] == name].itertuples():
            text = f"{r.arm} {percent(r.estimate, name)}"
            if pd.notna(r.published_rate):
                text += f" (published {percent(r.published_rate)}, {'inside' if r.inside_published_interval else 'OUTSIDE'})"
            parts.append(text)
        where = f", saved in {self.out_dir}" if self.out_dir is not None else ""
        return (f"<ScenarioResult {self.scenario.name!r}: {len(self.scenario.trial.arms)} arms, "
                f"{res.replicates} replicate{'s' if res.replicates > 1 else ''}, seed {res.seed}{where}\n"
                f" {name}: " + "; ".join(parts) + "\n .summary(), .comparison(), .endpoints, .plot_response()>")

    def summary(self) -> pd.DataFrame:
        """One row per arm: N, replicates, seed, the headline endpoint in
        percent with its intervals and the published result beside it (see
        :meth:`pkpd.trial.TrialResult.summary`)."""
        return self.result.summary(published=self.scenario.published)

    def plot_response(self, endpoint: str | None = None):
        """The headline endpoint (or ``endpoint``) by arm, simulated beside
        the published interval (see :meth:`pkpd.trial.TrialResult.plot_response`)."""
        return self.result.plot_response(endpoint, published=self.scenario.published)

    def __getattr__(self, name):  # ledger, doses, platelets, per_replicate, to_nonmem, plots ...
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.result, name)

    @property
    def endpoints(self) -> pd.DataFrame:
        # an endpoint with a published result is always shown, even where it is otherwise omitted
        every = self.scenario.published_all
        table = self.result._endpoint_table(keep=[p.endpoint for _, p in every]).copy()
        cols = {"published_rate": np.nan, "published_low": np.nan, "published_high": np.nan}
        for c, v in cols.items():
            table[c] = v
        table["published_n"] = pd.array([pd.NA] * len(table), dtype="Int64")
        table["published_source"] = ""
        for arm, pub in every:
            row = (table["arm"] == arm) & (table["endpoint"] == pub.endpoint)
            lo, hi = pub.interval
            table.loc[row, ["published_rate", "published_low", "published_high"]] = [pub.rate, lo, hi]
            table.loc[row, "published_n"] = pub.n
            table.loc[row, "published_source"] = pub.source
        inside = (table["estimate"] >= table["published_low"]) & (table["estimate"] <= table["published_high"])
        table["inside_published_interval"] = inside.where(table["published_rate"].notna())
        return table

    def comparison(self) -> str:
        """Text table of every reported endpoint in percent: the simulated
        value with the 95% interval of one trial of N patients, the 2.5-97.5%
        range over the replicate trials (with several) and the published
        result with its Clopper-Pearson 95% interval; then what each endpoint
        means and which were left out and why."""
        t = self.endpoints
        reps = self.result.replicates
        rep_col = f"2.5-97.5% over {reps} replicates"
        lines = []
        for _, r in t.iterrows():
            name = r["endpoint"]
            pub = ""
            if pd.notna(r["published_rate"]):
                k = round(r["published_rate"] * r["published_n"])
                mark = "inside" if r["inside_published_interval"] else "OUTSIDE"
                pub = (f"{percent(r['published_rate'])} ({k}/{r['published_n']}) "
                       f"{_interval(r['published_low'], r['published_high'])} {mark}")
            simulated = percent(r["estimate"], name)
            if r["kind"] == "time_to_event":  # a median: say how many events among how many at risk
                simulated = f"{simulated or 'not reached'} ({r['events']:.0f} events / {r['at_risk']:.0f} at risk)"
            lines.append({"arm": r["arm"], "endpoint": name, "N": r["n"], "simulated": simulated,
                          "95% CI, one trial of N": _interval(r["trial_low"], r["trial_high"], name),
                          rep_col: _interval(r["replicate_low"], r["replicate_high"], name),
                          "published (k/N) [95% CI]": pub})
        table = pd.DataFrame(lines)
        if reps == 1:
            table = table.drop(columns=[rep_col])
        if not (table["published (k/N) [95% CI]"] != "").any():
            table = table.drop(columns=["published (k/N) [95% CI]"])
        head = (f"{self.scenario.name}: {self.scenario.description}\n"
                f"seed {self.result.seed}, {reps} replicate(s), N per arm: "
                + ", ".join(f"{a.name} {a.n}" for a in self.scenario.trial.arms))
        meaning = t.drop_duplicates("endpoint")
        foot = ["95% CI, one trial of N: Clopper-Pearson for shares of patients, mean +- 1.96 SD/sqrt(N) for means."]
        if reps > 1:
            foot.append(f"{rep_col}: spread of the endpoint over {reps} simulated trials of the same design.")
        foot += [f"{r.endpoint}: {r.description}" for r in meaning.itertuples()]
        omitted = {k: v for k, v in self.result.omitted_endpoints.items() if k not in set(t["endpoint"])}
        for why in dict.fromkeys(omitted.values()):
            foot.append(f"not reported: {', '.join(k for k, w in omitted.items() if w == why)}: {why}")
        foot += [f"published: {s}" for s in sorted({p.source for _, p in self.scenario.published_all if p.source})]
        return "\n".join([head, table.to_string(index=False), *foot]).rstrip()

    def save(self, out_dir=None) -> Path:
        """Write the trial outputs (see :meth:`TrialResult.save`) and
        comparison.txt; the endpoints.csv includes the published columns."""
        out = Path(out_dir) if out_dir is not None else default_folder(self.scenario.name)
        self.out_dir = _save(self, out)
        return self.out_dir


def _save(res: ScenarioResult, out: Path) -> Path:
    """One results folder: the trial's files, the endpoint table with the
    published columns, the comparison text and a copy of the scenario file."""
    def fill(folder: Path) -> None:
        res.result._write_files(folder, published=res.scenario.published)
        res.endpoints.to_csv(folder / "endpoints.csv", index=False)
        (folder / "comparison.txt").write_text(res.comparison() + "\n")
        if res.scenario.path is not None:
            shutil.copyfile(res.scenario.path, folder / "scenario.toml")

    return write_folder(out, fill)


def load_scenario(path) -> Scenario:
    """Read and validate a scenario file (see the module docs)."""
    return Scenario.load(path)


def run_scenario(path, out=None, seed=None, replicates: int | None = None, progress: bool = True,
                 save: bool = True, workers=None) -> ScenarioResult:
    """Load, run and (by default) save a scenario; what ``pkpd run`` does.

    out : output folder (default ``pkpd-results/<scenario name>``).
    seed, replicates : override the file's values.
    workers : where the replicates run (see :mod:`pkpd.distributed`).
    Returns a :class:`ScenarioResult` (``.endpoints`` DataFrame, ``.ledger``,
    ``.doses``, ``.platelets``, ``.out_dir``).
    """
    result = load_scenario(path).run(seed=seed, replicates=replicates, progress=progress, workers=workers)
    if save:
        result.save(out)
    return result
