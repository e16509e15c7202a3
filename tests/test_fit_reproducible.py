"""A seed must give the same draws whatever the process compiled or cached before.

Why it did not: under fast-math, numba's compiled code depends on the process's
history, not only on the source.  A jitted caller gets a copy of every function
it calls linked into its own module and re-optimised there; at run time a call
binds to whichever definition of that symbol the process loaded first -- the
separately compiled callee when the log density is compiled in this process
(the first fit of a data set), the caller's own copy when PyTensor loads the
function from its on-disk cache (every later fit).  Fast-math lets the two
round differently, so the log density and its gradient moved by ~1e-13 and the
NUTS draws of a seed differed between, e.g., a whole test file and one test.
IEEE arithmetic (no fast-math) rounds every copy alike.  Measured on the joint
PK/PD model (recovery data of tests/test_fit_pkpd.py, seed 3, 2 x (100 + 100)):
compiled vs cached gave different draws with either the PyTensor graph or the
platelet kernels in fast-math, identical draws with neither.

The cross-process check itself (compile with an empty PyTensor cache, then
again from the cache, compare draws) takes minutes, and small graphs do not
always show the difference; these tests check its two conditions instead:
the graph pkpd.fit compiles is IEEE arithmetic, and so are the Ops' kernels.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("nutpie")
pytest.importorskip("pymc")


def test_sampler_log_density_is_compiled_without_fast_math():
    """The log density pkpd.fit samples is IEEE arithmetic: a sum whose value depends
    on the order of its additions comes out as the in-order sum (1.0 here); under
    fast-math the reduction is vectorised (reassociated) and gives another value."""
    import nutpie
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt

    from pkpd.popfit.sampling import _compile_nutpie

    w = np.array([1e16, 1.0, -1e16, 1.0] * 4)
    in_order = 0.0
    for term in w:
        in_order += term  # 1e16 + 1 rounds to 1e16: the in-order sum is exactly 1
    assert in_order == 1.0
    with pm.Model() as model:
        x = pm.Flat("x", shape=w.size)  # log density 0: the model's logp is the potential alone
        pm.Potential("terms", (w * pt.exp(x)).sum())
    at_zero = np.zeros(w.size)

    with pytensor.config.change_flags(numba__fastmath=True):
        fast = nutpie.compile_pymc_model(model, backend="numba")
    if float(fast.logp_func(at_zero)[0]) == in_order:
        pytest.skip("fast-math summed in order on this CPU: the check cannot tell the two apart here")

    before = pytensor.config.numba__fastmath
    compiled = _compile_nutpie(model)
    assert float(compiled.logp_func(at_zero)[0]) == in_order
    assert pytensor.config.numba__fastmath == before  # the user's setting is left as it was


def _fast_math_kernels() -> list:
    """The numba kernels of pkpd's PyTensor Ops (called from the sampled log density)
    that are compiled with fast-math."""
    from numba.core.dispatcher import Dispatcher

    from pkpd.popfit import density, pk_op, platelet_op

    return sorted(f"{module.__name__}.{name}" for module in (pk_op, platelet_op, density)
                  for name, f in vars(module).items()
                  if isinstance(f, Dispatcher) and f.targetoptions.get("fastmath"))


def test_op_kernels_are_compiled_without_fast_math():
    """The kernels the log density calls (and pkpd's compiled density,
    :mod:`pkpd.popfit.density`) must be IEEE arithmetic too: numba links a copy
    of each into the compiled graph, and under fast-math that copy and the kernel
    compiled on its own may round differently (measured: the joint PK/PD model's
    gradient moved by ~1e-13 between a fresh compile and PyTensor's cache, and the
    draws of a seed changed, with only these kernels in fast-math)."""
    assert _fast_math_kernels() == []
