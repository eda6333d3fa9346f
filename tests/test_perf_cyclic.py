"""Fast paths of the cyclic blocks (issue 6): warm-started iterative adjoints, the fused
Gauss–Seidel sweeps, the cheap residual check after a sweep, the CSR product kernel.

Every result is compared with an independent reference: dense numpy solves of the assembled
``A_SS`` (or of the hand-written Jacobian), and the unchanged slow paths (``method="newton"``,
``linear_solver="direct"``).
"""

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.linalg import solve_triangular
from scipy.sparse.linalg import splu

import lagrangeprop as lp
from lagrangeprop.linalg import stationary as linsolve
from lagrangeprop.blocks.assembly import block_jacobian
from lagrangeprop.blocks.fixed_point import _feedback
from lagrangeprop.blocks.kernels import spmatmul as _spmatmul
from lagrangeprop.blocks.layout import stack
from lagrangeprop.blocks.linearization import linearize
from lagrangeprop.blocks.state import cache_of
from lagrangeprop.blocks.sweeps import rsweep_affine, sweep_affine, sweep_solve
from lagrangeprop.linalg.stationary import stationary


def deq(n=300, seed=0, scale=0.5):
    """z = tanh(W z + U x), W sparse with ||W||∞ = scale; loss ½||z||² (the benchmark's program)."""
    r = np.random.default_rng(seed)
    W = sp.random(n, n, density=5.0 / n, random_state=r, format="csr")
    W.data = r.standard_normal(W.nnz)
    W = (W * (scale / np.max(np.abs(W).sum(axis=1)))).tocsr()
    U = r.standard_normal((n, 4))
    prog = lp.Program(name="deq")
    x = prog.input("x", shape=(4,)); z = prog.variable("z", shape=(n,))
    prog.define(z, lp.tanh(lp.matmul(W, z) + U @ x))
    prog.output(0.5 * lp.sum(z * z), name="loss")
    return prog, W, U


def deq_grad(W, U, z):
    """∇_x loss by a dense solve: (I - diag(a) W)ᵀ w = z, grad = Uᵀ (a w), a = 1 - z²."""
    a = 1.0 - z * z
    w = splu(sp.csc_matrix((sp.identity(z.size) - sp.diags(a) @ W).T)).solve(z)
    return U.T @ (a * w)


class Count:
    """Counts the sweeps of every stationary iteration (wraps linsolve.stationary)."""

    def __init__(self, monkeypatch):
        self.sweeps = []
        orig = linsolve.stationary

        def counted(F, x0, residual, **kw):
            n = [0]

            def F2(x):
                n[0] += 1
                return F(x)
            try:
                return orig(F2, x0, residual, **kw)
            finally:
                self.sweeps.append(n[0])
        monkeypatch.setattr(linsolve, "stationary", counted)


# ---------------------------------------------------------------- warm start
def test_repeated_solves_warm_start_the_adjoint_sweep(monkeypatch):
    prog, W, U = deq()
    count = Count(monkeypatch)
    x = np.array([0.3, -0.2, 0.5, 0.1])
    first = prog.solve(x=x)
    blk = first.schedule.blocks[0]
    assert first._states[id(blk)].method == "fixed-point"
    again = prog.solve(x=x)
    assert len(count.sweeps) == 2 and count.sweeps[1] < count.sweeps[0] and count.sweeps[1] <= 2
    ref = deq_grad(W, U, again.values["z"])
    for sol in (first, again):
        assert np.allclose(sol.grad["x"], ref, rtol=1e-9, atol=1e-12)
    assert np.allclose(again.grad["x"], first.grad["x"], rtol=1e-11, atol=1e-14)
    assert blk.cache.warm_adjoint is not None


