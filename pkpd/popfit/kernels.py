"""Closed-form one-compartment oral PK written once for NumPy *and* PyTensor: the reference.

This tensor expression is kept on purpose as an independent reference for the
compiled fitting kernels (:mod:`pkpd.popfit.pk_op` and
:mod:`pkpd.popfit.density`, which go through
:func:`pkpd.one_compartment.unit_response`): the tests compare the Op and its
hand-written gradient with this expression and PyTensor's automatic gradient.
It is also what the PyMC model uses for one-compartment designs with
steady-state doses.

Every function takes the array namespace ``xp`` first: ``numpy`` for
post-processing (posterior predictions over thousands of draws) or
``pytensor.tensor`` inside the PyMC model (gradients for NUTS).  One source for
both means the fitted model and the plots can never disagree.

The maths is that of :mod:`pkpd.one_compartment` (see there): the central amount ``tau`` h
after a unit dose into the depot is the Bateman function

    B(tau) = ka (e^{-k tau} - e^{-ka tau}) / (ka - k),     k = CL / V,

evaluated through the divided difference :func:`exp_divdiff`, which is exact at
and near ka == k (B -> ka tau e^{-k tau}).  A steady-state dose (NONMEM SS=1/2,
an infinite train every ``ii`` h) contributes the geometric sum
``sum_{m>=0} B(tau + m ii)``.  Concentrations are superpositions over the doses
of a subject, laid out in a padded ``(n_obs, n_doses)`` design
(:class:`pkpd.popfit.design.DoseDesign`): no per-subject Python loop and no
per-subject graph node.

Units: doses mg, CL L/h, V L, rates 1/h, times h -> mg/L, multiplied by
``scale`` (1 for mg/L = ug/mL, 1000 for ng/mL).
"""

from __future__ import annotations

import numpy as np

#: below this |x| the Taylor series replaces (1 - e^{-x})/x.  Not 1e-8: the *gradient*
#: of the direct form, (x e^{-x} - 1 + e^{-x}) / x^2, loses ~1e-16/x^2 relative
#: accuracy to cancellation (all of it at x = 1e-8); at 1e-3 that is 1e-10 while
#: the 4-term series is off by < x^4/120 = 1e-14.
_PHI1_SMALL = 1e-3


def _where(xp, cond, a, b):
    return np.where(cond, a, b) if xp is np else xp.switch(cond, a, b)


def _phi1_series(x):
    """Taylor series of (1 - e^{-x})/x about 0 (any sign of x), error < |x|^4/120."""
    return 1.0 - x * (1.0 / 2 - x * (1.0 / 6 - x / 24))


def exp_divdiff(xp, p, s, d):
    """``(e^{-p} - e^{-(p + d s)}) / d`` without cancellation, 0/0 or overflow.

    Far from ``d s = 0`` it is written ``e^{-min(p, p + d s)} s phi1(|d s|)``
    (valid for any sign of ``d`` and ``s``; port of :func:`pkpd.one_compartment.exp_divdiff`).
    Near ``d s = 0``, where ``min`` and ``abs`` have kinks that automatic
    differentiation gets wrong at the tie (it would lose the -x/2 term of the
    gradient at ka == k), it uses the smooth signed series
    ``e^{-p} s (1 - x/2 + x^2/6 - x^3/24)``, ``x = d s``.  Both tend to
    ``s e^{-p}`` as ``d -> 0``.
    """
    x = d * s
    q = p + x
    near = xp.abs(x) < _PHI1_SMALL
    ax_safe = _where(xp, near, 1.0, xp.abs(x))
    far = xp.exp(-xp.minimum(p, q)) * s * (-xp.expm1(-ax_safe) / ax_safe)
    return _where(xp, near, xp.exp(-p) * s * _phi1_series(x), far)


def bateman(xp, tau, ka, k):
    """Central amount (fraction of the dose) ``tau >= 0`` h after a depot dose."""
    return ka * exp_divdiff(xp, k * tau, tau, ka - k)


def bateman_ss(xp, tau, ii, ka, k):
    """Central amount ``tau`` h after the last dose of an infinite train of unit
    doses every ``ii`` h: ``sum_{m>=0} B(tau + m ii)`` (``ii > 0``).

    With a = k, b = ka: ``sum_m (e^{-a(tau+m ii)} - e^{-b(tau+m ii)})/(b-a)``
    = ``[D(tau) - D'] / ((1 - e^{-a ii})(1 - e^{-b ii}))`` where both divided
    differences are stable at a == b (see ``pkpd.one_compartment.steady_state_amounts``).
    """
    d = ka - k
    first = exp_divdiff(xp, k * tau, tau, d)
    second = exp_divdiff(xp, k * tau + ka * ii, tau - ii, d)
    return ka * (first - second) / (-xp.expm1(-k * ii) * -xp.expm1(-ka * ii))


def one_compartment_oral(xp, ka, cl, v, design, scale: float = 1.0):
    """Concentrations at the observations of ``design``.

    ka, cl, v : individual parameters *per observation* (1/h, L/h, L), arrays of
        shape ``(..., n_obs)``; leading axes (e.g. posterior draws) broadcast.
    design : :class:`~pkpd.popfit.design.DoseDesign` with ``(n_obs, n_doses)``
        arrays ``tau`` (h since each active dose), ``amount`` (mg, 0 = padding),
        ``ii`` (h, steady-state interval; 1 where not steady state) and
        ``steady`` (bool).
    scale : unit factor from mg/L to the output unit (1000 for ng/mL).

    Returns concentrations of shape ``(..., n_obs)`` in the output unit.
    """
    k = cl / v
    ka_ = ka[..., None]
    k_ = k[..., None]
    unit = bateman(xp, design.tau, ka_, k_)
    if design.any_steady:
        unit = _where(xp, design.steady, bateman_ss(xp, design.tau, design.ii, ka_, k_), unit)
    amount = (design.amount * unit).sum(axis=-1)
    return scale * amount / v
