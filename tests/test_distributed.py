"""Work on a real Dask LocalCluster (2 worker processes) gives bit-identical results.

Trial.run, optimize_rule and sweep run here and on the cluster, with the task
sizes forced small so that the work really is split over several tasks; every
array and table must be equal, not close.  Also: the workers run one thread
each, the workers= value is checked, and a sweep's grid values reach the
model (a known ordering on common random numbers).  Starting a cluster takes
several seconds, so one is shared by the module (and one test starts its own
through workers=2, as a user would).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import pkpd
from pkpd import Arm, Endpoints, PKPDInputError, TitrationRule, Trial
from pkpd.distributed import check_workers, group_size, local_client, map_tasks
from pkpd.optimize import optimize_rule, scaled_design

pytest.importorskip("distributed")

ROOT = Path(__file__).resolve().parents[1]
PHASE3 = ROOT / "scenarios" / "itp_phase3.toml"
SWEEP = importlib.import_module("pkpd.sweep")  # the module (pkpd.sweep is the function)


def _trial(n=30, days=28) -> Trial:
    rule = TitrationRule()
    return Trial((Arm("2.5 mg + titration", n, 2.5, rule), Arm("5 mg + titration", n, 5.0, rule),
                  Arm("placebo", n // 2, 0.0)), duration_days=days, endpoints=Endpoints(primary_day=days))


@pytest.fixture(scope="module")
def client():
    with local_client(2) as c:
        yield c


def _assert_same_run(a, b):
    assert a._data.keys() == b._data.keys()
    for k in a._data:
        np.testing.assert_array_equal(a._data[k], b._data[k], err_msg=k, strict=True)
    pd.testing.assert_frame_equal(a.endpoints, b.endpoints, check_exact=True)


def test_trial_run_on_two_local_workers_is_bit_identical(monkeypatch):
    trial = _trial()
    here = trial.run(seed=7, replicates=6, progress=False)
    monkeypatch.setattr(pkpd.trial, "PATIENT_DAY_SECONDS", 1.0)  # one replicate per task: 6 tasks on 2 workers
    there = trial.run(seed=7, replicates=6, progress=False, workers=2)
    _assert_same_run(here, there)


def test_trial_run_with_typical_draws_on_a_client(client, monkeypatch):
    trial = _trial(20, 21)
    draws = pd.DataFrame({"ec50": [15.0, 20.0, 25.0, 30.0], "emax": [9.0, 10.0, 11.0, 12.0]})
    here = trial.run(seed=3, replicates=4, typical_draws=draws, progress=False)
    monkeypatch.setattr(pkpd.trial, "PATIENT_DAY_SECONDS", 1.0)
    there = trial.run(seed=3, replicates=4, typical_draws=draws, progress=False, workers=client)
    _assert_same_run(here, there)
    pd.testing.assert_frame_equal(here.typical_draws, there.typical_draws)


def test_workers_get_one_thread_each(client):
    env = client.run(lambda: (os.environ.get("NUMBA_NUM_THREADS"), os.environ.get("OMP_NUM_THREADS")))
    assert len(env) == 2 and set(env.values()) == {("1", "1")}
    threads = client.run(lambda: __import__("numba").config.NUMBA_NUM_THREADS)
    assert set(threads.values()) == {1}
    assert sum(client.nthreads().values()) == 2


SCRIPT = """
import numba, pkpd  # imported before the cluster starts: spawned workers import this script first
from pkpd.distributed import local_client, run_tasks

def threads(_):
    import numba, os
    return numba.config.NUMBA_NUM_THREADS, numba.get_num_threads(), os.environ["NUMBA_NUM_THREADS"]

if __name__ == "__main__":
    with local_client(2) as client:
        print(sorted(set(client.run(lambda: (numba.config.NUMBA_NUM_THREADS, numba.get_num_threads())).values())), run_tasks(threads, [0, 1], client))
"""


def test_workers_of_a_script_that_imports_numba_get_one_thread(tmp_path):
    """A user's script imports pkpd (numba) at the top; its spawned workers import it
    before the nanny's environment applies, so one thread must be set before the spawn."""
    script = tmp_path / "user_script.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[(1, 1)] [(1, 1, '1'), (1, 1, '1')]", done.stdout


def test_optimize_rule_is_the_same_on_one_and_two_workers(client, monkeypatch):
    design = scaled_design(pkpd.load_scenario(PHASE3), 100, 56)
    one = optimize_rule(design=design, budget=6, seed=21, batch_size=3, workers=1, progress=False)
    monkeypatch.setattr(sys.modules["pkpd.optimize"], "PATIENT_DAY_SECONDS", 1.0)  # one candidate per task
    two = optimize_rule(design=design, budget=6, seed=21, batch_size=3, workers=client, progress=False)
    pd.testing.assert_frame_equal(one.candidates, two.candidates, check_exact=True)
    pd.testing.assert_frame_equal(one.holdout, two.holdout, check_exact=True)
    assert one.best_rule == two.best_rule
    assert (one.candidates["batch"].to_numpy() == [0, 1, 1, 1, 2, 2, 2]).all()