def test_warm_start_from_other_inputs_gives_the_same_multipliers():
    """A warm start from the multipliers of other inputs changes only the iteration count."""
    prog, W, U = deq(seed=1)
    fresh, _, _ = deq(seed=1)
    r = np.random.default_rng(2)
    for _ in range(4):
        x = r.standard_normal(4)
        warm = prog.solve(x=x)
        cold = fresh.solve(x=x)
        cache_of(fresh.compile().blocks[0]).warm_adjoint = None
        assert np.allclose(warm.grad["x"], deq_grad(W, U, warm.values["z"]), rtol=1e-9, atol=1e-12)
        assert np.allclose(warm.grad["x"], cold.grad["x"], rtol=1e-9, atol=1e-12)
        for name in ("z", "x"):
            assert np.allclose(warm.multipliers[name], cold.multipliers[name], rtol=1e-9, atol=1e-12)


def test_warm_start_is_ignored_for_a_different_right_hand_side(monkeypatch):
    """A non-scalar output: seeds of opposite sign share nothing; the start falls back to zero."""
    n = 300
    prog, W, U = deq(n)
    prog2 = lp.Program(name="vec")
    x = prog2.input("x", shape=(4,)); z = prog2.variable("z", shape=(n,))
    prog2.define(z, lp.tanh(lp.matmul(W, z) + U @ x)); prog2.output(z * 1.0, name="o")
    xv = np.array([0.1, 0.2, -0.3, 0.4])
    seed = np.random.default_rng(3).standard_normal(n)
    a = prog2.solve(x=xv, seed=seed)
    blk = a.schedule.blocks[0]
    count = Count(monkeypatch)
    b = prog2.solve(x=xv, seed=-seed)
    assert count.sweeps[0] > 2          # started from zero, not from the (useless) last answer
    assert np.allclose(b.grad["x"], -a.grad["x"], rtol=1e-10, atol=1e-13)
    zz = b.values["z"]; aa = 1 - zz * zz
    w = splu(sp.csc_matrix((sp.identity(n) - sp.diags(aa) @ W).T)).solve(-seed)
    assert np.allclose(b.grad["x"], U.T @ (aa * w), rtol=1e-9, atol=1e-12)
    assert blk.cache.warm_adjoint[0].shape == (blk.size,)


@pytest.mark.parametrize("kind", ["sweep", "gmres", "bicgstab"])
@pytest.mark.parametrize("trans", [True, False])
def test_sweep_solve_warm_and_cold_against_a_dense_solve(kind, trans, rng):
    prog, W, U = deq(120, seed=4)
    sol = prog.solve(x=rng.standard_normal(4))
    blk = sol.schedule.blocks[0]
    st = sol._states[id(blk)]
    A = block_jacobian(blk, sol._vals, st.ans)
    ref = splu(sp.csc_matrix(A.T if trans else A))        # a sparse direct solve as the reference
    b = rng.standard_normal(blk.size)
    blk.cache.warm_adjoint = blk.cache.warm_tangent = None
    for b_k in (b, b * (1 + 1e-3), b + 0.1 * rng.standard_normal(blk.size), -b):   # cold, warm, warm, cold
        x = sweep_solve(blk, sol._vals, st.ans, None, b_k, kind, trans, what="test")
        assert np.allclose(x, ref.solve(b_k), rtol=1e-9, atol=1e-11)
    x = sweep_solve(blk, sol._vals, st.ans, A, b, kind, trans, what="test")   # with the assembled A_SS
    assert np.allclose(x, ref.solve(b), rtol=1e-9, atol=1e-11)
    assert not sweep_solve(blk, sol._vals, st.ans, None, np.zeros(blk.size), kind, trans, what="test").any()


def test_tangents_through_the_sweep_path_match_the_direct_path():
    prog, W, U = deq(300, seed=5)
    x = np.array([0.2, 0.1, -0.4, 0.3])
    sol = prog.solve(x=x)
    blk = sol.schedule.blocks[0]
    st = sol._states[id(blk)]
    ref = splu(block_jacobian(blk, sol._vals, st.ans).tocsc())
    from lagrangeprop.blocks import policy as blocks
    from lagrangeprop.options import SolveOptions
    r = np.random.default_rng(6)
    for _ in range(3):      # repeated tangent solves (warm starts from the previous tangent when close)
        rhs = [r.standard_normal(s) for s in blk.shapes]
        auto = stack(blk, blocks.solve_tangent(blk, sol._vals, rhs, st, SolveOptions()))
        direct = stack(blk, blocks.solve_tangent(blk, sol._vals, rhs, st, SolveOptions(linear_solver="direct")))
        assert np.allclose(auto, ref.solve(stack(blk, rhs)), rtol=1e-9, atol=1e-11)
        assert np.allclose(auto, direct, rtol=1e-9, atol=1e-11)


