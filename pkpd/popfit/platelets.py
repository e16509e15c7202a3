"""Platelet (PD) predictions for population fitting, with cheap exact gradients: the reference.

This tensor expression is kept on purpose as an independent reference for the
compiled platelet kernels (:mod:`pkpd.popfit.platelet_op`, used by the PyMC
model and by the compiled log density): the tests compare the Op and its
hand-written adjoint with it and PyTensor's automatic gradient.  The fit uses
it itself only for chain lengths or grids the kernels are not compiled for.

The transit model of :mod:`pkpd.pd` with gamma = 0 is *linear* in its drug
input: with ``u(s) = kin E(C(s))`` the deviation from baseline is a convolution

    PLT(t) = PLT0 + integral_0^t c^T e^{A (t-s)} e_1 u(s) ds,

where ``A`` is the transit chain (n compartments at ktr = n/MTT, platelets at
kdeg = 1/lifespan) and ``c`` picks PLT.  On a regular grid of steps of ``h``
hours (every dose and platelet observation on the grid) the integral over step
``j`` is ``sum_q W_q E(C(t_j + tau_q))`` with ``m`` nodes per step (Lagrange
interpolation of the input, as in :mod:`pkpd.pd`; post-dose steps use the
exponential node map), and stepping ``l`` steps further multiplies by
``c^T e^{A l h}``.  So

    x_k = Phi x_{k-1} + W E_{k-1},   PLT_i = PLT0 + kin c^T x_{k_i},   Phi = e^{A h},

a linear recurrence evaluated for all k at once by a log-depth
(Hillis-Steele) scan; the PK amounts at the step starts are another such
recurrence (2 x 2, closed form).  The result is a fixed-size tensor
expression, no ODE solver and no sequential loop, for which PyTensor's
automatic gradients are exact.  ``Phi`` and ``W`` come from the chain's
impulse response: Erlang terms for the transit compartments and a Gauss rule
for the platelet compartment, all elementwise.

Every function takes the array namespace ``xp`` first (``numpy`` or
``pytensor.tensor``), as in :mod:`pkpd.popfit.kernels`.  Fitting assumes
gamma = 0 and hill = 1 (the defaults of the hetrombopag model).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..checks import PKPDInputError
from ..pd import MAP_ALPHA, gauss_legendre, lagrange_basis
from . import kernels

#: Gauss points of the chain integrals in :func:`plt_from`: exact to rounding
#: while ktr h and kdeg h stay below ~4 (MTT/n and lifespan >= 6 h on a 24 h grid).
CHAIN_QUADRATURE = 8
#: Input nodes per step and extra quadrature points for the node weights.
NODES = 8
QUADRATURE_POINTS = NODES + 6
#: Candidate grid steps (h): the largest that puts every dose and platelet
#: observation on the grid is used.
GRID_STEPS_H = tuple(24.0 / k for k in (1, 2, 3, 4, 6, 8, 12, 24, 48, 96))


def erlang(xp, i: int, ktr, tau):
    """Amount in the (i+1)-th transit compartment ``tau`` h after a unit amount
    entered the first: e^{-ktr tau} (ktr tau)^i / i!."""
    out = xp.exp(-ktr * tau)
    for j in range(1, i + 1):
        out = out * (ktr * tau) / j
    return out


def plt_from(xp, r: int, ktr, kdeg, tau):
    """PLT ``tau`` h after a unit amount entered a chain of ``r`` transit
    compartments ahead of the platelet compartment:
    integral_0^tau e^{-kdeg (tau-u)} ktr Erlang_{r-1}(u) du, by a
    CHAIN_QUADRATURE-point Gauss rule (the integrand is entire and varies on
    the scale of the step, so the rule is exact to rounding)."""
    z, w = gauss_legendre(CHAIN_QUADRATURE)
    tau_ = tau[..., None] + 0.0 * ktr[..., None]
    integrand = xp.exp(-kdeg[..., None] * tau_ * (1.0 - z)) * ktr[..., None] * erlang(xp, r - 1, ktr[..., None], tau_ * z)
    return tau * (integrand * w).sum(axis=-1)


# ================================================================= design
@dataclass(frozen=True)
class PlateletGrid:
    """Where the platelet likelihood evaluates what (built once from the data).

    h : grid step, hours.  nodes : (m,) Gauss nodes on [0, 1].
    dose : (S, J) mg given at the start of each step (doses on the grid).
    mapped : (S, J) bool, the step starts with a dose (exponential node map).
    obs_subject : (n_obs,) int.  obs_step : (n_obs,) int, observation time / h.
    """

    h: float
    nodes: np.ndarray
    dose: np.ndarray
    mapped: np.ndarray
    obs_subject: np.ndarray
    obs_step: np.ndarray

    @property
    def n_steps(self) -> int:
        return self.dose.shape[1]


def node_offsets(h: float, nodes: np.ndarray, mapped: bool) -> np.ndarray:
    """Node times within a step (h): h*phi(c), phi the identity or the
    exponential map of :meth:`pkpd.pd.PKPDSolver._build`."""
    if not mapped:
        return h * nodes
    return h * np.expm1(MAP_ALPHA * nodes) / np.expm1(MAP_ALPHA)


def node_weights(h: float, nodes: np.ndarray, mapped: bool):
    """Quadrature lags (K,) and coefficients (K, m) such that
    ``W[:, j] = sum_k coef[k, j] e^{A lag_k} e_1`` (see :func:`pkpd.pd._propagators`)."""
    qz, qw = gauss_legendre(QUADRATURE_POINTS)
    if mapped:
        phi = np.expm1(MAP_ALPHA * qz) / np.expm1(MAP_ALPHA)
        dphi = MAP_ALPHA * np.exp(MAP_ALPHA * qz) / np.expm1(MAP_ALPHA)
    else:
        phi, dphi = qz, np.ones_like(qz)
    lags = h - h * phi
    coef = (qw * h * dphi)[:, None] * lagrange_basis(nodes, qz)
    return lags, coef


def platelet_grid(regimens, subject, times) -> PlateletGrid:
    """Grid for platelet observations at ``times`` (h) of subjects ``subject``.

    regimens : one :class:`pkpd.Regimen` per subject index.  Steady-state and
    reset doses are not supported in the platelet model (it starts drug-free).
    """
    subject = np.asarray(subject, int)
    times = np.asarray(times, float)
    for s, reg in enumerate(regimens):
        if any(d.ss or d.reset for d in reg.doses):
            raise PKPDInputError(
                f"subject index {s}: steady-state (SS) or reset (EVID 3/4) doses cannot be used with the "
                "platelet model, which starts drug-free; write the doses out explicitly."
            )
    every = np.concatenate([times, *(r.times for r in regimens)])
    on_grid = lambda h: np.abs(every / h - np.round(every / h)) < 1e-6  # noqa: E731
    h = next((h for h in GRID_STEPS_H if on_grid(h).all()), None)
    if h is None:
        bad = every[~on_grid(GRID_STEPS_H[-1])][0]
        raise PKPDInputError(
            f"platelet fitting needs doses and platelet observations on a regular grid of at least "
            f"{GRID_STEPS_H[-1]} h; time {bad} h is not a multiple of it. Round the times to the nearest 15 min."
        )
    n_steps = max(int(np.round(times.max() / h)) if times.size else 0, 1)
    dose = np.zeros((len(regimens), n_steps))
    for s, reg in enumerate(regimens):
        step = np.round(reg.times / h).astype(int)
        keep = step < n_steps
        np.add.at(dose[s], step[keep], reg.amounts[keep])
    return PlateletGrid(h, gauss_legendre(NODES)[0], dose, dose > 0, subject, np.round(times / h).astype(int))


# ================================================================= prediction
def predict_platelets(xp, ka, cl, v, emax, ec50, mtt, lifespan, plt0, grid: PlateletGrid,
                      n_transit: int = 4, conc_scale: float = 1000.0):
    """Platelets (10^9/L) at the grid's observations.

    Individual parameters are arrays of shape (S,) (PyTensor or NumPy):
    ka 1/h, cl L/h, v L (concentrations mg/L x conc_scale, default ng/mL),
    emax fold, ec50 in the concentration unit, mtt h, lifespan h, plt0 10^9/L.
    """
    n, h, J = n_transit, grid.h, grid.n_steps
    k = cl / v
    # --- PK amounts just after each step's dose: (ag, ac)_j = T (ag, ac)_{j-1} + (dose_j, 0)
    # with T = [[e^{-ka h}, 0], [B(h), e^{-k h}]] (B the Bateman function, pkpd.one_compartment.bateman).
    col = lambda a: a[:, None]  # noqa: E731
    t_pk = (xp.exp(-ka * h), kernels.bateman(xp, h, ka, k), xp.exp(-k * h))
    ag, ac = _linear_scan(xp, [grid.dose, 0.0 * grid.dose * col(ka)], _pk_power(xp, t_pk, col), J)
    # --- drug effect at the input nodes of every step
    effects = []
    for mapped in (False, True):
        tau = node_offsets(h, grid.nodes, mapped)[None, None, :]  # (1, 1, m)
        amount = ac[:, :, None] * xp.exp(-k[:, None, None] * tau) + ag[:, :, None] * kernels.bateman(
            xp, tau, ka[:, None, None], k[:, None, None])
        conc = conc_scale * amount / v[:, None, None]
        effects.append(emax[:, None, None] * conc / (ec50[:, None, None] + conc))
    # --- chain propagator Phi = e^{A h} and node weights W, from the impulse
    # response e^{A t} e_1: Erlang terms for the transit compartments and
    # plt_from for the platelets.
    ktr, kdeg = n / mtt, 1.0 / lifespan
    hh = np.full(1, h)
    toeplitz = [erlang(xp, i, col(ktr), hh)[:, 0] for i in range(n)]
    plt_row = [plt_from(xp, n - j, col(ktr), col(kdeg), hh)[:, 0] for j in range(n)] + [xp.exp(-kdeg * h)]
    zero = 0.0 * ktr
    phi = xp.stack([xp.stack([toeplitz[i - j] if j <= i else zero for j in range(n + 1)], axis=-1)
                    for i in range(n)] + [xp.stack(plt_row, axis=-1)], axis=-2)  # (S, N, N)
    forcing = 0.0  # (S, J, N): the chain's input over each step, f_j = W E_j
    for mapped, effect in zip((False, True), effects):
        lags, coef = node_weights(h, grid.nodes, mapped)
        impulse = [erlang(xp, i, col(ktr), lags) for i in range(n)] + [plt_from(xp, n, col(ktr), col(kdeg), lags)]
        w = xp.stack([_matmul(xp, imp, coef) for imp in impulse], axis=-1)  # (S, m, N)
        mask = (grid.mapped if mapped else ~grid.mapped)[:, :, None]
        forcing = forcing + _matmul(xp, effect, w) * mask
    # x_k = Phi x_{k-1} + f_k by doubling: states are rows, so T acts as y @ Phi^T.
    apply = lambda power: (lambda y: [_matmul(xp, y[0], xp.swapaxes(power, 1, 2))], lambda: apply(_matmul(xp, power, power)))  # noqa: E731
    (state,) = _linear_scan(xp, [forcing], apply(phi), J)
    # The deviation of the chain at the start of step k is the scan's value at k - 1.
    obs_s, obs_k = grid.obs_subject, grid.obs_step
    dev = state[obs_s, np.maximum(obs_k - 1, 0), n] * (obs_k >= 1)
    return plt0[obs_s] + plt0[obs_s] / lifespan[obs_s] * dev


def _matmul(xp, a, b):
    return np.matmul(a, b) if xp is np else xp.matmul(a, b)


def _linear_scan(xp, forcing, power, J):
    """All y_k = T y_{k-1} + f_k (k = 0..J-1, y_{-1} = 0) at once.

    Hillis-Steele doubling: at level d each y_k adds T^(2^d) y_{k - 2^d}.
    ``power`` is (apply, square): apply(y) = T y on states stacked along the
    step axis, square() the same pair for T^2.  ``forcing``: list of (S, J).
    """
    y, shift = forcing, 1
    while shift < J:
        earlier = [xp.concatenate([0.0 * c[:, :shift], c[:, :-shift]], axis=1) for c in y]
        y = [a + b for a, b in zip(y, power[0](earlier))]
        power, shift = power[1](), 2 * shift
    return y


def _pk_power(xp, t, col):
    """(apply, square) for the lower-triangular 2 x 2 PK transition t = (a, b, c)."""
    a, b, c = t
    apply = lambda y: [col(a) * y[0], col(b) * y[0] + col(c) * y[1]]  # noqa: E731
    return apply, lambda: _pk_power(xp, (a * a, b * a + c * b, c * c), col)
