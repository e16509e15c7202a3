"""Scenario files and the ``pkpd`` command: shipped scenarios load, every kind
of bad file stops with the key and the fix, ``run_scenario`` writes its
outputs, and the CLI runs without importing the fitting stack."""

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import beta

import pkpd
from pkpd import PKPDInputError, load_scenario, run_scenario
from pkpd.cli import main

ROOT = Path(__file__).resolve().parents[1]
#: the scenario files (the calibration problem file, itp_calibration.toml, is read by pkpd.calibrate.load_problem)
SCENARIOS = sorted(p for p in (ROOT / "scenarios").glob("*.toml") if p.stem != "itp_calibration")
PHASE3 = ROOT / "scenarios" / "itp_phase3.toml"
FORBIDDEN = ("pymc", "pytensor", "arviz", "nutpie")


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_shipped_scenarios_load(path):
    sc = load_scenario(path)
    assert sc.name == path.stem
    assert sc.trial.arms and sc.seed is not None


def test_shipped_scenario_set():
    names = {p.stem for p in SCENARIOS}
    assert {"itp_phase3", "healthy_multiple_dose", "itp_fixed_vs_titration", "itp_alternative_rules"} <= names
    alt = load_scenario(ROOT / "scenarios" / "itp_alternative_rules.toml").trial
    rules = {a.name: a.rule for a in alt.arms}
    assert rules["visits every 2 weeks"].visit_every_days == 14
    assert rules["cap 5 mg"].ladder_mg[-1] == 5.0
    healthy = load_scenario(ROOT / "scenarios" / "healthy_multiple_dose.toml").trial
    assert healthy.model.population == "healthy" and healthy.treatment_days == 10
    assert sorted(a.start_mg for a in healthy.arms if a.start_mg) == [2.5, 5.0, 7.5]


def test_phase3_scenario_is_the_published_design():
    sc = load_scenario(PHASE3)
    arms = {a.name: a for a in sc.trial.arms}
    assert [(a.n, a.start_mg, a.kind) for a in arms.values()] == [
        (168, 2.5, "titration"), (171, 5.0, "titration"), (85, 0.0, "placebo")]
    assert sc.trial.endpoints.primary_day == 56 and sc.trial.model.population == "itp"
    assert {k: (p.responders, p.n) for k, p in sc.published.items()} == {
        "2.5 mg + titration": (99, 168), "5 mg + titration": (110, 171), "placebo": (5, 85)}
    assert arms["5 mg + titration"].rule == pkpd.TitrationRule(name="label")  # the documented default rule (docs/science.md)


# ---------------------------------------------------------------- bad files
def write(tmp_path, text):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    return path


BASE = PHASE3.read_text()


@pytest.mark.parametrize(
    "old, new, words",
    [
        ("duration_days = 70", "durations_days = 70", ["unknown key trial.durations_days", "did you mean 'duration_days'"]),
        ("duration_days = 70", 'duration_days = "ten weeks"', ["trial.duration_days must be a whole number", "'ten weeks'", "duration_days = 70"]),
        ("n = 171\nstart_mg", "n = 17.5\nstart_mg", ["arms[1].n must be a whole number", "17.5"]),
        ("high = 250 ", "high = 40 ", ["rules.label", "low < high < interrupt_above", "high=40"]),
        ("resume_below = 150", "resume_below = 500", ["rules.label", "resume_below (500", "below interrupt_above"]),
        ("start_mg = 5.0", "start_mg = 4.0", ["arms[1] ('5 mg + titration').start_mg", "4.0 mg is not on the dose ladder", "ladder_mg"]),
        ('rule = "label"\n[[arms.published]]\nendpoint = "responders_primary"\nresponders = 110',
         'rule = "lable"\n[[arms.published]]\nendpoint = "responders_primary"\nresponders = 110',
         ["arms[1] ('5 mg + titration').rule = 'lable'", "defined rules: ['label']"]),
        ("ladder_mg = [0, 2.5, 3.75, 5, 7.5]", "ladder_mg = [0, 5, 2.5]", ["rules.label", "ladder_mg", "increasing"]),
        ("interrupt_at_lowest = true", "interrupt_at_lowest = 1", ["rules.label.interrupt_at_lowest must be a bool"]),
        ("[endpoints]", "[endpoint]", ["unknown table [endpoint]", "did you mean 'endpoints'"]),
        ("primary_day = 56", "primary_day = 60", ["primary_day 60", "not a visit day"]),
        ("responders = 5\n", "responders = 90\n", ["published responders (90)", "0..n"]),
        ('population = "itp"', 'population = "ITP patients"', ["model", "population must be 'healthy' or 'itp'"]),
        ('population = "itp"', 'population = "itp"\nec50 = -3', ["model", "ec50 must be > 0"]),
        ("seed = 20210237", "seed = -1", ["scenario.seed", ">= 0"]),
        ("duration_days = 70", "duration_days = 70\n[trial.extra]\nx = 1", ["unknown key trial.extra"]),
    ],
)
def test_bad_scenario_names_key_and_fix(tmp_path, old, new, words):
    assert old in BASE
    path = write(tmp_path, BASE.replace(old, new, 1))
    with pytest.raises(PKPDInputError) as err:
        load_scenario(path)
    message = str(err.value)
    assert str(path) in message
    for w in words:
        assert w in message, message


