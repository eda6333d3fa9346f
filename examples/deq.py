"""A deep-equilibrium layer z = tanh(W z + U x) with a sparse W: implicit vs unrolled gradients.

The fixed point is one cyclic block. lagrangeprop differentiates it by the implicit function
theorem (one adjoint solve with A_SS = I - diag(1 - z²) W, here a transposed Gauss–Seidel
iteration chosen by linear_solver="auto"), storing nothing per iteration. The reference is HIPS
autograd through the unrolled forward iteration (run to convergence), which tapes every step.
"""
import os
import sys
import time
import tracemalloc

import autograd.numpy as anp
import numpy as np
import scipy.sparse as sp
from autograd import grad
from autograd.extend import defvjp, primitive

import lagrangeprop as lp

QUICK = bool(os.environ.get("LAGRANGEPROP_QUICK"))
n, m, density = (1000, 20, 0.004) if QUICK else (10000, 50, 0.0004)
rng = np.random.default_rng(0)
nnz = int(density * n * n)
W = sp.csr_matrix((rng.standard_normal(nnz) * 0.6 / np.sqrt(n * density),   # spectral radius ~0.6
                   (rng.integers(0, n, nnz), rng.integers(0, n, nnz))), shape=(n, n))
U = rng.standard_normal((n, m)) / np.sqrt(m)
xv = rng.standard_normal(m)

prog = lp.Program(name="deq")
x = prog.input("x", shape=(m,)); z = prog.variable("z", shape=(n,))
prog.define(z, lp.tanh(W @ z + U @ x))
prog.output(lp.sum(z ** 2) / n, name="loss")


@primitive
def spmv(v):                    # the tape's own sparse product rule
    return W @ v


defvjp(spmv, lambda ans, v: lambda g: W.T @ g)


def unrolled(xx, steps):
    zz = anp.zeros(n)
    for _ in range(steps):
        zz = anp.tanh(spmv(zz) + anp.dot(U, xx))
    return anp.sum(zz ** 2) / n


def measure(f):
    tracemalloc.start()
    t0 = time.perf_counter()
    out = f()
    dt = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, dt, peak


prog.solve(x=xv)                                 # compile + warm up
sol, t_lp, mem_lp = measure(lambda: prog.solve(x=xv))
st = sol._states[id(sol.schedule.blocks[0])]
steps = 60                                        # contraction ~0.6: 60 steps reach ~1e-14
g_ag, t_ag, mem_ag = measure(lambda: grad(unrolled)(xv, steps))
rel = float(np.max(np.abs(sol.grad["x"] - g_ag)) / np.max(np.abs(g_ag)))
print(f"DEQ n = {n}, nnz(W) = {W.nnz}: forward {st.method} in {st.iterations} sweeps, "
      f"adjoint linear solver {st.linear}")
print(f"loss = {float(sol.output):.12f}; |dloss/dx| = {float(np.linalg.norm(sol.grad['x'])):.6e}")
print(f"lagrangeprop (implicit): {t_lp * 1e3:8.1f} ms, peak memory {mem_lp / 1e6:6.2f} MB")
print(f"autograd ({steps} unrolled steps): {t_ag * 1e3:8.1f} ms, peak memory {mem_ag / 1e6:6.2f} MB")
print(f"relative difference of the gradients: {rel:.1e}; kkt {sol.kkt()}")
ok = rel < 1e-8
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib not installed: no picture (pip install lagrangeprop[plot])")
else:
    ks = [2, 5, 10, 20, 30, 40]     # autograd through k unrolled steps vs the implicit gradient
    errs = [float(np.max(np.abs(grad(unrolled)(xv, k) - sol.grad["x"])) / np.max(np.abs(sol.grad["x"])))
            for k in ks]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax1.semilogy(ks, np.maximum(errs, 1e-17), "o-", label="autograd through k unrolled steps")
    ax1.axhline(max(rel, 1e-17), color="C1", ls="--", label=f"k = {steps}, the reference above ({rel:.0e})")
    ax1.set_xlabel("unrolled steps k"); ax1.set_ylabel("rel. difference from λ_x")
    ax1.set_title(f"DEQ z = tanh(Wz + Ux), n = {n}:\nunrolled autograd → implicit gradient λ_x", fontsize=10)
    ax1.legend(fontsize=8); ax1.grid(alpha=0.3, which="both")
    labels = ["lagrangeprop\n(implicit)", f"autograd\n({steps} unrolled steps)"]
    b1 = ax2.bar([0, 1], [t_lp * 1e3, t_ag * 1e3], 0.5, color=["C0", "0.5"])
    ax2.bar_label(b1, labels=[f"{t_lp * 1e3:.0f} ms\n{mem_lp / 1e6:.2f} MB", f"{t_ag * 1e3:.0f} ms\n"
                              f"{mem_ag / 1e6:.2f} MB"], fontsize=8, padding=2)
    ax2.set_xticks([0, 1], labels); ax2.set_ylabel("time for one gradient (ms)")
    ax2.set_ylim(0, 1.3 * max(t_lp, t_ag) * 1e3)
    ax2.set_title("one gradient: time and peak traced memory", fontsize=10)
    fig.tight_layout(); fig.savefig("deq.png", dpi=120)
    print("saved deq.png")
print(f"OK: implicit gradient = autograd through {steps} unrolled steps to {rel:.0e}" if ok
      else f"FAILED: implicit vs unrolled gradient differ by {rel:.1e} (> 1e-8)")
sys.exit(0 if ok else 1)
