"""The platelet prediction used for fitting (pkpd.popfit.platelets) against the
independent exact-step simulator (pkpd.pd), in NumPy and in PyTensor, and its
gradient against finite differences."""

import numpy as np
import pytest

from pkpd import PKPDInputError, Regimen
from pkpd.drugs import hetrombopag
from pkpd.popfit.platelets import platelet_grid, predict_platelets
from pkpd.simulate import solver_for

NAMES = ["ka", "cl", "v", "emax", "ec50", "mtt", "lifespan", "plt0"]


@pytest.fixture(scope="module")
def study():
    regimens = [Regimen.daily(5, 10), Regimen.daily(2.5, 10) + Regimen.daily(5, 5, start_h=240),
                Regimen.single(7.5), Regimen.daily(7.5, 14).interrupt(96, 168)]
    times = [np.array([0, 48, 96, 168, 240, 336, 504, 672, 840.0]), np.array([24, 72, 120, 240, 480, 600.0]),
             np.array([144, 336.0]), np.array([12, 36, 200, 400.0])]
    params = hetrombopag.model("healthy", pk="linear").sample_parameters(len(regimens), seed=3)
    params.loc[3, ["ka", "lifespan", "mtt"]] = [1.5, 60.0, 120.0]  # a fast absorber, short lifespan
    subject = np.concatenate([[i] * len(t) for i, t in enumerate(times)])
    return regimens, times, params, subject, np.concatenate(times)


def exact(study):
    regimens, times, params, _, _ = study
    return np.concatenate([
        solver_for(params.iloc[[i]]).run(r.times, r.amounts, t)[1][0] for i, (r, t) in enumerate(zip(regimens, times))
    ])


def test_numpy_prediction_matches_exact_simulator(study):
    regimens, _, params, subject, times = study
    grid = platelet_grid(regimens, subject, times)
    assert grid.h == 4.0  # observations at 12 h and 200 h: the largest common step is 4 h
    pred = predict_platelets(np, *[params[n].to_numpy() for n in NAMES], grid=grid)
    np.testing.assert_allclose(pred, exact(study), rtol=2e-6)


@pytest.mark.parametrize("n_transit", [4, 3])
def test_kernel_over_draws_matches_the_simulator(study, n_transit):
    """The NumPy front end of the forward kernel (IPRED of a fit): leading draw axes,
    per-draw parameters, and the tensor-expression fallback for other chain lengths."""
    from pkpd.popfit.platelet_op import predict_platelets_kernel

    regimens, times, params, subject, obs_times = study
    grid = platelet_grid(regimens, subject, obs_times)
    scale = np.array([1.0, 0.5, 2.0])[:, None, None] * np.ones((3, 2, 1))  # (3, 2) draws: emax x scale
    values = [np.broadcast_to(params[n].to_numpy(), (3, 2, len(params))).copy() for n in NAMES]
    values[3] = values[3] * scale
    out = predict_platelets_kernel(*values, grid=grid, n_transit=n_transit)
    assert out.shape == (3, 2, obs_times.size)
    for d in range(3):
        p = params.assign(emax=params["emax"] * scale[d, 0, 0], n_transit=n_transit)
        want = np.concatenate([solver_for(p.iloc[[i]]).run(r.times, r.amounts, t)[1][0]
                               for i, (r, t) in enumerate(zip(regimens, times))])
        np.testing.assert_allclose(out[d, 1], want, rtol=2e-6)
        np.testing.assert_array_equal(out[d, 0], out[d, 1])


@pytest.fixture(scope="module")
def short_study(study):
    """Two of the study's subjects over 14 days on a 24 h grid: the unrolled tensor
    expression has a node per step and subject, and C-compiling the whole study's
    graph takes minutes."""
    regimens, times, params, _, _ = study
    regimens = [regimens[1], regimens[3]]
    times = [np.array([24, 120, 240, 336.0]), np.array([48, 168, 288.0])]
    params = params.iloc[[1, 3]].reset_index(drop=True)
    subject = np.concatenate([[i] * len(t) for i, t in enumerate(times)])
    return regimens, times, params, subject, np.concatenate(times)


@pytest.mark.parametrize("implementation, mode", [("graph", "FAST_RUN"), ("op", "FAST_RUN"), ("op", "NUMBA")])
def test_pytensor_prediction_and_gradient(study, short_study, implementation, mode):
    """Both PyTensor versions -- the tensor expression with automatic gradients (on the
    short study) and the compiled Op with its hand-written adjoint -- against the
    simulator and finite differences."""
    pytensor = pytest.importorskip("pytensor")
    pt = pytensor.tensor
    from pkpd.popfit.platelet_op import predict_platelets_tensor

    if implementation == "graph":
        study = short_study
    regimens, _, params, subject, times = study
    grid = platelet_grid(regimens, subject, times)
    inputs = [pt.dvector(n) for n in NAMES]
    if implementation == "graph":
        pred = predict_platelets(pt, *inputs, grid=grid)
    else:
        pred = predict_platelets_tensor(*inputs, grid=grid)
    target = np.log(exact(study) * 1.2)
    loss = ((pt.log(pred) - target) ** 2).sum()
    f = pytensor.function(inputs, [pred, loss, *pt.grad(loss, inputs)], mode=mode)
    values = [params[n].to_numpy().copy() for n in NAMES]
    out = f(*values)
    np.testing.assert_allclose(out[0], exact(study), rtol=2e-6)
    for i, name in enumerate(NAMES):
        for s in (0, len(values[i]) - 1):
            step = 1e-6 * values[i][s]
            up = [v.copy() for v in values]
            up[i][s] += step
            down = [v.copy() for v in values]
            down[i][s] -= step
            fd = (f(*up)[1] - f(*down)[1]) / (2 * step)
            assert out[2 + i][s] == pytest.approx(fd, rel=1e-5, abs=1e-10), (name, s)


def test_times_off_the_grid_and_ss_doses_are_refused():
    with pytest.raises(PKPDInputError, match="grid"):
        platelet_grid([Regimen.daily(5, 3)], [0], [24.1])
    with pytest.raises(PKPDInputError, match="steady-state"):
        platelet_grid([Regimen.daily(5, 3, steady_state=True)], [0], [48.0])


def test_adjoint_equals_automatic_gradient_at_ka_equal_k(study):
    """The Op's hand-written adjoint against PyTensor's automatic gradient of the tensor
    expression (an independent derivation), with one subject exactly at ka == k, where the
    Bateman function switches to its series."""
    pytensor = pytest.importorskip("pytensor")
    pt = pytensor.tensor
    from pkpd.popfit.platelet_op import grid_constants, platelet_forward, platelet_vjp

    regimens, _, params, subject, times = study
    params = params.copy()
    params.loc[2, "ka"] = params.loc[2, "cl"] / params.loc[2, "v"]
    grid = platelet_grid(regimens, subject, times)
    values = np.stack([params[n].to_numpy(float) for n in NAMES])
    weights = np.random.default_rng(1).normal(size=times.size)
    inputs = [pt.dvector(n) for n in NAMES]
    auto = pytensor.function(inputs, pt.grad((predict_platelets(pt, *inputs, grid=grid) * weights).sum(), inputs))
    expected = np.array(auto(*values))
    constants = grid_constants(grid)
    _, states, tables = platelet_forward(values, *constants, 4, grid.h, 1000.0)
    got = platelet_vjp(values, *constants, 4, grid.h, 1000.0, states, tables, weights)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
