"""Trials with stages (fixed, titration, taper to withdrawal, off), the
time-to-relapse endpoint (Kaplan-Meier), the platelet-increased proxy, the
day windows of the endpoints, and the two scenarios built on them."""

import tomllib
from pathlib import Path

import numpy as np
import pytest

from pkpd import Arm, Endpoints, TitrationRule, Trial, load_scenario
from pkpd import titration as tt
from pkpd.cli import main
from pkpd.drugs import hetrombopag
from pkpd.endpoints import REGISTRY, VisitData, km_median
from pkpd.fluctuation import Fluctuation
from pkpd.scenario import Scenario
from pkpd.trial import Stage

ROOT = Path(__file__).resolve().parents[1]
FIP = ROOT / "scenarios" / "first_in_patient.toml"
TAPER = ROOT / "scenarios" / "itp_phase3_taper.toml"
RULE = TitrationRule()
LADDER = np.asarray(RULE.ladder_mg)


# ================================================================= Kaplan-Meier
def test_km_median_matches_a_hand_computed_kaplan_meier():
    # times 2, 3, 3+, 5, 6+, 8, 9 (+ = censored; an event before a censoring at the same time)
    time = [2, 3, 3, 5, 6, 8, 9]
    event = [1, 1, 0, 1, 0, 1, 1]
    # by hand: S(2) = 6/7, S(3) = 5/7, S(5) = 15/28, S(8) = 15/56, S(9) = 0 -> median 8
    # Greenwood: var S(t) = S^2 sum d/(n(n-d)); 1/42, +1/30, +1/12, +1/2
    z = 1.959963984540054
    band = {2: (6 / 7, 1 / 42), 3: (5 / 7, 1 / 42 + 1 / 30), 5: (15 / 28, 1 / 42 + 1 / 30 + 1 / 12),
            8: (15 / 56, 1 / 42 + 1 / 30 + 1 / 12 + 1 / 2)}
    lower = {t: s - z * s * np.sqrt(g) for t, (s, g) in band.items()}
    upper = {t: s + z * s * np.sqrt(g) for t, (s, g) in band.items()}
    assert lower[2] > 0.5 and lower[3] <= 0.5  # lower limit: the lower band first at or below 0.5 at t = 3
    assert all(u > 0.5 for u in upper.values())  # the upper band never crosses before the curve reaches 0
    med, lo, hi = km_median(time, event)
    assert (med, lo) == (8.0, 3.0)
    assert np.isnan(hi)  # not reached: only the step to 0 (undefined Greenwood variance) would cross
    # the last patient censored instead: the curve stays at 15/56, the upper band (0.688) never crosses
    assert km_median(time, event[:-1] + [0])[:2] == (8.0, 3.0) and np.isnan(km_median(time, event[:-1] + [0])[2])
    # nobody with an event: no median
    assert np.isnan(km_median([4.0, 5.0], [False, False])).all()


def test_km_median_recovers_an_exponential_truth_and_its_interval_covers():
    rng = np.random.default_rng(11)
    median_true = 15.0
    rate = np.log(2) / median_true

    def sample(n):
        t = rng.exponential(1 / rate, n)
        follow = np.minimum(rng.uniform(10, 80, n), 42.0)  # staggered dropout, end of follow-up on day 42
        return np.minimum(t, follow), t <= follow

    med, lo, hi = km_median(*sample(20_000))
    assert abs(med - median_true) < 0.5 and lo < median_true < hi and hi - lo < 1.5
    covered = [lo <= median_true <= hi for lo, hi in (km_median(*sample(120))[1:] for _ in range(300))]
    assert 0.90 <= np.mean(covered) <= 0.99  # a 95% interval


# ================================================================= endpoints on hand-made courses
def visits(observed, taper_start=None, responder=None, settings=None, day=(0, 7, 14, 21, 28)):
    observed = np.asarray(observed, float)
    day = np.asarray(day, float)
    return VisitData(settings or Endpoints(primary_day=None), day, np.ones(day.size, bool), observed, observed,
                     np.full(observed.shape, tt.OBSERVE), np.zeros((observed.shape[0], 29), np.float32),
                     None if taper_start is None else np.asarray(taper_start, float),
                     None if responder is None else np.asarray(responder, bool))


