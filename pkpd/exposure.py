"""Exposure: the interface of a linear PK model, and what every such model shares.

A PK model here is a linear system of drug amounts (mg) in compartments,
``a' = K a``, doses entering one compartment (``DOSE_COMPARTMENT``: 0, the
depot, for oral models) as boluses, and the concentration read from the central compartment,
``C = a[central] / V`` (mg/L, reported in ng/mL).  A model is one class, a
subclass of :class:`PKModel`, that says

* ``PARAMETERS``: its parameter names and units, in order;
* ``COMPARTMENTS``, ``CENTRAL``, ``VOLUME``, ``ABSORPTION``: the amounts it
  tracks, which of them is observed, which parameter is the central volume
  and which the absorption rate;
* :meth:`PKModel.propagators`: the exact transition ``e^{K tau}`` of the
  amounts over ``tau`` hours, for every subject (closed form, a numba kernel
  in the model's file);
* :meth:`PKModel.rate_matrix`: ``K`` itself (the ODE form, used by PD solvers
  that integrate PK and PD together, and by the tests' ODE references).

Everything else is written once here, for every model: checking parameters,
the amounts just after each dose (dose-to-dose propagation; steady state,
NONMEM SS=1/2, as the fixed point of an infinite dose train), concentrations
at report times, and the per-step tables the platelet solver reads.

Units: time h, dose mg, volumes L, clearances L/h, rates 1/h; concentrations
ng/mL (mg/L x :data:`MG_PER_L_TO_NG_PER_ML`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Mapping

import numba
import numpy as np

from .checks import PKPDInputError, parameter_in_range, positive, real, report_cells, sorted_times, within_horizon
from .regimen import Regimen
from .units import MG_PER_L_TO_NG_PER_ML

#: Largest propagator block (bytes) built at once when reporting concentrations;
#: larger populations are done in chunks of subjects.
CHUNK_BYTES = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class PKModel:
    """Base of the linear PK models (see the module docstring for the interface).

    An instance holds parameter values: scalars for one subject, or 1-D
    arrays over subjects (fields named as in ``PARAMETERS``).  The class
    methods work on a dict of checked arrays of shape (n_subjects,), as
    returned by :meth:`parameter_arrays`.
    """

    PARAMETERS: ClassVar[Mapping[str, str]] = {}
    COMPARTMENTS: ClassVar[tuple[str, ...]] = ()
    CENTRAL: ClassVar[int] = 1
    VOLUME: ClassVar[str] = "v"
    #: The absorption rate parameter (1/h): the platelet solver maps its node
    #: times into the absorption phase after a dose when it is fast.
    ABSORPTION: ClassVar[str] = "ka"
    #: The compartment doses enter (0: the depot of oral models).
    DOSE_COMPARTMENT: ClassVar[int] = 0
    #: Limits of the model's own derived rates, name -> (low, high, unit, why),
    #: like :data:`pkpd.checks.PARAMETER_LIMITS` (which holds the shared ones).
    LIMITS: ClassVar[Mapping[str, tuple]] = {}
    #: What each parameter means, for tables (``describe()``).
    MEANINGS: ClassVar[Mapping[str, str]] = {}
    #: True for the linear models of this interface.  A nonlinear model sets False and
    #: overrides :meth:`concentrations` and provides ``run_steps`` (it integrates its
    #: own amounts); its ``propagators``/``rate_matrix`` are then its linear part as C -> 0.
    LINEAR: ClassVar[bool] = True

    def __post_init__(self):
        self.parameter_arrays(**self.values())

    # ------------------------------------------------------------ the interface
    @classmethod
    def propagators(cls, p: Mapping[str, np.ndarray], taus: np.ndarray) -> np.ndarray:
        """``e^{K tau}`` for every subject and tau: shape (n_subjects, n_taus, n, n)."""
        raise NotImplementedError(f"{cls.__name__} must implement propagators(p, taus), the PK model interface")

    @classmethod
    def rate_matrix(cls, p: Mapping[str, np.ndarray]) -> np.ndarray:
        """``K`` (1/h) for every subject: shape (n_subjects, n, n)."""
        raise NotImplementedError(f"{cls.__name__} must implement rate_matrix(p), the PK model interface")

    @classmethod
    def check_rates(cls, p: Mapping[str, np.ndarray]) -> None:
        """Model-specific checks of derived rates (e.g. CL/V), given checked arrays."""

    # ------------------------------------------------------------ shared by every model
    @classmethod
    def n_compartments(cls) -> int:
        return len(cls.COMPARTMENTS)

    @classmethod
    def parameter_arrays(cls, **values) -> dict[str, np.ndarray]:
        """Each parameter as a float array of shape (n_subjects,): numbers, finite,
        > 0, inside :data:`pkpd.checks.PARAMETER_LIMITS`, one length for all."""
        unknown = [k for k in values if k not in cls.PARAMETERS]
        missing = [k for k in cls.PARAMETERS if k not in values]
        if unknown or missing:
            raise PKPDInputError(
                f"{cls.__name__} takes the parameters {list(cls.PARAMETERS)}; "
                + (f"got unknown {unknown}" if unknown else f"{missing} missing") + "."
            )
        arrays = {name: positive(name, real(name, values[name], unit), unit) for name, unit in cls.PARAMETERS.items()}
        shapes = {name: a.shape for name, a in arrays.items()}
        names = ", ".join(cls.PARAMETERS)
        if any(len(shape) > 1 for shape in shapes.values()):
            raise PKPDInputError(f"{names} must be scalars or 1-D arrays over subjects; got shapes {shapes}.")
        try:
            broadcast = np.broadcast_arrays(*(np.atleast_1d(a) for a in arrays.values()))
        except ValueError:
            raise PKPDInputError(
                f"{names} must be scalars or arrays of one length (one value per subject); got shapes {shapes}."
            ) from None
        out = {name: np.ascontiguousarray(a, dtype=float) for name, a in zip(arrays, broadcast)}
        cls.check_rates(out)
        return out

    @classmethod
    def solver_rates(cls, p: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """The rates the platelet solver is validated for, by their name in
        :data:`pkpd.checks.PARAMETER_LIMITS` (e.g. ka and CL/V, 1/h)."""
        return {}

    @classmethod
    def check_solver_range(cls, p: Mapping[str, np.ndarray]) -> None:
        """Refuse parameters outside the range the PD solvers are validated on."""
        for name, rate in cls.solver_rates(p).items():
            parameter_in_range(name, rate, cls.LIMITS, f"{cls.__name__}.LIMITS (shared ones: pkpd.checks.PARAMETER_LIMITS)")

    @classmethod
    def conc_scale(cls, p: Mapping[str, np.ndarray]) -> np.ndarray:
        """ng/mL per mg in the central compartment, (n_subjects,)."""
        return MG_PER_L_TO_NG_PER_ML / p[cls.VOLUME]

    @classmethod
    def steady_state(cls, p: Mapping[str, np.ndarray], dose: float, ii: float) -> np.ndarray:
        """Amounts just after a dose at steady state of ``dose`` mg every ``ii`` h,
        (n_subjects, n): the fixed point ``a = e^{K ii} a + dose e_0``."""
        P = cls.propagators(p, np.array([float(ii)]))[:, 0]
        rhs = np.zeros(P.shape[:2])
        rhs[:, cls.DOSE_COMPARTMENT] = dose
        return np.linalg.solve(np.eye(P.shape[1]) - P, rhs[..., None])[..., 0]

    @classmethod
    def dose_amounts(cls, p: Mapping[str, np.ndarray], regimen: Regimen) -> np.ndarray:
        """Amounts just after each dose of ``regimen``, (n_subjects, n_doses, n):
        exact propagation from dose to dose (superposition, summed recursively)."""
        S, n = next(iter(p.values())).size, cls.n_compartments()
        times = regimen.times
        gaps = np.diff(times, prepend=times[:1]) if times.size else times
        P = cls.propagators(p, gaps) if times.size else np.zeros((S, 0, n, n))
        kind = np.array([d.ss for d in regimen.doses], np.int64)
        reset = np.array([d.reset for d in regimen.doses], np.bool_)
        steady = np.zeros((S, len(regimen), n))
        for j in np.flatnonzero(kind):
            steady[:, j] = cls.steady_state(p, regimen.doses[j].amount, regimen.doses[j].ii)
        out = np.empty((S, len(regimen), n))
        _propagate(P, regimen.amounts, reset, kind, steady, cls.DOSE_COMPARTMENT, out)
        return out

    @classmethod
    def concentrations(cls, p: Mapping[str, np.ndarray], regimen: Regimen, times) -> np.ndarray:
        """Concentrations (ng/mL), (n_subjects, n_times), at sorted ``times`` (h).

        A dose at exactly a report time is given before the report (NONMEM order).
        """
        times = cls.report_times(p, regimen, times)
        S, n = next(iter(p.values())).size, cls.n_compartments()
        out = np.zeros((S, times.size))
        if len(regimen) == 0 or times.size == 0:
            return out
        amounts = cls.dose_amounts(p, regimen)
        # Last dose at or before each time; -1 means before any dose.
        j = np.searchsorted(regimen.times, times, side="right") - 1
        has = j >= 0
        j = np.where(has, j, 0)
        tau = np.where(has, times - regimen.times[j], 0.0)
        scale = cls.conc_scale(p)
        chunk = max(1, CHUNK_BYTES // (8 * n * n * times.size))
        for lo in range(0, S, chunk):
            sl = slice(lo, min(S, lo + chunk))
            P = cls.propagators({k: v[sl] for k, v in p.items()}, tau)
            _observe(P, amounts[sl], j, has, scale[sl], cls.CENTRAL, out[sl])
        return out

    @classmethod
    def report_times(cls, p: Mapping[str, np.ndarray], regimen: Regimen, times) -> np.ndarray:
        """``times`` (h) checked (sorted, within the horizon) for :meth:`concentrations`,
        after checking ``regimen`` and the sizes of the outputs."""
        if not isinstance(regimen, Regimen):
            raise PKPDInputError(
                f"regimen must be a pkpd.Regimen; got {type(regimen).__name__}. Build one with Regimen.daily(...)."
            )
        times = within_horizon("times", sorted_times("times", real("times", times, "h")))
        S, n = next(iter(p.values())).size, cls.n_compartments()
        # Sizes before allocating: (subjects x times) concentrations, (subjects x doses) amounts.
        report_cells("concentrations", S, times.size, bytes_per_cell=8)
        report_cells("concentrations", S, n * len(regimen), bytes_per_cell=8,
                     what=f"dose amounts ({n} per dose)")
        return times

    # ------------------------------------------------------------ one set of values
    def values(self) -> dict:
        """The parameter values of this instance, by name."""
        return {name: getattr(self, name) for name in self.PARAMETERS}

    def concentration(self, regimen: Regimen, times) -> np.ndarray:
        """ng/mL at ``times`` (h).  Shape (n_times,) for scalar parameters,
        (n_subjects, n_times) for arrays of parameters."""
        values = self.values()
        c = self.concentrations(self.parameter_arrays(**values), regimen, times)
        return c[0] if all(np.ndim(v) == 0 for v in values.values()) else c


@numba.njit(parallel=True, cache=True)
def _propagate(P, amount, reset, kind, steady, into, out):
    """Amounts just after each dose: a_j = P_j a_{j-1} + dose_j e_into, where P_j
    spans the gap before dose j; a reset empties, SS=1 replaces a by the
    steady state, SS=2 adds it (NONMEM)."""
    n = P.shape[2]
    for s in numba.prange(P.shape[0]):
        a = np.zeros(n)
        b = np.empty(n)
        for j in range(amount.size):
            for i in range(n):
                acc = 0.0
                for k in range(n):
                    acc += P[s, j, i, k] * a[k]
                b[i] = 0.0 if reset[j] else acc
            if kind[j] == 1:
                for i in range(n):
                    b[i] = steady[s, j, i]
            elif kind[j] == 2:
                for i in range(n):
                    b[i] += steady[s, j, i]
            else:
                b[into] += amount[j]
            a[:] = b
            out[s, j] = a


@numba.njit(parallel=True, cache=True)
def _observe(P, amounts, j, has, scale, central, out):
    """out[s, t] = scale[s] * (e^{K tau_t} a_{j_t})[central]: the concentration
    ``tau`` h after the last dose, from the amounts just after it."""
    n = P.shape[2]
    for s in numba.prange(P.shape[0]):
        for t in range(j.size):
            if has[t]:
                acc = 0.0
                for i in range(n):
                    acc += P[s, t, central, i] * amounts[s, j[t], i]
                out[s, t] = acc * scale[s]
