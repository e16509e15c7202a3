"""NONMEM data: each file below is refused with the column and the value named."""

from __future__ import annotations

from pathlib import Path

from bad_inputs import Case

from pkpd import PKPDInputError, read_nonmem

#: A small valid study: one subject, 3 daily doses (ADDL 2), a concentration and a platelet count.
HEADER = "ID,TIME,AMT,EVID,MDV,CMT,II,ADDL,SS,DV,WT"
ROWS = [
    "1,0,5,1,1,1,24,2,0,.,70",
    "1,2,0,0,0,2,0,0,0,12.5,70",
    "1,30,0,0,0,3,0,0,0,250,70",
]


def _csv(tmp_path: Path, header: str = HEADER, rows=ROWS, name: str = "study.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def _read(header: str = HEADER, rows=ROWS, **kwargs):
    """``call(tmp_path)``: write the file, then read it."""
    return lambda tmp_path: read_nonmem(_csv(tmp_path, header, rows), **kwargs)


def _rename(old: str, new: str, **kwargs):
    return _read(HEADER.replace(old, new), ROWS, **kwargs)


def _cell(row: int, column: str, value: str, **kwargs):
    """The study with one cell changed (row 0-based, column by name)."""
    k = HEADER.split(",").index(column)
    rows = [r.split(",") for r in ROWS]
    rows[row][k] = value
    return _read(HEADER, [",".join(r) for r in rows], **kwargs)


DVID_HEADER = "ID,TIME,AMT,EVID,MDV,CMT,DVID,DV"
DVID_ROWS = ["1,0,5,1,1,1,.,.", "1,2,0,0,0,2,1,12.5", "1,30,0,0,0,2,2,250"]
TWO_UNITS = {1: "ng/mL", 2: "10^9/L"}


def _dvid(value: str, **kwargs):
    rows = list(DVID_ROWS)
    rows[2] = f"1,30,0,0,0,2,{value},250"
    return _read(DVID_HEADER, rows, **kwargs)


E = PKPDInputError
CASES = [
    # ---- names one edit away from a reserved name: misread, they would change the data
    Case("nonmem-near-miss-ADL", _rename("ADDL", "ADL"), E, ("'ADL'", "did you mean ADDL")),
    Case("nonmem-near-miss-CMTT", _rename("CMT", "CMTT"), E, ("'CMTT'", "did you mean CMT")),
    Case("nonmem-near-miss-BQL", _read(HEADER + ",BQL", [r + ",0" for r in ROWS]), E, ("'BQL'", "did you mean BLQ")),
    Case("nonmem-near-miss-EVD", _rename("EVID", "EVD"), E, ("'EVD'", "did you mean EVID")),
    Case("nonmem-near-miss-AMMT", _rename("AMT", "AMMT"), E, ("'AMMT'", "did you mean AMT")),
    Case("nonmem-near-miss-DVI", _read(DVID_HEADER.replace("DVID", "DVI"), DVID_ROWS), E,
         ("'DVI'", "did you mean DVID")),
    Case("nonmem-near-miss-TIM", _rename("TIME", "TIM"), E, ("column TIME is missing", "'TIM'")),
    Case("nonmem-near-miss-IDD", _rename("ID,", "IDD,"), E, ("column ID is missing", "'IDD'")),
    Case("nonmem-undeclared-covariate", _read(covariates=["HT"]), E, ("covariates", "'HT'")),
    # ---- units
    Case("nonmem-dv-unit-trailing-space", _read(dv_unit="ng/ml "), E, ("dv_unit='ng/ml '", "'ng/mL'")),
    Case("nonmem-dv-unit-mg-dl", _read(dv_unit="mg/dl"), E, ("dv_unit='mg/dl'", "10^9/L")),
    Case("nonmem-dv-unit-foo", _read(dv_unit="foo"), E, ("dv_unit='foo'", "ng/mL")),
    Case("nonmem-dv-unit-per-type-foo", _read(dv_unit={2: "ng/mL", 3: "foo"}), E, ("dv_unit[3]='foo'",)),
    Case("nonmem-dv-unit-missing-type", _read(dv_unit={2: "ng/mL"}), E, ("CMT=3", "dv_unit")),
    # ---- observation types (DVID)
    Case("nonmem-dvid-one-unit-two-types", _read(DVID_HEADER, DVID_ROWS), E, ("DVID [1, 2]", "dv_unit='ng/mL'")),
    Case("nonmem-dvid-fraction", _dvid("1.5", dv_unit=TWO_UNITS), E, ("DVID", "DVID=1.5")),
    Case("nonmem-dvid-text", _dvid("PD", dv_unit=TWO_UNITS), E, ("DVID", "DVID='PD'")),
    Case("nonmem-dvid-missing", _dvid(".", dv_unit=TWO_UNITS), E, ("DVID", "DVID=nan")),
    Case("nonmem-dvid-unknown", _dvid("3", dv_unit=TWO_UNITS), E, ("DVID", "DVID=3")),
    Case("nonmem-dvid-not-in-names", _dvid("3", dv_unit={1: "ng/mL", 3: "10^9/L"}, dvid_names={1: "pk", 2: "pd"}),
         E, ("DVID", "DVID=3", "dvid_names")),
    Case("nonmem-dvid-names-without-column", _read(dvid_names={1: "pk"}), E, ("dvid_names", "DVID column")),
    # ---- comment marker
    Case("nonmem-c-column-digit", _read("C," + HEADER, [".," + ROWS[0], "1," + ROWS[1], ".," + ROWS[2]]), E,
         ("C", "C='1'")),
    Case("nonmem-only-comment-rows", _read("C," + HEADER, ["C," + r for r in ROWS]), E, ("no data rows", "comment")),
    # ---- values
    Case("nonmem-text-in-time", _cell(1, "TIME", "2h"), E, ("TIME", "TIME='2h'")),
    Case("nonmem-text-in-amt", _cell(0, "AMT", "5mg"), E, ("AMT", "AMT='5mg'")),
    Case("nonmem-text-in-covariate", _cell(1, "WT", "70kg"), E, ("WT", "WT='70kg'")),
    Case("nonmem-negative-amt", _cell(0, "AMT", "-5"), E, ("AMT", "AMT=-5")),
    Case("nonmem-huge-amt", _cell(0, "AMT", "1e308"), E, ("AMT", "AMT=1e+308")),
    Case("nonmem-evid-unknown", _cell(1, "EVID", "5"), E, ("EVID", "EVID=5")),
    Case("nonmem-mdv-2", _cell(1, "MDV", "2"), E, ("MDV", "MDV=2")),
    Case("nonmem-addl-without-ii", _cell(0, "II", "0"), E, ("II", "II=0", "ADDL")),
    Case("nonmem-addl-fraction", _cell(0, "ADDL", "1.5"), E, ("ADDL", "ADDL=1.5")),
    Case("nonmem-addl-20-years", _cell(0, "ADDL", "10000000"), E, ("ADDL", "ADDL=10000000")),
    Case("nonmem-ss-without-ii", _read(HEADER, ["1,0,5,1,1,1,0,0,1,.,70", *ROWS[1:]]), E, ("II", "II=0", "steady")),
    Case("nonmem-ss-3", _cell(0, "SS", "3"), E, ("SS", "SS=3")),
    Case("nonmem-cmt-unknown", _cell(1, "CMT", "7"), E, ("CMT", "CMT=7")),
    Case("nonmem-dose-into-central", _cell(0, "CMT", "2"), E, ("CMT", "CMT=2", "depot")),
    Case("nonmem-negative-time", _cell(1, "TIME", "-1"), E, ("TIME", "TIME=-1")),
    Case("nonmem-time-beyond-20-years", _cell(2, "TIME", "1e9"), E, ("TIME", "TIME=1000000000")),
    Case("nonmem-time-backwards", _cell(2, "TIME", "1"), E, ("TIME", "TIME=1.0", "earlier")),
    Case("nonmem-dv-missing-on-observation", _cell(1, "DV", "."), E, ("DV", "DV=nan")),
    Case("nonmem-dv-text", _cell(1, "DV", "BLQ"), E, ("DV", "DV='BLQ'")),
    Case("nonmem-rate-infusion", _read(HEADER + ",RATE", [ROWS[0] + ",10", ROWS[1] + ",0", ROWS[2] + ",0"]), E,
         ("RATE", "RATE=10")),
    Case("nonmem-blq-2", _read(HEADER + ",BLQ", [ROWS[0] + ",0", ROWS[1] + ",2", ROWS[2] + ",0"]), E,
         ("BLQ", "BLQ=2")),
    # ---- columns
    Case("nonmem-duplicate-column", _read(HEADER + ",WT", [r + ",80" for r in ROWS]), E, ("'WT'", "twice")),
    Case("nonmem-same-column-two-cases", _read(HEADER + ",time", [r + ",1" for r in ROWS]), E, ("'TIME'", "'time'")),
    Case("nonmem-missing-id", _read(HEADER[len("ID,"):], [r.split(",", 1)[1] for r in ROWS]), E,
         ("column ID is missing",)),
    Case("nonmem-ragged-row", _read(HEADER, [ROWS[0], ROWS[1] + ",99", ROWS[2]]), E, ("line 3", "11 fields")),
    Case("nonmem-empty-file", _read("", []), E, ("empty",)),
    Case("nonmem-unnamed-column", _read(HEADER + ",", [r + ",1" for r in ROWS]), E, ("column 12", "no name")),
    Case("nonmem-missing-time", _read("ID,AMT,DV", ["1,5,.", "1,0,2.5"]), E, ("column TIME is missing",)),
    Case("nonmem-missing-dv", _read("ID,TIME,AMT", ["1,0,5", "1,1,0"]), E, ("column DV is missing", "data row 2")),
    Case("nonmem-id-block-twice", _read(HEADER, [*ROWS, "2,0,5,1,1,1,0,0,0,.,60", "1,40,0,0,0,2,0,0,0,3,70"]), E,
         ("ID", "ID=1", "earlier block")),
    Case("nonmem-file-not-found", lambda tmp_path: read_nonmem(tmp_path / "nope.csv"), E, ("nope.csv", "not found")),
]
