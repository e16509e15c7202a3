"""Simulate a PK study from a known population (for design checks and recovery tests).

Concentrations come from :meth:`pkpd.exposure.PKModel.concentrations` (dose-to-dose
propagation), *not* from the fitting kernels, so a fit that recovers the truth
checks the fitting code against an independent implementation.

Population model simulated (log-normal IIV, power covariate on weight)::

    P_i  = P_tv (WT_i / 70)^theta_P exp(eta_P,i),  eta_P,i ~ N(0, omega_P^2)
    DV   = C (1 + sigma_prop e1) + sigma_add e2,   e1, e2 ~ N(0, 1)
    DV < lloq -> BLQ = 1 (DV set to missing, LLOQ column filled)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..checks import PKPDInputError, nonnegative, positive, sorted_times
from ..nonmem import Dataset, read_nonmem
from ..one_compartment import OneCompartmentOral
from ..pk import concentrations
from ..regimen import Regimen
from .model import CONC_UNITS


#: The simulated (one-compartment oral) parameters.
PARAMETERS = tuple(OneCompartmentOral.PARAMETERS)


@dataclass(frozen=True)
class PopulationTruth:
    """Known population values (1/h, L/h, L; omegas are SDs of log P).

    theta : covariate exponents on (WT/70), e.g. ``{"cl": 0.75, "v": 1.0}``.
    sigma_prop : fraction; sigma_add : in the simulated ``conc_unit``.
    """

    ka: float
    cl: float
    v: float
    omega: dict = field(default_factory=lambda: {"ka": 0.4, "cl": 0.3, "v": 0.2})
    theta: dict = field(default_factory=dict)
    sigma_prop: float = 0.1
    sigma_add: float = 0.0

    def __post_init__(self):
        for name in PARAMETERS:
            positive(name, getattr(self, name))
        for name, value in self.omega.items():
            if name not in PARAMETERS:
                raise PKPDInputError(f"omega: unknown parameter {name!r}; use ka, cl or v.")
            nonnegative(f"omega[{name}]", value)
        nonnegative("sigma_prop", self.sigma_prop)
        nonnegative("sigma_add", self.sigma_add)


def simulate_study(
    truth: PopulationTruth,
    n_subjects: int,
    regimen: Regimen,
    times,
    seed: int,
    conc_unit: str = "ng/mL",
    weight_range=(50.0, 100.0),
    lloq: float | None = None,
) -> tuple[Dataset, pd.DataFrame]:
    """Simulate ``n_subjects`` on the same ``regimen`` sampled at ``times`` (h).

    Weights (kg) are uniform on ``weight_range``.  ``lloq`` (in ``conc_unit``)
    turns simulated values below it into BLQ records.  Returns the dataset (read
    back with :func:`pkpd.read_nonmem`, i.e. through the real data path) and the
    true individual parameters (``ID, WT, ka, cl, v``).
    """
    if int(n_subjects) != n_subjects or n_subjects < 2:
        raise PKPDInputError(f"n_subjects must be a whole number >= 2; got {n_subjects!r}.")
    if conc_unit not in CONC_UNITS:
        raise PKPDInputError(f"conc_unit must be one of {list(CONC_UNITS)}; got {conc_unit!r}.")
    times = sorted_times("times", times)
    rng = np.random.default_rng(seed)
    n = int(n_subjects)
    wt = rng.uniform(*weight_range, size=n)
    params = {}
    for name in PARAMETERS:
        eta = rng.normal(0.0, truth.omega.get(name, 0.0), size=n)
        params[name] = getattr(truth, name) * (wt / 70.0) ** truth.theta.get(name, 0.0) * np.exp(eta)
    # PKModel.concentrations gives ng/mL for mg doses; convert to the requested unit explicitly.
    to_unit = CONC_UNITS[conc_unit] / CONC_UNITS["ng/mL"]
    conc = concentrations(regimen, times, params["ka"], params["cl"], params["v"]) * to_unit  # (n, n_times)
    dv = conc * (1 + truth.sigma_prop * rng.standard_normal(conc.shape)) + truth.sigma_add * rng.standard_normal(conc.shape)
    rows = []
    dose_records = regimen.to_records()
    for i in range(n):
        d = dose_records.assign(ID=i + 1, WT=wt[i])
        rows.append(d)
        obs = pd.DataFrame({"ID": i + 1, "TIME": times, "AMT": 0.0, "EVID": 0, "MDV": 0, "CMT": 2, "II": 0.0,
                            "ADDL": 0, "SS": 0, "DV": dv[i], "WT": wt[i]})
        rows.append(obs)
    table = pd.concat(rows, ignore_index=True)
    table["_order"] = (table["EVID"] == 0).astype(int)
    table = table.sort_values(["ID", "TIME", "_order"], kind="stable").drop(columns="_order").reset_index(drop=True)
    if lloq is not None:
        positive("lloq", lloq, conc_unit)
        is_blq = (table["EVID"] == 0) & (table["DV"] < lloq)
        table["BLQ"] = is_blq.astype(int)
        table["LLOQ"] = np.where(is_blq, lloq, np.nan)
        table.loc[is_blq, "DV"] = np.nan
    dataset = read_nonmem(table, dv_unit=conc_unit)
    truth_table = pd.DataFrame({"ID": np.arange(1, n + 1), "WT": wt, **params})
    return dataset, truth_table
