"""How close a platelet run comes to the machine's arithmetic limit.

The limit is the machine's measured dgemm rate (numpy's BLAS on every core,
a square float64 matrix product): the fastest dense float64 arithmetic it
sustains.  The work is counted, not timed: a small run is recorded (the operation plan
each kernel call executes, times its subjects) and each operation is priced at the
floating-point operations of the kernel's loops in ``pkpd.pd._run_plan``
(multiply-add = 2; a division, ``exp`` or ``pow`` = 1, which flatters us,
since those cost 10-40 cycles).  The fraction is then

    rate (subject-days/s) x flops per subject-day / dgemm flops per s.

Used by the other benchmark scripts; ``python benchmarks/hardware.py`` prints
the dgemm rate alone.
"""

from __future__ import annotations

import inspect
import time

import numpy as np

import pkpd.pd as pd_module


def dgemm_flops_per_s(n: int = 2048, repeats: int = 3) -> float:
    """Best of ``repeats`` float64 products of two n x n matrices, in flop/s (2 n^3 each)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n)), rng.standard_normal((n, n))
    a @ b  # BLAS threads start
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n**3 / best


def step_flops(n_chain: int, m: int, n_pk: int, sweeps: float, hill_whole: bool) -> float:
    """Flops of one OP_STEP of the platelet kernel for one subject (linear PK);
    ``sweeps``: the fixed-point sweeps the step took (feedback on; 0 when off)."""
    conc = m * 2 * n_pk                     # node concentrations from the PK amounts
    effect = m * (4 if hill_whole else 5)   # Emax: a division, an add, a multiply (+ pow)
    inputs = 2 + m * 2                      # production exp, input = production (1 + E)
    error = 4 * m * 2 + 8                   # four Legendre coefficients and the estimate
    chain = n_chain * (n_chain + m) * 2     # the propagator times state and input
    pk = n_pk * n_pk * 2                    # PK amounts to the step's end
    feedback = 0
    if sweeps:
        feedback = m * n_chain * 2 + m * 3 + sweeps * m * (m * 2 + 4)
    return conc + effect + inputs + error + chain + pk + feedback


def kernel_flops(work) -> float:
    """Flops of every platelet-kernel call that ``work()`` makes, summed over
    the subjects of each call (refinement runs of a few subjects included),
    counted from the operations the kernel executes."""
    kernel = pd_module._run_plan
    names = list(inspect.signature(kernel.py_func).parameters)
    total = [0.0]

    def record(*args):
        a = dict(zip(names, args))
        ops = np.asarray(a["ops"])
        n_chain = a["x"].shape[1]
        n_subjects = a["x"].shape[0] - int(np.count_nonzero(a["skip"]))  # skipped subjects run in another call
        m, n_pk = a["pk_nodes"].shape[2], a["a_pk"].shape[1]
        hill_whole = bool((a["hill"] == np.round(a["hill"])).all())
        out = kernel(*args)
        steps = int((ops == pd_module.OP_STEP).sum())
        # the sweeps the kernel took (it stops each step's sweeps once they converge), per step
        sweeps = a["sweeps_done"].sum() / (n_subjects * steps) if a["sweeps"] and steps and n_subjects else 0.0
        per_subject = (steps * step_flops(n_chain, m, n_pk, sweeps, hill_whole)
                       + int((ops == pd_module.OP_DENSE).sum()) * 2 * (n_chain + m + n_pk)
                       + int((ops == pd_module.OP_DOSE).sum()))
        total[0] += n_subjects * per_subject
        return out

    pd_module._run_plan = record
    try:
        work()
    finally:
        pd_module._run_plan = kernel
    return total[0]


def print_fraction(rate: float, flops_per_unit: float, unit: str, peak: float | None = None) -> float:
    """Print and return the fraction of the dgemm rate that ``rate`` units/s at
    ``flops_per_unit`` flops each reaches."""
    peak = dgemm_flops_per_s() if peak is None else peak
    achieved = rate * flops_per_unit
    print(f"hardware          : {flops_per_unit:,.0f} flops per {unit} (counted from the kernel's plan) x "
          f"{rate:,.0f}/s = {achieved / 1e9:.2f} GFLOP/s; dgemm {peak / 1e9:.1f} GFLOP/s on this machine "
          f"-> {100 * achieved / peak:.2f} % of it")
    return achieved / peak


if __name__ == "__main__":
    print(f"dgemm (numpy BLAS, every core): {dgemm_flops_per_s() / 1e9:.1f} GFLOP/s")
