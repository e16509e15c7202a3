"""Non-compartmental analysis (NCA), one row of parameters per subject.

The rules follow PKNCA's defaults (and WinNonlin's "best fit"), so results can
be checked against either tool:

* **Cmax, Tmax**: the largest observed concentration and the first time it is
  reached.  **Clast, Tlast**: the last concentration > 0 and its time.
* **AUC** (``auc_last``, 0 to Tlast): linear trapezoids where the concentration
  rises or stays level, log trapezoids ``dt (c1 - c2) / ln(c1 / c2)`` where it
  falls and both ends are > 0 ("linear-up / log-down").
* **lambda_z** (terminal rate constant): log-linear least squares on the last n
  points, for every n >= ``min_points`` (3), using only points after Tmax (the
  Cmax point is excluded) with concentration > 0.  Among fits with lambda_z > 0
  the one with the largest adjusted R^2 wins; fits within ``adj_r2_tolerance``
  (1e-4) of that best value count as ties, and the tie with the most points is
  chosen.  Adjusted R^2 = 1 - (1 - R^2) (n - 1) / (n - 2).
* ``half_life`` = ln 2 / lambda_z; ``auc_inf`` = auc_last + Clast / lambda_z
  (observed Clast); ``auc_pct_extrap`` = 100 (auc_inf - auc_last) / auc_inf.
* With ``tau`` (a dosing interval, steady state): ``auc_tau`` over [0, tau]
  (a concentration at tau that was not sampled is interpolated with the same
  linear-up / log-down rule, or extrapolated past the last sample as
  Clast e^{-lambda_z (t - Tlast)}); ``ctau`` that concentration; ``cavg`` =
  auc_tau / tau; ``accumulation_ratio`` = 1 / (1 - e^{-lambda_z tau}), the
  predicted ratio of steady-state to first-dose exposure for linear PK with a
  single exponential terminal phase (WinNonlin's Accumulation Index).
* With a dose (mg): ``cl_f`` = dose / auc_inf (single dose) or dose / auc_tau
  (steady state, ``tau`` given), L/h; ``vz_f`` = cl_f / lambda_z, L.

Times are hours after the dose that starts the profile.  If the first sample is
after 0 h, the AUC starts from an imputed C(0): 0 after a single dose, the
smallest concentration in [0, tau] at steady state (WinNonlin's convention).
Concentrations of 0 (below the limit of quantification) are kept before the
first and after the last positive value and dropped between positive values
(PKNCA's default).  These choices, and any parameter that could not be computed
(NaN), are written in the ``flag`` column (a string, "" when there is nothing to note); a profile never yields a NaN Cmax.

Bad input raises :class:`PKPDInputError`: missing columns, missing or negative
times, times not strictly increasing within a subject, missing or negative
concentrations.  The units of every column are in ``result.attrs["units"]``.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from .checks import PKPDInputError
from .nonmem import Dataset
from .units import CONC_TO_MG_PER_L, DOSE_TO_MG

#: Flag added when more than this % of AUC0-inf is extrapolated (a common acceptance limit).
MAX_PCT_EXTRAP = 20.0


def nca(
    data: pd.DataFrame | Dataset,
    *,
    dose: float | Mapping | pd.Series | None = None,
    tau: float | None = None,
    id_col: str = "ID",
    time_col: str = "time",
    conc_col: str = "conc",
    cmt: int = 2,
    after_dose: int = -1,
    time_unit: str = "h",
    conc_unit: str | None = None,
    dose_unit: str = "mg",
    min_points: int = 3,
    adj_r2_tolerance: float = 1e-4,
) -> pd.DataFrame:
    """NCA of every subject's concentration-time profile.

    Parameters
    ----------
    data : a long DataFrame with columns ``id_col``, ``time_col`` (h after the
        dose) and ``conc_col``; or a :class:`~pkpd.nonmem.Dataset`, whose
        observations in compartment ``cmt`` (BLQ rows as 0) after the dose number
        ``after_dose`` (among doses > 0 mg; -1 = the last dose) and up to the next
        dose are used, with times taken relative to that dose.
    dose : mg; a number for every subject, or ``{ID: mg}`` / a Series indexed by
        ID.  For a Dataset it defaults to the amount of the analysed dose.
        Without a dose, ``cl_f`` and ``vz_f`` are not reported.
    tau : dosing interval, h, for steady-state parameters (auc_tau, ctau, cavg,
        accumulation_ratio).
    time_unit, conc_unit, dose_unit : unit labels (conc_unit defaults to the
        Dataset's DV unit, else ng/mL); CL/F and Vz/F need a known conc_unit and
        dose_unit to be converted to L/time_unit and L.
    min_points, adj_r2_tolerance : lambda_z selection (see the module docs).

    Returns
    -------
    DataFrame, one row per subject in input order; ``attrs["units"]`` maps each
    column to its unit.
    """
    if tau is not None and not (np.isfinite(tau) and tau > 0):
        raise PKPDInputError(f"tau must be a dosing interval > 0 h; got tau={tau!r}. Give the interval in hours.")
    if int(min_points) != min_points or min_points < 3:
        raise PKPDInputError(f"min_points must be a whole number >= 3; got min_points={min_points!r}.")
    if not (np.isfinite(adj_r2_tolerance) and adj_r2_tolerance >= 0):
        raise PKPDInputError(f"adj_r2_tolerance must be >= 0; got adj_r2_tolerance={adj_r2_tolerance!r}.")

    if isinstance(data, Dataset):
        profiles, default_doses = _profiles_from_dataset(data, cmt, after_dose)
        conc_unit = conc_unit or data.units["dv"]
        out_id = "ID"
    elif isinstance(data, pd.DataFrame):
        profiles = _profiles_from_frame(data, id_col, time_col, conc_col)
        default_doses = {}
        conc_unit = conc_unit or "ng/mL"
        out_id = id_col
    else:
        raise PKPDInputError(f"data must be a pandas DataFrame or a pkpd Dataset; got {type(data).__name__}.")

    doses = _doses_by_id(dose, default_doses, [sid for sid, _, _ in profiles])
    if doses is not None:
        for name, table, unit in (("conc_unit", CONC_TO_MG_PER_L, conc_unit), ("dose_unit", DOSE_TO_MG, dose_unit)):
            if unit not in table:
                raise PKPDInputError(f"{name}={unit!r} is not a known unit; use one of {list(table)} to get CL/F and Vz/F.")
        # dose [dose_unit] / AUC [time*conc] -> L/time
        scale = DOSE_TO_MG[dose_unit] / CONC_TO_MG_PER_L[conc_unit]

    rows = []
    for sid, time, conc in profiles:
        res = nca_profile(time, conc, tau=tau, min_points=min_points, adj_r2_tolerance=adj_r2_tolerance, label=f"ID {sid!r}")
        row = {out_id: sid, **res}
        if doses is not None:
            d = doses[sid]
            exposure = res["auc_tau"] if tau is not None else res["auc_inf"]
            row["dose"] = d
            row["cl_f"] = d * scale / exposure if exposure > 0 else np.nan
            row["vz_f"] = row["cl_f"] / res["lambda_z"]
        row["flag"] = row.pop("flag")  # keep it the last column
        rows.append(row)
    result = pd.DataFrame(rows)
    result.attrs["units"] = {c: u for c, u in _units(time_unit, conc_unit, dose_unit).items() if c in result.columns}
    return result


def nca_profile(
    time,
    conc,
    *,
    tau: float | None = None,
    min_points: int = 3,
    adj_r2_tolerance: float = 1e-4,
    label: str = "profile",
) -> dict:
    """NCA parameters of one profile (times in h after the dose) as a dict.

    Keys: n_samples, cmax, tmax, clast, tlast, auc_last, lambda_z, lambda_z_r2,
    lambda_z_adj_r2, lambda_z_n_points, lambda_z_time_first, half_life, auc_inf,
    auc_pct_extrap, [auc_tau, ctau, cavg, accumulation_ratio when tau is
    given], flag (notes joined by "; ", "" when there is nothing to note).
    """
    t, c = _checked_profile(time, conc, label)
    flags: list[str] = []

    cmax = float(c.max())
    tmax = float(t[np.argmax(c)])  # first time of the maximum
    positive = np.flatnonzero(c > 0)
    if positive.size:
        clast, tlast = float(c[positive[-1]]), float(t[positive[-1]])
    else:
        clast, tlast = 0.0, np.nan
        flags.append("all concentrations are 0: no Tlast, lambda_z or AUC extrapolation")

    # Zeros between positive values are dropped (BLQ in the middle of a profile).
    keep = np.ones(t.size, bool)
    if positive.size:
        middle = np.arange(positive[0], positive[-1] + 1)
        keep[middle[c[middle] == 0]] = False
        if (~keep).sum():
            flags.append(f"dropped {(~keep).sum()} zero concentration(s) between positive ones")
    ta, ca = t[keep], c[keep]

    # The AUC starts at the dose: impute C(0) when the first sample is later.
    if ta[0] > 0:
        in_tau = c[t <= tau] if tau is not None else c
        c0 = 0.0 if tau is None else float(in_tau.min() if in_tau.size else c.min())
        ta, ca = np.r_[0.0, ta], np.r_[c0, ca]
        flags.append(f"no sample at 0 h: C(0) imputed as {c0:g}" + ("" if tau is None else " (smallest in [0, tau])"))

    auc_last = float(_auc_segments(ta, ca)[: np.searchsorted(ta, tlast)].sum()) if positive.size else 0.0

    fit = _best_fit_lambda_z(t[keep], c[keep], tmax, min_points, adj_r2_tolerance)
    if fit["reason"]:
        flags.append(fit.pop("reason"))
    else:
        fit.pop("reason")
    lambda_z = fit["lambda_z"]
    auc_inf = auc_last + clast / lambda_z if positive.size else np.nan
    pct = 100.0 * (auc_inf - auc_last) / auc_inf if np.isfinite(auc_inf) and auc_inf > 0 else np.nan
    if pct > MAX_PCT_EXTRAP:
        flags.append(f"auc_pct_extrap {pct:.1f}% > {MAX_PCT_EXTRAP:g}%")

    res = {
        "n_samples": int(t.size), "cmax": cmax, "tmax": tmax, "clast": clast, "tlast": tlast,
        "auc_last": auc_last, **fit, "half_life": np.log(2) / lambda_z,
        "auc_inf": auc_inf, "auc_pct_extrap": pct,
    }
    if tau is not None:
        auc_tau, ctau, note = _auc_to(ta, ca, float(tau), lambda_z)
        if note:
            flags.append(note)
        res.update(auc_tau=auc_tau, ctau=ctau, cavg=auc_tau / tau,
                   accumulation_ratio=1.0 / -np.expm1(-lambda_z * tau))
    res["flag"] = "; ".join(flags)
    return res


# ============================================================== building blocks
def _auc_segments(t: np.ndarray, c: np.ndarray) -> np.ndarray:
    """AUC of each interval [t_i, t_i+1]: linear up / log down."""
    dt, c1, c2 = np.diff(t), c[:-1], c[1:]
    log_down = (c2 < c1) & (c2 > 0)
    ratio = np.where(log_down, c1 / np.where(log_down, c2, 1.0), 2.0)
    return np.where(log_down, dt * (c1 - c2) / np.log(ratio), dt * (c1 + c2) / 2.0)


def _interpolate(t1, c1, t2, c2, t):
    """Concentration at t in [t1, t2]: log-linear if falling and both > 0, else linear."""
    f = (t - t1) / (t2 - t1)
    if c2 < c1 and c2 > 0:
        return c1 * (c2 / c1) ** f
    return c1 + f * (c2 - c1)


def _auc_to(t: np.ndarray, c: np.ndarray, end: float, lambda_z: float) -> tuple[float, float, str]:
    """AUC over [0, end] and C(end); t starts at 0.  Past the last sample the curve
    is Clast e^{-lambda_z (t - t_last)} (0 if the last sample is 0)."""
    seg = _auc_segments(t, c)
    if end <= t[-1]:
        j = int(np.searchsorted(t, end, side="right")) - 1  # t[j] <= end
        if t[j] == end:
            return float(seg[:j].sum()), float(c[j]), ""
        c_end = _interpolate(t[j], c[j], t[j + 1], c[j + 1], end)
        part = _auc_segments(np.array([t[j], end]), np.array([c[j], c_end]))[0]
        return float(seg[:j].sum() + part), float(c_end), ""
    total, c_last, gap = float(seg.sum()), float(c[-1]), end - t[-1]
    if c_last == 0:
        return total, 0.0, ""
    if not np.isfinite(lambda_z):
        return np.nan, np.nan, f"auc_tau not computed: tau is after the last sample ({t[-1]:g} h) and lambda_z is missing"
    note = f"auc_tau extrapolated from {t[-1]:g} h to tau with lambda_z"
    return total + c_last / lambda_z * -np.expm1(-lambda_z * gap), c_last * np.exp(-lambda_z * gap), note


def _best_fit_lambda_z(t, c, tmax, min_points, tolerance) -> dict:
    """Best-fit terminal regression of ln(conc) on time (see the module docs).

    The last 3, 4, ... points are fitted by adding one point at a time from the
    end with Welford's updates of the means and (co)variances, which stay
    accurate however many points there are.
    """
    nan = {"lambda_z": np.nan, "lambda_z_r2": np.nan, "lambda_z_adj_r2": np.nan,
           "lambda_z_n_points": 0, "lambda_z_time_first": np.nan}
    use = (t > tmax) & (c > 0)
    x, y = t[use], np.log(c[use])
    if x.size < min_points:
        return {**nan, "reason": f"lambda_z not estimated: {x.size} positive point(s) after Tmax, need >= {min_points}"}

    fits = []  # (n, lambda_z, r2, adj_r2, first time)
    n, mx, my, sxx, syy, sxy = 0, 0.0, 0.0, 0.0, 0.0, 0.0
    for i in range(x.size - 1, -1, -1):
        n += 1
        dx, dy = x[i] - mx, y[i] - my
        mx += dx / n
        my += dy / n
        sxx += dx * (x[i] - mx)
        syy += dy * (y[i] - my)
        sxy += dx * (y[i] - my)
        if n >= min_points:
            slope = sxy / sxx
            r2 = sxy * sxy / (sxx * syy) if syy > 0 else np.nan
            adj = 1.0 - (1.0 - r2) * (n - 1) / (n - 2)
            fits.append((n, -slope, r2, adj, x[i]))
    good = [f for f in fits if f[1] > 0 and np.isfinite(f[3])]
    if not good:
        return {**nan, "reason": "lambda_z not estimated: concentrations after Tmax do not decline"}
    best = max(f[3] for f in good)
    n, lz, r2, adj, first = max((f for f in good if f[3] >= best - tolerance), key=lambda f: f[0])
    return {"lambda_z": lz, "lambda_z_r2": r2, "lambda_z_adj_r2": adj, "lambda_z_n_points": n,
            "lambda_z_time_first": first, "reason": ""}


# ============================================================== input handling
def _checked_profile(time, conc, label: str, where=None, names=("time", "conc")) -> tuple[np.ndarray, np.ndarray]:
    """Validate one profile.  ``where(i)`` names sample i in messages (default
    "sample i+1"); ``names`` are the user's time and concentration column names."""
    where = where or (lambda i: f"sample {i + 1}")
    t_name, c_name = names
    t = np.asarray(time, dtype=float)
    c = np.asarray(conc, dtype=float)
    if t.ndim != 1 or t.shape != c.shape:
        raise PKPDInputError(f"{label}: {t_name} and {c_name} must be 1-D and of equal length; got {t.shape} and {c.shape}.")
    if t.size == 0:
        raise PKPDInputError(f"{label}: no samples; give at least one ({t_name}, {c_name}) pair.")
    for name, values, unit in ((t_name, t, " h"), (c_name, c, "")):
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = bad[0]
            raise PKPDInputError(
                f"{name}: {label}, {where(i)} has {name}={float(values[i])!r}; it must be a finite number. "
                f"Drop the sample or fill it in (e.g. a BLQ concentration as 0)."
            )
        neg = np.flatnonzero(values < 0)
        if neg.size:
            i = neg[0]
            fix = "Times are hours after the dose; drop pre-dose samples or shift the times." if name == t_name \
                else "Concentrations cannot be negative; use 0 for BLQ."
            raise PKPDInputError(f"{name}: {label}, {where(i)} has {name}={float(values[i])!r}{unit}; it must be >= 0. {fix}")
    steps = np.flatnonzero(np.diff(t) <= 0)
    if steps.size:
        i = steps[0] + 1
        raise PKPDInputError(
            f"{t_name}: {label}, {where(i)} has {t_name}={float(t[i])!r} h, not after the previous {float(t[i - 1])!r} h; times "
            f"must be strictly increasing within a subject. Sort by time and average or drop duplicates."
        )
    return t, c


def _profiles_from_frame(df: pd.DataFrame, id_col, time_col, conc_col):
    missing = [c for c in (id_col, time_col, conc_col) if c not in df.columns]
    if missing:
        raise PKPDInputError(
            f"column {missing[0]!r} is missing; the DataFrame has columns {list(df.columns)}. "
            f"Rename it, or pass id_col=/time_col=/conc_col= to nca()."
        )
    if len(df) == 0:
        raise PKPDInputError("the DataFrame has no rows; give at least one (ID, time, conc) row.")
    ids = df[id_col].to_numpy()
    if pd.isna(ids).any():
        i = int(np.flatnonzero(pd.isna(ids))[0])
        raise PKPDInputError(f"{id_col}: row {i + 1} has {id_col}={_python(ids[i])!r}; every row needs a subject ID.")
    numeric = {}
    for col in (time_col, conc_col):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy() & df[col].notna().to_numpy())
        if bad.size:
            i = int(bad[0])
            raise PKPDInputError(
                f"{col}: row {i + 1} (ID {_python(ids[i])!r}) has {col}={_python(df[col].iloc[i])!r}; it is not a number."
            )
        numeric[col] = values.to_numpy(float)
    profiles = []
    for sid, pos in pd.Series(np.arange(len(df))).groupby(pd.Series(ids), sort=False):
        pos = pos.to_numpy()
        t, c = _checked_profile(
            numeric[time_col][pos], numeric[conc_col][pos], f"ID {_python(sid)!r}",
            where=lambda i, pos=pos: f"row {pos[i] + 1}", names=(time_col, conc_col),
        )
        profiles.append((_python(sid), t, c))
    return profiles


