"""Bad titration rules and decision logs: ``TitrationRule``, ``.follow`` and
``.step`` refuse each with the field and the value."""

from __future__ import annotations

import numpy as np

from bad_inputs import Case
from pkpd import PKPDInputError, TitrationRule

RULE = TitrationRule()
NAN = float("nan")


def _rule(id_, *mentions, **changes):
    return Case(f"titration-{id_}", lambda tmp_path: TitrationRule(**changes), PKPDInputError, mentions)


def _follow(id_, counts, days, *mentions, start_mg=2.5):
    return Case(f"titration-{id_}", lambda tmp_path: RULE.follow(counts, start_mg, days=days), PKPDInputError, mentions)


CASES = [
    # decision logs: visits in time order, after the start, counts that are counts
    _follow("follow-days-out-of-order", [30, 30, 30], [14, 7, 21], "days", "strictly increasing", "element 1 (7.0)", "14.0"),
    _follow("follow-days-repeated", [30, 30, 30], [7, 14, 14], "days", "strictly increasing", "element 2 (14.0)"),
    _follow("follow-day-zero", [30, 30], [0, 7], "days", "after the start", "0.0"),
    _follow("follow-day-negative", [30, 30], [-7, 7], "days", "after the start", "-7.0"),
    _follow("follow-day-nan", [30, 30], [7, NAN], "days", "finite", "nan"),
    _follow("follow-day-past-20-years", [30, 30], [7, 1e7], "days", "at most 7305", "10000000.0"),
    _follow("follow-days-length", [30, 40], [7], "days and counts", "same length", "1 and 2"),
    _follow("follow-count-negative", [30, -1.0], None, "counts", ">= 0", "-1.0"),
    _follow("follow-count-nan", [30, NAN], None, "counts", "finite", "nan"),
    _follow("follow-counts-2d", [[30, 40]], None, "counts", "1-D", "(1, 2)"),
    _follow("follow-start-off-ladder", [30], None, "start dose", "3.0 mg", "not on the dose ladder", start_mg=3.0),
    _follow("follow-start-zero", [30], None, "cannot start at 0 mg", "0.0 mg", start_mg=0.0),
    Case("titration-step-day-nan", lambda tmp_path: RULE.step(RULE.start(2.5, 1), NAN, [30.0]), PKPDInputError,
         ("day", "finite", "nan")),
    Case("titration-step-wrong-shape", lambda tmp_path: RULE.step(RULE.start(2.5, 2), 7.0, [30.0]), PKPDInputError,
         ("observed", "(1,)", "2 patients")),
    Case("titration-step-count-negative", lambda tmp_path: RULE.step(RULE.start(2.5, 2), 7.0, [30.0, -2.0]),
         PKPDInputError, ("observed platelet count", "-2.0")),
    # thresholds
    _rule("low-above-high", "low < high < interrupt_above", "low=300", low=300.0),
    _rule("high-above-interrupt", "low < high < interrupt_above", "high=500", high=500.0),
    _rule("resume-above-interrupt", "resume_below", "450", resume_below=450.0),
    _rule("low-nan", "low", "finite", "nan", low=NAN),
    _rule("high-negative", "high", "> 0", "-250", high=-250.0),
    _rule("interrupt-infinite", "interrupt_above", "finite", "inf", interrupt_above=float("inf")),
    _rule("low-bool", "low", "platelet count", "True", low=True),
    # ladder
    _rule("ladder-unsorted", "ladder_mg", "increasing", "[0, 5, 2.5]", ladder_mg=(0, 5, 2.5)),
    _rule("ladder-repeated", "ladder_mg", "increasing", "[0, 2.5, 2.5, 5]", ladder_mg=(0, 2.5, 2.5, 5)),
    _rule("ladder-negative", "ladder_mg", ">= 0", "-2.5", ladder_mg=(0, -2.5, 5)),
    _rule("ladder-only-zero", "ladder_mg", "at least one dose", "[0]", ladder_mg=(0,)),
    _rule("ladder-huge-dose", "ladder_mg", "<= 100000", "1e+308", ladder_mg=(0, 2.5, 1e308)),
    _rule("ladder-nan", "ladder_mg", "finite", "nan", ladder_mg=(0, 2.5, NAN)),
    _rule("ladder-text", "ladder_mg", "list of dose levels", "'2.5 mg'", ladder_mg="2.5 mg"),
    # counts and days
    _rule("confirm-up-zero", "confirm_up", ">= 1", "0", confirm_up=0),
    _rule("confirm-down-negative", "confirm_down", ">= 1", "-1", confirm_down=-1),
    _rule("confirm-interrupt-fraction", "confirm_interrupt", "whole number", "1.5", confirm_interrupt=1.5),
    _rule("resume-levels-negative", "resume_levels_down", ">= 0", "-1", resume_levels_down=-1),
    _rule("visit-interval-zero", "visit_every_days", "> 0", "0", visit_every_days=0),
    _rule("visit-interval-million", "visit_every_days", "at most 7305 days", "1000000", visit_every_days=1e6),
    _rule("visit-interval-bool", "visit_every_days", "number of days", "True", visit_every_days=True),
    _rule("step-up-wait-negative", "step_up_after_days", ">= 0", "-14", step_up_after_days=-14.0),
    _rule("min-days-nan", "min_days_between_changes", "finite", "nan", min_days_between_changes=NAN),
    _rule("stop-after-negative", "stop_after_days_at_max", ">= 0", "-1", stop_after_days_at_max=-1),
    _rule("interrupt-at-lowest-text", "interrupt_at_lowest", "true or false", "'yes'", interrupt_at_lowest="yes"),
    _rule("name-missing", "name", "non-empty text", "None", name=None),
    Case("titration-unknown-field", lambda tmp_path: RULE.with_(lo=30), PKPDInputError, ("no field", "lo")),
]


def test_titration_follow_log_keeps_time_order():
    """The sorted visits of an out-of-order log are accepted and decide in time order."""
    log = RULE.follow([30.0, 30.0, 30.0], 2.5, days=np.array([7.0, 14.0, 21.0]))
    assert list(log["day"]) == [7.0, 14.0, 21.0] and list(log["action"]) == ["hold", "up", "hold"]
