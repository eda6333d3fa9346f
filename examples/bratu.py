"""The Bratu problem -Δu = μ e^u + s on an N×N grid as a residual block; gradients of a functional.

r(u) = L u - μ e^u - s = 0 (5-point Laplacian L, zero Dirichlet boundary) is one residual
block. J = h² Σ u² depends on the source field s (N² inputs) and μ; one adjoint solve with
A_SS gives dJ/ds (a whole field) and dJ/dμ. References: a hand-written scipy Newton +
spsolve adjoint (Lᵀ - μ diag(e^u)) λ = 2h²u, and a central difference in μ.
Usage: python bratu.py [N]   (default 150, quick mode 30; N = 300 gives 9·10⁴ unknowns; from
N = 200 on, with pyamg installed, linear_solver="auto" solves with AMG-preconditioned Krylov)
"""
import os
import sys
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import lagrangeprop as lp

N = int(sys.argv[1]) if len(sys.argv) > 1 else (30 if os.environ.get("LAGRANGEPROP_QUICK") else 150)
mu = 3.0
h = 1.0 / (N + 1)
T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N))
L = (sp.kron(T, sp.eye(N)) + sp.kron(sp.eye(N), T)).tocsr() / h ** 2
xy = (np.arange(N) + 1) * h
sv = 10.0 * np.outer(np.sin(np.pi * xy), xy).ravel()          # a smooth source field

prog = lp.Program(name="bratu")
s = prog.input("s", shape=(N * N,)); m = prog.input("mu")
u = prog.variable("u", shape=(N * N,))
prog.residual(u, L @ u - m * lp.exp(u) - s)
prog.output(h ** 2 * lp.sum(u ** 2), name="J")

t0 = time.perf_counter()
sol = prog.solve(s=sv, mu=mu)
t_lp = time.perf_counter() - t0
st = sol._states[id(sol.schedule.blocks[0])]

# reference: hand-written Newton and adjoint with scipy
t0 = time.perf_counter()
uu = np.zeros(N * N)
for _ in range(30):
    r = L @ uu - mu * np.exp(uu) - sv
    if np.max(np.abs(r)) < 1e-11 * max(1.0, np.max(np.abs(uu))):
        break
    uu -= spla.spsolve((L - sp.diags(mu * np.exp(uu))).tocsc(), r)
lam = spla.spsolve((L - sp.diags(mu * np.exp(uu))).T.tocsc(), 2 * h ** 2 * uu)
t_ref = time.perf_counter() - t0
dmu = float(lam @ np.exp(uu))
eps = 1e-5
fd = (float(prog.evaluate(s=sv, mu=mu + eps)) - float(prog.evaluate(s=sv, mu=mu - eps))) / (2 * eps)

err_u = float(np.max(np.abs(sol.values["u"] - uu)) / np.max(np.abs(uu)))
err_s = float(np.max(np.abs(sol.grad["s"] - lam)) / np.max(np.abs(lam)))
err_mu = abs(float(sol.grad["mu"]) - dmu) / abs(dmu)
err_fd = abs(float(sol.grad["mu"]) - fd) / abs(fd)
print(f"Bratu on a {N}×{N} grid ({N * N} unknowns, block of {sol.schedule.blocks[0].size}): "
      f"{st.method} + {'AMG-preconditioned cg' if sol.schedule.blocks[0].cache.use_amg else 'sparse LU'}, "
      f"{st.iterations} iterations, residual history {np.array2string(np.array(st.history), precision=1)}")
print(f"J = {float(sol.output):.10f}, max u = {float(np.max(sol.values['u'])):.6f}")
print(f"dJ/dmu = {float(sol.grad['mu']):.10f} (scipy {dmu:.10f}, central difference {fd:.8f})")
print(f"rel. errors: u {err_u:.1e}, dJ/ds {err_s:.1e}, dJ/dmu {err_mu:.1e}, vs FD {err_fd:.1e}")
print(f"time: lagrangeprop solve + gradient {t_lp:.2f} s; hand-written scipy Newton + adjoint {t_ref:.2f} s")
ok = err_u < 1e-9 and err_s < 1e-8 and err_mu < 1e-8 and err_fd < 1e-6
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib not installed: no picture (pip install lagrangeprop[plot])")
else:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.9))
    ext = (h, 1 - h, h, 1 - h)
    for ax, field, title in ((axes[0], sv, "source s"), (axes[1], sol.values["u"], "solution u of −Δu = μeᵘ + s"),
                             (axes[2], 1e6 * sol.grad["s"], "10⁶ · dJ/ds = 10⁶ · λ_s (one adjoint solve)")):
        im = ax.imshow(field.reshape(N, N).T, origin="lower", extent=ext, cmap="viridis")
        fig.colorbar(im, ax=ax, shrink=0.85)
        ax.set_title(title, fontsize=10); ax.set_xlabel("x"); ax.set_ylabel("y")
    fig.suptitle(f"Bratu, {N}×{N} grid, μ = {mu}: J = h²Σu² = {float(sol.output):.6f}, "
                 f"dJ/dμ = {float(sol.grad['mu']):.6f} (scipy adjoint: rel. error {err_mu:.0e})", fontsize=10)
    fig.tight_layout(); fig.savefig("bratu.png", dpi=110)
    print("saved bratu.png")
print(f"OK: u, dJ/ds and dJ/dmu match a hand-written scipy Newton + adjoint (max rel. error "
      f"{max(err_u, err_s, err_mu):.0e}), dJ/dmu matches a central difference ({err_fd:.0e})" if ok else
      f"FAILED: rel. errors u {err_u:.1e}, dJ/ds {err_s:.1e}, dJ/dmu {err_mu:.1e}, vs FD {err_fd:.1e}")
sys.exit(0 if ok else 1)
