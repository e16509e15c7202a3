"""A simulated two-compartment oral study with a known truth, for the fitting tests.

Concentrations come from :meth:`pkpd.two_compartment.TwoCompartmentOral.concentrations`
(dose-to-dose propagation of the model's matrix exponential, pkpd.exposure),
not from the fitting kernels; residual error ``DV = C (1 + sigma_prop e1) +
sigma_add e2``; log-normal IIV (etas centred in the sample).  Units: h, mg, L, L/h; DV in mg/L.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pkpd.exposure import MG_PER_L_TO_NG_PER_ML
from pkpd.nonmem import read_nonmem
from pkpd.popfit import Param, PopPKModel, ResidualError
from pkpd.regimen import Regimen
from pkpd.two_compartment import TwoCompartmentOral

#: Typical values: distribution half-life ~2.5 h, terminal ~24 h.
TRUTH = {"ka": 1.0, "cl": 5.0, "v1": 30.0, "q": 3.0, "v2": 60.0}
#: SD of log P between subjects (parameters without IIV are absent).
OMEGA = {"cl": 0.3, "v1": 0.25}
SIGMA_PROP, SIGMA_ADD = 0.08, 0.005  # fraction, mg/L
TIMES = (0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 24.0, 36.0, 48.0, 72.0, 96.0)


def two_compartment_study(n_subjects: int = 8, seed: int = 11, dose_mg: float = 100.0):
    """``n_subjects`` given ``dose_mg`` once, sampled at :data:`TIMES`; weights
    (kg, column WT) uniform on 50-100, without effect on the parameters.
    Returns (Dataset with DV in mg/L, true individual parameters)."""
    rng = np.random.default_rng(seed)
    wt = rng.uniform(50.0, 100.0, n_subjects)
    # etas centred to mean 0: the sample's geometric mean is then the typical value itself, so a
    # fit's interval for it is checked against the truth, not against this sample's chance offset
    eta = {k: rng.normal(0.0, OMEGA.get(k, 0.0), n_subjects) for k in TRUTH}
    indiv = {k: v * np.exp(eta[k] - eta[k].mean()) for k, v in TRUTH.items()}
    regimen = Regimen.single(dose_mg)
    times = np.array(TIMES)
    conc = TwoCompartmentOral.concentrations(TwoCompartmentOral.parameter_arrays(**indiv), regimen, times)
    conc = conc / MG_PER_L_TO_NG_PER_ML  # ng/mL -> mg/L
    dv = conc * (1 + SIGMA_PROP * rng.standard_normal(conc.shape)) + SIGMA_ADD * rng.standard_normal(conc.shape)
    rows = []
    for i in range(n_subjects):
        rows.append(regimen.to_records(i + 1).assign(WT=wt[i]))
        rows.append(pd.DataFrame({"ID": i + 1, "TIME": times, "AMT": 0.0, "EVID": 0, "MDV": 0, "CMT": 2,
                                  "DV": dv[i], "WT": wt[i]}))
    table = pd.concat(rows, ignore_index=True)
    table["_o"] = (table["EVID"] == 0).astype(int)
    table = table.sort_values(["ID", "TIME", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
    return read_nonmem(table, dv_unit="mg/L"), pd.DataFrame(indiv, index=pd.RangeIndex(1, n_subjects + 1, name="ID"))


def two_compartment_spec(**changes) -> PopPKModel:
    """Two-compartment priors around (not at) :data:`TRUTH`, IIV on cl and v1
    (centred: every subject's rich profile pins its own values down)."""
    params = (Param("ka", 1.3, 1.0, None, "1/h"), Param("cl", 4.0, 1.0, 0.4, "L/h", centred=True),
              Param("v1", 40.0, 1.0, 0.4, "L", centred=True), Param("q", 2.5, 1.0, None, "L/h"), Param("v2", 50.0, 1.0, None, "L"))
    fields = dict(pk=TwoCompartmentOral, params=params, error=ResidualError("combined", prop_scale=0.2, add_scale=0.05),
                  conc_unit="mg/L", name="two-compartment oral")
    return PopPKModel(**{**fields, **changes})
