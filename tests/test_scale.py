"""Blocks judged on their own scale (SPEC §1 "Scale"): convergence tests, singularity and certificates.

References are independent of lagrangeprop: scipy roots (brentq, scipy.optimize.root polished by
Newton in numpy) and the implicit function theorem with complex-step Jacobians of the same
equations written in numpy (tests/programs.py, SCALED_CASES); closed forms for the diode.
"""

import numpy as np
import pytest
import scipy.sparse as sp

import lagrangeprop as lp
from programs import SCALED_CASES, VT, diode_case, robertson_case
from lagrangeprop.linalg import amg
from lagrangeprop.solve.program import kkt_residuals
from lagrangeprop.blocks.eliminate import factor
from lagrangeprop.linalg.krylov import backward_error, krylov
from lagrangeprop.blocks.scale import constraint_scale, scaled_max

METHODS = ["auto", "newton", "newton-krylov", "fixed-point", "anderson"]
LINEAR = ["auto", "direct", "gmres", "bicgstab"] + (["amg"] if amg.available() else [])
PATHS = [(m, s) for m in METHODS for s in LINEAR]
TOL = 1e-10          # the default solver tolerance


@pytest.fixture(scope="module")
def cases():
    return {name: make() for name, make in SCALED_CASES.items()}


# ------------------------------------------- the shared suite: every method × linear solver
@pytest.mark.parametrize("name", list(SCALED_CASES))
@pytest.mark.parametrize("method,linear_solver", PATHS)
def test_badly_scaled_blocks_match_scipy_and_the_ift(cases, name, method, linear_solver):
    case = cases[name]
    sol = case.prog.solve(**case.inputs, guess=case.guess, method=method, linear_solver=linear_solver)
    for k, ref in case.values.items():
        assert float(sol.values[k]) == pytest.approx(ref, rel=1e-9, abs=0), (k, sol.values[k], ref)
    assert float(sol.output) == pytest.approx(case.output, rel=1e-9, abs=0)
    for k, ref in case.grad.items():
        assert float(sol.grad[k]) == pytest.approx(ref, rel=1e-7, abs=0), (k, sol.grad[k], ref)
    kkt = sol.kkt()
    assert set(kkt) == {"primal", "adjoint"}
    assert kkt["primal"] <= TOL and kkt["adjoint"] <= 1e-9, kkt


@pytest.mark.parametrize("name", list(SCALED_CASES))
@pytest.mark.parametrize("method", METHODS)
def test_one_iteration_is_not_certified(cases, name, method):
    """maxiter=1 stops far from the root: ConvergenceError, never a certified answer."""
    case = cases[name]
    with pytest.raises(lp.ConvergenceError, match="did not converge"):
        case.prog.solve(**case.inputs, guess=case.guess, method=method, maxiter=1)


@pytest.mark.parametrize("name", list(SCALED_CASES))
def test_check_agrees_on_badly_scaled_blocks(cases, name):
    """lp.check's references on the same blocks: the tapes unroll Newton from the guess (on the
    states, intermediates substituted: a full-space step of a diode is cut back to nothing), and
    the gradient they give is the implicit-function-theorem gradient of scipy's root."""
    case = cases[name]
    report = lp.check(case.prog, **case.inputs, guess=case.guess, against=("autograd", "fd"))
    assert report.ok, str(report)
    for row in report.rows:
        if row["input"] in case.grad:
            assert float(np.asarray(row["autograd"]).ravel()[0]) == pytest.approx(
                case.grad[row["input"]], rel=1e-7, abs=0)


# ------------------------------------------------------------------ the diode
def _diode():
    prog = lp.Program(name="diode")
    x = prog.input("x")
    w = prog.variable("w")
    prog.residual(w, 1e-15 * lp.exp(w / VT) - x)
    prog.output(w, name="out")
    return prog


def test_diode_guess_is_not_accepted_as_the_root():
    prog = _diode()
    out = prog.evaluate(x=1e-3, guess={"w": 0.9})
    root = VT * np.log(1e-3 / 1e-15)                     # closed form
    assert float(out) == pytest.approx(root, rel=1e-12)
    # the block's own test at the guess: |r| ≈ 1.27 on a scale of 1.27, not of the 1e15 exp
    blk = prog.compile().blocks[0]
    sol = prog.solve(x=1e-3 * np.exp((0.9 - root) / VT), guess={"w": 0.9})   # a program whose root is 0.9
    assert float(sol.values["w"]) == pytest.approx(0.9, rel=1e-12)
    vals = list(sol._vals)
    vals[prog.compile().index["x"]] = np.float64(1e-3)
    from lagrangeprop.blocks.residual import block_residual
    c, _ = block_residual(blk, vals)
    assert scaled_max(c, constraint_scale(blk, vals)) == pytest.approx(1 - 1e-3 / 1.2666, rel=1e-3)


