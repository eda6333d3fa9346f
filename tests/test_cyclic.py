"""Cyclic blocks: forward methods, adjoint/tangent linear solvers, errors, against references.

References are independent of the block solvers: published values (Sellar, OpenMDAO), closed
forms (implicit scalar equations), dense numpy solves of hand-written Jacobians, and HIPS
autograd through the unrolled fixed-point iteration.
"""

import autograd.numpy as anp
import numpy as np
import pytest
import scipy.sparse as sp
from autograd import grad as ag_grad

import lagrangeprop as lp
from programs import SELLAR_GUESS, SELLAR_INPUTS, SELLAR_TOTALS, sellar_program
from lagrangeprop.linalg import amg
from lagrangeprop.blocks import policy as blocks
from lagrangeprop.blocks import linear
from lagrangeprop.blocks.assembly import block_jacobian
from lagrangeprop.blocks.layout import stack
from lagrangeprop.blocks.state import cache_of
from lagrangeprop.blocks.sweeps import matvec, rmatvec, rsweep, sweep
from lagrangeprop.linalg.krylov import krylov
from lagrangeprop.options import SolveOptions

METHODS = ["auto", "newton", "newton-krylov", "fixed-point", "anderson"]
LINEAR = ["auto", "direct", "gmres", "bicgstab"] + (["amg"] if amg.available() else [])
PATHS = [(m, s) for m in METHODS for s in LINEAR]


# ------------------------------------------------------------ the programs
def sellar():
    return sellar_program(), dict(SELLAR_INPUTS), dict(SELLAR_GUESS)


def _sellar_ref(inputs):
    return SELLAR_TOTALS


def linear_cycle(n=6, seed=0):
    """z = A z + B x (explicit, contractive), out = <c, z>: grad = Bᵀ (I - A)⁻ᵀ c."""
    r = np.random.default_rng(seed)
    A = r.standard_normal((n, n)) * 0.3 / np.sqrt(n); B = r.standard_normal((n, 3)); c = r.standard_normal(n)
    prog = lp.Program(name="linear")
    x = prog.input("x", shape=(3,)); z = prog.variable("z", shape=(n,))
    prog.define(z, A @ z + B @ x)
    prog.output(lp.sum(c * z), name="o")
    ref = B.T @ np.linalg.solve((np.eye(n) - A).T, c)
    return prog, {"x": r.standard_normal(3)}, {}, ref


def deq(n=300, m=5, seed=1):
    """z = tanh(W z + U x) with sparse W (big enough for auto's iterative paths)."""
    r = np.random.default_rng(seed)
    W = sp.random(n, n, density=0.01, random_state=seed, format="csr")
    W.data = r.standard_normal(W.nnz) * 0.5 / np.sqrt(n * 0.01)
    U = r.standard_normal((n, m)) / np.sqrt(m)
    prog = lp.Program(name="deq")
    x = prog.input("x", shape=(m,)); z = prog.variable("z", shape=(n,))
    prog.define(z, lp.tanh(W @ z + U @ x))
    prog.output(lp.sum(z ** 2), name="o")
    Wd = W.toarray()

    def unrolled(xv):          # autograd through the fixed-point iteration, run to convergence
        zz = anp.zeros(n)
        for _ in range(80):
            zz = anp.tanh(anp.dot(Wd, zz) + anp.dot(U, xv))
        return anp.sum(zz ** 2)
    xv = r.standard_normal(m)
    return prog, {"x": xv}, {}, ag_grad(unrolled)(xv)


def residual_chain(n=5, seed=2):
    """K u + u³ = x (residual block, K SPD tridiagonal), out = Σ sin(u): dense reference."""
    K = np.diag(np.full(n, 3.0)) + np.diag(np.full(n - 1, -1.0), 1) + np.diag(np.full(n - 1, -1.0), -1)
    prog = lp.Program(name="residual")
    x = prog.input("x", shape=(n,)); u = prog.variable("u", shape=(n,))
    prog.residual(u, K @ u + u ** 3 - x)
    prog.output(lp.sum(lp.sin(u)), name="o")
    xv = np.random.default_rng(seed).standard_normal(n)
    uu = np.zeros(n)
    for _ in range(50):                      # plain numpy Newton
        uu -= np.linalg.solve(K + np.diag(3 * uu ** 2), K @ uu + uu ** 3 - xv)
    ref = np.linalg.solve((K + np.diag(3 * uu ** 2)).T, np.cos(uu))
    return prog, {"x": xv}, {}, ref


