"""Myelosuppression: the semi-mechanistic model of Friberg et al. (J Clin Oncol 2002;20:4713).

Proliferating cells renew themselves, mature through three transit
compartments and circulate; the drug kills proliferating cells, and low
counts feed back on proliferation::

    E(C)     = Emax C / (EC50 + C)                  (C in ng/mL)
    ktr      = 4 / MTT                               (kprol = kcirc = ktr)
    dProl/dt = ktr Prol ((1 - E(C)) (Circ0/Circ)^gamma - 1)
    dT1/dt   = ktr (Prol - T1),  dT2/dt = ktr (T1 - T2),  dT3/dt = ktr (T2 - T3)
    dCirc/dt = ktr (T3 - Circ)

starting from the drug-free steady state (every compartment at Circ0).  For
small concentrations E = (Emax/EC50) C: Friberg's linear model with slope
Emax/EC50.  Counts in 10^9/L; MTT in h.

PK and PD are integrated together, ``y = (PK amounts, Prol, T1, T2, T3,
Circ)`` with the PK model's rate matrix (:meth:`pkpd.exposure.PKModel.rate_matrix`,
so any linear PK model works), by the adaptive Dormand-Prince solver of
:mod:`pkpd.ode`, restarted at every dose.
"""

from __future__ import annotations

import functools

import numba
import numpy as np

from . import ode
from .checks import PARAMETER_LIMITS, PKPDInputError, nonnegative, plain, positive, real
from .exposure import PKModel
from .response import PDModel, run_inputs

#: Default relative and absolute (mg, 10^9/L) tolerances of the solver: counts
#: agree with scipy's DOP853 at rtol 1e-12 to ~2e-8 relative, concentrations to
#: ~4e-7 of max(C, 1e-6 dose/V) (tests/test_friberg.py).  Steps follow the PK
#: transient after each dose: ~200 a day for a drug with a 20-min half-life.
RTOL, ATOL = 1e-8, 1e-12
#: Cells of the chain after the PK amounts, and the layout of a parameter row:
#: K (n x n, row-major), then these.
CHAIN = 5
ROW = ("scale", "central", "ktr", "gamma", "circ0", "emax", "ec50")
#: Below this fraction of circ0 (less than one cell in the circulation) the feedback
#: is held at its value there: a count that the solver rounds a hair below zero
#: must not make (circ0/circ)^gamma NaN.
CIRC_FLOOR = 1e-12


def friberg_rhs(t, y, p, dy):
    """PK (dy = K a) and the Friberg chain; p = (K row-major, then ROW)."""
    n = y.size - CHAIN
    for i in range(n):
        acc = 0.0
        for j in range(n):
            acc += p[i * n + j] * y[j]
        dy[i] = acc
    q = n * n
    scale, central, ktr, gamma = p[q], int(p[q + 1]), p[q + 2], p[q + 3]
    circ0, emax, ec50 = p[q + 4], p[q + 5], p[q + 6]
    c = scale * y[central]
    effect = emax * c / (ec50 + c) if c > 0.0 else 0.0
    prol, circ = y[n], y[n + 4]
    feedback = (circ0 / max(circ, CIRC_FLOOR * circ0)) ** gamma if gamma > 0.0 else 1.0
    dy[n] = ktr * prol * ((1.0 - effect) * feedback - 1.0)
    for i in range(1, CHAIN):
        dy[n + i] = ktr * (y[n + i - 1] - y[n + i])



@functools.cache
def _compiled_rhs():
    """:func:`friberg_rhs` as the compiled C callback the ODE integrator takes.  Built on
    first use: a ``numba.cfunc`` compiles (or loads from the disk cache) when it is
    created, ~0.13 s that importing the package must not pay."""
    return numba.cfunc(ode.RHS, cache=True)(friberg_rhs)

def _limited(name: str, arr: np.ndarray, fix: str) -> np.ndarray:
    """``arr`` inside the plausibility range of :data:`pkpd.checks.PARAMETER_LIMITS`."""
    low, high, unit, _ = PARAMETER_LIMITS[name]
    bad = (arr < low) | (arr > high)
    if bad.any():
        raise PKPDInputError(f"{name} must lie in [{low:g}, {high:g}]{f' ({unit})' if unit else ''}; "
                             f"got {plain(arr[bad][0])!r}. {fix}")
    return arr


