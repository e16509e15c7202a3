"""Data shipped with pkpd, found through the installed package (``pkpd/data/``).

* ``theoph_nm.csv``: theophylline after one oral dose, NONMEM format (read it
  with :func:`pkpd.nonmem.load_theophylline`).
* ``hetrombopag_pkpd_posterior_typical.csv``: 1000 posterior draws of the
  hetrombopag typical values from the full run of
  ``notebooks/02_hetrombopag_pkpd.ipynb`` (a joint PK/platelet fit of a
  simulated phase I study), read by ``notebooks/04_posterior_to_dosing.ipynb``
  through :func:`posterior_typical_draws`.  Its ``#`` header names the fit and
  its convergence diagnostics.

The files are located with :mod:`importlib.resources`, so they are found
wherever pkpd is installed, never relative to a source checkout.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .checks import PKPDInputError

#: Shipped files and what they hold.
FILES = {
    "theoph_nm.csv": "theophylline, 12 subjects after one oral dose (NONMEM format; DV mg/L)",
    "hetrombopag_pkpd_posterior_typical.csv": "1000 posterior draws of hetrombopag's typical values "
                                              "(notebooks/02_hetrombopag_pkpd.ipynb, full run)",
}

#: Columns of a posterior-draws file, with units: ka 1/h, cl L/h, v L, emax
#: fold, ec50 ng/mL, mtt h, lifespan h, plt0 10^9/L.
POSTERIOR_COLUMNS = ("ka", "cl", "v", "emax", "ec50", "mtt", "lifespan", "plt0")
POSTERIOR_UNITS = "ka 1/h, cl L/h, v L, emax fold, ec50 ng/mL, mtt h, lifespan h, plt0 10^9/L"

#: First words of the header every posterior-draws file starts with: a file
#: without it was not written by :func:`save_posterior_typical_draws` and is
#: never overwritten.
POSTERIOR_HEADER = "# posterior draws of the typical values"

_FILES_KEPT = contextlib.ExitStack()
atexit.register(_FILES_KEPT.close)


def path(name: str) -> Path:
    """Path of the shipped file ``name`` (one of :data:`FILES`)."""
    if name not in FILES:
        raise PKPDInputError(f"dataset name {name!r} is not shipped with pkpd; use one of {sorted(FILES)}.")
    source = resources.files("pkpd").joinpath("data", name)
    if isinstance(source, Path):
        return source
    # installed as a zip: extract once, kept until the interpreter exits
    return _FILES_KEPT.enter_context(resources.as_file(source))


def posterior_typical_draws(file=None) -> pd.DataFrame:
    """Posterior draws of the typical values, one row per draw (columns :data:`POSTERIOR_COLUMNS`).

    file : a CSV written by :func:`save_posterior_typical_draws` (for example by a
        full run of notebook 02); ``None`` reads the draws shipped with pkpd.
    The ``#`` header lines are kept in ``result.attrs["header"]`` and the file in
    ``result.attrs["file"]``.  Every value must be finite and > 0.
    """
    where = path("hetrombopag_pkpd_posterior_typical.csv") if file is None else Path(file)
    if not where.is_file():
        raise PKPDInputError(
            f"posterior draws file {str(where)!r} not found; give the CSV a full run of "
            "notebooks/02_hetrombopag_pkpd.ipynb wrote, or file=None for the draws shipped with pkpd."
        )
    with open(where, encoding="utf-8") as f:
        header = [line.rstrip("\n") for line in f if line.startswith("#")]
    try:
        draws = pd.read_csv(where, comment="#")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise PKPDInputError(
            f"posterior draws file {str(where)!r} is not a readable CSV ({err}); give a CSV with the columns "
            f"{list(POSTERIOR_COLUMNS)}."
        ) from None
    values = _checked(draws, f"posterior draws file {str(where)!r}")
    draws = pd.DataFrame(values, columns=list(POSTERIOR_COLUMNS))
    draws.attrs.update(header=header, file=str(where))
    return draws


def save_posterior_typical_draws(draws: pd.DataFrame, file, header: list[str]) -> Path:
    """Write posterior draws of the typical values to ``file`` (CSV with a ``#`` header).

    header : one-line descriptions of the fit, without ``#``: the first says what
        produced the draws (it follows :data:`POSTERIOR_HEADER` and the units on
        the first line), the others for instance the fit's diagnostics.
    An existing ``file`` is replaced only if it is itself a posterior-draws file
    (starts with :data:`POSTERIOR_HEADER`); anything else is refused.  The file
    is written next to its destination and renamed into place, so an interrupted
    write never leaves a half-written file behind.
    """
    target = Path(file)
    _checked(draws, "draws")
    if target.is_dir():
        raise PKPDInputError(f"file {str(target)!r} is a folder; give a file name for the draws (a .csv).")
    if target.exists():
        with open(target, encoding="utf-8", errors="replace") as f:
            first = f.readline()
        if not first.startswith(POSTERIOR_HEADER):
            raise PKPDInputError(
                f"file {str(target)!r} exists and is not a posterior-draws file pkpd wrote; "
                "choose another file name (pkpd never overwrites a file it did not create)."
            )
    if not header or any("\n" in h for h in header):
        raise PKPDInputError(f"header must be a non-empty list of one-line strings; got {header!r}.")
    lines = [f"{POSTERIOR_HEADER} ({POSTERIOR_UNITS}): {header[0]}"] + [f"# {h}" for h in header[1:]]
    text = "\n".join(lines) + "\n" + draws[list(POSTERIOR_COLUMNS)].to_csv(index=False, float_format="%.6g")
    # a hidden sibling, created exclusively (the user's umask sets its mode), renamed into place
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target



def _checked(draws: pd.DataFrame, what: str) -> np.ndarray:
    """The :data:`POSTERIOR_COLUMNS` of ``draws`` as floats, all finite and > 0."""
    missing = [c for c in POSTERIOR_COLUMNS if c not in draws.columns]
    if missing:
        raise PKPDInputError(
            f"{what} has no column(s) {missing} (it has {list(draws.columns)}); it needs {list(POSTERIOR_COLUMNS)}."
        )
    if draws.empty:
        raise PKPDInputError(f"{what} has no rows; it needs at least one draw.")
    values = draws[list(POSTERIOR_COLUMNS)].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = ~(np.isfinite(values) & (values > 0))
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        name = POSTERIOR_COLUMNS[col]
        raise PKPDInputError(
            f"{what}, row {row + 1}: {name} must be a finite number > 0; got {draws.iloc[row][name]!r}. "
            "Fix or drop that draw."
        )
    return values
