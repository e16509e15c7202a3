"""Fitting: bad arguments of ``pkpd.fit``, data it cannot fit, invalid priors,
and fits whose results must not be trusted (one chain; a parameter no data inform).

Argument checks run before the model is built, so those cases cost nothing;
the two warning cases share one built model (compiled density cached on disk)
and each run one short chain of the theophylline data with every weight set to
70 kg, so that the weight exponents have no data at all.
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import pandas as pd

import pkpd.popfit
from bad_inputs import Case, WarnCase
from pkpd.checks import PKPDInputError
from pkpd.nonmem import load_theophylline, read_nonmem
from pkpd.popfit import ConvergenceWarning, UninformedParameterWarning


def _fit(**kwargs):
    """A call of ``pkpd.fit`` on the theophylline data with one argument changed."""
    def call(tmp_path):
        p = pkpd.popfit
        args = {"draws": 100, "tune": 100, "chains": 2, "seed": 1, "progress": False, "verbose": False, **kwargs}
        return p.fit(p.theophylline_model(), load_theophylline(), **args)
    return call


def _fit_data(make_data, **model_changes):
    def call(tmp_path):
        p = pkpd.popfit
        return p.fit(p.theophylline_model(**model_changes), make_data(), draws=100, tune=100, chains=2, seed=1,
                     progress=False, verbose=False)
    return call


def _doses_only():
    table = pd.DataFrame({"ID": [1, 2], "TIME": [0.0, 0.0], "AMT": [320.0, 300.0], "EVID": 1, "MDV": 1,
                          "DV": np.nan, "WT": [80.0, 70.0]})
    return read_nonmem(table, dv_unit="mg/L")


def _predose_only():
    """Concentrations only at the time of the dose (identically 0 in the model, so left out)."""
    table = pd.DataFrame({"ID": [1, 1], "TIME": [0.0, 0.0], "AMT": [0.0, 320.0], "EVID": [0, 1], "MDV": [0, 1],
                          "DV": [0.7, np.nan], "WT": 80.0})
    return read_nonmem(table, dv_unit="mg/L")


def _mislabelled():
    """The theophylline mg/L values declared as ng/mL: 1000-fold below the prior prediction."""
    return read_nonmem(load_theophylline().to_dataframe(), dv_unit="ng/mL")


def _by_dvid():
    """The theophylline concentrations typed by DVID (all CMT 2 would hide which DVID is which)."""
    table = load_theophylline().to_dataframe().assign(DVID=lambda t: np.where(t["EVID"] == 0, 1, 0))
    return read_nonmem(table, dv_unit={1: "mg/L"})


def _spec(make):
    def call(tmp_path):
        return make(pkpd.popfit)
    return call


def _build(make_model):
    def call(tmp_path):
        p = pkpd.popfit
        return p.build_model(make_model(p), load_theophylline())
    return call


def _prepared_only(tmp_path):
    from pkpd.popfit.model import prepare

    p = pkpd.popfit
    return p.fit(prepare(p.theophylline_model(), load_theophylline()), None, seed=1, progress=False, verbose=False)


@functools.lru_cache(maxsize=1)
def _constant_weight_model():
    """The theophylline model built for the data with every WT = 70 kg (compiled once per process)."""
    p = pkpd.popfit
    table = pd.read_csv(resources.files("pkpd").joinpath("data", "theoph_nm.csv"))
    return p.build_model(p.theophylline_model(), read_nonmem(table.assign(WT=70.0), dv_unit="mg/L"))


def _one_chain_fit(tmp_path):
    return pkpd.popfit.fit(_constant_weight_model(), None, draws=300, tune=300, chains=1, seed=11,
                           progress=False, verbose=False)


E = PKPDInputError
CASES = [
    # ---- fit() arguments: checked before anything is built
    Case("fitting-chains-zero", _fit(chains=0), E, ("chains", "0")),
    Case("fitting-draws-negative", _fit(draws=-1), E, ("draws", "-1")),
    Case("fitting-draws-fraction", _fit(draws=2.5), E, ("draws", "2.5")),
    Case("fitting-tune-text", _fit(tune="300"), E, ("tune", "'300'")),
    Case("fitting-tune-nan", _fit(tune=float("nan")), E, ("tune", "nan")),
    Case("fitting-chains-bool", _fit(chains=True), E, ("chains", "True")),
    Case("fitting-seed-negative", _fit(seed=-1), E, ("seed", "-1")),
    Case("fitting-seed-too-large", _fit(seed=2**40), E, ("seed", str(2**40))),
    Case("fitting-seed-text", _fit(seed="abc"), E, ("seed", "'abc'")),
    Case("fitting-cores-zero", _fit(cores=0), E, ("cores", "0")),
    Case("fitting-sampler-unknown", _fit(sampler="stan"), E, ("sampler", "'stan'")),
    Case("fitting-density-unknown", _fit(density="fast"), E, ("density", "'fast'")),
    Case("fitting-init-unknown", _fit(init="jitter"), E, ("init", "'jitter'")),
    Case("fitting-target-accept-one", _fit(target_accept=1.0), E, ("target_accept", "1.0")),
    Case("fitting-target-accept-text", _fit(target_accept="0.9"), E, ("target_accept", "'0.9'")),
    Case("fitting-prepared-model", _prepared_only, E, ("BuiltModel", "prepare()")),
    # ---- data the model cannot fit
    Case("fitting-data-none", _fit_data(lambda: None), E, ("data", "NoneType")),
    Case("fitting-data-doses-only", _fit_data(_doses_only), E, ("no observations",)),
    Case("fitting-data-predose-only", _fit_data(_predose_only), E,
         ("CMT in [2]", "1 concentrations before the first dose")),
    Case("fitting-dv-unit-mismatch", _fit_data(load_theophylline, conc_unit="ng/mL"), E,
         ("conc_unit", "'ng/mL'", "'mg/L'")),
    Case("fitting-dv-unit-mislabelled", _fit_data(_mislabelled, conc_unit="ng/mL"), E,
         ("conc_unit", "mg/L and ng/mL are mixed")),
    Case("fitting-data-typed-by-dvid", _fit_data(_by_dvid), E, ("DVID [1]", "by CMT")),
    Case("fitting-covariate-not-in-data", _build(lambda p: p.theophylline_model(
        covariates=(p.Covariate("cl", "AGE", 40.0),))), E, ("AGE",)),
    # ---- invalid priors and model specifications
    Case("fitting-param-median-negative", _spec(lambda p: p.Param("cl", -1.0)), E, ("median", "-1.0")),
    Case("fitting-param-sd-log-zero", _spec(lambda p: p.Param("cl", 2.8, sd_log=0.0)), E, ("sd_log", "0.0")),
    Case("fitting-param-omega-negative", _spec(lambda p: p.Param("cl", 2.8, omega_scale=-0.3)), E,
         ("omega_scale", "-0.3")),
    Case("fitting-param-name-not-identifier", _spec(lambda p: p.Param("CL/F", 2.8)), E, ("name", "'CL/F'")),
    Case("fitting-covariate-reference-zero", _spec(lambda p: p.Covariate("cl", "WT", 0.0)), E,
         ("reference", "0.0")),
    Case("fitting-covariate-sd-negative", _spec(lambda p: p.Covariate("cl", "WT", 70.0, 0.75, -0.25)), E,
         ("sd", "-0.25")),
    Case("fitting-residual-kind-unknown", _spec(lambda p: p.ResidualError("exponential")), E,
         ("kind", "'exponential'")),
    Case("fitting-residual-scale-zero", _spec(lambda p: p.ResidualError(prop_scale=0.0)), E,
         ("prop_scale", "0.0")),
    Case("fitting-model-without-v", _spec(lambda p: p.PopPKModel(params=(p.Param("ka", 1.0), p.Param("cl", 1.0)))),
         E, ("params", "'v'")),
    Case("fitting-conc-unit-unknown", _spec(lambda p: p.PopPKModel(conc_unit="mmol/L")), E,
         ("conc_unit", "'mmol/L'")),
    Case("fitting-lkj-eta-zero", _spec(lambda p: p.PopPKModel(lkj_eta=0.0)), E, ("lkj_eta", "0.0")),
]


CASES += [
    # ---- fits that finish but must not be trusted
    WarnCase("fitting-one-chain-rhat-not-computed", _one_chain_fit, ConvergenceWarning,
             ("R-hat not computed", "1 chain")),
    WarnCase("fitting-parameter-not-informed", _one_chain_fit, UninformedParameterWarning,
             ("theta_cl_wt", "not informed", "prior SD 0.25")),
]
