"""The ``pkpd`` command: every error is one line ``pkpd: error: ...`` with exit
code 2 -- bad arguments, missing or unreadable files, an output path pkpd may
not write, a scenario name that would be a path."""

from __future__ import annotations

from pathlib import Path

from bad_inputs import CliCase
from bad_inputs.output import tiny_file, user_folder


def _run(*extra, name="tiny"):
    """``pkpd run <tiny scenario> *extra``, the scenario written to tmp_path."""
    return lambda tmp_path: ["run", str(tiny_file(tmp_path, name)), "--no-progress", *extra]


def _with(make, *args):
    """``pkpd *args`` where "{}" is replaced by ``make(tmp_path)``, after writing the scenario."""
    def argv(tmp_path):
        path = str(make(tmp_path))
        tiny_file(tmp_path)
        return [a.replace("{}", path) for a in args]
    return argv


def _file(tmp_path: Path, name: str = "results.csv") -> Path:
    (tmp_path / name).write_text("a,b\n1,2\n")
    return tmp_path / name


def _not_utf8(tmp_path: Path) -> Path:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[scenario]\nname = "caf\xe9"\n'.encode("latin-1"))
    return path


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "scenarios").mkdir()
    return tmp_path / "scenarios"


def _default_out_taken(tmp_path: Path):
    """A user's own folder where the default output folder would go (the CLI case runs in tmp_path)."""
    (tmp_path / "pkpd-results").mkdir()
    user_folder(tmp_path / "pkpd-results", "tiny")
    return _run()(tmp_path)


CASES = [
    CliCase("cli-seed-negative", _run("--seed", "-1"), ("--seed", "-1")),
    CliCase("cli-seed-not-a-number", _run("--seed", "abc"), ("--seed", "abc")),
    CliCase("cli-seed-fraction", _run("--seed", "2.5"), ("--seed", "2.5")),
    CliCase("cli-seed-without-value", _run("--seed"), ("--seed", "expected one argument")),
    CliCase("cli-replicates-zero", _run("--replicates", "0"), ("--replicates", "0")),
    CliCase("cli-replicates-negative", _run("--replicates", "-3"), ("--replicates", "-3")),
    CliCase("cli-replicates-fraction", _run("--replicates", "1.5"), ("--replicates", "1.5")),
    CliCase("cli-unknown-option", _run("--bogus"), ("--bogus",)),
    CliCase("cli-unknown-command", ["frobnicate"], ("frobnicate",)),
    CliCase("cli-no-command", [], ("command",)),
    CliCase("cli-run-without-scenario", ["run"], ("scenario",)),
    CliCase("cli-missing-file", ["run", "nope.toml"], ("nope.toml", "not found")),
    CliCase("cli-check-missing-file", ["check", "nope.toml"], ("nope.toml", "not found")),
    CliCase("cli-folder-as-scenario", _with(_folder, "run", "{}"), ("scenarios", "is a folder")),
    CliCase("cli-check-folder-as-scenario", _with(_folder, "check", "{}"), ("scenarios", "is a folder")),
    CliCase("cli-scenario-not-utf8", _with(_not_utf8, "check", "{}"), ("latin1.toml", "UTF-8")),
    CliCase("cli-out-is-existing-file", lambda p: _run("--out", str(_file(p)))(p), ("results.csv", "existing file")),
    CliCase("cli-out-is-user-folder", lambda p: _run("--out", str(user_folder(p)))(p), ("mywork", ".pkpd-output")),
    CliCase("cli-out-under-a-file", lambda p: _run("--out", str(_file(p, "notes.txt") / "out"))(p),
            ("notes.txt", "not a folder")),
    CliCase("cli-out-empty", _run("--out", ""), ("--out", "empty")),
    CliCase("cli-out-unwritable", _run("--out", "/sys/pkpd-cli-test/out"), ("/sys/pkpd-cli-test/out",)),
    CliCase("cli-default-out-is-user-folder", _default_out_taken, ("pkpd-results/tiny", ".pkpd-output")),
    CliCase("cli-check-name-parent-dirs", lambda p: ["check", str(tiny_file(p, "../../x"))], ("scenario.name", "'../../x'")),
    CliCase("cli-run-name-parent-dirs", _run(name="../../x"), ("scenario.name", "'../../x'")),
    CliCase("cli-check-name-absolute", lambda p: ["check", str(tiny_file(p, "/tmp/x"))], ("scenario.name", "'/tmp/x'")),
]
