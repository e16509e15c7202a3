"""Friberg myelosuppression: its parameters (through the docetaxel model's
overrides and the PD model's own check), the solver's tolerances, doses and
report times, and the direction field of titration rules."""

from __future__ import annotations

import numpy as np

from pkpd import PKPDInputError, TitrationRule
from pkpd.drugs import docetaxel
from pkpd.friberg import FribergMyelosuppression
from pkpd.one_compartment import OneCompartmentOral

from bad_inputs import Case

PD = {"circ0": 5.05, "mtt": 89.3, "gamma": 0.163, "emax": 83.9, "ec50": 5792.0}
PK = {"ka": 2.0, "cl": 32.6, "v": 16.8}


def _over(**values):
    return lambda tmp_path: docetaxel.model(**values)


def _check(**values):
    return lambda tmp_path: FribergMyelosuppression.check(**{**PD, **values})


def _solver(**options):
    return lambda tmp_path: FribergMyelosuppression.solver(OneCompartmentOral, PK, PD, **options)


def _run(dose_times, amounts, times, state_t=None):
    def call(tmp_path):
        solver = FribergMyelosuppression.solver(OneCompartmentOral, PK, PD)
        state = None if state_t is None else {**solver.initial_state(), "t": state_t}
        return solver.run(dose_times, amounts, times, state)
    return call


CASES = [
    Case("friberg-negative-circ0", _over(circ0=-5.05), PKPDInputError, ("circ0", "-5.05")),
    Case("friberg-zero-circ0", _check(circ0=0.0), PKPDInputError, ("circ0", "got 0.0")),
    Case("friberg-nan-mtt", _over(mtt=float("nan")), PKPDInputError, ("mtt", "nan")),
    Case("friberg-mtt-in-days", _over(mtt=0.5), PKPDInputError, ("mtt", "0.5", "hours")),
    Case("friberg-negative-gamma", _over(gamma=-0.1), PKPDInputError, ("gamma", "-0.1")),
    Case("friberg-gamma-too-large", _check(gamma=3.0), PKPDInputError, ("gamma", "3.0", "0.1-0.6")),
    Case("friberg-negative-emax", _over(emax=-1.0), PKPDInputError, ("emax", "-1.0")),
    Case("friberg-inf-emax", _check(emax=float("inf")), PKPDInputError, ("emax", "inf")),
    Case("friberg-zero-ec50", _over(ec50=0.0), PKPDInputError, ("ec50", "got 0.0")),
    Case("friberg-text-ec50", _check(ec50="5792"), PKPDInputError, ("ec50", "'5792'")),
    Case("friberg-true-gamma", _check(gamma=True), PKPDInputError, ("gamma", "True")),
    Case("friberg-ragged-lengths", _check(circ0=np.array([5.0, 4.0]), mtt=np.array([80.0, 90.0, 100.0])),
         PKPDInputError, ("circ0", "(3,)")),
    Case("friberg-missing-parameter", lambda tmp_path: FribergMyelosuppression.check(circ0=5.0), PKPDInputError,
         ("circ0", "ec50")),
    Case("friberg-unknown-override", _over(circ00=5.0), PKPDInputError, ("circ00", "did you mean 'circ0'")),
    Case("friberg-platelet-parameter", _over(plt0=250.0), PKPDInputError, ("plt0",)),
    Case("friberg-unknown-population", lambda tmp_path: docetaxel.model("healthy"), PKPDInputError,
         ("population", "healthy")),
    Case("friberg-negative-rtol", _solver(rtol=-1e-9), PKPDInputError, ("rtol", "-1e-09")),
    Case("friberg-zero-atol", _solver(atol=0.0), PKPDInputError, ("atol", "got 0.0")),
    Case("friberg-negative-dose", _run([0.0], [-10.0], [24.0]), PKPDInputError, ("amounts", "-10.0")),
    Case("friberg-unsorted-times", _run([0.0], [10.0], [48.0, 24.0]), PKPDInputError, ("times", "24.0")),
    Case("friberg-times-before-state", _run([0.0], [10.0], [12.0], state_t=24.0), PKPDInputError,
         ("times", "12.0", "24.0")),
    Case("friberg-amounts-shape", _run([0.0, 24.0], np.ones((3, 2)), [48.0]), PKPDInputError, ("amounts", "(3, 2)")),
    Case("friberg-rule-direction", lambda tmp_path: TitrationRule(step_below_low="lower"), PKPDInputError,
         ("step_below_low", "'lower'")),
]
