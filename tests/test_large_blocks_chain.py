"""Large blocks (issue 16), round 3: the Schur complement formed by the chain rule, no ``A_SS``.

``chain_schur`` and ``ChainPartition`` against the assembled ``A_SS`` (its :class:`Partition` and a
dense numpy solve of the whole block), and the AMG path that uses them against ``scipy.optimize.root``
plus the implicit function theorem on a non-symmetric block (gmres, not cg).
"""

import numpy as np
import pytest
import scipy.optimize as so
import scipy.sparse as sp

import lagrangeprop as lp
from lagrangeprop.blocks.eliminate import ChainPartition, chain_schur
from lagrangeprop.blocks.linear import matrix
from lagrangeprop.blocks.linearization import linearize
from lagrangeprop.blocks.partition import Partition
from lagrangeprop.linalg import amg
from lagrangeprop.linalg.krylov import backward_error

pytest.importorskip("pyamg")


def operator(N: int, convection: float) -> sp.csr_matrix:
    """``-Δ`` on an N×N grid plus ``convection`` times an upwind x-derivative (non-symmetric)."""
    h = 1.0 / (N + 1)
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N))
    B = sp.diags([-1.0, 1.0], [-1, 0], shape=(N, N))
    L = (sp.kron(T, sp.eye(N)) + sp.kron(sp.eye(N), T)) / h**2 + convection * sp.kron(sp.eye(N), B) / h
    return L.tocsr()


def program(N: int, convection: float):
    """``D u + ½ sin(u) − λ eᵘ·u² /10 − f = 0`` (intermediates: matmul, sin, exp, products), output ``Σu/N²``."""
    D = operator(N, convection)
    prog = lp.Program(name="chain")
    lam = prog.input("lam"); f = prog.input("f", shape=(N * N,))
    u = prog.variable("u", shape=(N * N,))
    prog.residual(u, lp.matmul(D, u) + 0.5 * lp.sin(u) - lam * lp.exp(u) * u * u / 10 - f)
    prog.output(lp.sum(u) / N**2, name="J")
    return prog, D


def reference(D, lam, f):
    """``u`` by ``scipy.optimize.root`` and ``(∇_f, ∇_λ)`` by the implicit function theorem (dense)."""
    Dd, n = D.toarray(), D.shape[0]

    def jac(u):
        return Dd + np.diag(0.5 * np.cos(u) - lam * np.exp(u) * (u * u + 2 * u) / 10)
    sol = so.root(lambda u: Dd @ u + 0.5 * np.sin(u) - lam * np.exp(u) * u * u / 10 - f, np.zeros(n),
                  jac=jac, tol=1e-13)
    assert sol.success
    u = sol.x
    mu = np.linalg.solve(jac(u).T, np.full(n, 1.0 / n))
    return u, mu, float(mu @ (np.exp(u) * u * u / 10))


@pytest.fixture(scope="module")
def solved():
    N, lam = 16, 0.5
    f = np.random.default_rng(3).random(N * N) * 4
    prog, D = program(N, convection=20.0)
    return prog, D, lam, f, reference(D, lam, f)


@pytest.mark.parametrize("solver", ["amg", "direct"])
def test_chain_schur_equals_the_schur_complement_of_the_assembled_block(solved, solver):
    prog, D, lam, f, _ = solved
    sol = prog.solve(lam=lam, f=f, linear_solver=solver)
    blk = sol.schedule.blocks[0]
    state = sol._states[id(blk)]
    lin = linearize(blk, sol._vals, state.ans)
    S = chain_schur(blk, lin)
    ref = Partition(blk, matrix(blk, sol._vals, state)).schur()
    assert S.shape == ref.shape and abs(S - ref).max() <= 1e-12 * abs(ref).max()
    assert not np.allclose(S.toarray(), S.toarray().T)        # the convection term: non-symmetric


