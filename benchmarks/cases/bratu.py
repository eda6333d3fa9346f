"""bratu-N: ``-Δu - λ eᵘ = f`` on an N×N grid, output h²Σu, gradient for λ and the field f.

The peers (issue 16), each verified against the plain Newton + ``splu`` one (``numpy``):

- ``floor``: what an expert writes with scipy + pyamg: Newton with an Eisenstat–Walker forcing
  term, every step a cg preconditioned by one Ruge–Stüben hierarchy, built at the first Newton
  matrix and reused for every step, for the adjoint ``Jᵀμ = h²1`` and (warm) for later calls;
- ``chord-splu``: one ``splu`` of the first Newton matrix, chord steps with it, and the adjoint
  by iterative refinement preconditioned by the same factors (kept for later calls);
- ``numpy``: Newton with a fresh ``splu`` every step and one more for the adjoint.

All three stop on lagrangeprop's test (SPEC §1 "Scale"): the residual ``L u − λeᵘ − f`` of every
grid point against the magnitude of its own terms, ``max_i |r_i| / max(|Lu|_i, λeᵘ_i, |f_i|) <= tol``,
with lagrangeprop's allowance for the rounding of evaluating it (``8·eps·max(|L| |u|, λeᵘ, |f|)``, which
at N = 1000 is ~1e-10 of the scale), at the default tol 1e-10 for every N.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .common import Impl, case, lp_impl

TOL = 1e-10        # lagrangeprop's default block tolerance, every system, every N
NOISE = 8 * np.finfo(np.float64).eps   # lagrangeprop's rounding allowance (blocks/scale.constraint_noise)
NOISE_NEAR = 1e3   # ... looked at from max|r|/s <= NOISE_NEAR·tol on, as lagrangeprop does
ADJ_RTOL = 1e-10   # the adjoint's relative residual (lagrangeprop's Krylov acceptance level)


def _bratu_data(N: int):
    h = 1.0 / (N + 1)
    T = sp.diags([-np.ones(N - 1), 2 * np.ones(N), -np.ones(N - 1)], [-1, 0, 1])
    L = (sp.kron(sp.identity(N), T) + sp.kron(T, sp.identity(N))).tocsr() / h**2   # -Δ
    f = np.random.default_rng(4).random(N * N)
    return L, f, h


def _residual(L, absL, lam: float, f: np.ndarray, u: np.ndarray):
    """``r = L u − λeᵘ − f``, ``eᵘ`` and the scaled max ``max |r| / max(|Lu|, λeᵘ, |f|)`` (SPEC §1); near
    tol, a violation within the rounding of evaluating ``r``, ``8·eps·max(|L| |u|, λeᵘ, |f|)``, counts as
    none (lagrangeprop's stopping rule, the same allowance)."""
    e = np.exp(u)
    Lu = L @ u
    le = lam * e
    r = Lu - le - f
    scale = np.maximum(np.maximum(np.abs(Lu), np.abs(le)), np.abs(f))
    err = float(np.max(np.abs(r) / np.maximum(scale, 1e-300)))
    if TOL < err <= NOISE_NEAR * TOL:
        noise = NOISE * np.maximum(np.maximum(absL @ np.abs(u), np.abs(le)), np.abs(f))
        err = float(np.max(np.maximum(np.abs(r) - noise, 0.0) / np.maximum(scale, 1e-300)))
    return r, e, err


def _gradient(mu: np.ndarray, e: np.ndarray) -> dict:
    # ∂L/∂f = μ, ∂L/∂λ = μ·eᵘ (L = h²Σu − μᵀ(Lu − λeᵘ − f))
    return {"f": mu, "lam": np.dot(mu, e)}


def _flat(g) -> np.ndarray:
    return np.concatenate([np.ravel(g["f"]), np.ravel(g["lam"])])


def _newton_splu(L, f0, h, lam0, N):
    tol, absL = TOL, abs(L)
    def newton():
        u = np.zeros(N * N)
        for _ in range(50):
            r, e, err = _residual(L, absL, lam0, f0, u)
            J = (L - sp.diags(lam0 * e)).tocsc()
            if err <= tol:
                return u, e, J
            u = u - spla.splu(J).solve(r)
        raise RuntimeError("bratu newton did not converge")

    def grad():   # Jᵀ μ = ∂J/∂u at the solution
        u, e, J = newton()
        return _gradient(spla.splu(J).solve(np.full(N * N, h * h), trans="T"), e)

    def fwd():
        return h * h * np.sum(newton()[0])
    return Impl(grad, fwd, _flat, note="Newton, splu every step + adjoint")


def _floor(L, f0, h, lam0, N):
    tol, absL = TOL, abs(L)
    import pyamg
    slot: dict = {}      # the hierarchy, built at the first Newton matrix of the first call

    def precond(J):
        if "ml" not in slot:
            slot["ml"] = pyamg.ruge_stuben_solver(J.tocsr())
        return slot["ml"].aspreconditioner(cycle="V")

    def newton():
        u = np.zeros(N * N)
        eta, prev = 0.5, None
        for _ in range(50):
            r, e, err = _residual(L, absL, lam0, f0, u)
            J = L - sp.diags(lam0 * e, format="csr")
            if err <= tol:
                return u, e, J
            rn = float(np.linalg.norm(r))
            if prev is not None:       # Eisenstat–Walker choice 2 (γ = 0.9, α = 2) with its safeguard
                ew = 0.9 * (rn / prev) ** 2
                safe = 0.9 * eta**2
                eta = min(0.5, max(ew, safe) if safe > 0.1 else ew)
                eta = max(eta, 1e-6)
            prev = rn
            du, _ = spla.cg(J, -r, rtol=eta, atol=0.0, maxiter=200, M=precond(J))
            u = u + du
        raise RuntimeError("bratu floor newton did not converge")

    def grad():
        u, e, J = newton()
        b = np.full(N * N, h * h)
        mu, info = spla.cg(J, b, rtol=ADJ_RTOL, atol=0.0, maxiter=200, M=precond(J))   # J symmetric
        if info:
            raise RuntimeError("bratu floor adjoint did not converge")
        return _gradient(mu, e)

    def fwd():
        return h * h * np.sum(newton()[0])
    return Impl(grad, fwd, _flat, note="EW-Newton + RS-AMG cg, hierarchy reused")


def _chord_splu(L, f0, h, lam0, N):
    tol, absL = TOL, abs(L)
    slot: dict = {}      # the factors of the first Newton matrix of the first call

    def lu():
        if "lu" not in slot:
            slot["lu"] = spla.splu((L - sp.diags(np.full(N * N, lam0))).tocsc())   # J at u = 0
        return slot["lu"]

    def chord():
        u = np.zeros(N * N)
        for _ in range(100):
            r, e, err = _residual(L, absL, lam0, f0, u)
            if err <= tol:
                return u, e
            u = u - lu().solve(r)
        raise RuntimeError("bratu chord did not converge")

    def grad():   # Jᵀμ = h²1 by refinement μ ← μ + J₀⁻ᵀ(b − Jᵀμ), J = L − λ diag(eᵘ) symmetric
        u, e = chord()
        J = L - sp.diags(lam0 * e, format="csr")
        b = np.full(N * N, h * h)
        bn = float(np.linalg.norm(b))
        mu = lu().solve(b, trans="T")
        for _ in range(100):
            res = b - J @ mu
            if float(np.linalg.norm(res)) <= ADJ_RTOL * bn:
                return _gradient(mu, e)
            mu = mu + lu().solve(res, trans="T")
        raise RuntimeError("bratu chord adjoint did not converge")

    def fwd():
        return h * h * np.sum(chord()[0])
    return Impl(grad, fwd, _flat, note="chord on one splu, adjoint refined with it")


def program(N: int):
    """The lagrangeprop program (a ``build()`` function) and its inputs; petsc_bratu.py uses it too."""
    L, f0, h = _bratu_data(N)

    def build():
        import lagrangeprop as lp
        prog = lp.Program(name=f"bratu_{N}")
        lam = prog.input("lam")
        f = prog.input("f", shape=(N * N,))
        u = prog.variable("u", shape=(N * N,))
        prog.residual(u, lp.matmul(L, u) - lam * lp.exp(u) - f)
        prog.output(h * h * lp.sum(u), name="J")
        return prog
    return build, {"lam": 1.0, "f": f0}


def _bratu(system: str, N: int):
    if system == "lagrangeprop":
        build, inputs = program(N)
        return lp_impl(build, inputs, tol=TOL)
    L, f0, h = _bratu_data(N)
    lam0 = 1.0
    peers = {"numpy": _newton_splu, "floor": _floor, "chord-splu": _chord_splu}
    if system not in peers:
        return None   # no sparse implicit solve in autograd / torch
    return peers[system](L, f0, h, lam0, N)


for _n, _quick in ((100, True), (300, False), (1000, False)):
    case(f"bratu-{_n}", memory=True, quick=_quick, single=_n >= 1000, peers=("floor", "chord-splu"))(
        lambda system, n=_n: _bratu(system, n))
