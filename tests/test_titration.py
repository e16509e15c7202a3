"""TitrationRule: every action on hand-made platelet sequences (10^9/L), the
vectorised step against one-patient-at-a-time, and clear errors.

Expected doses are written out by hand from the default rule of
docs/science.md: weekly counts; < 50 after >= 14 days on a dose: one level
up; 50-250 keep; > 250 one level down (interrupt on the lowest level); > 400
interrupt, restart one level lower once < 150.
"""

import numpy as np
import pytest

from pkpd import PKPDInputError, TitrationRule
from pkpd.titration import ACTIONS

RULE = TitrationRule()


def log(rule, counts, start_mg, days=None):
    out = rule.follow(counts, start_mg, days)
    return list(out["action"]), list(out["dose_mg"])


def test_default_rule_is_the_notes_rule():
    assert RULE.ladder_mg == (0.0, 2.5, 3.75, 5.0, 7.5)
    assert (RULE.low, RULE.high, RULE.interrupt_above, RULE.resume_below) == (50, 250, 400, 150)
    assert RULE.visit_every_days == 7 and RULE.step_up_after_days == 14
    assert RULE.stop_after_days_at_max is None  # the documented rule has no stop rule
    np.testing.assert_array_equal(RULE.decision_days(56), [7, 14, 21, 28, 35, 42, 49, 56])


def test_step_up_only_after_two_weeks_on_the_dose():
    actions, doses = log(RULE, [20, 30, 40, 45, 30, 30, 30, 30], 2.5)
    assert actions == ["hold", "up", "hold", "up", "hold", "up", "hold", "hold"]
    assert doses == [2.5, 3.75, 3.75, 5.0, 5.0, 7.5, 7.5, 7.5]  # 7.5 mg is the top: no further step


def test_hold_in_range_boundaries_included():
    actions, doses = log(RULE, [50, 250, 120, 49.9], 3.75)
    assert actions == ["hold", "hold", "hold", "up"]  # 49.9 on day 28, 28 days on 3.75 mg
    assert doses == [3.75, 3.75, 3.75, 5.0]


def test_step_down_and_interrupt_at_lowest_level_then_resume():
    actions, doses = log(RULE, [300, 260, 251, 200, 149, 100], 5.0)
    assert actions == ["down", "down", "interrupt", "interrupted", "resume", "hold"]
    assert doses == [3.75, 2.5, 0.0, 0.0, 2.5, 2.5]  # resume at the lowest level, never below


def test_interrupt_above_400_and_resume_one_level_lower():
    actions, doses = log(RULE, [120, 401, 380, 160, 140, 90], 5.0)
    assert actions == ["hold", "interrupt", "interrupted", "interrupted", "resume", "hold"]
    assert doses == [5.0, 0.0, 0.0, 0.0, 3.75, 3.75]


def test_interrupt_is_never_delayed_by_the_waiting_time():
    rule = RULE.with_(min_days_between_changes=28)
    actions, doses = log(rule, [450], 2.5)
    assert (actions, doses) == (["interrupt"], [0.0])
    # a step down is delayed until 28 days after the last change (day 0)
    actions, doses = log(rule, [300, 300, 300, 300], 5.0)
    assert actions == ["hold", "hold", "hold", "down"] and doses == [5.0, 5.0, 5.0, 3.75]


def test_stop_for_lack_of_response_after_days_at_top():
    rule = RULE.with_(stop_after_days_at_max=28)
    # start 5 mg: up on day 14 to 7.5 mg, 28 days later (day 42) still < 50: stop
    actions, doses = log(rule, [30, 30, 30, 30, 30, 30, 500, 30], 5.0)
    assert actions == ["hold", "up", "hold", "hold", "hold", "stop", "stopped", "stopped"]
    assert doses == [5.0, 7.5, 7.5, 7.5, 7.5, 0.0, 0.0, 0.0]
    # a responder at the top dose is not stopped
    actions, _ = log(rule, [30, 30, 60, 60, 60, 60], 7.5)
    assert "stop" not in actions
    # without a stop rule, a non-responder stays on the top dose
    actions, doses = log(RULE, [30] * 8, 7.5)
    assert set(actions) == {"hold"} and set(doses) == {7.5}


