"""Individual dose forecasting: "this patient had these doses and these counts; what dose next?"

>>> import pkpd
>>> history = pkpd.forecast.PatientHistory.read("patient.csv")          # doctest: +SKIP
>>> fc = pkpd.forecast.forecast(history, seed=1)                         # doctest: +SKIP
>>> fc.dose_mg, fc.reason, fc.table                                      # doctest: +SKIP

Built on a population model (default ``pkpd.drugs.hetrombopag.model("itp")``),
reached only through its interfaces (:class:`pkpd.population.PKPDModel`):

- :mod:`~pkpd.forecast.history`: the patient's doses, counts and concentrations, validated;
- :mod:`~pkpd.forecast.likelihood`: the individual posterior density (IIV prior, residual errors),
  with exact gradients from the compiled fitting kernels where they cover the model;
- :mod:`~pkpd.forecast.population`: the population knowledge with its uncertainty (``population=``:
  posterior draws of the typical values, or the result of :func:`pkpd.fit`);
- :mod:`~pkpd.forecast.posterior`: MAP, Laplace approximation, importance resampling with
  Pareto-smoothed weights, responder status (and population draw) as a mixture;
- :mod:`~pkpd.forecast.prediction`: predicted counts per candidate dose, the recommendation,
  :class:`Forecast`;
- :mod:`~pkpd.forecast.recommend`: :func:`forecast`, the entry point;
- :mod:`~pkpd.forecast.validation`: leave-future-out checks on simulated trial patients;
- :mod:`~pkpd.forecast.guided`: :class:`ModelGuidedRule`, titration by forecast, an arm's rule in
  :class:`pkpd.Trial`;
- :mod:`~pkpd.forecast.cli`: ``pkpd forecast patient.csv``.

Units: h (times), days (visits), mg, ng/mL, 10^9/L.
"""

from .cli import cli_forecast
from .guided import GuidedState, ModelGuidedRule
from .history import PatientHistory
from .likelihood import PatientDensity, Prior
from .population import PopulationDraws, fit_draws, population_draws
from .posterior import ForecastWarning, IndividualPosterior, fit_individual
from .prediction import Forecast
from .recommend import as_history, forecast

__all__ = ["Forecast", "ForecastWarning", "GuidedState", "IndividualPosterior", "ModelGuidedRule", "PatientDensity",
           "PatientHistory", "PopulationDraws", "Prior",
           "as_history", "cli_forecast", "fit_draws", "fit_individual", "forecast", "population_draws"]
