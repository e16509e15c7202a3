"""Where work runs: in this process, on a local Dask cluster, or on a given one.

Every parallel entry point of pkpd (``Trial.run(workers=)``,
``pkpd.optimize_rule(workers=)``, ``pkpd.sweep(workers=)``) takes one
``workers`` value:

* ``None`` or ``1``: here, one task after the other (no Dask needed);
* ``N >= 2``: a :class:`distributed.LocalCluster` of N worker processes with
  one thread each, started for the call and closed after it;
* a :class:`distributed.Client`: its cluster (kept open; e.g. one made by
  :func:`local_client`, or from dask-jobqueue / dask-kubernetes);
* a scheduler address such as ``"tcp://10.0.0.5:8786"``: a client is
  connected for the call.

Results never depend on where a task ran: every task carries its own seed,
derived from its identity (a replicate, a draw, a candidate), never from the
worker, and tasks return in the order they were given.  Workers get one
thread each for numba, OpenMP, MKL and OpenBLAS (:data:`WORKER_ENV`; numba's
is enforced again in each task), so N workers use N cores; a cluster made
elsewhere should set the same variables in its workers' environment.  Small tasks are grouped so that each one runs
for at least about :data:`MIN_TASK_SECONDS` (scheduling costs a few ms per
task).

Dask is optional (``pip install "pkpd[dask]"``); it is loaded only when
``workers`` asks for it.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import re
import sys
from contextlib import contextmanager

import numba
import numpy as np
from tqdm import tqdm

from .checks import PKPDInputError

#: Environment of worker processes pkpd starts: one thread per worker for each threaded library.
WORKER_ENV = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}

#: Shortest wall time a task should take (s): grouped tasks amortise the
#: scheduler's few milliseconds per task to well below 1 %.
MIN_TASK_SECONDS = 0.5

#: Simulation cost of one patient-day of a trial, s (about 1.3 us measured on
#: one core with one numba thread for the hetrombopag ITP model, phase III
#: design; used only to size tasks).
PATIENT_DAY_SECONDS = 1.5e-6

_ADDRESS = re.compile(r"^([a-z]+://\S+|[\w.\-]+:\d+)$")


def _dask_distributed():
    """The ``distributed`` package, or an error saying how to install it."""
    try:
        return importlib.import_module("distributed")
    except ImportError:
        raise PKPDInputError(
            "workers= other than None or 1 needs Dask: pip install \"pkpd[dask]\" (dask[distributed]); "
            "or run in one process with workers=None."
        ) from None


def check_workers(workers, field: str = "workers"):
    """``workers`` checked: None (serial; also for 1), an int >= 2, a
    scheduler address text or a :class:`distributed.Client`; anything else is a
    :class:`~pkpd.checks.PKPDInputError` naming ``field``."""
    fix = (f"Give {field}=None or 1 (this process), a number of local worker processes (e.g. {field}=2), "
           "a distributed.Client or a scheduler address such as 'tcp://127.0.0.1:8786'.")
    if workers is None:
        return None
    if isinstance(workers, (bool, np.bool_)):
        raise PKPDInputError(f"{field} must be a number of workers or a Dask client; got {workers!r}. {fix}")
    if isinstance(workers, (int, np.integer)):
        if workers < 1:
            raise PKPDInputError(f"{field} must be >= 1; got {workers!r}. {fix}")
        return None if workers == 1 else int(workers)
    if isinstance(workers, str):
        if not _ADDRESS.match(workers.strip()):
            raise PKPDInputError(f"{field} {workers!r} is not a scheduler address. {fix}")
        return workers.strip()
    if type(workers).__module__.split(".")[0] == "distributed" and isinstance(workers, _dask_distributed().Client):
        return workers
    raise PKPDInputError(f"{field} must be None, a whole number, a scheduler address or a distributed.Client; "
                         f"got {type(workers).__name__} {workers!r}. {fix}")


@contextmanager
def client_for(workers, field: str = "workers"):
    """A :class:`distributed.Client` for ``workers`` (None: serial) for the
    duration of a ``with`` block; a cluster or client made here is closed
    after it, a client given is left open."""
    w = check_workers(workers, field)
    if w is None:
        yield None
        return
    if not isinstance(w, (int, str)):
        yield w
        return
    d = _dask_distributed()
    if isinstance(w, str):
        client = d.Client(w)
        try:
            yield client
        finally:
            client.close()
        return
    cluster = _local_cluster(d, w)
    try:
        client = d.Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def _local_cluster(d, workers: int):
    """A LocalCluster of ``workers`` one-thread processes with :data:`WORKER_ENV`
    (its logs silenced below CRITICAL: a task's error reaches the caller as
    the task's exception, and closing would log heartbeats to a closed scheduler).

    The variables go in before each worker process starts (Dask's
    ``pre-spawn-environ``): a spawned worker imports the user's script, and
    with it numba and numpy, before the nanny's ``env`` would apply.  Dask
    sets them in this process's environment for the spawn; they are put back
    right after."""
    dask = importlib.import_module("dask")
    saved = {k: os.environ.get(k) for k in WORKER_ENV}
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENV.items()}):
            return d.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=logging.CRITICAL, env=WORKER_ENV)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def local_client(n_workers: int = 2):
    """A context manager giving a client of a local cluster of ``n_workers``
    processes (one thread each), to reuse over several calls::

        with pkpd.distributed.local_client(2) as client:
            a = trial.run(seed=1, replicates=40, workers=client)
            b = pkpd.sweep(scenario, grid, seed=1, workers=client)
    """
    from_int = check_workers(n_workers, "n_workers")
    if not isinstance(from_int, int):
        raise PKPDInputError(f"n_workers must be a whole number >= 2; got {n_workers!r}.")
    return client_for(from_int, "n_workers")


def n_workers(client) -> int:
    """Worker threads of ``client`` (1 for serial)."""
    if client is None:
        return 1
    return max(1, sum(client.nthreads().values()))


def group_size(n_tasks: int, seconds_per_task: float, workers: int, most: int | None = None) -> int:
    """Tasks per group: enough for :data:`MIN_TASK_SECONDS` each, and no more
    than needed for about 4 groups per worker (load balance); at most
    ``most``.  Grouping never changes results (tasks are independent)."""
    if n_tasks <= 0:
        return 1
    enough = math.ceil(MIN_TASK_SECONDS / max(seconds_per_task, 1e-9))
    balance = math.ceil(n_tasks / (4 * max(workers, 1)))
    size = max(enough, balance, 1)
    return int(min(size, most if most is not None else size, n_tasks))


def _limit_threads() -> None:
    """On a worker: at most NUMBA_NUM_THREADS numba threads for this task.

    The variable alone is not enough: a worker process started by
    multiprocessing's spawn imports the user's script (and with it numba)
    before the nanny sets the worker's environment, so numba may have
    started with one thread per core."""
    wanted = os.environ.get("NUMBA_NUM_THREADS", "")
    if wanted.isdigit() and 1 <= int(wanted) < numba.get_num_threads():
        numba.set_num_threads(int(wanted))


def _apply_group(fn, group):
    _limit_threads()
    return [fn(task) for task in group]


def run_tasks(fn, tasks, client=None, group: int = 1, bar=None) -> list:
    """``[fn(t) for t in tasks]``, in order: here (``client`` None) or on
    ``client``'s workers in groups of ``group`` tasks.  ``bar`` (a tqdm) is
    advanced by one per task done.  ``fn`` and the tasks must pickle
    (module-level functions, data)."""
    tasks = list(tasks)
    if client is None:
        out = []
        for task in tasks:
            out.append(fn(task))
            if bar is not None:
                bar.update(1)
        return out
    d = _dask_distributed()
    groups = [tasks[i:i + group] for i in range(0, len(tasks), group)]
    futures = client.map(_apply_group, [fn] * len(groups), groups, pure=False)
    sizes = {f.key: len(g) for f, g in zip(futures, groups)}
    try:
        for done in d.as_completed(futures):
            if bar is not None:
                bar.update(sizes[done.key])
        parts = client.gather(futures)
    finally:
        client.cancel(futures)
    return [r for part in parts for r in part]


def map_tasks(fn, tasks, workers=None, seconds_per_task: float | None = None, progress: bool = True,
              desc: str = "tasks", unit: str = "task") -> list:
    """``[fn(t) for t in tasks]`` with ``workers`` (see the module docs),
    results in task order, a tqdm bar on stderr unless ``progress`` is
    False.  ``seconds_per_task`` (an estimate) groups small tasks."""
    tasks = list(tasks)
    bar = tqdm(total=len(tasks), desc=desc, unit=unit, file=sys.stderr, disable=not progress, leave=False)
    try:
        with client_for(workers) as client:
            size = 1 if seconds_per_task is None else group_size(len(tasks), seconds_per_task, n_workers(client))
            return run_tasks(fn, tasks, client, size, bar)
    finally:
        bar.close()
