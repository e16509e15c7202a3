"""The clinical utility and the rule search, in one process.

The utility is checked against values worked out by hand on a hand-made
ledger, and its time in range against the endpoint registry's own
``time_in_range``; the search's held-out interval against scipy's paired t
test; the constraint against the table; bad inputs give PKPDInputError
naming the field.  The LocalCluster tests are in tests/test_distributed.py.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import pkpd
from pkpd import Arm, Endpoints, PKPDInputError, TitrationRule, Trial, Utility
from pkpd import titration as tt
from pkpd.cli import main
from pkpd.optimize import DEFAULT_SPACE, optimize_rule, params_of, scaled_design
from pkpd.trial_result import TrialResult

ROOT = Path(__file__).resolve().parents[1]
PHASE3 = ROOT / "scenarios" / "itp_phase3.toml"


# ================================================================= the utility on a hand-made ledger
def _hand_result() -> TrialResult:
    """Three patients, 14 days, visits on days 0, 7 and 14 (dosing ends on day 14)."""
    trial = Trial((Arm("titrated", 3, 2.5, TitrationRule()),), duration_days=14, visit_every_days=7,
                  endpoints=Endpoints(primary_day=14, increased_within_days=14))
    grid = trial.grid()
    assert list(grid) == [0, 7, 14]
    daily = np.array([
        [20] + [20] * 3 + [60] * 8 + [450] * 3,   # 3 d < 30, 8 d in range, 3 d > 400
        [20] + [100] * 14,                        # 14 d in range
        [20] + [250] * 5 + [400] * 5 + [30] * 4,  # boundaries: 250 in range; 400 not above; 30 not below
    ], np.float32)
    action = np.array([[tt.START, tt.UP, tt.OBSERVE], [tt.START, tt.HOLD, tt.OBSERVE],
                       [tt.START, tt.INTERRUPT, tt.OBSERVE]], np.int8)
    dose_before = np.array([[0, 2.5, 3.75], [0, 2.5, 2.5], [0, 2.5, 0.0]])
    dose = np.array([[2.5, 3.75, 0.0], [2.5, 2.5, 0.0], [2.5, 0.0, 0.0]])
    true = daily[:, [0, 7, 14]].astype(float)
    data = {"replicate": np.zeros(3, int), "arm": np.zeros(3, int), "plt0": daily[:, 0].astype(float),
            "true": true, "observed": true, "action": action, "dose": dose, "dose_before": dose_before,
            "daily": daily, "taper_start": np.full(3, np.nan), "taper_responder": np.zeros(3, bool)}
    return TrialResult(trial, data, grid, 1, 0)


def test_utility_matches_the_hand_computed_ledger():
    res = _hand_result()
    table = Utility().per_patient(res)
    # by hand, default weights +1 / -2 / -3 / -0.5 / -0.25:
    #   patient 1: 8 - 2*3 - 3*3 - 0.5 (one step up) - 0.25 (one decision visit) = -7.75
    #   patient 2: 14 - 0.25 (a hold is a visit, not a change) = 13.75
    #   patient 3: 5 - 0.5 (interrupt) - 0.25 = 4.25
    np.testing.assert_array_equal(table["utility"], [-7.75, 13.75, 4.25])
    np.testing.assert_array_equal(table["days_in_range"], [8, 14, 5])
    np.testing.assert_array_equal(table["days_above"], [3, 0, 0])
    np.testing.assert_array_equal(table["days_below"], [3, 0, 0])
    np.testing.assert_array_equal(table["dose_changes"], [1, 0, 1])  # day 0 and end of dosing are not changes
    np.testing.assert_array_equal(table["visits"], [1, 1, 1])
    s = Utility().summary(table)
    assert s["p_any_above"] == pytest.approx(1 / 3) and s["utility"] == pytest.approx((-7.75 + 13.75 + 4.25) / 3)
    # other weights: 8*2 + 3*(-10) + 3*0 + 1*(-1) + 0 = -15 for patient 1
    other = Utility(per_day_in_range=2, per_day_above=-10, per_day_below=0, per_dose_change=-1, per_visit=0)
    assert other.per_patient(res)["utility"].iloc[0] == -15.0
    # the ledger the table is read from says the same visits and changes
    led = res.ledger
    assert list(led["action"].astype(str)) == ["start", "up", "observe", "start", "hold", "observe",
                                               "start", "interrupt", "observe"]


def test_utility_time_in_range_is_the_endpoint():
    trial = scaled_design(pkpd.load_scenario(PHASE3), 120, 56)
    res = trial.run(seed=4, progress=False)
    per = Utility().per_patient(res)
    e = res.endpoints.set_index(["arm", "endpoint"])["estimate"]
    for arm, rows in per.groupby("arm", observed=True):
        assert rows["time_in_range"].mean() == pytest.approx(e[(arm, "time_in_range")], rel=1e-12)
        assert (rows["days_above"] / rows["days"]).mean() == pytest.approx(e[(arm, "time_above")], rel=1e-12)


def test_utility_refuses_bad_weights():
    with pytest.raises(PKPDInputError, match="utility.in_range"):
        Utility(in_range=(250, 50))
    with pytest.raises(PKPDInputError, match="utility.per_visit"):
        Utility(per_visit=float("nan"))
    with pytest.raises(PKPDInputError, match="utility.per_dose_change"):
        Utility(per_dose_change="half")
    with pytest.raises(PKPDInputError, match="utility.above"):
        Utility(above="400")
    with pytest.raises(PKPDInputError, match="utility.in_range"):
        Utility(in_range=("a", "b"))
    with pytest.raises(PKPDInputError, match="no field"):
        Utility().with_(per_week=1)


# ================================================================= the search
@pytest.fixture(scope="module")
def small():
    """100 titrated patients for 8 weeks, 6 candidates."""
    design = scaled_design(pkpd.load_scenario(PHASE3), 100, 56)
    return design, optimize_rule(design=design, budget=6, seed=11, progress=False)


def test_search_table_and_best(small):
    design, res = small
    c = res.candidates
    assert len(c) == 7 and c.index[0] == 0 and c["source"].iloc[0] == "base"
    assert set(DEFAULT_SPACE) <= set(c.columns) and len(DEFAULT_SPACE) >= 6
    ok = c[c["valid"] & c["feasible"]]
    assert res.best_index == ok["utility"].idxmax()
    assert c.loc[res.best_index, "utility"] >= c.loc[0, "utility"]
    # the best rule is the best row's parameters, and its candidate design runs them
    p = params_of(c.loc[res.best_index], res.dims)
    if res.best_index:
        assert {k: getattr(res.best_rule, k) for k in p if k != "start_mg"} == {k: v for k, v in p.items() if k != "start_mg"}
        assert all(a.start_mg == p["start_mg"] and a.rule == res.best_rule for a in res.best_design.arms)
    assert "best" in repr(res) and "held out" in repr(res)


def test_base_row_is_the_design_run_with_the_search_seed(small):
    """Common random numbers: the base row is the design's own run on the search seed."""
    design, res = small
    direct = Utility().summary(Utility().per_patient(design.run(seed=11, progress=False)))
    assert res.candidates.loc[0, "utility"] == direct["utility"]
    assert res.candidates.loc[0, "p_any_above"] == direct["p_any_above"]


