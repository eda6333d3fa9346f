"""Large blocks (issue 16), round 4: the adjoint's per-equation check on the state's rows only.

``ChainPartition.check`` computes ``|A_SSᵀλ − b|_i / (|A_SS|ᵀ|λ| + |b|)_i`` on the state's equations and
certifies the intermediates' rows by the rounding bound of the substitution that solves them. The
references: :func:`lagrangeprop.linalg.krylov.backward_error` of the *assembled* ``A_SS`` (every row), a
dense ``numpy.linalg.solve``, and ``scipy.optimize.root`` plus the implicit function theorem.
"""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import lagrangeprop as lp
from lagrangeprop.blocks.eliminate import ChainPartition, chain_schur
from lagrangeprop.blocks.linear import matrix
from lagrangeprop.blocks.linearization import linearize
from lagrangeprop.linalg import amg
from lagrangeprop.linalg.krylov import LIN_ACCEPT, backward_error
from test_large_blocks import bratu, ift_gradient, scipy_root

pytest.importorskip("pyamg")
EPS = np.finfo(np.float64).eps


@pytest.fixture(scope="module")
def small():
    """A solved 12×12 Bratu (AMG path), its partials at the solution and the assembled ``A_SS``."""
    N, lam = 12, 1.5
    f = np.random.default_rng(7).random(N * N) * 2
    prog, L, h = bratu(N)
    sol = prog.solve(lam=lam, f=f, linear_solver="amg")
    blk = sol.schedule.blocks[0]
    state = sol._states[id(blk)]
    lin = linearize(blk, sol._vals, state.ans)
    A = sp.csr_matrix(matrix(blk, sol._vals, state))
    return prog, L, h, lam, f, blk, lin, A


def exact(part, S, b, trans):
    return np.linalg.solve(S.T if trans else S, part.rhs(b, trans))


@pytest.mark.parametrize("trans", [True, False])
def test_the_state_rows_carry_the_whole_backward_error(small, trans):
    """At the solution and at perturbed answers the check is the assembled ``A_SS``'s backward error on
    the state's rows, and that on the intermediates' rows is within the rounding bound ``γ_p``."""
    *_, blk, lin, A = small
    part, S = ChainPartition(blk, lin), chain_schur(blk, lin).toarray()
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    Am = A.T if trans else A
    t = part.t
    inter = np.setdiff1d(np.arange(A.shape[0]), t)
    xt = exact(part, S, b, trans)
    for y in (xt, xt * (1 + 1e-7)):
        x = part.expand(y, b, trans)
        q = np.abs(Am @ x - b) / (abs(Am) @ np.abs(x) + np.abs(b))
        assert part.check(b, trans)(y) == pytest.approx(q[t].max(), rel=1e-6, abs=4 * EPS)
        assert q[inter].max() <= part._rounding(trans) <= 1e-14       # the bound the check relies on
    assert part.check(b, trans)(xt) <= 1e-11       # a dense solve of S: accepted


@pytest.mark.parametrize("trans", [True, False])
@pytest.mark.parametrize("size", [1e-6, 1e-8])
def test_a_corrupted_answer_is_rejected(small, trans, size):
    """A few entries of an exact ``λ_T`` perturbed (relative ``size``): the check exceeds ``LIN_ACCEPT``
    and agrees with the assembled ``A_SS``'s backward error of the whole block (every row)."""
    *_, blk, lin, A = small
    part, S = ChainPartition(blk, lin), chain_schur(blk, lin).toarray()
    rng = np.random.default_rng(2)
    b = rng.standard_normal(A.shape[0])
    xt = exact(part, S, b, trans)
    bad = xt.copy()
    hit = rng.choice(xt.size, 3, replace=False)
    bad[hit] *= 1 + size
    err = part.check(b, trans)(bad)
    ref = backward_error(A.T if trans else A, b)(part.expand(bad, b, trans))
    assert err > LIN_ACCEPT and err == pytest.approx(ref, rel=1e-6)
    bad[hit[0]] = np.nan
    assert np.isnan(part.check(b, trans)(bad))


