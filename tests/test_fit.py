"""Bayesian population PK fitting (pkpd.popfit) against independent truth.

Truth used here, never the code's own earlier output:

* kernels: the textbook Bateman function, its ka == k limit, a brute-force sum
  of 4000 doses for steady state, finite differences of the textbook formula
  for gradients, and :func:`pkpd.pk.concentrations` (dose-to-dose propagation,
  a different algorithm) for resets / SS=1 / SS=2 regimens;
* the model's log density: scipy densities written out term by term with
  concentrations from :func:`pkpd.pk.concentrations`;
* fits: the published nlme estimates for the theophylline data (Pinheiro &
  Bates 2000, "Mixed-Effects Models in S and S-PLUS", section 8.2:
  lKa = 0.451, lKe = -2.433, lCl = -3.214 with dose per kg), and recovery of a
  seeded simulated population (simulated with pkpd.pk, not with the fitting
  kernels);
* diagnostics: planted problems (too few draws; flip-flop ka <-> k, which makes
  ka non-identifiable and the posterior bimodal; one chain, where R-hat cannot
  be computed; clustered tails) must raise ConvergenceWarning, and a weight
  exponent fitted to data whose weights are all 70 kg (its posterior is exactly
  its prior) an UninformedParameterWarning; prior SDs against scipy and
  rejection sampling of the LKJ density.

Sampling is the expensive part (~10 s numba compilation per model on a warm
cache, ~30 s cold); each model is compiled once (module fixtures).
"""

from __future__ import annotations

import warnings

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from pkpd.checks import PKPDInputError
from pkpd.nonmem import load_theophylline, read_nonmem
from pkpd.pk import concentrations
from pkpd.popfit import (
    ConvergenceWarning, Covariate, Param, PopPKModel, ResidualError, UninformedParameterWarning, build_model,
    diagnose, dose_design, fit, theophylline_model,
)
from pkpd.popfit import kernels, plots
from pkpd.popfit.design import flatten
from pkpd.popfit.sampling import warn_if_problems
from pkpd.popfit.simulate import PopulationTruth, simulate_study
from pkpd.regimen import Dose, Regimen

from notebooks import run_notebook
from studies import small_blq_dataset


# ================================================================ kernels
def textbook_bateman(t, dose, ka, k, v):
    """C(t) = D ka / (V (ka - k)) (e^{-k t} - e^{-ka t}), mg/L."""
    return dose * ka / (v * (ka - k)) * (np.exp(-k * t) - np.exp(-ka * t))


def _single_design(times, dose=100.0):
    reg = (Regimen.single(dose),)
    return dose_design(reg, np.zeros(len(times), int), np.asarray(times, float))


