"""Data shipped with pkpd (:mod:`pkpd.datasets`): found through the installed package, read and written safely."""

from __future__ import annotations

import os
import stat
from importlib import resources

import numpy as np
import pandas as pd

from pkpd import datasets


def test_shipped_files_are_package_data():
    """Every listed file is found by importlib.resources inside the installed ``pkpd`` package."""
    root = resources.files("pkpd").joinpath("data")
    for name in datasets.FILES:
        assert datasets.path(name).is_file()
        assert datasets.path(name).read_bytes() == root.joinpath(name).read_bytes()


def test_shipped_posterior_draws_read_as_floats_with_their_header():
    draws = datasets.posterior_typical_draws()
    assert list(draws.columns) == list(datasets.POSTERIOR_COLUMNS) and len(draws) == 1000
    assert draws.attrs["header"][0].startswith(datasets.POSTERIOR_HEADER)
    assert draws.attrs["header"][1].startswith("# fit diagnostics")
    raw = pd.read_csv(datasets.path("hetrombopag_pkpd_posterior_typical.csv"), comment="#")
    np.testing.assert_array_equal(draws.to_numpy(), raw[list(datasets.POSTERIOR_COLUMNS)].to_numpy())


def test_save_then_read_round_trip_and_rewrite(tmp_path):
    """Written draws read back to 6 significant digits, with the header; a second save replaces the
    file it wrote (and only that), leaving no temporary file; the mode follows the umask."""
    rng = np.random.default_rng(3)
    draws = pd.DataFrame(np.exp(rng.normal(size=(5, len(datasets.POSTERIOR_COLUMNS)))),
                         columns=list(datasets.POSTERIOR_COLUMNS))
    target = tmp_path / "draws.csv"
    datasets.save_posterior_typical_draws(draws, target, ["made by a test, seed 3", "fit diagnostics: none"])
    back = datasets.posterior_typical_draws(target)
    np.testing.assert_allclose(back.to_numpy(), draws.to_numpy(), rtol=1e-5)
    assert back.attrs["header"] == [
        f"{datasets.POSTERIOR_HEADER} ({datasets.POSTERIOR_UNITS}): made by a test, seed 3",
        "# fit diagnostics: none",
    ]
    datasets.save_posterior_typical_draws(draws.iloc[:2], target, ["second"])
    assert len(datasets.posterior_typical_draws(target)) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["draws.csv"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
