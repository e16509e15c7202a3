"""Figures of a :class:`~pkpd.trial.TrialResult`: platelets over time, the
response by arm beside the published result, and the dose distribution.

Each function takes the result and returns a matplotlib Figure drawn by the
Agg canvas (:func:`_figure`), outside pyplot's state.  Platelets in 10^9/L,
time in weeks.  matplotlib is imported by the first figure, not with this
module (it takes ~0.2-0.5 s and a simulation needs none of it).
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .checks import PKPDInputError
from .endpoints import REGISTRY, percent, response_endpoints

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_platelets(result, axes=None):
    """Platelets over time, one panel per arm (shared log axis, 10^9/L):
    the true count (median and 5-95% band, daily) and the observed count
    at the assessment visits (median and 5-95%; the endpoints and the
    titration see these), with the response threshold and the target
    range drawn and labelled, and the primary day and the end of dosing
    marked.  ``axes``: one matplotlib Axes per arm (default: a new
    figure).  Returns the figure."""
    names = result.arm_names
    if axes is None:
        ncols = min(len(names), 4)
        nrows = -(-len(names) // ncols)
        fig = _figure(3.4 * ncols + 0.6, 3.3 * nrows + 0.6)
        grid = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)
        axes = list(grid.flat)
        for ax in axes[len(names):]:
            ax.set_visible(False)
    else:
        axes = list(np.ravel(axes))
        if len(axes) < len(names):
            raise PKPDInputError(
                f"plot_platelets axes: one Axes per arm is needed ({len(names)} arms); got {len(axes)}. "
                f"Pass e.g. fig.subplots(1, {len(names)}), or leave axes out for a new figure."
            )
        fig = axes[0].figure
    e, t = result.trial.endpoints, result.trial
    summary = result.platelets
    lines = {e.target[0]: ["target low"], e.target[1]: ["target high"]}
    if set(response_endpoints()) & set(result.endpoints["endpoint"]):  # the threshold means something here
        lines.setdefault(e.response, []).insert(0, "response")
    for k, (ax, name) in enumerate(zip(axes, names)):
        s = summary[summary["arm"] == name]
        week = s["day"].to_numpy() / 7
        ax.fill_between(week, s["p05"], s["p95"], color="C0", alpha=0.2, lw=0, label="true count, 5-95%")
        ax.plot(week, s["median"], color="C0", lw=1.8, label="true count, median")
        v = s[s["observed_median"].notna()]
        vw = v["day"].to_numpy() / 7
        ax.errorbar(vw, v["observed_median"], yerr=[v["observed_median"] - v["observed_p05"], v["observed_p95"] - v["observed_median"]],
                    fmt="o", color="k", ms=3, lw=0.8, capsize=2, label="observed count at visits, median and 5-95%")
        for y, what in sorted(lines.items()):
            text = f"{y:g}: {' and '.join(what)}"
            color = "C3" if what[0] == "response" else "dimgrey"
            ax.axhline(y, color=color, ls="--", lw=1, label=f"{text} (10^9/L)" if k == 0 else None)
            ax.annotate(text, (0.01, y), xycoords=("axes fraction", "data"), xytext=(0, 2), textcoords="offset points",
                        va="bottom", fontsize=7, color=color)
        if e.primary_day is not None:
            ax.axvline(e.primary_day / 7, color="C2", ls=":", lw=1.2, label=f"primary day {e.primary_day:g}" if k == 0 else None)
        if t.last_dose_day < t.duration_days:
            ax.axvspan(t.last_dose_day / 7, t.duration_days / 7, color="grey", alpha=0.08, lw=0,
                       label=f"after the last dose (day {t.last_dose_day - 1:g})" if k == 0 else None)
        ax.set_yscale("log")
        ticker = importlib.import_module("matplotlib.ticker")
        ax.yaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=8)
    ncols = len({ax.get_position().x0 for ax in axes})
    for k, ax in enumerate(axes[:len(names)]):
        if k + ncols >= len(names):  # no panel below: label the time axis here
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("week")
        if k % ncols == 0:
            ax.set_ylabel(f"{t.model.pd.OBSERVABLE} ({t.model.pd.UNIT})")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(f"{t.name}: {t.model.pd.OBSERVABLE} per arm ({t.n_per_trial} patients per trial, "
                 f"{result.replicates} replicate{'s' if result.replicates > 1 else ''})", fontsize=10)
    legend_in = 0.15 * -(-len(labels) // 3) + 0.1  # legend rows x line height, inches
    fig.tight_layout(rect=(0, legend_in / fig.get_figheight(), 1, 1))
    return fig


def plot_response(result, endpoint: str | None = None, published: Mapping | None = None):
    """The result's :attr:`~pkpd.trial.TrialResult.headline_endpoint` (or ``endpoint``) by arm: the
    simulated value with its 95% CI for one trial of N, with several
    replicates also each replicate trial's value (dots) and their
    2.5-97.5% range, and beside it the published result with its
    Clopper-Pearson 95% CI.  ``published``: arm name ->
    :class:`pkpd.scenario.Published` (as a scenario gives).  Returns the figure."""
    name, e = result.one_endpoint(endpoint, "plot_response endpoint")
    in_percent = REGISTRY[name].unit == "%"
    factor = 1.0 if in_percent else 100.0
    per_rep = result._patient_metrics().groupby(["arm", "replicate"])[name].mean()  # arm codes, replicate
    fig = _figure(1.9 * len(result.arm_names) + 2.4, 4.2)
    ax = fig.subplots()
    x = np.arange(len(result.arm_names))
    pub_label = rep_label = True
    for i, arm in enumerate(result.arm_names):
        r = e.loc[arm]
        est = factor * r["estimate"]
        ax.errorbar(i - 0.12, est, yerr=[[est - factor * r["trial_low"]], [factor * r["trial_high"] - est]], fmt="o",
                    color="C0", ms=6, capsize=4, label="simulated, 95% CI of one trial of N" if i == 0 else None)
        ax.annotate(percent(r["estimate"], name), (i - 0.12, est), xytext=(-6, 0), textcoords="offset points",
                    ha="right", va="center", fontsize=8, color="C0")
        if result.replicates > 1:
            vals = factor * per_rep.loc[i].to_numpy(float)
            jitter = np.random.default_rng(i).uniform(-0.04, 0.04, vals.size)
            ax.plot(i - 0.12 + 0.06 + jitter, vals, ".", color="C0", alpha=0.35, ms=3,
                    label="one simulated trial each" if rep_label else None)
            ax.vlines(i - 0.04, factor * r["replicate_low"], factor * r["replicate_high"], color="C0", lw=4, alpha=0.5,
                      label=f"2.5-97.5% over {result.replicates} replicates" if rep_label else None)
            rep_label = False
        pub = (published or {}).get(arm)
        if pub is not None and pub.endpoint == name:
            lo, hi = pub.interval
            ax.errorbar(i + 0.18, 100 * pub.rate, yerr=[[100 * (pub.rate - lo)], [100 * (hi - pub.rate)]], fmt="s",
                        color="C3", ms=6, capsize=4, label="published, Clopper-Pearson 95% CI" if pub_label else None)
            ax.annotate(f"{percent(pub.rate)} ({pub.responders}/{pub.n})", (i + 0.18, 100 * pub.rate), xytext=(6, 0),
                        textcoords="offset points", ha="left", va="center", fontsize=8, color="C3")
            pub_label = False
    ax.set_xticks(x, [f"{a}\nN = {n}" for a, n in zip(result.arm_names, e.loc[result.arm_names, "n"])], fontsize=8)
    ax.set_xlim(-0.6, len(x) - 0.4)
    if in_percent:
        ax.set_ylabel(e["description"].iloc[0])
    else:
        ax.set_ylim(0, 100)
        ax.set_ylabel("% of patients" if r["kind"] == "binomial" else "%")
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(f"{result.trial.name}: {e['description'].iloc[0]}", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_doses(result):
    """Dose distribution at each visit, one panel per arm (stacked shares)."""
    table = result.doses
    levels = np.sort(table["dose_mg"].unique())
    fig = _figure(3.2 * len(result.arm_names) + 1, 3.8)
    axes = fig.subplots(1, len(result.arm_names), sharey=True, squeeze=False)
    colors = importlib.import_module("matplotlib").colormaps["viridis"](np.linspace(0.1, 0.9, max(len(levels), 1)))
    for ax, name in zip(axes[0], result.arm_names):
        wide = (table[table["arm"] == name].pivot_table(index="day", columns="dose_mg", values="fraction", aggfunc="sum")
                .reindex(columns=levels).fillna(0.0))
        bottom = np.zeros(len(wide))
        for lvl, color in zip(levels, colors):
            ax.bar(wide.index / 7, wide[lvl], bottom=bottom, width=0.8 * result.trial.visit_every_days / 7,
                   color=color, label=f"{lvl:g} mg" if lvl else "0 mg (placebo, interrupted or stopped)")
            bottom += wide[lvl].to_numpy()
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("week")
        ax.xaxis.set_major_locator(importlib.import_module("matplotlib.ticker").MaxNLocator(integer=True))
    axes[0][0].set_ylabel("share of patients")
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.suptitle(f"{result.trial.name}: once-daily dose taken up to each visit")
    fig.tight_layout()
    return fig


def _figure(width: float, height: float) -> Figure:
    """A matplotlib Figure (inches) drawn by the Agg canvas, outside pyplot's
    state (no GUI backend, nothing to close; displays inline in notebooks)."""
    fig = importlib.import_module("matplotlib.figure").Figure(figsize=(width, height))
    importlib.import_module("matplotlib.backends.backend_agg").FigureCanvasAgg(fig)
    return fig