def test_time_to_relapse_counts_from_the_taper_start_among_responders():
    obs = [[10, 80, 60, 40, 70],     # tapered on day 7, below 50 on day 21: event at 14 days
           [10, 80, 90, 60, 55],     # never below 50: censored at the last assessment, 21 days
           [10, 40, 30, 20, 10],     # not responding at the taper start: not at risk
           [10, 60, 70, 80, 90]]     # no taper stage
    v = visits(obs, taper_start=[7, 7, 7, np.nan], responder=[True, True, False, False])
    time, event = REGISTRY["time_to_relapse"].compute(v)
    np.testing.assert_array_equal(time, [14, 21, np.nan, np.nan])
    np.testing.assert_array_equal(event, [True, False, False, False])
    # the threshold is a parameter: below 65 the first relapses on day 14, the second on day 21 (60)
    time, event = REGISTRY["time_to_relapse"].compute(
        visits(obs, [7, 7, 7, np.nan], [True, True, False, False], Endpoints(primary_day=None, relapse_below=65)))
    np.testing.assert_array_equal(time[:2], [7, 14])
    np.testing.assert_array_equal(event[:2], [True, True])
    assert REGISTRY["time_to_relapse"].compute(visits(obs)) is None  # no taper in the trial


def test_platelet_increased_and_responded_once_use_their_day_windows():
    obs = [[10, 420, 100, 100, 100],   # > 400 on day 7
           [10, 100, 100, 100, 450],   # > 400 only on day 28
           [450, 40, 40, 60, 40]]      # > 400 at baseline only; >= 50 only on day 21
    inc = REGISTRY["platelet_increased"].compute
    once = REGISTRY["responded_once"].compute
    np.testing.assert_array_equal(inc(visits(obs, settings=Endpoints(primary_day=None))), [True, True, False])
    np.testing.assert_array_equal(inc(visits(obs, settings=Endpoints(primary_day=None, increased_within_days=21))),
                                  [True, False, False])
    np.testing.assert_array_equal(inc(visits(obs, settings=Endpoints(primary_day=None, increased_above=430))),
                                  [False, True, False])
    np.testing.assert_array_equal(once(visits(obs)), [True, True, True])
    np.testing.assert_array_equal(once(visits(obs, settings=Endpoints(primary_day=None, once_within_days=14))),
                                  [True, True, False])


def test_responded_mostly_counts_three_quarters_of_the_assessments_in_its_window():
    obs = [[10, 60, 60, 60, 40],   # >= 50 at 3 of 4 post-baseline assessments
           [10, 60, 40, 60, 40],   # 2 of 4
           [10, 40, 60, 60, 60]]   # 3 of 4; 2 of 3 up to day 21
    mostly = REGISTRY["responded_mostly"].compute
    np.testing.assert_array_equal(mostly(visits(obs)), [True, False, True])
    np.testing.assert_array_equal(mostly(visits(obs, settings=Endpoints(primary_day=None, once_within_days=21))),
                                  [True, False, False])


# ================================================================= stages in a run
def test_an_arm_without_stages_is_one_explicit_stage():
    def run(arms, **kw):
        return Trial(arms, duration_days=42, endpoints=Endpoints(primary_day=28), **kw).run(seed=5, progress=False)

    plain = run((Arm("t", 6, 2.5, RULE), Arm("f", 4, 5.0)))
    staged = run((Arm("t", 6, 2.5, RULE, stages=(Stage.titration(42),)), Arm("f", 4, 5.0, stages=(Stage.fixed(42),))))
    for col in ("day", "observed", "dose_mg", "action"):
        np.testing.assert_array_equal(plain.ledger[col].to_numpy(), staged.ledger[col].to_numpy())
    # fixed for 14 days then off is the old "treatment_days = 14"
    old = run((Arm("f", 4, 5.0),), treatment_days=14)
    new = run((Arm("f", 4, 5.0, stages=(Stage.fixed(14), Stage.off(28))),))
    np.testing.assert_array_equal(old.trajectories["platelets"].values, new.trajectories["platelets"].values)


