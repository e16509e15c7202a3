"""A two-compartment population fit on pkpd's compiled log density recovers a known truth.

Data simulated by :mod:`two_compartment_study` (the model's own dose-to-dose
propagation, not the fitting kernels, plus residual error); priors centred
away from the truth.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

pytest.importorskip("nutpie")

from two_compartment_study import (  # noqa: E402
    OMEGA,
    TRUTH,
    two_compartment_spec,
    two_compartment_study,
)

import pkpd  # noqa: E402
from pkpd.popfit import build_model  # noqa: E402
from pkpd.popfit.density import supports  # noqa: E402


def test_two_compartment_fit_recovers_the_typical_values():
    data, _ = two_compartment_study(n_subjects=10, seed=11)
    built = build_model(two_compartment_spec(), data)
    assert supports(built) is None
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a short run: ESS below the 400 of diagnose() is expected
        idata = pkpd.fit(built, None, draws=400, tune=400, chains=2, seed=3, progress=False, verbose=False)
    elapsed = time.perf_counter() - t0
    assert idata.attrs["density"] == "compiled"
    post = idata.posterior
    assert int(idata.sample_stats["diverging"].sum()) == 0
    for name, truth in {**TRUTH, **{f"omega_{k}": v for k, v in OMEGA.items()}}.items():
        lo, hi = np.quantile(post[name].values, [0.05, 0.95])
        assert lo <= truth <= hi, f"{name}: truth {truth} outside the 90% interval [{lo:.3g}, {hi:.3g}]"
    assert elapsed < 60, f"the fit took {elapsed:.0f} s"
