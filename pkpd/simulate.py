"""Simulation: a model specification and a regimen in, labelled results out.

:func:`simulate` gives one subject at the model's typical values as a
DataFrame; :func:`simulate_population` draws (or takes) individual parameters
and simulates all subjects at once, vectorised, returning an
``xarray.Dataset`` with dimensions (``id``, ``time``).

Inputs are checked before any work: report times within
:data:`pkpd.checks.MAX_HORIZON_H` (20 years), results within
:data:`pkpd.checks.MAX_RESULT_BYTES` (subjects x report times), a whole
population size n >= 1 and a seed that is an int >= 0, None or a numpy
Generator.
"""

from __future__ import annotations

import numbers

import lazy_loader as lazy
import numpy as np
import pandas as pd

from .checks import PKPDInputError, plain, real, report_cells, sorted_times, within_horizon
from .drugs import hetrombopag
from .population import PKPDModel
from .regimen import Regimen
from .response import Solver

xr = lazy.load("xarray")  # on first use (~0.1-0.2 s to import): only simulate_population returns xarray


def solver_for(parameters: pd.DataFrame, model: PKPDModel | None = None, **options) -> Solver:
    """The solver of ``model``'s structure (default: hetrombopag's, one-compartment
    oral PK with transit platelets) for individual parameters (one row per
    subject); see :meth:`pkpd.population.PKPDModel.solver`."""
    return (model or hetrombopag.model("healthy")).solver(parameters, **options)


def _check_regimen(regimen: Regimen) -> None:
    if not isinstance(regimen, Regimen):
        raise PKPDInputError(f"regimen must be a pkpd.Regimen; got {type(regimen).__name__}. Build one with Regimen.daily(...).")
    if any(d.ss or d.reset for d in regimen.doses):
        raise PKPDInputError(
            "the PK/PD simulator starts from the drug-free state and does not take steady-state (SS) or "
            "reset doses; write the run-in doses out explicitly, e.g. Regimen.daily(dose, days)."
        )


def _report_times(where: str, times, n_subjects: int) -> np.ndarray:
    """Report times, h: a non-empty 1-D sorted sequence of numbers in [0, MAX_HORIZON_H],
    few enough for ``n_subjects`` (the size is checked before the values)."""
    try:
        size = np.size(times)
    except ValueError:  # ragged nesting: real() below names it
        size = 0
    report_cells(where, n_subjects, size)
    arr = real(f"{where}: times", times, "h")
    if arr.ndim != 1 or arr.size == 0:
        raise PKPDInputError(
            f"{where}: times must be a non-empty 1-D sequence of report times in h; got shape {arr.shape}. "
            "Give e.g. np.arange(0, 169, 24.0)."
        )
    return within_horizon(f"{where}: times", sorted_times(f"{where}: times", arr))


def _population_size(n) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral) or n < 1:
        raise PKPDInputError(
            f"population size n must be a whole number >= 1 (an int); got {plain(n)!r}. Give the number of subjects, e.g. n=100."
        )
    return int(n)


def _generator(seed) -> np.random.Generator:
    """``seed``: None (fresh entropy), an int >= 0, a SeedSequence, a BitGenerator or a Generator."""
    if isinstance(seed, (np.random.Generator, np.random.SeedSequence, np.random.BitGenerator)) or seed is None:
        return np.random.default_rng(seed)
    if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)) and seed >= 0:
        return np.random.default_rng(int(seed))
    raise PKPDInputError(
        f"seed must be a whole number >= 0, None or a numpy Generator; got {plain(seed)!r}. "
        "Give e.g. seed=1 for a reproducible run."
    )


def simulate(model: PKPDModel, regimen: Regimen, times) -> pd.DataFrame:
    """Simulate one subject at the model's typical values.

    times : sorted report times, h.  Returns a DataFrame with columns ``time``
    (h), ``conc`` (ng/mL) and the PD model's response (``platelets``,
    10^9/L, for the default structure).
    """
    _check_regimen(regimen)
    times = _report_times("simulate", times, 1)
    conc, response, _ = model.solver(model.typical_parameters()).run(regimen.times, regimen.amounts, times)
    return pd.DataFrame({"time": times, "conc": conc[0], model.pd.OBSERVABLE: response[0]})


def simulate_population(
    model: PKPDModel,
    regimen: Regimen,
    times,
    n: int | None = None,
    seed=None,
    parameters: pd.DataFrame | None = None,
    observed: bool = True,
) -> xr.Dataset:
    """Simulate a population, vectorised across subjects.

    Either ``n`` subjects are drawn from the model's variability with ``seed``,
    or individual ``parameters`` are given (a DataFrame with one row per subject
    and a column per parameter; missing parameters take the typical value),
    for example posterior draws.

    Returns an ``xarray.Dataset`` with dimensions ``id`` and ``time`` (h) and
    variables ``conc`` (ng/mL) and ``platelets`` (10^9/L), their observed
    versions with residual error (``conc_obs``, ``platelets_obs``, when
    ``observed``), and each subject's parameters as variables along ``id``.
    ``result.to_dataframe()`` gives the long (tidy) table.
    """
    _check_regimen(regimen)
    rng = _generator(seed)
    if not isinstance(observed, (bool, np.bool_)):
        raise PKPDInputError(f"observed must be True or False; got {plain(observed)!r}.")
    if parameters is None:
        if n is None:
            raise PKPDInputError("give either n (population size) or parameters (one row per subject).")
        n = _population_size(n)
    elif n is not None:
        raise PKPDInputError(
            f"give n (population size) or parameters, not both; got n={plain(n)!r} and parameters. "
            "Leave n out: the population is one subject per row of parameters."
        )
    elif not isinstance(parameters, pd.DataFrame):
        raise PKPDInputError(
            f"parameters must be a pandas DataFrame with one row per subject; got {type(parameters).__name__}."
        )
    # Sizes are checked before anything is drawn or allocated.
    times = _report_times("simulate_population", times, n if parameters is None else len(parameters))
    if parameters is None:
        parameters = model.sample_parameters(n, seed=rng)
    else:
        names = model.parameter_names
        unknown = [c for c in parameters.columns if c not in (*names, "ID", "responder")]
        if unknown:
            raise PKPDInputError(f"parameters has unknown columns {unknown}; known: {list(names)} and ID.")
        parameters = parameters.reset_index(drop=True).copy()
        for p in names:
            if p not in parameters:
                parameters[p] = model.typical[p]
        if "ID" not in parameters:
            parameters.insert(0, "ID", np.arange(1, len(parameters) + 1))
    solver = model.solver(parameters, rng=rng, **model.pd.SINGLE_RUN_OPTIONS)
    conc, response, _ = solver.run(regimen.times, regimen.amounts, times)
    what, unit = model.pd.OBSERVABLE, model.pd.UNIT
    ds = xr.Dataset(
        {
            "conc": (("id", "time"), conc, {"units": "ng/mL"}),
            what: (("id", "time"), response, {"units": unit}),
        },
        coords={"id": parameters["ID"].to_numpy(), "time": ("time", times, {"units": "h"})},
        attrs={"model": model.name, "population": model.population, "regimen": repr(regimen)},
    )
    if observed:
        ds["conc_obs"] = (("id", "time"), model.residual_conc.sample(conc, rng), {"units": "ng/mL"})
        ds[f"{what}_obs"] = (("id", "time"), model.residual_plt.sample(response, rng), {"units": unit})
    units = model.parameter_units
    for p in parameters.columns.drop("ID"):
        ds[p] = ("id", parameters[p].to_numpy(), {"units": units.get(p, "")})
    return ds

