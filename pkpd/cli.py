"""Command line: ``pkpd run scenarios/itp_phase3.toml [--out DIR] [--seed N] [--replicates R]``.

``run`` simulates a scenario file, prints its endpoint table beside the
published numbers the file cites, writes CSV tables, NONMEM records and PNG
plots to an output folder and prints that folder's path.  ``check`` only
validates a scenario file.  Bad input ends with a one-line error (exit code 2).
This module imports only the simulation stack (no pymc / pytensor / arviz).
"""

from __future__ import annotations

import argparse
import sys
import time

from .checks import PKPDInputError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pkpd", description="PK/PD toolkit: run virtual trial scenarios.")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="simulate a scenario file and write its results")
    run.add_argument("scenario", help="path to a scenario .toml file, e.g. scenarios/itp_phase3.toml")
    run.add_argument("--out", help="output folder (default: pkpd-results/<scenario name>)")
    run.add_argument("--seed", type=int, help="random seed (default: the file's)")
    run.add_argument("--replicates", type=int, help="replicate trials (default: the file's)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    check = sub.add_parser("check", help="validate a scenario file without running it")
    check.add_argument("scenario")
    return parser


def main(argv=None) -> int:
    """Entry point of the ``pkpd`` console script; returns the exit code."""
    args = _parser().parse_args(argv)
    from .scenario import load_scenario

    try:
        scenario = load_scenario(args.scenario)
        if args.command == "check":
            print(f"{args.scenario}: valid ({len(scenario.trial.arms)} arms, {scenario.trial.n_per_trial} patients per trial)")
            return 0
        start = time.perf_counter()
        result = scenario.run(seed=args.seed, replicates=args.replicates, progress=not args.no_progress)
        out = result.save(args.out)
    except PKPDInputError as err:
        print(f"pkpd: error: {err}", file=sys.stderr)
        return 2
    print(result.comparison())
    print(f"\nwrote results to {out}  ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
