"""Regimen: construction, operations, printing, equality and NONMEM records.

Expected dose lists and records are written out by hand from the NONMEM
conventions (ADDL additional doses every II hours; SS=1 steady state; EVID 4
reset and dose), not taken from earlier output of the code.
"""

import numpy as np
import pandas as pd
import pytest

from pkpd.checks import PKPDInputError
from pkpd.regimen import RECORD_COLUMNS, Dose, Regimen


def doses(*pairs):
    return tuple(Dose(float(t), float(a)) for t, a in pairs)


# ---------------------------------------------------------------- constructors
def test_single_repeated_daily():
    assert Regimen.single(5).doses == doses((0, 5))
    assert Regimen.single(2.5, at_h=12).doses == doses((12, 2.5))
    assert Regimen.repeated(5, 12, 3, start_h=6).doses == doses((6, 5), (18, 5), (30, 5))
    assert Regimen.daily(7.5, days=3).doses == doses((0, 7.5), (24, 7.5), (48, 7.5))
    ss = Regimen.daily(5, days=2, steady_state=True)
    assert ss.doses == (Dose(0.0, 5.0, 1, 24.0), Dose(24.0, 5.0))


def test_steps_give_dose_changes_and_interruptions():
    reg = Regimen.steps([(48, 5), (0, 2.5), (96, 0), (144, 3.75)], until_h=192)
    assert reg.doses == doses((0, 2.5), (24, 2.5), (48, 5), (72, 5), (144, 3.75), (168, 3.75))
    assert reg.total_mg == pytest.approx(2 * 2.5 + 2 * 5 + 2 * 3.75)


def test_from_doses_and_views():
    reg = Regimen.from_doses([0, 7.5, 30], [5, 2.5, 1])
    np.testing.assert_array_equal(reg.times, [0, 7.5, 30])
    np.testing.assert_array_equal(reg.amounts, [5, 2.5, 1])
    assert len(reg) == 3 and reg.total_mg == 8.5


def test_doses_are_sorted_stably_and_immutable():
    reg = Regimen((Dose(24, 1), Dose(0, 2), Dose(24, 3)))
    assert [d.amount for d in reg.doses] == [2, 1, 3]
    with pytest.raises(AttributeError):
        reg.doses = ()


# ---------------------------------------------------------------- operations
def test_add_shift_interrupt():
    a, b = Regimen.daily(5, 2), Regimen.single(2.5, at_h=12)
    assert (a + b).doses == doses((0, 5), (12, 2.5), (24, 5))
    assert a.shift(6).doses == doses((6, 5), (30, 5))
    week = Regimen.daily(5, 7)
    assert week.interrupt(48, 96).doses == doses((0, 5), (24, 5), (96, 5), (120, 5), (144, 5))
    assert week.interrupt(0, 1000) == Regimen()
    with pytest.raises(TypeError):
        a + 5


def test_equality():
    assert Regimen.daily(5, 3) == Regimen.from_doses([0, 24, 48], [5, 5, 5])
    assert Regimen.daily(5, 3) != Regimen.daily(5, 2)
    assert Regimen.daily(5, 2) != Regimen.daily(5, 2, steady_state=True)
    # ii only matters for steady-state doses
    assert Regimen((Dose(0, 5, 0, 12.0),)) == Regimen.single(5)


def test_printing():
    assert repr(Regimen()) == "Regimen: no doses"
    assert repr(Regimen.single(5, at_h=12)) == "Regimen: 5 mg at 12 h"
    assert repr(Regimen.daily(5, 3)) == "Regimen: 5 mg every 24 h x3 from 0 h"
    assert repr(Regimen.steps([(0, 2.5), (48, 5)], until_h=96)) == (
        "Regimen: 2.5 mg every 24 h x2 from 0 h; 5 mg every 24 h x2 from 48 h"
    )
    assert repr(Regimen.daily(5, 4, steady_state=True)) == (
        "Regimen: 5 mg every 24 h x4 from 0 h (steady state SS=1, II=24 h)"
    )
    assert repr(Regimen((Dose(0, 5), Dose(24, 5, reset=True)))) == "Regimen: 5 mg at 0 h; 5 mg at 24 h (after reset)"