def test_confirmation_counts():
    rule = RULE.with_(confirm_down=2, confirm_up=2, step_up_after_days=0)
    actions, doses = log(rule, [300, 200, 300, 300], 5.0)
    assert actions == ["hold", "hold", "hold", "down"]  # the run of highs restarts after 200
    actions, doses = log(rule, [30, 30, 30, 30], 2.5)
    assert actions == ["hold", "up", "hold", "up"]  # counts start afresh after a change
    assert doses == [2.5, 3.75, 3.75, 5.0]


def test_no_interrupt_at_lowest_when_disabled_and_custom_visit_days():
    rule = RULE.with_(interrupt_at_lowest=False)
    actions, doses = log(rule, [300, 300], 2.5)
    assert actions == ["hold", "hold"] and doses == [2.5, 2.5]
    # visits every 14 days: the first step up can come at the first visit
    rule = RULE.with_(visit_every_days=14)
    actions, doses = log(rule, [30, 30], 2.5)
    assert actions == ["up", "up"] and doses == [3.75, 5.0]
    assert list(rule.follow([30, 30], 2.5)["day"]) == [14, 28]


def test_capped_ladder():
    rule = RULE.with_(ladder_mg=(2.5, 3.75, 5.0))  # 0 mg added as the interruption level
    assert rule.ladder_mg == (0.0, 2.5, 3.75, 5.0)
    _, doses = log(rule, [20] * 8, 2.5)
    assert max(doses) == 5.0


def test_vectorised_step_equals_one_patient_at_a_time():
    """200 random count sequences decided together give the same doses as one by one."""
    rng = np.random.default_rng(3)
    counts = np.exp(rng.uniform(np.log(5), np.log(600), size=(200, 12)))
    rule = RULE.with_(stop_after_days_at_max=21, confirm_down=2)
    starts = rng.choice([2.5, 5.0], 200)
    together = np.empty((200, 12))
    codes = np.empty((200, 12), int)
    for start in (2.5, 5.0):
        idx = np.flatnonzero(starts == start)
        state = rule.start(start, idx.size)
        for v in range(12):
            state, code = rule.step(state, 7.0 * (v + 1), counts[idx, v])
            together[idx, v] = rule.doses_mg[state.level]
            codes[idx, v] = code
    for i in range(200):
        alone = rule.follow(counts[i], starts[i])
        np.testing.assert_array_equal(alone["dose_mg"], together[i])
        assert list(alone["action"]) == [ACTIONS[c] for c in codes[i]]
    # all actions occur in this random set, so all paths were compared
    assert {"up", "down", "hold", "interrupt", "interrupted", "resume", "stop", "stopped"} <= {ACTIONS[c] for c in codes.ravel()}


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(low=300), ["low < high < interrupt_above", "low=300"]),
        (dict(high=500), ["low < high < interrupt_above", "interrupt_above=400"]),
        (dict(resume_below=450), ["resume_below", "450"]),
        (dict(ladder_mg=(0, 5, 2.5)), ["ladder_mg", "increasing"]),
        (dict(ladder_mg=(0,)), ["ladder_mg", "at least one dose"]),
        (dict(confirm_up=0), ["confirm_up", "whole number >= 1"]),
        (dict(visit_every_days=0), ["visit_every_days", "> 0"]),
        (dict(low=float("nan")), ["low", "finite"]),
        (dict(stop_after_days_at_max=-1), ["stop_after_days_at_max", ">= 0"]),
    ],
)
def test_bad_rules_name_field_value_and_fix(changes, words):
    with pytest.raises(PKPDInputError) as err:
        RULE.with_(**changes)
    for w in words:
        assert w in str(err.value)


def test_start_dose_must_be_on_the_ladder_and_above_zero():
    with pytest.raises(PKPDInputError, match=r"3.0 mg is not on the dose ladder \[0.0, 2.5, 3.75, 5.0, 7.5\]"):
        RULE.start(3.0, 5)
    with pytest.raises(PKPDInputError, match="cannot start at 0 mg"):
        RULE.start(0.0, 5)
    with pytest.raises(PKPDInputError, match="no field"):
        RULE.with_(lo=30)
    with pytest.raises(PKPDInputError, match="same length"):
        RULE.follow([30, 40], 2.5, days=[7])
    with pytest.raises(PKPDInputError, match="counts must be >= 0"):
        RULE.follow([-1.0], 2.5)
    with pytest.raises(PKPDInputError, match="observed platelet count must be >= 0"):
        RULE.step(RULE.start(2.5, 2), 7.0, [30.0, -2.0])
    with pytest.raises(PKPDInputError, match="one count each"):
        RULE.step(RULE.start(2.5, 2), 7.0, [30.0])


