"""notebooks/06_rule_optimisation.ipynb runs top to bottom with its fast settings.

Beyond running without an error, its printed text must show the fast
settings, the search (candidates x patients x days), the held-out comparison
with its paired interval and the phase III check: the cells the notebook is
for.  What the full settings print is checked on the stored notebook by
tests/test_notebooks_stored.py.
"""

from __future__ import annotations

import re

from notebooks import run_notebook


def test_notebook_06_runs_with_fast_settings(monkeypatch):
    nb, text = run_notebook("06_rule_optimisation.ipynb", monkeypatch, timeout=300)
    assert "fast settings" in text
    assert re.search(r"8 candidates \+ the label rule x 300 patients x 168 days", text)
    assert "held out: 300 patients (seed 20210238), paired t 95% intervals" in text
    assert "winner - label" in text and "95% CI low" in text
    assert "phase III design, 3 replicate trials per rule" in text and "responders_primary" in text
    assert "notebook done" in text
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