# ---------------------------------------------------------------- NONMEM records
def record(time, amt, evid=1, ii=0.0, addl=0, ss=0, id=1):
    return {"ID": id, "TIME": float(time), "AMT": float(amt), "EVID": evid, "MDV": 1, "CMT": 1,
            "II": float(ii), "ADDL": addl, "SS": ss, "DV": np.nan}


def expect_records(reg, rows, id=1):
    got = reg.to_records(id=id)
    want = pd.DataFrame(rows, columns=RECORD_COLUMNS)
    assert list(got.columns) == RECORD_COLUMNS
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)
    assert Regimen.from_records(got) == reg


def test_records_compress_runs_with_addl():
    expect_records(Regimen.daily(5, 7), [record(0, 5, ii=24, addl=6, id=3)], id=3)
    expect_records(Regimen.single(5), [record(0, 5)])


def test_records_of_dose_changes():
    reg = Regimen.steps([(0, 2.5), (48, 5), (96, 0), (144, 3.75)], until_h=192)
    expect_records(reg, [record(0, 2.5, ii=24, addl=1), record(48, 5, ii=24, addl=1), record(144, 3.75, ii=24, addl=1)])


def test_records_of_steady_state_and_reset_doses():
    expect_records(Regimen.daily(5, 4, steady_state=True), [record(0, 5, ii=24, addl=3, ss=1)])
    expect_records(Regimen((Dose(0, 5, 1, 12.0),)), [record(0, 5, ii=12, ss=1)])
    reg = Regimen((Dose(0, 5), Dose(24, 5, reset=True), Dose(48, 5)))
    expect_records(reg, [record(0, 5), record(24, 5, evid=4, ii=24, addl=1)])


def test_irregular_doses_are_not_compressed():
    reg = Regimen.from_doses([0, 7.5, 30, 31], [5, 5, 5, 5])
    expect_records(reg, [record(0, 5, ii=7.5, addl=1), record(30, 5, ii=1, addl=1)])
    assert Regimen.from_records(reg.to_records()).times.tolist() == [0, 7.5, 30, 31]


def test_from_records_expands_addl_and_ignores_non_doses():
    rec = pd.DataFrame([
        record(0, 5, ii=12, addl=2),
        {**record(1, 0), "EVID": 0, "MDV": 0, "DV": 3.0},
        record(100, 2.5, ss=2, ii=24),
    ])
    reg = Regimen.from_records(rec)
    assert reg.doses == doses((0, 5), (12, 5), (24, 5)) + (Dose(100.0, 2.5, 2, 24.0),)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Regimen.single(-5), r"Regimen.single: dose_mg must be >= 0.*-5"),
        (lambda: Regimen.single(5, at_h=-1), r"Regimen.single: at_h must be >= 0.*-1"),
        (lambda: Regimen.single(np.nan), r"Regimen.single: dose_mg must be a finite number.*nan"),
        (lambda: Regimen((Dose(0, 5, 3, 24),)), r"SS must be 0, 1 or 2; got 3"),
        (lambda: Regimen((Dose(0, 5, 1, 0.0),)), r"SS=1.*needs II > 0; got II=0.0"),
        (lambda: Regimen.repeated(5, 24, 2.5), r"n \(number of doses\).*2.5"),
        (lambda: Regimen.repeated(5, -24, 2), r"Regimen.repeated: interval_h must be > 0.*-24"),
        (lambda: Regimen.daily(5, 3).interrupt(48, 24), r"end_h \(24 h\) is before start_h \(48 h\)"),
        (lambda: Regimen.daily(5, 3).shift(-12), r"dose time must be >= 0.*-12"),
        (lambda: Regimen.steps([], until_h=10), r"levels is empty"),
        (lambda: Regimen.from_doses([0, 24], [5]), r"same length; got 2 and 1"),
        (lambda: Regimen.from_doses([24, 0], [5, 5]), r"times_h must be sorted"),
        (lambda: Regimen.from_records(pd.DataFrame([record(0, 5, ii=0, addl=2)])), r"ADDL=2 at TIME=0.0 needs II > 0"),
        (lambda: Regimen.from_records(pd.DataFrame({"TIME": [0.0]})), r"need columns \['AMT'\]"),
    ],
)
def test_bad_input_raises_clear_errors(make, match):
    with pytest.raises(PKPDInputError, match=match):
        make()


