"""The bad-input catalogue: every case must be refused with a clear message.

Cases live by area in ``tests/bad_inputs/`` (regimens, NONMEM data, model
parameters, simulation times, populations and seeds, titration rules,
trials, scenario files, output folders, the CLI, fitting).  A case passes
when the error has the expected type and its message names the field and
the offending value; a CLI case when ``pkpd`` exits 2 with one line on
stderr and no traceback.  Faults that need more than one call (signals
during a save, two runs into one folder) are test functions of those
modules, imported here so pytest collects them with the catalogue.
"""

from __future__ import annotations

import importlib
import pkgutil
import warnings

import pytest

import bad_inputs
from bad_inputs import Case, CliCase, WarnCase

_MODULES = [importlib.import_module(f"bad_inputs.{m.name}") for m in pkgutil.iter_modules(bad_inputs.__path__)]
ALL = [case for module in _MODULES for case in getattr(module, "CASES", [])]
for _module in _MODULES:  # fault tests of each area, collected here
    globals().update({k: v for k, v in vars(_module).items() if k.startswith("test_") and callable(v)})


def _cases(kind):
    chosen = [c for c in ALL if type(c) is kind]
    return pytest.mark.parametrize("case", chosen, ids=[c.id for c in chosen])


def test_catalogue_holds_at_least_100_cases():
    ids = [c.id for c in ALL]
    assert len(set(ids)) == len(ids), "case ids must be unique"
    assert len(ALL) >= 100, f"the catalogue holds {len(ALL)} cases"


def _names_all(message: str, mentions) -> None:
    missing = [m for m in mentions if m.lower() not in message.lower()]
    assert not missing, f"message does not name {missing}: {message!r}"


@_cases(Case)
def test_bad_input_is_refused(case, tmp_path):
    with pytest.raises(case.error) as info:
        case.call(tmp_path)
    _names_all(str(info.value), case.mentions)


@_cases(WarnCase)
def test_doubtful_input_warns(case, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        case.call(tmp_path)
    ours = [str(w.message) for w in caught if issubclass(w.category, case.warning)]
    assert ours, f"no {case.warning.__name__} was raised"
    assert any(all(m.lower() in msg.lower() for m in case.mentions) for msg in ours), ours


@_cases(CliCase)
def test_cli_error_is_one_line_exit_2(case, tmp_path, capsys, monkeypatch):
    from pkpd.cli import main

    monkeypatch.chdir(tmp_path)
    argv = case.argv(tmp_path) if callable(case.argv) else case.argv
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own errors must be one line too
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, f"exit code {code}; stderr: {err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pkpd: error:"), err
    assert "Traceback" not in err
    _names_all(err, case.mentions)
