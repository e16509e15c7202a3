"""Sweeps: one design run over a grid of model values and rule fields, and
over posterior draws, as one labelled xarray Dataset of endpoints.

:func:`sweep` runs every (grid point, draw) pair as one task (grouped so
that a task lasts about 0.5 s, see :mod:`pkpd.distributed`).  Each draw has
its own seed, spawned from ``seed`` by the draw's index, and every grid
point uses the same draw seeds: points differ by the grid's values only
(common random numbers), draws by their parameters and their patients.  The
result is the same on any number of workers.

Units: the model's parameter units (:attr:`pkpd.population.PKPDModel.parameter_units`),
rule fields in 10^9/L, days and mg; endpoints as in their table ("fraction" 0-1,
"%", "days").
"""

from __future__ import annotations

import itertools
from dataclasses import fields, replace
from pathlib import Path

import lazy_loader as lazy
import numpy as np
import pandas as pd

from .checks import PKPDInputError
from .distributed import PATIENT_DAY_SECONDS, check_workers, map_tasks
from .endpoints import REGISTRY
from .scenario import load_scenario
from .titration import TitrationRule
from .trial import Trial
from .utility import Utility

xr = lazy.load("xarray")  # on first use (~0.1-0.2 s to import)

_RULE_FIELDS = tuple(f.name for f in fields(TitrationRule) if f.name != "name")


def _grid_points(grid) -> pd.DataFrame:
    """The grid as a table, one row per point (a dict of lists: their product, first key slowest)."""
    if isinstance(grid, pd.DataFrame):
        points = grid.reset_index(drop=True)
    elif isinstance(grid, dict):
        if not grid:
            raise PKPDInputError("grid is empty; give at least one name -> list of values, e.g. {'ec50': [15, 20, 25]}.")
        values = {}
        for name, v in grid.items():
            v = list(v) if isinstance(v, (list, tuple, np.ndarray)) and not (name == "ladder_mg" and _is_ladder(v)) \
                else [v]
            if not v:
                raise PKPDInputError(f"grid[{name!r}] is an empty list; give at least one value.")
            values[name] = v
        points = pd.DataFrame(list(itertools.product(*values.values())), columns=list(values))
    else:
        raise PKPDInputError(f"grid must be a dict of name -> list of values or a DataFrame of points; got {type(grid).__name__}.")
    if points.empty or not len(points.columns):
        raise PKPDInputError("grid has no points; give at least one name with one value.")
    return points


def _is_ladder(v) -> bool:
    return len(v) > 0 and all(isinstance(x, (int, float, np.integer, np.floating)) for x in v)


def _design(trial: Trial, point: dict, draw: dict) -> Trial:
    """``trial`` with a point's model values and rule fields and a draw's typical values."""
    model_values = {k: float(v) for k, v in point.items() if k in trial.model.parameter_names}
    model_values.update(draw)
    rule_values = {k: (tuple(v) if k == "ladder_mg" else v) for k, v in point.items() if k in _RULE_FIELDS}
    model = trial.model.with_typical(**model_values) if model_values else trial.model
    arms = []
    for a in trial.arms:
        rule = a.rule.with_(**rule_values) if (a.rule is not None and rule_values) else a.rule
        start = point.get("start_mg", a.start_mg) if a.rule is not None else a.start_mg
        stages = tuple(st.with_(rule=rule) if st.rule is not None and rule_values else st for st in a.stages)
        arms.append(replace(a, rule=rule, start_mg=float(start), stages=stages))
    return replace(trial, arms=tuple(arms), model=model)


def _run(task) -> dict:
    """One (point, draw): the endpoint estimates and utility summary per arm."""
    trial, seed, replicates, utility = task
    result = trial.run(seed=seed, replicates=replicates, progress=False)
    table = result._endpoint_table()
    out = {(r.arm, r.endpoint): float(r.estimate) for r in table.itertuples()}
    per = utility.per_patient(result)
    for arm, rows in per.groupby("arm", observed=True):
        s = utility.summary(rows)
        out[(arm, "utility")] = s["utility"]
        out[(arm, "p_any_above")] = s["p_any_above"]
    return out