@pytest.mark.parametrize(
    "days, words",
    [
        ([14, 7, 21], ["days must be strictly increasing", "element 1 (7.0)", "after 14.0"]),
        ([7, 7, 14], ["days must be strictly increasing", "element 1 (7.0)", "after 7.0"]),
        ([0, 7, 14], ["days must be visit days after the start", "element 0 is 0.0"]),
        ([-7, 7, 14], ["days must be visit days after the start", "-7.0"]),
        ([7, 14, 1e9], ["days must be at most 7305", "1000000000.0"]),
    ],
)
def test_follow_refuses_visit_days_out_of_order(days, words):
    """A decision log must follow time: visits after day 0, one per day, in order."""
    with pytest.raises(PKPDInputError) as err:
        RULE.follow([30.0, 30.0, 30.0], 2.5, days=days)
    for w in words:
        assert w in str(err.value), str(err.value)
    # the same counts on sorted days are accepted and decide in that order
    log = RULE.follow([30.0, 30.0, 30.0], 2.5, days=[7, 14, 21])
    assert list(log["action"]) == ["hold", "up", "hold"]


@pytest.mark.parametrize(
    "changes, words",
    [
        (dict(ladder_mg=(0, 2.5, 1e308)), ["ladder_mg", "<= 100000", "1e+308"]),
        (dict(ladder_mg="2.5 mg"), ["ladder_mg must be a list", "'2.5 mg'"]),
        (dict(visit_every_days=True), ["visit_every_days must be a number of days", "True"]),
        (dict(visit_every_days=1e6), ["visit_every_days must be at most 7305 days", "1000000.0"]),
        (dict(step_up_after_days=8000), ["step_up_after_days must be at most 7305", "8000"]),
        (dict(stop_after_days_at_max=True), ["stop_after_days_at_max must be a number of days", "True"]),
        (dict(low=True), ["low must be a platelet count", "True"]),
        (dict(name=None), ["name must be a non-empty text", "None"]),
    ],
)
def test_rules_refuse_implausible_values(changes, words):
    with pytest.raises(PKPDInputError) as err:
        RULE.with_(**changes)
    for w in words:
        assert w in str(err.value), str(err.value)


def test_step_refuses_a_day_that_is_not_a_number():
    with pytest.raises(PKPDInputError, match="day must be a finite number"):
        RULE.step(RULE.start(2.5, 1), float("nan"), [30.0])


# ---------------------------------------------------------------- direction: a drug that lowers the count
NEUTROPENIA_RULE = TitrationRule(ladder_mg=(0, 50, 100, 150), low=1.5, high=4.0, interrupt_above=50.0,
                                 resume_below=40.0, interrupt_at_lowest=False, step_below_low="down",
                                 name="reduce on low counts")


def test_a_lowering_drug_steps_down_on_low_counts_and_up_on_high_ones():
    # days 7, 14, 21, 28, 35: low (down at once), in range, low (down: 7 days since), low at the
    # lowest level (kept: interrupt_at_lowest=False), high after 14 days on the dose (up)
    log = NEUTROPENIA_RULE.follow([1.0, 2.0, 0.8, 0.5, 5.0], 150.0, days=[7, 14, 21, 28, 42])
    assert list(log["action"]) == ["down", "hold", "down", "hold", "up"]
    assert list(log["dose_mg"]) == [100.0, 100.0, 50.0, 50.0, 100.0]
    # the same counts under the default direction go the other way
    assert list(NEUTROPENIA_RULE.with_(step_below_low="up").follow([1.0], 100.0, days=[14])["action"]) == ["up"]


def test_a_lowering_drug_stops_on_counts_still_high_at_the_top_dose():
    rule = NEUTROPENIA_RULE.with_(stop_after_days_at_max=14)
    log = rule.follow([5.0, 5.0, 1.0], 150.0, days=[7, 14, 21])
    assert list(log["action"]) == ["hold", "stop", "stopped"]


def test_the_default_direction_is_unchanged():
    assert TitrationRule().step_below_low == "up"
    assert list(RULE.follow([30.0, 300.0], 2.5, days=[14, 21])["action"]) == ["up", "down"]


@pytest.mark.parametrize("value", ["sideways", "Down", None, True])
def test_the_direction_must_be_up_or_down(value):
    with pytest.raises(PKPDInputError, match="step_below_low must be 'up'.*'down'") as err:
        RULE.with_(step_below_low=value)
    assert repr(value) in str(err.value)
