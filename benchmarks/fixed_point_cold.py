"""Fixed point z = tanh(W z + U x): lagrangeprop cold (a new x every call) versus warm (the same x
again: the block adjoint starts from the last multipliers), its forward alone, and autograd's
``fixed_point``.

Usage: ``OPENBLAS_NUM_THREADS=1 python benchmarks/fixed_point_cold.py 2000`` (or 20000). Prints
single-call medians over 400 inputs, the systems interleaved; every gradient is checked against
autograd's.
"""

from __future__ import annotations

import gc
import os
import sys
import time

import autograd
import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp, primitive
from autograd.misc.fixed_points import fixed_point

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cases import fixed_point as fp_case  # noqa: E402  (the benchmark's data and tolerance)

import lagrangeprop as lp  # noqa: E402


def main(n: int, samples: int = 400) -> dict[str, float]:
    W, U, x0 = fp_case.fp_data(n)
    WT = W.T.tocsr()
    prog = lp.Program(name=f"fixed_point_{n}")
    x = prog.input("x", shape=x0.shape)
    z = prog.variable("z", shape=(n,))
    prog.define(z, lp.tanh(lp.matmul(W, z) + U @ x))
    prog.output(0.5 * lp.sum(z * z), name="loss")
    prog.compile()

    @primitive
    def spmv(v):
        return W @ v
    defvjp(spmv, lambda ans, v: lambda g: WT @ g)

    def loss(xx):
        step = lambda xv: lambda zz: anp.tanh(spmv(zz) + anp.dot(U, xv))
        zz = fixed_point(step, xx, np.zeros(n), lambda a, b: anp.max(anp.abs(a - b)), fp_case.FP_TOL)
        return 0.5 * anp.sum(zz * zz)
    ag = autograd.grad(loss)

    def timed(key, fn, xx):
        t = time.perf_counter()
        out = fn(xx)
        res[key].append(time.perf_counter() - t)
        return out

    def solve(xx):
        return prog.solve(x=xx, tol=fp_case.FP_TOL).grad["x"]

    rng = np.random.default_rng(0)
    res: dict[str, list] = {"lp solve, new x (cold)": [], "lp solve, same x (warm)": [],
                            "lp evaluate (forward)": [], "autograd fixed_point grad": []}
    gc.disable()
    try:
        for _ in range(samples):
            xx = x0 + 0.3 * rng.standard_normal(x0.shape)
            g1 = timed("lp solve, new x (cold)", solve, xx)
            timed("lp evaluate (forward)", lambda v: prog.evaluate(x=v, tol=fp_case.FP_TOL), xx)
            g2 = timed("autograd fixed_point grad", ag, xx)
            timed("lp solve, same x (warm)", solve, xx)
            assert np.allclose(g1, g2, rtol=1e-7, atol=1e-10)
    finally:
        gc.enable()
    return {k: float(np.median(v)) for k, v in res.items()}


if __name__ == "__main__":
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    for key, t in main(size).items():
        print(f"n={size}  {key:28s} median {t * 1e6:9.1f} µs")