def test_from_records_positional_and_checked():
    """Duplicate index labels do not confuse it; NaN in II names the field and row."""
    import numpy as np
    import pandas as pd

    from pkpd import PKPDInputError, Regimen

    reg = Regimen.daily(5, 3) + Regimen.single(2, at_h=100)
    records = reg.to_records()
    records.index = [0] * len(records)
    assert Regimen.from_records(records) == reg
    records["II"] = np.nan
    with pytest.raises(PKPDInputError, match=r"II \(dose record 1\).*nan"):
        Regimen.from_records(records)
    with pytest.raises(PKPDInputError, match="ADDL"):
        Regimen.from_records(pd.DataFrame({"TIME": [0.0], "AMT": [5.0], "ADDL": [2.5], "II": [24.0]}))


# ---------------------------------------------------------------- impossible and implausible schedules
@pytest.mark.parametrize("level, shown", [(-2.5, "-2.5"), (np.nan, "nan"), (np.inf, "inf"), (True, "True"), ("5", "'5'")])
def test_steps_refuse_a_bad_level_instead_of_dropping_it(level, shown):
    """A negative or missing level used to give an empty regimen without a word."""
    with pytest.raises(PKPDInputError, match=rf"^Regimen.steps: step 1 level must be .*got {shown}"):
        Regimen.steps([(0, 5), (48, level)], until_h=96)


def test_steps_refuse_schedules_that_end_before_they_start_or_repeat_a_time():
    with pytest.raises(PKPDInputError, match=r"until_h \(24 h\) must be after.*step 0 starts at 48 h"):
        Regimen.steps([(48, 5)], until_h=24)
    with pytest.raises(PKPDInputError, match=r"until_h \(48 h\) must be after.*step 1 starts at 48 h"):
        Regimen.steps([(0, 5), (48, 2.5)], until_h=48)
    with pytest.raises(PKPDInputError, match=r"steps 0 and 2 both start at 24 h"):
        Regimen.steps([(24, 5), (0, 1), (24, 2.5)], until_h=96)


def test_dose_limit_is_checks_max_dose_mg():
    """1e308 mg used to give infinite concentrations; the limit itself is accepted."""
    from pkpd.checks import MAX_DOSE_MG

    assert Regimen.single(MAX_DOSE_MG).total_mg == MAX_DOSE_MG
    for make in (lambda: Regimen.single(1e308), lambda: Regimen.daily(np.nextafter(MAX_DOSE_MG, np.inf), 2),
                 lambda: Regimen.from_doses([0, 24], [5, 1e308]), lambda: Regimen((Dose(0, 1e308),))):
        with pytest.raises(PKPDInputError, match=r"must be <= 100000 \(in mg\); got .*MAX_DOSE_MG"):
            make()


def test_horizon_limit_is_checks_max_horizon_h():
    from pkpd.checks import MAX_HORIZON_H

    assert Regimen.single(5, at_h=MAX_HORIZON_H).times[0] == MAX_HORIZON_H
    assert len(Regimen.daily(5, 7305)) == 7305  # 20 years of daily doses
    with pytest.raises(PKPDInputError, match=r"at_h must be <= 175320 \(in h\).*MAX_HORIZON_H"):
        Regimen.single(5, at_h=np.nextafter(MAX_HORIZON_H, np.inf))
    assert Regimen.daily(5, 7306).times[-1] == MAX_HORIZON_H
    with pytest.raises(PKPDInputError, match=r"days=7307 .*last dose at 175344 h.*MAX_HORIZON_H"):
        Regimen.daily(5, 7307)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Regimen.daily(5, 10**8), r"days=100000000 .*MAX_HORIZON_H"),
        (lambda: Regimen.repeated(5, 1e-6, 10**9), r"n=1000000000 would give 1,000,000,000 doses.*MAX_DOSE_EVENTS"),
        (lambda: Regimen.steps([(0, 5)], until_h=1000, interval_h=1e-6), r"1,000,000,000 doses.*MAX_DOSE_EVENTS"),
        (lambda: Regimen.from_records(pd.DataFrame([record(0, 5, ii=24, addl=10**12)])), r"ADDL=1e\+12.*MAX_HORIZON_H"),
        (lambda: Regimen.from_records(pd.DataFrame([record(0, 5, ii=0.5, addl=2 * 10**5)])), r"200,001 doses"),
    ],
)
def test_schedules_that_used_to_hang_are_refused_before_any_dose_is_built(make, match):
    import time

    start = time.perf_counter()
    with pytest.raises(PKPDInputError, match=match):
        make()
    assert time.perf_counter() - start < 1.0  # measured well under 0.1 s; they used to run for hours


