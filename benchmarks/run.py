"""Benchmark lagrangeprop against HIPS autograd, PyTorch (CPU, float64), hand-written numpy and the
compiled peers JAX (jit), CasADi (SX) and OpenMDAO (the ``[bench]`` extra; rows only where natural).

Every program is compiled once and then timed the way a user calls it: ``prog.solve(**inputs)``
(forward + multipliers, the "grad" column) and ``prog.evaluate(**inputs)`` (forward only, "fwd").
Times are medians of repeated runs (timeit-style: each sample loops ``number`` calls so that it
lasts >= 2 ms, garbage collection off), all in this one process. Programs marked ``memory`` also
run one gradient call per system in a subprocess of its own and report the peak resident memory it
adds (``VmHWM`` after a reset).

Usage::

    python benchmarks/run.py                  # everything (several minutes)
    python benchmarks/run.py --quick          # smoke run, small sizes, < 1 minute
    python benchmarks/run.py --only chain     # programs whose name contains "chain"
    python benchmarks/run.py --systems lagrangeprop,numpy

The timing, rounds, subprocess isolation, table and JSON are ``harness.py``; the programs, one
module each with every system's implementation, are ``cases/``. This file is the command line.

Columns: ``grad``/``fwd`` times, ``grad/fwd``, ``lp/sys`` = lagrangeprop's grad time divided by
this system's (< 1: lagrangeprop is faster), ``cold`` = building it (trace, compile, jit, setup) + the
first gradient call (in a fresh process for ``memory`` programs), ``peak MB`` and ``err`` = max relative difference of
this system's gradient from the hand-written numpy one (or from lagrangeprop's when there is none).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import harness  # noqa: E402
from cases import CASES, SINGLE  # noqa: E402

SYSTEMS = ("lagrangeprop", "autograd", "torch", "numpy", "jax", "jax-unrolled", "casadi", "openmdao", "floor",
           "chord-splu")


def parser() -> argparse.ArgumentParser:
    """The command line (``--child`` and the options after it are the harness's own)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, short timing budget")
    ap.add_argument("--only", action="append", default=[], help="run programs whose name contains this")
    ap.add_argument("--skip", action="append", default=[], help="leave out programs named exactly this")
    ap.add_argument("--rounds", type=int, default=1,
                    help="measure every system this many times, interleaved, and report the medians")
    ap.add_argument("--systems", default=",".join(SYSTEMS))
    ap.add_argument("--budget", type=float, default=None, help="seconds per timing (default 1, quick 0.05)")
    ap.add_argument("--child", nargs=2, metavar=("PROGRAM", "SYSTEM"), help=argparse.SUPPRESS)
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per subprocess measurement (default 900, quick 60)")
    ap.add_argument("--grad-out", help=argparse.SUPPRESS)
    ap.add_argument("--peak-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="also write the results to this file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the selected programs on the selected systems and print the table."""
    args = parser().parse_args(argv)
    budget = args.budget if args.budget is not None else (0.05 if args.quick else 1.0)
    timeout = args.timeout if args.timeout is not None else (60.0 if args.quick else 900.0)

    if args.child:   # one measurement in a process of its own (harness.run_child)
        name, system = args.child
        res = harness.run_one(CASES[name][0], system, budget, memory=True, single=name in SINGLE,
                              grad_path=args.grad_out, timings=not args.peak_only)
        print(json.dumps(res, default=float))
        return 0

    systems = [s for s in args.systems.split(",") if s]
    names = [n for n, (_, _, quick) in CASES.items()
             if (quick or not args.quick) and (not args.only or any(o in n for o in args.only))
             and n not in args.skip]
    rows, results = [], {}
    for name in names:
        build, memory, _ = CASES[name]
        results[name] = harness.run_program(name, build, systems, rounds=args.rounds, budget=budget,
                                            timeout=timeout, memory=memory, single=name in SINGLE)
        rows.extend(harness.table_rows(name, results[name]))
    harness.print_table(rows)
    harness.print_compile_times(results)
    if args.json:
        harness.write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
