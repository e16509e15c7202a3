"""``import pkpd`` is light: nothing heavy is imported until it is used.

``import pkpd`` imports no submodule (they load on first attribute access),
and the modules a trial simulation needs import matplotlib, scipy.stats and
xarray only when a figure, a Kaplan-Meier median or an xarray result is made.
Imports are checked in fresh interpreters, since the test process itself has
imported everything.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pkpd

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("matplotlib", "scipy.stats", "xarray", "pymc", "pytensor", "arviz", "distributed", "optuna")
#: Prints the heavy modules actually loaded: a module that lazy_loader only
#: registered (a proxy not yet touched) does not count.
PROBE = ("import sys; print(sorted(m for m in {heavy!r} if m in sys.modules "
         "and type(sys.modules[m]).__name__ != '_LazyModule'))")


def _loaded(code: str, heavy=HEAVY) -> list[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}; {PROBE.format(heavy=heavy)}"],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    return ast.literal_eval(out.stdout.strip().splitlines()[-1])


def test_import_pkpd_imports_nothing_heavy():
    out = subprocess.run([sys.executable, "-c", "import pkpd, sys; print(sorted(m for m in "
                          f"{HEAVY!r} if m in sys.modules))"], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


def test_import_pkpd_imports_no_submodule_nor_numba():
    assert _loaded("import pkpd", ("numba", "pandas", "pkpd.trial", "pkpd.scenario")) == []


@pytest.mark.parametrize("code", ["import pkpd.cli", "import pkpd.scenario, pkpd.trial, pkpd.simulate, pkpd.sweep",
                                  "import pkpd; pkpd.Trial, pkpd.load_scenario, pkpd.TitrationRule"])
def test_the_simulation_stack_imports_nothing_heavy(code):
    assert _loaded(code) == []


def test_the_probe_sees_a_heavy_module():
    """The check can fail: a module imported for real is reported, a proxy once touched too."""
    assert _loaded("import pkpd, matplotlib.figure") == ["matplotlib"]
    assert _loaded("import pkpd.endpoints as e; e.stats.ecdf") == ["scipy.stats"]


def test_heavy_modules_load_on_first_use():
    code = ("import pkpd, numpy as np; from pkpd.endpoints import km_median; km_median(np.array([1.0, 2.0]), "
            "np.array([True, True])); from pkpd.trial_plots import _figure; _figure(1, 1)")
    assert _loaded(code) == ["matplotlib", "scipy.stats"]


def test_every_public_name_resolves():
    popfit = set(pkpd._ATTRS["popfit"])  # importing PyMC here would only slow the test; test_fit uses them
    for name in sorted(set(pkpd.__all__) - popfit):
        assert getattr(pkpd, name) is not None, name
    assert set(pkpd.__all__) <= set(dir(pkpd))
    # the names that are also submodules are the functions, as before lazy loading
    assert all(callable(getattr(pkpd, n)) for n in ("calibrate", "nca", "simulate", "sweep"))
    assert pkpd.endpoints.REGISTRY and pkpd.trial.Trial is pkpd.Trial


def test_type_checkers_see_the_lazy_names():
    """The ``if TYPE_CHECKING:`` imports of pkpd/__init__.py are the lazily attached names (``__all__``
    and a few more, e.g. ``pkpd.Target``), from the same modules."""
    tree = ast.parse((ROOT / "pkpd" / "__init__.py").read_text())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    static = {(n.module or "", a.name) for n in block.body for a in n.names}
    lazy = {(module, name) for module, names in pkpd._ATTRS.items() for name in names}
    lazy |= {("", name) for name in set(pkpd.__all__) - {n for _, n in lazy}}  # submodules: from . import x
    assert static == lazy
    assert set(pkpd.__all__) <= {n for _, n in static}


def test_every_submodule_is_attached():
    """``pkpd.<module>`` works for every module of the package after ``import pkpd`` alone (a new
    module is added to ``_SUBMODULES``); a module whose name is also a function is that function."""
    modules = {p.stem if p.suffix == ".py" else p.name for p in (ROOT / "pkpd").iterdir()
               if (p.suffix == ".py" or (p / "__init__.py").is_file()) and not p.name.startswith("_")}
    shadowed = {m for m, names in pkpd._ATTRS.items() if m in names}
    assert set(pkpd._SUBMODULES) == modules - shadowed
