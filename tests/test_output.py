"""Output folders (pkpd.output): pkpd writes only into folders it made, never
touches a user's file or folder, marks what it writes, and makes folders with
the user's umask; scenario names never become paths.  (Signals during a save
and two saves into one folder are fault tests of tests/bad_inputs/output.py.)"""

import dataclasses
import errno
import os
import stat
from pathlib import Path

import pytest

from bad_inputs.output import MARKER, stand_in_plots, tiny_file, tiny_result, user_folder
from pkpd import PKPDInputError
from pkpd.cli import main


@pytest.fixture
def no_plots(monkeypatch):
    stand_in_plots(monkeypatch)


def _snapshot(root: Path) -> dict:
    """Every path under ``root`` with its bytes (None for folders) and mode."""
    return {str(p.relative_to(root)): (None if p.is_dir() else p.read_bytes(), p.stat().st_mode)
            for p in sorted(root.rglob("*"))}


def test_existing_file_at_out_is_refused_and_untouched(tmp_path, capsys, no_plots):
    scenario = tiny_file(tmp_path)
    target = tmp_path / "results.csv"
    target.write_text("id,value\n1,2\n")
    before = _snapshot(tmp_path)
    assert main(["run", str(scenario), "--out", str(target), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pkpd: error:") and str(target) in err
    for save in (tiny_result().save, tiny_result().result.save):
        with pytest.raises(PKPDInputError, match="existing file"):
            save(target)
    assert _snapshot(tmp_path) == before


def test_user_folder_is_refused_and_untouched(tmp_path, capsys, no_plots):
    scenario = tiny_file(tmp_path)
    work = user_folder(tmp_path, "analysis", files=("notes.txt", "fit.R"))
    (work / "sub").mkdir()
    (work / "sub" / "data.csv").write_text("x\n1\n")
    before = _snapshot(tmp_path)
    assert main(["run", str(scenario), "--out", str(work), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(work) in err and MARKER in err
    for save in (tiny_result().save, tiny_result().result.save):
        with pytest.raises(PKPDInputError, match="did not write"):
            save(work)
    assert _snapshot(tmp_path) == before


def test_pkpd_folder_is_replaced_and_marked(tmp_path, no_plots):
    out = tmp_path / "out"
    first = tiny_result().save(out)
    assert first == out.resolve()
    marker = (out / MARKER).read_text()
    assert marker.startswith("pkpd ") and "replaces" in marker
    (out / "extra.txt").write_text("inside pkpd's folder")
    tiny_result(seed=5).result.save(out)  # TrialResult.save follows the same rule
    names = {p.name for p in out.iterdir()}
    assert names == {MARKER, "endpoints.csv", "ledger.csv", "doses.csv", "platelets.csv", "nonmem.csv",
                     "platelets.png", "doses.png", "response.png"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_empty_folder_made_for_the_results_is_used(tmp_path, no_plots):
    out = tmp_path / "empty"
    out.mkdir()
    tiny_result().save(out)
    assert (out / MARKER).is_file() and (out / "comparison.txt").is_file()


@pytest.mark.parametrize("umask", [0o022, 0o027, 0o002])
def test_folders_and_files_follow_the_umask(tmp_path, no_plots, umask):
    old = os.umask(umask)
    try:
        out = tiny_result().save(tmp_path / "new" / "parents" / "out")
    finally:
        os.umask(old)
    for folder in (out, out.parent, out.parent.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~umask, folder
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~umask, f


def test_out_under_a_file_or_unwritable_folder_names_the_path(tmp_path, capsys):
    scenario = tiny_file(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    target = tmp_path / "notes.txt" / "out"
    assert main(["run", str(scenario), "--out", str(target), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(target) in err and "is a file, not a folder" in err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_disk_full_while_writing_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, no_plots):
    from pkpd.trial import TrialResult

    scenario, out = tiny_file(tmp_path), tmp_path / "out"
    assert main(["run", str(scenario), "--out", str(out), "--no-progress"]) == 0
    before = _snapshot(out)
    capsys.readouterr()

    class Full:
        def savefig(self, path, **kw):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(TrialResult, "plot_doses", lambda self: Full())
    assert main(["run", str(scenario), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pkpd: error:") and str(out) in err and "No space" in err
    assert "Traceback" not in err
    assert _snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny.toml"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_out_in_a_read_only_folder_names_the_path(tmp_path, capsys):
    scenario = tiny_file(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        assert main(["run", str(scenario), "--out", str(locked / "out"), "--no-progress"]) == 2
    finally:
        locked.chmod(0o755)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(locked / "out") in err and "permission" in err


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "/etc/passwd", ".hidden"])
def test_check_refuses_a_name_that_would_be_a_path(tmp_path, capsys, name):
    assert main(["check", str(tiny_file(tmp_path, name))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "scenario.name" in err and repr(name) in err


@pytest.mark.parametrize("name", ["../../x", "a/../../b", "..", "<absolute>", "~", "a\\..\\b", "", "x" * 500])
def test_default_folder_stays_inside_the_results_folder(tmp_path, monkeypatch, no_plots, name):
    """Even a name that bypassed the file check (a Scenario built in code) gives
    one folder inside pkpd-results."""
    from pkpd.scenario import ScenarioResult

    tiny = tiny_result()
    name = str(tmp_path / "elsewhere") if name == "<absolute>" else name
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    out = ScenarioResult(dataclasses.replace(tiny.scenario, name=name), tiny.result).save()
    assert out.parent == (work / "pkpd-results").resolve()
    assert out.name not in ("", ".", "..") and not out.name.startswith(".") and len(out.name) <= 64
    assert [p.name for p in tmp_path.iterdir()] == ["work"] and [p.name for p in work.iterdir()] == ["pkpd-results"]


def test_default_out_of_a_run_is_pkpd_results_name(tmp_path, monkeypatch, no_plots):
    monkeypatch.chdir(tmp_path)
    out = tiny_result().save()
    assert out == (tmp_path / "pkpd-results" / "tiny").resolve() and (out / MARKER).is_file()