def test_constraint_is_respected(small):
    _, res = small
    c = res.candidates[res.candidates["valid"]]
    base_p = c.loc[0, "p_any_above"]
    np.testing.assert_array_equal(c["feasible"], c["p_any_above"] <= base_p + 1e-15)
    assert res.candidates.loc[res.best_index, "p_any_above"] <= base_p


def test_constraint_binds_when_the_utility_rewards_high_counts():
    """A utility that pays for days above its limit (here 250) makes rules with
    more of them best by utility; the search must still return one no riskier
    than the base."""
    design = scaled_design(pkpd.load_scenario(PHASE3), 100, 56)
    greedy = Utility(above=250.0, per_day_above=5.0)
    res = optimize_rule(design=design, utility=greedy, budget=8, seed=5, progress=False)
    c = res.candidates
    base_p = c.loc[0, "p_any_above"]
    assert (c.loc[~c["feasible"], "utility"] > c.loc[res.best_index, "utility"]).any(), \
        "no infeasible candidate beat the best: the test would not see a constraint that is ignored"
    assert c.loc[res.best_index, "p_any_above"] <= base_p


def test_holdout_interval_is_scipys_paired_t(small):
    _, res = small
    base, best = res.holdout_patients["base"], res.holdout_patients["best"]
    assert res.holdout_seed != res.seed and np.array_equal(base["ID"], best["ID"])
    ci = stats.ttest_rel(best["utility"], base["utility"]).confidence_interval(0.95)
    row = res.holdout.loc["utility"]
    assert row["difference"] == pytest.approx((best["utility"] - base["utility"]).mean(), rel=1e-12)
    if np.isfinite(ci.low):
        assert (row["difference_low"], row["difference_high"]) == pytest.approx((ci.low, ci.high), rel=1e-9)
    # the held-out patients are new: not the search's
    searched = Utility().per_patient(res.base_design.run(seed=res.seed, progress=False))
    assert not np.array_equal(searched["utility"].to_numpy(), base["utility"].to_numpy())


