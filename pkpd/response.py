"""Response: the interface of a PD model, and the solver it hands to the simulators.

A PD model turns the concentrations of a PK model (:mod:`pkpd.exposure`) into
an observed response, e.g. platelet counts.  A model is one class, a subclass
of :class:`PDModel`, that says

* ``PARAMETERS``: its parameter names and units, in order; ``WHOLE``: those
  that are whole numbers shared by all subjects (no variability);
* ``OBSERVABLE``, ``UNIT``: what the response is called and its unit;
* ``BASELINE``: the parameter holding the drug-free level of the response
  (drawn from a baseline distribution in disease populations);
* ``DRUG_EFFECT``: the parameter set to 0 in patients without drug effect
  (non-responders);
* :meth:`PDModel.check`: validation of parameter arrays, with errors that
  name the parameter, the value and the fix;
* :meth:`PDModel.solver`: a solver for given PK and PD parameters, with
  ``initial_state()`` and ``run(dose_times, amounts, times, state=None) ->
  (conc, response, state)`` -- the one operation simulation, trials and
  scenarios use.  ``run`` can be called visit by visit: it continues from
  ``state``.

Units: time h, dose mg, concentrations ng/mL; the response in ``UNIT``.
"""

from __future__ import annotations

from typing import ClassVar, Mapping, Protocol

import numpy as np

from .checks import PKPDInputError, nonnegative, sorted_times
from .exposure import PKModel


class Solver(Protocol):
    """What a PD model's solver offers (see the module docstring)."""

    def initial_state(self) -> dict: ...

    def run(self, dose_times, amounts, times, state: dict | None = None) -> tuple[np.ndarray, np.ndarray, dict]: ...


class PDModel:
    """Base of the PD models (see the module docstring for the interface)."""

    PARAMETERS: ClassVar[Mapping[str, str]] = {}
    WHOLE: ClassVar[tuple[str, ...]] = ()
    OBSERVABLE: ClassVar[str] = ""
    UNIT: ClassVar[str] = ""
    BASELINE: ClassVar[str] = ""
    DRUG_EFFECT: ClassVar[str] = ""
    MEANINGS: ClassVar[Mapping[str, str]] = {}
    #: Options of :meth:`solver` for a solver that runs once (a population
    #: simulation, not a trial run visit by visit), e.g. to free memory early.
    SINGLE_RUN_OPTIONS: ClassVar[Mapping[str, object]] = {}

    @classmethod
    def check(cls, **values):
        """The validated parameters (arrays of shape (n_subjects,), whole-number
        ones as one shared int), in the form the model's solver takes."""
        raise NotImplementedError(f"{cls.__name__} must implement check(**values), the PD model interface")

    @classmethod
    def solver(cls, pk: type[PKModel], pk_params: Mapping[str, np.ndarray], pd_params: Mapping[str, np.ndarray],
               **options) -> Solver:
        """A solver of PK ``pk`` with ``pk_params`` and this PD with ``pd_params``
        (arrays over subjects, already checked)."""
        raise NotImplementedError(f"{cls.__name__} must implement solver(pk, pk_params, pd_params), the PD model interface")


def run_inputs(n_subjects: int, t0: float, dose_times, amounts, times) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arguments of a solver's ``run``, checked: sorted ``dose_times`` (D,)
    h, ``amounts`` as a writable C-contiguous float array (n_subjects, D) mg
    (a (D,) row is given to every subject), and sorted report ``times`` (T,) h
    that do not go back before the state's time ``t0`` h."""
    dose_times, times = sorted_times("dose_times", dose_times), sorted_times("times", times)
    amounts = nonnegative("amounts", amounts, "mg")
    try:
        amounts = np.array(np.broadcast_to(amounts, (n_subjects, dose_times.size)), dtype=float)
    except ValueError:
        raise PKPDInputError(f"amounts must have shape ({n_subjects}, {dose_times.size}) or ({dose_times.size},) "
                             f"(mg, subjects x doses); got {np.shape(amounts)}.") from None
    if times.size and times[0] < t0 - 1e-9:
        raise PKPDInputError(f"times start at {times[0]} h, before the state's time {t0} h; report times must not go back.")
    return dose_times, amounts, times