@pytest.mark.parametrize("linear_solver", ["gmres", "bicgstab", "direct", "auto"])
@pytest.mark.parametrize("method", ["auto", "newton", "newton-krylov"])
def test_diode_gradient_is_vt_over_x(linear_solver, method):
    sol = _diode().solve(x=1e-3, guess={"w": 0.9}, method=method, linear_solver=linear_solver)
    assert float(sol.grad["x"]) == pytest.approx(VT / 1e-3, rel=1e-10)     # IFT: dw/dx = Vt / x
    assert sol.kkt()["primal"] <= TOL


def test_diode_is_not_singular_and_its_scale_is_the_terms():
    prog = _diode()
    sol = prog.solve(x=1e-3, guess={"w": 0.9})         # the default path used to raise here
    blk = sol.schedule.blocks[0]
    s = constraint_scale(blk, sol._vals)
    k = blk.position[sol.schedule.index["w"]]
    assert s[blk.offsets[k]] == pytest.approx(1e-3, rel=1e-9)        # max(|Is·exp(w/Vt)|, |x|)
    report = sol.report()
    assert "diode" not in report or "singular" not in report


def test_robertson_scale_is_the_size_of_its_terms():
    """A floor of 1 on y2 would judge 3e7·y2² against 3e7; its terms are ~0.04."""
    case = robertson_case()
    sol = case.prog.solve(**case.inputs, guess=case.guess)
    blk = sol.schedule.blocks[0]
    s = constraint_scale(blk, sol._vals)
    k = blk.position[sol.schedule.index["y2"]]
    y1 = case.values["y1"]
    assert s[blk.offsets[k]] == pytest.approx(max(0.04 * y1, 3e7 * case.values["y2"] ** 2), rel=1e-9)


# --------------------------------------------------------- singularity and diagnostics
def test_equilibrated_factor_accepts_badly_scaled_and_rejects_singular(rng):
    blk = diode_case().prog.compile().blocks[0]
    n = blk.size
    B = rng.standard_normal((n, n)) + n * np.eye(n)
    D = np.diag(10.0 ** np.linspace(-15, 15, n))
    A = D @ B @ np.diag(10.0 ** np.linspace(12, -12, n))        # well posed, badly scaled
    b = rng.standard_normal(n)
    for M in (A, sp.csc_matrix(A)):
        lu = factor(blk, M, "here")
        x = lu.solve(b)
        assert backward_error(A, b)(x) <= 1e-13
        y = lu.solve(b, trans="T")
        assert backward_error(A.T, b)(y) <= 1e-13
    S = A.copy()
    S[1] = S[0] * 1e20             # a dependent equation in other units
    with pytest.raises(lp.SingularSystemError, match="linearly dependent") as exc:
        factor(blk, S, "here")
    names = blk.names
    assert f"c[{names[0]}]" in str(exc.value) and f"c[{names[1]}]" in str(exc.value)


def test_singular_badly_scaled_block_names_the_right_nodes():
    """u enters no equation: the zero column named is u's, not the diode's intermediates."""
    prog = lp.Program()
    x = prog.input("x")
    w, u = prog.variable("w"), prog.variable("u")
    prog.residual(w, 1e-15 * lp.exp(w / VT) - x + 0.0 * u)
    prog.residual(u, 1e9 * w - 1e9 * 0.7 + 0.0 * u)
    prog.output(w + u, name="o")
    with pytest.raises(lp.SingularSystemError, match=r"variable\(s\) u enter none") as exc:
        prog.solve(x=1e-3, guess={"w": 0.7, "u": 0.0})
    why = str(exc.value).split("Newton iteration 0: ")[1].split(". The implicit")[0]
    assert why.startswith("variable(s) u enter none") and "exp_" not in why and "multiply_" not in why, why


def test_dependent_equations_in_mismatched_units_are_named():
    prog = lp.Program()
    x = prog.input("x")
    a, b = prog.variable("a"), prog.variable("b")
    prog.residual(a, 1e-12 * a + 1e-12 * b - 1e-12 * x)
    prog.residual(b, 1e12 * a + 1e12 * b - 1e12 * x)
    prog.output(a * b, name="o")
    with pytest.raises(lp.SingularSystemError, match=r"linearly dependent \(c\[a\] - 1e-24·c\[b\]"):
        prog.solve(x=1.0)


