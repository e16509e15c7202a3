"""The PK structures the compiled fitting kernels cover, and their dispatch.

A PK model (a :class:`pkpd.exposure.PKModel` subclass) takes part in fitting
through two numba functions in its own file, with one contract:

* ``unit_response(tau, p, grad)``: concentration (mg/L) ``tau >= 0`` h after
  one 1 mg dose, ``p`` its parameters (float64, in ``PARAMETERS`` order);
  ``grad[k]`` receives d value / d ``p[k]``;
* ``unit_response_ss(tau, ii, p, grad)``: the same at the steady state of an
  infinite train of doses every ``ii`` h.

The compiled concentration loop (:mod:`pkpd.popfit.pk_op`) and the compiled
log density (:mod:`pkpd.popfit.density`) are cached on disk by numba, which
keys a cached function on its argument types only: a kernel passed as an
argument would compile again in every process.  So each structure gets a
small integer code (its position in :data:`STRUCTURES`), and
:func:`unit_response` branches on it to the model's own kernel.

Adding a PK model to fitting takes, in this file only: its module's name in
the import line, its class in :data:`STRUCTURES`, and one branch (two lines)
in each of :func:`unit_response` and :func:`_unit_response_ss`.

A nonlinear model (``LINEAR = False``, e.g. saturable elimination) has no unit
response to superpose: its kernel integrates one subject's doses in sequence,

* ``conc_sensitivities(*p, dose_times, amounts, times, conc, sens)``: ng/mL at
  the sorted ``times`` (h) after boluses of ``amounts`` (mg) at ``dose_times``
  from an empty system, and d conc / d ``p`` into ``sens`` (T, P), or nothing
  when ``sens`` has no columns; returns a status, 0 when all was computed;

and takes a branch in :func:`sequential` and :func:`conc_sequence` instead.
"""

from __future__ import annotations

import numba

from .. import one_compartment, saturable, two_compartment
from ..checks import PKPDInputError

#: The covered PK models; a model's code is its index here.
STRUCTURES = (one_compartment.OneCompartmentOral, two_compartment.TwoCompartmentOral,
              saturable.OneCompartmentSaturable)


def code(structure) -> int:
    """The integer code of the PK model class ``structure``."""
    if structure not in STRUCTURES:
        raise PKPDInputError(
            f"pk: {getattr(structure, '__name__', structure)!r} has no fitting kernels; the fitting covers "
            f"{[s.__name__ for s in STRUCTURES]} (a model is added in pkpd/popfit/structures.py)."
        )
    return STRUCTURES.index(structure)


def linear(structure) -> bool:
    """Whether the PK model class ``structure`` is linear in the doses (its
    concentrations superpose unit responses); False: integrated in sequence."""
    return bool(getattr(structure, "LINEAR", True))


@numba.njit(cache=True)
def unit_response(code, tau, ii, steady, p, grad):
    """mg/L per mg dosed ``tau`` h after a dose (``steady``: of an infinite
    train every ``ii`` h) for the structure ``code``; gradient in ``p`` into ``grad``."""
    if steady:
        return _unit_response_ss(code, tau, ii, p, grad)
    if code == 1:
        return two_compartment.unit_response(tau, p, grad)
    return one_compartment.unit_response(tau, p, grad)


@numba.njit(cache=True)
def _unit_response_ss(code, tau, ii, p, grad):
    if code == 1:
        return two_compartment.unit_response_ss(tau, ii, p, grad)
    return one_compartment.unit_response_ss(tau, ii, p, grad)


@numba.njit(cache=True)
def sequential(code):
    """Whether structure ``code`` is nonlinear: predicted by :func:`conc_sequence`, not by superposition."""
    return code == 2


@numba.njit(cache=True)
def conc_sequence(code, p, dose_times, amounts, times, conc, sens):
    """ng/mL at the sorted ``times`` (h) after boluses ``amounts`` (mg) at
    ``dose_times`` for the nonlinear structure ``code`` with parameters ``p``;
    d conc / d ``p`` into ``sens`` (T, P), or none when ``sens`` is (T, 0).
    Returns the kernel's status: 0 when every output was computed."""
    return saturable.conc_sensitivities(p[0], p[1], p[2], p[3], p[4], dose_times, amounts, times, conc, sens)
