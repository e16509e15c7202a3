"""Bad inputs to the result objects' presentation: plots of a trial result."""

from functools import lru_cache

from pkpd import Arm, Endpoints, PKPDInputError, TitrationRule, Trial

from . import Case


@lru_cache(maxsize=1)
def _result():
    arms = (Arm("titrated", 5, 2.5, TitrationRule()), Arm("placebo", 5, 0.0))
    return Trial(arms, duration_days=14, endpoints=Endpoints(primary_day=14)).run(seed=1, progress=False)


def _one_axes(tmp_path):
    from pkpd.trial import _figure

    return _result().plot_platelets(axes=[_figure(3, 3).subplots()])


CASES = [
    Case("presentation-plot-response-unknown-endpoint", lambda tmp_path: _result().plot_response("time_in_rnage"),
         PKPDInputError, ("endpoint", "time_in_rnage")),
    Case("presentation-plot-platelets-too-few-axes", _one_axes, PKPDInputError, ("axes", "got 1")),
]
