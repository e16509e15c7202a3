"""Benchmark: ``import pkpd`` and a phase III trial in a fresh process, import included.

Each command runs in a new Python process (wall time of the whole process,
start-up and exit included), best of ``--repeat`` runs: the minimum is the
figure least disturbed by other load on a shared machine.

* floor: ``import numpy, pandas``, what any pandas-based tool pays;
* ``import pkpd``: should stay near the bare interpreter, since every
  submodule, numba, matplotlib, scipy.stats and xarray load on first use;
* phase III: ``scenarios/itp_phase3.toml`` as ``pkpd run`` simulates it
  (the file's seed and replicates, 424 patients, 10 weeks) with the
  comparison table it prints, and ``pkpd run`` itself, which also writes the
  CSV tables and the three PNG figures (and so imports matplotlib).

The numba kernels are cached on disk (``cache=True``); one untimed run first
fills the cache if it is cold, so the timed runs load machine code and do not
compile.  The processes run with Python's bytecode cache on, as for an
installed package (pip writes the ``.pyc`` files at install); where
``PYTHONDONTWRITEBYTECODE`` is set (every import then compiles pkpd's source
again, ~0.3 s) the phase III run is also timed that way and printed apart.
Target: the phase III simulation under 2 s.

    python benchmarks/bench_import.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "itp_phase3.toml"
TARGET_S = 2.0

FLOOR = "import numpy, pandas"
IMPORT = "import pkpd"
PHASE3 = f"import pkpd; print(pkpd.load_scenario({str(SCENARIO)!r}).run(progress=False).comparison())"


#: The children's environment: this one with the bytecode cache allowed.
CACHED = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _seconds(argv: list[str], env: dict | None = None) -> float:
    """Wall time (s) of one fresh process running ``argv``; raises if it fails."""
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
                   env=CACHED if env is None else env)
    return time.perf_counter() - start


def _best(argv: list[str], repeat: int, env: dict | None = None) -> float:
    return min(_seconds(argv, env) for _ in range(repeat))


def _cached_kernels() -> int:
    """Numba cache index files of pkpd's kernels (numba's default location, or NUMBA_CACHE_DIR)."""
    where = Path(os.environ["NUMBA_CACHE_DIR"]) if os.environ.get("NUMBA_CACHE_DIR") else ROOT / "pkpd"
    return sum(1 for _ in where.rglob("*.nbi"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7, help="fresh processes per command; the best is reported")
    args = ap.parse_args(argv)
    py = sys.executable
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    print(f"cores: {cores}; load average at start (1, 5, 15 min): {load}; python {sys.version.split()[0]}")

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out")
        cli = [py, "-m", "pkpd.cli", "run", str(SCENARIO), "--out", out, "--no-progress"]
        before = _cached_kernels()
        warm_up = _seconds([py, "-c", PHASE3])
        print(f"numba cache: {before} kernel index files before the warm-up run ({warm_up:.2f} s), "
              f"{_cached_kernels()} after; the timed runs below are warm")
        _seconds(cli)  # matplotlib's font cache too
        floor = _best([py, "-c", FLOOR], args.repeat)
        rows = [("python -c 'import numpy, pandas' (floor)", floor),
                ("python -c 'import pkpd'", _best([py, "-c", IMPORT], args.repeat)),
                ("phase III simulation + comparison, import included", _best([py, "-c", PHASE3], args.repeat)),
                ("pkpd run scenarios/itp_phase3.toml (also writes CSV + PNG)", _best(cli, args.repeat))]
        if "PYTHONDONTWRITEBYTECODE" in os.environ:
            rows.append(("phase III as above, bytecode cache off (PYTHONDONTWRITEBYTECODE)",
                         _best([py, "-c", PHASE3], args.repeat, dict(os.environ))))
    print(f"best of {args.repeat} fresh processes (wall s, and x the floor):")
    for name, s in rows:
        print(f"  {name:<62} {s:6.2f} s  {s / floor:5.2f}x")
    phase3 = rows[2][1]
    ok = phase3 < TARGET_S
    print(f"target: phase III in a fresh process under {TARGET_S:g} s -> {'met' if ok else 'NOT met'} ({phase3:.2f} s)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
