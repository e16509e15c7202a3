"""What the fit benchmarks share: each fit runs in a fresh Python process, with
the user's compilation caches (``warm``) or empty temporary ones (``cold``).

The benchmark script re-runs itself with ``--child`` plus its own arguments; the
child prints one line ``RESULT {json}`` with its measurements.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile


def machine_line() -> str:
    """CPUs, load at start and Python version: printed with every figure."""
    return (f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} (1 min) at start; "
            f"Python {sys.version.split()[0]}")


def cache_modes(mode: str):
    """Yield ``(label, env)`` for ``mode``: "warm" (the user's PyTensor / numba
    caches), "cold" (empty temporary caches: a machine's first fit) or "both"
    (cold, then warm on the caches the cold run filled)."""
    if mode == "warm":
        yield "warm", dict(os.environ)
        return
    with tempfile.TemporaryDirectory(prefix="pkpd_bench_cache_") as cache:
        env = dict(os.environ, PYTENSOR_FLAGS=f"base_compiledir={cache}", NUMBA_CACHE_DIR=f"{cache}/numba_cache")
        yield "cold", env
        if mode == "both":
            yield "warm", env


def run_child(script: str, label: str, child_args: list[str], env: dict) -> tuple[dict, str]:
    """Run ``script --child *child_args`` in a fresh process; returns its RESULT
    dict and its stderr.  Exits with the child's output if it printed no RESULT."""
    print(f"[{label}] running the fit in a fresh process...", flush=True)
    proc = subprocess.run([sys.executable, os.path.abspath(script), "--child", *child_args], env=env,
                          capture_output=True, text=True)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("RESULT ")), None)
    if line is None:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"[{label}] the benchmark child failed (exit {proc.returncode})")
    return json.loads(line[len("RESULT "):]), proc.stderr


DENSITIES = ("compiled", "pytensor")


def densities(choice: str) -> tuple:
    """The log densities to time: pkpd's compiled one, the PyTensor graph (the baseline) or both."""
    return DENSITIES if choice == "both" else (choice,)


def print_ratios(results: dict, key: str = "fit_total_s") -> None:
    """For each pair of runs that differ only in the density (labels "... compiled" /
    "... pytensor"), print the baseline's ``key`` over ours."""
    for label, ours in results.items():
        if label.endswith(" compiled"):
            base = results.get(label[: -len("compiled")] + "pytensor")
            if base is not None:
                print(f"[{label[: -len(' compiled')]}] PyTensor graph / compiled density, {key}: "
                      f"{base[key]:.1f} s / {ours[key]:.1f} s = {base[key] / ours[key]:.1f}x")
