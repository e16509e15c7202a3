"""GOF axes carry the units the fit recorded, without being told.

A small hand-made InferenceData with the groups :func:`pkpd.fit` writes
(posterior predictions, posterior predictive, observed and constant data with
their unit attributes) stands in for a fit, so no sampling is needed."""

import numpy as np
import pytest

az = pytest.importorskip("arviz")
xr = pytest.importorskip("xarray")


def fake_idata(endpoint, unit):
    rng = np.random.default_rng(0)
    n, chains, draws = 40, 2, 30
    time_h = np.tile(np.arange(1, 11) * 2.0, 4)
    truth = 10 * np.exp(-0.1 * time_h)
    dims = ("chain", "draw", f"{endpoint}_obs")
    ipred = truth * np.exp(0.05 * rng.standard_normal((chains, draws, n)))
    obs_dim = (f"{endpoint}_obs",)
    return az.InferenceData(
        posterior=xr.Dataset({f"{endpoint}_ipred": (dims, ipred), f"{endpoint}_pred": (dims, np.broadcast_to(truth, ipred.shape))}),
        posterior_predictive=xr.Dataset({endpoint: (dims, ipred * (1 + 0.1 * rng.standard_normal(ipred.shape)))}),
        observed_data=xr.Dataset({endpoint: (obs_dim, truth * (1 + 0.1 * rng.standard_normal(n)))}),
        constant_data=xr.Dataset({
            f"{endpoint}_time": xr.DataArray(time_h, dims=obs_dim, attrs={"unit": "h"}),
            f"{endpoint}_id": xr.DataArray(np.repeat(np.arange(1, 5), 10), dims=obs_dim),
            f"{endpoint}_blq": xr.DataArray(np.zeros(n, bool), dims=obs_dim),
            f"{endpoint}_lloq": xr.DataArray(np.full(n, np.nan), dims=obs_dim, attrs={"unit": unit}),
        }),
    )


@pytest.mark.parametrize("endpoint, unit", [("conc", "mg/L"), ("plt", "10^9/L")])
def test_gof_axes_carry_units_by_default(endpoint, unit):
    import matplotlib.pyplot as plt

    from pkpd.popfit import plots

    fig = plots.plot_gof(fake_idata(endpoint, unit), endpoint=endpoint)
    try:
        labels = [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes]
        assert labels == [(f"PRED ({unit})", f"DV ({unit})"), (f"IPRED ({unit})", f"DV ({unit})"),
                          ("time (h)", "CWRES (conditional)"), (f"PRED ({unit})", "CWRES (conditional)")]
    finally:
        plt.close(fig)
    # an explicit unit still wins
    fig = plots.plot_gof(fake_idata(endpoint, unit), endpoint=endpoint, unit="ng/mL")
    assert fig.axes[0].get_xlabel() == "PRED (ng/mL)"
    plt.close(fig)