def mixed(seed=3):
    """DAG -> explicit block -> DAG -> residual block -> output (two blocks)."""
    prog = lp.Program(name="mixed")
    x = prog.input("x")
    a = lp.exp(0.3 * x)
    p = prog.variable("p"); q = prog.variable("q")
    prog.define(p, 0.5 * lp.cos(q) + a)
    prog.define(q, 0.25 * lp.sin(p) - x)
    b = p * q + x
    w = prog.variable("w")
    prog.residual(w, w ** 3 + w - b)
    prog.output(w ** 2 + p, name="o")
    xv = 0.7

    def f(xx):                               # the same program in autograd, unrolled
        aa = anp.exp(0.3 * xx); pp, qq = 0.0, 0.0
        for _ in range(200):
            pp = 0.5 * anp.cos(qq) + aa; qq = 0.25 * anp.sin(pp) - xx
        bb = pp * qq + xx; ww = 0.0
        for _ in range(60):
            ww = ww - (ww ** 3 + ww - bb) / (3 * ww ** 2 + 1)
        return ww ** 2 + pp
    return prog, {"x": xv}, {}, np.atleast_1d(ag_grad(f)(xv))


def _ref(case):
    if case == "sellar":
        prog, inputs, guess = sellar()
        return prog, inputs, guess, _sellar_ref(inputs)
    return {"linear": linear_cycle, "deq": deq, "residual": residual_chain, "mixed": mixed}[case]()


CASES = ["sellar", "linear", "deq", "residual", "mixed"]


@pytest.fixture(scope="module")
def programs():
    return {c: _ref(c) for c in CASES}


def _grad(sol):
    return np.concatenate([np.atleast_1d(sol.grad[k]) for k in sol.schedule.input_names])


# -------------------------------------------- shared suite: every solver path
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method,linear_solver", PATHS)
def test_every_path_gives_the_reference_gradient(programs, case, method, linear_solver):
    prog, inputs, guess, ref = programs[case]
    sol = prog.solve(**inputs, guess=guess, method=method, linear_solver=linear_solver)
    g = _grad(sol)
    if case == "sellar":   # OpenMDAO's published totals (8 decimals)
        assert np.max(np.abs(g - ref)) < 1e-8
    else:
        assert np.allclose(g, ref, rtol=1e-8, atol=1e-10 * max(1.0, np.max(np.abs(ref))))
    kkt = sol.kkt()
    assert kkt["primal"] <= 1e-10 and kkt["adjoint"] <= 1e-9


@pytest.mark.parametrize("case", ["deq", "mixed", "residual"])
def test_paths_agree_on_all_multipliers(programs, case):
    prog, inputs, guess, _ = programs[case]
    base = prog.solve(**inputs, guess=guess, method="newton", linear_solver="direct")
    for method, linear_solver in PATHS:
        sol = prog.solve(**inputs, guess=guess, method=method, linear_solver=linear_solver)
        for k, v in base.multipliers.items():
            assert np.allclose(sol.multipliers[k], v, rtol=1e-8, atol=1e-11), (method, linear_solver, k)


# -------------------------------------------------- implicit scalar equations
@pytest.mark.parametrize("xv", [-3.0, 0.0, 0.5, 2.0, 10.0])
@pytest.mark.parametrize("method", ["auto", "newton", "newton-krylov"])
def test_cubic_implicit_closed_form(xv, method):
    prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
    prog.residual(w, w ** 3 + w - x); prog.output(w * 1.0, name="o")
    sol = prog.solve(x=xv, method=method)
    wv = float(sol.values["w"])
    assert abs(wv ** 3 + wv - xv) < 1e-10 * max(1, abs(xv))
    assert float(sol.grad["x"]) == pytest.approx(1 / (3 * wv ** 2 + 1), rel=1e-12)
    # the multiplier of a residual node is ∂o/∂ε for w³ + w - x = ε: +1/(3w²+1)
    assert float(sol.multipliers["w"]) == pytest.approx(1 / (3 * wv ** 2 + 1), rel=1e-12)


