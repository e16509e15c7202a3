"""Small hand-made or seeded data sets shared by the fitting tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pkpd.popfit.simulate import PopulationTruth, simulate_study
from pkpd.regimen import Regimen


def small_blq_dataset(n_subjects: int = 3):
    """``n_subjects`` on 100 mg once, 6 samples to 72 h, values below 0.05 mg/L reported BLQ (seeded)."""
    truth = PopulationTruth(ka=0.8, cl=5.0, v=50.0, theta={"cl": 0.75}, sigma_prop=0.1, sigma_add=0.02)
    data, _ = simulate_study(truth, n_subjects, Regimen.single(100.0), [0.5, 2, 6, 24, 48, 72], seed=3,
                             conc_unit="mg/L", lloq=0.05)
    return data


def pkpd_records():
    """Three subjects, different regimens; platelets at 0 h (pre-dose) and later,
    concentrations from 1 h; subject 3 has a dose at 10 days with no PK there."""
    regimens = [Regimen.daily(5.0, 7), Regimen.daily(2.5, 3) + Regimen.daily(7.5, 4, start_h=72),
                Regimen.single(7.5) + Regimen.single(7.5, 240.0)]
    rows = []
    for i, reg in enumerate(regimens):
        sid = i + 1
        rows.append(reg.to_records(sid))
        conc_t = [1.0, 4.0, 8.0, 24.0, 50.0][: 5 - i]
        plt_t = [0.0, 96.0, 168.0, 336.0, 504.0][: 5 - (i == 1)]
        rows.append(pd.DataFrame({"ID": sid, "TIME": conc_t, "AMT": 0.0, "EVID": 0, "MDV": 0, "CMT": 2,
                                  "DV": 10.0 + 5 * np.arange(len(conc_t))}))
        rows.append(pd.DataFrame({"ID": sid, "TIME": plt_t, "AMT": 0.0, "EVID": 0, "MDV": 0, "CMT": 3,
                                  "DV": 240.0 + 30 * np.arange(len(plt_t)) - 20 * i}))
    table = pd.concat(rows, ignore_index=True)
    table["_o"] = (table["EVID"] != 0).astype(int)
    return table.sort_values(["ID", "TIME", "_o"], kind="stable").drop(columns="_o").reset_index(drop=True)
