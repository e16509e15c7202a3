"""Bad inputs of the shipped-data accessors (:mod:`pkpd.datasets`)."""

from __future__ import annotations

import pandas as pd
import pytest

from bad_inputs import Case
from pkpd import PKPDInputError, datasets

GOOD = pd.DataFrame({c: [1.0, 2.0] for c in datasets.POSTERIOR_COLUMNS})


def _write(tmp_path, text, name="draws.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


CASES = [
    Case("datasets-unknown-name", lambda tmp: datasets.path("theoph.csv"), PKPDInputError,
         ("dataset name", "theoph.csv", "theoph_nm.csv")),
    Case("datasets-draws-file-missing", lambda tmp: datasets.posterior_typical_draws(tmp / "nope.csv"),
         PKPDInputError, ("posterior draws file", "nope.csv", "not found")),
    Case("datasets-draws-column-missing",
         lambda tmp: datasets.posterior_typical_draws(_write(tmp, GOOD.drop(columns="ec50").to_csv(index=False))),
         PKPDInputError, ("column", "ec50")),
    Case("datasets-draws-negative-value",
         lambda tmp: datasets.posterior_typical_draws(_write(tmp, GOOD.assign(cl=[1.0, -3.0]).to_csv(index=False))),
         PKPDInputError, ("row 2", "cl", "-3.0")),
    Case("datasets-draws-text-value",
         lambda tmp: datasets.posterior_typical_draws(_write(tmp, GOOD.assign(mtt=["168", "x"]).to_csv(index=False))),
         PKPDInputError, ("row 2", "mtt", "'x'")),
    Case("datasets-draws-empty-file", lambda tmp: datasets.posterior_typical_draws(_write(tmp, "")),
         PKPDInputError, ("posterior draws file", "draws.csv", "not a readable csv")),
    Case("datasets-draws-no-rows",
         lambda tmp: datasets.posterior_typical_draws(_write(tmp, ",".join(datasets.POSTERIOR_COLUMNS) + "\n")),
         PKPDInputError, ("draws.csv", "no rows")),
    Case("datasets-save-not-a-draws-file",
         lambda tmp: datasets.save_posterior_typical_draws(GOOD, _write(tmp, "my notes\n", "notes.csv"), ["fit"]),
         PKPDInputError, ("notes.csv", "not a posterior-draws file")),
    Case("datasets-save-into-folder", lambda tmp: datasets.save_posterior_typical_draws(GOOD, tmp, ["fit"]),
         PKPDInputError, ("file", "is a folder")),
    Case("datasets-save-nan-draw",
         lambda tmp: datasets.save_posterior_typical_draws(GOOD.assign(v=[float("nan"), 1.0]), tmp / "d.csv", ["fit"]),
         PKPDInputError, ("row 1", "v", "nan")),
]


def test_datasets_save_refuses_a_users_file_and_leaves_it_alone(tmp_path):
    """A file pkpd did not write is refused and stays byte for byte as it was; no temporary file is left."""
    mine = _write(tmp_path, "ka,cl\n1,2\n", "mine.csv")
    with pytest.raises(PKPDInputError, match="mine.csv"):
        datasets.save_posterior_typical_draws(GOOD, mine, ["fit"])
    assert mine.read_text() == "ka,cl\n1,2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.csv"]