def test_lambert_w_and_kepler():
    from scipy.special import lambertw
    prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
    prog.residual(w, w * lp.exp(w) - x); prog.output(w * 1.0, name="o")
    sol = prog.solve(x=2.0, guess={"w": 1.0})
    W = float(lambertw(2.0).real)
    assert float(sol.values["w"]) == pytest.approx(W, rel=1e-12)
    assert float(sol.grad["x"]) == pytest.approx(W / (2.0 * (1 + W)), rel=1e-10)
    # Kepler: E - e sin E = M, dE/dM = 1/(1 - e cos E), dE/de = sin E/(1 - e cos E)
    prog = lp.Program(); M = prog.input("M"); e = prog.input("e"); E = prog.variable("E")
    prog.residual(E, E - e * lp.sin(E) - M); prog.output(E * 1.0, name="o")
    sol = prog.solve(M=1.2, e=0.6, method="newton")
    Ev = float(sol.values["E"])
    assert float(sol.grad["M"]) == pytest.approx(1 / (1 - 0.6 * np.cos(Ev)), rel=1e-12)
    assert float(sol.grad["e"]) == pytest.approx(np.sin(Ev) / (1 - 0.6 * np.cos(Ev)), rel=1e-12)


# ------------------------------------------------- linear-algebra identities
def _solved_block(prog, inputs, guess, method="newton"):
    sol = prog.solve(**inputs, guess=guess, method=method)
    blk = max(sol.schedule.blocks, key=lambda b: b.size)
    return sol, blk, sol._states[id(blk)]


@pytest.mark.parametrize("case", ["deq", "mixed", "residual", "sellar"])
def test_matrix_free_products_match_assembled_jacobian(programs, case, rng):
    prog, inputs, guess, _ = programs[case]
    sol, blk, st = _solved_block(prog, inputs, guess)
    A = block_jacobian(blk, sol._vals, st.ans).toarray()
    v, w = rng.standard_normal(blk.size), rng.standard_normal(blk.size)
    assert np.allclose(matvec(blk, sol._vals, st.ans, v), A @ v, atol=1e-12)
    assert np.allclose(rmatvec(blk, sol._vals, st.ans, w), A.T @ w, atol=1e-12)
    if blk.explicit:   # Gauss–Seidel sweeps: M = I - J_L (earlier members), N = M - A
        order = np.concatenate([np.full(s, k) for k, s in enumerate(blk.sizes)])
        Mmat = np.where(order[:, None] > order[None, :], A, 0.0) + np.eye(blk.size)
        N = Mmat - A
        assert np.allclose(sweep(blk, sol._vals, st.ans, v), np.linalg.solve(Mmat, v), atol=1e-10)
        assert np.allclose(rsweep(blk, sol._vals, st.ans, w), np.linalg.solve(Mmat.T, w), atol=1e-10)
        assert np.allclose(sweep(blk, sol._vals, st.ans, v, lower=False), np.linalg.solve(Mmat, N @ v), atol=1e-10)
        assert np.allclose(rsweep(blk, sol._vals, st.ans, w, lower=False),
                           np.linalg.solve(Mmat.T, N.T @ w), atol=1e-10)


@pytest.mark.parametrize("case", ["deq", "mixed", "residual"])
@pytest.mark.parametrize("method,linear_solver", PATHS)
def test_adjoint_and_tangent_are_transposes(programs, case, method, linear_solver, rng):
    """⟨A⁻ᵀ b1, b2⟩ = ⟨b1, A⁻¹ b2⟩ and A ż = b against the assembled A_SS, every path."""
    prog, inputs, guess, _ = programs[case]
    sol, blk, st = _solved_block(prog, inputs, guess, method)
    opts = SolveOptions.make(method=method, linear_solver=linear_solver)
    b1 = [rng.standard_normal(s) for s in blk.shapes]
    b2 = [rng.standard_normal(s) for s in blk.shapes]
    lam = stack(blk, blocks.solve_adjoint(blk, sol._vals, b1, st, opts))
    zdot = stack(blk, blocks.solve_tangent(blk, sol._vals, b2, st, opts))
    A = block_jacobian(blk, sol._vals, st.ans)
    assert np.linalg.norm(A @ zdot - stack(blk, b2)) <= 1e-9 * np.linalg.norm(stack(blk, b2))
    assert np.linalg.norm(A.T @ lam - stack(blk, b1)) <= 1e-9 * np.linalg.norm(stack(blk, b1))
    assert np.dot(lam, stack(blk, b2)) == pytest.approx(np.dot(stack(blk, b1), zdot), rel=1e-9)


