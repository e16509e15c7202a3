"""Model-guided titration's Laplace path (pkpd.forecast.ModelGuidedRule(posterior="laplace")).

References: the vectorised choice against prediction.choose on its tables; the Laplace path's
recommendations against the full importance-sampling forecast (pkpd.forecast.forecast) where
the full forecast's choice is clear; a patient decided alone against the same patient decided
with others; the guided arm against the label rule on the same simulated patients.
"""

import warnings
from dataclasses import replace

import numpy as np
import pytest

import pkpd
from pkpd import PKPDInputError
from pkpd.drugs import hetrombopag
from pkpd.forecast import ModelGuidedRule
from pkpd.forecast.prediction import candidate_doses, candidate_table, choose, choose_many

MODEL = hetrombopag.model("itp")
LADDER = (0.0, 2.5, 3.75, 5.0, 7.5)


def _state(rule, scenarios):
    """A GuidedState after one visit on day 7: (start mg, dose after day 7 mg, day-7 count)."""
    st = rule.start(2.5, len(scenarios))
    return replace(st, start_mg=np.array([s[0] for s in scenarios], float), visit_days=(7.0,),
                   counts=np.array([[s[2]] for s in scenarios], float),
                   doses_after=np.array([[s[1]] for s in scenarios], float),
                   level=np.array([rule.level_of(s[1]) for s in scenarios], np.int64))


def test_choose_many_is_choose_on_the_tables():
    rng = np.random.default_rng(0)
    days = np.array([7.0, 14.0])
    for trial in range(25):
        C, n, K = len(LADDER), 3, 40
        scale = rng.choice([0.3, 1.0, 2.0])
        centre = rng.choice([np.log(20), np.log(120), np.log(380), np.log(600)])
        obs = np.exp(centre + scale * rng.standard_normal((C, n, K, 2)) + 0.3 * rng.standard_normal((C, n, 1, 1)))
        current = rng.choice(LADDER[1:], size=n)
        max_p = rng.choice([0.0, 0.05, 0.2])
        got = choose_many(obs, np.array(LADDER), (50.0, 250.0), 400.0, max_p, current)
        for i in range(n):
            doses, labels = candidate_doses(LADDER, current[i])
            table = candidate_table(doses, labels, days, obs[:, i], (50.0, 250.0), 400.0, 30.0)
            assert got[i] == choose(table, LADDER, (50.0, 250.0), 400.0, max_p, current[i])[0], (trial, i)


@pytest.mark.filterwarnings("ignore::pkpd.forecast.ForecastWarning")
def test_laplace_path_recommends_what_the_full_forecast_does_where_the_choice_is_clear():
    rule = ModelGuidedRule(posterior="laplace", seed=3)
    # (start, dose after day 7, day-7 count) and the day-14 count
    scenarios = [(2.5, 2.5, 10.0), (7.5, 7.5, 300.0), (2.5, 5.0, 20.0), (5.0, 5.0, 450.0)]
    y = np.array([11.0, 650.0, 30.0, 700.0])
    st = _state(rule, scenarios)
    fast, _ = rule.laplace_doses(st, 14.0, y)
    clear = 0
    for i in range(len(scenarios)):
        fc = rule.forecast_for(st.history(i, 14.0, y[i]), 14.0)  # the importance-sampling forecast
        per = fc.table.groupby("dose_mg").agg(p_in=("p_in_range", "mean"), p_above=("p_above", "max"))
        ok = per[per["p_above"] <= 0.05]
        margin = (ok.loc[fc.dose_mg, "p_in"] - ok["p_in"].drop(fc.dose_mg).max() if fc.dose_mg in ok.index
                  else per["p_above"].drop(fc.dose_mg).min() - per.loc[fc.dose_mg, "p_above"])
        if margin > 0.02:  # the full forecast's choice is not a near tie
            clear += 1
            assert fast[i] == fc.dose_mg, (scenarios[i], fast[i], fc.reason)
    assert clear >= 3


