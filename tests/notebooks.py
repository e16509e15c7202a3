"""Execute a notebook of ``notebooks/`` top to bottom with its fast settings.

The notebooks read ``PKPD_FAST=1`` in their first cell and shrink only their
sample sizes; users running them get the full settings.  They run in their own
folder, as Jupyter and ``jupyter execute`` run them: shipped data comes from the
installed package (``pkpd.datasets``), the repository's scenario files from
``../scenarios``.  Outputs are not saved here (``tests/test_notebooks_stored.py``
checks the stored ones).
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def run_notebook(name: str, monkeypatch, timeout: int = 600) -> tuple[object, str]:
    """Run ``notebooks/<name>`` with PKPD_FAST=1; return it and its printed text."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    monkeypatch.setenv("PKPD_FAST", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    return nb, text
