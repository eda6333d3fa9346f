"""Trust audit of cyclic blocks, certificates, loading and errors (issue 11 §1, §4–§6).

Each test is a probe the earlier suites (test_scale, test_cyclic, test_dense_blocks, test_errors,
test_loading, test_adversarial_review) did not make, checked against something independent:
scipy.optimize.root or brentq and the implicit function theorem written out by hand, central
differences of the solve, closed forms. A test of a bug fixed here failed before the fix (its
docstring says what the library did).
"""

import itertools
import warnings

import numpy as np
import pytest
from scipy.optimize import brentq, root

import lagrangeprop as lp

METHODS = ("auto", "newton", "newton-krylov", "fixed-point", "anderson")
LINEAR = ("auto", "direct", "gmres", "bicgstab")
PATHS = list(itertools.product(METHODS, LINEAR))


def _fd_jac(f, v, h=1e-7):
    """Central differences of ``f`` (a vector function) at ``v``."""
    return np.stack([(f(v + h * e) - f(v - h * e)) / (2 * h) for e in np.eye(v.size)], axis=1)


def _ift(F, out, x, z0):
    """The root of ``F(z, x) = 0`` by scipy, and ``d out / dx = o_x - o_z A⁻¹ F_x`` by hand."""
    z = root(lambda zz: F(zz, x), z0, tol=1e-14).x
    A, B = _fd_jac(lambda zz: F(zz, x), z), _fd_jac(lambda xx: F(z, xx), x)
    oz = _fd_jac(lambda zz: np.atleast_1d(out(zz, x)), z)[0]
    ox = _fd_jac(lambda xx: np.atleast_1d(out(z, xx)), x)[0]
    return z, ox - oz @ np.linalg.solve(A, B), out(z, x)


# ------------------------------------------------- blocks of several shapes, fed by arrays
def _mixed():
    """A (3,)-vector residual fed by an array input and a scalar residual in one block; the output
    ``sum((u·w)²)`` is not a state."""
    p = lp.Program(name="mixed")
    a, s = p.input("a", shape=(3,)), p.input("s")
    u, w = p.variable("u", shape=(3,)), p.variable("w")
    p.residual(u, u + 0.1 * lp.sin(u) * w - a)
    p.residual(w, w ** 3 + w - lp.sum(u) - s)
    p.output(lp.sum((u * w) ** 2), name="o")
    return p


def _mixed_F(z, x):
    u, w = z[:3], z[3]
    return np.concatenate([u + 0.1 * np.sin(u) * w - x[:3], [w ** 3 + w - u.sum() - x[3]]])


MIXED_X = np.array([0.3, -0.2, 0.5, 0.7])


@pytest.mark.parametrize("method,linear_solver", PATHS)
def test_mixed_shape_block_matches_scipy_and_the_ift(method, linear_solver):
    z, g, o = _ift(_mixed_F, lambda z, x: np.sum((z[:3] * z[3]) ** 2), MIXED_X, np.zeros(4))
    sol = _mixed().solve(a=MIXED_X[:3], s=MIXED_X[3], method=method, linear_solver=linear_solver)
    np.testing.assert_allclose(sol.values["u"], z[:3], rtol=1e-10)
    np.testing.assert_allclose(float(sol.values["w"]), z[3], rtol=1e-10)
    np.testing.assert_allclose(float(sol.output), o, rtol=1e-10)
    np.testing.assert_allclose(np.concatenate([sol.grad["a"], [sol.grad["s"]]]), g, rtol=1e-6, atol=1e-9)
    assert max(sol.kkt().values()) <= 1e-9


def _two_blocks():
    """Two residual blocks in sequence: ``w1³ + w1 = x``, then ``w2 + tanh(w2)/2 = w1²``; o = w1·w2."""
    p = lp.Program(name="two")
    x = p.input("x")
    w1, w2 = p.variable("w1"), p.variable("w2")
    p.residual(w1, w1 ** 3 + w1 - x)
    p.residual(w2, w2 + 0.5 * lp.tanh(w2) - w1 ** 2)
    p.output(w2 * w1, name="o")
    return p