# ----------------------------------------------------------------- auto
def test_auto_chooses_sweeps_for_contractive_sparse_blocks(programs):
    prog, inputs, guess, _ = programs["deq"]
    sol, blk, st = _solved_block(prog, inputs, guess, "auto")
    assert blk.size > blocks.DIRECT_MAX_UNKNOWNS
    assert st.method in ("fixed-point", "anderson") and st.lu is None   # no factorization at all
    assert blocks.choose_linear_solver(blk, sol._vals, st, SolveOptions()) in ("sweep", "gmres")


def test_auto_chooses_newton_and_direct_for_small_and_residual_blocks(programs):
    for case in ["sellar", "residual"]:
        prog, inputs, guess, _ = programs[case]
        sol, blk, st = _solved_block(prog, inputs, guess, "auto")
        assert st.method == "newton"
        assert blocks.choose_linear_solver(blk, sol._vals, st, SolveOptions()) == "direct"


def test_linear_block_factors_once():
    prog, inputs, guess, ref = linear_cycle(n=300)
    sol, blk, st = _solved_block(prog, inputs, guess, "newton")
    assert st.lu is not None and st.iterations == 1      # LU of iteration 0 reused at the solution
    assert np.allclose(_grad(sol), ref, rtol=1e-9)


def test_bratu_small_against_scipy(rng):
    N = 12; h = 1 / (N + 1)
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(N, N))
    L = (sp.kron(T, sp.eye(N)) + sp.kron(sp.eye(N), T)).tocsr() / h ** 2
    prog = lp.Program(); s = prog.input("s", shape=(N * N,)); mu = prog.input("mu")
    u = prog.variable("u", shape=(N * N,))
    prog.residual(u, L @ u - mu * lp.exp(u) - s)
    prog.output(h ** 2 * lp.sum(u ** 2), name="J")
    sv = rng.random(N * N)
    uu = np.zeros(N * N)
    for _ in range(30):
        uu -= sp.linalg.spsolve((L - sp.diags(2.0 * np.exp(uu))).tocsc(), L @ uu - 2.0 * np.exp(uu) - sv)
    lam = sp.linalg.spsolve((L - sp.diags(2.0 * np.exp(uu))).T.tocsc(), 2 * h ** 2 * uu)
    for ls in LINEAR:
        sol = prog.solve(s=sv, mu=2.0, linear_solver=ls)
        assert np.allclose(sol.values["u"], uu, rtol=1e-10, atol=1e-12)
        assert np.allclose(sol.grad["s"], lam, rtol=1e-8, atol=1e-14)
        assert float(sol.grad["mu"]) == pytest.approx(float(lam @ np.exp(uu)), rel=1e-8)


def test_sparse_matmul_operator_records_matmul():
    W = sp.random(6, 6, density=0.4, random_state=0, format="csr") * 0.3
    for Wm in (W, sp.csr_array(W), W.tocsc()):
        prog = lp.Program(); x = prog.input("x", shape=(6,)); z = prog.variable("z", shape=(6,))
        e = Wm @ z
        assert prog.graph.nodes[e.name]["op"] == "matmul"
        prog.define(z, lp.tanh(e + x)); prog.output(lp.sum(z), name="o")
        sol = prog.solve(x=np.ones(6))
        zz = np.asarray(sol.values["z"])
        D = np.diag(1 - zz ** 2)
        ref = np.linalg.solve((np.eye(6) - D @ W.toarray()).T, np.ones(6))
        assert np.allclose(sol.grad["x"], D @ ref, rtol=1e-10)


# ----------------------------------------------------------------- errors
def test_singular_self_loop_names_the_node():
    prog = lp.Program(); x = prog.input("x"); y = prog.variable("y")
    prog.define(y, y + x); prog.output(y * 2.0, name="o")
    with pytest.raises(lp.SingularSystemError, match=r"block \[y\].*'?y'? .*zero column") as exc:
        prog.solve(x=1.0)
    assert exc.value.nodes == ("y",) and exc.value.rcond == 0.0


def test_dependent_equations_are_named():
    prog = lp.Program(); x = prog.input("x")
    a = prog.variable("a"); b = prog.variable("b")
    prog.residual(a, a + b - x)
    prog.residual(b, 2 * a + 2 * b - 2 * x)
    prog.output(a * b, name="o")
    dependent = r"equations of a, b, .*are linearly dependent \(c\[a\] - 0.5·c\[b\]"
    with pytest.raises(lp.SingularSystemError, match=dependent) as exc:
        prog.solve(x=1.0)
    assert {"a", "b"} <= set(exc.value.nodes)
    assert "not determined" in str(exc.value)


