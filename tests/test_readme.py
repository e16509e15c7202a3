"""Every code block of README.md runs as written.

```python blocks run in order in one namespace (later blocks may use earlier
names), in an empty working folder, exactly as a user would paste them.

```bash blocks run line by line with bash in a working folder that holds a copy
of ``scenarios/`` (so relative paths resolve as from the repository root, and
the repository itself is never written to).  Commands joined by ``&&`` are
checked one by one; two kinds are skipped, each for a stated reason
(:data:`SKIPPED`); any other command that is neither skipped nor a ``pkpd``
command fails the test, so a new kind of shell line gets a decision here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: Shell commands not run, by prefix, and why.
SKIPPED = {
    "pip install": "installs pkpd: the tests run inside that installation already",
    "python -m pytest": "runs this test suite: the README test is part of it",
}


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks of ``language``, in order."""
    text = README.read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(rf"^```{language}[ \t]*\n(.*?)^```[ \t]*$", text, re.M | re.S)]


def shell_commands() -> list[str]:
    """Every command of the bash blocks (``a && b`` gives two), comments removed."""
    commands = []
    for block in blocks("bash"):
        for line in block.splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            commands += [part.strip() for part in line.split("&&") if part.strip()]
    return commands


def test_readme_has_python_and_bash_blocks():
    assert len(blocks("python")) >= 1 and len(shell_commands()) >= 3
    assert not re.search(r"^```(?!python|bash|\s*$)", README.read_text(encoding="utf-8"), re.M), (
        "a code block in a language this test does not run")


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__readme__"}
    for i, code in enumerate(blocks("python"), 1):
        exec(compile(code, f"README.md python block {i}", "exec"), namespace)
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a README block wrote into the working folder"
    # the first session's fit ran on the shipped data and returned a posterior
    assert "idata" in namespace and namespace["idata"].posterior.sizes["chain"] >= 1


@pytest.mark.parametrize("command", [c for c in shell_commands()
                                     if not any(c.startswith(p) for p in SKIPPED)])
def test_readme_shell_commands_run_as_written(command, tmp_path):
    assert command.split()[0] == "pkpd", f"no rule for running {command!r}: run it here or add it to SKIPPED"
    shutil.copytree(ROOT / "scenarios", tmp_path / "scenarios")
    env = {**os.environ, "MPLBACKEND": "Agg", "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stderr}"
    assert "Traceback" not in done.stderr
    if command.startswith("pkpd run"):
        wrote = re.search(r"wrote results to (\S+)", done.stdout)
        assert wrote, done.stdout[-500:]
        out = Path(wrote.group(1))
        assert out.is_relative_to(tmp_path) and (out / "endpoints.csv").is_file()
        if "--out" in command:
            assert out == tmp_path / command.split("--out", 1)[1].split()[0]
    if command.startswith("pkpd check"):
        assert "valid" in done.stdout


def test_readme_skips_only_the_stated_commands():
    skipped = [c for c in shell_commands() if any(c.startswith(p) for p in SKIPPED)]
    assert skipped, "SKIPPED names commands the README no longer has: drop them"
    assert all(c.split()[0] in ("pip", "python") for c in skipped)