def test_taper_steps_responders_down_the_ladder_and_keeps_the_others():
    arm = Arm("t", 30, 5.0, RULE, stages=(Stage.titration(28), Stage.taper(28, every_days=7)))
    result = Trial((arm,), duration_days=63, endpoints=Endpoints(primary_day=28)).run(seed=2, progress=False)
    led = result.ledger
    for _, p in led.groupby("ID"):
        p = p.set_index("day")
        carried = p.loc[28.0, "dose_before_mg"]
        level = int(np.flatnonzero(np.isclose(LADDER, carried))[0])
        if p.loc[28.0, "observed"] >= 50:  # responder at the taper start: one level down on days 28, 35, 42, 49
            want = [LADDER[max(level - k, 0)] for k in range(1, 5)]
        else:                              # not responding: keeps the dose through the stage
            want = [carried] * 4
        np.testing.assert_allclose(p.loc[[28.0, 35.0, 42.0, 49.0], "dose_mg"], want)
        assert p.loc[56.0, "dose_mg"] == 0.0  # after the last stage: no drug
    acts = set(led.loc[led["day"] == 28.0, "action"].astype(str))
    assert acts <= {"taper", "withdrawn", "hold", "observe"} and acts & {"taper", "withdrawn"}
    t = result.endpoints.set_index("endpoint").loc["time_to_relapse"]
    assert t["at_risk"] == (led.loc[led["day"] == 28.0, "observed"] >= 50).sum() and t["events"] <= t["at_risk"]


def test_stages_do_not_depend_on_chunking_and_nonresponders_may_stop():
    arm = Arm("t", 5, 2.5, RULE, stages=(Stage.titration(14), Stage.taper(14, nonresponders="stop")))
    trial = Trial((arm, Arm("p", 3, 0.0)), duration_days=28, endpoints=Endpoints(primary_day=14))
    one = trial.run(seed=9, replicates=4, progress=False)
    many = trial.run(seed=9, replicates=4, progress=False, max_chunk=8)
    np.testing.assert_array_equal(one.ledger["dose_mg"], many.ledger["dose_mg"])
    np.testing.assert_array_equal(one.ledger["observed"], many.ledger["observed"])
    led = one.ledger[(one.ledger["arm"] == "t") & (one.ledger["day"] == 14.0)]
    stop = led["observed"] < 50
    assert (led.loc[stop, "action"].astype(str) == "stop").all() and (led.loc[stop, "dose_mg"] == 0).all()
    assert "stopped" in set(one.endpoints["endpoint"])


def test_disease_fluctuation_is_drawn_per_replicate_whatever_the_chunking():
    model = hetrombopag.model("itp").with_(fluctuation=Fluctuation(0.4, 24 * 14))
    arms = (Arm("t", 5, 2.5, RULE, stages=(Stage.titration(14), Stage.taper(14))), Arm("p", 3, 0.0))
    trial = Trial(arms, duration_days=28, endpoints=Endpoints(primary_day=14), model=model)
    one = trial.run(seed=4, replicates=4, progress=False)
    chunked = trial.run(seed=4, replicates=4, progress=False, max_chunk=8)
    np.testing.assert_array_equal(one.trajectories["platelets"].values, chunked.trajectories["platelets"].values)
    steady = Trial(arms, duration_days=28, endpoints=Endpoints(primary_day=14)).run(seed=4, replicates=4, progress=False)
    assert not np.allclose(one.trajectories["platelets"].values, steady.trajectories["platelets"].values)
    # the same patients (parameters and baselines) with and without the fluctuation
    np.testing.assert_array_equal(one.parameters["plt0"], steady.parameters["plt0"])


def test_stage_api_transforms_and_toml_spell_the_same_stage(tmp_path):
    st = Stage.taper(42, every_days=14)
    assert st == Stage("taper", 42, taper_every_days=14) and st.with_days(21).days == 21
    assert st.with_(nonresponders="stop").nonresponders == "stop" and st.nonresponders == "stay"
    sc = load_scenario(TAPER)
    arm = sc.trial.arms[0]
    assert [s.kind for s in arm.stages] == ["titration", "taper"] and arm.kind == "titration+taper"
    assert arm.stages[1] == Stage.taper(42, every_days=7)
    assert arm.stages[0].rule is None and sc.trial.plan(arm)[0][3] == arm.rule  # a stage without a rule: the arm's
    assert sc.trial.duration_days == 112 and sc.trial.endpoints.once_within_days == 56


