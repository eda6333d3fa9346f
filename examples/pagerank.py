"""Derivative of PageRank scores with respect to every edge weight (a cyclic linear block).

r = α P(w) r + (1 - α)/n, P_ij = w_e / out_j for an edge e = (j -> i). The program keeps w
as an input: flow_e = w_e r_src(e) / out_src(e), r = α D flow + (1 - α)/n, with constant
sparse incidence matrices D (destinations) and S (sources, out = S w). The gradient of
J = <c, r> with respect to all edge weights comes from one adjoint solve; the reference is a
dense numpy solve of (I - αP)ᵀ λ = c and dJ/dw_e = α r_j (λ_i - λᵀ P[:, j]) / out_j.
"""
import os
import sys
import time

import numpy as np
import scipy.sparse as sp

import lagrangeprop as lp

n = 200 if os.environ.get("LAGRANGEPROP_QUICK") else 1500
alpha = 0.85
rng = np.random.default_rng(0)
src = np.concatenate([np.arange(n), rng.integers(0, n, 4 * n)])          # a ring + random edges
dst = np.concatenate([(np.arange(n) + 1) % n, rng.integers(0, n, 4 * n)])
E = src.size
S = sp.csr_matrix((np.ones(E), (src, np.arange(E))), shape=(n, E))
D = sp.csr_matrix((np.ones(E), (dst, np.arange(E))), shape=(n, E))
c = rng.standard_normal(n)

prog = lp.Program(name="pagerank")
w = prog.input("w", shape=(E,))
r = prog.variable("r", shape=(n,))
out = S @ w
prog.define(r, alpha * (D @ (w * r[src] / out[src])) + (1 - alpha) / n)
prog.output(lp.sum(c * r), name="J")

wv = rng.uniform(0.5, 2.0, E)


def dense_numpy():
    """The reference: dense numpy solves of (I - αP) r = (1 - α)/n and (I - αP)ᵀ λ = c."""
    outv = S @ wv
    P = np.zeros((n, n))
    np.add.at(P, (dst, src), wv / outv[src])
    rr = np.linalg.solve(np.eye(n) - alpha * P, np.full(n, (1 - alpha) / n))
    lam = np.linalg.solve((np.eye(n) - alpha * P).T, c)
    return rr, alpha * rr[src] * (lam[dst] - (lam @ P)[src]) / outv[src]


def best_of(f, reps=3):
    """The fastest of ``reps`` calls (ms) and the last result."""
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times), out


t0 = time.perf_counter()
prog.compile()                      # validation, condensation into blocks, generated code
t_compile = 1e3 * (time.perf_counter() - t0)
t0 = time.perf_counter()
sol = prog.solve(w=wv, tol=1e-14)   # scores are ~1/n: the scaled tolerance is absolute here
t_cold = 1e3 * (time.perf_counter() - t0)     # probes the block's rate, first calls into scipy and BLAS
t_np, (rr, ref) = best_of(dense_numpy)
timings = {"lagrangeprop auto,\nfirst solve": t_cold}
for label, options in (("lagrangeprop auto", {}), ("method='fixed-point'", {"method": "fixed-point"}),
                       ("method='newton',\nlinear_solver='direct'", {"method": "newton", "linear_solver": "direct"})):
    prog.solve(w=wv, tol=1e-14, **options)
    timings[label], s_opt = best_of(lambda o=options: prog.solve(w=wv, tol=1e-14, **o))
    if not options:
        sol = s_opt
timings["dense numpy\n(np.linalg.solve)"] = t_np

err_r = float(np.max(np.abs(sol.values["r"] - rr)) / np.max(np.abs(rr)))
err_g = float(np.max(np.abs(sol.grad["w"] - ref)) / np.max(np.abs(ref)))
st = sol._states[id(sol.schedule.blocks[0])]
print(f"PageRank on {n} nodes, {E} edges: block of {sol.schedule.blocks[0].size} unknowns, "
      f"forward method {st.method} ({st.iterations} iterations), adjoint {st.linear}")
print(f"sum(r) = {float(np.sum(sol.values['r'])):.12f} (should be 1)")
print(f"top pages: {np.argsort(-sol.values['r'])[:5]}; most influential edges: "
      f"{np.argsort(-np.abs(sol.grad['w']))[:5]}")
print(f"rel. error vs dense numpy: scores {err_r:.1e}, dJ/dw {err_g:.1e}")
print(f"time for the scores and all {E} edge derivatives (best of 3, ms):")
for label, t in timings.items():
    print(f"  {label.replace(chr(10), ' '):42s} {t:8.1f}   {t / t_np:5.2f}× dense numpy")
print(f"  auto keeps to sparse work on the {sol.schedule.blocks[0].size}-unknown block (no factorization); "
      f"the dense solve is O(n³) and wins only for small n")
print(f"  compiling took {t_compile:.0f} ms; the rest of the first solve is one-time work (auto probes the block's "
      f"contraction rate; the first scipy and BLAS calls), which with multithreaded BLAS on a busy machine "
      f"can take seconds (OPENBLAS_NUM_THREADS=1 avoids that)")
t_fp = timings["method='fixed-point'"]
if t_fp < timings["lagrangeprop auto"]:
    print(f"  plain fixed-point sweeps are {timings['lagrangeprop auto'] / t_fp:.1f}× faster "
          f"than auto's Anderson here: a linear block contracting at α = {alpha} needs no acceleration, "
          f"and Anderson's mixing over every block unknown costs more than the sweeps it saves")
ok = err_r < 1e-9 and err_g < 1e-8 and sol.kkt()["primal"] < 1e-10

try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib not installed: no picture (pip install lagrangeprop[plot])")
else:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1, 1.3]})
    ax1.plot(ref, sol.grad["w"], ".", ms=3, alpha=0.5, label=f"{E} edges")
    lim = float(np.max(np.abs(ref))) * 1.05
    ax1.plot([-lim, lim], [-lim, lim], "k-", lw=0.8, label="y = x")
    ax1.set_xlim(-lim, lim); ax1.set_ylim(-lim, lim); ax1.set_aspect("equal")
    ax1.set_xlabel("dJ/dw from the dense numpy adjoint")
    ax1.set_ylabel("dJ/dw = multiplier λ_w")
    ax1.set_title(f"every edge derivative (max rel. error {err_g:.0e})")
    ax1.legend(loc="upper left", fontsize=8)
    labels = list(timings)
    bars = ax2.barh(labels, [timings[k] for k in labels],
                    color=["C0", "C0", "C2", "C2", "0.5"])
    ax2.bar_label(bars, fmt="%.0f ms", fontsize=8, padding=2)
    ax2.invert_yaxis()
    ax2.set_xscale("log")   # the one-time first solve varies with the machine's load: keep the rest readable
    ax2.set_xlim(0.5 * min(timings.values()), 4 * max(timings.values()))
    ax2.set_xlabel("time for scores + all edge derivatives (ms, best of 3; log scale)")
    ax2.set_title(f"PageRank on {n} pages: time of each choice\n(shorter is faster; grey = the dense reference)",
                  fontsize=10)
    fig.tight_layout(); fig.savefig("pagerank.png", dpi=110)
    print("saved pagerank.png")
print(f"OK: scores and all {E} edge derivatives match dense numpy (rel. errors {err_r:.0e}, {err_g:.0e})"
       if ok else f"FAILED: mismatch with dense numpy (rel. errors scores {err_r:.1e}, dJ/dw {err_g:.1e})")
sys.exit(0 if ok else 1)
