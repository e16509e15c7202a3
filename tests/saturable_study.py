"""A simulated single-ascending-dose study of the saturable one-compartment model, with a known truth.

Concentrations come from ``scipy.integrate.solve_ivp`` (LSODA, rtol 1e-10) of
the model's ODE written out here, not from pkpd's kernels::

    dAg/dt = -ka Ag,   dAc/dt = ka Ag - (CL/V) Ac - Vmax C / (Km + C),   C = 1000 Ac / V

Design as the healthy single ascending dose study of hetrombopag (Zheng et al.,
Basic Clin Pharmacol Toxicol 2017): groups at 5, 10, 20 and 40 mg, rich
sampling to 96 h.  Residual error ``DV = C (1 + sigma_prop e)``; log-normal IIV
on CL and V (etas centred in the sample).  Units: h, mg, L, L/h, mg/h; C, Km
and DV in ng/mL.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.integrate import solve_ivp

from pkpd.nonmem import read_nonmem
from pkpd.popfit import Param, PopPKModel, ResidualError
from pkpd.regimen import Regimen
from pkpd.saturable import OneCompartmentSaturable

#: Typical values: the saturable path clears 5 L/h at low concentrations (1000 Vmax / Km)
#: and 0.8 L/h at the 40 mg peak (~100 ng/mL), so t1/2 rises with dose.
TRUTH = {"ka": 0.4, "cl": 4.0, "v": 250.0, "vmax": 0.1, "km": 20.0}
#: SD of log P between subjects (parameters without IIV are absent).
OMEGA = {"cl": 0.3, "v": 0.25}
SIGMA_PROP = 0.1
DOSES_MG = (5.0, 10.0, 20.0, 40.0)
TIMES = (0.5, 1.0, 2.0, 4.0, 6.0, 8.0, 12.0, 24.0, 36.0, 48.0, 72.0, 96.0)


def reference_concentrations(p: dict, dose_times, amounts, times) -> np.ndarray:
    """ng/mL at ``times`` (h) after depot boluses ``amounts`` (mg) at ``dose_times``, by solve_ivp."""
    ka, cl, v, vmax, km = (p[k] for k in ("ka", "cl", "v", "vmax", "km"))

    def rhs(t, y):
        c = 1000.0 * y[1] / v
        return [-ka * y[0], ka * y[0] - cl / v * y[1] - vmax * c / (km + c)]

    times = np.asarray(times, dtype=float)
    out = np.zeros(times.size)
    y, t = np.zeros(2), float(min(np.min(times), np.min(dose_times)))
    events = sorted([(float(d), 0, float(a)) for d, a in zip(dose_times, amounts)] +
                    [(float(s), 1, float(i)) for i, s in enumerate(times)])
    for when, kind, value in events:  # a dose at a sampling time comes first (kind 0 < 1)
        if when > t:
            y = solve_ivp(rhs, (t, when), y, method="LSODA", rtol=1e-10, atol=1e-14).y[:, -1]
            t = when
        if kind == 0:
            y[0] += value
        else:
            out[int(value)] = 1000.0 * y[1] / v
    return out


def saturable_study(per_group: int = 6, seed: int = 7, doses_mg=DOSES_MG, times=TIMES, centre_etas: bool = True):
    """``per_group`` subjects at each single dose of ``doses_mg``, sampled at
    ``times``.  ``centre_etas``: shift each sample's etas to mean 0, so that its
    geometric mean is the typical value itself (a single fit is then checked
    against the truth, not against the sample's chance offset); a coverage study
    draws them as they come.  Returns (Dataset with DV in ng/mL, true individual
    parameters)."""
    rng = np.random.default_rng(seed)
    n = per_group * len(doses_mg)
    eta = {k: rng.normal(0.0, OMEGA.get(k, 0.0), n) for k in TRUTH}
    indiv = {k: v * np.exp(eta[k] - (eta[k].mean() if centre_etas else 0.0)) for k, v in TRUTH.items()}
    dose = np.repeat(np.asarray(doses_mg, dtype=float), per_group)
    rows = []
    for i in range(n):
        conc = reference_concentrations({k: a[i] for k, a in indiv.items()}, [0.0], [dose[i]], times)
        dv = conc * (1.0 + SIGMA_PROP * rng.standard_normal(conc.size))
        rows.append(Regimen.single(dose[i]).to_records(i + 1))
        rows.append(pd.DataFrame({"ID": i + 1, "TIME": np.asarray(times, float), "AMT": 0.0, "EVID": 0, "MDV": 0,
                                  "CMT": 2, "DV": dv}))
    table = pd.concat(rows, ignore_index=True)
    return read_nonmem(table, dv_unit="ng/mL"), pd.DataFrame(indiv, index=pd.RangeIndex(1, n + 1, name="ID"))


def saturable_spec(**changes) -> PopPKModel:
    """Priors around (not at) :data:`TRUTH`: medians x0.6 to x1.6, log-SD 1; IIV on
    CL and V (centred: every subject's rich profile pins its own values down)."""
    params = (Param("ka", 0.6, 1.0, None, "1/h"), Param("cl", 6.0, 1.0, 0.4, "L/h", centred=True),
              Param("v", 180.0, 1.0, 0.4, "L", centred=True), Param("vmax", 0.15, 1.0, None, "mg/h"),
              Param("km", 12.0, 1.0, None, "ng/mL"))
    fields = dict(pk=OneCompartmentSaturable, params=params, error=ResidualError("proportional", prop_scale=0.2),
                  conc_unit="ng/mL", name="one-compartment oral, saturable elimination")
    return PopPKModel(**{**fields, **changes})
