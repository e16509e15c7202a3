"""Time the headline benchmarks at two git revisions in one run, side by side.

For a change that must not slow pkpd down: each revision is checked out into
a temporary git worktree and every benchmark runs there in a fresh process
(``PYTHONPATH`` set to that tree, so its own ``pkpd`` is imported), the two
revisions alternating so that a busy machine slows both alike.  Each tree
compiles its own numba kernels on its first run, which is not timed: every
figure here is warm (kernels cached on disk), the state of any later run.

Benchmarks (the figures the README quotes):

* population simulation, 10,000 subjects x 56 days, daily output
  (``bench_pd.py``; best of 3, seconds);
* the phase III scenario end to end in a fresh process (``pkpd run
  scenarios/itp_phase3.toml``: 424 patients, 10 weeks; wall seconds incl. imports);
* the phase III design with 10,000 patients per arm to week 8
  (``bench_trial.py``, warm run, seconds);
* the theophylline fit, 4 chains x 1000 draws after 1000 tuning
  (``bench_fit_theoph.py``, ``pkpd.fit`` seconds incl. loading the compiled density);
* the 40-subject PK/PD fit, full model, 4 chains x 1000 draws after 500
  tuning (``bench_fit_pkpd.py --model full``, seconds incl. building the model).

    python benchmarks/compare_revisions.py --base REV [--head HEAD] [--repeats 2] [--skip WORD ...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(tree: Path, args: list[str]) -> tuple[float, str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    # a benchmark that misses its own target exits 1 but still prints its figures; the
    # figure's pattern not being found is what counts as a failure
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(args)} failed in {tree}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return wall, proc.stdout


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    if not match:
        raise RuntimeError(f"pattern {pattern!r} not in output:\n{text[-1500:]}")
    return float(match.group(1))


def _fit_seconds(text: str) -> float:
    """Fit time (s) from the RESULT lines a fit benchmark prints for its child process."""
    lines = [json.loads(line[len("RESULT "):]) for line in text.splitlines() if line.startswith("RESULT ")]
    if not lines:
        raise RuntimeError(f"no RESULT line in output:\n{text[-1500:]}")
    record = lines[-1]
    for key in ("fit_total_s",):
        if key in record:
            return float(record[key])
    raise RuntimeError(f"no fit time in {record}")


BENCHMARKS = {
    "population 10k x 56 d (s)": (["benchmarks/bench_pd.py", "--ode-subjects", "2"],
                                  lambda wall, out: _number(r"pkpd\s*:\s*([\d.]+) s wall", out)),
    "phase III scenario, fresh process (s)": (
        ["-c", "import sys, tempfile; from pkpd.cli import main; "
               "sys.exit(main(['run', 'scenarios/itp_phase3.toml', '--out', tempfile.mkdtemp() + '/r']))"],
        lambda wall, out: wall),
    "phase III 30k patients, warm (s)": (["benchmarks/bench_trial.py", "--baseline-patients", "1"],
                                         lambda wall, out: _number(r"warm run:\s*([\d.]+) s", out)),
    # the fit benchmarks' own child processes (one fit each, fresh process, the user's caches)
    "theophylline fit, warm (s)": (["benchmarks/bench_fit_theoph.py", "--child", "--density", "compiled"],
                                   lambda wall, out: _fit_seconds(out)),
    "PK/PD fit 40 subjects, warm (s)": (["benchmarks/bench_fit_pkpd.py", "--child", "--model", "full",
                                         "--density", "compiled"],
                                        lambda wall, out: _fit_seconds(out)),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", required=True, help="the revision before the change")
    ap.add_argument("--head", default="HEAD")
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per benchmark and revision (best is kept)")
    ap.add_argument("--skip", nargs="*", default=[], metavar="WORD",
                    help="leave out the benchmarks whose name contains WORD (e.g. --skip PK/PD)")
    args = ap.parse_args()
    names = [n for n in BENCHMARKS if not any(word in n for word in args.skip)]
    with tempfile.TemporaryDirectory() as tmp:
        trees = {}
        for label, rev in (("base", args.base), ("head", args.head)):
            tree = Path(tmp) / label
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), rev],
                           check=True, capture_output=True)
            trees[label] = tree
        try:
            print(f"base {args.base}, head {args.head}; cores {os.cpu_count()}; warm figures, best of {args.repeats}")
            for name in names:
                cmd, figure = BENCHMARKS[name]
                for tree in trees.values():  # untimed: compile this tree's kernels, fill its caches
                    _run(tree, cmd)
                best = {label: float("inf") for label in trees}
                for _ in range(args.repeats):
                    for label, tree in trees.items():
                        best[label] = min(best[label], figure(*_run(tree, cmd)))
                ratio = best["head"] / best["base"]
                print(f"{name:40s} base {best['base']:8.2f}   head {best['head']:8.2f}   head/base {ratio:5.2f}",
                      flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)


if __name__ == "__main__":
    main()
