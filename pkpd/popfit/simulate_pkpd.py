"""Simulate a PK/PD study (concentrations and platelets) as NONMEM records.

For recovery checks, notebooks and benchmarks of the joint PK/PD fit.  The
values come from the independent simulator :func:`pkpd.simulate_population`
(closed-form PK, exact-step transit PD, the model's residual errors), not from
the fitting code, and the records are meant to be read back with
:func:`pkpd.read_nonmem`, i.e. through the real data path.

Records: doses EVID 1 into CMT 1 (mg, runs compressed with ADDL/II);
concentrations EVID 0, CMT 2 (DV ng/mL); platelet counts EVID 0, CMT 3
(DV 10^9/L); columns ``GROUP`` (index of the dose group) and ``DOSE`` (mg of
the group's first dose) as time-constant covariates.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..checks import PKPDInputError, sorted_times
from ..population import PKPDModel
from ..regimen import CONC_CMT, PLATELET_CMT
from ..regimen import RECORD_COLUMNS, Regimen
from ..simulate import simulate_population

#: Compartments of the observations (as in :data:`pkpd.nonmem.DEFAULT_CMT_NAMES`).


def simulate_pkpd_records(model: PKPDModel, groups, pk_times, plt_times, seed) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Simulate dose groups of a PK/PD study.

    model : population model, e.g. ``pkpd.drugs.hetrombopag.model("healthy")``.
    groups : list of ``(regimen, n_subjects)`` pairs (a :class:`Regimen` each).
    pk_times, plt_times : sampling times of concentrations and platelets, h
        (the same for every subject; a time 0 platelet count is the baseline).
    seed : int, seeds parameters and residual noise.

    Returns ``(records, truth)``: the NONMEM table (sorted by ID and TIME,
    observations at a dose time before the dose) and one row per subject with
    ID, GROUP and the true individual parameters (units of
    ``model.parameter_units``).
    """
    pk_times = sorted_times("pk_times", pk_times)
    plt_times = sorted_times("plt_times", plt_times)
    if not groups:
        raise PKPDInputError("groups is empty; give at least one (Regimen, n_subjects) pair.")
    rng = np.random.default_rng(seed)
    times = np.union1d(pk_times, plt_times)
    pk_idx, plt_idx = np.searchsorted(times, pk_times), np.searchsorted(times, plt_times)
    rows, truth = [], []
    next_id = 1
    for g, group in enumerate(groups):
        regimen, n = group
        if not isinstance(regimen, Regimen):
            raise PKPDInputError(f"groups[{g}]: the first item must be a pkpd.Regimen; got {type(regimen).__name__}.")
        if int(n) != n or n < 1:
            raise PKPDInputError(f"groups[{g}]: n_subjects must be a whole number >= 1; got {n!r}.")
        sim = simulate_population(model, regimen, times, n=int(n), seed=rng)
        ids = np.arange(next_id, next_id + int(n))
        next_id += int(n)
        first_dose = float(regimen.amounts[0]) if len(regimen) else 0.0
        for k, sid in enumerate(ids):
            doses = regimen.to_records(int(sid))
            conc = pd.DataFrame({"ID": sid, "TIME": pk_times, "AMT": 0.0, "EVID": 0, "MDV": 0, "CMT": CONC_CMT,
                                 "II": 0.0, "ADDL": 0, "SS": 0, "DV": sim["conc_obs"].values[k, pk_idx]})
            plt = pd.DataFrame({"ID": sid, "TIME": plt_times, "AMT": 0.0, "EVID": 0, "MDV": 0, "CMT": PLATELET_CMT,
                                "II": 0.0, "ADDL": 0, "SS": 0, "DV": sim["platelets_obs"].values[k, plt_idx]})
            rows += [doses, conc, plt]
        table = pd.DataFrame({"ID": ids, "GROUP": g, **{p: sim[p].values for p in model.parameter_names}})
        truth.append(table)
        rows_group = slice(len(rows) - 3 * int(n), len(rows))
        for r in rows[rows_group]:
            r["GROUP"] = g
            r["DOSE"] = first_dose
    records = pd.concat(rows, ignore_index=True)[RECORD_COLUMNS + ["GROUP", "DOSE"]]
    # observations before a dose of the same time (NONMEM: a morning sample, then the dose)
    records["_dose_last"] = (records["EVID"] != 0).astype(int)
    records = (records.sort_values(["ID", "TIME", "_dose_last", "CMT"], kind="stable")
               .drop(columns="_dose_last").reset_index(drop=True))
    return records, pd.concat(truth, ignore_index=True)
