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

    @classmethod
    def check(cls, **values) -> dict[str, np.ndarray]:
        """Validated parameter arrays of shape (n_subjects,) (whole-number ones
        as one shared int)."""
        raise NotImplementedError

    @classmethod
    def solver(cls, pk: type[PKModel], pk_params: Mapping[str, np.ndarray], pd_params: Mapping[str, np.ndarray],
               **options) -> Solver:
        """A solver of PK ``pk`` with ``pk_params`` and this PD with ``pd_params``
        (arrays over subjects, already checked)."""
        raise NotImplementedError