# ------------------------------------------------------------------- certificates
def test_kkt_rejects_a_point_that_is_not_a_solution():
    """The values of the root of another program (w = 0.9): the old forward accepted it."""
    prog = _diode()
    root = VT * np.log(1e-3 / 1e-15)
    x09 = 1e-3 * np.exp((0.9 - root) / VT)
    fake = prog.solve(x=x09, guess={"w": 0.9})         # consistent intermediates, w = 0.9, and its λ
    true = prog.solve(x=1e-3, guess={"w": 0.9})
    gx, gz, glam = prog.lagrangian_grad({"x": 1e-3}, fake.values, fake.multipliers)
    assert abs(float(glam["w"])) == pytest.approx(x09 - 1e-3, rel=1e-9)     # -c_w
    k = kkt_residuals(prog, {"x": 1e-3}, fake.values, fake.multipliers)
    assert k["primal"] > 0.5                          # |c_w| / max(|Is·exp|, |x|) ≈ 1
    # the right values with the wrong multipliers (the old gmres gradient 0.0203): not certified
    k = kkt_residuals(prog, {"x": 1e-3}, true.values, fake.multipliers)
    assert k["primal"] <= TOL and k["adjoint"] > 0.5
    k = kkt_residuals(prog, {"x": 1e-3}, true.values, true.multipliers)
    assert k["primal"] <= TOL and k["adjoint"] <= 1e-12
    # a multiplier off by 1e-6 relative in a 1e12 intermediate's equation is seen
    lam = dict(true.multipliers)
    name = next(n for n in lam if prog.graph.nodes[n].get("op") == "exp")
    lam[name] = lam[name] * (1 + 1e-6)
    assert kkt_residuals(prog, {"x": 1e-3}, true.values, lam)["adjoint"] > 1e-7


def test_kkt_primal_is_per_constraint_not_per_program():
    """An O(1) violation next to a 1e15 value is reported as O(1)."""
    case = SCALED_CASES["explicit_units"]()
    sol = case.prog.solve(**case.inputs)
    vals = dict(sol.values)
    vals["v"] = vals["v"] + 0.01                      # u ≈ 6e9 stays put
    k = kkt_residuals(case.prog, case.inputs, vals, sol.multipliers)
    assert k["primal"] >= 0.005


def test_krylov_is_verified_per_equation(rng):
    """The normwise residual hides the equation in small units; the componentwise one does not."""
    n = 6
    B = rng.standard_normal((n, n)) + n * np.eye(n)
    A = np.diag([1e12] * (n - 1) + [1e-12]) @ B
    b = A @ rng.standard_normal(n)
    x = krylov(sp.csr_matrix(A), b, "gmres", names=["a"])
    assert backward_error(A, b)(x) <= 1e-10
    assert np.allclose(x, np.linalg.solve(A, b), rtol=1e-9)
    fake = np.linalg.solve(A, b + np.r_[np.zeros(n - 1), 1e-12])      # the last equation violated by ~10%
    assert np.linalg.norm(A @ fake - b) / np.linalg.norm(b) < 1e-14      # looks converged normwise
    assert backward_error(A, b)(fake) > 1e-3                          # but violates one equation


# ------------------------------------------------------- tiny residuals, other root ops
@pytest.mark.parametrize("method", ["auto", "newton", "newton-krylov"])
def test_tiny_residual_is_not_accepted_at_the_start(method):
    """1e-20·w - x with x = 1e-23: |r| = 1e-23 at w = 0 is below any absolute tolerance, but the
    root is w = 1e-3 (dw/dx = 1e20, closed form)."""
    prog = lp.Program()
    x = prog.input("x")
    w = prog.variable("w")
    prog.residual(w, 1e-20 * w - x)
    prog.output(w * 1.0, name="o")
    sol = prog.solve(x=1e-23, method=method)
    assert float(sol.values["w"]) == pytest.approx(1e-3, rel=1e-12)
    assert float(sol.grad["x"]) == pytest.approx(1e20, rel=1e-12)
    assert sol.kkt()["primal"] <= TOL


def test_non_arithmetic_root_op_at_tiny_values():
    """log(w / x) = 0 at w = x = 2e-20: the root op log has no terms, judged against max(1, |w/x|)."""
    prog = lp.Program()
    x = prog.input("x")
    w = prog.variable("w")
    prog.residual(w, lp.log(w / x))
    prog.output(w * 1.0, name="o")
    sol = prog.solve(x=2e-20, guess={"w": 1e-20})
    assert float(sol.values["w"]) == pytest.approx(2e-20, rel=1e-12)
    assert float(sol.grad["x"]) == pytest.approx(1.0, rel=1e-12)        # w = x
    assert sol.kkt()["primal"] <= TOL and sol.kkt()["adjoint"] <= 1e-12