def _profiles_from_dataset(data: Dataset, cmt: int, after_dose: int):
    profiles, doses = [], {}
    for s in data:
        obs = s.observations
        obs = obs[obs["cmt"] == cmt]
        given = [d for d in s.regimen.doses if d.amount > 0]
        if not given:
            raise PKPDInputError(f"ID {s.id!r} has no dose > 0 mg; NCA needs the dose that starts the profile. "
                                 f"Drop the subject (e.g. placebo) before calling nca().")
        try:
            dose = given[after_dose]
        except IndexError:
            raise PKPDInputError(f"after_dose={after_dose} but ID {s.id!r} has {len(given)} dose(s); "
                                 f"use an index from {-len(given)} to {len(given) - 1}.") from None
        later = [d.time for d in given if d.time > dose.time]
        end = later[0] if later else np.inf
        sel = obs[(obs["time"] >= dose.time) & (obs["time"] <= end)]
        if len(sel) == 0:
            raise PKPDInputError(f"ID {s.id!r} has no observation in CMT {cmt} between its dose at {dose.time:g} h "
                                 f"and {end:g} h; check cmt= and after_dose=.")
        conc = sel["dv"].to_numpy(float)
        if "blq" in sel:
            conc = np.where(sel["blq"].fillna(0).to_numpy() == 1, 0.0, conc)
        profiles.append((s.id, sel["time"].to_numpy(float) - dose.time, conc))
        doses[s.id] = dose.amount
    return profiles, doses