def test_missing_arms_missing_keys_and_broken_toml(tmp_path):
    with pytest.raises(PKPDInputError, match=r"arms missing"):
        load_scenario(write(tmp_path, '[scenario]\nname = "x"\n[trial]\nduration_days = 14\n'))
    with pytest.raises(PKPDInputError, match=r"arms\[0\] lacks required key\(s\) \['start_mg'\]"):
        load_scenario(write(tmp_path, '[scenario]\nname = "x"\n[trial]\nduration_days = 14\n[[arms]]\nname = "a"\nn = 3\n'))
    with pytest.raises(PKPDInputError, match="not valid TOML"):
        load_scenario(write(tmp_path, "[scenario\nname = 1"))
    with pytest.raises(PKPDInputError, match="not found"):
        load_scenario(tmp_path / "nope.toml")


# ---------------------------------------------------------------- running
def test_run_scenario_writes_outputs_and_compares_with_published(tmp_path):
    res = run_scenario(PHASE3, out=tmp_path / "out", seed=3, progress=False)
    assert res.out_dir == (tmp_path / "out").resolve()
    files = {p.name for p in res.out_dir.iterdir()}
    assert {"endpoints.csv", "ledger.csv", "doses.csv", "platelets.csv", "nonmem.csv", "platelets.png", "doses.png",
            "response.png", "comparison.txt", "scenario.toml", ".pkpd-output"} <= files
    e = res.endpoints
    assert isinstance(e, pd.DataFrame)
    every = e[e["published_rate"].notna()]
    assert len(every) == 12 and set(every["endpoint"]) == {"responders_primary", "responded_once", "responded_mostly",
                                                           "platelet_increased"}
    pub = every[every["endpoint"] == "responders_primary"].set_index("arm")
    for arm, k, n in (("2.5 mg + titration", 99, 168), ("5 mg + titration", 110, 171), ("placebo", 5, 85)):
        assert pub.loc[arm, "published_rate"] == pytest.approx(k / n)
        assert pub.loc[arm, "published_low"] == pytest.approx(beta.ppf(0.025, k, n - k + 1))
        assert pub.loc[arm, "published_high"] == pytest.approx(beta.ppf(0.975, k + 1, n - k))
        inside = pub.loc[arm, "published_low"] <= pub.loc[arm, "estimate"] <= pub.loc[arm, "published_high"]
        assert pub.loc[arm, "inside_published_interval"] == inside
    saved = pd.read_csv(res.out_dir / "endpoints.csv")
    np.testing.assert_allclose(saved["estimate"], e["estimate"])
    assert tomllib.loads((res.out_dir / "scenario.toml").read_text())["scenario"]["name"] == "itp_phase3"
    assert res.result.seed == 3 and len(res.ledger) == 424 * 11  # 11 visits: days 0..70
    # the same seed gives the same trial
    again = load_scenario(PHASE3).run(seed=3, progress=False)
    pd.testing.assert_frame_equal(again.endpoints, e)