def test_sweep_is_the_same_on_one_and_two_workers(client, monkeypatch):
    trial = _trial(20, 21)
    grid = {"ec50": [15.0, 30.0], "low": [40.0, 60.0]}
    draws = pd.DataFrame({"emax": [9.0, 11.0]})
    here = SWEEP.sweep(trial, grid, draws=draws, seed=2, progress=False)
    monkeypatch.setattr(SWEEP, "PATIENT_DAY_SECONDS", 1.0)  # one run per task
    there = SWEEP.sweep(trial, grid, draws=draws, seed=2, workers=client, progress=False)
    xr.testing.assert_identical(here, there)
    assert dict(here.sizes) == {"point": 4, "draw": 2, "arm": 3}
    assert list(here["ec50"].values) == [15.0, 15.0, 30.0, 30.0] and list(here["low"].values) == [40.0, 60.0, 40.0, 60.0]


def test_map_tasks_keeps_the_order_of_the_tasks(client):
    assert map_tasks(abs, [-3, 1, -2, 5, -4], workers=client, progress=False) == [3, 1, 2, 5, 4]
    assert map_tasks(abs, [-3, 1], workers=None, progress=False) == [3, 1]
    # a scheduler address: a client is connected for the call, and closed after it
    address = client.scheduler.address
    assert address.startswith("tcp://")
    assert map_tasks(abs, [-7, 2, -1], workers=address, progress=False) == [7, 2, 1]


# ================================================================= serial checks of the same pieces
def test_sweep_grid_values_reach_the_model():
    """A fixed dose on common random numbers: a higher EC50 (ng/mL) can only
    lower each patient's counts, so the fixed-dose arm's share of responders,
    time in range and peak rise never increase along the grid, and a rule field
    changes only the titrated arms."""
    trial = Trial((Arm("fixed 5 mg", 60, 5.0), Arm("titrated", 60, 2.5, TitrationRule())), duration_days=42,
                  endpoints=Endpoints(primary_day=42))
    ds = SWEEP.sweep(trial, {"ec50": [5.0, 20.0, 80.0, 320.0]}, seed=4, progress=False)
    fixed = ds.sel(arm="fixed 5 mg", draw=0)
    for name in ("responders_primary", "peak_rise_pct", "responded_once"):
        v = fixed[name].values
        assert (np.diff(v) <= 0).all(), (name, v)
    assert fixed["peak_rise_pct"].values[0] > fixed["peak_rise_pct"].values[-1] + 10
    by_rule = SWEEP.sweep(trial, {"visit_every_days": [7.0, 14.0]}, seed=4, progress=False)
    same = by_rule.sel(arm="fixed 5 mg", draw=0)
    assert float(same["time_in_range"][0]) == float(same["time_in_range"][1])
    assert float(same["responders_primary"][0]) == float(ds.sel(arm="fixed 5 mg", draw=0, point=1)["responders_primary"])


def test_sweep_refuses_unknown_names():
    trial = _trial(10, 14)
    with pytest.raises(PKPDInputError, match="'ec5'"):
        SWEEP.sweep(trial, {"ec5": [10.0]}, seed=1, progress=False)
    with pytest.raises(PKPDInputError, match="grid is empty"):
        SWEEP.sweep(trial, {}, seed=1, progress=False)
    with pytest.raises(PKPDInputError, match="both grid and draws"):
        SWEEP.sweep(trial, {"ec50": [10.0]}, draws=pd.DataFrame({"ec50": [12.0]}), seed=1, progress=False)
    with pytest.raises(PKPDInputError, match="workers"):
        SWEEP.sweep(trial, {"ec50": [10.0]}, seed=1, workers=-2, progress=False)


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "no address", object()])
def test_bad_workers_values(bad):
    with pytest.raises(PKPDInputError, match="workers"):
        check_workers(bad)
    with pytest.raises(PKPDInputError, match="workers"):
        _trial(10, 14).run(seed=1, workers=bad, progress=False)


def test_workers_values_accepted():
    assert check_workers(None) is None and check_workers(1) is None and check_workers(3) == 3
    assert check_workers("tcp://10.0.0.5:8786") == "tcp://10.0.0.5:8786"


def test_group_size_meets_the_minimum_task_time():
    assert group_size(100, 0.01, 2) == 50        # 0.5 s / 0.01 s per task
    assert group_size(100, 1.0, 2) == 13         # long tasks: about 4 groups per worker
    assert group_size(100, 1.0, 2, most=5) == 5
    assert group_size(3, 0.001, 2) == 3


def test_sweep_takes_ladders_and_a_table_of_points():
    trial = _trial(15, 14)
    ladders = [[0, 2.5, 5], [0, 2.5, 3.75, 5, 7.5]]
    ds = SWEEP.sweep(trial, {"ladder_mg": ladders, "start_mg": [2.5]}, seed=3, progress=False)
    assert list(ds["ladder_mg"].values) == ["0/2.5/5", "0/2.5/3.75/5/7.5"] and ds.sizes["point"] == 2
    points = pd.DataFrame({"ec50": [15.0, 25.0], "high": [200.0, 300.0]})
    table = SWEEP.sweep(trial, points, seed=3, progress=False)
    assert list(table["ec50"].values) == [15.0, 25.0] and list(table["high"].values) == [200.0, 300.0]
    assert table["utility"].attrs["unit"] == "per patient" and "time_in_range" in table