def test_kernel_single_dose_matches_textbook_bateman():
    t = np.array([0.0, 0.1, 0.5, 1, 2, 6, 12, 24, 72])
    ka, cl, v = 1.3, 4.0, 40.0
    n = t.size
    c = kernels.one_compartment_oral(np, np.full(n, ka), np.full(n, cl), np.full(n, v), _single_design(t))
    np.testing.assert_allclose(c, textbook_bateman(t, 100.0, ka, cl / v, v), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("rel", [0.0, 1e-12, 1e-7, -1e-7])
def test_kernel_exact_when_ka_equals_k(rel):
    """At ka == k the Bateman function tends to D k t e^{-k t} / V (L'Hopital)."""
    t = np.array([0.5, 2, 10, 40])
    cl, v = 3.0, 30.0
    k = cl / v
    ka = k * (1 + rel)
    n = t.size
    c = kernels.one_compartment_oral(np, np.full(n, ka), np.full(n, cl), np.full(n, v), _single_design(t))
    limit = 100.0 * k * t * np.exp(-k * t) / v
    np.testing.assert_allclose(c, limit, rtol=2e-6)


def test_kernel_steady_state_equals_sum_of_many_doses():
    ka, cl, v, ii, dose = 0.34, 7.66, 265.0, 24.0, 5.0
    k = cl / v
    tau = np.array([0.0, 3.0, 8.0, 23.9])
    brute = sum(textbook_bateman(tau + m * ii, dose, ka, k, v) for m in range(4000))
    reg = (Regimen((Dose(100.0, dose, ss=1, ii=ii),)),)
    design = dose_design(reg, np.zeros(tau.size, int), 100.0 + tau)
    n = tau.size
    c = kernels.one_compartment_oral(np, np.full(n, ka), np.full(n, cl), np.full(n, v), design)
    np.testing.assert_allclose(c, brute, rtol=1e-10)


def test_kernel_matches_pk_module_on_resets_and_steady_state():
    """Superposition over the padded design vs pkpd.pk's dose-to-dose propagation."""
    reg = Regimen((
        Dose(0, 5.0), Dose(24, 5.0), Dose(48, 7.5), Dose(60, 2.5, ss=2, ii=12.0),
        Dose(100, 5.0, reset=True), Dose(110, 5.0), Dose(150, 3.75, ss=1, ii=24.0), Dose(174, 3.75),
    ))
    times = np.array([0, 1, 23.9, 24, 30, 55, 61, 99.9, 100, 101, 115, 149, 150, 151, 160, 180, 300])
    ka, cl, v = 0.34, 7.66, 265.0
    design = dose_design((reg,), np.zeros(times.size, int), times)
    n = times.size
    c = kernels.one_compartment_oral(np, np.full(n, ka), np.full(n, cl), np.full(n, v), design, scale=1000.0)
    np.testing.assert_allclose(c, concentrations(reg, times, ka, cl, v)[0], rtol=1e-10, atol=1e-12)


def test_pytensor_kernel_value_and_gradient():
    """Same values as NumPy; gradient finite at ka == k and equal to central
    differences of the textbook formula elsewhere."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode

    t = np.array([0.5, 1.0, 4.0, 12.0])
    design = _single_design(t)
    ka, cl, v = pt.dscalar("ka"), pt.dscalar("cl"), pt.dscalar("v")
    ones = pt.ones(t.size)
    conc = kernels.one_compartment_oral(pt, ka * ones, cl * ones, v * ones, design)
    total = conc.sum()
    f = pytensor.function([ka, cl, v], [conc, *pt.grad(total, [ka, cl, v])], mode=Mode(linker="py", optimizer="fast_compile"))
    c, g_ka, g_cl, g_v = f(1.1, 5.0, 50.0)
    np.testing.assert_allclose(c, textbook_bateman(t, 100.0, 1.1, 0.1, 50.0), rtol=1e-12)
    h = 1e-6
    fd = lambda i: (textbook_bateman(t, 100, *_shift(i, h)).sum() - textbook_bateman(t, 100, *_shift(i, -h)).sum()) / (2 * h)
    # parameters of textbook_bateman are (ka, k, v); map gradients with the chain rule k = cl / v
    d_ka, d_k, d_v = fd(0), fd(1), fd(2)
    np.testing.assert_allclose(g_ka, d_ka, rtol=1e-6)
    np.testing.assert_allclose(g_cl, d_k / 50.0, rtol=1e-6)
    np.testing.assert_allclose(g_v, d_v - d_k * 5.0 / 50.0**2, rtol=1e-6)
    # exactly at ka == k = 0.1: finite value and gradient
    out = f(0.1, 5.0, 50.0)
    assert all(np.all(np.isfinite(o)) for o in out)
    np.testing.assert_allclose(out[0], 100 * 0.1 * t * np.exp(-0.1 * t) / 50.0, rtol=1e-10)


@pytest.mark.parametrize("rel", [0.0, 1e-9, 1e-7, 1e-5, 3e-4, -3e-4])
def test_pytensor_gradient_accurate_near_ka_equals_k(rel):
    """d C / d ka near ka == k against the analytic derivative of the limit:
    C = D ka g / V with g = t e^{-kt} phi1((ka-k) t), phi1(x) = (1-e^{-x})/x, so at
    ka -> k: dC/dka = D/V (t e^{-kt} - k t^2 e^{-kt} / 2) + O(ka - k)."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import Mode

    t = np.array([1.0, 5.0, 20.0])
    k, v = 0.1, 50.0
    ka = pt.dscalar("ka")
    ones = pt.ones(t.size)
    conc = kernels.one_compartment_oral(pt, ka * ones, k * v * ones, v * ones, _single_design(t))
    grads = [pytensor.grad(conc[i], ka) for i in range(t.size)]
    f = pytensor.function([ka], grads, mode=Mode(linker="py", optimizer="fast_compile"))
    got = np.array(f(k * (1 + rel)))
    exact = 100.0 / v * (t * np.exp(-k * t) - k * t**2 * np.exp(-k * t) / 2)
    np.testing.assert_allclose(got, exact, rtol=max(abs(rel) * 20, 1e-9), atol=abs(rel) * 100 + 1e-12)


@pytest.mark.parametrize("mode", ["FAST_RUN", "NUMBA"])
@pytest.mark.parametrize("ka_over_k", [12.0, 1.0, 1 + 1e-7, 0.5])
def test_compiled_concentration_op_matches_tensor_expression(mode, ka_over_k):
    """pkpd.popfit.pk_op (numba loops, hand-written gradient, used by the PyMC
    model) against the tensor expression above with PyTensor's automatic
    gradient: three subjects, multiple doses and a reset, ka above, at, next to
    and below k.  A steady-state design falls back to the tensor expression."""
    import pytensor
    import pytensor.tensor as pt

    from pkpd.popfit.pk_op import concentrations_tensor

    regs = (Regimen.daily(5.0, 3), Regimen((Dose(0, 7.5), Dose(30, 2.5), Dose(60, 5.0, reset=True))),
            Regimen.single(10.0))
    subject = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2, 0])
    times = np.array([0.5, 24.0, 50.0, 1.0, 31.0, 59.0, 72.0, 2.0, 240.0, 80.0])
    design = dose_design(regs, subject, times)
    cl, v = np.array([7.7, 5.0, 9.0]), np.array([265.0, 200.0, 300.0])
    ka_value = ka_over_k * cl / v
    ka, clv, vv = pt.dvector("ka"), pt.dvector("cl"), pt.dvector("v")
    weights = np.linspace(-1.0, 2.0, times.size)
    outputs = []
    for conc in (concentrations_tensor(ka, clv, vv, subject, design, 1000.0),
                 kernels.one_compartment_oral(pt, ka[subject], clv[subject], vv[subject], design, 1000.0)):
        total = (weights * conc).sum()
        outputs.append(pytensor.function([ka, clv, vv], [conc, *pt.grad(total, [ka, clv, vv])], mode=mode))
    op_graph = outputs[0].maker.fgraph.toposort()
    assert any(type(node.op).__name__ == "ConcOp" for node in op_graph)
    got, want = outputs[0](ka_value, cl, v), outputs[1](ka_value, cl, v)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-14)

    steady = dose_design((Regimen.daily(5.0, 3, steady_state=True),), np.zeros(2, int), np.array([1.0, 30.0]))
    fallback = concentrations_tensor(ka[:1], clv[:1], vv[:1], np.zeros(2, int), steady, 1000.0)
    assert "ConcOp" not in str(pytensor.dprint(fallback, file="str"))


def _shift(i, h):
    p = [1.1, 0.1, 50.0]
    p[i] += h
    return p