def test_replicates_override(tmp_path):
    res = run_scenario(ROOT / "scenarios" / "healthy_multiple_dose.toml", out=tmp_path / "h", replicates=3, progress=False)
    e = res.endpoints
    assert (e["replicates"] == 3).all() and e["replicate_low"].notna().all()
    assert "responders_primary" not in set(e["endpoint"])  # primary_day = false
    rise = e[e["endpoint"] == "peak_rise_pct"].set_index("arm")["estimate"]
    assert rise["placebo"] == pytest.approx(0, abs=1e-6)
    assert 0 < rise["2.5 mg x10 d"] < rise["5 mg x10 d"] < rise["7.5 mg x10 d"]
    # the text table gives the peak rise and its intervals in percent, and no "-0.0%" for placebo
    rows = [line for line in res.comparison().splitlines() if " peak_rise_pct " in line]  # table rows, not the legend
    assert len(rows) == 4 and all(line.count("%") == 5 for line in rows), rows
    assert "-0.0" not in "".join(rows)


def test_cli_errors_exit_2_with_the_message(tmp_path, capsys):
    bad = write(tmp_path, BASE.replace("start_mg = 5.0", "start_mg = 4.0"))
    assert main(["run", str(bad), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pkpd: error:") and "4.0 mg is not on the dose ladder" in err
    assert main(["check", str(PHASE3)]) == 0
    assert "valid (3 arms, 424 patients per trial)" in capsys.readouterr().out


def test_calibration_problem_file_run_as_a_scenario_points_at_load_problem(capsys):
    assert main(["run", str(ROOT / "scenarios" / "itp_calibration.toml"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "calibration problem file" in err and "load_problem" in err


def test_cli_subprocess_runs_prints_and_does_not_import_fitting_stack(tmp_path):
    """``pkpd run`` in a fresh interpreter: table beside the published numbers,
    output path printed, progress bar on stderr, no pymc/pytensor/arviz loaded."""
    out = tmp_path / "cli"
    code = (
        "import json, runpy, sys\n"
        f"sys.argv = ['pkpd', 'run', {str(PHASE3)!r}, '--out', {str(out)!r}, '--seed', '7', '--replicates', '2']\n"
        "try:\n"
        "    runpy.run_module('pkpd.cli', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(FORBIDDEN)!r}))))\n"
    )
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert json.loads(lines[-1]) == []
    text = "\n".join(lines[:-1])
    assert "58.9% (99/168)" in text and "64.3% (110/171)" in text and "5.9% (5/85)" in text
    assert "over 2 replicates" in text and f"wrote results to {out.resolve()}" in text
    assert "visits" in proc.stderr  # the tqdm bar
    assert (out / "platelets.png").stat().st_size > 10_000 and (out / "doses.png").exists()


def test_import_pkpd_does_not_import_fitting_stack():
    code = f"import sys, pkpd; print(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(FORBIDDEN)!r})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# ================================================================= presentation: summary, comparison text, plots
# (a scenario reports only the endpoints that mean something for it, in percent, N printed)
HEALTHY = ROOT / "scenarios" / "healthy_multiple_dose.toml"


@pytest.fixture(scope="module")
def phase3_two():
    return load_scenario(PHASE3).run(seed=1, replicates=2, progress=False)


@pytest.fixture(scope="module")
def healthy_one():
    return load_scenario(HEALTHY).run(seed=1, progress=False)


def table_rows(text, endpoint):
    """Rows of the comparison table for one endpoint (not the legend lines below it)."""
    return [line for line in text.splitlines() if f" {endpoint} " in line]


def test_comparison_prints_percent_intervals_and_n(phase3_two):
    text = phase3_two.comparison()
    assert "e-0" not in text and "e+0" not in text and "-0.0%" not in text
    header = text.splitlines()[2]
    assert "95% CI, one trial of N" in header and "2.5-97.5% over 2 replicates" in header and " N " in header
    for arm in phase3_two.scenario.trial.arms:
        rows = [r for r in table_rows(text, "responders_primary") if r.strip().startswith(arm.name)]
        assert len(rows) == 1 and f" {arm.n} " in rows[0], rows
    assert table_rows(text, "stopped") == []  # the phase III rule cannot stop treatment
    assert "not reported: stopped" in text
    assert "responders_primary: observed platelets >= 50 at day 56 (primary)" in text  # what the endpoint is


def test_healthy_scenario_has_no_response_or_stopped_endpoints(healthy_one):
    e = healthy_one.endpoints
    for name in ("responded_once", "responded_mostly", "assessments_responding", "stopped"):
        assert name not in set(e["endpoint"]) and name not in set(healthy_one.per_replicate["endpoint"])
        assert table_rows(healthy_one.comparison(), name) == []
    assert set(e["endpoint"]) == {"time_in_range", "time_above", "time_below", "peak_rise_pct"}
    assert "not reported: responded_once, responded_mostly, assessments_responding: 100.0% of patients are already >= 50" in healthy_one.comparison()
    s = healthy_one.summary()
    assert (s["endpoint"] == "peak_rise_pct").all() and s.loc["placebo", "simulated"] == "0.0%"
    # placebo counts stay flat: a peak rise of exactly 0, and a table in plain numbers
    assert e.set_index(["arm", "endpoint"]).loc[("placebo", "peak_rise_pct"), "estimate"] == 0.0
    assert "e-0" not in e.to_string()


def test_scenario_summary_and_repr(phase3_two):
    s = phase3_two.summary()
    assert list(s.index) == ["2.5 mg + titration", "5 mg + titration", "placebo"]
    assert list(s["N"]) == [168, 171, 85] and (s["replicates"] == 2).all() and (s["seed"] == 1).all()
    assert list(s["published"]) == ["58.9% (99/168)", "64.3% (110/171)", "5.9% (5/85)"]
    e = phase3_two.endpoints.set_index(["arm", "endpoint"])
    for arm, (k, n) in {"2.5 mg + titration": (99, 168), "5 mg + titration": (110, 171), "placebo": (5, 85)}.items():
        lo, hi = beta.ppf(0.025, k, n - k + 1), beta.ppf(0.975, k + 1, n - k)
        assert s.loc[arm, "published 95% CI"] == f"[{100 * lo:.1f}%, {100 * hi:.1f}%]"
        est = e.loc[(arm, "responders_primary"), "estimate"]
        assert s.loc[arm, "inside"] == ("yes" if lo <= est <= hi else "NO")
        assert s.loc[arm, "simulated"] == f"{100 * est:.1f}%"
    text = repr(phase3_two)
    assert len(text.splitlines()) <= 4 and len(text) < 600
    assert "itp_phase3" in text and "seed 1" in text and "(published 58.9%" in text


def test_plot_response_shows_replicates_beside_the_published_interval(phase3_two, healthy_one):
    fig = phase3_two.plot_response()
    (ax,) = fig.axes
    labels = ax.get_legend_handles_labels()[1]
    assert "published, Clopper-Pearson 95% CI" in labels and "2.5-97.5% over 2 replicates" in labels
    assert "one simulated trial each" in labels and "simulated, 95% CI of one trial of N" in labels
    texts = {t.get_text() for t in ax.texts}
    assert {"58.9% (99/168)", "64.3% (110/171)", "5.9% (5/85)"} <= texts
    assert ax.get_ylim() == (0, 100) and "patients" in ax.get_ylabel()
    # the replicate dots are the per-replicate values
    dots = np.sort(np.concatenate([ln.get_ydata() for ln in ax.lines if ln.get_marker() == "."]))
    reps = phase3_two.per_replicate.query("endpoint == 'responders_primary'")["value"].to_numpy()
    np.testing.assert_allclose(dots, np.sort(100 * reps))
    assert "peak" in healthy_one.plot_response().axes[0].get_ylabel()  # no response endpoint: the platelet rise


# ================================================================= sizes and horizons: check refuses what run would trip over
SMALL = """\
[scenario]
name = "small"
seed = 1
replicates = 1
[trial]
duration_days = 60
visit_every_days = 7
[[arms]]
name = "fixed 5 mg"
n = 3
start_mg = 5.0
"""


@pytest.mark.parametrize(
    "old, new, words",
    [
        ("duration_days = 60", "duration_days = 1000000", ["trial.duration_days must be at most 7305 days", "1000000"]),
        ("replicates = 1", "replicates = 10000000", ["scenario.replicates = 10,000,000", "patient-days",
                                                     "Use at most 218,579 replicates"]),  # 40,000,000 // (3 x 61)
        ("n = 3", "n = 100000000", ["trial 'small' is too large", "'fixed 5 mg' n = 100,000,000", "fewer patients"]),
    ],
)
def test_check_refuses_sizes_a_run_could_not_hold(tmp_path, capsys, old, new, words):
    path = write(tmp_path, SMALL.replace(old, new, 1))
    with pytest.raises(PKPDInputError) as err:
        load_scenario(path)
    for w in words:
        assert w in str(err.value), str(err.value)
    assert main(["check", str(path)]) == 2
    assert "patient-days" in capsys.readouterr().err or "7305" in str(err.value)


def test_scenario_follow_up_past_the_last_visit_is_reported(tmp_path):
    """60 days with weekly visits: the platelet table runs daily to day 60, every value simulated."""
    res = load_scenario(write(tmp_path, SMALL.replace("visit_every_days = 7", "visit_every_days = 7\n[endpoints]\nprimary_day = 56"))).run(progress=False)
    table = res.platelets
    assert table["day"].max() == 60 and np.isfinite(table[["median", "p05", "p95"]]).all().all()
    assert (table["median"] > 1).all() and (table["median"] < 2000).all()
    assert sorted(res.ledger["day"].unique()) == list(range(0, 57, 7))


# ----------------------------------------------------------------- other drugs and models
OTHER_DRUG = """
[scenario]
name = "{name}"
seed = 3
[model]
drug = "{drug}"
[trial]
duration_days = 42
visit_every_days = 7
[endpoints]
response = {response}
primary_day = 42
target = [{low}, {high}]
above = {above}
below = {below}
[rules.r]
ladder_mg = {ladder}
low = {low}
high = {high}
{extra}
[[arms]]
name = "titrated"
n = 60
start_mg = {start}
rule = "r"
[[arms]]
name = "placebo"
n = 30
start_mg = 0
"""


def test_a_scenario_names_its_drug_two_compartment_eltrombopag(tmp_path):
    """drug = "eltrombopag": its two-compartment PK model and ITP population, titrated up on low counts."""
    path = write(tmp_path, OTHER_DRUG.format(name="eltro", drug="eltrombopag", response=50, low=50, high=250,
                                             above=400, below=30, ladder=[0, 25, 50, 75], extra="", start=50))
    scenario = load_scenario(path)
    assert scenario.trial.model.pk is pkpd.two_compartment.TwoCompartmentOral
    assert scenario.trial.model.population == "itp"  # the default population where the drug has one
    res = run_scenario(path)
    e = res.result.endpoints.set_index(["arm", "endpoint"])["estimate"]
    assert e["titrated", "responded_once"] > e["placebo", "responded_once"] + 0.3
    assert "observed platelets >= 50" in res.comparison()


def test_a_scenario_names_its_drug_friberg_docetaxel_reduces_on_low_counts(tmp_path):
    """drug = "docetaxel": Friberg neutrophils; step_below_low = "down" lowers the dose at low counts."""
    extra = 'step_below_low = "down"\ninterrupt_above = 1000\nresume_below = 999\ninterrupt_at_lowest = false'
    path = write(tmp_path, OTHER_DRUG.format(name="doce", drug="docetaxel", response=1.5, low=1.5, high=8,
                                             above=10, below=0.5, ladder=[0, 10, 20, 40], extra=extra, start=40))
    res = run_scenario(path)
    assert res.result.trial.model.pd is pkpd.friberg.FribergMyelosuppression
    ledger = res.result.ledger
    down = ledger[ledger["action"] == "down"]
    assert len(down) > 0 and (down["observed"] < 1.5).all() and (down["dose_mg"] < down["dose_before_mg"]).all()
    assert "true neutrophils in 1.5-8" in res.comparison()
