"""workers= for calibration and scenarios, on a real Dask LocalCluster (2 worker processes).

A calibration with ``workers=2`` must start one local cluster for the whole
fit (not one per simulation), send every simulation to it, and give the same
estimate, profile, target table and history as in one process, bit for bit.
``Scenario.run(workers=)`` and ``pkpd run --workers`` must give the same
tables as a run in one process.  The designs are small (two fixed-dose arms
and placebo, 3 weeks) and task sizes are forced small so that the work really
is split over several tasks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pkpd
import pkpd.distributed as dist
from pkpd import Arm, Endpoints, PKPDInputError, Trial
from pkpd.calibrate import Calibrator, Parameter, Target, calibrate
from pkpd.cli import main
from pkpd.distributed import local_client
from pkpd.drugs import hetrombopag

pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
PHASE3 = ROOT / "scenarios" / "itp_phase3.toml"
DESIGN = Trial((Arm("2.5 mg", 40, 2.5), Arm("5 mg", 40, 5.0), Arm("placebo", 30, 0.0)), duration_days=21,
               endpoints=Endpoints(primary_day=21), model=hetrombopag.model("itp"), name="tiny")
# "published" counts: what a calibration of ec50 can fit (the values need not come from the model)
TARGETS = [Target(DESIGN, "responders_primary", "2.5 mg", 30, 100, "made-up counts"),
           Target(DESIGN, "responders_primary", "5 mg", 55, 100, "made-up counts"),
           Target(DESIGN, "responders_primary", "placebo", 3, 100, "made-up counts")]
PARAMETERS = [Parameter("ec50", 4.0, 100.0, start=40.0)]


@pytest.fixture(scope="module")
def client():
    with local_client(2) as c:
        yield c


@pytest.fixture
def spy(monkeypatch):
    """Counts local clusters started and records, for every Trial.run task batch, whether it ran on a client;
    tasks of one replicate each (so that several go to the workers)."""
    seen = {"clusters": 0, "on_client": []}
    start_cluster, run_tasks = dist._local_cluster, pkpd.trial.run_tasks

    def counting_cluster(*args, **kw):
        seen["clusters"] += 1
        return start_cluster(*args, **kw)

    def recording_run_tasks(fn, tasks, client=None, *args, **kw):
        seen["on_client"].append(client is not None)
        return run_tasks(fn, tasks, client, *args, **kw)

    monkeypatch.setattr(dist, "_local_cluster", counting_cluster)
    monkeypatch.setattr(pkpd.trial, "run_tasks", recording_run_tasks)
    monkeypatch.setattr(pkpd.trial, "PATIENT_DAY_SECONDS", 1.0)  # one replicate per task
    return seen


def _without_seconds(history: pd.DataFrame) -> pd.DataFrame:
    return history.drop(columns="seconds")


def test_calibration_on_two_workers_is_bit_identical_and_starts_one_cluster(spy):
    here = calibrate(TARGETS, PARAMETERS, replicates=3, seed=5, intervals=True, progress=False)
    assert spy["on_client"] == [] and spy["clusters"] == 0  # workers=None: Trial.run in this process
    there = calibrate(TARGETS, PARAMETERS, replicates=3, seed=5, intervals=True, progress=False, workers=2)
    # one cluster for the whole calibration, and every simulation of it on that cluster
    assert spy["clusters"] == 1
    assert len(spy["on_client"]) >= len(there.history) > 5 and all(spy["on_client"])
    pd.testing.assert_frame_equal(here.parameters, there.parameters, check_exact=True)
    pd.testing.assert_frame_equal(here.targets, there.targets, check_exact=True)
    pd.testing.assert_frame_equal(_without_seconds(here.history), _without_seconds(there.history), check_exact=True)
    pd.testing.assert_frame_equal(here.profiles["ec50"], there.profiles["ec50"], check_exact=True)
    # the fit did move ec50 and bracket it (a calibration, not a no-op that would match trivially)
    row = there.parameters.loc["ec50"]
    assert row["estimate"] != 40.0 and row["low"] < row["estimate"] < row["high"]


def test_calibrator_on_a_client_matches_one_process(client, spy):
    serial = Calibrator(TARGETS, PARAMETERS, replicates=3, seed=2, progress=False)
    on_client = Calibrator(TARGETS, PARAMETERS, replicates=3, seed=2, progress=False, workers=client)
    for values in ({"ec50": 10.0}, {"ec50": 30.0}):
        np.testing.assert_array_equal(serial.residuals(values), on_client.residuals(values), strict=True)
    a, b = serial.evaluate({"ec50": 20.0}), on_client.evaluate({"ec50": 20.0})
    pd.testing.assert_frame_equal(a.targets, b.targets, check_exact=True)
    assert spy["clusters"] == 0 and spy["on_client"] and all(spy["on_client"])  # the given client, kept open
    assert sum(client.nthreads().values()) == 2


@pytest.mark.parametrize("bad", [0, -3, 2.5, "not an address"])
def test_calibrate_refuses_bad_workers(bad):
    with pytest.raises(PKPDInputError, match="workers"):
        calibrate(TARGETS, PARAMETERS, replicates=2, seed=1, progress=False, workers=bad)


def test_scenario_run_on_a_client_is_bit_identical(client, spy):
    scenario = pkpd.load_scenario(PHASE3)
    here = scenario.run(replicates=4, progress=False)
    there = scenario.run(replicates=4, progress=False, workers=client)
    assert spy["on_client"] == [True]
    for k in here.result._data:
        np.testing.assert_array_equal(here.result._data[k], there.result._data[k], err_msg=k, strict=True)
    pd.testing.assert_frame_equal(here.endpoints, there.endpoints, check_exact=True)
    assert here.comparison() == there.comparison()


def test_cli_run_with_workers_writes_the_same_tables(client, spy, tmp_path, capsys):
    args = ["run", str(PHASE3), "--replicates", "3", "--no-progress"]
    assert main(args + ["--out", str(tmp_path / "here")]) == 0
    assert spy["on_client"] == []
    address = client.scheduler.address  # a scheduler address: pkpd connects a client for the run
    assert main(args + ["--out", str(tmp_path / "there"), "--workers", address]) == 0
    assert spy["on_client"] == [True]
    for name in ("endpoints.csv", "comparison.txt"):
        assert (tmp_path / "here" / name).read_text() == (tmp_path / "there" / name).read_text(), name
    capsys.readouterr()
    assert main(args + ["--out", str(tmp_path / "bad"), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "pkpd: error:" in err and "--workers" in err
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").iterdir())
