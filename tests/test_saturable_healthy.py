"""Hetrombopag's dose-dependent PK in healthy volunteers, through the public API:
OneCompartmentSaturable with the SATURABLE_* values of pkpd.drugs.hetrombopag,
analysed by pkpd.nca on a phase-I-like schedule, against Zheng et al., Basic
Clin Pharmacol Toxicol 2017 (doi 10.1111/bcpt.12815): Tmax ~8 h, t1/2 rising
with dose within 11.9-40.1 h, Cmax dose-proportional, AUC greater than
dose-proportional, steady state by day 7 of daily dosing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pkpd import OneCompartmentSaturable, Regimen, nca
from pkpd.drugs import hetrombopag as h

#: Single-dose sampling (h): dense around the 8 h peak, then to 5 days
#: (about 3 half-lives at the top dose), as in phase I ascending-dose studies.
SCHEDULE = np.array([0, 1, 2, 3, 4, 6, 8, 10, 12, 24, 36, 48, 72, 96, 120.0])
DOSES = [5.0, 10.0, 20.0, 30.0, 40.0]
MODEL = OneCompartmentSaturable(ka=h.SATURABLE_KA, cl=h.SATURABLE_CL, v=h.SATURABLE_V, vmax=h.SATURABLE_VMAX,
                                km=h.SATURABLE_KM)


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    frames = [pd.DataFrame({"ID": i, "time": SCHEDULE, "conc": MODEL.concentration(Regimen.single(d), SCHEDULE)})
              for i, d in enumerate(DOSES)]
    return nca(pd.concat(frames), dose={i: d for i, d in enumerate(DOSES)}).assign(dose=DOSES)


def test_tmax_is_8_h(table):
    assert (table["tmax"] == 8.0).all()


def test_half_life_rises_with_dose_across_the_published_range(table):
    t = table["half_life"].to_numpy()
    assert (np.diff(t) > 0).all()
    assert 11.9 <= t[0] <= 14.0  # reported 11.9 h at the low end
    assert 33.0 <= t[-1] <= 40.1  # reported 40.1 h at the high end


def test_cmax_is_dose_proportional_and_auc_more_than_proportional(table):
    cmax = table["cmax"] / table["dose"]
    assert cmax.max() / cmax.min() <= 1.25
    auc = (table["auc_inf"] / table["dose"]).to_numpy()
    assert (np.diff(auc) > 0).all()
    assert auc[-1] / auc[0] > 1.2


@pytest.mark.parametrize("dose", [2.5, 5.0, 7.5])
def test_steady_state_by_day_7(dose):
    troughs = MODEL.concentration(Regimen.daily(dose, 14), [7 * 24.0, 14 * 24.0])
    assert abs(troughs[0] / troughs[1] - 1) <= 0.05


def test_linear_clearance_is_the_published_one():
    assert h.SATURABLE_CL == 7.66
    assert set(h.SATURABLE_SOURCES) == set(OneCompartmentSaturable.PARAMETERS)