def _two_ref(x):
    w1 = brentq(lambda w: w ** 3 + w - x, -10, 10, xtol=1e-15)
    w2 = brentq(lambda w: w + 0.5 * np.tanh(w) - w1 ** 2, -10, 10, xtol=1e-15)
    return w1, w2


def _two_grad(x):
    """d(w1 w2)/dx by the implicit function theorem on each block, in closed form."""
    w1, w2 = _two_ref(x)
    dw1 = 1 / (3 * w1 ** 2 + 1)
    dw2 = 2 * w1 * dw1 / (1 + 0.5 * (1 - np.tanh(w2) ** 2))
    return dw1 * w2 + w1 * dw2, dw1, dw2


def test_two_blocks_in_sequence_through_every_transform():
    x0 = 1.3
    g, dw1, dw2 = _two_grad(x0)
    p = _two_blocks()
    assert len(p.blocks) == 2
    np.testing.assert_allclose(lp.grad(p)(x0), g, rtol=1e-12)
    np.testing.assert_allclose(lp.jacobian(p)(x0), g, rtol=1e-12)
    np.testing.assert_allclose(lp.jvp(p, (x0,), (1.0,))[1], g, rtol=1e-12)
    h = 1e-4      # the Hessian: central second difference of the reference gradient
    hess = (_two_grad(x0 + h)[0] - _two_grad(x0 - h)[0]) / (2 * h)
    np.testing.assert_allclose(lp.hvp(p, x0, 1.0), hess, rtol=1e-7)
    np.testing.assert_allclose(lp.hessian(p)(x0), hess, rtol=1e-7)
    jz = p.solve(x=x0).jacobian_z()
    np.testing.assert_allclose(float(jz["w1"]["x"]), dw1, rtol=1e-12)
    np.testing.assert_allclose(float(jz["w2"]["x"]), dw2, rtol=1e-12)
    assert lp.check(p, x=x0).ok