def test_sparse_matmul_residual_is_judged_per_entry():
    """A (w - x) = 0 with rows of A from 1e-8 to 1e8: w = x exactly, grad of Σw² is 2x."""
    n = 40
    rng = np.random.default_rng(4)
    A = (sp.diags(10.0 ** np.linspace(-8, 8, n)) @ (sp.random(n, n, density=0.1, random_state=3) + 4 * sp.eye(n)))
    prog = lp.Program()
    x = prog.input("x", shape=(n,))
    w = prog.variable("w", shape=(n,))
    prog.residual(w, lp.matmul(A.tocsr(), w - x))
    prog.output(lp.sum(w ** 2), name="o")
    xv = rng.standard_normal(n)
    absA = abs(A.tocsr())
    for linear_solver in LINEAR:
        sol = prog.solve(x=xv, linear_solver=linear_solver)
        wv = sol.values["w"]
        # every row on its own terms |A|(|w| + |x|), the row of size 1e-8 as the row of size 1e8
        assert np.all(np.abs(A @ (wv - xv)) <= TOL * (absA @ (np.abs(wv) + np.abs(xv)))), linear_solver
        assert np.allclose(wv, xv, rtol=1e-9, atol=0)
        assert np.allclose(sol.grad["x"], 2 * xv, rtol=1e-8, atol=0), linear_solver
        assert sol.kkt()["primal"] <= TOL and sol.kkt()["adjoint"] <= 1e-9


@pytest.mark.parametrize("tol", [1e-6, 1e-12])
@pytest.mark.parametrize("method", ["newton", "newton-krylov"])
def test_kkt_primal_is_within_the_requested_tolerance(cases, tol, method):
    """The certificate uses the forward's own test: primal <= tol after success, at any tol."""
    for name in ("diode_pair", "robertson", "units"):
        case = cases[name]
        sol = case.prog.solve(**case.inputs, guess=case.guess, method=method, tol=tol)
        assert sol.kkt()["primal"] <= tol, (name, sol.kkt())
        for k, ref in case.values.items():
            assert float(sol.values[k]) == pytest.approx(ref, rel=max(1e3 * tol, 1e-9)), (name, k)


# ------------------------------------- residuals stacked or reduced keep each equation's scale
_WRAPS = {
    "sum": lambda r: lp.sum(r), "mean": lambda r: lp.mean(r), "reshape": lambda r: lp.reshape(r, ()),
    "concatenate": lambda r: lp.reshape(lp.concatenate([lp.reshape(r, (1,))]), ()),
    "stack": lambda r: lp.stack([r])[0],
}


@pytest.mark.parametrize("wrap", list(_WRAPS))
@pytest.mark.parametrize("method", ["auto", "newton", "newton-krylov"])
@pytest.mark.parametrize("guess", [0.5, 0.15])
def test_a_reduced_or_reshaped_residual_is_judged_on_its_terms(wrap, method, guess):
    """``sum(Is·exp(w/Vt) - x)`` at x = 1e-12 A is the diode in picoamperes: the root op (sum,
    reshape, ...) must not put a floor of 1 under a residual whose terms are 1e-12 (it stopped
    at w = 0.268 with dw/dx 97% off and kkt 3e-11). Closed form: w = Vt ln(x/Is), dw/dx = Vt/x."""
    x = 1e-12
    prog = lp.Program(name=f"diode_{wrap}")
    xv = prog.input("x")
    w = prog.variable("w")
    prog.residual(w, _WRAPS[wrap](1e-15 * lp.exp(w / VT) - xv))
    prog.output(w * 1.0, name="o")
    sol = prog.solve(x=x, guess={"w": guess}, method=method)
    assert float(sol.values["w"]) == pytest.approx(VT * np.log(x / 1e-15), rel=1e-12)
    assert float(sol.grad["x"]) == pytest.approx(VT / x, rel=1e-9)
    assert sol.kkt()["primal"] <= TOL


@pytest.mark.parametrize("method", ["auto", "newton", "newton-krylov"])
def test_stacked_equations_in_different_units_keep_their_own_scales(method):
    """A diode equation (terms 1e-3) stacked with one whose terms are 3e6: each is judged on its own
    terms, not on the largest stacked entry (dw0/dx was 1-17% off with kkt 3e-12)."""
    prog = lp.Program(name="stacked_units")
    x = prog.input("x")
    w = prog.variable("w", shape=(2,))
    prog.residual(w, lp.stack([1e-15 * lp.exp(w[0] / VT) - x, 1e6 * w[1] - 3e6]))
    prog.output(w[0] * 1.0, name="o")
    sol = prog.solve(x=1e-3, guess={"w": np.array([0.9, 0.0])}, method=method)
    np.testing.assert_allclose(sol.values["w"], [VT * np.log(1e-3 / 1e-15), 3.0], rtol=1e-12)
    assert float(sol.grad["x"]) == pytest.approx(VT / 1e-3, rel=1e-9)
    assert sol.kkt()["primal"] <= TOL