# --------------------------------------------------------- fused sweeps
def _three_member_block():
    """a = 0.3 sin(c) + x, b = W a (sparse), c = 0.5 tanh(b) * s + a (s a scalar member)."""
    n = 30
    r = np.random.default_rng(7)
    W = sp.random(n, n, density=0.2, random_state=r, format="csr") * 0.4
    prog = lp.Program(name="three")
    x = prog.input("x", shape=(n,))
    a = prog.variable("a", shape=(n,)); b = prog.variable("b", shape=(n,))
    c = prog.variable("c", shape=(n,)); s = prog.variable("s")
    prog.define(a, 0.3 * lp.sin(c) + x)
    prog.define(b, lp.matmul(W, a))
    prog.define(s, 0.1 * lp.sum(lp.tanh(b)) / n + 0.2)
    prog.define(c, 0.5 * lp.tanh(b) * s + a)
    prog.output(lp.sum(c * c) + s, name="o")
    return prog, n


def test_affine_sweeps_match_the_dense_splitting(rng):
    prog, n = _three_member_block()
    sol = prog.solve(x=rng.standard_normal(n), method="newton")
    blk = max(sol.schedule.blocks, key=lambda q: q.size)
    st = sol._states[id(blk)]
    lin = linearize(blk, sol._vals, st.ans)
    A = block_jacobian(blk, sol._vals, st.ans).toarray()
    order = np.concatenate([np.full(s, k) for k, s in enumerate(blk.sizes)])
    M = np.where(order[:, None] > order[None, :], A, 0.0) + np.eye(blk.size)
    N = M - A
    b, x = rng.standard_normal(blk.size), rng.standard_normal(blk.size)

    def lo(r):      # M is unit lower triangular
        return solve_triangular(M, r, lower=True, unit_diagonal=True)

    def up(r):
        return solve_triangular(M.T, r, lower=False, unit_diagonal=True)
    assert np.allclose(sweep_affine(blk, lin, b, x), lo(b + N @ x), atol=1e-12)
    assert np.allclose(rsweep_affine(blk, lin, b, x), up(b + N.T @ x), atol=1e-12)
    assert np.allclose(sweep_affine(blk, lin, b), lo(b), atol=1e-12)
    assert np.allclose(rsweep_affine(blk, lin, b), up(b), atol=1e-12)


@pytest.mark.parametrize("method", ["fixed-point", "anderson"])
def test_fixed_point_check_after_a_sweep_matches_newton(method, rng):
    """The residual check after a sweep looks only at the members that read old values; the
    solution and multipliers agree with Newton + direct on a block with several of them."""
    prog, n = _three_member_block()
    xv = rng.standard_normal(n)
    ref = prog.solve(x=xv, method="newton", linear_solver="direct", tol=1e-12)
    sol = prog.solve(x=xv, method=method, tol=1e-12)
    blk = max(sol.schedule.blocks, key=lambda q: q.size)
    fed, stale = _feedback(blk)
    assert fed and stale
    for name in ("a", "b", "c", "s"):
        assert np.allclose(sol.values[name], ref.values[name], rtol=1e-10, atol=1e-12)
    assert np.allclose(sol.grad["x"], ref.grad["x"], rtol=1e-9, atol=1e-11)
    assert sol.kkt()["primal"] <= 1e-11


def test_fixed_point_reports_divergence_naming_the_block():
    prog = lp.Program(name="grow")
    x = prog.input("x"); y = prog.variable("y")
    prog.define(y, 3.0 * y + x); prog.output(y * 1.0, name="o")
    with pytest.raises(lp.ConvergenceError, match="y") as exc:
        prog.solve(x=1.0, method="fixed-point")
    assert "y" in exc.value.nodes