def test_laplace_decisions_are_seeded_and_do_not_depend_on_the_other_patients():
    rule = ModelGuidedRule(posterior="laplace", seed=5, n_laplace=100)
    scenarios = [(2.5, 2.5, 40.0), (2.5, 3.75, 80.0), (2.5, 5.0, 200.0), (2.5, 2.5, 15.0)]
    y = np.array([90.0, 160.0, 330.0, 18.0])
    together = rule.laplace_doses(_state(rule, scenarios), 14.0, y)
    again = rule.laplace_doses(_state(rule, scenarios), 14.0, y)
    np.testing.assert_array_equal(together[0], again[0])
    for i in range(len(scenarios)):
        alone = rule.laplace_doses(_state(rule, [scenarios[i]]), 14.0, y[i:i + 1])
        assert alone[0][0] == together[0][i], i
        np.testing.assert_array_equal(alone[1][0], together[1][i])
    # the MAPs warm-start the next visit: the state carries them
    new, _ = rule.step(_state(rule, scenarios), 14.0, y)
    assert new.map_z.shape[:2] == (len(scenarios), 2) and np.isfinite(new.map_z).all()
    np.testing.assert_array_equal(rule.doses_mg[new.level], together[0])


def test_a_guided_arm_runs_in_a_trial_on_the_ladder_and_is_no_less_safe_than_the_label_rule():
    days = 42
    ends = pkpd.Endpoints(primary_day=None, increased_within_days=days)
    guided = ModelGuidedRule(posterior="laplace", n_laplace=60, seed=2)
    out = {}
    for label, rule in (("label", pkpd.TitrationRule()), ("guided", guided)):
        trial = pkpd.Trial(arms=(pkpd.Arm(label, 30, 2.5, rule=rule),), duration_days=days, model=MODEL, endpoints=ends)
        out[label] = trial.run(seed=7, progress=False)
    led = out["guided"].ledger
    assert set(led["dose_mg"]) <= set(guided.ladder_mg)
    assert (led["dose_mg"] <= max(guided.ladder_mg)).all()
    decided = led[(led["day"] > 0) & (led["day"] < days)]
    assert decided["action"].isin(["hold", "up", "down", "interrupt", "resume", "interrupted"]).all()
    # the same patients in both arms (the same seed): same parameters, same day-0 count
    np.testing.assert_array_equal(out["label"].parameters["cl"], out["guided"].parameters["cl"])
    above = {k: (r.visit_data().daily[:, 1:] > 400).any(axis=1).mean() for k, r in out.items()}
    assert above["guided"] <= above["label"] + 0.1, above


def test_bad_options_name_the_field():
    with pytest.raises(PKPDInputError, match="posterior"):
        ModelGuidedRule(posterior="map")
    with pytest.raises(PKPDInputError, match="n_laplace"):
        ModelGuidedRule(n_laplace=5)
    assert "laplace posterior" in repr(ModelGuidedRule(posterior="laplace"))


GUIDED_TOML = """
[scenario]
name = "guided"
seed = 3
[model]
population = "itp"
ec50 = 25.0
[trial]
duration_days = 21
[endpoints]
primary_day = 21
increased_within_days = 21
[rules.guided]
kind = "model-guided"
posterior = "laplace"
n_laplace = 40
max_p_above = 0.1
hold_margin = 0.05
[rules.label]
[[arms]]
name = "guided"
n = 4
start_mg = 2.5
rule = "guided"
[[arms]]
name = "label"
n = 4
start_mg = 2.5
rule = "label"
"""


def test_scenario_files_name_the_model_guided_rule(tmp_path):
    import tomllib

    path = tmp_path / "guided.toml"
    path.write_text(GUIDED_TOML)
    sc = pkpd.scenario.Scenario.load(path)
    guided, label = (a.rule for a in sc.trial.arms)
    assert isinstance(guided, ModelGuidedRule) and type(label) is pkpd.TitrationRule
    assert (guided.posterior, guided.n_laplace, guided.max_p_above, guided.hold_margin) == ("laplace", 40, 0.1, 0.05)
    assert guided.model.typical["ec50"] == 25.0  # it forecasts with the scenario's model
    led = sc.trial.run(seed=sc.seed, progress=False).ledger
    assert set(led["dose_mg"]) <= set(guided.ladder_mg)
    data = tomllib.loads(GUIDED_TOML)
    data["rules"]["label"]["n_laplace"] = 40
    with pytest.raises(PKPDInputError, match=r"rules.label.n_laplace .*model-guided"):
        pkpd.scenario.Scenario.from_dict(data)
    data = tomllib.loads(GUIDED_TOML)
    data["rules"]["guided"]["kind"] = "oracle"
    with pytest.raises(PKPDInputError, match=r"rules.guided.kind = 'oracle'"):
        pkpd.scenario.Scenario.from_dict(data)
    data = tomllib.loads(GUIDED_TOML)
    data["rules"]["guided"]["posterior"] = "map"
    with pytest.raises(PKPDInputError, match=r"rules.guided.posterior"):
        pkpd.scenario.Scenario.from_dict(data)