def test_chain_partition_solves_the_whole_block_like_a_dense_solve(solved):
    """``rhs`` + an ``S`` solve + ``expand`` against ``numpy.linalg.solve`` of ``A_SS`` and ``A_SSᵀ``;
    ``check`` is the backward error of the assembled ``A_SS`` (``krylov.backward_error``) at any answer."""
    prog, D, lam, f, _ = solved
    sol = prog.solve(lam=lam, f=f, linear_solver="amg")
    blk = sol.schedule.blocks[0]
    state = sol._states[id(blk)]
    lin = linearize(blk, sol._vals, state.ans)
    part, S = ChainPartition(blk, lin), chain_schur(blk, lin).toarray()
    A = matrix(blk, sol._vals, state).toarray()
    b = np.random.default_rng(5).standard_normal(A.shape[0])
    for trans in (False, True):
        xt = np.linalg.solve(S.T if trans else S, part.rhs(b, trans))
        x = part.expand(xt, b, trans)
        ref = np.linalg.solve(A.T if trans else A, b)
        assert np.allclose(x, ref, rtol=1e-9, atol=1e-11 * np.max(np.abs(ref)))
        Am = sp.csr_matrix(A.T if trans else A)
        for y in (xt, xt * 1.01):      # the componentwise backward error of the whole block's answer
            assert part.check(b, trans)(y) == pytest.approx(backward_error(Am, b)(part.expand(y, b, trans)),
                                                            rel=1e-6)
        assert part.check(b, trans)(xt) <= 1e-9 and part.check(b, trans)(xt * 1.01) > 1e-4


def test_the_amg_path_matches_scipy_root_and_the_implicit_function_theorem(solved, monkeypatch):
    """Newton on ``S`` (formed by the chain rule, gmres: non-symmetric) and the adjoint on ``S`` at the
    solution, no ``A_SS`` assembled; a second solve at other inputs agrees as well."""
    prog, D, lam, f, (u, mu, glam) = solved
    monkeypatch.setattr(amg, "AMG_MIN", 100)
    for ff in (f * 0.5, f):
        sol = prog.solve(lam=lam, f=ff, linear_solver="amg")
    blk = sol.schedule.blocks[0]
    assert sol._states[id(blk)].A is None
    assert np.allclose(sol.values["u"], u, rtol=1e-9, atol=1e-12)
    assert np.allclose(sol.grad["f"], mu, rtol=1e-8, atol=1e-12 * np.max(np.abs(mu)))
    assert float(sol.grad["lam"]) == pytest.approx(glam, rel=1e-8)


def test_two_state_members_take_the_assembled_path():
    """``chain_schur`` declines a block with two residual members; that block's AMG solve (Partition
    on the assembled ``A_SS``) still gives the implicit function theorem's gradient."""
    N = 12
    D = operator(N, convection=0.0)
    prog = lp.Program(name="two")
    f = prog.input("f", shape=(N * N,))
    u = prog.variable("u", shape=(N * N,)); v = prog.variable("v", shape=(N * N,))
    prog.residual(u, lp.matmul(D, u) + 0.1 * lp.exp(v) - f)
    prog.residual(v, lp.matmul(D, v) - u)
    prog.output(lp.sum(v), name="J")
    f0 = np.random.default_rng(2).random(N * N)
    sol = prog.solve(f=f0, linear_solver="amg")
    blk = sol.schedule.blocks[0]
    assert chain_schur(blk, linearize(blk, sol._vals, sol._states[id(blk)].ans)) is None
    uu, vv = sol.values["u"], sol.values["v"]
    n, Dd = N * N, D.toarray()
    J = np.block([[Dd, np.diag(0.1 * np.exp(vv))], [-np.eye(n), Dd]])
    assert np.abs(Dd @ uu + 0.1 * np.exp(vv) - f0).max() <= 1e-9 * np.abs(f0).max()
    mu = np.linalg.solve(J.T, np.concatenate([np.zeros(n), np.ones(n)]))
    assert np.allclose(sol.grad["f"], mu[:n], rtol=1e-8, atol=1e-12 * np.abs(mu).max())
