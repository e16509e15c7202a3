"""Output folders: pkpd writes only where it may, never touches a user's file,
and leaves no half-written folder after an error, a signal or a second run.

Cases save a tiny scenario (two arms of 5 patients, 14 days) over a file, a
user's folder, or under a file; scenario names that would become paths are
refused.  The fault tests kill a ``pkpd run`` (SIGTERM, SIGINT) while it
writes and during its final swap, and run two saves into one folder at once.
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

from bad_inputs import Case
from pkpd import PKPDInputError
from pkpd.scenario import Scenario

#: A scenario that runs in well under a second (after numba's first compile).
TINY = """\
[scenario]
name = "tiny"
description = "two arms of 5 patients for 14 days"
seed = 11

[trial]
duration_days = 14
visit_every_days = 7

[endpoints]
primary_day = 14

[rules.label]
ladder_mg = [0, 2.5, 3.75, 5, 7.5]
visit_every_days = 7

[[arms]]
name = "2.5 mg + titration"
n = 5
start_mg = 2.5
rule = "label"

[[arms]]
name = "placebo"
n = 5
start_mg = 0.0
"""

MARKER = ".pkpd-output"


def tiny_file(folder: Path, name: str = "tiny") -> Path:
    """Write the tiny scenario (with scenario.name = ``name``) to ``folder``."""
    path = Path(folder) / "tiny.toml"
    path.write_text(_with_name(name))
    return path


def _with_name(name: str) -> str:
    return TINY.replace('name = "tiny"', f"name = {json.dumps(name)}")  # a JSON string is a TOML basic string


@functools.lru_cache(maxsize=None)
def tiny_result(seed: int | None = None):
    """The tiny scenario, run once per seed (a ScenarioResult; None = the file's seed 11)."""
    return Scenario.from_dict(tomllib.loads(TINY)).run(seed=seed, progress=False)


def user_folder(tmp_path: Path, name: str = "mywork", files=("notes.txt",)) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for f in files:
        (folder / f).write_text("the user's own work\n")
    return folder


def _named(name):
    return lambda tmp_path: Scenario.from_dict(tomllib.loads(_with_name(name)))


def _save_trial(target):
    return lambda tmp_path: tiny_result().result.save(target(tmp_path))


def _save_scenario(target):
    return lambda tmp_path: tiny_result().save(target(tmp_path))


def _file(tmp_path, name="results.csv"):
    (tmp_path / name).write_text("a,b\n1,2\n")
    return tmp_path / name


def _fake_marker(content):
    def make(tmp_path):
        folder = user_folder(tmp_path, "looks_like_pkpd", files=("data.csv",))
        (folder / MARKER).write_text(content)
        return folder
    return make


def _marker_dir(tmp_path):
    folder = user_folder(tmp_path, "marker_is_folder")
    (folder / MARKER).mkdir()
    return folder


def _symlink_to_user_folder(tmp_path):
    real = user_folder(tmp_path, "real_work")
    (tmp_path / "link").symlink_to(real)
    return tmp_path / "link"


_NAME_CASES = [
    ("parent-dirs", "../../x"), ("slash", "a/b"), ("backslash", "a\\b"), ("dotdot", ".."), ("dot", "."),
    ("hidden", ".hidden"), ("absolute", "/etc/x"), ("empty", ""), ("blank", "   "), ("too-long", "x" * 65),
    ("newline", "a\nb"), ("trailing-dot", "run."), ("home", "~/x"),
]

CASES = [
    Case("output-trial-save-over-file", _save_trial(_file), PKPDInputError, ("results.csv", "existing file")),
    Case("output-scenario-save-over-file", _save_scenario(_file), PKPDInputError, ("results.csv", "existing file")),
    Case("output-trial-save-user-folder", _save_trial(user_folder), PKPDInputError, ("mywork", MARKER)),
    Case("output-scenario-save-user-folder", _save_scenario(user_folder), PKPDInputError, ("mywork", MARKER)),
    Case("output-user-folder-only-hidden-file", _save_trial(lambda p: user_folder(p, "repo", (".gitignore",))),
         PKPDInputError, ("repo", MARKER)),
    Case("output-marker-not-from-pkpd", _save_trial(_fake_marker("my notes\n")), PKPDInputError, ("looks_like_pkpd",)),
    Case("output-marker-is-a-folder", _save_trial(_marker_dir), PKPDInputError, ("marker_is_folder",)),
    Case("output-symlink-to-user-folder", _save_trial(_symlink_to_user_folder), PKPDInputError, ("real_work",)),
    Case("output-parent-is-file", _save_trial(lambda p: _file(p, "notes.txt") / "out"), PKPDInputError,
         ("notes.txt", "not a folder")),
    Case("output-grandparent-is-file", _save_scenario(lambda p: _file(p, "notes.txt") / "a" / "b"), PKPDInputError,
         ("notes.txt", "not a folder")),
    Case("output-unwritable-system-folder", _save_trial(lambda p: Path("/sys/pkpd-results-test")), PKPDInputError,
         ("/sys/pkpd-results-test",)),
] + [Case(f"output-name-{key}", _named(name), PKPDInputError, ("scenario.name", repr(name))) for key, name in _NAME_CASES]


# ================================================================= faults
class _Figure:
    """Stands in for a matplotlib figure: these tests are about the folder, not the plots."""

    def __init__(self, wait=None):
        self.wait = wait

    def savefig(self, path, **kw):
        if self.wait is not None:
            self.wait()
        Path(path).write_bytes(b"png")


def stand_in_plots(monkeypatch, wait=None):
    """Stand-in figures for every plot a save draws: these tests are about
    folders, not plots (``wait`` runs while the doses figure is saved)."""
    from pkpd.trial import TrialResult

    monkeypatch.setattr(TrialResult, "plot_platelets", lambda self: _Figure())
    monkeypatch.setattr(TrialResult, "plot_response", lambda self, *a, **k: _Figure())
    monkeypatch.setattr(TrialResult, "plot_doses", lambda self: _Figure(wait=wait))


_KILLED = """
import os, signal, sys, time
from pathlib import Path
from pkpd.scenario import Scenario
from pkpd.trial import TrialResult

path, out, signame, when = sys.argv[1:5]

class Figure:
    def savefig(self, path, **kw):
        Path(path).write_bytes(b"png")

TrialResult.plot_platelets = TrialResult.plot_doses = lambda self: Figure()
TrialResult.plot_response = lambda self, *a, **k: Figure()
scenario = Scenario.load(path)
scenario.run(progress=False).save(out)  # the previous result
new = scenario.run(seed=99, progress=False)
print("saved", flush=True)

def kill():
    os.kill(os.getpid(), getattr(signal, signame))

if when == "writing":  # the CSV files are in the staging folder, the plots are not
    def plot(self):
        kill()
        time.sleep(30)
    TrialResult.plot_platelets = plot
else:  # the signal arrives as the finished folder is put in place
    real = os.replace
    def replace(*args, **kwargs):
        kill()
        return real(*args, **kwargs)
    os.replace = replace
new.save(out)
print("returned", flush=True)
"""


def _folder_bytes(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _assert_no_leftovers(parent: Path) -> None:
    hidden = [p.name for p in parent.iterdir() if p.name.startswith(".")]
    assert hidden == [], f"staging folders left behind: {hidden}"


def _run_killed(tmp_path: Path, when: str) -> tuple[subprocess.CompletedProcess, Path]:
    """``ScenarioResult.save`` in a fresh interpreter, hit by SIGTERM ``when``."""
    out = tmp_path / "results" / "out"
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(tiny_file(tmp_path)), str(out), "SIGTERM", when],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert "saved" in proc.stdout, proc.stderr
    assert proc.returncode == -signal.SIGTERM and "returned" not in proc.stdout, proc.stderr
    _assert_no_leftovers(out.parent)
    assert [p.name for p in out.parent.iterdir()] == ["out"]
    return proc, out


def test_sigterm_while_saving_leaves_the_previous_result_and_no_staging_folder(tmp_path):
    _, out = _run_killed(tmp_path, "writing")
    files = _folder_bytes(out)
    assert {"platelets.png", "doses.png", "comparison.txt", "scenario.toml", MARKER} <= set(files)
    assert "seed 11," in files["comparison.txt"].decode()  # the first result, whole


def test_sigterm_during_the_swap_completes_it_then_terminates(tmp_path):
    _, out = _run_killed(tmp_path, "swap")
    files = _folder_bytes(out)
    assert {"platelets.png", "doses.png", "comparison.txt", "scenario.toml", MARKER} <= set(files)
    assert "seed 99," in files["comparison.txt"].decode()  # the new result, whole


def test_sigint_while_saving_leaves_the_previous_result_and_no_staging_folder(tmp_path, monkeypatch):
    import pytest

    from pkpd.trial import TrialResult

    stand_in_plots(monkeypatch)
    # a process started in the background ignores SIGINT (CI, nohup): give it Python's usual Ctrl-C
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    out = tmp_path / "out"
    tiny_result().save(out)
    before = _folder_bytes(out)

    def interrupted(self):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C in the middle of the save
        time.sleep(30)

    monkeypatch.setattr(TrialResult, "plot_platelets", interrupted)
    try:
        with pytest.raises(KeyboardInterrupt):
            tiny_result(seed=5).save(out)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
    finally:
        signal.signal(signal.SIGINT, previous)
    _assert_no_leftovers(tmp_path)
    assert _folder_bytes(out) == before


def test_two_saves_into_one_folder_at_once(tmp_path, monkeypatch):
    """Two threads save different results into one folder at the same moment:
    both succeed, the folder holds one of them whole, nothing is left over."""
    a, b = tiny_result().result, tiny_result(seed=5).result
    out = tmp_path / "out"
    real_replace = os.replace

    def slow_replace(*args, **kwargs):  # widen the window between looking at the target and moving it
        time.sleep(0.02)
        return real_replace(*args, **kwargs)

    monkeypatch.setattr(os, "replace", slow_replace)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # interleave the threads as finely as possible
    try:
        for _ in range(3):  # into a new folder, then twice over pkpd's own
            barrier = threading.Barrier(2)
            stand_in_plots(monkeypatch, wait=barrier.wait)
            errors = []

            def save(result):
                try:
                    result.save(out)
                except BaseException as err:  # noqa: BLE001 -- reported below
                    errors.append(err)

            threads = [threading.Thread(target=save, args=(r,)) for r in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert errors == [], errors
            _assert_no_leftovers(tmp_path)
            saved = ((out / "ledger.csv").read_text(), (out / "endpoints.csv").read_text())
            assert saved in [(r.ledger.to_csv(index=False), r.endpoints.to_csv(index=False)) for r in (a, b)]
            assert (out / MARKER).is_file()
    finally:
        sys.setswitchinterval(interval)


def test_second_save_replaces_the_first_whole(tmp_path, monkeypatch):
    stand_in_plots(monkeypatch)
    out = tmp_path / "out"
    tiny_result().save(out)
    first = _folder_bytes(out)
    (out / "stale.csv").write_text("left in pkpd's own folder: replaced with it\n")
    tiny_result(seed=5).save(out)
    second = _folder_bytes(out)
    assert set(second) == set(first) and MARKER in second
    assert second["ledger.csv"] != first["ledger.csv"] and "seed 5," in second["comparison.txt"].decode()
    _assert_no_leftovers(tmp_path)