# ================================================================ data and model checks
def test_predose_observations_are_left_out_and_listed():
    fd = flatten(load_theophylline())
    block = fd.blocks[2]
    assert block.n == 120 and len(fd.excluded) == 12
    assert (fd.excluded["time"] == 0).all()
    assert set(fd.excluded["ID"]) == set(range(1, 13))


def test_unit_mismatch_is_a_clear_error():
    data = load_theophylline()  # DV in mg/L
    with pytest.raises(PKPDInputError, match="conc_unit.*'ng/mL'.*'mg/L'"):
        build_model(theophylline_model(conc_unit="ng/mL"), data)
    # the same numbers claimed to be ng/mL: 1000-fold off the prior prediction
    mislabelled = read_nonmem(load_theophylline().to_dataframe(), dv_unit="ng/mL")
    with pytest.raises(PKPDInputError, match="mg/L and ng/mL are mixed"):
        build_model(theophylline_model(conc_unit="ng/mL"), mislabelled)


def test_bad_specifications_name_field_and_fix():
    with pytest.raises(PKPDInputError, match="median must be finite and > 0"):
        Param("cl", -1.0)
    with pytest.raises(PKPDInputError, match="kind must be one of"):
        ResidualError("exponential")
    with pytest.raises(PKPDInputError, match="must include 'v'"):
        PopPKModel(params=(Param("ka", 1.0), Param("cl", 1.0)))
    with pytest.raises(PKPDInputError, match="covariate 'AGE' is not a time-constant covariate"):
        build_model(theophylline_model(covariates=(Covariate("cl", "AGE", 40.0),)), load_theophylline())
    with pytest.raises(PKPDInputError, match="dv_unit is required"):
        fit(theophylline_model(), pd.DataFrame({"ID": [1]}))
    with pytest.raises(PKPDInputError, match="draws must be a whole number"):
        fit(theophylline_model(), load_theophylline(), draws=0, seed=1)


def test_model_log_density_equals_scipy_term_by_term():
    """The PyMC model's log density (no Jacobian) at a point, recomputed with
    scipy densities and pkpd.pk concentrations; includes BLQ (M3) rows."""
    from pytensor.compile.mode import Mode

    data = small_blq_dataset()
    spec = PopPKModel(
        params=(Param("ka", 1.0, 0.7, 0.4), Param("cl", 4.0, 0.8, 0.5), Param("v", 40.0, 0.6, 0.3)),
        covariates=(Covariate("cl", "WT", 70.0, 0.75, 0.2),),
        error=ResidualError("combined", prop_scale=0.2, add_scale=0.1), conc_unit="mg/L",
    )
    built = build_model(spec, data)
    block = built.data.blocks[2]
    assert block.n_blq > 0, "the test needs BLQ rows"
    rng = np.random.default_rng(0)
    point = {"ka": 0.9, "cl": 5.5, "v": 45.0, "theta_cl_wt": 0.6, "omega_ka": 0.3, "omega_cl": 0.25,
             "omega_v": 0.15, "sigma_prop": 0.12, "sigma_add": 0.03}
    z = {n: rng.standard_normal(3) for n in ("ka", "cl", "v")}
    values = {f"{k}_log__": np.log(v) for k, v in point.items() if k != "theta_cl_wt"}
    values["theta_cl_wt"] = point["theta_cl_wt"]
    values.update({f"eta_{n}_z": z[n] for n in z})
    logp = built.pymc_model.compile_logp(jacobian=False, mode=Mode(linker="py", optimizer="fast_compile"))
    got = float(logp(values))

    expected = 0.0
    for p in spec.params:
        expected += stats.lognorm.logpdf(point[p.name], s=p.sd_log, scale=p.median)
        expected += stats.halfnorm.logpdf(point[f"omega_{p.name}"], scale=p.omega_scale)
        expected += stats.norm.logpdf(z[p.name]).sum()
    expected += stats.norm.logpdf(point["theta_cl_wt"], 0.75, 0.2)
    expected += stats.halfnorm.logpdf(point["sigma_prop"], scale=0.2)
    expected += stats.halfnorm.logpdf(point["sigma_add"], scale=0.1)
    for i, s in enumerate(data.subjects):
        wt = s.covariates["WT"]
        ka = point["ka"] * np.exp(point["omega_ka"] * z["ka"][i])
        cl = point["cl"] * (wt / 70) ** point["theta_cl_wt"] * np.exp(point["omega_cl"] * z["cl"][i])
        v = point["v"] * np.exp(point["omega_v"] * z["v"][i])
        obs = s.observations
        c = concentrations(s.regimen, obs["time"].to_numpy(), ka, cl, v)[0] / 1000.0  # ng/mL -> mg/L
        sd = np.sqrt(point["sigma_add"] ** 2 + (point["sigma_prop"] * c) ** 2)
        blq = obs["blq"].to_numpy() == 1
        expected += stats.norm.logpdf(obs["dv"].to_numpy()[~blq], c[~blq], sd[~blq]).sum()
        expected += stats.norm.logcdf(obs["lloq"].to_numpy()[blq], c[blq], sd[blq]).sum()
    assert got == pytest.approx(expected, rel=1e-10)


def test_correlated_iiv_model_has_lkj_and_named_variables():
    built = build_model(theophylline_model(correlated_iiv=True), load_theophylline())
    names = set(built.pymc_model.named_vars)
    assert {"ka", "cl", "v", "omega_ka", "omega_cl", "omega_v", "omega_corr", "eta_ka", "eta_cl", "eta_v",
            "sigma_prop", "sigma_add", "theta_cl_wt", "theta_v_wt"} <= names
    uncorrelated = build_model(theophylline_model(), load_theophylline())
    assert "omega_corr" not in uncorrelated.pymc_model.named_vars


