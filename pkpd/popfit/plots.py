"""Diagnostic plots and tables of a population fit (matplotlib).

* :func:`residuals` / :func:`plot_gof`: DV vs PRED and IPRED, conditional
  weighted residuals vs time and vs PRED.
* :func:`individual_estimates`: each subject's parameters (posterior median, interval).
* :func:`plot_individual_fits`: observations with the individual posterior
  prediction (median and band) and the population prediction per subject.
* :func:`vpc` / :func:`plot_vpc`: visual predictive check, optionally
  prediction-corrected (Bergstrand et al., AAPS J 2011;13:143), censored at the
  LLOQ when the data have BLQ observations.
* :func:`eta_shrinkage` / :func:`plot_eta_shrinkage`: eta shrinkage
  ``1 - SD(E[eta_i | data]) / omega`` (Savic & Karlsson, AAPS J 2009;11:558).

Definitions used here (Bayesian analogues of the NONMEM quantities):

* PRED: posterior median of the population prediction (etas = 0, covariates kept);
* IPRED: posterior median of the individual prediction;
* CWRES: ``(DV - E[y_rep]) / SD[y_rep]`` with ``y_rep`` the posterior predictive of
  that very observation, i.e. conditional on the subject's posterior etas (the
  role FOCE's conditional weighted residuals play); ~N(0, 1) for a good model,
  though shrunk towards 0 because each observation informs its own etas.

Functions needing the model structure take the model and data used for the fit.
Times in h; concentrations in the model's ``conc_unit``.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..checks import PKPDInputError
from .design import ObservationBlock, dose_design
from .model import BuiltModel, individual_params, prepare, residual_sd
from .sampling import posterior_individual_params, predict_draws


def _context(model, data) -> BuiltModel:
    return model if isinstance(model, BuiltModel) else prepare(model, data, check_units=False)


# ================================================================= residuals / GOF
def residuals(idata, endpoint: str = "conc") -> pd.DataFrame:
    """One row per observation: ID, time (h), dv, blq, pred, ipred, iwres, cwres.

    pred / ipred are posterior medians; iwres = (DV - IPRED) / residual SD at
    IPRED (posterior mean of the SD); cwres as in the module docs.  BLQ rows
    have NaN residuals (their DV is only known to be < LLOQ).
    """
    dim = f"{endpoint}_obs"
    if f"{endpoint}_ipred" not in idata.posterior:
        raise PKPDInputError(
            f"idata has no '{endpoint}_ipred'; pass the InferenceData returned by pkpd.fit "
            f"(endpoints present: {[v[:-6] for v in idata.posterior.data_vars if v.endswith('_ipred')]})."
        )
    post = idata.posterior
    ipred = post[f"{endpoint}_ipred"].stack(s=("chain", "draw")).transpose(dim, "s").values
    pred = post[f"{endpoint}_pred"].stack(s=("chain", "draw")).transpose(dim, "s").values
    y_rep = idata.posterior_predictive[endpoint].stack(s=("chain", "draw")).transpose(dim, "s").values
    const = idata.constant_data
    dv = idata.observed_data[endpoint].values
    blq = const[f"{endpoint}_blq"].values.astype(bool)
    noise_sd = (y_rep - ipred).std(axis=1)
    ipred_med = np.median(ipred, axis=1)
    out = pd.DataFrame({
        "ID": const[f"{endpoint}_id"].values,
        "time": const[f"{endpoint}_time"].values,
        "dv": dv,
        "blq": blq,
        "pred": np.median(pred, axis=1),
        "ipred": ipred_med,
        "iwres": (dv - ipred_med) / noise_sd,
        "cwres": (dv - y_rep.mean(axis=1)) / y_rep.std(axis=1),
    })
    out.loc[blq, ["iwres", "cwres"]] = np.nan
    return out


def _unit(idata, endpoint: str, what: str, default: str) -> str:
    """The unit :func:`pkpd.fit` stored with an endpoint's ``time`` or ``lloq``
    (the observation unit) in ``idata.constant_data``; ``default`` without it."""
    const = getattr(idata, "constant_data", None)
    var = None if const is None else const.get(f"{endpoint}_{what}")
    return (var.attrs.get("unit") if var is not None else None) or default


def plot_gof(idata, endpoint: str = "conc", log: bool = False, unit: str | None = None):
    """Goodness-of-fit panels: DV vs PRED, DV vs IPRED, CWRES vs time, CWRES vs PRED.

    unit : unit of DV and PRED; by default the endpoint's unit as the fit
        recorded it (e.g. ng/mL or 10^9/L).  Time is in h.
    log : log-log axes for the DV panels.  Returns the matplotlib Figure.
    """
    r = residuals(idata, endpoint)
    q = r[~r["blq"]]
    unit = unit or _unit(idata, endpoint, "lloq", "")
    time_unit = _unit(idata, endpoint, "time", "h")
    unit = f" ({unit})" if unit else ""
    fig, axes = plt.subplots(2, 2, figsize=(10, 8))
    for ax, col, label in ((axes[0, 0], "pred", "PRED"), (axes[0, 1], "ipred", "IPRED")):
        ax.scatter(q[col], q["dv"], s=12, alpha=0.7)
        lim = [min(q[col].min(), q["dv"].min()), max(q[col].max(), q["dv"].max())]
        if log:
            pos = q[(q[col] > 0) & (q["dv"] > 0)]
            lim = [min(pos[col].min(), pos["dv"].min()), lim[1]]
            ax.set_xscale("log")
            ax.set_yscale("log")
        ax.plot(lim, lim, "k-", lw=1, label="identity")
        _smooth(ax, q[col].to_numpy(), q["dv"].to_numpy(), log)
        ax.set_xlabel(f"{label}{unit}")
        ax.set_ylabel(f"DV{unit}")
        ax.set_title(f"DV vs {label}")
    for ax, col, label in ((axes[1, 0], "time", f"time ({time_unit})"), (axes[1, 1], "pred", f"PRED{unit}")):
        ax.scatter(q[col], q["cwres"], s=12, alpha=0.7)
        ax.axhline(0, color="k", lw=1)
        for y in (-2, 2):
            ax.axhline(y, color="k", lw=0.8, ls="--")
        _smooth(ax, q[col].to_numpy(), q["cwres"].to_numpy(), False)
        ax.set_xlabel(label)
        ax.set_ylabel("CWRES (conditional)")
        ax.set_title(f"CWRES vs {label.split(' ')[0]}")
    fig.suptitle(f"Goodness of fit: {endpoint}")
    fig.tight_layout()
    return fig


def _smooth(ax, x, y, log: bool, n_bins: int = 8):
    """A binned-median trend line (a robust stand-in for a LOESS smooth)."""
    ok = np.isfinite(x) & np.isfinite(y)
    if log:
        ok &= (x > 0) & (y > 0)
    x, y = x[ok], y[ok]
    if x.size < 2 * n_bins:
        return
    edges = np.unique(np.quantile(x, np.linspace(0, 1, n_bins + 1)))
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    xm = [np.median(x[idx == b]) for b in range(len(edges) - 1) if (idx == b).any()]
    ym = [np.median(y[idx == b]) for b in range(len(edges) - 1) if (idx == b).any()]
    ax.plot(xm, ym, "r-", lw=1.5, label="binned median")


# ================================================================= individual estimates
def individual_estimates(idata, model, data, interval: float = 0.9) -> pd.DataFrame:
    """Posterior median and ``interval`` bounds of each subject's parameters.

    One row per subject ID; columns ``<param>``, ``<param>_lo``, ``<param>_hi``
    for every structural parameter (units as in the model, e.g. ka 1/h, cl L/h, v L).
    """
    ctx = _context(model, data)
    indiv = posterior_individual_params(idata, ctx)
    lo, hi = (1 - interval) / 2, 1 - (1 - interval) / 2
    out = pd.DataFrame(index=pd.Index(ctx.data.ids, name="ID"))
    for name, values in indiv.items():
        flat = values.reshape(-1, values.shape[-1])
        out[name] = np.median(flat, axis=0)
        out[f"{name}_lo"] = np.quantile(flat, lo, axis=0)
        out[f"{name}_hi"] = np.quantile(flat, hi, axis=0)
    return out


# ================================================================= individual fits
def plot_individual_fits(idata, model, data, ids=None, ncols: int = 4, n_grid: int = 120, n_draws: int = 400,
                         interval: float = 0.9, log: bool = False, seed: int = 0):
    """One panel per subject: observations, individual prediction (posterior
    median and ``interval`` band) and the population prediction (typical
    subject with the subject's covariates, posterior median).

    model, data : those given to :func:`pkpd.fit`.  ids : subset of subject IDs.
    n_draws : posterior draws used for the curves (thinned at random with ``seed``).
    Returns the Figure.
    """
    ctx = _context(model, data)
    fd = ctx.data
    ep = ctx.endpoints[0]
    block = fd.blocks[ep.cmt]
    ids = list(fd.ids) if ids is None else list(ids)
    unknown = [i for i in ids if i not in fd.ids]
    if unknown:
        raise PKPDInputError(f"ids: subject {unknown[0]!r} is not in the data; IDs are {list(fd.ids)}.")
    sel = _thin(idata, n_draws, seed)
    indiv = {k: v[sel] for k, v in _flat(posterior_individual_params(idata, ctx)).items()}
    pop = {k: v[sel] for k, v in _flat(posterior_individual_params(idata, ctx, population=True)).items()}
    nrows = int(np.ceil(len(ids) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.6 * nrows), squeeze=False, sharex=False)
    lo, hi = (1 - interval) / 2, 1 - (1 - interval) / 2
    for ax, sid in zip(axes.flat, ids):
        k = fd.ids.index(sid)
        t_obs = block.time[block.subject == k]
        t_end = max(t_obs.max(initial=0), fd.regimens[k].times.max(initial=0)) * 1.05 or 24.0
        grid = np.linspace(0, t_end, n_grid)
        gblock = _grid_block(block, fd, k, grid)
        c_ind = ep.predict_np(indiv, gblock)
        c_pop = ep.predict_np(pop, gblock)
        ax.fill_between(grid, np.quantile(c_ind, lo, axis=0), np.quantile(c_ind, hi, axis=0), alpha=0.3,
                        label=f"IPRED {interval:.0%}")
        ax.plot(grid, np.median(c_ind, axis=0), "C0-", lw=1.5, label="IPRED")
        ax.plot(grid, np.median(c_pop, axis=0), "k--", lw=1, label="PRED")
        m = block.subject == k
        q = m & ~block.blq
        ax.plot(block.time[q], block.dv[q], "o", color="C3", ms=4, label="observed")
        b = m & block.blq
        if b.any():
            ax.plot(block.time[b], block.lloq[b], "v", mfc="none", color="C3", ms=5, label="BLQ (at LLOQ)")
        if len(fd.excluded):
            ex = fd.excluded[fd.excluded["subject"] == k]
            if len(ex):
                ax.plot(ex["time"], ex["dv"], "x", color="grey", ms=5, label="not fitted")
        if log:
            ax.set_yscale("log")
        ax.set_title(f"ID {sid}", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(ids):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=7)
    fig.supxlabel("time (h)")
    fig.supylabel(f"{ep.name} ({ep.unit})")
    fig.tight_layout()
    return fig


def _grid_block(block, fd, k, grid):
    """An observation block at ``grid`` times for subject index ``k``."""
    subject = np.full(grid.size, k)
    return ObservationBlock(
        cmt=block.cmt, time=grid, dv=np.full(grid.size, np.nan), subject=subject,
        blq=np.zeros(grid.size, bool), lloq=np.full(grid.size, np.nan),
        design=dose_design(fd.regimens, subject, grid), unit=block.unit, regimens=fd.regimens,
    )


def _flat(d: dict) -> dict:
    return {k: v.reshape(-1, v.shape[-1]) for k, v in d.items()}


def _thin(idata, n: int, seed: int) -> np.ndarray:
    total = idata.posterior.sizes["chain"] * idata.posterior.sizes["draw"]
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=min(n, total), replace=False))


# ================================================================= VPC
def simulate_replicates(idata, model, data, n_sim: int = 200, seed: int = 0, endpoint: str = "conc"):
    """Simulate ``n_sim`` replicates of the study from the posterior.

    Each replicate takes one posterior draw of the population parameters, draws
    *new* subjects (etas ~ N(0, Omega), keeping each subject's doses,
    covariates and observation times) and adds residual noise.
    Returns ``(sim (n_sim, n_obs), pred (n_obs,))`` where ``pred`` is the
    posterior-median population prediction of each observation.
    """
    ctx = _context(model, data)
    spec, fd = ctx.spec, ctx.data
    ep = next((e for e in ctx.endpoints if e.name == endpoint), None)
    if ep is None:
        raise PKPDInputError(f"endpoint {endpoint!r} not in the model; endpoints: {[e.name for e in ctx.endpoints]}.")
    block = fd.blocks[ep.cmt]
    post = idata.posterior.stack(s=("chain", "draw"))
    rng = np.random.default_rng(seed)
    pick = rng.choice(post.sizes["s"], size=n_sim, replace=n_sim > post.sizes["s"])
    draw = post.isel(s=pick)
    typical = {p: draw[p].values for p in spec.param_names}
    thetas = {c.var_name: draw[c.var_name].values for c in spec.covariates if c.sd is not None}
    iiv = spec.iiv_names
    etas = {}
    if iiv:
        omegas = np.stack([draw[f"omega_{n}"].values for n in iiv], axis=-1)  # (n_sim, p)
        if spec.correlated_iiv and len(iiv) > 1:
            corr = draw["omega_corr"].transpose("s", ...).values  # (n_sim, p, p)
            cov = omegas[:, :, None] * corr * omegas[:, None, :]
            chol = np.linalg.cholesky(cov + 1e-12 * np.eye(len(iiv)))
        else:
            chol = np.einsum("sp,pq->spq", omegas, np.eye(len(iiv)))
        z = rng.standard_normal((n_sim, fd.n_subjects, len(iiv)))
        eta = np.einsum("spq,snq->snp", chol, z)
        etas = {n: eta[..., k] for k, n in enumerate(iiv)}
    indiv = individual_params(np, spec, typical, thetas, etas, fd)
    ipred = predict_draws(ctx, ep, indiv, block)
    sp = draw[ep.sigma_prop_name].values[:, None] if ep.error.has_prop else None
    sa = draw[ep.sigma_add_name].values[:, None] if ep.error.has_add else None
    sd = residual_sd(np, ep.error, ipred, sp, sa)
    sim = ipred + sd * rng.standard_normal(ipred.shape)
    pred = np.median(idata.posterior[f"{endpoint}_pred"].stack(s=("chain", "draw")).transpose(..., "s").values, axis=-1)
    return sim, pred


def vpc(idata, model, data, n_sim: int = 200, pred_corrected: bool = False, bins=None, n_bins: int = 8,
        percentiles=(5, 50, 95), interval: float = 0.9, seed: int = 0, endpoint: str = "conc") -> pd.DataFrame:
    """Visual predictive check statistics per time bin.

    bins : bin edges in h (default: ``n_bins`` quantile bins of the observation times).
    pred_corrected : pcVPC, DV and simulations scaled by median(PRED in bin) / PRED
        (Bergstrand 2011), for data with different doses or covariates.
    BLQ observations and simulated values below the LLOQ are censored: a
    percentile that falls below the LLOQ is reported as NaN.

    Returns one row per bin: ``t_lo, t_hi, t_mid`` (h), ``n``, observed
    percentiles ``obs_p5`` ..., simulated ``sim_p5_lo/med/hi`` (the ``interval``
    of each percentile over replicates).
    """
    ctx = _context(model, data)
    ep = next(e for e in ctx.endpoints if e.name == endpoint)
    block = ctx.data.blocks[ep.cmt]
    sim, pred = simulate_replicates(idata, ctx, None, n_sim, seed, endpoint)
    t = block.time
    dv = np.where(block.blq, -np.inf, block.dv)
    lloq = np.where(np.isfinite(block.lloq), block.lloq, -np.inf)
    # a simulated value below the LLOQ of that observation is censored like a BLQ observation
    sim = np.where(sim < lloq, -np.inf, sim)
    if bins is None:
        edges = np.unique(np.quantile(t, np.linspace(0, 1, n_bins + 1)))
    else:
        edges = np.asarray(bins, float)
        if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise PKPDInputError(f"bins must be increasing bin edges in h; got {bins!r}.")
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, len(edges) - 2)
    lo_q, hi_q = (1 - interval) / 2, 1 - (1 - interval) / 2
    rows = []
    max_lloq = np.nanmax(block.lloq) if np.isfinite(block.lloq).any() else -np.inf
    for b in range(len(edges) - 1):
        m = idx == b
        if not m.any():
            continue
        obs_b, sim_b = dv[m], sim[:, m]
        if pred_corrected:
            factor = np.median(pred[m]) / pred[m]
            obs_b, sim_b = obs_b * factor, sim_b * factor
        row = {"t_lo": edges[b], "t_hi": edges[b + 1], "t_mid": float(np.median(t[m])), "n": int(m.sum())}
        for p in percentiles:
            o = np.percentile(obs_b, p)
            row[f"obs_p{p}"] = o if o > max_lloq else np.nan
            s = np.percentile(sim_b, p, axis=1)
            s = np.where(s > max_lloq, s, np.nan)
            row[f"sim_p{p}_lo"], row[f"sim_p{p}_med"], row[f"sim_p{p}_hi"] = (
                np.nanquantile(s, lo_q) if np.isfinite(s).any() else np.nan,
                np.nanmedian(s) if np.isfinite(s).any() else np.nan,
                np.nanquantile(s, hi_q) if np.isfinite(s).any() else np.nan,
            )
        rows.append(row)
    out = pd.DataFrame(rows)
    out.attrs.update({"pred_corrected": pred_corrected, "percentiles": tuple(percentiles), "n_sim": n_sim,
                      "interval": interval, "unit": ep.unit, "endpoint": endpoint})
    return out


def plot_vpc(idata, model, data, n_sim: int = 200, pred_corrected: bool = False, log: bool = False, seed: int = 0,
             ax=None, **kwargs):
    """Plot a (prediction-corrected) VPC: observations, observed percentiles
    (lines) and the simulated ``interval`` of each percentile (bands).

    Extra keyword arguments go to :func:`vpc`.  Returns the Figure.
    """
    ctx = _context(model, data)
    table = vpc(idata, ctx, None, n_sim=n_sim, pred_corrected=pred_corrected, seed=seed, **kwargs)
    ep = next(e for e in ctx.endpoints if e.name == table.attrs["endpoint"])
    block = ctx.data.blocks[ep.cmt]
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 5))
    else:
        fig = ax.figure
    q = ~block.blq
    dv = block.dv[q]
    if pred_corrected:
        _, pred = simulate_replicates(idata, ctx, None, 1, seed, ep.name)
        edges = np.r_[table["t_lo"].to_numpy(), table["t_hi"].to_numpy()[-1]]
        idx = np.clip(np.searchsorted(edges, block.time, side="right") - 1, 0, len(edges) - 2)
        med = np.array([np.median(pred[idx == b]) if (idx == b).any() else np.nan for b in range(len(edges) - 1)])
        dv = (block.dv * med[idx] / pred)[q]
    ax.plot(block.time[q], dv, "o", color="k", ms=3, alpha=0.35, label="observed")
    x = table["t_mid"].to_numpy()
    for p, color in zip(table.attrs["percentiles"], ("C0", "C3", "C0")):
        ax.fill_between(x, table[f"sim_p{p}_lo"], table[f"sim_p{p}_hi"], color=color, alpha=0.25,
                        label=f"simulated p{p} ({table.attrs['interval']:.0%})")
        ax.plot(x, table[f"obs_p{p}"], "-", color=color, lw=2 if p == 50 else 1.2, label=f"observed p{p}")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("time (h)")
    label = "prediction-corrected " if pred_corrected else ""
    ax.set_ylabel(f"{label}{ep.name} ({ep.unit})")
    ax.set_title(f"{'pc' if pred_corrected else ''}VPC, {n_sim} simulated replicates")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


# ================================================================= shrinkage
def eta_shrinkage(idata) -> pd.Series:
    """Eta shrinkage per IIV parameter: ``1 - SD_i(E[eta_i | data]) / E[omega | data]``.

    Near 0: the data determine each subject's parameter (individual plots and
    eta-covariate plots are informative); above ~0.3 they are pulled to the
    population value and EBE-based diagnostics mislead (Savic & Karlsson 2009).
    """
    post = idata.posterior
    names = [v[4:] for v in post.data_vars if v.startswith("eta_") and not v.endswith("_z")]
    if not names:
        raise PKPDInputError("idata has no eta_* variables: the model has no IIV, so there is no shrinkage.")
    out = {}
    for n in names:
        eta_mean = post[f"eta_{n}"].mean(("chain", "draw")).values
        omega = float(post[f"omega_{n}"].mean())
        out[n] = 1.0 - eta_mean.std(ddof=1) / omega
    return pd.Series(out, name="eta_shrinkage")


def plot_eta_shrinkage(idata):
    """Histograms of the posterior-mean etas with the N(0, omega) they should
    resemble, shrinkage in each title.  Returns the Figure."""
    shr = eta_shrinkage(idata)
    post = idata.posterior
    fig, axes = plt.subplots(1, len(shr), figsize=(3.3 * len(shr), 3), squeeze=False)
    for ax, (n, s) in zip(axes.flat, shr.items()):
        eta_mean = post[f"eta_{n}"].mean(("chain", "draw")).values
        omega = float(post[f"omega_{n}"].mean())
        ax.hist(eta_mean, bins="auto", density=True, alpha=0.6, label="E[eta_i | data]")
        x = np.linspace(-3 * omega, 3 * omega, 200)
        ax.plot(x, np.exp(-0.5 * (x / omega) ** 2) / (omega * np.sqrt(2 * np.pi)), "k-", label="N(0, omega)")
        ax.set_title(f"eta_{n}: shrinkage {s:.0%}", fontsize=10)
        ax.set_xlabel(f"eta_{n}")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    return fig
