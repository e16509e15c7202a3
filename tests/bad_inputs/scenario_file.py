"""Bad scenario files: each small TOML is refused by ``pkpd.load_scenario``
(what ``pkpd check`` runs) with the key and the value, before any run."""

from __future__ import annotations

from bad_inputs import Case, CliCase
from pkpd import PKPDInputError, load_scenario

#: A small valid scenario; each case changes one line of it.
BASE = """\
[scenario]
name = "small"
seed = 1
replicates = 1

[trial]
duration_days = 56
visit_every_days = 7

[endpoints]
primary_day = 56
target = [50, 250]

[rules.label]
ladder_mg = [0, 2.5, 5]
low = 50
high = 250
visit_every_days = 7

[[arms]]
name = "titrated"
n = 20
start_mg = 2.5
rule = "label"

[[arms]]
name = "placebo"
n = 10
start_mg = 0.0
[arms.published]
endpoint = "responders_primary"
responders = 1
n = 10
"""


def _write(tmp_path, old: str, new: str):
    assert old in BASE, old
    path = tmp_path / "bad.toml"
    path.write_text(BASE.replace(old, new, 1))
    return path


def _load(old: str, new: str):
    return lambda tmp_path: load_scenario(_write(tmp_path, old, new))


def _single_arm_table(tmp_path):
    """One arm written as [arms] (a table) instead of [[arms]] (a list of tables)."""
    path = tmp_path / "bad.toml"
    path.write_text(BASE.split("[[arms]]")[0] + '[arms]\nname = "placebo"\nn = 10\nstart_mg = 0.0\n')
    return path