# ================================================================ theophylline fit
@pytest.fixture(scope="module")
def theoph():
    model = theophylline_model()
    data = load_theophylline()
    built = build_model(model, data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        idata = fit(built, None, draws=1000, tune=1000, chains=4, seed=20240501, progress=False, verbose=False)
    return model, data, built, idata, caught


def test_theophylline_fit_converges(theoph):
    _, _, _, idata, caught = theoph
    assert not [w for w in caught if issubclass(w.category, ConvergenceWarning)]
    uninformed = " ".join(str(w.message) for w in caught if issubclass(w.category, UninformedParameterWarning))
    assert not any(f"{name} is not informed" in uninformed for name in ("ka", "cl", "v", "omega_cl", "sigma_add"))
    diag = diagnose(idata, var_names=["ka", "cl", "v", "omega_ka", "omega_cl", "omega_v", "sigma_prop", "sigma_add"])
    assert diag.summary.loc["cl", "contraction"] > 0.9  # 12 subjects pin CL down: posterior SD < 1/3 prior SD
    assert diag.n_divergent == 0
    assert diag.max_rhat <= 1.01
    assert diag.min_ess_bulk >= 400
    assert idata.attrs["chains"] == 4 and idata.attrs["draws"] == 1000 and idata.attrs["sampler"] == "nutpie"
    for group in ("posterior", "posterior_predictive", "observed_data", "log_likelihood", "sample_stats"):
        assert group in idata.groups()
    assert idata.log_likelihood["conc"].shape == (4, 1000, 120)


def test_compiled_density_and_pytensor_graph_sample_the_same_posterior(theoph):
    """pkpd's compiled density (the default) and the PyTensor graph of the PyMC
    model are two implementations of one posterior: their posterior means agree
    within Monte Carlo error (4 standard errors of the difference)."""
    import arviz as az

    _, _, built, idata, _ = theoph
    assert idata.attrs["density"] == "compiled"
    graph = fit(built, None, draws=1000, tune=1000, chains=4, seed=7, progress=False, verbose=False,
                density="pytensor")
    assert graph.attrs["density"] == "pytensor"
    names = ["ka", "cl", "v", "theta_cl_wt", "theta_v_wt", "omega_ka", "omega_cl", "omega_v", "sigma_prop",
             "sigma_add"]
    for name in names:
        a, b = idata.posterior[name], graph.posterior[name]
        se = np.hypot(az.mcse(a.values).item(), az.mcse(b.values).item())
        assert abs(float(a.mean()) - float(b.mean())) < 4 * se, name


def test_low_rank_mass_matrix_samples_the_same_posterior(theoph):
    """nutpie's low-rank mass-matrix adaptation (mass_matrix="low_rank") is another
    sampler of the same posterior: it converges, and its posterior means agree with
    the diagonal adaptation's within 4 Monte Carlo standard errors of the difference."""
    import arviz as az

    _, _, built, idata, _ = theoph
    low = fit(built, None, draws=1000, tune=1000, chains=4, seed=8, progress=False, verbose=False,
              mass_matrix="low_rank")
    assert low.attrs["mass_matrix"] == "low_rank" and idata.attrs["mass_matrix"] == "diag"
    diag = diagnose(low, var_names=["ka", "cl", "v", "omega_ka", "omega_cl", "omega_v", "sigma_prop", "sigma_add"])
    assert diag.n_divergent == 0 and diag.max_rhat <= 1.01
    for name in ("ka", "cl", "v", "omega_ka", "omega_cl", "omega_v", "sigma_prop", "sigma_add"):
        a, b = idata.posterior[name], low.posterior[name]
        se = np.hypot(az.mcse(a.values).item(), az.mcse(b.values).item())
        assert abs(float(a.mean()) - float(b.mean())) < 4 * se, name
    with pytest.raises(PKPDInputError, match="mass_matrix"):
        fit(built, None, draws=10, tune=10, chains=1, seed=1, progress=False, verbose=False, mass_matrix="dense")
    with pytest.raises(PKPDInputError, match="mass_matrix"):
        fit(built, None, draws=10, tune=10, chains=1, seed=1, progress=False, verbose=False, sampler="pymc",
            mass_matrix="low_rank")


def test_theophylline_estimates_agree_with_published_nlme_fit(theoph):
    """Pinheiro & Bates (2000) nlme: ka = e^0.451 = 1.57 /h, CL = e^-3.214 =
    0.0402 L/h/kg, V = CL/ke = 0.0402 / e^-2.433 = 0.458 L/kg; at 70 kg
    CL = 2.81 L/h and V = 32.1 L.  Our 90% intervals must contain them."""
    idata = theoph[3]
    published = {"ka": np.exp(0.451), "cl": np.exp(-3.214) * 70, "v": np.exp(-3.214) / np.exp(-2.433) * 70}
    for name, value in published.items():
        lo, hi = np.quantile(idata.posterior[name].values, [0.05, 0.95])
        assert lo < value < hi, (name, lo, value, hi)


def test_pointwise_log_likelihood_and_ipred_from_independent_pk(theoph):
    """For a few draws, IPRED and the stored pointwise log-likelihood equal a
    recomputation with pkpd.pk.concentrations and scipy."""
    _, data, built, idata, _ = theoph
    post = idata.posterior
    block = built.data.blocks[2]
    for chain, draw in ((0, 0), (2, 517), (3, 999)):
        p = post.isel(chain=chain, draw=draw)
        ll = idata.log_likelihood["conc"].isel(chain=chain, draw=draw).values
        ipred = p["conc_ipred"].values
        for k, s in enumerate(data.subjects):
            wt = s.covariates["WT"]
            ka = float(p["ka"] * np.exp(p["eta_ka"][k]))
            cl = float(p["cl"] * (wt / 70) ** p["theta_cl_wt"] * np.exp(p["eta_cl"][k]))
            v = float(p["v"] * (wt / 70) ** p["theta_v_wt"] * np.exp(p["eta_v"][k]))
            rows = block.subject == k
            c = concentrations(s.regimen, block.time[rows], ka, cl, v)[0] / 1000.0
            np.testing.assert_allclose(ipred[rows], c, rtol=1e-9)
            sd = np.sqrt(float(p["sigma_add"]) ** 2 + (float(p["sigma_prop"]) * c) ** 2)
            np.testing.assert_allclose(ll[rows], stats.norm.logpdf(block.dv[rows], c, sd), rtol=1e-9)


def test_diagnostic_tables_and_plots(theoph):
    model, data, built, idata, _ = theoph
    r = plots.residuals(idata)
    assert len(r) == 120 and r["cwres"].notna().all()
    # conditional residuals of an adequate model: centred, SD <= ~1
    assert abs(r["cwres"].mean()) < 0.3 and 0.4 < r["cwres"].std() < 1.2
    shrink = plots.eta_shrinkage(idata)
    assert list(shrink.index) == ["ka", "cl", "v"] and (shrink < 0.5).all()
    table = plots.vpc(idata, model, data, n_sim=100, n_bins=6)
    assert len(table) == 6 and table["n"].sum() == 120
    assert (table["sim_p50_lo"] <= table["sim_p50_hi"]).all()
    pc = plots.vpc(idata, model, data, n_sim=50, n_bins=6, pred_corrected=True)
    assert pc.attrs["pred_corrected"]
    import matplotlib.pyplot as plt

    for fig in (plots.plot_gof(idata), plots.plot_individual_fits(idata, model, data, ids=[1, 2], n_draws=50),
                plots.plot_vpc(idata, model, data, n_sim=30, pred_corrected=True), plots.plot_eta_shrinkage(idata)):
        assert fig.axes
        plt.close(fig)


def test_too_few_draws_warns(theoph):
    built = theoph[2]
    with pytest.warns(ConvergenceWarning, match="bulk ESS"):
        idata = fit(built, None, draws=60, tune=150, chains=2, seed=3, progress=False, verbose=False)
    assert idata.attrs["compile_s"] < 1.0  # the compiled model was reused


# ================================================================ planted non-identifiability
def test_flip_flop_non_identifiable_ka_warns():
    """Without IIV, ka and k = CL/V can be swapped (with V' = V k / ka) without
    changing any concentration: two modes of equal likelihood.  Chains started
    from their own prior draws (init="prior", overdispersed) end in different
    modes, so R-hat must flag ka."""
    truth = PopulationTruth(ka=0.3, cl=1.0, v=10.0, omega={}, sigma_prop=0.1)
    data, _ = simulate_study(truth, 8, Regimen.single(100.0), [0.5, 1, 2, 4, 6, 8, 12, 24, 36, 48], seed=11,
                             conc_unit="mg/L")
    # priors centred between the two modes (ka 0.3 or 0.1; V 10 or 3.3)
    spec = PopPKModel(
        params=(Param("ka", np.sqrt(0.3 * 0.1), 1.5, None), Param("cl", 1.0, 1.0, None),
                Param("v", np.sqrt(10.0 * 10.0 / 3), 1.5, None)),
        error=ResidualError("proportional", prop_scale=0.3), conc_unit="mg/L",
    )
    with pytest.warns(ConvergenceWarning, match=r"R-hat .* for .*ka"):
        idata = fit(spec, data, draws=300, tune=300, chains=8, seed=5, init="prior", progress=False, verbose=False)
    chain_means = idata.posterior["ka"].mean("draw").values
    assert chain_means.min() < 0.15 and chain_means.max() > 0.25  # both modes visited


# ================================================================ recovery of a simulated truth
def test_recovers_simulated_population():
    """Seeded population (24 subjects, weight covariate, combined error, BLQ
    below 0.05 mg/L): the 90% intervals of the typical values contain the truth
    and the medians are within 25% of it.  (For a correct method the chance that
    one given seed misses at least one of three 90% intervals is ~27%; the seed
    is fixed, and benchmarks/bench_fit_coverage.py measures coverage over 20
    datasets.)"""
    truth = PopulationTruth(ka=1.0, cl=5.0, v=50.0, omega={"ka": 0.4, "cl": 0.3, "v": 0.2},
                            theta={"cl": 0.75, "v": 1.0}, sigma_prop=0.15, sigma_add=0.02)
    data, _ = simulate_study(truth, 24, Regimen.single(100.0), [0.5, 1, 2, 4, 6, 8, 12, 24, 36], seed=2024,
                             conc_unit="mg/L", lloq=0.1)
    spec = PopPKModel(
        params=(Param("ka", 1.5, 1.0, 0.6, "1/h"), Param("cl", 3.0, 1.0, 0.6, "L/h"), Param("v", 30.0, 1.0, 0.6, "L")),
        covariates=(Covariate("cl", "WT", 70.0, 0.75, 0.25), Covariate("v", "WT", 70.0, 1.0, 0.25)),
        error=ResidualError("combined", prop_scale=0.3, add_scale=0.1), conc_unit="mg/L",
    )
    with warnings.catch_warnings():
        # R-hat of cl sits near the 1.01 warning level at this length (bulk ESS ~900); checked below with margin
        warnings.simplefilter("ignore", ConvergenceWarning)
        idata = fit(spec, data, draws=1000, tune=700, chains=4, seed=7, progress=False, verbose=False)
    diag = diagnose(idata, var_names=["ka", "cl", "v", "theta_cl_wt", "theta_v_wt"])
    assert diag.n_divergent == 0 and diag.max_rhat < 1.02 and diag.min_ess_bulk > 400
    blq = idata.constant_data["conc_blq"].values
    assert blq.sum() > 5, "the recovery data should exercise the M3 likelihood"
    # stored M3 log-likelihood of BLQ rows: log P(DV < LLOQ) = log Phi((LLOQ - IPRED) / sd)
    p = idata.posterior.isel(chain=1, draw=123)
    ipred = p["conc_ipred"].values[blq]
    sd = np.sqrt(float(p["sigma_add"]) ** 2 + (float(p["sigma_prop"]) * ipred) ** 2)
    lloq = idata.constant_data["conc_lloq"].values[blq]
    np.testing.assert_allclose(idata.log_likelihood["conc"].isel(chain=1, draw=123).values[blq],
                               stats.norm.logcdf(lloq, ipred, sd), rtol=1e-9)
    for name in ("ka", "cl", "v"):
        x = idata.posterior[name].values.ravel()
        lo, med, hi = np.quantile(x, [0.05, 0.5, 0.95])
        value = getattr(truth, name)
        assert lo < value < hi, (name, lo, value, hi)
        assert abs(med / value - 1) < 0.25, (name, med, value)


# ================================================================ notebook
def test_theophylline_notebook_runs_with_fast_settings(monkeypatch):
    """notebooks/01_theophylline_pk.ipynb executes top to bottom (PKPD_FAST=1)
    and its fit agrees with the published nlme estimates."""
    _, text = run_notebook("01_theophylline_pk.ipynb", monkeypatch)
    assert "fast settings" in text
    assert "OK: R-hat <= 1.01" in text  # the fast fit still passes every diagnostic
    assert "inside 90% CrI" in text and "False" not in text.split("inside 90% CrI")[1].split("median ratio")[0]


# ================================================================ PD extension point
def test_extra_endpoint_adds_a_pd_likelihood_term():
    """A PD endpoint (CMT 3) plugs into the builder: its predict function gets the
    individual parameters (PK and the extra PD ones) and the observation block;
    the model's log density then equals scipy's term by term (here a direct
    Emax effect on a baseline, E = base (1 + emax C / (ec50 + C)))."""
    from pytensor.compile.mode import Mode

    from pkpd.popfit import Endpoint

    truth = PopulationTruth(ka=1.0, cl=5.0, v=50.0, omega={}, sigma_prop=0.1)
    pk_data, _ = simulate_study(truth, 2, Regimen.single(100.0), [1, 4, 12], seed=5, conc_unit="mg/L")
    table = pk_data.to_dataframe()
    pd_rows = table[table["EVID"] == 0].assign(CMT=3, DV=[200.0, 230, 210, 190, 240, 205])
    table = pd.concat([table, pd_rows]).sort_values(["ID", "TIME", "EVID"], ascending=[True, True, False],
                                                     kind="stable")
    data = read_nonmem(table, dv_unit="mg/L")

    def predict(xp, indiv, block):
        s = block.subject
        conc = kernels.one_compartment_oral(xp, indiv["ka"][..., s], indiv["cl"][..., s], indiv["v"][..., s],
                                            block.design)
        emax, ec50, base = indiv["emax"][..., s], indiv["ec50"][..., s], indiv["base"][..., s]
        return base * (1 + emax * conc / (ec50 + conc))

    # a PK-only fit of these data leaves the platelets out, and says so
    pk_only = flatten(data)
    assert set(pk_only.blocks) == {2} and (pk_only.excluded["cmt"] == 3).sum() == 6
    assert pk_only.excluded["reason"].str.contains("CMT 3").all()

    effect = Endpoint("plt", 3, "10^9/L", predict, ResidualError("proportional", prop_scale=0.2), "_plt")
    spec = PopPKModel(
        params=(Param("ka", 1.0, 0.5, None), Param("cl", 5.0, 0.5, None), Param("v", 50.0, 0.5, None),
                Param("emax", 0.5, 1.0, None), Param("ec50", 1.0, 1.0, None), Param("base", 200.0, 0.5, 0.3)),
        error=ResidualError("proportional", prop_scale=0.3), conc_unit="mg/L", endpoints=(effect,),
    )
    built = build_model(spec, data)
    assert {"plt", "sigma_prop_plt", "emax", "eta_base"} <= set(built.pymc_model.named_vars)
    point = {"ka": 0.8, "cl": 4.0, "v": 60.0, "emax": 0.3, "ec50": 1.5, "base": 210.0, "omega_base": 0.1,
             "sigma_prop": 0.12, "sigma_prop_plt": 0.08}
    z = np.array([0.5, -1.0])
    values = {f"{k}_log__": np.log(v) for k, v in point.items()}
    values["eta_base_z"] = z
    logp = built.pymc_model.compile_logp(jacobian=False, mode=Mode(linker="py", optimizer="fast_compile"))
    expected = sum(stats.lognorm.logpdf(point[p.name], s=p.sd_log, scale=p.median) for p in spec.params)
    expected += stats.halfnorm.logpdf(point["omega_base"], scale=0.3) + stats.norm.logpdf(z).sum()
    expected += stats.halfnorm.logpdf(point["sigma_prop"], scale=0.3)
    expected += stats.halfnorm.logpdf(point["sigma_prop_plt"], scale=0.2)
    for i, s in enumerate(data.subjects):
        obs = s.observations
        for cmt in (2, 3):
            o = obs[obs["cmt"] == cmt]
            c = concentrations(s.regimen, o["time"].to_numpy(), point["ka"], point["cl"], point["v"])[0] / 1000
            if cmt == 2:
                mu, sd = c, point["sigma_prop"] * c
            else:
                mu = point["base"] * np.exp(0.1 * z[i]) * (1 + point["emax"] * c / (point["ec50"] + c))
                sd = point["sigma_prop_plt"] * mu
            expected += stats.norm.logpdf(o["dv"].to_numpy(), mu, sd).sum()
    # abs: PyMC's LogNormal logp itself differs from scipy's by ~2e-9 at sigma = 0.5
    assert float(logp(values)) == pytest.approx(expected, rel=1e-10, abs=1e-8)


# ================================================================ diagnostics on constructed chains
def test_diagnose_flags_constructed_problems():
    """Chains built with known defects: one chain offset by 1 SD (R-hat >> 1.01),
    strongly autocorrelated chains (ESS << 400), a divergence flag, and a
    correlation matrix whose diagonal and upper triangle must not be tabulated."""
    import arviz as az

    rng = np.random.default_rng(0)
    good = rng.standard_normal((4, 1000))
    shifted = good + np.array([0, 0, 0, 1.0])[:, None]
    ar = np.zeros((4, 1000))
    for t in range(1, 1000):
        ar[:, t] = 0.99 * ar[:, t - 1] + rng.standard_normal(4) * np.sqrt(1 - 0.99**2)
    rho = np.tanh(0.3 + 0.05 * rng.standard_normal((4, 1000)))
    corr = np.ones((4, 1000, 2, 2))
    corr[..., 0, 1] = corr[..., 1, 0] = rho
    energy = rng.standard_normal((4, 1000))
    idata = az.from_dict(
        posterior={"good": good, "shifted": shifted, "sticky": ar, "omega_corr": corr},
        sample_stats={"diverging": np.zeros((4, 1000), bool), "energy": energy},
        dims={"omega_corr": ["iiv_param", "iiv_param_"]},
        coords={"iiv_param": ["ka", "cl"], "iiv_param_": ["ka", "cl"]},
    )
    d = diagnose(idata)
    assert d.summary.loc["good", "r_hat"] < 1.01 and d.summary.loc["shifted", "r_hat"] > 1.05
    assert d.summary.loc["sticky", "ess_bulk"] < 100
    assert list(d.summary.index) == ["good", "shifted", "sticky", "omega_corr[cl,ka]"]
    assert d.n_divergent == 0
    assert any("R-hat" in p and "shifted" in p for p in d.problems)
    assert any("bulk ESS" in p and "sticky" in p for p in d.problems)
    # white-noise energy: E-BFMI ~ 2 per chain, no E-BFMI problem
    assert all(b > 1 for b in d.ebfmi) and not any("E-BFMI" in p for p in d.problems)
    # energy that drifts like a random walk: E-BFMI = E[dE^2] / Var(E) << 0.3
    idata.sample_stats["energy"][:] = np.cumsum(energy, axis=1)
    assert any("E-BFMI" in p for p in diagnose(idata).problems)
    idata.sample_stats["diverging"][0, 5] = True
    assert diagnose(idata).n_divergent == 1 and any("divergent" in p for p in diagnose(idata).problems)


# ================================================================ not known to have converged; not informed
def _constructed(chains: int, draws: int, seed: int = 0, **extra):
    """An InferenceData of white-noise chains (every computed diagnostic passes)."""
    import arviz as az

    rng = np.random.default_rng(seed)
    posterior = {"a": rng.standard_normal((chains, draws)), **extra}
    stats_ = {"diverging": np.zeros((chains, draws), bool), "energy": rng.standard_normal((chains, draws))}
    return az.from_dict(posterior=posterior, sample_stats=stats_)


@pytest.mark.parametrize("chains, draws, says", [
    (1, 4000, "R-hat not computed (1 chain; run >= 2 chains, 4 recommended)"),
    (2, 3, "R-hat and ESS not computed (3 draws per chain"),
])
def test_diagnostics_that_cannot_be_computed_are_never_ok(chains, draws, says):
    """One chain of 4000 independent draws: every computable check passes (ESS
    ~4000), but R-hat needs >= 2 chains (Vehtari et al. 2021), so the fit is not
    known to have converged: no "OK", no "R-hat <= 1.01", a ConvergenceWarning."""
    d = diagnose(_constructed(chains, draws))
    text = str(d)
    assert not d.ok and any(says in p for p in d.problems), d.problems
    assert says in text and "OK" not in text and "<= 1.01" not in text, text
    assert np.isnan(d.max_rhat)
    with pytest.warns(ConvergenceWarning, match="R-hat.* not computed"):
        warn_if_problems(d, printed=True)


def test_low_tail_ess_is_a_problem():
    """Chains whose lowest 5% of values come in runs of 25 draws: R-hat ~1.00 and
    bulk ESS ~600 pass, tail ESS ~175 < 400 (Vehtari et al. 2021 ask for both)."""
    rng = np.random.default_rng(0)
    x = np.empty((4, 1000))
    for c in range(4):
        z = np.sort(rng.standard_normal(1000))
        low, rest = z[:50], rng.permutation(z[50:])
        out = np.full(1000, np.nan)
        for k, start in enumerate(np.sort(rng.choice(39, 2, replace=False)) * 25):
            out[start:start + 25] = rng.permutation(low[25 * k:25 * (k + 1)])
        out[np.isnan(out)] = rest
        x[c] = out
    d = diagnose(_constructed(4, 1000, a=x))
    row = d.summary.loc["a"]
    assert row["r_hat"] < 1.01 and row["ess_bulk"] > 400 and row["ess_tail"] < 400
    assert not d.ok and any(p.startswith("tail ESS") and " a:" in p for p in d.problems), d.problems
    assert "OK" not in str(d)


def test_contraction_compares_posterior_and_prior_sd_on_the_prior_scale():
    """Contraction 1 - var_post/var_prior from the attrs prior_sd (on log scale for
    "log"): a posterior equal to its prior is reported, a narrow one is not, a
    variable without prior SD gets NaN."""
    rng = np.random.default_rng(1)
    idata = _constructed(4, 1000, narrow=np.exp(0.3 + 0.2 * rng.standard_normal((4, 1000))),
                         same=rng.normal(0.75, 0.25, (4, 1000)))
    idata.posterior["narrow"].attrs.update(prior_sd=1.0, prior_sd_scale="log")
    idata.posterior["same"].attrs.update(prior_sd=0.25, prior_sd_scale="linear")
    d = diagnose(idata)
    assert d.summary.loc["narrow", "contraction"] == pytest.approx(1 - 0.2**2, abs=0.01)
    assert abs(d.summary.loc["same", "contraction"]) < 0.1
    assert np.isnan(d.summary.loc["a", "contraction"])
    assert d.ok and len(d.uninformed) == 1 and d.uninformed[0].startswith("same is not informed")
    assert "posterior SD 0.24" in d.uninformed[0] and "vs prior SD 0.25 " in d.uninformed[0]
    with pytest.warns(UninformedParameterWarning, match="same is not informed"):
        warn_if_problems(d, printed=True)


def test_prior_sds_are_those_of_the_models_priors():
    """BuiltModel.prior_sds() against independent references: scipy's SD of log X
    for X ~ LogNormal (numerical integration), of Normal and HalfNormal; for the
    LKJ(2) correlation of 3 etas, 400 000 uniform proposals of (r12, r13, r23)
    accepted with probability det(R)^(eta - 1) (LKJ density ~ det(R)^(eta - 1)
    on the positive definite correlation matrices), SD within 2%."""
    from pkpd.popfit.model import prepare

    model = theophylline_model(correlated_iiv=True)
    built = prepare(model, load_theophylline())
    sds = built.prior_sds()
    assert set(sds) == set(built.free_param_names)
    for p in model.params:
        lognormal = stats.lognorm(s=p.sd_log, scale=p.median)
        mean_log = lognormal.expect(np.log)
        assert sds[p.name] == ("log", pytest.approx(np.sqrt(lognormal.expect(lambda x: (np.log(x) - mean_log) ** 2))))
        assert sds[f"omega_{p.name}"] == ("linear", pytest.approx(stats.halfnorm(scale=p.omega_scale).std()))
    for c in model.covariates:
        assert sds[c.var_name] == ("linear", pytest.approx(stats.norm(c.exponent, c.sd).std()))
    assert sds["sigma_prop"][1] == pytest.approx(stats.halfnorm(scale=model.error.prop_scale).std())
    assert sds["sigma_add"][1] == pytest.approx(stats.halfnorm(scale=model.error.add_scale).std())
    rng = np.random.default_rng(0)
    r = rng.uniform(-1, 1, (400_000, 3))
    det = 1 - (r**2).sum(axis=1) + 2 * r.prod(axis=1)
    keep = (det > 0) & (rng.uniform(size=len(r)) < np.clip(det, 0, 1) ** (model.lkj_eta - 1))
    assert sds["omega_corr"] == ("linear", pytest.approx(r[keep, 0].std(), rel=0.02))


@pytest.fixture(scope="module")
def one_chain_constant_weight():
    """Theophylline with every weight set to 70 kg (so the weight exponents have
    no data at all: their posterior is their Normal(., 0.25) prior), fitted with
    one short chain; printed report and warnings captured."""
    import contextlib
    import io
    from importlib import resources

    table = pd.read_csv(resources.files("pkpd").joinpath("data", "theoph_nm.csv"))
    data = read_nonmem(table.assign(WT=70.0), dv_unit="mg/L")
    out = io.StringIO()
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out):
        warnings.simplefilter("always")
        idata = fit(theophylline_model(), data, draws=500, tune=300, chains=1, seed=11, progress=False)
    return idata, out.getvalue(), caught