def test_plot_draws_every_candidate(small, tmp_path):
    _, res = small
    fig = res.plot()
    ax = fig.axes[0]
    assert "time in range" in ax.get_ylabel() and "> 400" in ax.get_xlabel()
    drawn = sum(len(col.get_offsets()) for col in ax.collections)
    assert drawn == res.candidates["valid"].sum() + 2  # candidates, plus base and best marks
    fig.savefig(tmp_path / "tradeoff.png")


def test_cli_optimize_prints_the_best_rule_and_its_gain(capsys):
    code = main(["optimize", str(PHASE3), "--budget", "2", "--patients", "40", "--days", "28", "--seed", "3",
                 "--workers", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "best: TitrationRule(" in out and "held-out comparison" in out and "utility" in out


# ================================================================= bad input
@pytest.mark.parametrize("kwargs, field", [
    ({"space": {"lowest": (30, 80)}}, "lowest"),
    ({"space": {}}, "space"),
    ({"space": {"low": (80, 30)}}, "low"),
    ({"space": {"ladder_mg": []}}, "ladder_mg"),
    ({"space": {"start_mg": [3.0]}}, "start_mg"),
    ({"space": {"confirm_up": (1, 2.5)}}, "confirm_up"),
    ({"budget": 0}, "budget"),
    ({"budget": 2.5}, "budget"),
    ({"workers": 0}, "workers"),
    ({"workers": "not an address"}, "workers"),
    ({"workers": True}, "workers"),
    ({"batch_size": 0}, "batch_size"),
    ({"seed": -1}, "seed"),
    ({"holdout_seed": 11}, "holdout_seed"),
])
def test_bad_inputs_name_the_field(kwargs, field):
    design = scaled_design(pkpd.load_scenario(PHASE3), 40, 28)
    args = {"design": design, "budget": 2, "seed": 11, "progress": False, **kwargs}
    with pytest.raises(PKPDInputError, match=field):
        optimize_rule(**args)


def test_a_design_without_titration_is_refused():
    trial = Trial((Arm("placebo", 10, 0.0),), duration_days=28, endpoints=Endpoints(primary_day=28))
    with pytest.raises(PKPDInputError, match="no titrated arm"):
        optimize_rule(design=trial, budget=1, progress=False)
    with pytest.raises(PKPDInputError, match="design is required"):
        optimize_rule(budget=1)


def test_invalid_candidates_are_recorded_not_run():
    """A space that can break the threshold order: such candidates are marked invalid with the reason."""
    design = scaled_design(pkpd.load_scenario(PHASE3), 40, 28)
    res = optimize_rule(design=design, space={"high": (200.0, 600.0, 100.0)}, budget=6, seed=3, progress=False)
    c = res.candidates
    bad = c[~c["valid"]]
    assert (bad["high"] >= 400).all() and bad["note"].str.contains("low < high < interrupt_above").all()
    assert (c.loc[c["valid"], "high"] < 400).all() and not bad.empty
    assert res.best_index in c.index[c["valid"]]


def test_base_rule_outside_the_design():
    """A base rule given explicitly is swapped into the arms for the base row."""
    design = scaled_design(pkpd.load_scenario(PHASE3), 40, 28)
    base = TitrationRule(visit_every_days=14, name="fortnightly")
    res = optimize_rule(base_rule=base, design=design, space={"low": (40.0, 60.0, 5.0)}, budget=1, seed=1,
                        progress=False)
    assert all(a.rule == base for a in res.base_design.arms)
    assert res.candidates.loc[0, "visits"] == pytest.approx(1.0)  # day 14 only (day 28 ends dosing)
    replace(res.base_design)  # still a valid Trial
    assert isinstance(res.candidates, pd.DataFrame)
