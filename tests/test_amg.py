"""The AMG-preconditioned Krylov path for large blocks (``linear_solver="amg"``, pyamg optional).

References: a hand-written scipy Newton with ``spsolve`` and a transposed ``spsolve`` adjoint
(Bratu), dense numpy solves (a non-symmetric convection–diffusion block), central differences,
and the sparse-LU path of the same program.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import lagrangeprop as lp
from lagrangeprop.blocks.state import cache_of
from lagrangeprop.linalg import amg

pyamg = pytest.importorskip("pyamg")


def laplacian(N: int) -> sp.csr_matrix:
    h = 1.0 / (N + 1)
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N))
    return ((sp.kron(T, sp.eye(N)) + sp.kron(sp.eye(N), T)) / h ** 2).tocsr()


def bratu(N: int):
    L = laplacian(N); h = 1.0 / (N + 1)
    prog = lp.Program(name="bratu")
    lam = prog.input("lam"); f = prog.input("f", shape=(N * N,))
    u = prog.variable("u", shape=(N * N,))
    prog.residual(u, L @ u - lam * lp.exp(u) - f)
    prog.output(h * h * lp.sum(u ** 2), name="J")
    return prog, L, h


def bratu_reference(L, h, lam, f):
    """Newton with spsolve, then Jᵀ μ = ∂J/∂u; ∇_f = μ, ∇_lam = μ·eᵘ (c = L u - lam eᵘ - f)."""
    u = np.zeros(L.shape[0])
    for _ in range(30):
        r = L @ u - lam * np.exp(u) - f
        if np.max(np.abs(r)) < 1e-12 * max(1.0, np.max(np.abs(L @ u))):
            break
        u -= spla.spsolve((L - sp.diags(lam * np.exp(u))).tocsc(), r)
    mu = spla.spsolve((L - sp.diags(lam * np.exp(u))).T.tocsc(), 2 * h * h * u)
    return u, {"f": mu, "lam": float(mu @ np.exp(u))}


@pytest.fixture(scope="module")
def bratu40():
    prog, L, h = bratu(40)
    f = np.random.default_rng(7).random(40 * 40) * 5
    return prog, f, bratu_reference(L, h, 1.5, f)


def test_amg_newton_and_adjoint_match_scipy(bratu40):
    prog, f, (u, ref) = bratu40
    sol = prog.solve(lam=1.5, f=f, linear_solver="amg")
    blk = sol.schedule.blocks[0]
    assert blk.cache.use_amg
    assert np.allclose(sol.values["u"], u, rtol=1e-9, atol=1e-12)
    assert np.allclose(sol.grad["f"], ref["f"], rtol=1e-8, atol=1e-14)
    assert float(sol.grad["lam"]) == pytest.approx(ref["lam"], rel=1e-8)
    assert sol.kkt()["adjoint"] < 1e-9


def test_amg_agrees_with_the_sparse_lu_path_on_every_multiplier(bratu40):
    prog, f, _ = bratu40
    a = prog.solve(lam=1.5, f=f, linear_solver="amg")
    d = prog.solve(lam=1.5, f=f, linear_solver="direct")
    assert not d.schedule.blocks[0].cache.use_amg
    for name, lam in d.multipliers.items():
        assert np.allclose(a.multipliers[name], lam, rtol=1e-8, atol=1e-12 * np.max(np.abs(lam))), name


def test_amg_tangent_matches_central_differences(bratu40, monkeypatch):
    prog, f, _ = bratu40
    df = np.random.default_rng(1).standard_normal(f.size)
    monkeypatch.setattr(amg, "AMG_MIN", 1000)       # lp.jvp solves with linear_solver="auto"
    _, jv = lp.jvp(prog, (1.5, f), (0.3, df))
    assert prog.compile().blocks[0].cache.use_amg
    eps = 1e-5
    hi = prog.solve(lam=1.5 + 0.3 * eps, f=f + eps * df, linear_solver="direct").output
    lo = prog.solve(lam=1.5 - 0.3 * eps, f=f - eps * df, linear_solver="direct").output
    assert float(jv) == pytest.approx(float(hi - lo) / (2 * eps), rel=1e-6)


def test_auto_uses_amg_above_the_threshold_and_reuses_the_hierarchy(bratu40, monkeypatch):
    prog, f, (u, ref) = bratu40
    monkeypatch.setattr(amg, "AMG_MIN", 1000)
    sol = prog.solve(lam=1.5, f=f)
    blk = sol.schedule.blocks[0]
    assert blk.cache.use_amg and blk.cache.amg is not None
    h = blk.cache.amg
    assert np.allclose(sol.grad["f"], ref["f"], rtol=1e-8, atol=1e-14)
    sol2 = prog.solve(lam=1.5, f=f * 1.01)        # same pattern: the hierarchy is kept
    assert blk.cache.amg is h
    _, ref2 = bratu_reference(laplacian(40), 1.0 / 41, 1.5, f * 1.01)
    assert np.allclose(sol2.grad["f"], ref2["f"], rtol=1e-8, atol=1e-14)
    monkeypatch.setattr(amg, "AMG_MIN", 10**9)
    assert not prog.solve(lam=1.5, f=f).schedule.blocks[0].cache.use_amg


def convection_diffusion(N: int, wind: float):
    """-Δu + wind·∂u/∂x (upwind) + u³ = s: a non-symmetric A_SS (gmres + AMG of Aᵀ in the adjoint)."""
    h = 1.0 / (N + 1)
    D = sp.diags([-1.0, 1.0], [-1, 0], shape=(N, N)) / h
    K = (laplacian(N) + wind * sp.kron(sp.eye(N), D)).tocsr()
    prog = lp.Program(name="convdiff")
    s = prog.input("s", shape=(N * N,)); u = prog.variable("u", shape=(N * N,))
    prog.residual(u, K @ u + u ** 3 - s)
    prog.output(lp.sum(lp.sin(u)), name="o")
    return prog, K


def test_non_symmetric_block_against_dense_solves():
    N = 20
    prog, K = convection_diffusion(N, 30.0)
    s = np.random.default_rng(3).standard_normal(N * N) * 50
    sol = prog.solve(s=s, linear_solver="amg")
    u = sol.values["u"]
    assert np.max(np.abs(K @ u + u ** 3 - s)) < 1e-8 * max(1.0, np.max(np.abs(K @ u)))
    A = K.toarray() + np.diag(3 * u ** 2)
    assert np.allclose(sol.grad["s"], np.linalg.solve(A.T, np.cos(u)), rtol=1e-8, atol=1e-14)


def test_linear_block_solves_tightly_after_a_loose_newton_step():
    """A linear block keeps its Newton-iteration operator for the adjoint: it must be tightened."""
    N = 30; L = laplacian(N)
    prog = lp.Program()
    f = prog.input("f", shape=(N * N,)); u = prog.variable("u", shape=(N * N,))
    prog.residual(u, L @ u + 2.0 * u - f)
    prog.output(lp.sum(u ** 3), name="o")
    fv = np.random.default_rng(5).random(N * N) * 100
    sol = prog.solve(f=fv, linear_solver="amg")
    M = (L + 2.0 * sp.eye(N * N)).tocsc()
    uu = spla.spsolve(M, fv)
    assert np.allclose(sol.values["u"], uu, rtol=1e-9)
    assert np.allclose(sol.grad["f"], spla.spsolve(M.T.tocsc(), 3 * uu ** 2), rtol=1e-9)


def test_amg_without_pyamg_is_a_clear_error(monkeypatch, bratu40):
    prog, f, _ = bratu40
    monkeypatch.setattr(amg, "available", lambda: False)
    with pytest.raises(lp.InputError, match="pyamg"):
        prog.solve(lam=1.5, f=f, linear_solver="amg")
    monkeypatch.setattr(amg, "AMG_MIN", 10)      # auto never needs it: sparse LU
    sol = prog.solve(lam=1.5, f=f)
    assert not sol.schedule.blocks[0].cache.use_amg


def indefinite(N: int):
    """K u - 3·10³ u = s with an indefinite Helmholtz-like K: AMG-preconditioned Krylov struggles."""
    L = laplacian(N)
    prog = lp.Program(name="helmholtz")
    s = prog.input("s", shape=(N * N,)); u = prog.variable("u", shape=(N * N,))
    prog.residual(u, L @ u - 3.0e3 * u - s)
    prog.output(lp.sum(u ** 2), name="o")
    return prog, (L - 3.0e3 * sp.eye(N * N)).tocsc()


def test_auto_falls_back_to_lu_when_amg_fails(monkeypatch):
    N = 30
    prog, M = indefinite(N)
    s = np.random.default_rng(2).standard_normal(N * N)
    monkeypatch.setattr(amg, "AMG_MIN", 100)
    monkeypatch.setattr(amg, "MAXITER", 5)      # make the failure certain and quick
    sol = prog.solve(s=s)
    blk = sol.schedule.blocks[0]
    assert blk.cache.amg_failed and not blk.cache.use_amg
    uu = spla.spsolve(M, s)
    assert np.allclose(sol.values["u"], uu, rtol=1e-9)
    assert np.allclose(sol.grad["s"], spla.spsolve(M.T.tocsc(), 2 * uu), rtol=1e-8)
    # explicitly requested AMG that cannot converge: an error naming the block, never a wrong gradient
    blk.cache.amg_failed = False
    with pytest.raises(lp.ConvergenceError, match="u"):
        prog.solve(s=s, linear_solver="amg")


def test_singular_block_with_amg_is_never_silent(monkeypatch):
    N = 12; L = laplacian(N)
    prog = lp.Program()
    s = prog.input("s", shape=(N * N,)); u = prog.variable("u", shape=(N * N,))
    Z = L.tolil()
    Z[:, 3] = 0.0                                   # u[3] enters no equation: singular A_SS
    Z = Z.tocsr()
    prog.residual(u, Z @ u - s)
    prog.output(lp.sum(u), name="o")
    monkeypatch.setattr(amg, "AMG_MIN", 10)
    with pytest.raises(lp.SingularSystemError, match=r"u\[3\]"):
        prog.solve(s=np.ones(N * N))               # auto: AMG fails, the LU diagnosis names u[3]
    with pytest.raises(lp.LagrangePropError):
        prog.solve(s=np.ones(N * N), linear_solver="amg")


def test_amg_adjoint_warm_starts_and_stays_exact(bratu40, monkeypatch):
    prog, f, (u, ref) = bratu40
    starts = []
    real = amg.AMGInverse.solve

    def spy(self, b, trans="N", x0=None, residual=None):
        if not self.loose:
            starts.append(x0)
        return real(self, b, trans, x0, residual)
    monkeypatch.setattr(amg.AMGInverse, "solve", spy)
    cache_of(prog.compile().blocks[0]).warm_adjoint = None          # earlier tests solved this program
    prog.solve(lam=1.5, f=f * 0.8, linear_solver="amg")          # another point first
    sol = prog.solve(lam=1.5, f=f, linear_solver="amg")           # warm: b = 2h²u barely moved
    assert starts[0] is None and starts[-1] is not None
    assert np.allclose(sol.grad["f"], ref["f"], rtol=1e-8, atol=1e-14)
    assert float(sol.grad["lam"]) == pytest.approx(ref["lam"], rel=1e-8)


def test_report_says_how_each_block_was_solved(bratu40):
    prog, f, _ = bratu40
    amg_line = prog.solve(lam=1.5, f=f, linear_solver="amg").report().splitlines()[-1]
    lu_line = prog.solve(lam=1.5, f=f, linear_solver="direct").report().splitlines()[-1]
    assert "8000 unknowns (Newton on 1600 states" in amg_line and "forward newton" in amg_line
    assert "cg with an AMG V-cycle of the Schur complement (1600 states)" in amg_line
    assert "sparse LU (splu) of the Schur complement (1600 states)" in lu_line


def test_second_order_and_jacobians_through_an_amg_block(monkeypatch):
    """hvp (forward-over-reverse) and a reverse-mode Jacobian through a block solved with AMG,
    against central differences of the sparse-LU gradient and the LU path's Jacobian."""
    N = 24
    L = laplacian(N)
    prog = lp.Program(name="bratu_f")
    f = prog.input("f", shape=(N * N,)); u = prog.variable("u", shape=(N * N,))
    prog.residual(u, L @ u - 2.0 * lp.exp(u) - f)
    prog.output(lp.sum(u ** 2) / N ** 2, name="J")
    fv = np.random.default_rng(11).random(N * N) * 3
    v = np.random.default_rng(12).standard_normal(N * N)
    eps = 1e-4
    plus = prog.solve(f=fv + eps * v, linear_solver="direct").grad["f"]
    minus = prog.solve(f=fv - eps * v, linear_solver="direct").grad["f"]
    fd = (plus - minus) / (2 * eps)
    monkeypatch.setattr(amg, "AMG_MIN", 100)
    hv = lp.hvp(prog, fv, v)
    assert prog.compile().blocks[0].cache.use_amg
    assert np.allclose(hv, fd, rtol=1e-5, atol=1e-6 * np.max(np.abs(fd)))

    vec = lp.Program(name="bratu_vec")
    f2 = vec.input("f", shape=(N * N,)); u2 = vec.variable("u", shape=(N * N,))
    vec.residual(u2, L @ u2 - 2.0 * lp.exp(u2) - f2)
    vec.output(u2[:3] * 1.0, name="probe")                   # 3 outputs: reverse mode, 3 adjoint solves
    jac_amg = lp.jacobian(vec)(fv)
    assert vec.compile().blocks[0].cache.use_amg
    monkeypatch.setattr(amg, "AMG_MIN", 10**9)
    jac_lu = lp.jacobian(vec)(fv)
    assert not vec.compile().blocks[0].cache.use_amg
    assert jac_amg.shape == (3, N * N)
    assert np.allclose(jac_amg, jac_lu, rtol=1e-8, atol=1e-12 * np.max(np.abs(jac_lu)))
