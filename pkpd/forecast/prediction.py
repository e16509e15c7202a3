"""Predictive platelet counts for candidate next regimens, and the recommended dose.

For each candidate once-daily dose (every ladder level, 0 mg = interrupt,
and the current dose) the posterior draws of :func:`~pkpd.forecast.posterior.fit_individual`
(resampled by their importance weights; with population uncertainty each with
its own population draw's typical values) are simulated from time 0 through the
history's doses and then the candidate's doses from ``start_h``, with the
simulation solver (:meth:`pkpd.population.PKPDModel.solver`).  A predicted
count is what the next visit will *measure*: the true count times the model's
visit-to-visit residual error (``model.residual_plt``, or each population
draw's own when the population draws carry residual SDs), and with a disease
fluctuation each draw's path continued forward by its AR(1)
(:meth:`pkpd.Fluctuation.extend`), as :class:`pkpd.Trial` does.  All
candidates share the draws, paths and residual noise (common random numbers),
so their differences are not Monte-Carlo noise.

The recommendation is the ladder dose with the highest P(low <= count <= high)
(averaged over the visit days) among the doses whose P(count > ``above``) is at
most ``max_p_above`` on every visit day.  Doses within ``TIE`` of the best
probability are near ties (Monte-Carlo noise, or a count far from the range
under every dose, where all probabilities are ~0): among them the one whose
predicted counts lie closest to the range wins (``distance``, the mean of
max(log(low / count), 0, log(count / high))), the current dose if it is within
``DISTANCE_TIE`` of the closest (a dose that works is not changed for noise).  With a
``hold_margin`` the current dose, if it meets the constraint, is also kept while its
P(in range) is within that margin of the highest (hysteresis).  If no dose
meets the constraint, the dose with the lowest P(count > ``above``) is
recommended and the reason says so.  Units: h, days for visits, mg, 10^9/L.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from ..checks import PKPDInputError
from .posterior import IndividualPosterior

#: Differences in P(in range) below this are near ties (see the module docstring).
TIE = 0.01
#: Differences in the mean log-distance from the range below this are ties too: the current dose is kept.
DISTANCE_TIE = 0.02


def candidate_doses(ladder_mg, current_mg: float) -> tuple[np.ndarray, list]:
    """The candidate doses (mg, ascending: the ladder with 0, and the current dose) and their labels."""
    doses = sorted({0.0, *map(float, ladder_mg), float(current_mg)})
    labels = []
    for d in doses:
        tags = [t for t, on in (("interrupt", d == 0), ("current", d == current_mg),
                                ("off ladder", d not in map(float, ladder_mg) and d != 0)) if on]
        labels.append(f"{d:g} mg" + (f" ({', '.join(tags)})" if tags else ""))
    return np.array(doses), labels


def _quantiles(x: np.ndarray, axis=0):
    return np.quantile(x, [0.05, 0.5, 0.95], axis=axis)


def predict(post: IndividualPosterior, doses: np.ndarray, start_h: float, visit_h: np.ndarray, *,
            dose_interval_h: float = 24.0, n_predict: int = 1000, rng: np.random.Generator,
            grid_h: float = 24.0) -> dict:
    """Simulate every candidate dose for ``n_predict`` resampled posterior draws.

    Returns ``observed`` (C, n, V) predicted visit counts with residual error,
    ``true`` (C, n, V), ``grid_h`` (G,) times of the bands and ``band``
    (C, 3, G) the 5/50/95 % of the predicted observed counts there (10^9/L).
    """
    model, h = post.model, post.history
    idx = post.resample(int(n_predict), rng)
    n, C = idx.size, doses.size
    end = float(visit_h.max())
    future = start_h + dose_interval_h * np.arange(int(np.ceil((end - start_h) / dose_interval_h - 1e-9)))
    future = future[future < end - 1e-9]
    grid = np.union1d(np.arange(0.0, end + 1e-9, grid_h), np.concatenate([[start_h], h.count_times_h]))
    grid = grid[grid <= end + 1e-9]
    past_t, ahead_t = grid[grid <= start_h + 1e-9], np.union1d(grid[grid > start_h + 1e-9], visit_h)
    options = {}
    fl = model.fluctuation
    if post.paths is not None and fl is not None and fl.sd_log > 0:
        options["_path"] = fl.extend(post.paths[idx], int(np.ceil(end / fl.interval_h)) + 2, rng)
    # One solver for the draws: the history once, then each candidate from the state at start_h
    # (the solver caches its propagators, so a candidate costs one more run, not a new set-up).
    solver = model.solver(post.frame(idx), **options)  # each draw with its own population draw's typical values
    _, past, state = solver.run(h.dose_times_h, h.dose_mg, past_t, state=None)
    ahead = np.stack([solver.run(future, np.full(future.size, dose), ahead_t, state=state)[1] for dose in doses])
    true = np.concatenate([np.broadcast_to(past, (C, *past.shape)), ahead], axis=2)  # (C, n, T)
    times = np.concatenate([past_t, ahead_t])
    seed = int(rng.integers(2**63))
    groups = post.residual_groups(idx)
    if len(groups) == 1:
        observed_all = np.stack([groups[0][0].sample(true[c], np.random.default_rng(seed)) for c in range(C)])
    else:  # population draws with their own residual errors: each group its own noise stream, shared by the candidates
        observed_all = np.empty_like(true)
        for j, (err, mask) in enumerate(groups):
            for c in range(C):
                observed_all[c, mask] = err.sample(true[c, mask], np.random.default_rng([seed, j]))
    at_visit = np.searchsorted(times, visit_h)
    at_grid = np.searchsorted(times, grid)
    return {"observed": observed_all[:, :, at_visit], "true": true[:, :, at_visit], "grid_h": grid,
            "band": np.moveaxis(_quantiles(observed_all[:, :, at_grid], axis=1), 0, 1),
            "future_dose_h": future}


def candidate_table(doses, labels, visit_days, observed, target, above, below) -> pd.DataFrame:
    """One row per candidate dose and visit day: median and 5-95 % of the predicted count,
    P(target[0] <= count <= target[1]), P(count > above), P(count < below) and the mean
    log-distance of the count from the target range (0 inside it)."""
    low, high = target
    rows = []
    for c, (dose, label) in enumerate(zip(doses, labels)):
        for v, day in enumerate(visit_days):
            x = observed[c, :, v]
            q = _quantiles(x)
            with np.errstate(divide="ignore"):
                log_x = np.log(np.maximum(x, 1e-3))
            distance = np.maximum(np.maximum(np.log(low) - log_x, 0.0), log_x - np.log(high))
            rows.append({"dose_mg": dose, "candidate": label, "visit_day": day, "median": q[1], "p5": q[0], "p95": q[2],
                         "p_in_range": float(np.mean((x >= low) & (x <= high))), "p_above": float(np.mean(x > above)),
                         "p_below": float(np.mean(x < below)), "distance": float(distance.mean())})
    return pd.DataFrame(rows)


def choose(table: pd.DataFrame, ladder_mg, target, above: float, max_p_above: float,
           current_mg: float | None = None, hold_margin: float = 0.0) -> tuple[float, str]:
    """The recommended ladder dose and the one-line reason (see the module docstring).
    ``hold_margin``: the current dose, if safe, is kept while its P(in range) is within this
    of the highest (a cost of changing the dose: hysteresis against oscillating doses)."""
    ladder = {0.0, *map(float, ladder_mg)}
    table = table if "distance" in table else table.assign(distance=0.0)
    per = table[table["dose_mg"].isin(ladder)].groupby("dose_mg").agg(p_in=("p_in_range", "mean"),
                                                                      p_above=("p_above", "max"),
                                                                      distance=("distance", "mean"))
    days = "/".join(f"{d:g}" for d in sorted(table["visit_day"].unique()))
    ok = per[per["p_above"] <= max_p_above + 1e-12]
    rng_txt = f"P({target[0]:g}-{target[1]:g})"
    if len(ok):
        top = float(ok["p_in"].idxmax())
        if (hold_margin > 0 and current_mg is not None and float(current_mg) in ok.index and float(current_mg) != top
                and ok.loc[float(current_mg), "p_in"] >= ok.loc[top, "p_in"] - hold_margin):
            cur = float(current_mg)
            return cur, (f"{cur:g} mg (current, held): {rng_txt} = {ok.loc[cur, 'p_in']:.2f} on day {days}, within "
                         f"the hold margin {hold_margin:g} of the highest ({ok.loc[top, 'p_in']:.2f}, {top:g} mg) "
                         f"among doses with P(>{above:g}) <= {max_p_above:.0%}")
        near = ok[ok["p_in"] >= ok.loc[top, "p_in"] - TIE]
        closest = near[near["distance"] <= near["distance"].min() + DISTANCE_TIE]
        held = current_mg is not None and float(current_mg) in closest.index
        dose = float(current_mg) if held else float(closest["distance"].idxmin())
        safe = f"among doses with P(>{above:g}) <= {max_p_above:.0%}"
        if dose == top or len(near) == 1:
            return dose, f"{dose:g} mg: highest {rng_txt} = {ok.loc[dose, 'p_in']:.2f} on day {days} {safe}"
        why = "the current dose" if held else "its counts nearest the range"
        return dose, (f"{dose:g} mg: {rng_txt} = {ok.loc[dose, 'p_in']:.2f} on day {days}, within {TIE:g} of the highest "
                      f"({ok.loc[top, 'p_in']:.2f}, {top:g} mg) {safe}, and {why}")
    dose = float(per["p_above"].idxmin())
    return dose, (f"{dose:g} mg: no dose keeps P(>{above:g}) <= {max_p_above:.0%} on day {days}; this dose has the lowest, "
                  f"{per.loc[dose, 'p_above']:.2f}")


def next_visit(table: pd.DataFrame, dose_mg: float, above: float, max_p_above: float, below: float,
               max_p_below: float) -> tuple[float, str]:
    """The day of the next visit on ``dose_mg`` and why: the latest forecast visit day up to
    which, at every forecast day, P(count > above) <= max_p_above and P(count < below) <=
    max_p_below; the earliest forecast day when even that one breaks them (see the patient
    soon).  A stable patient is seen less often, one heading out of the safe range sooner."""
    rows = table[np.isclose(table["dose_mg"], float(dose_mg))].sort_values("visit_day")
    safe = ((rows["p_above"] <= max_p_above + 1e-12) & (rows["p_below"] <= max_p_below + 1e-12)).to_numpy()
    days = rows["visit_day"].to_numpy(float)
    limits = f"P(>{above:g}) <= {max_p_above:.0%} and P(<{below:g}) <= {max_p_below:.0%}"
    if not safe[0]:
        return float(days[0]), f"next visit on day {days[0]:g}, the earliest forecast: {limits} fails already then"
    last = int(np.argmin(safe)) - 1 if not safe.all() else days.size - 1
    tail = "" if last == days.size - 1 else f" (day {days[last + 1]:g} breaks it)"
    return float(days[last]), f"next visit on day {days[last]:g}: the latest forecast day up to which {limits}{tail}"


def choose_many(observed: np.ndarray, doses, target, above: float, max_p_above: float,
                current_mg, hold_margin: float = 0.0) -> np.ndarray:
    """The doses :func:`choose` recommends (mg, shape (n,)), for many patients at once.

    observed : (C, n, K, V) predicted measured counts (10^9/L) of candidate ``doses`` (C,), mg,
        ascending ladder doses with 0 mg; K draws, V visit days.
    current_mg : (n,) each patient's current dose, mg (one of ``doses``).
    hold_margin : as in :func:`choose`.
    The same rule as :func:`candidate_table` + :func:`choose`, without the tables:
    P(in range) averaged over the visits, P(> above) its maximum, the mean log-distance.
    """
    low, high = map(float, target)
    doses = np.asarray(doses, float)
    x = np.asarray(observed, float)
    p_in = np.mean((x >= low) & (x <= high), axis=2).mean(axis=2).T  # (n, C)
    p_above = np.mean(x > above, axis=2).max(axis=2).T
    log_x = np.log(np.maximum(x, 1e-3))
    distance = np.maximum(np.maximum(np.log(low) - log_x, 0.0), log_x - np.log(high)).mean(axis=2).mean(axis=2).T
    rows = np.arange(p_in.shape[0])
    ok = p_above <= max_p_above + 1e-12
    p_ok = np.where(ok, p_in, -np.inf)
    best = p_ok[rows, np.argmax(p_ok, axis=1)]
    near = ok & (p_in >= best[:, None] - TIE)
    d_near = np.where(near, distance, np.inf)
    closest = near & (distance <= d_near.min(axis=1)[:, None] + DISTANCE_TIE)
    current = np.asarray(current_mg, float)
    at = np.argmin(np.abs(doses[None, :] - current[:, None]), axis=1)
    on_ladder = np.isclose(doses[at], current, rtol=0, atol=1e-9)
    held = (closest[rows, at] | (ok[rows, at] & (p_in[rows, at] >= best - hold_margin) & (hold_margin > 0))) & on_ladder
    chosen = np.where(held, current, doses[np.argmin(d_near, axis=1)])
    return np.where(ok.any(axis=1), chosen, doses[np.argmin(p_above, axis=1)])


class Forecast:
    """A dose forecast for one patient.

    ``table``: one row per candidate dose and visit day (dose_mg, candidate,
    visit_day, median, p5, p95 of the predicted measured count in 10^9/L,
    p_in_range, p_above, p_below); ``dose_mg``: the recommended dose;
    ``reason``: why it won; ``visit_day``: the day of the next visit when the forecast
    chose it (``choose_visit=True``), else None; ``posterior``: the
    :class:`~pkpd.forecast.posterior.IndividualPosterior` with its diagnostics;
    ``settings``: the thresholds and times used.
    """

    def __init__(self, posterior, table, dose_mg, reason, settings, prediction, visit_day=None):
        self.posterior, self.table, self.dose_mg, self.reason = posterior, table, dose_mg, reason
        self.settings, self._prediction, self.visit_day = settings, prediction, visit_day

    @property
    def history(self):
        return self.posterior.history

    def candidate(self, dose_mg: float) -> pd.DataFrame:
        """The rows of one candidate dose (mg)."""
        rows = self.table[np.isclose(self.table["dose_mg"], float(dose_mg))]
        if rows.empty:
            raise PKPDInputError(f"dose_mg {dose_mg!r} is not a candidate; candidates: "
                                 f"{sorted(self.table['dose_mg'].unique())} mg.")
        return rows.reset_index(drop=True)

    def predicted(self, dose_mg: float, visit: int = 0, measured: bool = True) -> np.ndarray:
        """The predicted counts (10^9/L) of one candidate at visit number ``visit``: the
        measured count (with the residual error) or the true one (``measured=False``)."""
        c = self.settings["doses"].index(float(self.candidate(dose_mg)["dose_mg"].iloc[0]))
        return self._prediction["observed" if measured else "true"][c, :, visit].copy()

    def interval_width(self, dose_mg: float | None = None, visit: int = 0) -> float:
        """Width of the 5-95 % predictive interval (10^9/L) of a candidate (default: the dose taken at the start)."""
        dose = self.settings["current_mg"] if dose_mg is None else dose_mg
        row = self.candidate(dose).iloc[visit]
        return float(row["p95"] - row["p5"])

    def __repr__(self) -> str:
        s, p = self.settings, self.posterior
        cols = ["candidate", "visit_day", "median", "p5", "p95", "p_in_range", "p_above", "p_below"]
        shown = self.table[cols].to_string(index=False, float_format=lambda x: f"{x:.3g}")
        flags = f"; {len(p.warnings)} warning(s)" if p.warnings else ""
        pop = ("" if p.population is None else f"; population uncertainty included ({p.population.size} population "
               f"draws, effective {p.population_ess:.1f})")
        return (f"Forecast(patient {self.history.id!r} from day {s['start_h'] / 24:g}: recommend {self.dose_mg:g} mg; "
                f"P(responder) {p.p_responder:.2f}, Pareto k {p.pareto_k:.2f}{pop}{flags})\n"
                f"  {self.reason}\n{shown}")

    def plot(self, path=None, doses=None):
        """History counts and doses with the forecast bands (5-95 % of the measured
        count) of each candidate; saved to ``path`` (PNG) when given.  Returns the figure."""
        s, pr, h = self.settings, self._prediction, self.history
        doses = s["doses"] if doses is None else doses
        fig = Figure(figsize=(9, 6.5))
        ax, axd = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        days = pr["grid_h"] / 24.0
        ahead = pr["grid_h"] >= s["start_h"] - 1e-9
        colors = colormaps["viridis"](np.linspace(0.0, 0.9, len(s["doses"])))
        c_now = list(s["doses"]).index(s["current_mg"])
        band = pr["band"][c_now]
        past = ~ahead | (pr["grid_h"] == s["start_h"])
        ax.fill_between(days[past], band[0][past], band[2][past], color="0.8", label="predicted measured count, 5-95 %")
        for c, dose in enumerate(s["doses"]):
            if dose not in doses:
                continue
            b = pr["band"][c]
            ax.fill_between(days[ahead], b[0][ahead], b[2][ahead], color=colors[c], alpha=0.18)
            ax.plot(days[ahead], b[1][ahead], color=colors[c], lw=1.6,
                    label=f"{s['labels'][c]}" + (" <- recommended" if dose == self.dose_mg else ""))
        ax.plot(h.count_times_h / 24.0, h.counts, "ko", ms=4, label="measured counts")
        low, high = s["target"]
        ax.axhspan(low, high, color="tab:green", alpha=0.07)
        ax.axhline(s["above"], color="tab:red", lw=0.8, ls="--")
        ax.axvline(s["start_h"] / 24.0, color="0.4", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_ylabel("platelets (10^9/L)")
        ax.set_title(f"patient {h.id}: forecast from day {s['start_h'] / 24:g}; {self.reason}", fontsize=9)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
        last = min(h.dose_times_h[-1] + 24.0, s["start_h"])  # the last dose's day
        axd.step(np.append(h.dose_times_h, last) / 24.0, np.append(h.dose_mg, h.dose_mg[-1]), where="post",
                 color="k", label="given")
        fut = pr["future_dose_h"] / 24.0
        if fut.size:
            axd.step(np.append(fut, s["visit_h"].max() / 24.0), np.full(fut.size + 1, self.dose_mg), where="post",
                     color="tab:blue", ls="--", label="recommended")
        axd.set_ylim(-0.05 * max(h.dose_mg.max(), max(doses), 1.0), 1.1 * max(h.dose_mg.max(), max(doses), 1.0))
        axd.set_ylabel("dose (mg/day)")
        axd.set_xlabel("day")
        axd.legend(fontsize=7, loc="upper left")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig
