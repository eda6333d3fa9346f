"""bratu-N: ``-Δu - λ eᵘ = f`` on an N×N grid, output h²Σu, gradient for λ and the field f."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .common import Impl, case, lp_impl


def _bratu_data(N: int):
    h = 1.0 / (N + 1)
    T = sp.diags([-np.ones(N - 1), 2 * np.ones(N), -np.ones(N - 1)], [-1, 0, 1])
    L = (sp.kron(sp.identity(N), T) + sp.kron(T, sp.identity(N))).tocsr() / h**2   # -Δ
    f = np.random.default_rng(4).random(N * N)
    return L, f, h


def _bratu(system: str, N: int):
    L, f0, h = _bratu_data(N)
    lam0 = 1.0
    if system == "lagrangeprop":
        import lagrangeprop as lp

        def build():
            prog = lp.Program(name=f"bratu_{N}")
            lam = prog.input("lam")
            f = prog.input("f", shape=(N * N,))
            u = prog.variable("u", shape=(N * N,))
            prog.residual(u, lp.matmul(L, u) - lam * lp.exp(u) - f)
            prog.output(h * h * lp.sum(u), name="J")
            return prog
        return lp_impl(build, {"lam": lam0, "f": f0})
    if system != "numpy":
        return None   # no sparse direct implicit solve in autograd / torch

    def newton():
        u = np.zeros(N * N)
        for _ in range(50):
            e = lam0 * np.exp(u)
            Lu = L @ u
            r = Lu - e - f0
            J = (L - sp.diags(e)).tocsc()
            # lagrangeprop's test: tol·max(1, max|z|) over the block's values (u, L u, eᵘ, ...); at
            # N = 1000 the rounding of L u (entries 4·10⁶) alone is ~1e-10
            if np.max(np.abs(r)) <= 1e-10 * max(1.0, np.max(np.abs(u)), np.max(np.abs(Lu)), np.max(np.abs(e))):
                return u, e, J
            u = u - spla.splu(J).solve(r)
        raise RuntimeError("bratu newton did not converge")

    def grad():   # Jᵀ λ = ∂J/∂u at the solution; ∇_lam = λ·e^u, ∇_f = λ
        u, e, J = newton()
        lam = spla.splu(J).solve(np.full(N * N, h * h), trans="T")
        return {"f": lam, "lam": np.dot(lam, e / lam0)}

    def fwd():
        return h * h * np.sum(newton()[0])
    return Impl(grad, fwd, lambda g: np.concatenate([np.ravel(g["f"]), np.ravel(g["lam"])]),
                note="Newton + splu adjoint")


for _n, _quick in ((100, True), (300, False), (1000, False)):
    case(f"bratu-{_n}", memory=True, quick=_quick, single=_n >= 1000)(lambda system, n=_n: _bratu(system, n))