def test_lagrangian_and_its_gradient_at_a_point_that_is_not_a_solution():
    """SPEC: ``L``, ``∂L/∂(x, z, λ)`` and ``A = ∂c/∂z`` are defined at ANY point: central
    differences of ``prog.lagrangian`` at perturbed values and multipliers agree with them."""
    p, x0, h = _two_blocks(), 1.3, 1e-6
    sol = p.solve(x=x0)
    vals = {k: np.asarray(v, float) + 0.1 for k, v in sol.values.items() if k != "x"}
    lam = {k: 0.7 * np.asarray(v, float) + 0.2 for k, v in sol.multipliers.items()}
    gx, gz, glam = p.lagrangian_grad({"x": x0}, vals, lam)

    def L(x=x0, **upd):
        v, m = dict(vals), dict(lam)
        for k, d in upd.items():
            (m if k.startswith("lam_") else v)[k.removeprefix("lam_")] += d
        return float(p.lagrangian({"x": x}, v, m))
    np.testing.assert_allclose(gx["x"], (L(x0 + h) - L(x0 - h)) / (2 * h), rtol=1e-7)
    for k in vals:
        np.testing.assert_allclose(gz[k], (L(**{k: h}) - L(**{k: -h})) / (2 * h), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(glam[k], (L(**{"lam_" + k: h}) - L(**{"lam_" + k: -h})) / (2 * h),
                                   rtol=1e-6, atol=1e-8)
    D, index = p.constraint_jacobian(vals, {"x": x0})
    names = sorted(index, key=lambda k: index[k].start)

    def c(v):
        return -np.array([float(p.lagrangian_grad({"x": x0}, v, lam)[2][k]) for k in names])
    cols = []
    for k in names:
        up, dn = dict(vals), dict(vals)
        up[k], dn[k] = vals[k] + h, vals[k] - h
        cols.append((c(up) - c(dn)) / (2 * h))
    np.testing.assert_allclose(D.toarray(), np.stack(cols, axis=1), atol=1e-8)


# ------------------------------------------------------------------- singular blocks
def _cube_root():
    """``w³ - x = 0`` at x = 0: the root w = 0 has ∂r/∂w = 3w² = 0, truly singular."""
    p = lp.Program(name="cube")
    x, w = p.input("x"), p.variable("w")
    p.residual(w, w ** 3 - x)
    p.output(w * 1.0, name="o")
    return p


@pytest.mark.parametrize("method,linear_solver", PATHS)
def test_a_truly_singular_block_raises_singular_system_error_on_every_path(method, linear_solver):
    """Was: with ``linear_solver="gmres"`` or ``"bicgstab"`` the adjoint raised ConvergenceError
    ("gmres did not converge ... relative residual 1.00e+00"), not the SingularSystemError SPEC
    promises for a singular A_SS in the adjoint."""
    with pytest.raises(lp.SingularSystemError, match=r"\bw\b"):
        _cube_root().solve(x=0.0, guess={"w": 0.0}, method=method, linear_solver=linear_solver)


def test_a_well_posed_badly_scaled_block_is_not_singular():
    """``1e-20 u + 1e-22 sin v = 1e-20 x``, ``1e20 v = 1e20 tanh u``: rows 40 orders apart."""
    p = lp.Program(name="bs")
    x, u, v = p.input("x"), p.variable("u"), p.variable("v")
    p.residual(u, 1e-20 * u + 1e-22 * lp.sin(v) - 1e-20 * x)
    p.residual(v, 1e20 * v - 1e20 * lp.tanh(u))
    p.output(u + v, name="o")

    def F(z, xv):
        return np.array([z[0] + 0.01 * np.sin(z[1]) - xv[0], z[1] - np.tanh(z[0])])
    _, g, o = _ift(F, lambda z, xv: z[0] + z[1], np.array([0.5]), np.array([0.5, 0.5]))
    for method, linear_solver in PATHS:
        sol = p.solve(x=0.5, method=method, linear_solver=linear_solver)
        np.testing.assert_allclose(sol.grad["x"], g[0], rtol=1e-7)
        np.testing.assert_allclose(float(sol.output), o, rtol=1e-10)


# ----------------------------------------------------------- non-finite multipliers
def _sqrt_of_state():
    """A regular block ``w + tanh(w)/2 = x`` with output ``sqrt(w)``: at x = 0 the multiplier
    entering the block is ``1/(2 sqrt 0)``, infinite."""
    p = lp.Program(name="nf")
    x, w = p.input("x"), p.variable("w")
    p.residual(w, w + 0.5 * lp.tanh(w) - x)
    p.output(lp.sqrt(w), name="o")
    return p


@pytest.mark.parametrize("linear_solver", LINEAR)
def test_a_non_finite_multiplier_into_a_block_is_non_finite_error(linear_solver):
    """Was: gmres/bicgstab raised ConvergenceError ("relative residual nan") instead of naming
    the node the NaN comes from."""
    with pytest.raises(lp.NonFiniteError, match="'o'.*sqrt"):
        _sqrt_of_state().solve(x=0.0, linear_solver=linear_solver)


def _sqrt_in_block():
    """``u = v/2 + x``, ``v = sqrt(u)/10``: at x = 0 the root u = v = 0 has ∂v/∂u = inf inside the block
    (the true du/dx there is the limit 0, but A_SS is not finite)."""
    p = lp.Program(name="nf2")
    x, u, v = p.input("x"), p.variable("u"), p.variable("v")
    p.define(u, 0.5 * v + x)
    p.define(v, lp.sqrt(u) * 0.1)
    p.output(u + v, name="o")
    return p


@pytest.mark.parametrize("method,linear_solver", PATHS)
def test_an_infinite_derivative_inside_a_block_is_non_finite_error(method, linear_solver):
    """Was: SingularSystemError "numerically singular (reciprocal condition estimate 0.00e+00)"
    on the direct path and ConvergenceError on gmres/bicgstab; A_SS is not singular, one of its
    entries is infinite."""
    with pytest.raises(lp.NonFiniteError, match=r"v\.sqrt.*'sqrt'.*with respect to u"):
        _sqrt_in_block().solve(x=0.0, method=method, linear_solver=linear_solver)


def test_the_block_with_sqrt_is_right_away_from_zero():
    """The same block at x = 0.3 against the closed form: u = 0.05 sqrt(u) + x."""
    x = 0.3
    s = (0.05 + np.sqrt(0.0025 + 4 * x)) / 2          # s = sqrt(u)
    du = 1 / (1 - 0.025 / s)
    g = du * (1 + 0.05 / s)                           # d(u + 0.1 sqrt u)/dx
    for method, linear_solver in PATHS:
        np.testing.assert_allclose(_sqrt_in_block().solve(x=x, method=method, linear_solver=linear_solver)
                                   .grad["x"], g, rtol=1e-9)


@pytest.mark.parametrize("transform", ["jvp", "jacobian", "hvp"])
def test_forward_passes_raise_non_finite_error_silently(transform):
    """Was: the interpreted tangent pass printed "RuntimeWarning: invalid value encountered in
    multiply" before raising NonFiniteError (``x·sqrt(x)`` at 0: 0·inf)."""
    f = lambda x: lp.sum(x * lp.sqrt(x))      # noqa: E731
    x = np.zeros(2)
    call = {"jvp": lambda: lp.jvp(f, (x,), (np.ones(2),)), "jacobian": lambda: lp.jacobian(f)(x),
            "hvp": lambda: lp.hvp(f, x, np.ones(2))}[transform]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(lp.NonFiniteError, match="sqrt"):
            call()


# ------------------------------------------- a residual whose scale is a cancelling term
def _offset(term, off):
    """``(term(w) + off) - (x + off) = 0``: a large term that cancels (a reference enthalpy, a bias)
    makes the residual's scale ``off`` (blocks.scale), so ``|r| <= tol·off`` holds far from the root."""
    p = lp.Program(name="offset")
    x, w = p.input("x"), p.variable("w")
    p.residual(w, (term(w) + off) - (x + off))
    p.output(w * 1.0, name="o")
    return p


@pytest.mark.parametrize("off", [1e8, 1e10, 1e12])
@pytest.mark.parametrize("method", ["auto", "newton", "newton-krylov"])
def test_a_cancelling_large_term_does_not_certify_a_point_far_from_the_root(method, off):
    """Was: Newton stopped one step from the guess (w = 1.0 for ln 2 = 0.693 at off = 1e10, dw/dx =
    0.368 for 1/x = 0.5) and Newton–Krylov returned the guess itself (w = 0, dw/dx = 1), with kkt()
    primal 3e-11. Now the root to the accuracy the offset leaves (|Δw| ~ off·eps/x), or a
    ConvergenceError; never a silent wrong root."""
    prog, x = _offset(lp.exp, off), 2.0
    limit = 50 * off * np.finfo(float).eps / x        # what the rounding of exp(w) + off resolves
    try:
        sol = prog.solve(x=x, method=method)
    except lp.ConvergenceError:
        assert method == "newton-krylov"      # loud, not wrong: its row-scaled gmres stalls here
        return
    assert abs(float(sol.values["w"]) - np.log(x)) <= limit
    assert abs(sol.grad["x"] - 1 / x) <= limit


@pytest.mark.parametrize("method", ["auto", "newton", "newton-krylov"])
@pytest.mark.parametrize("guess", [0.0, 0.6])
def test_a_linear_residual_with_a_cancelling_term_is_solved_exactly(method, guess):
    """Was: Newton–Krylov returned the guess (w = 0 or 0.6 for the root 0.5) with kkt() ok."""
    sol = _offset(lambda w: w * 1.0, 1e10).solve(x=0.5, method=method, guess={"w": guess})
    assert abs(float(sol.values["w"]) - 0.5) <= 1e-5
    np.testing.assert_allclose(sol.grad["x"], 1.0, rtol=1e-9)


# --------------------------------------- an equation whose terms all vanish at the start
def _zero_terms():
    """``u0 + u1³/2 = a0``, ``u1 + u1³ + u0/10 = a1`` at a0 = 0 from the zero start: the first
    equation's terms are all zero there, so its scale is the TINY floor."""
    p = lp.Program(name="zero_terms")
    a = p.input("a", shape=(2,))
    u0, u1 = p.variable("u0"), p.variable("u1")
    p.residual(u0, u0 + 0.5 * u1 ** 3 - a[0])
    p.residual(u1, u1 + u1 ** 3 - a[1] + 0.1 * u0)
    p.output(u0 + u1, name="o")
    return p


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("method", ["auto", "newton", "newton-krylov"])
def test_an_equation_with_no_terms_at_the_start_does_not_stall_newton(method, dense, monkeypatch):
    """Was: ConvergenceError after 50 iterations (the line search judged every step against the
    1e-300 floor, or against the trial's own terms, so no step ever decreased the merit and Newton
    crawled at α = 2⁻¹⁰), with a0 = 0 but not with a0 = 0.3."""
    import lagrangeprop.blocks.dense as dense_mod
    monkeypatch.setattr(dense_mod, "ENABLED", dense)

    def F(z, x):
        return np.array([z[0] + 0.5 * z[1] ** 3 - x[0], z[1] + z[1] ** 3 - x[1] + 0.1 * z[0]])
    x = np.array([0.0, 2.0])
    z, g, o = _ift(F, lambda z, x: z[0] + z[1], x, np.array([-0.5, 1.0]))
    sol = _zero_terms().solve(a=x, method=method)
    np.testing.assert_allclose([float(sol.values["u0"]), float(sol.values["u1"])], z, rtol=1e-10)
    np.testing.assert_allclose(sol.grad["a"], g, rtol=1e-6)


# --------------------------------------------- sparse constants with duplicate entries
def _duplicated_csr():
    """The tridiagonal [[4,1,0,0],[1,4,1,0],...] as a CSR matrix whose diagonal is split into
    duplicate entries (3 + 1) in unsorted order: legal scipy, not canonical."""
    data = np.array([3.0, 1, 1, 1, 3, 1, 1, 1, 3, 1, 1, 1, 3, 1])
    indices = np.array([0, 1, 0, 0, 1, 2, 1, 1, 2, 3, 2, 3, 3, 3])
    import scipy.sparse as sp
    return sp.csr_matrix((data, indices, np.array([0, 3, 6, 10, 14])), shape=(4, 4))


def test_a_non_canonical_sparse_constant_in_a_block_keeps_newton_quadratic():
    """Was: after one solve, every solve from another start (a guess 1e-9 from the root, or the
    default start again) raised ConvergenceError: the block's sparse Jacobian pattern was laid out
    over the duplicated entries (converging linearly at 1e-9), and lp.check's finite differences
    failed. Compiling now sums the duplicates (on a copy: the caller's matrix is not touched)."""
    M = _duplicated_csr()
    dense = M.toarray()

    def build():
        p = lp.Program(name="dup")
        a, u = p.input("a", shape=(4,)), p.variable("u", shape=(4,))
        p.residual(u, M @ u + 0.1 * u ** 3 - a)
        p.output(lp.sum(u * lp.sin(u)), name="o")
        return p

    def F(z, x):
        return dense @ z + 0.1 * z ** 3 - x
    x = np.array([1.0, 2.0, -1.0, 0.5])
    z, g, _ = _ift(F, lambda z, x: np.sum(z * np.sin(z)), x, np.zeros(4))
    prog = build()
    first = prog.solve(a=x)
    for guess in ({"u": first.values["u"] + 1e-9}, None, {"u": np.full(4, 0.3)}):
        sol = prog.solve(a=x, guess=guess)
        np.testing.assert_allclose(sol.values["u"], z, rtol=1e-10)
        np.testing.assert_allclose(sol.grad["a"], g, rtol=1e-6)
    assert lp.check(build(), a=x).ok
    assert M.nnz == 14 and not M.has_canonical_format      # the caller's matrix as it was