# --- the rounding of a matrix product inside a residual (blocks.scale.constraint_noise) -------------
def _stiff_1d(n: int = 3000):
    """``K u + u³ - f = 0`` with ``K = 10⁶·tridiag(-1, 2, -1)``: ``K u`` cancels to ``~|u|·10⁶·(π/n)²``
    while its terms are ``2·10⁶·|u|``, so evaluating the residual errs by ~6e-10 of its scale, above
    the default tol 1e-10 (the 2-D Bratu program at N = 1000 has the same floor)."""
    T = sp.diags([-np.ones(n - 1), 2 * np.ones(n), -np.ones(n - 1)], [-1, 0, 1], format="csr")
    K = 1e6 * T
    xs = np.arange(1, n + 1) / (n + 1)
    f = K @ np.sin(np.pi * xs) + np.sin(np.pi * xs) ** 3
    prog = lp.Program(name="stiff_1d")
    fi = prog.input("f", shape=(n,)); u = prog.variable("u", shape=(n,))
    prog.residual(u, lp.matmul(K, u) + u**3 - fi)
    prog.output(lp.sum(u), name="J")
    return prog, K, f, xs


def test_a_residual_at_its_rounding_floor_converges_and_is_certified():
    import scipy.sparse.linalg as spla
    prog, K, f, xs = _stiff_1d()
    sol = prog.solve(f=f)            # the default tol: before the rounding allowance, ConvergenceError
    v = np.zeros_like(f)             # Newton by hand with scipy, and the adjoint (IFT) by hand
    for _ in range(30):
        v -= spla.spsolve((K + sp.diags(3 * v**2)).tocsc(), K @ v + v**3 - f)
    mu = spla.spsolve((K + sp.diags(3 * v**2)).T.tocsc(), np.ones_like(f))
    # forward error ~ cond(K)·eps ~ 1e-9 (cond ≈ 3.6e6): the reference is no better than that
    assert np.max(np.abs(sol.values["u"] - v)) < 5e-9
    assert np.max(np.abs(sol.grad["f"] - mu)) < 5e-9 * np.max(np.abs(mu))
    k = sol.kkt()
    assert k["primal"] <= 1e-10 and k["adjoint"] <= 1e-10
    # the allowance is the rounding, not a loophole: a 1e-8 change of u or λ is not certified
    vals, mult = dict(sol.values), dict(sol.multipliers)
    bent = dict(vals, u=vals["u"] * (1 + 1e-8 * np.cos(7 * xs)))
    assert kkt_residuals(prog, {"f": f}, bent, mult)["primal"] > 1e-8
    bent_lam = dict(mult, u=mult["u"] * (1 + 1e-8 * np.cos(7 * xs)))
    assert kkt_residuals(prog, {"f": f}, vals, bent_lam)["adjoint"] > 1e-9


def test_constraint_noise_only_where_a_residual_sums_terms():
    from lagrangeprop.blocks.scale import ROUNDING, constraint_noise
    prog, K, f, xs = _stiff_1d(50)
    sol = prog.solve(f=f)
    blk = sol.schedule.blocks[0]
    noise = constraint_noise(blk, sol._vals)
    u = sol.values["u"]
    k = blk.position[sol.schedule.index["u"]]
    assert blk.steps[k].residual
    a = blk.offsets[k]
    expect = ROUNDING * np.finfo(float).eps * (abs(K) @ np.abs(u) + np.abs(u) ** 3 + np.abs(f))
    # T of a sum of terms is their largest T (max rule): at least |K||u|, at most the sum
    got = noise[a:a + u.size]
    assert np.all(got >= ROUNDING * np.finfo(float).eps * (abs(K) @ np.abs(u)) * (1 - 1e-12))
    assert np.all(got <= expect * (1 + 1e-12))
    w_prog = lp.Program()
    x = w_prog.input("x"); w = w_prog.variable("w")
    w_prog.residual(w, w**3 + w - x); w_prog.output(w * 1.0, name="o")
    wsol = w_prog.solve(x=2.0)
    assert constraint_noise(wsol.schedule.blocks[0], wsol._vals) is None
