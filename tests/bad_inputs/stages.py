"""Bad stages and stage endpoints: ``Stage``, an ``Arm`` with stages, the
stage settings of ``Endpoints`` and ``[[arms.stages]]`` tables of a scenario
file are refused with the field, the value and the fix, before any run."""

from __future__ import annotations

from bad_inputs import Case, CliCase
from pkpd import Arm, Endpoints, PKPDInputError, TitrationRule, Trial, load_scenario
from pkpd.trial import Stage

RULE = TitrationRule()
NAN = float("nan")


def _stage(id_, *mentions, kind="taper", days=42, **fields):
    return Case(f"stages-{id_}", lambda tmp_path: Stage(kind, days, **fields), PKPDInputError, mentions)


def _arm(id_, stages, *mentions, start_mg=2.5, rule=None):
    return Case(f"stages-{id_}", lambda tmp_path: Arm("a", 5, start_mg, rule, stages=stages), PKPDInputError, mentions)


def _endpoints(id_, *mentions, **fields):
    return Case(f"stages-{id_}", lambda tmp_path: Endpoints(**fields), PKPDInputError, mentions)


#: A small valid staged scenario; each file case replaces one line of it.
BASE = """\
[scenario]
name = "staged"
seed = 1

[trial]
duration_days = 56
visit_every_days = 7

[rules.label]

[[arms]]
name = "tapered"
n = 10
start_mg = 2.5
rule = "label"
[[arms.stages]]
kind = "titration"
days = 28
[[arms.stages]]
kind = "taper"
days = 28
taper_every_days = 7
"""


def _file(id_, old, new, *mentions):
    assert old in BASE, old

    def call(tmp_path):
        path = tmp_path / "staged.toml"
        path.write_text(BASE.replace(old, new))
        return load_scenario(path)

    return Case(f"stages-file-{id_}", call, PKPDInputError, mentions)


def _cli(tmp_path):
    path = tmp_path / "staged.toml"
    path.write_text(BASE.replace('kind = "taper"', 'kind = "withdraw"'))
    return ["check", str(path)]