def _doses_by_id(dose, defaults: dict, ids: list):
    """{ID: dose} or None when no dose is known."""
    if dose is None:
        return defaults or None
    if isinstance(dose, (Mapping, pd.Series)):
        table = dict(dose)
        missing = [i for i in ids if i not in table]
        if missing:
            raise PKPDInputError(f"dose has no entry for ID {missing[0]!r}; give a dose (mg) for every subject.")
    else:
        table = {i: dose for i in ids}
    for sid, d in table.items():
        if sid in ids and not (np.isfinite(d) and d > 0):
            raise PKPDInputError(f"dose for ID {sid!r} must be > 0 mg; got dose={d!r}.")
    return {i: float(table[i]) for i in ids}


def _units(time_unit: str, conc_unit: str, dose_unit: str) -> dict:
    auc = f"{time_unit}*{conc_unit}"
    return {
        "n_samples": "count", "cmax": conc_unit, "tmax": time_unit, "clast": conc_unit, "tlast": time_unit,
        "auc_last": auc, "lambda_z": f"1/{time_unit}", "lambda_z_r2": "1", "lambda_z_adj_r2": "1",
        "lambda_z_n_points": "count", "lambda_z_time_first": time_unit, "half_life": time_unit,
        "auc_inf": auc, "auc_pct_extrap": "%", "auc_tau": auc, "ctau": conc_unit, "cavg": conc_unit,
        "accumulation_ratio": "1", "dose": dose_unit, "cl_f": f"L/{time_unit}", "vz_f": "L", "flag": "",
    }


def _python(x):
    return x.item() if isinstance(x, np.generic) else x