def test_singular_at_the_solution_is_caught_by_the_adjoint():
    # w³ = x has the root w = 0 at x = 0 where ∂r/∂w = 3w² = 0
    prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
    prog.residual(w, w ** 3 - x); prog.output(w * 1.0, name="o")
    with pytest.raises(lp.SingularSystemError, match=r"block \[w, .*at the solution: variable\(s\) w enter none"):
        prog.solve(x=0.0, guess={"w": 0.0})


def test_divergent_blocks_raise_convergence_error():
    prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
    prog.residual(w, w ** 2 + 1.0 + 0.0 * x); prog.output(w * 1.0, name="o")   # no real root
    with pytest.raises(lp.ConvergenceError, match=r"block \[w, .*\] did not converge with newton") as exc:
        prog.solve(x=1.0, guess={"w": 0.5}, maxiter=30)
    assert exc.value.nodes[0] == "w" and exc.value.iterations == 30 and len(exc.value.history) == 31
    prog = lp.Program(); x = prog.input("x"); z = prog.variable("z")
    prog.define(z, 2.0 * z + x); prog.output(z * 1.0, name="o")
    assert float(prog.solve(x=1.0, method="newton").values["z"]) == pytest.approx(-1.0)
    with pytest.raises(lp.ConvergenceError, match=r"\[z, .*fixed-point in 40 iterations") as exc:
        prog.solve(x=1.0, method="fixed-point", maxiter=40)
    assert exc.value.history[-1] > 1e6 * exc.value.history[0]     # the sweep diverges
    # Anderson mixing solves a linear fixed point even when the sweep expands
    assert float(prog.solve(x=1.0, method="anderson").values["z"]) == pytest.approx(-1.0)


def test_non_converged_forward_returns_no_multipliers():
    prog, inputs, guess = sellar()
    with pytest.raises(lp.ConvergenceError, match="y1, y2"):
        prog.solve(**inputs, method="fixed-point", maxiter=3)


def test_krylov_that_misses_the_tolerance_raises(rng):
    n = 200
    A = sp.diags(np.logspace(0, 12, n)) + sp.random(n, n, density=0.05, random_state=1)
    with pytest.raises(lp.ConvergenceError, match="gmres did not converge.*block \\[a\\]"):
        krylov(A, rng.standard_normal(n), "gmres", names=["a"], maxiter=5)


def test_non_finite_residual_in_a_block():
    prog = lp.Program(); x = prog.input("x"); w = prog.variable("w")
    prog.residual(w, lp.log(w) - x); prog.output(w * 1.0, name="o")
    with pytest.raises(lp.ConvergenceError, match="non-finite"):
        prog.solve(x=1.0)            # starts at w = 0: log(0)
    assert float(prog.solve(x=1.0, guess={"w": 1.0}).values["w"]) == pytest.approx(np.e)


# ------------------------------------------- assembly and factorization paths
@pytest.mark.parametrize("case", CASES)
def test_dense_and_sparse_assembly_agree_and_match_products(programs, case, rng):
    """The cached-pattern assembly (dense and CSC) equals A_SS from the matrix-free products
    applied to unit vectors, and stays right when the block is solved again elsewhere."""
    from lagrangeprop.blocks.assembly import assemble
    from lagrangeprop.blocks.linearization import linearize
    prog, inputs, guess, _ = programs[case]
    for shift in (0.0, 0.1):          # the second solve reuses the block's cached pattern
        point = {k: np.asarray(v) + shift for k, v in inputs.items()}
        sol, blk, st = _solved_block(prog, point, guess)
        lin = linearize(blk, sol._vals, st.ans)
        D = assemble(blk, lin, dense=True)
        S = assemble(blk, lin).toarray()
        cols = np.stack([matvec(blk, sol._vals, st.ans, e) for e in np.eye(blk.size)], axis=1)
        assert np.array_equal(D, S)
        assert np.allclose(D, cols, rtol=1e-13, atol=1e-13)