# ------------------------------------------------------ stationary iteration
def test_stationary_converges_and_verifies_the_residual(rng):
    n = 40
    G = rng.standard_normal((n, n)) * 0.2 / np.sqrt(n)
    c = rng.standard_normal(n)
    x_ref = np.linalg.solve(np.eye(n) - G, c)
    res = lambda x: np.linalg.norm(x - G @ x - c) / np.linalg.norm(c)   # noqa: E731
    for x0 in (None, x_ref + 1e-3, -x_ref):
        x = stationary(lambda v: c if v is None else G @ v + c, x0, res, names=["z"])
        assert np.allclose(x, x_ref, rtol=1e-11, atol=1e-12)


def test_stationary_errors_name_the_block(rng):
    n = 10
    c = rng.standard_normal(n)
    with pytest.raises(lp.ConvergenceError, match="z1"):        # not a contraction
        stationary(lambda v: c if v is None else 1.5 * v + c, None, lambda x: 1.0, names=["z1"], maxiter=200)
    with pytest.raises(lp.ConvergenceError, match="z2"):        # converges, but the residual disagrees
        stationary(lambda v: c if v is None else 0.5 * v + c, None, lambda x: 1e-3, names=["z2"])


# ------------------------------------------------------------ CSR kernel
def test_sparse_product_kernel_matches_scipy(rng):
    from lagrangeprop.rules.registry import get
    mm = get("matmul")
    W = sp.random(50, 40, density=0.2, random_state=1, format="csr")
    z = rng.standard_normal(40)
    assert np.array_equal(_spmatmul(W, z, mm), W @ z)                       # the same kernel, bitwise
    assert np.array_equal(_spmatmul(sp.csr_array(W), z, mm), W @ z)
    for other in (W.tocsc(), W.toarray(), W.astype(np.float32).tocsr()):     # the op's value otherwise
        assert np.allclose(_spmatmul(other, z, mm), other.toarray().astype(np.float64) @ z
                           if sp.issparse(other) else other @ z, rtol=1e-12)
    Z = rng.standard_normal((40, 3))
    assert np.allclose(_spmatmul(W, Z, mm), W @ Z)
    assert np.allclose(_spmatmul(W, z[::2].repeat(2), mm), W @ z[::2].repeat(2))


# ------------------------------------------------- small dense Newton blocks
def _mixed_small_block():
    """Explicit and residual members, scalar and vector, broadcasting: every edge elementwise."""
    prog = lp.Program(name="small")
    x = prog.input("x", shape=(3,)); a = prog.variable("a", shape=(3,)); w = prog.variable("w")
    prog.define(a, 0.3 * lp.sin(a * w) + x)
    prog.residual(w, w ** 3 + w - 0.1 * lp.sum(a * a) - 1.0)
    prog.output(lp.sum(a) * w, name="o")
    return prog


def _ew_block():
    """Explicit and residual vector members coupled elementwise only (every edge has a partial rule)."""
    prog = lp.Program(name="ew")
    x = prog.input("x", shape=(3,)); a = prog.variable("a", shape=(3,)); w = prog.variable("w", shape=(3,))
    prog.define(a, 0.3 * lp.sin(a * w) + x)
    prog.residual(w, w ** 3 + w - 0.1 * a * a - 1.0)
    prog.output(lp.sum(a * w), name="o")
    return prog


def test_dense_jacobian_matches_the_assembled_one(rng):
    from lagrangeprop.blocks.assembly import assemble, dense_jacobian
    from programs import SELLAR_GUESS, SELLAR_INPUTS, sellar_program
    cases = [(sellar_program(), dict(SELLAR_INPUTS), dict(SELLAR_GUESS)),
             (_ew_block(), {"x": rng.standard_normal(3)}, {})]
    for prog, inputs, guess in cases:
        sol = prog.solve(**inputs, guess=guess)
        blk = max(sol.schedule.blocks, key=lambda q: q.size)
        st = sol._states[id(blk)]
        vals = sol._vals
        ref = assemble(blk, linearize(blk, vals, st.ans), dense=True)
        A = dense_jacobian(blk, vals, st.ans)
        assert isinstance(A, np.ndarray) and np.array_equal(A, ref)
        assert np.allclose(A, block_jacobian(blk, vals, st.ans).toarray(), rtol=0, atol=0)
    for prog, inputs in ((deq(20)[0], {"x": np.ones(4)}), (_mixed_small_block(), {"x": np.ones(3)})):
        sol = prog.solve(**inputs)          # a sparse matmul or a sum in the block: no dense shortcut
        blk = max(sol.schedule.blocks, key=lambda q: q.size)
        assert dense_jacobian(blk, sol._vals, sol._states[id(blk)].ans) is None