class FribergMyelosuppression(PDModel):
    """Friberg's myelosuppression model (this module's equations), solved by
    :class:`FribergSolver`: the PD model interface of :mod:`pkpd.response`."""

    PARAMETERS = {"circ0": "10^9/L", "mtt": "h", "gamma": "-", "emax": "-", "ec50": "ng/mL"}
    OBSERVABLE = "neutrophils"
    UNIT = "10^9/L"
    BASELINE = "circ0"
    DRUG_EFFECT = "emax"
    MEANINGS = {
        "circ0": "baseline circulating cell count", "mtt": "mean transit time from Prol to Circ (ktr = 4/mtt)",
        "gamma": "feedback of the count on proliferation (0 = off)",
        "emax": "maximal kill of proliferating cells (E > 1: net loss)",
        "ec50": "plasma concentration of half-maximal effect",
    }

    @classmethod
    def check(cls, **values) -> dict[str, np.ndarray]:
        if set(values) != set(cls.PARAMETERS):
            raise PKPDInputError(f"{cls.__name__} takes the parameters {list(cls.PARAMETERS)}; got {sorted(values)}.")
        arrays = {
            "circ0": positive("circ0", real("circ0", values["circ0"]), "10^9/L"),
            "mtt": _limited("mtt", positive("mtt", real("mtt", values["mtt"]), "h"),
                            "Maturation takes days: give mtt in hours (e.g. 89.3)."),
            "gamma": _limited("gamma", nonnegative("gamma", real("gamma", values["gamma"])),
                              "Published feedback exponents are 0.1-0.6 (Friberg 2002)."),
            "emax": nonnegative("emax", real("emax", values["emax"])),
            "ec50": positive("ec50", real("ec50", values["ec50"]), "ng/mL"),
        }
        try:
            return {k: np.ascontiguousarray(a, float) for k, a in zip(arrays, np.broadcast_arrays(
                *(np.atleast_1d(a) for a in arrays.values())))}
        except ValueError:
            shapes = {k: a.shape for k, a in arrays.items()}
            raise PKPDInputError(f"{', '.join(arrays)} must be scalars or arrays of one length (one value per "
                                 f"subject); got shapes {shapes}.") from None

    @classmethod
    def solver(cls, pk, pk_params, pd_params, **options) -> FribergSolver:
        if options.pop("fluctuation", None) is not None:
            raise PKPDInputError(f"{cls.__name__} has no disease fluctuation; set the model's fluctuation to None.")
        options.pop("rng", None)
        if not pk.LINEAR:
            raise PKPDInputError(f"{cls.__name__} integrates linear PK only (the PK rate matrix); {pk.__name__} is "
                                 "nonlinear. Use a linear PK model such as OneCompartmentOral.")
        return FribergSolver(pk, pk_params, cls.check(**pd_params), **options)


class FribergSolver:
    """PK (any :class:`pkpd.exposure.PKModel`) and Friberg myelosuppression for
    many subjects at once; ``rtol``/``atol`` are the solver's tolerances
    (atol in mg for PK amounts, 10^9/L for cells)."""

    def __init__(self, pk: type[PKModel], pk_params, pd: dict, rtol: float = RTOL, atol: float = ATOL):
        pk_params = pk.parameter_arrays(**pk_params)
        S = max(next(iter(pd.values())).size, next(iter(pk_params.values())).size)
        sizes = {k: a.size for k, a in {**pk_params, **pd}.items() if a.size not in (1, S)}
        if sizes:
            raise PKPDInputError(f"parameters {sizes} have other lengths than the {S} subjects; give one value each.")
        self.pk, self.pd, self.n = pk, {k: np.broadcast_to(a, (S,)) for k, a in pd.items()}, pk.n_compartments()
        pk_params = {k: np.broadcast_to(a, (S,)) for k, a in pk_params.items()}
        K = pk.rate_matrix(pk_params).reshape(S, -1)
        row = {"scale": pk.conc_scale(pk_params), "central": np.full(S, float(pk.CENTRAL)),
               "ktr": 4.0 / self.pd["mtt"], **{k: self.pd[k] for k in ("gamma", "circ0", "emax", "ec50")}}
        self.params = np.ascontiguousarray(np.column_stack([K] + [row[k] for k in ROW]))
        self.scale = row["scale"]
        self.rtol, self.atol = float(positive("rtol", rtol)), float(positive("atol", atol))

    def initial_state(self) -> dict:
        """Drug-free at t = 0: no drug, every chain compartment at circ0."""
        y = np.zeros((self.params.shape[0], self.n + CHAIN))
        y[:, self.n:] = self.pd["circ0"][:, None]
        return {"t": 0.0, "y": y}

    def run(self, dose_times, amounts, times, state: dict | None = None):
        """From ``state`` (default drug-free at 0 h): doses at ``dose_times`` (D,)
        h of ``amounts`` (S, D) or (D,) mg, reports at sorted ``times`` (T,) h
        (a dose at a report time is given first).  Returns (conc (S, T) ng/mL,
        neutrophils (S, T) 10^9/L, the state after the last event)."""
        state = self.initial_state() if state is None else {"t": float(state["t"]), "y": np.array(state["y"])}
        S, t0 = self.params.shape[0], state["t"]
        # amounts come back as a writable copy: one compiled kernel type
        dose_times, amounts, times = run_inputs(S, t0, dose_times, amounts, times)
        events = [(t, ode.OP_DOSE, j) for j, t in enumerate(dose_times) if t >= t0 - 1e-9]
        events += [(t, ode.OP_RECORD, i) for i, t in enumerate(times)]
        ops, args, at = [], [], []
        for t, kind, j in sorted(events):  # at one time: dose before record (OP_DOSE < OP_RECORD)
            ops += [ode.OP_INTEGRATE, kind]
            args += [0, j]
            at += [max(t, t0), max(t, t0)]
        out = np.full((S, times.size, 2), np.nan)
        failed = np.zeros(S, np.bool_)
        ode.integrate(_compiled_rhs(), np.array(ops, np.int64), np.array(args, np.int64), np.array(at, float), t0,
                      state["y"], self.params, amounts, self.pk.DOSE_COMPARTMENT,
                      np.array([self.pk.CENTRAL, self.n + CHAIN - 1], np.int64), self.rtol, self.atol, out, failed)
        if failed.any():
            first = np.flatnonzero(failed)[0]
            raise RuntimeError(f"the myelosuppression solver took more than {ode.MAX_STEPS} steps for "
                               f"{failed.sum()} subject(s) (first: index {first}); check their rates.")
        state["t"] = max([t0] + at)
        # an amount decayed to ~0 may end a hair below it (|a| < atol): report it as 0
        return np.maximum(out[..., 0], 0.0) * self.scale[:, None], out[..., 1], state
