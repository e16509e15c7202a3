"""read_nonmem: the shipped theophylline data, NONMEM conventions, round trips and
one clear error per kind of bad row."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pkpd
from pkpd.checks import PKPDInputError
from pkpd.nonmem import Dataset, Subject, load_theophylline, read_nonmem
from pkpd.regimen import Dose, Regimen

THEOPH_CSV = pd.read_csv(Path(pkpd.__file__).parent / "data" / "theoph_nm.csv")


# ---------------------------------------------------------------- theophylline
def test_theophylline_reads_cleanly():
    data = load_theophylline()
    assert len(data) == 12 and data.ids == tuple(range(1, 13))
    assert all(isinstance(s, Subject) for s in data)
    assert Dataset.theophylline() == data
    assert data.units == {"time": "h", "amt": "mg", "dv": "mg/L"}
    for s in data:
        assert len(s.observations) == 11
        assert len(s.regimen) == 1 and s.regimen.doses[0].time == 0.0
        assert 250 < s.regimen.total_mg < 330  # about 4.5 mg/kg x 70 kg, in mg
        assert set(s.covariates) == {"WT"}
        assert list(s.observations.columns) == ["time", "dv", "cmt", "WT"]
        assert (s.observations["cmt"] == 2).all()
    # values straight from the CSV
    first = THEOPH_CSV[THEOPH_CSV.ID == 1]
    s1 = data.subject(1)
    assert s1.regimen == Regimen.single(319.992)
    assert s1.covariates == {"WT": 79.6}
    np.testing.assert_array_equal(s1.observations["dv"], first.DV.dropna())
    np.testing.assert_array_equal(s1.observations["time"], first.TIME[first.EVID == 0])


def test_theophylline_long_observations_and_exact_round_trip():
    data = load_theophylline()
    obs = data.observations
    assert list(obs.columns) == ["ID", "time", "dv", "cmt", "WT"] and len(obs) == 132
    np.testing.assert_array_equal(obs["dv"], THEOPH_CSV.DV[THEOPH_CSV.EVID == 0])
    out = data.to_dataframe()
    assert list(out.columns) == ["ID", "TIME", "AMT", "EVID", "MDV", "CMT", "II", "ADDL", "SS", "DV", "WT"]
    pd.testing.assert_frame_equal(out[THEOPH_CSV.columns], THEOPH_CSV, check_dtype=False)
    assert read_nonmem(out, dv_unit="mg/L") == data


# ---------------------------------------------------------------- NONMEM conventions
def base_rows():
    """Two subjects, every record type, written as a NONMEM analyst would."""
    cols = ["ID", "TIME", "AMT", "EVID", "MDV", "CMT", "II", "ADDL", "SS", "DV", "WT", "CRCL"]
    rows = [
        [1, 0.0, 5.0, 1, 1, 1, 24, 2, 0, np.nan, 70, 90],   # 3 daily doses via ADDL
        [1, 2.0, 0.0, 0, 0, 2, 0, 0, 0, 12.5, 70, 90],
        [1, 24.0, 0.0, 2, 1, 2, 0, 0, 0, np.nan, 70, 85],   # other event (e.g. covariate change)
        [1, 30.0, 0.0, 0, 0, 3, 0, 0, 0, 250.0, 70, 85],    # platelets
        [1, 72.0, 0.0, 3, 1, 1, 0, 0, 0, np.nan, 70, 85],   # reset, no dose
        [1, 80.0, 2.5, 4, 1, 1, 0, 0, 0, np.nan, 70, 85],   # reset and dose
        [1, 90.0, 0.0, 0, 1, 2, 0, 0, 0, np.nan, 70, 85],   # observation marked missing
        [2, 0.0, 7.5, 1, 1, 1, 12, 0, 1, np.nan, 55, 100],  # steady-state dose
        [2, 1.0, 0.0, 0, 0, 2, 0, 0, 0, 40.0, 55, 100],
    ]
    return pd.DataFrame(rows, columns=cols)


def test_records_go_to_regimen_observations_and_other_events():
    data = read_nonmem(base_rows())
    s1, s2 = data
    assert s1.regimen.doses == (
        Dose(0.0, 5.0), Dose(24.0, 5.0), Dose(48.0, 5.0),
        Dose(72.0, 0.0, reset=True),           # EVID 3: zero-amount dose after a reset
        Dose(80.0, 2.5, reset=True),           # EVID 4
    )
    assert s2.regimen.doses == (Dose(0.0, 7.5, 1, 12.0),)
    assert s1.observations[["time", "dv", "cmt"]].values.tolist() == [[2.0, 12.5, 2], [30.0, 250.0, 3]]
    assert s1.other_events[["time", "evid", "mdv"]].values.tolist() == [[24.0, 2, 1], [90.0, 0, 1]]
    # WT constant within each subject -> covariates; CRCL varies -> only per row
    assert s1.covariates == {"WT": 70} and s2.covariates == {"WT": 55}
    assert s1.observations["CRCL"].tolist() == [90, 85]
    assert list(data.observations.columns) == ["ID", "time", "dv", "cmt", "WT", "CRCL"]


def test_round_trip_of_every_record_type():
    data = read_nonmem(base_rows())
    out = data.to_dataframe()
    expected = base_rows()
    # time-varying CRCL on dose rows: NOCB from the next non-dose row
    expected.loc[[4, 5], "CRCL"] = 85
    pd.testing.assert_frame_equal(out, expected, check_dtype=False)
    assert read_nonmem(out) == data


def test_pk_of_a_read_subject_follows_the_records():
    """ADDL doses are given, EVID 3 empties the body, EVID 4 empties it and doses."""
    s1 = read_nonmem(base_rows()).subject(1)
    model = pkpd.OneCompartmentOral()
    times = np.arange(0, 120.0, 0.5)
    c = model.concentration(s1.regimen, times)
    before, gap, after = times < 72, (times >= 72) & (times < 80), times >= 80
    np.testing.assert_allclose(c[before], model.concentration(Regimen.daily(5, 3), times[before]), rtol=1e-14)
    assert np.all(c[gap] == 0)
    np.testing.assert_allclose(c[after], model.concentration(Regimen.single(2.5, at_h=80), times[after]), rtol=1e-14)


def test_defaults_when_optional_columns_are_absent():
    df = pd.DataFrame({"ID": [1, 1, 1, 1], "TIME": [0, 1, 2, 24], "AMT": [5, 0, 0, 5], "DV": [np.nan, 3.0, 4.0, np.nan]})
    s = read_nonmem(df).subject(1)
    assert s.regimen == Regimen.from_doses([0, 24], [5, 5])  # EVID 1 where AMT > 0, CMT 1
    assert s.observations[["time", "dv", "cmt"]].values.tolist() == [[1, 3, 2], [2, 4, 2]]  # EVID 0, MDV 0, CMT 2
    out = read_nonmem(df).to_dataframe()  # the two 5 mg doses are written as one record with ADDL=1
    assert out["EVID"].tolist() == [1, 0, 0] and out["MDV"].tolist() == [1, 0, 0]
    assert out["CMT"].tolist() == [1, 2, 2] and out["ADDL"].tolist() == [1, 0, 0] and out["II"].tolist() == [24, 0, 0]
    # MDV=1 without EVID and no dose: an "other" event (EVID 2), as NONMEM infers
    df2 = df.assign(MDV=[1, 0, 1, 1])
    s2 = read_nonmem(df2).subject(1)
    assert s2.other_events[["time", "evid"]].values.tolist() == [[2.0, 2]]


def test_csv_with_dots_lowercase_names_and_blq(tmp_path):
    path = tmp_path / "study.csv"
    path.write_text(
        "id,time,amt,dv,evid,mdv,blq,lloq,SEX\n"
        "1,0,5,.,1,1,.,.,F\n"
        "1,1,.,2.5,0,0,0,0.1,F\n"
        "1,48,.,.,0,0,1,0.1,F\n"
    )
    data = read_nonmem(path)
    s = data.subject(1)
    assert s.regimen == Regimen.single(5)
    assert list(s.observations.columns) == ["time", "dv", "cmt", "blq", "lloq", "SEX"]  # text: a category
    assert isinstance(s.observations["SEX"].dtype, pd.CategoricalDtype)
    assert s.observations["blq"].tolist() == [0, 1]
    assert np.isnan(s.observations["dv"].iloc[1])
    assert s.covariates == {"SEX": "F"}
    assert read_nonmem(data.to_dataframe()) == data


def test_cmt_names_allow_other_compartments():
    df = pd.DataFrame({"ID": [1, 1], "TIME": [0, 1], "AMT": [5, 0], "CMT": [1, 5], "DV": [np.nan, 1.0]})
    with pytest.raises(PKPDInputError, match=r"CMT: data row 2 \(ID 1\) has CMT=5; unknown compartment"):
        read_nonmem(df)
    s = read_nonmem(df, cmt_names={1: "depot", 5: "metabolite"}).subject(1)
    assert s.observations["cmt"].tolist() == [5]


def test_ignored_reserved_and_rate_zero_columns_are_fine():
    df = base_rows().assign(DATE=1, RATE=0)
    data = read_nonmem(df)
    assert "DATE" not in data.subject(1).observations and "RATE" not in data.subject(1).observations
    assert data == read_nonmem(base_rows())


def test_dataset_container_behaviour():
    data = read_nonmem(base_rows())
    assert [s.id for s in data] == [1, 2] and len(data) == 2
    assert "2 subjects" in repr(data) and "Subject(id=1" in repr(data.subject(1))
    with pytest.raises(PKPDInputError, match="no subject with ID 7"):
        data.subject(7)
    with pytest.raises(PKPDInputError, match="ID 1 appears 2 times"):
        Dataset((data.subject(1), data.subject(1)))
    assert data != read_nonmem(base_rows().assign(DV=base_rows().DV * 2))


# ---------------------------------------------------------------- bad rows
def mutate(row, **changes):
    def make():
        df = base_rows()
        for col, value in changes.items():
            if col not in df:
                df[col] = np.nan
            df[col] = df[col].astype(object)
            df.loc[row, col] = value
        return df
    return make


def drop(col):
    return lambda: base_rows().drop(columns=col)


def swap_rows(i, j):
    def make():
        df = base_rows()
        df.iloc[[i, j]] = df.iloc[[j, i]].values
        return df
    return make


BAD = [
    (drop("ID"), r"column ID is missing; the table has columns \['TIME'"),
    (drop("TIME"), r"column TIME is missing.*Add a TIME column"),
    (lambda: base_rows().rename(columns={"TIME": "TIEM"}), r"column TIME is missing.*Did you mean 'TIEM'"),
    (mutate(3, ID=np.nan), r"ID: data row 4 \(ID missing\) has ID=nan; every row needs a subject ID"),
    (mutate(1, TIME=np.nan), r"TIME: data row 2 \(ID 1\) has TIME=nan; every row needs a time"),
    (mutate(1, TIME=-1.0), r"TIME: data row 2 \(ID 1\) has TIME=-1; TIME must be >= 0"),
    (swap_rows(1, 2), r"TIME: data row 3 \(ID 1\) has TIME=2.0 h, earlier than the row before \(24.0 h\)"),
    (mutate(0, AMT=-5.0), r"AMT: data row 1 \(ID 1\) has AMT=-5; a dose must be >= 0 mg"),
    (mutate(0, AMT=np.nan), r"AMT: data row 1 \(ID 1\) has AMT=nan; a dose row \(EVID 1 or 4\) needs an amount"),
    (mutate(1, AMT=3.0), r"AMT: data row 2 \(ID 1\) has AMT=3; only dose rows"),
    (mutate(1, EVID=5), r"EVID: data row 2 \(ID 1\) has EVID=5; EVID must be 0, 1, 2, 3 or 4"),
    (mutate(1, EVID=-1), r"EVID: data row 2 \(ID 1\) has EVID=-1"),
    (mutate(1, MDV=2), r"MDV: data row 2 \(ID 1\) has MDV=2; MDV must be 0 or 1"),
    (mutate(0, MDV=0), r"MDV: data row 1 \(ID 1\) has MDV=0; rows that are not observations"),
    (mutate(7, II=0.0), r"II: data row 8 \(ID 2\) has II=0; a steady-state dose \(SS 1 or 2\) needs .*II > 0"),
    (mutate(7, II=np.nan), r"II: data row 8 \(ID 2\) has II=0; a steady-state dose"),
    (mutate(7, SS=3), r"SS: data row 8 \(ID 2\) has SS=3; SS must be 0, 1 or 2"),
    (mutate(0, II=0.0), r"II: data row 1 \(ID 1\) has II=0; ADDL additional doses need the interval II > 0"),
    (mutate(0, ADDL=1.5), r"ADDL: data row 1 \(ID 1\) has ADDL=1.5; ADDL must be a whole number"),
    (mutate(1, DV="BLQ"), r"DV: data row 2 \(ID 1\) has DV='BLQ'; it is not a number"),
    (mutate(1, DV=np.nan), r"DV: data row 2 \(ID 1\) has DV=nan; an observation row \(EVID 0, MDV 0\) needs a DV"),
    (mutate(1, CMT=4), r"CMT: data row 2 \(ID 1\) has CMT=4; unknown compartment \(known: \[1, 2, 3\]\)"),
    (mutate(0, CMT=2), r"CMT: data row 1 \(ID 1\) has CMT=2; doses must go to the depot, CMT 1"),
    (mutate(0, RATE=10.0), r"RATE: data row 1 \(ID 1\) has RATE=10; infusions are not supported"),
    (mutate(1, TIME="2h"), r"TIME: data row 2 \(ID 1\) has TIME='2h'; it is not a number"),
    (mutate(1, BLQ=2), r"BLQ: data row 2 \(ID 1\) has BLQ=2; BLQ must be 0 or 1"),
    (lambda: pd.concat([base_rows(), base_rows().iloc[[0]]], ignore_index=True),
     r"ID: data row 10 \(ID 1\) has ID=1; this ID already appeared in an earlier block"),
    (lambda: base_rows().assign(time=1.0), r"columns 'TIME' and 'time' both mean TIME"),
]


@pytest.mark.parametrize("make, match", BAD, ids=[m[:40] for _, m in BAD])
def test_each_bad_row_raises_naming_row_id_column_and_value(make, match):
    with pytest.raises(PKPDInputError, match=match):
        read_nonmem(make())


def test_errors_from_files_give_the_line_number(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("ID,TIME,AMT,DV\n1,0,5,.\n1,2,0,abc\n")
    with pytest.raises(PKPDInputError, match=r"DV: data row 2 \(ID 1, line 3 of .*bad.csv\) has DV='abc'"):
        read_nonmem(path)
    with pytest.raises(PKPDInputError, match="file not found"):
        read_nonmem(tmp_path / "nope.csv")
    with pytest.raises(PKPDInputError, match="must include the depot"):
        read_nonmem(base_rows(), cmt_names={2: "central"})


# ---------------------------------------------------------------- names one edit from a reserved name
@pytest.mark.parametrize("reserved, typo", [
    ("ADDL", "ADL"), ("CMT", "CMTT"), ("BLQ", "BQL"), ("EVID", "EVD"), ("AMT", "AMMT"), ("II", "I"),
    ("SS", "SSS"), ("MDV", "MDVV"),
])
def test_near_miss_of_a_reserved_name_is_refused(reserved, typo):
    df = base_rows().assign(BLQ=0).rename(columns={reserved: typo})
    with pytest.raises(PKPDInputError, match=rf"column '{typo}' looks like {reserved}.*did you mean {reserved}\?"
                                             rf".*covariates="):
        read_nonmem(df)


def test_near_miss_names_of_id_and_time_say_what_is_missing():
    with pytest.raises(PKPDInputError, match=r"column TIME is missing.*Did you mean 'TIM'"):
        read_nonmem(base_rows().rename(columns={"TIME": "TIM"}))
    with pytest.raises(PKPDInputError, match=r"column ID is missing.*Did you mean 'IDD'"):
        read_nonmem(base_rows().rename(columns={"ID": "IDD"}))


def test_a_misread_addl_would_have_lost_doses():
    """ADL as a covariate would leave one dose of the three that ADDL=2 gives."""
    df = base_rows().rename(columns={"ADDL": "ADL"})
    with pytest.raises(PKPDInputError, match="did you mean ADDL"):
        read_nonmem(df)
    assert len(read_nonmem(base_rows()).subject(1).regimen) == 5


def test_real_covariates_near_reserved_names_still_work():
    df = base_rows().assign(AGE=40, SEX="F", RACE=2, ALT=30.0, NTIME=0.0, SID="S1")
    s = read_nonmem(df).subject(1)
    assert {k: s.covariates[k] for k in ("WT", "AGE", "SEX", "RACE", "ALT", "SID")} == {
        "WT": 70, "AGE": 40, "SEX": "F", "RACE": 2, "ALT": 30.0, "SID": "S1"}


def test_declared_covariates_keep_a_column_named_like_a_reserved_one():
    """ADL (activities of daily living) is a genuine covariate when declared."""
    df = base_rows().assign(ADL=5)
    data = read_nonmem(df, covariates=["WT", "CRCL", "ADL"])
    assert data.subject(1).covariates == {"WT": 70, "ADL": 5}
    assert len(data.subject(1).regimen) == 5  # ADDL still read
    with pytest.raises(PKPDInputError, match=r"column 'CRCL' is neither a reserved NONMEM name nor in covariates"):
        read_nonmem(df, covariates=["WT", "ADL"])
    with pytest.raises(PKPDInputError, match=r"covariates: column 'HT' is not in the table"):
        read_nonmem(df, covariates=["WT", "CRCL", "ADL", "HT"])
    with pytest.raises(PKPDInputError, match=r"covariates: 'ADDL' is a reserved NONMEM name"):
        read_nonmem(df, covariates=["WT", "CRCL", "ADL", "ADDL"])


# ---------------------------------------------------------------- comment rows (C column, '#')
def test_comment_rows_are_left_out_counted_and_kept(tmp_path):
    path = tmp_path / "comments.csv"
    path.write_text(
        "C,ID,TIME,AMT,DV\n"
        ".,1,0,5,.\n"
        "C,1,0.5,.,999\n"      # commented-out sample
        ",1,1,.,2.5\n"
        "#,1,1.5,.,888\n"
        ".,1,2,.,3.0\n"
    )
    data = read_nonmem(path)
    assert data.subject(1).observations["dv"].tolist() == [2.5, 3.0]
    assert list(data.comment_rows.index) == [2, 4]  # data rows, 1-based
    assert data.comment_rows["DV"].tolist() == ["999", "888"]
    assert "2 comment rows left out" in repr(data)
    assert "C" not in data.subject(1).observations
    # an error after a comment row still names the file's own row and line
    path.write_text("C,ID,TIME,AMT,DV\n.,1,0,5,.\nC,1,0.5,.,999\n.,1,1,.,abc\n")
    with pytest.raises(PKPDInputError, match=r"DV: data row 3 \(ID 1, line 4 of"):
        read_nonmem(path)


def test_first_cell_starting_with_hash_is_a_comment(tmp_path):
    path = tmp_path / "hash.csv"
    path.write_text("ID,TIME,AMT,DV\n1,0,5,.\n#1,0.5,.,999\n1,1,.,2.5\n")
    data = read_nonmem(path)
    assert data.ids == (1,) and data.subject(1).observations["dv"].tolist() == [2.5]
    assert len(data.comment_rows) == 1


def test_a_c_cell_that_is_neither_empty_nor_a_mark_is_refused():
    with pytest.raises(PKPDInputError, match=r"C: data row 2 \(ID 1\) has C='1'; the C column marks comment"):
        read_nonmem(base_rows().assign(C=[None, "1"] + [None] * 7))


# ---------------------------------------------------------------- observation types and their units
def dvid_rows():
    """Concentrations (DVID 1) and platelets (DVID 2), all observed with CMT 2."""
    return pd.DataFrame({
        "ID": [1, 1, 1, 1], "TIME": [0.0, 0.0, 2.0, 24.0], "AMT": [5.0, 0, 0, 0], "EVID": [1, 0, 0, 0],
        "MDV": [1, 0, 0, 0], "CMT": [1, 2, 2, 2], "DVID": [np.nan, 2, 1, 2], "DV": [np.nan, 150.0, 12.5, 180.0],
    })


def test_dvid_selects_the_observation_type_each_with_its_unit():
    data = read_nonmem(dvid_rows(), dv_unit={1: "ng/mL", 2: "10^9/L"})
    assert data.dv_type == "DVID" and data.dv_units == {1: "ng/mL", 2: "10^9/L"}
    assert data.units["dv"] == "ng/mL"
    obs = data.subject(1).observations
    assert list(obs.columns) == ["time", "dv", "cmt", "dvid"]
    assert obs["dvid"].tolist() == [2, 1, 2] and obs["cmt"].tolist() == [2, 2, 2]  # CMT as in the file
    assert "DVID 1: 1 in ng/mL, DVID 2: 2 in 10^9/L" in repr(data)
    named = read_nonmem(dvid_rows(), dv_unit={"conc": "ng/mL", "platelets": "10^9/L"},
                        dvid_names={1: "conc", 2: "platelets"})
    assert named.dv_units == data.dv_units
    out = data.to_dataframe()
    assert out["DVID"].tolist()[1:] == [2.0, 1.0, 2.0]
    assert read_nonmem(out, dv_unit={1: "ng/mL", 2: "10^9/L"}) == data


def test_one_unit_cannot_cover_several_dvid_types():
    with pytest.raises(PKPDInputError, match=r"observation types DVID \[1, 2\], and dv_unit='ng/mL' cannot"):
        read_nonmem(dvid_rows())
    with pytest.raises(PKPDInputError, match=r"DVID: data row 2 \(ID 1\) has DVID=2; dv_unit gives no unit"):
        read_nonmem(dvid_rows(), dv_unit={1: "ng/mL"})
    with pytest.raises(PKPDInputError, match=r"DVID: data row 3 \(ID 1\) has DVID=nan; an observation row"):
        read_nonmem(dvid_rows().assign(DVID=[np.nan, 2, np.nan, 2]), dv_unit={1: "ng/mL", 2: "10^9/L"})


def test_cmt_types_record_a_unit_each():
    data = read_nonmem(base_rows(), dv_unit="ng/mL")
    assert data.dv_type == "CMT" and data.dv_units == {2: "ng/mL", 3: "10^9/L"}
    assert "CMT 2: 2 in ng/mL, CMT 3: 1 in 10^9/L" in repr(data)
    assert read_nonmem(base_rows(), dv_unit={2: "mg/L", "platelets": "10^9/L"}).dv_units == {2: "mg/L", 3: "10^9/L"}
    assert load_theophylline().dv_units == {2: "mg/L"}


@pytest.mark.parametrize("unit, hint", [("ng/ml ", "Did you mean 'ng/mL'"), ("mg/dl", "use one of"),
                                        ("foo", "'ng/mL', 'ug/L'"), (None, "10\\^9/L")])
def test_unknown_dv_unit_is_an_error_naming_it_and_the_accepted_units(unit, hint):
    with pytest.raises(PKPDInputError, match=rf"dv_unit={unit!r} is not a known DV unit.*{hint}"):
        read_nonmem(base_rows(), dv_unit=unit)
    with pytest.raises(PKPDInputError, match=r"dv_unit\[3\]='foo' is not a known DV unit"):
        read_nonmem(base_rows(), dv_unit={2: "ng/mL", 3: "foo"})


# ---------------------------------------------------------------- text covariates, duplicate columns
def test_text_covariate_is_a_category_and_a_mix_with_numbers_is_refused(tmp_path):
    df = base_rows().assign(SEX=["F"] * 7 + ["M"] * 2)
    data = read_nonmem(df)
    assert data.subject(1).covariates["SEX"] == "F" and data.subject(2).covariates["SEX"] == "M"
    assert list(data.observations["SEX"].cat.categories) == ["F", "M"]
    assert read_nonmem(data.to_dataframe()) == data
    path = tmp_path / "mixed.csv"
    path.write_text("ID,TIME,AMT,DV,WT\n1,0,5,.,70\n1,1,.,2.5,70kg\n")
    with pytest.raises(PKPDInputError, match=r"WT: data row 2 \(ID 1, line 3 of .*\) has WT='70kg'; it is text"):
        read_nonmem(path)


def test_duplicate_column_in_a_file_is_refused(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("ID,TIME,AMT,DV,WT,WT\n1,0,5,.,70,80\n1,1,.,2.5,70,80\n")
    with pytest.raises(PKPDInputError, match="column 'WT' appears twice"):
        read_nonmem(path)


def test_addl_and_amt_beyond_the_plausibility_limits_are_refused():
    with pytest.raises(PKPDInputError, match=r"ADDL: data row 1 \(ID 1\) has ADDL=10000000; .*20 years"):
        read_nonmem(base_rows().assign(ADDL=[10**7] + [0] * 8))
    with pytest.raises(PKPDInputError, match=r"AMT: data row 1 \(ID 1\) has AMT=1e\+300; a dose must be at most"):
        read_nonmem(base_rows().assign(AMT=[1e300] + list(base_rows().AMT[1:])))


def test_a_dataset_built_by_hand_gets_a_unit_per_type_and_checks_it():
    data = read_nonmem(base_rows())
    by_hand = Dataset(data.subjects, {"dv": "ng/mL"})
    assert by_hand.dv_units == {2: "ng/mL", 3: "10^9/L"} and by_hand == data
    with pytest.raises(PKPDInputError, match=r"units\['dv'\]='ng/ml' is not a known DV unit.*'ng/mL'"):
        Dataset(data.subjects, {"dv": "ng/ml"})
    with pytest.raises(PKPDInputError, match=r"dv_units\[3\]='x' is not a known DV unit"):
        Dataset(data.subjects, {"dv": "ng/mL"}, {2: "ng/mL", 3: "x"})
