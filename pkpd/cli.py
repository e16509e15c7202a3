"""Command line: ``pkpd run scenarios/itp_phase3.toml [--out DIR] [--seed N] [--replicates R] [--workers N]``.

``run`` simulates a scenario file, prints its endpoint table beside the
published numbers the file cites, writes CSV tables, NONMEM records and PNG
plots to an output folder and prints that folder's path.  ``check`` only
validates a scenario file.  The output folder follows :mod:`pkpd.output`: a
new or empty folder, or an earlier pkpd result, never a user's file or folder.

Every error the user can fix -- bad arguments, a bad scenario file, an output
path pkpd may not write, a fault while writing (disk full) -- ends with one
line ``pkpd: error: ...`` on stderr and exit code 2; Ctrl-C ends with exit
code 130.  This module imports only the simulation stack (no pymc / pytensor /
arviz).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pkpd  # for pkpd.forecast, loaded on first use (it imports ArviZ)

from .checks import PKPDInputError
from .distributed import check_workers
from .optimize import add_arguments as add_optimize_arguments, cli_optimize
from .output import check_target, default_folder
from .scenario import load_scenario

#: Exit code of every user-fixable error (argparse's convention).
EXIT_ERROR = 2
#: Exit code after Ctrl-C (128 + SIGINT, the shell's convention).
EXIT_INTERRUPTED = 130


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors are one line (no usage block) and exit 2."""

    def error(self, message):
        _print_error(f"{message} (see {self.prog} --help)")
        raise SystemExit(EXIT_ERROR)


def _print_error(message: str) -> None:
    """``pkpd: error: message`` as one line on stderr."""
    print(f"pkpd: error: {' '.join(str(message).split())}", file=sys.stderr)


def _whole(minimum: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum} ({what}); got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum} ({what}); got {text!r}")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pkpd", description="PK/PD toolkit: run virtual trial scenarios.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="simulate a scenario file and write its results")
    run.add_argument("scenario", help="path to a scenario .toml file, e.g. scenarios/itp_phase3.toml")
    run.add_argument("--out", help="output folder: new, empty or an earlier pkpd result "
                                   "(default: pkpd-results/<scenario name>)")
    run.add_argument("--seed", type=_whole(0, "random seed"), help="random seed (default: the file's)")
    run.add_argument("--replicates", type=_whole(1, "replicate trials"), help="replicate trials (default: the file's)")
    run.add_argument("--workers", default=None,
                     help="worker processes on this machine (e.g. 2) or a Dask scheduler address for the replicates "
                          "(default: one process; results are the same)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    check = sub.add_parser("check", help="validate a scenario file without running it")
    check.add_argument("scenario")
    add_optimize_arguments(sub.add_parser("optimize", help="search the titration rule of highest clinical utility "
                                                           "(pkpd.optimize_rule)"), _whole)
    fc = sub.add_parser("forecast", help="recommend one patient's next dose from a NONMEM-format CSV (pkpd.forecast)")
    fc.add_argument("patient", help="NONMEM-format CSV: doses (EVID 1, AMT mg), platelet counts (CMT 3, 10^9/L)")
    fc.add_argument("--seed", type=_whole(0, "random seed"), default=1, help="random seed (default 1)")
    fc.add_argument("--id", help="the subject to forecast when the file holds several")
    fc.add_argument("--visit-days", default="7", help="visit day(s) after the last count, e.g. 7 or 7,14 (default 7)")
    fc.add_argument("--not-enrolled", action="store_true", help="the patient was not selected on a screening count")
    fc.add_argument("--plot", help="also save the forecast figure to this PNG path")
    fc.add_argument("--choose-visit", action="store_true", help="also recommend the next visit: the latest of "
                    "--visit-days up to which the dose keeps P(>400) and P(<30) <= 5%%")
    fc.add_argument("--population-draws", help="CSV of posterior draws of the population parameters (one row per "
                    "draw, columns named like the model's parameters: ka, cl, v, emax, ec50, mtt, ...), whose "
                    "uncertainty the forecast carries")
    return parser


def main(argv=None) -> int:
    """Entry point of the ``pkpd`` console script; returns the exit code."""
    try:
        args = _parser().parse_args(argv)
        return _run(args)
    except (PKPDInputError, OSError) as err:
        _print_error(_describe(err))
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("pkpd: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except SystemExit as exc:  # argparse: --help exits 0, its errors were printed by _Parser.error
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR


def _run(args) -> int:
    if args.command == "optimize":
        return cli_optimize(args)
    if args.command == "forecast":
        return pkpd.forecast.cli_forecast(args)
    scenario = load_scenario(args.scenario)
    if args.command == "check":
        print(f"{args.scenario}: valid ({len(scenario.trial.arms)} arms, {scenario.trial.n_per_trial} patients per trial)")
        return 0
    if args.out is not None and not args.out.strip():
        raise PKPDInputError(f"--out is empty ({args.out!r}); give a folder path, e.g. --out results/run1.")
    out = Path(args.out) if args.out is not None else default_folder(scenario.name)
    check_target(out)  # before the simulation, not after it
    workers = int(args.workers) if args.workers is not None and args.workers.strip().isdigit() else args.workers
    check_workers(workers, "--workers")
    if args.replicates is not None:
        scenario.trial.check_size(args.replicates, field="--replicates")
    start = time.perf_counter()
    result = scenario.run(seed=args.seed, replicates=args.replicates, progress=not args.no_progress, workers=workers)
    saved = result.save(out)
    print(result.comparison())
    print(f"\nwrote results to {saved}  ({time.perf_counter() - start:.1f} s)")
    return 0


def _describe(err: Exception) -> str:
    if isinstance(err, OSError) and err.strerror:
        return err.strerror + (f": {str(err.filename)!r}" if err.filename is not None else "")
    return str(err) or type(err).__name__


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
