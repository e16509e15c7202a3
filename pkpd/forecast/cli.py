"""``pkpd forecast patient.csv [--seed N] [--id ID] [--visit-days 7,14] [--not-enrolled] [--plot forecast.png]
[--population-draws draws.csv] [--choose-visit]``.

Reads one patient's NONMEM-format CSV (doses EVID 1 AMT mg; platelet counts
CMT 3 in 10^9/L, concentrations CMT 2 in ng/mL), forecasts the next visit's
count for each candidate dose with the hetrombopag ITP model and prints the
recommendation and its table.  ``--population-draws`` names a CSV of posterior
draws of the population parameters (one row per draw, columns named like the
model's parameters in their units, ``#`` lines ignored; see
:mod:`pkpd.forecast.population`), whose uncertainty the forecast then carries.  The arguments are defined in :mod:`pkpd.cli`;
errors are the ``pkpd`` command's (one line ``pkpd: error: ...``, exit 2) and
forecast warnings print as one line ``pkpd: warning: ...`` each.
"""

from __future__ import annotations

import sys
import warnings

import pandas as pd

from ..checks import PKPDInputError
from ..drugs import hetrombopag
from .history import PatientHistory
from .posterior import ForecastWarning
from .recommend import forecast


def visit_days(text: str) -> tuple[float, ...]:
    """``"7"`` or ``"7,14"`` -> visit days (> 0)."""
    try:
        days = tuple(float(x) for x in str(text).split(",") if x.strip())
    except ValueError:
        days = ()
    if not days or not all(d > 0 for d in days):
        raise PKPDInputError(f"--visit-days must be days > 0 after the last count, e.g. 7 or 7,14; got {text!r}.")
    return days


def read_population_draws(path) -> pd.DataFrame:
    """A CSV of population draws (one row per draw, ``#`` lines ignored) as a DataFrame; its
    columns are checked against the model by the forecast."""
    try:
        draws = pd.read_csv(path, comment="#")
    except FileNotFoundError:
        raise PKPDInputError(f"--population-draws: file {str(path)!r} not found; give the path of a CSV of posterior "
                             "draws (one row per draw, a column per population parameter).") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, IsADirectoryError) as err:
        raise PKPDInputError(f"--population-draws: {str(path)!r} is not a readable CSV ({err}); give one row per draw "
                             "and a column per population parameter (e.g. ka, cl, v, emax, ec50, mtt).") from None
    return draws


def cli_forecast(args) -> int:
    """Run ``pkpd forecast`` (``args`` from :func:`pkpd.cli._parser`); returns the exit code."""
    days = visit_days(args.visit_days)
    history = PatientHistory.read(args.patient, id=args.id)
    draws_file = getattr(args, "population_draws", None)
    population = None if draws_file is None else read_population_draws(draws_file)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ForecastWarning)
        fc = forecast(history, hetrombopag.model("itp"), seed=args.seed, visit_days=days,
                      enrolled=not args.not_enrolled, population=population,
                      choose_visit=getattr(args, "choose_visit", False))
    for w in caught:
        if issubclass(w.category, ForecastWarning):
            print(f"pkpd: warning: {' '.join(str(w.message).split())}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    print(fc)
    p = fc.posterior
    print(f"\nposterior: {p.density.method} MAP; P(responder) {p.p_responder:.2f}; Pareto k {p.pareto_k:.2f}; "
          f"ESS {p.ess:.0f} of {p.draws.shape[0]} draws; {p.seconds:.2f} s")
    if p.population is not None:
        print(f"population uncertainty included: {p.population.size} of {p.population.total} draws from "
              f"{draws_file} (effective {p.population_ess:.1f})")
    if args.plot:
        fc.plot(args.plot)
        print(f"wrote {args.plot}")
    return 0
