"""Clinical utility of a titration rule, as data: what a patient-day in range
is worth against days too high or too low, dose changes and visits.

A :class:`Utility` is a small frozen dataclass of weights and thresholds; its
:meth:`Utility.per_patient` scores every patient of a
:class:`~pkpd.trial_result.TrialResult` from the true daily counts and the
dose ledger, one row per patient, so that two rules run on the same virtual
patients (the same seed) can be compared patient by patient.

The default weights are a stated judgement [I], not a published utility:
one patient-day with the true count in 50-250 x10^9/L (the phase III
titration target, Mei et al., J Hematol Oncol 2021;14:37) is worth +1; a day
above 400 x10^9/L (the rule's interruption threshold, a thrombosis concern)
costs 2 such days, a day below 30 x10^9/L (the phase III entry threshold,
bleeding risk) costs 3; a dose change costs 0.5 (a new pack, a chance of
error) and a decision visit 0.25 (a blood count and a clinic trip).  Change
them with :meth:`Utility.with_`.

Units: counts in 10^9/L, days; the utility is in "patient-days in range"
equivalents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import titration as tt
from .checks import PKPDInputError, finite, positive, with_fields

#: Action codes of a visit on which the arm's rule (or taper) decided: what a
#: decision visit is for the ``per_visit`` cost (start, observe and fixed are not).
DECISION_ACTIONS = (tt.HOLD, tt.UP, tt.DOWN, tt.INTERRUPT, tt.RESUME, tt.INTERRUPTED, tt.STOP, tt.STOPPED,
                    tt.TAPER, tt.WITHDRAWN)


@dataclass(frozen=True)
class Utility:
    """A clinical utility of a patient's course (weights are per patient).

    in_range : (low, high) target range of the true count, 10^9/L (inclusive).
    per_day_in_range : utility of one day with the true count in range.
    above, per_day_above : a day with the true count > ``above`` (10^9/L)
        adds ``per_day_above`` (negative: a penalty).
    below, per_day_below : a day with the true count < ``below`` (10^9/L)
        adds ``per_day_below``.
    per_dose_change : added per decision visit that changed the dose.
    per_visit : added per decision visit (after day 0).
    name : label.

    Days are days 1 .. duration_days of the trial (day 0 is baseline), as
    for the ``time_in_range`` endpoint.  Defaults and their reasons: see the
    module docstring.
    """

    in_range: tuple[float, float] = (50.0, 250.0)
    per_day_in_range: float = 1.0
    above: float = 400.0
    per_day_above: float = -2.0
    below: float = 30.0
    per_day_below: float = -3.0
    per_dose_change: float = -0.5
    per_visit: float = -0.25
    name: str = "default utility"

    def __post_init__(self):
        try:
            rng = positive("utility.in_range", self.in_range, "10^9/L")
        except (TypeError, ValueError) as err:
            if isinstance(err, PKPDInputError):
                raise
            raise PKPDInputError(f"utility.in_range must be [low, high] in 10^9/L, e.g. (50, 250); got {self.in_range!r}.") from None
        if rng.shape != (2,) or not rng[0] < rng[1]:
            raise PKPDInputError(f"utility.in_range must be [low, high] with low < high (10^9/L); got {self.in_range!r}, "
                                 "e.g. (50, 250).")
        object.__setattr__(self, "in_range", (float(rng[0]), float(rng[1])))
        for name in ("above", "below"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise PKPDInputError(f"utility.{name} must be a platelet count in 10^9/L; got {value!r}.")
            object.__setattr__(self, name, float(positive(f"utility.{name}", value, "10^9/L")))
        for name in ("per_day_in_range", "per_day_above", "per_day_below", "per_dose_change", "per_visit"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise PKPDInputError(f"utility.{name} must be one number (utility per day or per event); got {value!r}.")
            object.__setattr__(self, name, float(finite(f"utility.{name}", value)))
        if not isinstance(self.name, str) or not self.name.strip():
            raise PKPDInputError(f"utility.name must be a non-empty text; got {self.name!r}.")

    def __repr__(self) -> str:
        lo, hi = self.in_range
        return (f"Utility({self.name!r}: {self.per_day_in_range:+g}/day in {lo:g}-{hi:g}, {self.per_day_above:+g}/day > "
                f"{self.above:g}, {self.per_day_below:+g}/day < {self.below:g}, {self.per_dose_change:+g}/dose change, "
                f"{self.per_visit:+g}/visit)")

    def with_(self, **changes) -> "Utility":
        """A copy with some fields changed (validated again)."""
        return with_fields(self, changes)

    # ------------------------------------------------------------ scoring
    def per_patient(self, result) -> pd.DataFrame:
        """One row per patient of ``result`` (a :class:`~pkpd.trial_result.TrialResult`).

        Columns: replicate, arm, ID, days (days scored), days_in_range,
        days_above, days_below (true daily counts, days), any_above (a true
        count > ``above`` on any day), dose_changes and visits (decision
        visits after day 0, from the ledger's actions and doses), time_in_range
        (fraction of days) and utility (the weighted sum).
        """
        d = result._data
        daily = np.asarray(d["daily"], float)[:, 1:]  # days 1 .. duration_days
        lo, hi = self.in_range
        in_range = ((daily >= lo) & (daily <= hi)).sum(axis=1)
        above = (daily > self.above).sum(axis=1)
        below = (daily < self.below).sum(axis=1)
        visit = np.isin(d["action"], DECISION_ACTIONS)
        visit[:, 0] = False  # day 0 starts the dose; it decides nothing
        # only arms' own visits are in the ledger; a decision code never marks another arm's day
        visits = visit.sum(axis=1)
        changes = (visit & (d["dose"] != d["dose_before"])).sum(axis=1)
        utility = (self.per_day_in_range * in_range + self.per_day_above * above + self.per_day_below * below
                   + self.per_dose_change * changes + self.per_visit * visits)
        days = daily.shape[1]
        return pd.DataFrame({
            "replicate": d["replicate"],
            "arm": pd.Categorical.from_codes(d["arm"], categories=result.arm_names),
            "ID": result.ids, "days": days, "days_in_range": in_range, "days_above": above, "days_below": below,
            "any_above": above > 0, "dose_changes": changes, "visits": visits,
            "time_in_range": in_range / days if days else np.full(in_range.shape, np.nan), "utility": utility,
        })

    def summary(self, per_patient: pd.DataFrame) -> dict:
        """Means over the patients of a :meth:`per_patient` table: utility
        (per patient), time_in_range (fraction of days), p_any_above (share
        of patients with a true count > ``above``), days_above, days_below,
        dose_changes, visits (per patient), patients (the count)."""
        if len(per_patient) == 0:
            raise PKPDInputError("the utility of no patients is undefined; the trial has no patients to score.")
        cols = ("utility", "time_in_range", "days_above", "days_below", "dose_changes", "visits")
        out = {c: float(per_patient[c].mean()) for c in cols}
        out["p_any_above"] = float(per_patient["any_above"].mean())
        out["n_any_above"] = int(per_patient["any_above"].sum())
        out["patients"] = int(len(per_patient))
        return out