CASES = [
    # one stage
    _stage("unknown-kind", "stage kind", "tapr", "taper", kind="tapr"),
    _stage("kind-not-text", "stage kind", "3", kind=3),
    _stage("days-zero", "taper stage days", "> 0", "0", days=0),
    _stage("days-negative", "fixed stage days", "-14", kind="fixed", days=-14),
    _stage("days-fraction", "off stage days", "whole number of days", "10.5", kind="off", days=10.5),
    _stage("days-nan", "titration stage days", "nan", kind="titration", days=NAN),
    _stage("days-past-20-years", "taper stage days", "7305", "100000", days=100_000),
    _stage("taper-interval-zero", "taper_every_days", "0", taper_every_days=0),
    _stage("taper-interval-fraction", "taper_every_days", "3.5", taper_every_days=3.5),
    _stage("taper-responder-negative", "responder_at_least", "-50", responder_at_least=-50),
    _stage("taper-responder-bool", "responder_at_least", "True", responder_at_least=True),
    _stage("taper-nonresponders-unknown", "nonresponders", "leave", "stay", nonresponders="leave"),
    _stage("taper-ladder-unsorted", "taper stage", "ladder_mg", "[5.0, 2.5]", ladder_mg=(5.0, 2.5)),
    _stage("taper-ladder-negative", "ladder_mg", "-2.5", ladder_mg=(0.0, -2.5, 5.0)),
    _stage("off-with-dose", "off stage", "dose_mg", "5", kind="off", dose_mg=5.0),
    _stage("fixed-with-taper-interval", "fixed stage", "taper_every_days", "14", kind="fixed", taper_every_days=14),
    _stage("taper-with-rule", "taper stage", "rule", kind="taper", rule=RULE),
    _stage("fixed-dose-negative", "dose_mg", "-5", kind="fixed", dose_mg=-5.0),
    _stage("titration-rule-not-a-rule", "rule", "str", kind="titration", rule="label"),
    # stages of an arm
    _arm("taper-after-placebo", (Stage.taper(14),), "stages[0] (taper)", "0 mg", "no ladder level below", start_mg=0.0),
    _arm("taper-after-off", (Stage.fixed(14), Stage.off(7), Stage.taper(14)), "stages[2] (taper)", "no ladder level below"),
    _arm("taper-dose-off-ladder", (Stage.fixed(14), Stage.taper(14)), "stages[1]", "6", "ladder_mg", start_mg=6.0),
    _arm("titration-without-rule", (Stage.titration(14),), "stages[0] (titration)", "needs a rule"),
    _arm("titration-after-off", (Stage.off(7), Stage.titration(14)), "stages[1] (titration)", "0 mg", rule=RULE),
    _arm("titration-start-off-ladder", (Stage.titration(14, dose_mg=4.0),), "stages[0]", "4.0", "ladder", rule=RULE),
    _arm("titration-after-other-rule", (Stage.titration(14), Stage.titration(14, rule=RULE.with_(ladder_mg=(0, 2.5, 3.75)))),
         "stages[1]", "dose_mg", "not one known level", rule=RULE),
    _arm("stages-not-stages", ("fixed",), "stages", "'fixed'"),
    Case("stages-longer-than-trial",
         lambda tmp_path: Trial((Arm("a", 5, 2.5, stages=(Stage.fixed(30), Stage.off(30))),), duration_days=42,
                                endpoints=Endpoints(primary_day=None)),
         PKPDInputError, ("stages last 60 days", "30 + 30", "duration_days 42")),
    # the stage endpoints
    _endpoints("relapse-below-negative", "endpoints.relapse_below", "-50", relapse_below=-50),
    _endpoints("relapse-below-nan", "endpoints.relapse_below", "nan", relapse_below=NAN),
    _endpoints("increased-above-zero", "endpoints.increased_above", "0", increased_above=0),
    _endpoints("increased-within-zero", "endpoints.increased_within_days", "0", increased_within_days=0),
    _endpoints("increased-within-fraction", "endpoints.increased_within_days", "10.5", increased_within_days=10.5),
    _endpoints("once-within-negative", "endpoints.once_within_days", "-7", once_within_days=-7),
    # scenario files
    _file("kind-unknown", 'kind = "taper"', 'kind = "withdraw"', "arms[0]", "stages[1]", "kind", "withdraw"),
    _file("days-missing", "days = 28\ntaper_every_days", "taper_every_days", "stages[1]", "days"),
    _file("days-text", "days = 28\ntaper_every_days", 'days = "four weeks"\ntaper_every_days', "stages[1].days", "four weeks"),
    _file("interval-zero", "taper_every_days = 7", "taper_every_days = 0", "stages[1]", "taper_every_days", "0"),
    _file("unknown-key", "taper_every_days = 7", "taper_every_weeks = 1", "stages[1]", "taper_every_weeks",
          "taper_every_days"),
    _file("rule-unknown", 'kind = "titration"', 'kind = "titration"\nrule = "lable"', "stages[0].rule", "lable", "label"),
    _file("stages-as-table", BASE[BASE.index("[[arms.stages]]"):], '[arms.stages]\nkind = "fixed"\ndays = 28\n',
          "arms[0].stages", "list of [[tables]]"),
    _file("relapse-negative", "[rules.label]", "[endpoints]\nrelapse_below = -5\n\n[rules.label]", "endpoints.relapse_below", "-5"),
    _file("once-window-text", "[rules.label]", '[endpoints]\nonce_within_days = "8 weeks"\n\n[rules.label]',
          "endpoints.once_within_days", "8 weeks"),
    CliCase("stages-cli-check-kind-unknown", _cli, ("stages[1]", "kind", "withdraw")),
]