def test_one_chain_fit_says_rhat_not_computed(one_chain_constant_weight):
    idata, printed, caught = one_chain_constant_weight
    assert "R-hat not computed (1 chain; run >= 2 chains, 4 recommended)" in printed
    assert "OK" not in printed and "R-hat <=" not in printed, printed
    ours = [str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)]
    assert any("R-hat not computed (1 chain" in m for m in ours), ours


def test_parameter_without_data_warns_and_informed_ones_do_not(one_chain_constant_weight):
    idata, printed, caught = one_chain_constant_weight
    uninformed = [str(w.message) for w in caught if issubclass(w.category, UninformedParameterWarning)]
    named = {m.split("pkpd.fit: ")[1].split(" ")[0] for m in uninformed}
    assert named == {"theta_cl_wt", "theta_v_wt"}, uninformed
    for m in uninformed:
        assert "prior SD 0.25" in m and "posterior SD" in m and "fix it" in m
    assert "NOT INFORMED BY THE DATA" in printed
    assert idata.posterior["cl"].attrs == {"prior_sd": 0.5, "prior_sd_scale": "log"}
    summary = diagnose(idata).summary
    assert summary.loc["cl", "contraction"] > 0.5 and summary.loc["ka", "contraction"] > 0.5
    assert summary.loc["theta_cl_wt", "contraction"] < 0.1 and summary.loc["theta_v_wt", "contraction"] < 0.1
