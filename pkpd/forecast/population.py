"""Population knowledge with its uncertainty: posterior draws of the population parameters.

A forecast's prior is a population model (:class:`pkpd.population.PKPDModel`).
With ``population=`` it is a *set* of population models, one per posterior draw
of a population fit, so that what the fit left uncertain is carried into the
forecast (:func:`~pkpd.forecast.posterior.fit_individual` weighs each draw by how
well it explains the patient's data).  Accepted:

* a DataFrame, one row per draw, columns named like the model's parameters:
  their typical values in :attr:`PKPDModel.parameter_units` (ka 1/h, cl L/h,
  v L, emax fold, ec50 ng/mL, mtt h, lifespan h, plt0 10^9/L, ...), the
  convention of ``Trial.run(typical_draws=)`` and
  :func:`pkpd.datasets.posterior_typical_draws`.  Optional further columns, the
  names :func:`pkpd.fit` gives them: ``omega_<p>`` (SD of log p between
  patients; replaces the model's IIV of p, which must have IIV),
  ``sigma_prop_plt`` / ``sigma_add_plt`` (platelet residual SDs: fraction,
  10^9/L; replace ``model.residual_plt``'s prop / add, its form, log-normal or
  normal, kept) and ``sigma_prop`` / ``sigma_add`` (concentrations: fraction,
  ng/mL; ``model.residual_conc``).  Parameters without a column keep the
  model's value;
* the result of :func:`pkpd.fit` (an ``arviz.InferenceData``): the
  population-level variables of its posterior (those with only chain and draw
  dimensions), one row per chain and draw (:func:`fit_draws`); per-subject
  variables (etas, predictions) are not population knowledge and are left out.
  A variable that cannot be mapped onto the model (a covariate exponent
  ``theta_*``, correlated IIV ``omega_corr``, a parameter the model does not
  have) is refused with its name: select the columns with ``fit_draws(idata)``.

A fit of healthy subjects does not describe ITP patients as it stands: with
:func:`pkpd.drugs.hetrombopag.model` ("itp") carry the drug's parameters
(ka, cl, v, emax, mtt; EC50 relative to the healthy default) and leave the
disease's (plt0, lifespan) to the ITP model, as ``notebooks/04_posterior_to_dosing.ipynb``
does.  With a baseline law (the ITP model's screened baseline) a plt0 column
changes nothing: the law draws the patient's baseline.

Every fault raises :class:`pkpd.PKPDInputError` naming the column, the value
and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..checks import PKPDInputError
from ..population import PKPDModel, ResidualError

#: Population draws a forecast uses by default (a seeded subset of the draws given).
DEFAULT_POPULATION_DRAWS = 30
#: Residual-SD columns: name -> (model field, ResidualError attribute, unit).
RESIDUAL_COLUMNS = {"sigma_prop_plt": ("residual_plt", "prop", "fraction"),
                    "sigma_add_plt": ("residual_plt", "add", "10^9/L"),
                    "sigma_prop": ("residual_conc", "prop", "fraction"),
                    "sigma_add": ("residual_conc", "add", "ng/mL")}


def is_fit_result(value) -> bool:
    """Whether ``value`` looks like the result of :func:`pkpd.fit` (an InferenceData with a posterior)."""
    return hasattr(value, "groups") and hasattr(value, "posterior")


def fit_draws(idata) -> pd.DataFrame:
    """The population-level variables of a :func:`pkpd.fit` result's posterior as a
    DataFrame: one row per chain and draw, one column per variable with only
    chain and draw dimensions (typical values, ``omega_*``, ``sigma_*``, ``theta_*``).
    Variables with further dimensions are left out, except ``omega_*`` / ``sigma_*`` /
    ``theta_*`` ones (e.g. ``omega_corr``), which cannot be carried and are refused."""
    if not is_fit_result(idata):
        raise PKPDInputError(f"population: expected the result of pkpd.fit (an arviz.InferenceData with a posterior "
                             f"group); got {type(idata).__name__}.")
    post = idata.posterior
    columns = {}
    for name, var in post.data_vars.items():
        dims = tuple(var.dims)
        if dims == ("chain", "draw"):
            columns[str(name)] = np.asarray(var.values, float).ravel()
        elif str(name).startswith(("omega_", "sigma_", "theta_")) and {"chain", "draw"} <= set(dims):
            raise PKPDInputError(f"population: the fit's variable {name!r} has dimensions {dims}; only one value per "
                                 "draw can be carried into a forecast (correlated IIV is not supported). Pass a "
                                 "DataFrame of the variables to carry, e.g. pkpd.forecast.fit_draws(idata) after "
                                 "refitting without it, or the typical values only.")
    if not columns:
        raise PKPDInputError("population: the fit's posterior has no population-level variable (one value per chain "
                             "and draw); give the result of pkpd.fit or a DataFrame of typical values.")
    return pd.DataFrame(columns)


@dataclass(frozen=True, eq=False)
class PopulationDraws:
    """The population draws a forecast uses.

    models : one :class:`PKPDModel` per draw used (the model with that draw's values).
    table : those draws' values (one row each, the columns given).
    rows : their positions in the draws given (0-based).
    total : how many draws were given.  source : what they came from.
    """

    models: tuple
    table: pd.DataFrame
    rows: np.ndarray
    total: int
    source: str

    @property
    def size(self) -> int:
        return len(self.models)

    @property
    def columns(self) -> list:
        return list(self.table.columns)

    def __repr__(self) -> str:
        return (f"PopulationDraws({self.size} of {self.total} draws of {', '.join(self.columns)} from "
                f"{self.source})")


def _check_columns(draws: pd.DataFrame, model: PKPDModel) -> None:
    names = model.parameter_names
    whole = [c for c in draws.columns if c in model.pd.WHOLE]
    if whole:
        raise PKPDInputError(f"population column {whole[0]!r} is a structural whole number shared by all patients "
                             "and cannot vary between draws; drop that column.")
    unknown = []
    for c in draws.columns:
        if c in names or c in RESIDUAL_COLUMNS:
            continue
        if isinstance(c, str) and c.startswith("omega_") and c[6:] in names:
            p = c[6:]
            if model.iiv.get(p, 0) <= 0:
                law = (" (its baseline law draws it)" if model.baseline is not None and p == model.pd.BASELINE else "")
                raise PKPDInputError(f"population column {c!r}: the model has no IIV on {p}{law}, so this SD cannot be "
                                     f"carried; drop the column (population.drop(columns=[{c!r}])) or give the model "
                                     f"IIV on {p} (model.with_(iiv={{..., {p!r}: CV}})).")
            continue
        unknown.append(c)
    if unknown:
        hint = (" Covariate exponents (theta_*) cannot be carried: the forecast has no covariates."
                if any(str(c).startswith("theta_") for c in unknown) else "")
        raise PKPDInputError(f"population has columns that are not parameters of model {model.name!r}: {unknown}.{hint} "
                             f"Use the parameter names {list(names)} (typical values), omega_<parameter> (IIV log SD) "
                             f"or {list(RESIDUAL_COLUMNS)}; drop the others (population.drop(columns={unknown})).")


def _check_values(draws: pd.DataFrame, model: PKPDModel) -> np.ndarray:
    try:
        values = draws.to_numpy(dtype=float)
    except (TypeError, ValueError):
        bad = [c for c in draws.columns if not pd.api.types.is_numeric_dtype(draws[c])]
        raise PKPDInputError(f"population column {bad[0] if bad else '?'!r} holds values that are not numbers; give "
                             "numbers in the parameter's unit.") from None
    for j, c in enumerate(draws.columns):
        col = values[:, j]
        unit = (RESIDUAL_COLUMNS[c][2] if c in RESIDUAL_COLUMNS else "log SD" if str(c).startswith("omega_")
                else model.parameter_units[c])
        bad = ~np.isfinite(col)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise PKPDInputError(f"population column {c!r} has a non-finite value {col[i]!r} (row {i}); every draw needs "
                                 f"a finite value ({unit}): drop or fix the row.")
        zero_ok = c in RESIDUAL_COLUMNS or model.typical.get(c, 1.0) == 0.0
        bad = col < 0 if zero_ok else col <= 0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            rule = ">= 0" if zero_ok else "> 0"
            raise PKPDInputError(f"population column {c!r} has {col[i]!r} (row {i}); it must be {rule} ({unit}): "
                                 "give the value on its natural scale, not a log or a deviation.")
    return values


def _draw_model(model: PKPDModel, columns, row: np.ndarray) -> PKPDModel:
    """``model`` with one draw's values."""
    values = dict(zip(columns, map(float, row)))
    typical = {c: v for c, v in values.items() if c in model.parameter_names}
    out = model.with_typical(**typical) if typical else model
    iiv = {c[6:]: math.sqrt(math.expm1(v * v)) for c, v in values.items() if str(c).startswith("omega_")}
    if iiv:
        out = out.with_(iiv={**model.iiv, **iiv})
    errors = {}
    for c, v in values.items():
        if c in RESIDUAL_COLUMNS:
            where, attr, _ = RESIDUAL_COLUMNS[c]
            errors.setdefault(where, dict(vars(getattr(model, where))))[attr] = v
    if errors:
        out = out.with_(**{where: ResidualError(**e) for where, e in errors.items()})
    return out


def population_draws(population, model: PKPDModel, n: int | None = DEFAULT_POPULATION_DRAWS,
                     rng: np.random.Generator | None = None) -> PopulationDraws:
    """Validate ``population`` (see the module docstring) against ``model`` and pick ``n``
    of its draws (all when None or when there are no more), a seeded random subset without
    replacement, kept in the order given."""
    if isinstance(population, PopulationDraws):
        return population
    if is_fit_result(population):
        draws, source = fit_draws(population), "a pkpd.fit posterior"
    elif isinstance(population, pd.DataFrame):
        draws, source = population, "a DataFrame"
    else:
        raise PKPDInputError(f"population must be a DataFrame of posterior draws (one row per draw, columns named like "
                             f"the model's parameters, e.g. pkpd.datasets.posterior_typical_draws()) or the result of "
                             f"pkpd.fit; got {type(population).__name__}.")
    if draws.shape[1] == 0 or len(draws) == 0:
        raise PKPDInputError(f"population is empty ({len(draws)} rows, {draws.shape[1]} columns); give at least one draw "
                             "with a column per population parameter, or population=None for the model's fixed values.")
    if draws.columns.duplicated().any():
        raise PKPDInputError(f"population has duplicated columns {list(draws.columns[draws.columns.duplicated()])}; "
                             "give each parameter once.")
    _check_columns(draws, model)
    values = _check_values(draws, model)
    total = len(draws)
    if n is not None and (isinstance(n, bool) or int(n) != n or n < 1):
        raise PKPDInputError(f"n_population_draws must be a whole number >= 1 or None (all draws); got {n!r}.")
    if n is None or int(n) >= total:
        rows = np.arange(total)
    else:
        rng = np.random.default_rng(rng)
        rows = np.sort(rng.choice(total, size=int(n), replace=False))
    models = []
    for r in rows:
        try:
            models.append(_draw_model(model, list(draws.columns), values[r]))
        except PKPDInputError as exc:
            raise PKPDInputError(f"population row {int(r)}: {exc}") from None
    table = draws.iloc[rows].reset_index(drop=True)
    return PopulationDraws(tuple(models), table, rows, total, source)
