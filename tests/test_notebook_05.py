"""notebooks/05_forecast.ipynb runs top to bottom with its fast settings.

Beyond running without an error, its printed text must show the fast
settings and the cells the notebook is for: the simulated patient's history
and true parameters, the individual posterior with its Pareto k, the forecast
and its recommendation, the narrowing with accumulating counts, the closed
loop on the same virtual patients under both rules, and the leave-future-out
coverage against the population-only prediction.  What the full settings
print is checked on the stored notebook by tests/test_notebooks_stored.py.
"""

from __future__ import annotations

import re

from notebooks import run_notebook


def test_notebook_05_runs_with_fast_settings(monkeypatch):
    nb, text = run_notebook("05_forecast.ipynb", monkeypatch, timeout=300)
    assert "fast settings" in text
    assert "PatientHistory(id=12" in text and "true parameters of patient 12" in text
    assert re.search(r"IndividualPosterior\(patient 12, .*Pareto k -?\d", text)
    assert re.search(r"recommended: [\d.]+ mg/day\. [\d.]+ mg: ", text)
    assert "0 mg (interrupt)" in text and "(current)" in text and "true count" in text
    assert "counts known" in text and "log width" in text
    assert "the label rule is the scenario's rule: True" in text
    assert "same virtual patients under label rule / model-guided: True" in text
    assert "model-guided: 2 patients x 77 days" in text and "paired t 95% intervals" in text
    assert "same virtual patients under full forecast / fast path: True" in text
    assert re.search(r"day-7 decisions equal in \d of 1 patients", text)
    assert "4 patients, one held-out count each" in text
    assert "coverage of the 90% predictive interval: forecast" in text and "RMSE of log counts" in text
    assert "notebook done" in text
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