def test_small_newton_block_against_scipy(rng):
    """Forward values and multipliers of the mixed block vs scipy.optimize.fsolve and a dense adjoint."""
    from scipy.optimize import fsolve
    prog = _mixed_small_block()
    xv = rng.standard_normal(3)
    sol = prog.solve(x=xv)
    assert sol._states[id(max(sol.schedule.blocks, key=lambda q: q.size))].method == "newton"

    def F(u):
        a, w = u[:3], u[3]
        return np.concatenate([a - 0.3 * np.sin(a * w) - xv, [w ** 3 + w - 0.1 * a @ a - 1.0]])
    u = fsolve(F, np.concatenate([sol.values["a"], [float(sol.values["w"])]]), xtol=1e-14)
    assert np.allclose(sol.values["a"], u[:3], rtol=1e-12, atol=1e-13)
    a, w = u[:3], u[3]
    # A = ∂F/∂(a, w); adjoint Aᵀλ = ∂o/∂(a, w); ∇_x o = λ_a (F = a - f(a, w) - x)
    A = np.zeros((4, 4))
    A[:3, :3] = np.eye(3) - np.diag(0.3 * np.cos(a * w) * w)
    A[:3, 3] = -0.3 * np.cos(a * w) * a
    A[3, :3] = -0.2 * a
    A[3, 3] = 3 * w ** 2 + 1
    lam = np.linalg.solve(A.T, np.concatenate([np.full(3, w), [a.sum()]]))
    assert np.allclose(sol.grad["x"], lam[:3], rtol=1e-10, atol=1e-12)
    assert sol.kkt()["adjoint"] <= 1e-12 and sol.kkt()["primal"] <= 1e-13
    gmres = prog.solve(x=xv, linear_solver="gmres")         # the linearization is made lazily for Krylov
    assert np.allclose(gmres.grad["x"], lam[:3], rtol=1e-9, atol=1e-12)


def test_small_newton_singular_block_still_raises():
    prog = lp.Program(name="sing")
    x = prog.input("x"); a = prog.variable("a"); b = prog.variable("b")
    prog.define(a, b + x); prog.define(b, a * 1.0)        # A_SS = [[1, -1], [-1, 1]]: singular
    prog.output(a + b, name="o")
    with pytest.raises(lp.SingularSystemError, match="a"):
        prog.solve(x=1.0)


def test_elementwise_block_newton_against_scipy(rng):
    """The dense-partials Newton path (every edge elementwise) vs fsolve and a dense adjoint."""
    from scipy.optimize import fsolve
    prog = _ew_block()
    xv = rng.standard_normal(3)
    sol = prog.solve(x=xv)

    def F(u):
        a, w = u[:3], u[3:]
        return np.concatenate([a - 0.3 * np.sin(a * w) - xv, w ** 3 + w - 0.1 * a * a - 1.0])
    u = fsolve(F, np.concatenate([sol.values["a"], sol.values["w"]]), xtol=1e-14)
    a, w = u[:3], u[3:]
    assert np.allclose(sol.values["w"], w, rtol=1e-12, atol=1e-13)
    A = np.block([[np.eye(3) - np.diag(0.3 * np.cos(a * w) * w), -np.diag(0.3 * np.cos(a * w) * a)],
                  [-np.diag(0.2 * a), np.diag(3 * w ** 2 + 1)]])
    lam = np.linalg.solve(A.T, np.concatenate([w, a]))
    assert np.allclose(sol.grad["x"], lam[:3], rtol=1e-10, atol=1e-12)
    assert sol.kkt()["adjoint"] <= 1e-12 and sol.kkt()["primal"] <= 1e-13