def test_the_full_check_is_taken_when_the_rounding_bound_is_too_weak(small, monkeypatch):
    """With the bound forced above 1e-12 (a row summing very many terms) every row is computed: the
    value is then the assembled ``A_SS``'s backward error over the whole block."""
    *_, blk, lin, A = small
    part, S = ChainPartition(blk, lin), chain_schur(blk, lin).toarray()
    monkeypatch.setattr(ChainPartition, "_rounding", lambda self, trans: 1.0)
    b = np.random.default_rng(3).standard_normal(A.shape[0])
    y = exact(part, S, b, True) * (1 + 1e-9)
    assert part.check(b, True)(y) == pytest.approx(backward_error(A.T, b)(part.expand(y, b, True)), rel=1e-6)


def test_a_sum_over_a_large_intermediate_counts_its_terms():
    """``Σ_i a_i`` inside the block adds ``n`` terms to its row: the bound is ``n·u``-sized."""
    n = 50
    prog = lp.Program(name="sum")
    x = prog.input("x", shape=(n,))
    u = prog.variable("u", shape=(n,))
    prog.residual(u, 3.0 * u + 0.1 * lp.sum(lp.sin(u)) - x)
    prog.output(lp.sum(u), name="J")
    sol = prog.solve(x=np.linspace(0, 1, n), linear_solver="amg")
    blk = sol.schedule.blocks[0]
    lin = linearize(blk, sol._vals, sol._states[id(blk)].ans)
    part = ChainPartition(blk, lin)
    assert part._rounding(False) >= n * EPS / 2        # the sum's row: n terms, untransposed


def test_the_adjoint_rejects_a_krylov_answer_that_is_wrong(small, monkeypatch):
    """Every full-accuracy Krylov answer corrupted in three entries: the adjoint raises
    ``ConvergenceError`` (a ``LagrangePropError``) instead of returning a wrong gradient."""
    prog, L, h, lam, f, *_ = small
    monkeypatch.setattr(amg, "AMG_MIN", 10)
    real = {k: getattr(spla, k) for k in ("cg", "gmres")}

    def corrupt(kind):
        def solve(A, b, *args, **kw):
            x, info = real[kind](A, b, *args, **kw)
            if kw.get("rtol", 1.0) <= 1e-9:       # a full-accuracy solve (Newton's loose steps pass)
                x = x.copy()
                x[[1, 7, 20]] *= 1 + 1e-6
            return x, info
        return solve
    for kind in real:
        monkeypatch.setattr(spla, kind, corrupt(kind))
    with pytest.raises(lp.ConvergenceError):
        prog.solve(lam=lam, f=f * 1.1, linear_solver="amg")


@pytest.mark.parametrize("solver", ["amg", "auto"])
def test_the_gradient_matches_scipy_root_and_the_implicit_function_theorem(small, solver, monkeypatch):
    """A cold and a warm solve (the kept hierarchy's symmetry passed to the adjoint, ``Lᵀ`` never
    copied) give ``scipy.optimize.root``'s ``u`` and the implicit function theorem's gradient."""
    prog, L, h, lam, f, *_ = small
    monkeypatch.setattr(amg, "AMG_MIN", 10)
    for ff in (f * 0.7, f):
        sol = prog.solve(lam=lam, f=ff, linear_solver=solver)
    u = scipy_root(L, lam, f)
    mu, glam = ift_gradient(L, h, lam, u)
    blk = sol.schedule.blocks[0]
    assert sol._states[id(blk)].A is None                  # the chain-rule path: no A_SS
    assert all(e.JT is None for row in sol._states[id(blk)].lin.edges for e in row)
    assert np.allclose(sol.values["u"], u, rtol=1e-9, atol=1e-12)
    assert np.allclose(sol.grad["f"], mu, rtol=1e-8, atol=1e-12 * np.abs(mu).max())
    assert float(sol.grad["lam"]) == pytest.approx(glam, rel=1e-8)