def test_dose_count_limit_counts_the_doses_that_would_be_built(monkeypatch):
    """The count is computed before building, so it must equal what would be built."""
    import pkpd.checks

    monkeypatch.setattr(pkpd.checks, "MAX_DOSE_EVENTS", 10)
    assert len(Regimen.repeated(5, 1, 10)) == 10
    assert len(Regimen.steps([(0, 5), (5, 2.5)], until_h=10, interval_h=1)) == 10
    with pytest.raises(PKPDInputError, match="11 doses"):
        Regimen.repeated(5, 1, 11)
    with pytest.raises(PKPDInputError, match="11 doses"):
        Regimen.steps([(0, 5), (5, 2.5)], until_h=10.5, interval_h=1)
    assert len(Regimen.steps([(0, 5), (5, 0), (8, 1)], until_h=13, interval_h=1)) == 10  # 0 mg adds no dose
    with pytest.raises(PKPDInputError, match="11 doses"):
        Regimen.from_records(pd.DataFrame([record(0, 5, ii=1, addl=5), record(10, 5, ii=1, addl=4)]))
    with pytest.raises(PKPDInputError, match="11 doses"):
        Regimen.repeated(5, 1, 6) + Regimen.repeated(5, 1, 5, start_h=100)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Regimen.single(True), r"dose_mg must be a number.*got True"),
        (lambda: Regimen.daily(5, True), r"days \(number of days\) must be a whole number >= 1; got True"),
        (lambda: Regimen.repeated(5, 24, np.nan), r"n \(number of doses\).*got nan"),
        (lambda: Regimen.repeated(5, 24, 3, steady_state="no"), r"steady_state must be True or False; got 'no'"),
        (lambda: Regimen.daily(5, 3).interrupt(np.nan, 24), r"interrupt: start_h must be a finite number.*nan"),
        (lambda: Regimen.daily(5, 3).interrupt(24, 24), r"end_h \(24 h\) is before start_h \(24 h\) or equal"),
        (lambda: Regimen((Dose(0, 5, True, 24),)), r"SS must be 0, 1 or 2; got True"),
        (lambda: Regimen((Dose(0, 5, 0, 0, "yes"),)), r"reset must be True or False; got 'yes'"),
        (lambda: Regimen((Dose(0, 5), Dose(1, 5, 0, np.nan))), r"II must be a finite number.*nan \(element 1\)"),
        (lambda: Regimen("abc"), r"doses must be a sequence of Dose"),
        (lambda: Regimen.from_records(pd.DataFrame([record(0, 5, ss=1.5, ii=24)])), r"SS \(dose record 1\).*1.5"),
        (lambda: Regimen.from_records(pd.DataFrame([{**record(0, 5), "EVID": 7}])), r"EVID \(record 1\).*got 7"),
    ],
)
def test_text_bools_and_impossible_values_are_not_read_as_numbers(make, match):
    with pytest.raises(PKPDInputError, match=match):
        make()


def test_doses_from_an_iterable_are_taken_up_to_the_limit():
    import itertools

    assert Regimen(Dose(t, 5) for t in (24, 0)) == Regimen.daily(5, 2)
    with pytest.raises(PKPDInputError, match=r"levels would give 100,001 .*MAX_DOSE_EVENTS"):
        Regimen.steps(((t, 0) for t in itertools.count()), until_h=1)  # endless: refused, not a hang