def sweep(scenario, grid, draws: pd.DataFrame | None = None, seed: int | None = None, workers=None,
          replicates: int = 1, utility: Utility | None = None, progress: bool = True) -> xr.Dataset:
    """Run a design over a parameter grid (and posterior draws); endpoints as one xarray Dataset.

    scenario : a scenario (:func:`pkpd.load_scenario`, or the path of its
        file) or a :class:`~pkpd.trial.Trial`.
    grid : name -> list of values (every combination, first name slowest)
        or a DataFrame with one row per point.  Names: the model's typical
        values (``ec50``, ``emax``, ... in the model's units), fields of the
        titrated arms' :class:`~pkpd.titration.TitrationRule` (``low``,
        ``visit_every_days``, ``ladder_mg`` as a list of ladders, ...), and
        ``start_mg`` (the titrated arms' start dose, mg).
    draws : parameter uncertainty: a DataFrame, one row per draw, columns
        named like the model's parameters (e.g. posterior draws of typical
        values); None = one draw with the model's (or the point's) values.
        A name may not be in both ``grid`` and ``draws``.
    seed : whole number >= 0 (None: the scenario's seed, else fresh
        entropy, kept in ``attrs["seed"]``).
    workers : see :mod:`pkpd.distributed`; results do not depend on it.
    replicates : replicate trials per (point, draw), pooled in each estimate.
    utility : the :class:`~pkpd.utility.Utility` reported per arm (default weights).

    Returns a Dataset with dims ``point``, ``draw``, ``arm``: one variable
    per endpoint of the trial's endpoint table (its estimate; ``attrs``:
    description, unit), plus ``utility`` (mean per patient) and
    ``p_any_above`` (share of patients with a true count above
    ``utility.above``); the grid's values are coordinates along ``point``
    (ladders as text) and the draws' along ``draw``.
    """
    if isinstance(scenario, (str, Path)):
        scenario = load_scenario(scenario)
    trial = getattr(scenario, "trial", scenario)
    if not isinstance(trial, Trial):
        raise PKPDInputError(f"scenario must be a scenario (pkpd.load_scenario) or a pkpd.Trial; got {type(scenario).__name__}.")
    if seed is None:
        seed = getattr(scenario, "seed", None)
    if seed is not None and (isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise PKPDInputError(f"seed must be a whole number >= 0 or None; got {seed!r}.")
    replicates = trial.check_size(replicates)
    utility = Utility() if utility is None else utility
    if not isinstance(utility, Utility):
        raise PKPDInputError(f"utility must be a pkpd.Utility or None; got {type(utility).__name__}.")
    check_workers(workers)
    points = _grid_points(grid)
    allowed = (*trial.model.parameter_names, *_RULE_FIELDS, "start_mg")
    for name in points.columns:
        if name not in allowed:
            raise PKPDInputError(f"grid has unknown name {name!r}; use model parameters {list(trial.model.parameter_names)}, "
                                 f"rule fields {list(_RULE_FIELDS)} or start_mg.")
        if name == "n_transit":
            raise PKPDInputError("grid cannot vary n_transit (a structural whole number of the model); drop it.")
    if any(n in _RULE_FIELDS or n == "start_mg" for n in points.columns) and not any(a.rule for a in trial.arms):
        raise PKPDInputError("grid varies rule fields or start_mg, but the design has no titrated arm (an arm with a rule).")
    if draws is None:
        draw_rows = [{}]
    else:
        if not isinstance(draws, pd.DataFrame) or draws.empty:
            raise PKPDInputError("draws must be a non-empty DataFrame (one row per draw, one column per parameter) or None.")
        unknown = [c for c in draws.columns if c not in trial.model.parameter_names or c == "n_transit"]
        if unknown:
            raise PKPDInputError(f"draws has unknown columns {unknown}; use model parameters (not n_transit) "
                                 f"{[p for p in trial.model.parameter_names if p != 'n_transit']}.")
        both = sorted(set(draws.columns) & set(points.columns))
        if both:
            raise PKPDInputError(f"{both} are in both grid and draws; vary a parameter in one of them.")
        draw_rows = [dict(zip(draws.columns, map(float, row))) for row in draws.itertuples(index=False)]
    root = np.random.SeedSequence(seed)
    draw_seeds = [int(s.generate_state(1, np.uint32)[0]) for s in root.spawn(len(draw_rows))]

    tasks, designs_at = [], []
    for i, point in enumerate(points.to_dict("records")):
        for j, draw in enumerate(draw_rows):
            try:
                design = _design(trial, point, draw)
            except PKPDInputError as err:
                raise PKPDInputError(f"grid point {i} ({point}) draw {j}: {err}") from None
            tasks.append((design, draw_seeds[j], replicates, utility))
            designs_at.append((i, j))
    cost = trial.n_per_trial * (trial.duration_days + 1) * replicates * PATIENT_DAY_SECONDS
    results = map_tasks(_run, tasks, workers, seconds_per_task=cost, progress=progress, desc="sweep", unit="run")

    arms = [a.name for a in trial.arms]
    keys = [k for k in REGISTRY if any((a, k) in r for r in results for a in arms)] + ["utility", "p_any_above"]
    shape = (len(points), len(draw_rows), len(arms))
    data = {k: np.full(shape, np.nan) for k in keys}
    for (i, j), r in zip(designs_at, results):
        for (arm, k), v in r.items():
            data[k][i, j, arms.index(arm)] = v
    coords = {"point": np.arange(len(points)), "draw": np.arange(len(draw_rows)), "arm": arms}
    for c in points.columns:
        col = points[c].to_list()
        col = ["/".join(f"{x:g}" for x in v) if isinstance(v, (list, tuple)) else v for v in col]
        coords[c] = ("point", np.asarray(col))
    if draws is not None:
        for c in draws.columns:
            coords[f"draw_{c}"] = ("draw", draws[c].to_numpy(float))
    lo, hi = utility.in_range
    variables = {}
    for k in keys:
        if k in REGISTRY:
            e = REGISTRY[k]
            attrs = {"description": e.describe(trial.endpoints, trial.model.pd.OBSERVABLE), "unit": e.unit}
        elif k == "utility":
            attrs = {"description": f"mean utility per patient ({utility!r})", "unit": "per patient"}
        else:
            attrs = {"description": f"share of patients with a true count > {utility.above:g} x10^9/L on any day",
                     "unit": "fraction"}
        variables[k] = (("point", "draw", "arm"), data[k], attrs)
    return xr.Dataset(variables, coords=coords, attrs={
        "design": trial.name, "seed": int(root.entropy) if seed is None else int(seed), "replicates": replicates,
        "patients_per_trial": trial.n_per_trial, "duration_days": trial.duration_days,
        "seeds": "draw d uses seed SeedSequence(seed).spawn(draws)[d] at every grid point (common random numbers)",
        "utility_range": f"{lo:g}-{hi:g} x10^9/L",
    })
