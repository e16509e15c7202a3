"""The notebooks in ``notebooks/`` are stored executed, with their outputs and figures.

Rules, checked cell by cell on the stored files (nothing is executed here;
``tests/notebooks.py`` runs them with the fast settings):

1. one top-to-bottom run: every non-empty code cell has an execution count,
   and the counts are 1, 2, 3, ... in order (no cell left unrun, none re-run
   by hand out of order);
2. no error outputs, and no traceback in any output;
3. a cell that shows something has outputs: its last statement is a bare
   expression (not silenced by a trailing ``;``), or it calls ``print`` or
   ``display`` outside a function definition or an ``if`` branch;
4. a cell that draws a figure has an image output (``image/png``): it calls
   ``plt.subplots`` / ``plt.figure``, an ArviZ ``az.plot_*`` or a pkpd
   ``plot_*`` function (``plots.plot_gof``, ``result.plot_doses()``, ...);
5. no notebook locates files through ``pkpd.__file__`` (a source checkout):
   shipped data comes from the installed package (:mod:`pkpd.datasets`).

Whether the outputs match what the current code would print is not checked
here: ``tests/notebooks.py`` re-runs them (fast settings) in the other tests.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))

_PLOT_CALL = re.compile(r"\bplt\.(subplots|figure)\(|\baz\.plot_\w+\(|\.plot_\w+\(|(?<![\w.])plot_\w+\(")


def _code_cells(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code" and "".join(cell["source"]).strip():
            yield i, "".join(cell["source"]), cell


def _shows_something(source: str) -> bool:
    tree = ast.parse(source)
    if tree.body and isinstance(tree.body[-1], ast.Expr) and not source.rstrip().endswith(";"):
        return True

    def calls_print(node) -> bool:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.If)):
            return False
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("print", "display"):
            return True
        return any(calls_print(child) for child in ast.iter_child_nodes(node))

    return any(calls_print(stmt) for stmt in tree.body)


def _text(output) -> str:
    return "".join(output.get("text", "")) + "".join(output.get("traceback", [])) + "".join(
        output.get("data", {}).get("text/plain", ""))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_stored_executed_with_outputs(path):
    problems = []
    cells = list(_code_cells(path))
    counts = [cell.get("execution_count") for _, _, cell in cells]
    if counts != list(range(1, len(cells) + 1)):
        problems.append(f"execution counts {counts}: not one top-to-bottom run (expected 1..{len(cells)})")
    for i, source, cell in cells:
        outputs = cell.get("outputs", [])
        if any(o["output_type"] == "error" or "Traceback (most recent call last)" in _text(o) for o in outputs):
            problems.append(f"cell {i}: stored an error")
        if _shows_something(source) and not outputs:
            problems.append(f"cell {i}: shows a value or prints, but has no stored output")
        if _PLOT_CALL.search(source) and not any("image/png" in o.get("data", {}) for o in outputs):
            problems.append(f"cell {i}: draws a figure, but has no stored image")
    assert not problems, f"{path.name} is not stored executed (run it with full settings and save):\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_finds_data_through_the_installed_package(path):
    for i, source, _ in _code_cells(path):
        assert "__file__" not in source, f"{path.name}, cell {i}: locates files through a module's __file__"
        assert "notebooks/data" not in source and '"data" /' not in source, f"{path.name}, cell {i}: reads a data folder of the checkout"
