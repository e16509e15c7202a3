"""Within-patient fluctuation of disease activity: a seeded AR(1) (discretised
Ornstein-Uhlenbeck) process on the log of a response's production.

Counts of immune thrombocytopenia (ITP) drift from week to week beyond assay
noise: antibody-mediated destruction and megakaryocyte suppression wax and
wane, so untreated patients cross 50 x10^9/L now and then and treated patients
move in and out of response.  Independent visit noise around fixed individual
parameters cannot do that (it has no memory).  Here the production of the
response's precursors is multiplied by ``exp(eta(t))``, with ``eta`` piecewise
constant on intervals of ``interval_h`` hours (one per day by default) and
following the exact discretisation of an Ornstein-Uhlenbeck process of
stationary SD ``sd_log`` and correlation time ``time_h``::

    eta_0 = 0 at t = 0   (the patient at entry: the baseline the trial measured)
    eta_k = rho eta_{k-1} + sqrt(1 - rho^2) sd_log eps_k,  rho = exp(-interval_h / time_h)

so ``eta`` reaches its stationary spread within a few ``time_h``.  Through the
maturation delay of the transit chain the count follows with a lag and is
smoothed.  The innovations ``eps`` are standard normals drawn interval by
interval (all subjects of one interval at once) from one seeded numpy
Generator, so a path does not depend on how a simulation is split into runs.
Cost is linear in subjects x intervals.  The size and time scale of the
fluctuation are calibrated for ITP in :mod:`pkpd.drugs.hetrombopag`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .checks import PKPDInputError, positive, real


@dataclass(frozen=True)
class Fluctuation:
    """An AR(1) process on log production (see the module docstring).

    sd_log : stationary SD of log production (-); 0 turns it off.
    time_h : correlation time of the Ornstein-Uhlenbeck process, h.
    interval_h : length of the intervals on which it is held constant, h.
    """

    sd_log: float
    time_h: float
    interval_h: float = 24.0

    def __post_init__(self):
        sd = float(real("fluctuation sd_log", self.sd_log))
        if not sd >= 0:
            raise PKPDInputError(f"fluctuation sd_log (log SD) must be >= 0; got {self.sd_log!r}. Use 0 to turn it off.")
        positive("fluctuation time_h", self.time_h, "h")
        positive("fluctuation interval_h", self.interval_h, "h")

    @property
    def rho(self) -> float:
        """Autocorrelation of eta from one interval to the next."""
        return float(np.exp(-self.interval_h / self.time_h))

    def extend(self, path: np.ndarray, n_intervals: int, rng: np.random.Generator) -> np.ndarray:
        """``path`` (S, G) of eta values continued to ``n_intervals`` columns
        (new innovations drawn interval by interval from ``rng``)."""
        S, G = path.shape
        if n_intervals <= G:
            return path
        out = np.empty((S, n_intervals))
        out[:, :G] = path
        rho, step = self.rho, self.sd_log * np.sqrt(1.0 - self.rho**2)
        for g in range(G, n_intervals):
            out[:, g] = rho * out[:, g - 1] + step * rng.standard_normal(S) if g else 0.0
        return out
