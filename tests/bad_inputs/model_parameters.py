"""Model parameters: ``pkpd.models.hetrombopag(...)`` overrides, ``with_typical``
and ``with_``.  Impossible values (negative, zero, NaN, infinite), values
outside the range the platelet solver is validated on
(``pkpd.checks.PARAMETER_LIMITS``), misspelt names and unknown populations
are refused with the field and the value."""

from __future__ import annotations

from pkpd import PKPDInputError
from pkpd.drugs import hetrombopag

from bad_inputs import Case


def _over(**values):
    return lambda tmp_path: hetrombopag.model("healthy", **values)


def _typical(**values):
    return lambda tmp_path: hetrombopag.model("itp").with_typical(**values)


def _with(**fields):
    return lambda tmp_path: hetrombopag.model("itp").with_(**fields)


CASES = [
    Case("model-negative-ka", _over(ka=-0.34), PKPDInputError, ("ka", "-0.34")),
    Case("model-zero-cl", _over(cl=0.0), PKPDInputError, ("cl", "got 0.0")),
    Case("model-nan-v", _over(v=float("nan")), PKPDInputError, ("v", "nan")),
    Case("model-inf-ec50", _over(ec50=float("inf")), PKPDInputError, ("ec50", "inf")),
    Case("model-negative-emax", _typical(emax=-1.0), PKPDInputError, ("emax", "-1.0")),
    Case("model-zero-mtt", _typical(mtt=0.0), PKPDInputError, ("mtt", "got 0.0")),
    Case("model-negative-lifespan", _over(lifespan=-205.0), PKPDInputError, ("lifespan", "-205.0")),
    Case("model-nan-plt0", _typical(plt0=float("nan")), PKPDInputError, ("plt0", "nan")),
    Case("model-zero-hill", _over(hill=0.0), PKPDInputError, ("hill", "got 0.0")),
    Case("model-negative-gamma", _over(gamma=-0.3), PKPDInputError, ("gamma", "-0.3")),
    Case("model-n-transit-fraction", _over(n_transit=2.5), PKPDInputError, ("n_transit", "2.5")),
    Case("model-n-transit-zero", _typical(n_transit=0), PKPDInputError, ("n_transit", "got 0")),
    Case("model-n-transit-huge", _over(n_transit=5000), PKPDInputError, ("n_transit", "5000")),
    Case("model-ka-per-minute", _over(ka=600.0), PKPDInputError, ("ka", "600.0", "validated")),
    Case("model-cl-v-too-fast", _over(cl=265.0 * 500), PKPDInputError, ("cl/v", "500.0")),
    Case("model-hill-too-steep", _typical(hill=12.0), PKPDInputError, ("hill", "12.0")),
    Case("model-hill-too-shallow", _over(hill=0.05), PKPDInputError, ("hill", "0.05")),
    Case("model-emax-huge", _over(emax=1e4), PKPDInputError, ("emax", "10000.0")),
    Case("model-gamma-too-large", _typical(gamma=3.0), PKPDInputError, ("gamma", "3.0")),
    Case("model-mtt-in-days", _over(mtt=0.5), PKPDInputError, ("mtt", "0.5", "hours")),
    Case("model-lifespan-tiny", _typical(lifespan=0.01), PKPDInputError, ("lifespan", "0.01")),
    Case("model-nonresponder-above-one", _with(nonresponder_fraction=1.2), PKPDInputError, ("nonresponder_fraction", "1.2")),
    Case("model-nonresponder-negative", _with(nonresponder_fraction=-0.1), PKPDInputError, ("nonresponder_fraction", "-0.1")),
    Case("model-nonresponder-nan", _with(nonresponder_fraction=float("nan")), PKPDInputError, ("nonresponder_fraction", "nan")),
    Case("model-unknown-override", _over(kaa=0.5), PKPDInputError, ("kaa", "did you mean 'ka'")),
    Case("model-uppercase-override", _over(EC50=20.0), PKPDInputError, ("EC50", "did you mean 'ec50'")),
    Case("model-unknown-with-typical", _typical(lifespn=48.0), PKPDInputError, ("lifespn", "did you mean 'lifespan'")),
    Case("model-with-unknown-field", _with(nonresponders=0.2), PKPDInputError, ("nonresponders", "did you mean 'nonresponder_fraction'")),
    Case("model-with-parameter-as-field", _with(ec50=20.0), PKPDInputError, ("ec50", "with_typical")),
    Case("model-unknown-population", lambda tmp_path: hetrombopag.model("dogs"), PKPDInputError, ("population", "dogs")),
    Case("model-population-case", lambda tmp_path: hetrombopag.model("ITP"), PKPDInputError, ("ITP", "did you mean 'itp'")),
]