def test_dense_lu_matches_splu_and_flags_near_singular(rng):
    from lagrangeprop.blocks.eliminate import factor
    from lagrangeprop.linalg.direct import DenseLU
    blk = sellar_program().compile().blocks[0]
    n = blk.size
    A = rng.standard_normal((n, n)) + n * np.eye(n)
    b = rng.standard_normal(n)
    dense, sparse = factor(blk, A, "here"), factor(blk, sp.csc_matrix(A), "here")
    assert isinstance(dense, DenseLU)
    for trans in ("N", "T"):
        assert np.allclose(dense.solve(b, trans=trans), sparse.solve(b, trans=trans), rtol=1e-12)
    assert np.allclose(A.T @ dense.solve(b, trans="T"), b, atol=1e-12)
    B = A.copy(); B[:, 1] = 1e-17 * B[:, 0]       # numerically singular: rcond < 1e-14
    with pytest.raises(lp.SingularSystemError, match="numerically singular"):
        factor(blk, B, "here")
    B[:, 1] = 0.0                                  # exactly singular: a zero column named
    with pytest.raises(lp.SingularSystemError, match=r"zero column") as exc:
        factor(blk, B, "here")
    assert exc.value.rcond == 0.0


def test_constant_sparse_jacobian_is_reused_but_values_are_not(rng):
    """W @ z: the local Jacobian W is kept between solves; the elementwise partials are not."""
    n = 40
    W = sp.random(n, n, density=0.1, random_state=5, format="csr") * 0.3
    prog = lp.Program(); x = prog.input("x", shape=(n,)); z = prog.variable("z", shape=(n,))
    prog.define(z, lp.tanh(W @ z + x)); prog.output(lp.sum(z ** 2), name="o")
    for seed in (1, 2):
        xv = np.random.default_rng(seed).standard_normal(n)
        for method in ("newton", "fixed-point"):
            sol = prog.solve(x=xv, method=method)
            zz = sol.values["z"]
            a = 1 - zz ** 2
            lam = np.linalg.solve((np.eye(n) - (a[:, None] * W.toarray())).T, 2 * zz)
            assert np.allclose(sol.grad["x"], a * lam, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n,m", [(1, 0), (1, 3), (5, 40), (60, 500), (2000, 3000)])
def test_csc_slots_equal_a_global_sort(n, m, rng):
    """The assembly's CSC structure and entry slots equal those of np.unique on col·n + row keys."""
    from lagrangeprop.blocks.assembly import csc_slots
    rows, cols = rng.integers(0, n, m), rng.integers(0, n, m)
    indptr, indices, slot = csc_slots(rows, cols, n)
    uniq, ref = np.unique(cols * n + rows, return_inverse=True)
    assert np.array_equal(indices, uniq % n) and np.array_equal(slot, ref.ravel())
    assert np.array_equal(indptr, np.concatenate([[0], np.cumsum(np.bincount(uniq // n, minlength=n))]))


@pytest.mark.parametrize("linear_solver", ["gmres", "bicgstab"])
def test_krylov_adjoint_warm_starts_from_the_last_multipliers(linear_solver, monkeypatch):
    """A residual block's Krylov adjoint starts from the previous answer when b barely changed;
    the multipliers still match a dense solve at every point."""
    prog, inputs, guess, ref = residual_chain(n=5)
    starts = []
    real = linear.krylov

    def spy(*args, **kw):
        starts.append(kw.get("x0"))
        return real(*args, **kw)
    monkeypatch.setattr(linear, "krylov", spy)
    cache_of(prog.compile().blocks[0]).warm_adjoint = None
    first = prog.solve(**inputs, linear_solver=linear_solver)
    again = prog.solve(**inputs, linear_solver=linear_solver)
    assert starts[0] is None and starts[-1] is not None          # cold, then warm
    for sol in (first, again):
        assert np.allclose(sol.grad["x"], ref, rtol=1e-9, atol=1e-12)
    far = {"x": -5.0 * np.asarray(inputs["x"])}                   # far away: a cold start again
    sol = prog.solve(**far, linear_solver=linear_solver)
    dense = prog.solve(**far, linear_solver="direct")
    assert np.allclose(sol.grad["x"], dense.grad["x"], rtol=1e-9, atol=1e-12)


def test_report_names_the_block_solvers(programs):
    prog, inputs, guess, _ = programs["deq"]
    text = prog.solve(**inputs, guess=guess).report()
    assert "cyclic blocks" in text and "forward fixed-point" in text and "adjoint transposed Gauss–Seidel" in text
    assert "adjoint gmres" in prog.solve(**inputs, guess=guess, linear_solver="gmres").report()
    prog, inputs, guess, _ = programs["sellar"]
    line = prog.solve(**inputs, guess=guess).report().splitlines()[-1]
    assert line.strip().startswith("[y1, y2") and "adjoint elimination onto the Schur complement" in line
    acyclic = lp.trace(lambda x: lp.sin(x) * 2.0, x=1.0)
    assert "cyclic blocks" not in acyclic.solve(x=1.0).report()