def _latin1(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[scenario]\nname = "caf\u00e9"\n'.encode("latin-1"))
    return path


def _case(id_, old, new, *mentions):
    return Case(f"scenario-file-{id_}", _load(old, new), PKPDInputError, mentions)


CASES = [
    # trial
    _case("duration-million-days", "duration_days = 56", "duration_days = 1000000", "trial.duration_days", "1000000", "7305"),
    _case("duration-past-20-years", "duration_days = 56", "duration_days = 7306", "trial.duration_days", "7306"),
    _case("duration-zero", "duration_days = 56", "duration_days = 0", "trial.duration_days", "0"),
    _case("duration-nan", "duration_days = 56", "duration_days = nan", "trial.duration_days", "nan"),
    _case("duration-text", "duration_days = 56", 'duration_days = "8 weeks"', "trial.duration_days", "8 weeks"),
    _case("visit-interval-zero", "visit_every_days = 7\n\n[endpoints]", "visit_every_days = 0\n\n[endpoints]",
          "trial.visit_every_days", "0"),
    _case("visit-interval-longer-than-trial", "visit_every_days = 7\n\n[endpoints]",
          "visit_every_days = 100\n\n[endpoints]", "trial.visit_every_days", "100"),
    _case("treatment-after-end", "visit_every_days = 7\n\n[endpoints]",
          "visit_every_days = 7\ntreatment_days = 80\n\n[endpoints]", "trial.treatment_days", "80"),
    # endpoints
    _case("primary-day-not-a-visit", "primary_day = 56", "primary_day = 50", "endpoints.primary_day", "50"),
    _case("primary-day-after-end", "primary_day = 56", "primary_day = 63", "endpoints.primary_day", "63"),
    _case("primary-day-true", "primary_day = 56", "primary_day = true", "endpoints.primary_day", "True"),
    _case("response-negative", "primary_day = 56", "primary_day = 56\nresponse = -50", "endpoints.response", "-50"),
    _case("target-reversed", "target = [50, 250]", "target = [250, 50]", "endpoints.target", "250"),
    _case("above-zero", "primary_day = 56", "primary_day = 56\nabove = 0", "endpoints.above", "0"),
    # arms
    _case("arm-n-zero", "n = 20", "n = 0", "arms[0].n", "0"),
    _case("arm-n-negative", "n = 20", "n = -5", "arms[0].n", "-5"),
    _case("arm-n-fraction", "n = 20", "n = 20.5", "arms[0].n", "20.5"),
    _case("arm-n-billion", "n = 20", "n = 1000000000", "n = 1,000,000,000", "patient-days"),
    _case("arm-start-negative", "start_mg = 0.0", "start_mg = -1.0", "arms[1].start_mg", "-1.0"),
    _case("arm-start-huge", "start_mg = 0.0", "start_mg = 1e9", "arms[1].start_mg", "1000000000"),
    _case("arm-start-off-ladder", "start_mg = 2.5", "start_mg = 3.0", "arms[0] ('titrated').start_mg", "3.0"),
    _case("arm-titrated-start-zero", "start_mg = 2.5", "start_mg = 0", "arms[0]", "0 mg"),
    _case("arm-unknown-rule", 'rule = "label"', 'rule = "lable"', "arms[0] ('titrated').rule", "'lable'"),
    _case("arm-names-repeat", 'name = "placebo"', 'name = "titrated"', "unique", "'titrated'"),
    Case("scenario-file-is-a-folder", lambda tmp_path: load_scenario(tmp_path), PKPDInputError,
         ("scenario", "is a folder")),
    Case("scenario-file-not-utf8", lambda tmp_path: load_scenario(_latin1(tmp_path)), PKPDInputError,
         ("latin1.toml", "not UTF-8")),
    Case("scenario-file-arms-single-table", lambda tmp_path: load_scenario(_single_arm_table(tmp_path)),
         PKPDInputError, ("[[arms]]", "single [arms] table")),
    _case("published-responders-above-n", "responders = 1", "responders = 11", "arms[1] ('placebo').published", "11"),
    # rules
    _case("rule-low-negative", "low = 50", "low = -5", "rules.label.low", "-5"),
    _case("rule-low-nan", "low = 50", "low = nan", "rules.label.low", "nan"),
    _case("rule-high-below-low", "high = 250", "high = 40", "rules.label", "high=40"),
    _case("rule-ladder-unsorted", "ladder_mg = [0, 2.5, 5]", "ladder_mg = [0, 5, 2.5]", "rules.label.ladder_mg", "[0, 5, 2.5]"),
    _case("rule-ladder-negative", "ladder_mg = [0, 2.5, 5]", "ladder_mg = [0, -2.5, 2.5, 5]", "rules.label.ladder_mg", "-2.5"),
    _case("rule-ladder-huge-dose", "ladder_mg = [0, 2.5, 5]", "ladder_mg = [0, 2.5, 5e9]", "rules.label.ladder_mg", "5000000000"),
    _case("rule-confirm-zero", "low = 50", "low = 50\nconfirm_up = 0", "rules.label.confirm_up", "0"),
    _case("rule-visit-fraction", "visit_every_days = 7\n\n[[arms]]", "visit_every_days = 3.5\n\n[[arms]]",
          "rules.label.visit_every_days", "3.5"),
    _case("rule-visit-zero", "visit_every_days = 7\n\n[[arms]]", "visit_every_days = 0\n\n[[arms]]",
          "rules.label.visit_every_days", "0"),
    _case("rule-stop-negative", "low = 50", "low = 50\nstop_after_days_at_max = -1", "rules.label.stop_after_days_at_max", "-1"),
    _case("rule-resume-above-interrupt", "low = 50", "low = 50\nresume_below = 500", "rules.label.resume_below", "500"),
    # scenario settings
    _case("replicates-million", "replicates = 1", "replicates = 1000000", "scenario.replicates", "1,000,000", "at most"),
    _case("replicates-zero", "replicates = 1", "replicates = 0", "scenario.replicates", "0"),
    _case("replicates-fraction", "replicates = 1", "replicates = 2.5", "scenario.replicates", "2.5"),
    _case("seed-negative", "seed = 1", "seed = -1", "scenario.seed", "-1"),
]


def _cli_check(old, new):
    return lambda tmp_path: ["check", str(_write(tmp_path, old, new))]


CASES += [
    CliCase("scenario-file-check-million-days", _cli_check("duration_days = 56", "duration_days = 1000000"),
            ("trial.duration_days", "1000000")),
    CliCase("scenario-file-check-million-replicates", _cli_check("replicates = 1", "replicates = 1000000"),
            ("scenario.replicates", "1,000,000")),
]
