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
t0 = time.perf_counter()
sol = prog.solve(w=wv, tol=1e-14)   # scores are ~1/n: the scaled tolerance is absolute here
t_lp = time.perf_counter() - t0

# dense numpy reference
t0 = time.perf_counter()
outv = S @ wv
P = np.zeros((n, n))
np.add.at(P, (dst, src), wv / outv[src])
rr = np.linalg.solve(np.eye(n) - alpha * P, np.full(n, (1 - alpha) / n))
lam = np.linalg.solve((np.eye(n) - alpha * P).T, c)
ref = alpha * rr[src] * (lam[dst] - (lam @ P)[src]) / outv[src]
t_np = time.perf_counter() - t0

err_r = float(np.max(np.abs(sol.values["r"] - rr)) / np.max(np.abs(rr)))
err_g = float(np.max(np.abs(sol.grad["w"] - ref)) / np.max(np.abs(ref)))
st = sol._states[id(sol.schedule.blocks[0])]
print(f"PageRank on {n} nodes, {E} edges: block of {sol.schedule.blocks[0].size} unknowns, "
      f"forward method {st.method}, {st.iterations} iterations")
print(f"sum(r) = {float(np.sum(sol.values['r'])):.12f} (should be 1)")
print(f"top pages: {np.argsort(-sol.values['r'])[:5]}; most influential edges: "
      f"{np.argsort(-np.abs(sol.grad['w']))[:5]}")
print(f"rel. error vs dense numpy: scores {err_r:.1e}, dJ/dw {err_g:.1e}")
print(f"time: lagrangeprop {t_lp * 1e3:.1f} ms (solve + all {E} edge derivatives), dense numpy {t_np * 1e3:.1f} ms")
ok = err_r < 1e-9 and err_g < 1e-8 and sol.kkt()["primal"] < 1e-10
print("OK" if ok else "MISMATCH")
sys.exit(0 if ok else 1)
