"""What "never stale" costs: the per-call guard check of ``lp.grad`` on the benchmark programs.

``lp.grad(f)`` reuses its traced program only while everything ``f`` reads from outside its
arguments is unchanged (SPEC §2 "Never stale"; ``lagrangeprop/guards/``). This script times,
in one process, a warm ``lp.grad(f)(x)`` call and the guard's own check (``Guard.changed()``)
on the programs of ``run.py``, and prints the check as a share of the call:

    python benchmarks/guards.py            # medians, --rounds K to repeat interleaved

Numbers and containers are compared by identity (well under a microsecond each); captured arrays
bytewise against the program's copy, so the cost grows with the data a function captures (the
logistic program captures an 8 MB design matrix).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np
import scipy.special

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import lagrangeprop as lp  # noqa: E402
from lagrangeprop.guards import Guard  # noqa: E402
from cases.blog import blog_f  # noqa: E402
from cases.mlp import mlp_data, mlp_f  # noqa: E402
from harness import fmt_t, measure  # noqa: E402


def programs() -> dict:
    """name -> (f, positional args, argnum): the run.py programs, their data captured by closure."""
    out = {"blog": (blog_f(lp), (0.5,), 0)}
    t = np.linspace(-1.0, 1.0, 200)
    y = np.sin(2.0 * t)

    def taylor(c, a):
        u = t - a
        p, pw = c[0] + c[1] * u, u
        for k in range(2, 9):
            pw = pw * u
            p = p + c[k] * pw
        r = p - y
        return lp.mean(r * r)
    out["taylor"] = (taylor, (np.random.default_rng(2).standard_normal(9), 0.1), (0, 1))
    X, Y, params = mlp_data()
    mlp = mlp_f(lp, X, Y, lambda z: lp.logsumexp(z, axis=1, keepdims=True))
    out["mlp"] = (mlp, tuple(params[k] for k in ("W1", "b1", "W2", "b2", "W3", "b3")), (0, 1, 2, 3, 4, 5))
    rng = np.random.default_rng(1)
    Xl = rng.standard_normal((10_000, 100))
    yl = (rng.random(10_000) < scipy.special.expit(Xl @ rng.standard_normal(100) * 0.3)).astype(float)

    def logistic(w):
        z = Xl @ w
        return lp.mean(lp.logaddexp(0.0, z) - yl * z)
    out["logistic"] = (logistic, (0.01 * rng.standard_normal(100),), 0)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=1, help="measure every program K times, interleaved")
    ap.add_argument("--budget", type=float, default=0.5, help="seconds per measurement")
    args = ap.parse_args(argv)
    progs = programs()
    samples: dict = {name: ([], []) for name in progs}
    captured = {}
    for _ in range(args.rounds):
        for name, (f, xs, argnum) in progs.items():
            g = lp.grad(f, argnum=argnum)
            g(*xs)                                        # trace once
            prog = lp.trace(f, *xs)
            guard = Guard(f, prog._sources)
            assert guard.changed() is None, name
            captured[name] = sum(v.nbytes for v in prog._sources.values())
            samples[name][0].append(measure(lambda g=g, xs=xs: g(*xs), args.budget))
            samples[name][1].append(measure(guard.changed, args.budget))
    print(f"{'program':<10} {'captured':>10} {'lp.grad call':>13} {'guard check':>12} {'share':>7}")
    for name, (call, check) in samples.items():
        c, k = statistics.median(call), statistics.median(check)
        print(f"{name:<10} {captured[name] / 1e6:>8.2f} MB {fmt_t(c):>13} {fmt_t(k):>12} {k / c:>7.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