# ================================================================= the scenarios
def test_first_in_patient_scenario_and_its_other_reading(tmp_path):
    sc = load_scenario(FIP)
    assert [(a.start_mg, a.n) for a in sc.trial.arms] == [(2.5, 8), (5.0, 12), (7.5, 12)]
    assert all([s.kind for s in a.stages] == ["fixed", "fixed"] for a in sc.trial.arms)
    assert sc.trial.endpoints.primary_day == 28
    res = sc.run(progress=False)
    led = res.ledger
    dose = led.loc[led["day"] == 21].groupby("arm", observed=True)["dose_before_mg"].unique()
    assert {k: list(v) for k, v in dose.items()} == {"2.5 mg": [2.5], "5 mg": [5.0], "7.5 mg": [7.5]}  # on drug to day 28
    primary = res.endpoints.set_index(["endpoint", "arm"]).loc["responders_primary"]
    assert primary["published_n"].tolist() == [8, 12, 12]
    # the other reading, 14 days on drug then off, is the one-line change the file describes
    other = tmp_path / "fip_off_drug.toml"
    other.write_text(FIP.read_text().replace('kind = "fixed"           # reading', 'kind = "off"  # reading'))
    off = load_scenario(other).run(progress=False)
    assert (off.ledger.loc[off.ledger["day"] == 21, "dose_before_mg"] == 0).all()  # off drug from day 14
    records = off.to_nonmem()
    doses = records[records["EVID"] == 1]
    total = (doses["AMT"] * (doses["ADDL"] + 1)).groupby(doses["ID"]).sum()
    start = off.parameters.set_index("ID")["arm"].map({a.name: a.start_mg for a in sc.trial.arms}).astype(float)
    np.testing.assert_allclose(total, 14 * start[total.index])  # 14 once-daily doses each, in the NONMEM records
    assert main(["run", str(FIP), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    assert (tmp_path / "out" / "endpoints.csv").is_file()


def test_taper_scenario_reports_time_to_relapse_small_n(tmp_path):
    data = tomllib.loads(TAPER.read_text())
    for arm in data["arms"]:
        arm["n"] = 20
    sc = Scenario.from_dict(data)
    assert len(sc.published_all) == 9 and {p.endpoint for p in sc.published.values()} == {"responders_primary"}
    res = sc.run(progress=False)
    e = res.endpoints.set_index(["endpoint", "arm"])
    # the phase III adverse-event rate of "platelet count increased" beside the proxy: 4/168 and 24/171
    assert e.loc[("platelet_increased", "2.5 mg + titration"), "published_n"] == 168
    assert e.loc[("platelet_increased", "5 mg + titration"), "published_rate"] == pytest.approx(24 / 171)
    assert e.loc[("responded_once", "placebo"), "published_rate"] == pytest.approx(19 / 85)
    relapse = e.loc["time_to_relapse"]
    assert set(relapse.index) == {"2.5 mg + titration", "5 mg + titration"}  # placebo: nobody tapered
    led = res.ledger
    day70 = led[led["day"] == 70.0]
    for arm, row in relapse.iterrows():
        responders = (day70.loc[day70["arm"] == arm, "observed"] >= 50).sum()
        assert row["at_risk"] == responders and 0 <= row["events"] <= responders
        assert row["unit"] == "days" and (np.isnan(row["estimate"]) or 0 < row["estimate"] <= 42)
    assert {"platelet_increased", "responded_once"} <= set(e.index.get_level_values(0))
    assert "events /" in res.comparison() and " d " in res.comparison()
    per = res.per_replicate.set_index(["endpoint", "arm"])["value"]
    assert np.isnan(per["time_to_relapse", "placebo"])  # nobody at risk
    assert per["time_to_relapse", "5 mg + titration"] == relapse.loc["5 mg + titration", "estimate"]  # one replicate
