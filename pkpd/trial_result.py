"""Results of a virtual trial (:meth:`pkpd.trial.Trial.run`) as tables.

:class:`TrialResult` holds every simulated patient's course and builds, on
first access, the endpoint table (endpoints from :mod:`pkpd.endpoints`), the
dose ledger, the dose distribution, the platelet summary, the trajectories
and the NONMEM dataset; it draws the figures of :mod:`pkpd.trial_plots` and
saves all of them in one folder (:mod:`pkpd.output`).

Units: days in tables, h in NONMEM records, mg, 10^9/L.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import lazy_loader as lazy
import numpy as np
import pandas as pd

from . import titration as tt
from . import trial_plots
from .checks import PKPDInputError
from .endpoints import (VisitData, _interval, endpoint_names, endpoint_table, patient_values, percent, replicate_values,
                        response_endpoints)
from .output import write_folder
from .regimen import PLATELET_CMT, RECORD_COLUMNS, Regimen

xr = lazy.load("xarray")  # on first use (~0.1-0.2 s to import): only trajectories is xarray


class TrialResult:
    """Results of :meth:`pkpd.trial.Trial.run` (its design in ``trial``), as pandas DataFrames (and xarray).

    endpoints : one row per arm and endpoint, estimate with a 95% interval
        for one trial of the stated size (Clopper-Pearson for shares of
        patients, mean +- 1.96 SD/sqrt(N) for means) and, with replicates, the
        2.5-97.5 percentiles over the replicate trials.
    ledger : the dose ledger, one row per patient and visit.
    doses : per-visit dose distribution.
    platelets : platelet summary over time (true daily, observed at visits).
    per_replicate : each endpoint per replicate trial and arm (a time to
        event: its Kaplan-Meier median, days).
    omitted_endpoints : endpoints left out because they mean nothing here, with the reason.
    summary() : one row per arm with the headline endpoint in percent.
    plot_response(), plot_platelets(), plot_doses() : the figures.
    """

    def __init__(self, trial, data: dict, grid: np.ndarray, replicates: int, seed):
        self.trial = trial
        self.grid = grid
        self.replicates = replicates
        self.seed = seed
        self._data = data
        self._cache: dict = {}
        #: typical values per replicate when run with ``typical_draws`` (else None)
        self.typical_draws: pd.DataFrame | None = None

    def __repr__(self) -> str:
        t = self.trial
        head = (f"<TrialResult {t.name!r}: {len(t.arms)} arms, {t.n_per_trial} patients per trial, "
                f"{self.replicates} replicate{'s' if self.replicates > 1 else ''}, seed {self.seed}")
        name = self.headline_endpoint
        e = self.endpoints
        rows = e[e["endpoint"] == name]
        rates = ", ".join(f"{r.arm} {percent(r.estimate, name)}" for r in rows.itertuples())
        return f"{head}\n {name}: {rates}\n .summary(), .endpoints, .ledger, .platelets, .plot_response()>"

    # ------------------------------------------------------------ what is reported
    @property
    def omitted_endpoints(self) -> dict[str, str]:
        """Endpoints left out of :attr:`endpoints` and :attr:`per_replicate`, with the reason.

        * The response endpoints (:func:`pkpd.endpoints.response_endpoints`) count patients
          whose observed count reaches ``Endpoints.response``; when more than
          half of the patients are there already at baseline (observed day-0
          count, e.g. healthy volunteers against 50 x10^9/L), they measure the
          population, not the drug, and are left out.
        * ``platelet_increased`` (a safety proxy in thrombocytopenia) is left
          out with them.
        * ``stopped`` is left out when no arm's rule can stop treatment within
          the trial (no ``stop_after_days_at_max``, or no decision visit that
          late; fixed doses never stop).
        """
        e, metrics = self.trial.endpoints, self._patient_metrics()
        out = {}
        at_baseline = float(np.mean(self._data["observed"][:, 0] >= e.response))
        if at_baseline > 0.5:
            why = (f"{percent(at_baseline)} of patients are already >= {e.response:g} x10^9/L at baseline, "
                   "so the response threshold measures the population, not the drug")
            out.update({k: why for k in response_endpoints() if k in metrics})
            if "platelet_increased" in metrics:
                out["platelet_increased"] = ("it is a safety proxy for thrombocytopenic patients, and most patients here "
                                             f"are >= {e.response:g} x10^9/L at baseline")

        def can_stop(arm) -> bool:
            if any(st.kind == "taper" and st.nonresponders == "stop" for st in arm.stages):
                return True
            wait = None if arm.rule is None else arm.rule.stop_after_days_at_max
            return wait is not None and bool(np.any(self.trial.decision_days(arm) >= wait))

        if not any(can_stop(a) for a in self.trial.arms):
            out["stopped"] = "no arm's rule can stop treatment in this trial (stop_after_days_at_max not set or not reached)"
        return out

    @property
    def headline_endpoint(self) -> str:
        """The endpoint :meth:`summary`, the repr and :meth:`plot_response`
        lead with: ``responders_primary`` when there is a primary day, else
        ``responded_once``, else (response endpoints omitted, e.g. healthy
        volunteers) ``peak_rise_pct``."""
        shown = set(self.endpoints["endpoint"])
        return next(k for k in ("responders_primary", "responded_once", "peak_rise_pct") if k in shown)

    def one_endpoint(self, endpoint: str | None = None, caller: str = "endpoint") -> tuple[str, pd.DataFrame]:
        """``endpoint`` (default :attr:`headline_endpoint`; also one left out
        by :attr:`omitted_endpoints`) and its rows of the endpoint table,
        indexed by arm.  ``caller`` names the argument in the error message."""
        name = self.headline_endpoint if endpoint is None else endpoint
        e = self._endpoint_table(keep=[name])
        e = e[e["endpoint"] == name].set_index("arm")
        if e.empty:
            raise PKPDInputError(
                f"{caller} {endpoint!r} is not an endpoint of this trial; use one of "
                f"{sorted(set(self._all_endpoints()['endpoint']))}."
            )
        return name, e

    def summary(self, published: Mapping | None = None, endpoint: str | None = None) -> pd.DataFrame:
        """One row per arm, for reading: kind, start dose (mg), N per trial,
        replicates, seed, the :attr:`headline_endpoint` (or ``endpoint``),
        its simulated value in percent, its 95% CI for one trial of N
        patients (Clopper-Pearson for shares, normal for means) and, with
        replicates, the 2.5-97.5% range of the replicate trials' values.  ``published`` (arm name ->
        :class:`pkpd.scenario.Published`) adds the published share, its
        count, its Clopper-Pearson 95% CI and whether the simulated value
        lies inside.  Numbers for computing are in :attr:`endpoints`."""
        name, e = self.one_endpoint(endpoint, "summary endpoint")
        rows = []
        for arm in self.trial.arms:
            r = e.loc[arm.name]
            row = {"arm": arm.name, "kind": arm.kind, "start_mg": arm.start_mg, "N": arm.n,
                   "replicates": self.replicates, "seed": self.seed, "endpoint": name,
                   "simulated": percent(r["estimate"], name),
                   "95% CI, one trial of N": _interval(r["trial_low"], r["trial_high"], name)}
            if self.replicates > 1:
                row[f"2.5-97.5% over {self.replicates} replicates"] = _interval(r["replicate_low"], r["replicate_high"], name)
            if published:
                pub = published.get(arm.name)
                if pub is not None and pub.endpoint == name:
                    lo, hi = pub.interval
                    row.update({"published": f"{percent(pub.rate)} ({pub.responders}/{pub.n})",
                                "published 95% CI": _interval(lo, hi),
                                "inside": "yes" if lo <= r["estimate"] <= hi else "NO"})
                else:
                    row.update({"published": "", "published 95% CI": "", "inside": ""})
            rows.append(row)
        table = pd.DataFrame(rows).set_index("arm")
        table.attrs["description"] = e["description"].iloc[0]
        return table

    # ------------------------------------------------------------ helpers
    @property
    def arm_names(self) -> list[str]:
        return [a.name for a in self.trial.arms]

    @property
    def ids(self) -> np.ndarray:
        """Patient IDs, 1.. over all replicates (replicate-major, then arm)."""
        d = self._data
        return d["replicate"] * self.trial.n_per_trial + np.arange(d["arm"].size) % self.trial.n_per_trial + 1

    @property
    def parameters(self) -> pd.DataFrame:
        """Each virtual patient's parameters (units in ``.attrs["units"]``, the
        model's :attr:`~pkpd.population.PKPDModel.parameter_units`; plt0 is the true baseline) with
        ID, replicate, arm and ``responder`` (drug effect or not)."""
        d = self._data
        table = pd.DataFrame({
            "ID": self.ids, "replicate": d["replicate"],
            "arm": pd.Categorical.from_codes(d["arm"], categories=self.arm_names),
            **{k.removeprefix("param_"): v for k, v in d.items() if k.startswith("param_")}, "responder": d["responder"],
        })
        table.attrs["units"] = dict(self.trial.model.parameter_units)
        return table

    def _visit_mask(self) -> np.ndarray:
        """(n_arms, G): does an arm have a visit (assessment or decision) on each grid day?"""
        assess = np.isin(self.grid, self.trial.visit_days)
        return np.array([assess | np.isin(self.grid, self.trial.decision_days(a)) for a in self.trial.arms])

    def visit_data(self) -> VisitData:
        """Every patient's course as endpoint functions see it (:class:`pkpd.endpoints.VisitData`)."""
        d = self._data
        tapers = any(st.kind == "taper" for a in self.trial.arms for st in a.stages)
        return VisitData(self.trial.endpoints, self.grid, np.isin(self.grid, self.trial.visit_days),
                         d["observed"], d["true"], d["action"], d["daily"],
                         d["taper_start"] if tapers else None, d["taper_responder"] if tapers else None)

    def _patient_metrics(self) -> pd.DataFrame:
        """Each patient's value of every registered endpoint (with replicate and arm code)."""
        if "metrics" not in self._cache:
            self._cache["metrics"] = patient_values(self.visit_data(), self._data["replicate"], self._data["arm"])
        return self._cache["metrics"]

    # ------------------------------------------------------------ tables
    @property
    def per_replicate(self) -> pd.DataFrame:
        """Each endpoint's value per replicate trial and arm (long format)."""
        m = self._patient_metrics()
        names = [k for k in endpoint_names(m) if k not in self.omitted_endpoints]
        table = replicate_values(m)[["replicate", "arm", *names]]
        table["arm"] = np.asarray(self.arm_names, dtype=object)[table["arm"].to_numpy()]
        return table.melt(id_vars=["replicate", "arm"], var_name="endpoint", value_name="value")

    @property
    def endpoints(self) -> pd.DataFrame:
        """Endpoint table: arm, endpoint, description, kind, unit of the
        values ("fraction" 0-1 or "%"), n (patients per trial), replicates,
        estimate, trial_low/trial_high (95% interval of one trial of n,
        method in trial_interval), replicate_low/replicate_high (2.5 and 97.5
        percentiles of the replicate trials' values, described in
        replicate_interval; NaN with one replicate).  Endpoints that mean
        nothing for this trial are left out (see :attr:`omitted_endpoints`);
        :meth:`summary` prints the headline in percent."""
        return self._endpoint_table()

    def _endpoint_table(self, keep=()) -> pd.DataFrame:
        """The endpoint table without the omitted endpoints, except those in ``keep``."""
        table = self._all_endpoints()
        drop = set(self.omitted_endpoints) - set(keep)
        return table[~table["endpoint"].isin(drop)].reset_index(drop=True)

    def _all_endpoints(self) -> pd.DataFrame:
        if "endpoints" not in self._cache:
            self._cache["endpoints"] = endpoint_table(self._patient_metrics(), self.trial.arms, self.replicates,
                                                      self.trial.endpoints, self.trial.model.pd.OBSERVABLE)
        return self._cache["endpoints"]

    @property
    def ledger(self) -> pd.DataFrame:
        """The dose ledger: one row per patient and visit.

        Columns: replicate, arm, ID (unique over replicates), day, time_h,
        assessment (an endpoint visit), observed and true platelets (10^9/L),
        dose_before_mg (the once-daily dose taken up to this visit, mg; 0 on
        day 0), action (see :data:`pkpd.titration.ACTIONS`), dose_mg (the
        once-daily dose from this visit on; 0 = none, also after the end of
        dosing).
        """
        if "ledger" in self._cache:
            return self._cache["ledger"]
        d = self._data
        keep = self._visit_mask()[d["arm"]]  # (S, G)
        rows, cols = np.nonzero(keep)
        ids = self.ids
        arm_names = pd.Categorical.from_codes(d["arm"][rows], categories=self.arm_names)
        day = self.grid[cols]
        table = pd.DataFrame({
            "replicate": d["replicate"][rows], "arm": arm_names, "ID": ids[rows], "day": day, "time_h": day * 24.0,
            "assessment": np.isin(day, self.trial.visit_days), "observed": d["observed"][rows, cols],
            "true": d["true"][rows, cols], "dose_before_mg": d["dose_before"][rows, cols],
            "action": pd.Categorical.from_codes(d["action"][rows, cols].astype(int), categories=list(tt.ACTIONS)),
            "dose_mg": d["dose"][rows, cols],
        })
        self._cache["ledger"] = table
        return table

    @property
    def doses(self) -> pd.DataFrame:
        """Dose distribution at each post-baseline assessment visit: the
        once-daily dose patients were taking when they came (``dose_mg``, 0 =
        interrupted, stopped or placebo).  Columns arm, day, dose_mg,
        patients, fraction (of the arm's patients, over all replicates)."""
        led = self.ledger
        led = led[led["assessment"] & (led["day"] > 0)]
        counts = (led.groupby(["arm", "day", "dose_before_mg"], observed=True).size().rename("patients")
                  .reset_index().rename(columns={"dose_before_mg": "dose_mg"}))
        totals = {a.name: a.n * self.replicates for a in self.trial.arms}
        counts["fraction"] = counts["patients"] / counts["arm"].astype(str).map(totals)
        return counts

    @property
    def platelets(self) -> pd.DataFrame:
        """Platelet summary per arm and day: median, p05, p95 of the true count
        (daily) and of the observed count (visit days, NaN between), 10^9/L."""
        if "platelets" in self._cache:
            return self._cache["platelets"]
        d = self._data
        days = np.arange(d["daily"].shape[1], dtype=float)
        frames = []
        for i, name in enumerate(self.arm_names):
            sel = d["arm"] == i
            q = np.percentile(d["daily"][sel], [50, 5, 95], axis=0)
            obs = np.full((3, days.size), np.nan)
            cols = np.isin(self.grid, self.trial.visit_days)
            obs[:, self.grid[cols].astype(int)] = np.percentile(d["observed"][sel][:, cols], [50, 5, 95], axis=0)
            frames.append(pd.DataFrame({
                "arm": name, "day": days, "median": q[0], "p05": q[1], "p95": q[2],
                "observed_median": obs[0], "observed_p05": obs[1], "observed_p95": obs[2],
            }))
        self._cache["platelets"] = pd.concat(frames, ignore_index=True)
        return self._cache["platelets"]

    @property
    def trajectories(self) -> xr.Dataset:
        """True platelets (10^9/L) per patient and day, with arm and replicate."""
        d = self._data
        ids = self.ids
        return xr.Dataset(
            {"platelets": (("id", "day"), d["daily"], {"units": "10^9/L"})},
            coords={"id": ids, "day": np.arange(d["daily"].shape[1]),
                    "arm": ("id", np.asarray(self.arm_names, dtype=object)[d["arm"]]),
                    "replicate": ("id", d["replicate"])},
        )

    def to_nonmem(self) -> pd.DataFrame:
        """The virtual trial as a NONMEM dataset: once-daily dose records
        (EVID 1, CMT 1, AMT mg, II 24 h, ADDL; written by
        :meth:`pkpd.regimen.Regimen.to_records`) between visits and the observed
        platelet counts (EVID 0, CMT 3, DV 10^9/L) at each visit.  Readable by
        :func:`pkpd.read_nonmem`; observations come before the dose of the
        same time (morning count, then dose)."""
        led = self.ledger
        ids = led["ID"].to_numpy()
        day = led["day"].to_numpy()
        dose = led["dose_mg"].to_numpy()
        # each ledger row's dose runs until the patient's next visit (or end of dosing)
        same_next = np.r_[ids[1:] == ids[:-1], False]
        next_day = np.where(same_next, np.r_[day[1:], 0.0], self.trial.last_dose_day)
        end = np.minimum(next_day, self.trial.last_dose_day)
        n_doses = np.maximum(end - day, 0).astype(int)
        give = (dose > 0) & (n_doses > 0)
        obs = pd.DataFrame({
            "ID": ids, "TIME": day * 24.0, "AMT": 0.0, "EVID": 0, "MDV": 0, "CMT": PLATELET_CMT,
            "II": 0.0, "ADDL": 0, "SS": 0, "DV": led["observed"].to_numpy(),
        })
        # Regimen writes the record of each distinct (doses, mg) once; each ledger row copies it to its patient and day
        mg_code, mgs = pd.factorize(dose[give])
        which, runs = pd.factorize(n_doses[give] * mgs.size + mg_code)
        written = [Regimen.daily(mgs[k % mgs.size], int(k // mgs.size)).to_records() for k in runs]
        template = pd.concat(written or [Regimen().to_records()], ignore_index=True).astype(obs.dtypes)
        doses = pd.DataFrame({**{c: template[c].to_numpy()[which] for c in RECORD_COLUMNS},
                              "ID": ids[give], "TIME": day[give] * 24.0})
        records = pd.concat([obs, doses], ignore_index=True).sort_values(["ID", "TIME", "EVID"], kind="stable")
        return records[RECORD_COLUMNS].reset_index(drop=True)

    # ------------------------------------------------------------ plots
    def plot_platelets(self, axes=None):
        """Platelets over time per arm; see :func:`pkpd.trial_plots.plot_platelets`."""
        return trial_plots.plot_platelets(self, axes)

    def plot_response(self, endpoint: str | None = None, published: Mapping | None = None):
        """An endpoint by arm beside the published result; see :func:`pkpd.trial_plots.plot_response`."""
        return trial_plots.plot_response(self, endpoint, published)

    def plot_doses(self):
        """Dose distribution at each visit per arm; see :func:`pkpd.trial_plots.plot_doses`."""
        return trial_plots.plot_doses(self)

    # ------------------------------------------------------------ output
    def save(self, out_dir) -> Path:
        """Write endpoints.csv, ledger.csv, doses.csv, platelets.csv,
        nonmem.csv, platelets.png, doses.png and response.png into the folder
        ``out_dir``.

        The folder is written whole or not at all, and only where pkpd may
        write: a new or empty folder, or one an earlier save made (it carries
        the ``.pkpd-output`` marker).  A file or a folder of other files is
        refused (:class:`~pkpd.checks.PKPDInputError`); see :mod:`pkpd.output`.
        Returns the absolute path.
        """
        return write_folder(out_dir, self._write_files)

    def _write_files(self, folder: Path, published: Mapping | None = None) -> None:
        """The files of :meth:`save`, written into the existing ``folder``
        (``published``: the results to draw beside the response, as in
        :meth:`plot_response`)."""
        self.endpoints.to_csv(folder / "endpoints.csv", index=False)
        self.ledger.to_csv(folder / "ledger.csv", index=False)
        self.doses.to_csv(folder / "doses.csv", index=False)
        self.platelets.to_csv(folder / "platelets.csv", index=False)
        self.to_nonmem().to_csv(folder / "nonmem.csv", index=False, na_rep=".")
        figures = (("platelets.png", self.plot_platelets()), ("doses.png", self.plot_doses()),
                   ("response.png", self.plot_response(published=published)))
        for name, fig in figures:
            fig.savefig(folder / name, dpi=120)
