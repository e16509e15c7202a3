"""Bad regimens: impossible or implausible schedules are refused, never
silently emptied, overflowed or left to hang.

Limits (pkpd.checks): doses up to MAX_DOSE_MG, times up to MAX_HORIZON_H
(20 years) and at most MAX_DOSE_EVENTS doses, checked before any dose is built.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from bad_inputs import Case
from pkpd import Dose, PKPDInputError, Regimen

E = PKPDInputError


def _records(**columns):
    return pd.DataFrame({"TIME": [0.0], "AMT": [5.0], **{k: [v] for k, v in columns.items()}})


CASES = [
    # steps: every level is a dose, every time a time, and the schedule must end after it starts
    Case("regimen-steps-negative-level", lambda _: Regimen.steps([(0, -2.5)], until_h=48), E, ("step 0 level", "-2.5")),
    Case("regimen-steps-nan-level", lambda _: Regimen.steps([(0, 5), (24, np.nan)], until_h=48), E, ("step 1 level", "nan")),
    Case("regimen-steps-bool-level", lambda _: Regimen.steps([(0, True)], until_h=48), E, ("step 0 level", "True")),
    Case("regimen-steps-text-time", lambda _: Regimen.steps([("0", 5)], until_h=48), E, ("step 0 time", "'0'")),
    Case("regimen-steps-not-a-pair", lambda _: Regimen.steps([5], until_h=48), E, ("step 0", "got 5")),
    Case("regimen-steps-until-before-start", lambda _: Regimen.steps([(48, 5)], until_h=24), E, ("until_h", "24 h")),
    Case("regimen-steps-until-nan", lambda _: Regimen.steps([(0, 5)], until_h=np.nan), E, ("until_h", "nan")),
    Case("regimen-steps-same-time-twice", lambda _: Regimen.steps([(0, 5), (0, 2.5)], until_h=48), E, ("steps 0 and 1", "0 h")),
    Case("regimen-steps-until-past-horizon", lambda _: Regimen.steps([(0, 5)], until_h=1e9), E,
         ("until_h", "1000000000", "MAX_HORIZON_H")),
    Case("regimen-steps-microsecond-interval", lambda _: Regimen.steps([(0, 5)], until_h=1000, interval_h=1e-6), E,
         ("interval_h=1e-06", "1,000,000,000", "MAX_DOSE_EVENTS")),
    # single / repeated / daily
    Case("regimen-single-1e308-mg", lambda _: Regimen.single(1e308), E, ("dose_mg", "1e+308", "MAX_DOSE_MG")),
    Case("regimen-single-text-dose", lambda _: Regimen.single("5"), E, ("dose_mg", "'5'")),
    Case("regimen-single-none-dose", lambda _: Regimen.single(None), E, ("dose_mg", "None")),
    Case("regimen-single-infinite-time", lambda _: Regimen.single(5, at_h=np.inf), E, ("at_h", "inf")),
    Case("regimen-daily-1e8-days", lambda _: Regimen.daily(5, 10**8), E, ("days=100000000", "MAX_HORIZON_H")),
    Case("regimen-daily-zero-days", lambda _: Regimen.daily(5, 0), E, ("days", "got 0")),
    Case("regimen-daily-bool-days", lambda _: Regimen.daily(5, True), E, ("days", "True")),
    Case("regimen-daily-negative-dose", lambda _: Regimen.daily(-5, 3), E, ("dose_mg", "-5")),
    Case("regimen-repeated-microsecond-interval", lambda _: Regimen.repeated(5, 1e-6, 10**9), E,
         ("n=1000000000", "MAX_DOSE_EVENTS")),
    Case("regimen-repeated-zero-interval", lambda _: Regimen.repeated(5, 0, 3), E, ("interval_h", "0")),
    Case("regimen-repeated-nan-count", lambda _: Regimen.repeated(5, 24, np.nan), E, ("n (number of doses)", "nan")),
    Case("regimen-repeated-text-steady-state", lambda _: Regimen.repeated(5, 24, 3, steady_state="yes"), E,
         ("steady_state", "'yes'")),
    # operations
    Case("regimen-interrupt-reversed", lambda _: Regimen.daily(5, 3).interrupt(48, 24), E, ("end_h (24 h)", "start_h (48 h)")),
    Case("regimen-interrupt-nan", lambda _: Regimen.daily(5, 3).interrupt(np.nan, 24), E, ("start_h", "nan")),
    Case("regimen-shift-infinite", lambda _: Regimen.daily(5, 3).shift(np.inf), E, ("hours", "inf")),
    Case("regimen-shift-past-horizon", lambda _: Regimen.daily(5, 3).shift(1e9), E, ("dose time", "1000000000")),
    # raw Dose tuples
    Case("regimen-dose-bool-ss", lambda _: Regimen((Dose(0, 5, True, 24),)), E, ("SS", "True")),
    Case("regimen-dose-text-reset", lambda _: Regimen((Dose(0, 5, 0, 0, "yes"),)), E, ("reset", "'yes'")),
    Case("regimen-dose-negative-ii", lambda _: Regimen((Dose(0, 5), Dose(24, 5, 0, -3))), E, ("II", "-3", "element 1")),
    Case("regimen-doses-text", lambda _: Regimen("abc"), E, ("doses", "'abc'")),
    Case("regimen-dose-not-a-dose", lambda _: Regimen((Dose(0, 5), (24,))), E, ("dose 1", "(24,)")),
    # from_doses
    Case("regimen-from-doses-1e308-mg", lambda _: Regimen.from_doses([0, 24], [5, 1e308]), E,
         ("amounts_mg", "1e+308", "element 1")),
    Case("regimen-from-doses-text-amount", lambda _: Regimen.from_doses([0, 24], [5, "x"]), E, ("amounts_mg", "'x'")),
    Case("regimen-from-doses-past-horizon", lambda _: Regimen.from_doses([0, 1e9], [5, 5]), E, ("times_h", "1000000000")),
    # NONMEM records
    Case("regimen-records-1e12-addl", lambda _: Regimen.from_records(_records(ADDL=1e12, II=24.0)), E,
         ("ADDL=1e+12", "MAX_HORIZON_H")),
    Case("regimen-records-addl-over-dose-limit", lambda _: Regimen.from_records(_records(ADDL=2e5, II=0.5)), E,
         ("ADDL", "200,001", "MAX_DOSE_EVENTS")),
    Case("regimen-records-fractional-ss", lambda _: Regimen.from_records(_records(SS=1.5, II=24.0)), E, ("SS", "1.5")),
    Case("regimen-records-unknown-evid", lambda _: Regimen.from_records(_records(EVID=7)), E, ("EVID", "7")),
    Case("regimen-records-text-amt", lambda _: pd.DataFrame({"TIME": [0.0], "AMT": ["5 mg"]}).pipe(Regimen.from_records),
         E, ("AMT", "'5 mg'")),
]


def test_regimen_refusals_come_before_any_work():
    """Each refusal is immediate: the schedules that would hang are refused
    before a dose is built (measured < 0.1 s each; the bound leaves room for a
    loaded machine)."""
    for case in CASES:
        start = time.perf_counter()
        with pytest.raises(case.error):
            case.call(None)
        assert time.perf_counter() - start < 1.0, case.id
