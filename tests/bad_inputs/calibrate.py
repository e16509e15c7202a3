"""Bad calibration inputs: targets, parameters and settings of
:mod:`pkpd.calibrate` are refused with the field and the value before
anything is simulated."""

from __future__ import annotations

import pandas as pd

from bad_inputs import Case
from pkpd import Arm, Endpoints, PKPDInputError, Trial
from pkpd.calibrate import Calibrator, Parameter, Target, calibrate, targets_from_frame

DESIGN = Trial((Arm("5 mg", 4, 5.0), Arm("placebo", 2, 0.0)), duration_days=28, endpoints=Endpoints(primary_day=28))
SRC = "test"


def _target(id_, *mentions, design=DESIGN, endpoint="responders_primary", arm="placebo", k=1, n=10):
    return Case(f"calibrate-{id_}", lambda tmp_path: Target(design, endpoint, arm, k, n, SRC), PKPDInputError, mentions)


def _parameter(id_, *mentions, **fields):
    fields = {"name": "ec50", "low": 1.0, "high": 100.0, **fields}
    return Case(f"calibrate-{id_}", lambda tmp_path: Parameter(**fields), PKPDInputError, mentions)


def _problem(id_, *mentions, parameters=None, **options):
    targets = [Target(DESIGN, "responders_primary", "placebo", 1, 10, SRC)]
    parameters = parameters or [Parameter("ec50", 1.0, 100.0)]
    return Case(f"calibrate-{id_}", lambda tmp_path: Calibrator(targets, parameters, progress=False, **options),
                PKPDInputError, mentions)


def _missing_columns(tmp_path):
    return targets_from_frame(pd.DataFrame({"design": [DESIGN], "endpoint": ["responders_primary"], "k": [1]}))


def _bad_row(tmp_path):
    return targets_from_frame(pd.DataFrame({"design": [DESIGN], "endpoint": ["responders_primary"], "arm": ["placebo"],
                                            "k": [12], "n": [10], "source": [SRC]}))


CASES = [
    # targets
    _target("k-above-n", "k = 12", "n = 10", k=12, n=10),
    _target("k-negative", "target k", ">= 0", "-1", k=-1),
    _target("n-zero", "target n", ">= 1", "got 0", k=0, n=0),
    _target("k-fraction", "target k", "whole number", "2.5", k=2.5),
    _target("unknown-endpoint", "endpoint 'responders_primry'", "did you mean 'responders_primary'", endpoint="responders_primry"),
    _target("mean-endpoint", "endpoint 'time_in_range'", "binomial", endpoint="time_in_range"),
    _target("unknown-arm", "arm 'placebos'", "did you mean 'placebo'", arm="placebos"),
    _target("design-number", "design", "scenario file path", "42", design=42),
    _target("design-missing-file", "scenario file", "nowhere.toml", "not found", design="nowhere.toml"),
    Case("calibrate-table-missing-columns", _missing_columns, PKPDInputError, ("lacks columns", "'arm'")),
    Case("calibrate-table-bad-row", _bad_row, PKPDInputError, ("row 0", "k = 12", "n = 10")),
    # parameters
    _parameter("low-above-high", "low (100)", "below high (10)", low=100.0, high=10.0),
    _parameter("low-equals-high", "low (5)", "below high (5)", low=5.0, high=5.0),
    _parameter("log-low-zero", "low = 0", "> 0", "log=False", low=0.0),
    _parameter("start-outside", "start 500", "outside its bounds", "[1, 100]", start=500.0),
    _parameter("bound-nan", "high", "finite number", "nan", high=float("nan")),
    _parameter("bound-text", "low", "finite number", "'1'", low="1"),
    _problem("unknown-parameter", "'ec5'", "did you mean 'ec50'", parameters=[Parameter("ec5", 1.0, 100.0)]),
    _problem("unknown-dotted-parameter", "'residual_plt.propp'", "did you mean 'residual_plt.prop'",
             parameters=[Parameter("residual_plt.propp", 0.1, 1.0)]),
    _problem("whole-parameter", "'n_transit'", "whole number", parameters=[Parameter("n_transit", 1.0, 10.0)]),
    _problem("model-value-outside-bounds", "'ec50'", "current value", "20", "[1, 10]",
             parameters=[Parameter("ec50", 1.0, 10.0)]),
    _problem("parameter-twice", "'ec50'", "twice", parameters=[Parameter("ec50", 1.0, 100.0), Parameter("ec50", 2.0, 50.0)]),
    _problem("replicates-zero", "replicates", ">= 1", "0", replicates=0),
    _problem("seed-negative", "seed", ">= 0", "-3", seed=-3),
    Case("calibrate-no-targets", lambda tmp_path: calibrate([], [Parameter("ec50", 1.0, 100.0)], progress=False),
         PKPDInputError, ("targets", "empty")),
    Case("calibrate-method-unknown", lambda tmp_path: Calibrator(
        [Target(DESIGN, "responders_primary", "placebo", 1, 10, SRC)], [Parameter("ec50", 1.0, 100.0)],
        progress=False).fit(method="nelder-mead"), PKPDInputError, ("method", "'nelder-mead'", "Nelder-Mead")),
]
