"""Large blocks (issue 16): the inexact AMG Newton path against scipy at small N.

References: ``scipy.optimize.root`` for the forward solve and the implicit function theorem
written by hand with a dense numpy solve (``Jᵀμ = ∂J/∂u``, ``∇_f = μ``, ``∇_λ = μ·eᵘ``), plus
central differences of the output through ``scipy.optimize.root`` for the λ derivative.
"""

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp

import lagrangeprop as lp
from lagrangeprop.blocks import newton as newton_mod
from lagrangeprop.linalg import amg

pytest.importorskip("pyamg")


def laplacian(N: int) -> sp.csr_matrix:
    h = 1.0 / (N + 1)
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N))
    return ((sp.kron(T, sp.eye(N)) + sp.kron(sp.eye(N), T)) / h ** 2).tocsr()


def bratu(N: int, scale: float = 1.0):
    """``scale·(L u − λeᵘ − f) = 0``, output ``h²Σu`` (the benchmark's program, optionally scaled)."""
    L, h = laplacian(N), 1.0 / (N + 1)
    prog = lp.Program(name="bratu")
    lam = prog.input("lam"); f = prog.input("f", shape=(N * N,))
    u = prog.variable("u", shape=(N * N,))
    r = lp.matmul(L, u) - lam * lp.exp(u) - f
    prog.residual(u, r if scale == 1.0 else scale * r)
    prog.output(h * h * lp.sum(u), name="J")
    return prog, L, h


def scipy_root(L, lam, f):
    """``u`` by ``scipy.optimize.root`` (hybr with the analytic Jacobian, to 1e-13)."""
    Ld = L.toarray()
    sol = so.root(lambda u: Ld @ u - lam * np.exp(u) - f, np.zeros(L.shape[0]),
                  jac=lambda u: Ld - np.diag(lam * np.exp(u)), tol=1e-13)
    assert sol.success
    return sol.x


def ift_gradient(L, h, lam, u):
    """Jᵀμ = h²1 with J = L − λ diag(eᵘ) (dense), ∇_f = μ, ∇_λ = μ·eᵘ."""
    J = L.toarray() - np.diag(lam * np.exp(u))
    mu = np.linalg.solve(J.T, np.full(L.shape[0], h * h))
    return mu, float(mu @ np.exp(u))


@pytest.fixture(scope="module")
def case30():
    N, lam = 30, 2.0
    f = np.random.default_rng(11).random(N * N) * 3
    prog, L, h = bratu(N)
    u = scipy_root(L, lam, f)
    return prog, L, h, lam, f, u, ift_gradient(L, h, lam, u)


@pytest.mark.parametrize("solver", ["amg", "auto"])
def test_inexact_newton_matches_scipy_root_and_the_implicit_function_theorem(case30, solver, monkeypatch):
    prog, L, h, lam, f, u, (mu, glam) = case30
    monkeypatch.setattr(amg, "AMG_MIN", 100)        # auto takes the AMG path at this size too
    sol = prog.solve(lam=lam, f=f, linear_solver=solver)
    blk = sol.schedule.blocks[0]
    assert blk.cache.use_amg
    assert np.allclose(sol.values["u"], u, rtol=1e-9, atol=1e-12)
    assert np.allclose(sol.grad["f"], mu, rtol=1e-8, atol=1e-14 * np.max(np.abs(mu)))
    assert float(sol.grad["lam"]) == pytest.approx(glam, rel=1e-8)
    kkt = sol.kkt()
    assert kkt["primal"] < 1e-9 and kkt["adjoint"] < 1e-9


def test_the_lambda_derivative_matches_central_differences(case30):
    prog, L, h, lam, f, _, _ = case30
    sol = prog.solve(lam=lam, f=f, linear_solver="amg")
    eps = 1e-5
    fd = (h * h * scipy_root(L, lam + eps, f).sum() - h * h * scipy_root(L, lam - eps, f).sum()) / (2 * eps)
    assert float(sol.grad["lam"]) == pytest.approx(fd, rel=1e-6)


@pytest.mark.parametrize("scale", [1e-9, 1e7])
def test_a_badly_scaled_block_is_solved_on_its_own_scale(scale):
    """``scale·(L u − λeᵘ − f)``: an absolute test would stop at the start (1e-9) or never (1e7);
    the per-constraint scale (SPEC §1) makes both the same problem, and kkt() certifies it."""
    N, lam = 24, 1.0
    f = np.random.default_rng(5).random(N * N)
    prog, L, h = bratu(N, scale)
    sol = prog.solve(lam=lam, f=f, linear_solver="amg")
    u = scipy_root(L, lam, f)
    assert np.allclose(sol.values["u"], u, rtol=1e-9, atol=1e-12)
    mu, glam = ift_gradient(L, h, lam, u)
    assert np.allclose(sol.grad["f"], mu, rtol=1e-7, atol=1e-13 * np.max(np.abs(mu)))
    assert float(sol.grad["lam"]) == pytest.approx(glam, rel=1e-7)
    assert sol.kkt()["primal"] < 1e-9 and sol.kkt()["adjoint"] < 1e-9


def test_eisenstat_walker_forcing_follows_its_formula():
    """Choice 2 (γ = 0.9, α = 2): η_k = 0.9 (‖F_k‖/‖F_{k-1}‖)², safeguarded by 0.9 η_{k-1}² when that
    exceeds 0.1, clipped to [ETA_MIN, ETA_MAX] and never below what tol needs (0.05 tol / max|c/s|)."""
    F = newton_mod._Forcing()
    assert F.newton(1.0, 1.0, 1e-10) == newton_mod.ETA_MAX            # the first step: loose
    assert F.newton(0.5, 0.5, 1e-10) == pytest.approx(max(0.9 * 0.25, 0.9 * 0.5 ** 2))
    assert F.newton(0.01, 0.01, 1e-10) == pytest.approx(0.9 * (0.01 / 0.5) ** 2)
    assert F.newton(1e-9, 1e-9, 1e-10) == pytest.approx(0.05 * 1e-10 / 1e-9)   # the tol floor


def test_a_loose_amg_solve_meets_its_forcing_term():
    """``AMGInverse`` with ``loose=True`` and a forcing term η: ``‖A x − b‖ <= 2η ‖b‖`` (numpy reference)."""
    A = laplacian(40)
    b = np.random.default_rng(2).random(A.shape[0])
    for eta in (0.3, 1e-2, 1e-6):
        inv = amg.AMGInverse(A, loose=True)
        inv.rtol = eta
        x = inv.solve(b)
        assert np.linalg.norm(A @ x - b) <= 2 * eta * np.linalg.norm(b)


@pytest.mark.parametrize("peer", ["floor", "chord-splu", "numpy"])
def test_the_benchmark_peers_agree_with_the_implicit_function_theorem(peer):
    """``benchmarks/cases/bratu.py``'s hand-written solvers (the floor, chord-splu, Newton + splu)
    against a dense solve of the same equations, cold and warm (their kept hierarchy / factors)."""
    import os
    import sys
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
    sys.path.insert(0, bench)
    try:
        from cases import bratu as bench_bratu
    finally:
        sys.path.remove(bench)
    N = 20
    L, f, h = bench_bratu._bratu_data(N)
    u = scipy_root(L, 1.0, f)
    mu, glam = ift_gradient(L, h, 1.0, u)
    impl = bench_bratu._bratu(peer, N)
    for _ in range(2):
        g = impl.grad()
        assert np.allclose(g["f"], mu, rtol=1e-8, atol=1e-12 * np.max(np.abs(mu)))
        assert float(g["lam"]) == pytest.approx(glam, rel=1e-8)
    assert impl.fwd() == pytest.approx(h * h * u.sum(), rel=1e-10)


# ---- round 2: the matrix-free Schur operator, the assembly's reuse, the partition's parts
@pytest.mark.parametrize("solver", ["amg", "auto"])
def test_the_schur_complement_is_formed_once_and_never_when_warm(case30, solver, monkeypatch):
    """Newton steps and the adjoint run cg on ``S`` formed by the chain rule (``chain_schur``, one per
    Jacobian, ``A_SS`` never assembled nor partitioned); the hierarchy is built once, at the first Newton
    matrix, and a second solve at other inputs builds none and still matches ``scipy.optimize.root`` +
    the implicit function theorem."""
    from lagrangeprop.blocks.partition import Partition
    prog, L, h, lam, f, u, (mu, glam) = case30
    monkeypatch.setattr(amg, "AMG_MIN", 100)
    formed, built = [], []
    real, build = Partition.schur, amg._build
    monkeypatch.setattr(Partition, "schur", lambda self: formed.append(1) or real(self))
    monkeypatch.setattr(amg, "_build", lambda *a: built.append(1) or build(*a))
    prog.compile().blocks[0].cache.amg = None            # earlier tests left a hierarchy
    prog.solve(lam=lam, f=f * 0.9, linear_solver=solver)
    assert len(built) == 1 and not formed
    sol = prog.solve(lam=lam, f=f, linear_solver=solver)   # the kept hierarchy
    assert len(built) == 1 and not formed
    assert sol._states[id(prog.compile().blocks[0])].A is None
    assert np.allclose(sol.values["u"], u, rtol=1e-9, atol=1e-12)
    assert np.allclose(sol.grad["f"], mu, rtol=1e-8, atol=1e-14 * np.max(np.abs(mu)))
    assert float(sol.grad["lam"]) == pytest.approx(glam, rel=1e-8)


def test_a_new_lambda_rewrites_the_scalar_partials_of_a_reused_assembly(case30):
    """The assembly copies the previous ``A_SS`` and rewrites only changed partials: solving at
    another λ (a scalar partial of ``λ·eᵘ``) must give that λ's answer (scipy reference)."""
    prog, L, h, _, f, _, _ = case30
    for lam in (1.0, 2.5, 1.0):
        sol = prog.solve(lam=lam, f=f, linear_solver="amg")
        u = scipy_root(L, lam, f)
        mu, glam = ift_gradient(L, h, lam, u)
        assert np.allclose(sol.values["u"], u, rtol=1e-9, atol=1e-12)
        assert float(sol.grad["lam"]) == pytest.approx(glam, rel=1e-8)


def test_an_assembly_from_a_previous_matrix_equals_a_fresh_one(case30):
    """``assemble(..., prev=A0)`` at a new point equals ``assemble(...)`` there, entry for entry."""
    from lagrangeprop.blocks.assembly import assemble
    from lagrangeprop.blocks.linearization import Linearization
    from lagrangeprop.blocks.residual import block_residual
    prog, L, h, lam, f, _, _ = case30
    sol = prog.solve(lam=lam, f=f, linear_solver="amg")
    blk = sol.schedule.blocks[0]
    vals = list(sol._vals)
    A0 = assemble(blk, Linearization(blk, vals, sol._states[id(blk)].ans, {}))
    vals[blk.nodes[0]] = np.asarray(vals[blk.nodes[0]]) + 0.1 * np.random.default_rng(3).standard_normal(L.shape[0])
    _, ans = block_residual(blk, vals)
    reused = assemble(blk, Linearization(blk, vals, ans, {}), prev=A0)
    fresh = assemble(blk, Linearization(blk, vals, ans, {}))
    assert abs(reused - fresh).max() == 0.0 and abs(reused - A0).max() > 0.0
    with pytest.raises(ValueError):                 # the shared index arrays are read-only
        reused.indices[0] = 1


def test_the_partition_parts_apply_the_schur_complement_and_the_block_solve(case30):
    """``smatvec`` (both ways) against the formed ``S``, and ``rhs`` + an ``S`` solve + ``expand``
    against a dense numpy solve of the whole ``A_SS`` (and of ``A_SSᵀ``)."""
    from lagrangeprop.blocks.linear import matrix
    from lagrangeprop.blocks.partition import Partition
    prog, L, h, lam, f, _, _ = case30
    sol = prog.solve(lam=lam, f=f, linear_solver="amg")
    blk = sol.schedule.blocks[0]
    A = matrix(blk, sol._vals, sol._states[id(blk)])      # assembled on demand (the AMG path has none)
    part = Partition(blk, A)
    S = part.schur().toarray()
    rng = np.random.default_rng(8)
    v, b = rng.standard_normal(S.shape[0]), rng.standard_normal(A.shape[0])
    assert np.allclose(part.smatvec(v, False), S @ v, rtol=1e-12, atol=1e-9)
    assert np.allclose(part.smatvec(v, True), S.T @ v, rtol=1e-12, atol=1e-9)
    for trans in (False, True):
        x = part.expand(np.linalg.solve(S.T if trans else S, part.rhs(b, trans)), b, trans)
        ref = np.linalg.solve(A.toarray().T if trans else A.toarray(), b)
        assert np.allclose(x, ref, rtol=1e-9, atol=1e-12 * np.max(np.abs(ref)))
