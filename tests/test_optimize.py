"""scipy.optimize glue (nested) and full-space constrained optimization with the Lagrangian.

References: scipy.optimize.minimize on the same objective with HIPS autograd gradients
and Hessian-vector products; closed-form optima; finite differences of the constraints.
"""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.optimize.full_space import FullSpace as _FullSpace
from lagrangeprop.optimize.layout import Layout as _Layout

# ------------------------------------------------------------- a smooth DAG objective
A = np.array([[1.0, 0.3, -0.2], [0.3, 2.0, 0.4], [-0.2, 0.4, 1.5]])
B = np.array([0.5, -1.0, 0.8])


def lp_obj(x, s):
    return lp.sum(lp.logaddexp(0.0, A @ x - B)) + 0.5 * lp.dot(x, x) * s + lp.sum(lp.exp(0.3 * x)) + x[0] ** 4


def ag_obj(x, s=0.7):
    return anp.sum(anp.logaddexp(0.0, anp.dot(A, x) - B)) + 0.5 * anp.dot(x, x) * s \
        + anp.sum(anp.exp(0.3 * x)) + x[0] ** 4


PROG = lp.trace(lp_obj, x=np.zeros(3), s=0.0)
X0 = np.array([1.0, -0.5, 0.3])


@pytest.mark.parametrize("method", ["L-BFGS-B", "BFGS", "CG", "Newton-CG", "trust-ncg", "trust-krylov",
                                    "trust-exact", "trust-constr"])
def test_minimize_matches_scipy_with_autograd_derivatives(method):
    res = lp.minimize(PROG, {"x": X0}, method=method, fixed={"s": 0.7}, tol=1e-10)
    kw = {"jac": autograd.grad(ag_obj)}
    if method in ("Newton-CG", "trust-ncg", "trust-krylov", "trust-constr"):
        kw["hessp"] = autograd.hessian_vector_product(ag_obj)
    if method == "trust-exact":
        kw["hess"] = autograd.hessian(ag_obj)
    ref = __import__("scipy.optimize").optimize.minimize(ag_obj, X0, method=method, tol=1e-10, **kw)
    # near tol the last iterations see roundoff-level differences in the gradient, so the
    # stopping status (BFGS: "precision loss") may differ; the optimum does not
    assert np.allclose(res.x, ref.x, atol=1e-7)
    assert res.fun == pytest.approx(ref.fun, rel=1e-12)
    assert np.linalg.norm(autograd.grad(ag_obj)(res.x)) < 1e-5   # L-BFGS-B stops on ftol near 1e-6
    # the extras: x_dict, the final Solution, history, counts
    assert np.array_equal(res.x_dict["x"], res.x) and res.solution.output == pytest.approx(res.fun)
    assert res.history[0] == pytest.approx(ag_obj(X0)) and res.history[-1] == pytest.approx(res.fun)
    assert res.nsolves >= 1
    if method in ("L-BFGS-B", "BFGS", "Newton-CG"):
        assert abs(res.nit - ref.nit) <= 2   # same derivatives to roundoff: the same path
    if method in ("Newton-CG", "trust-ncg", "trust-krylov", "trust-exact"):
        assert res.nhessp > 0


def test_one_solve_serves_value_and_gradient():
    res = lp.minimize(PROG, {"x": X0}, fixed={"s": 0.7}, method="BFGS")
    assert res.nsolves <= res.nfev + 2    # jac never re-solves a point fun has seen


def test_bounds_by_name_and_fixed_inputs_gradient():
    res = lp.minimize(PROG, {"x": X0}, fixed={"s": 0.7}, bounds={"x": (0.0, None)})
    assert res.success and np.all(res.x_dict["x"] >= 0.0)
    ref = __import__("scipy.optimize").optimize.minimize(
        ag_obj, X0, jac=autograd.grad(ag_obj), method="L-BFGS-B", bounds=[(0, None)] * 3)
    assert np.allclose(res.x, ref.x, atol=1e-6)
    # the fixed input still gets its multiplier: ∂f/∂s = |x|²/2
    assert res.solution.grad["s"] == pytest.approx(0.5 * res.x @ res.x, rel=1e-12)


def test_minimize_errors_name_the_inputs():
    with pytest.raises(lp.InputError, match=r"\['s'\] are neither optimized nor fixed"):
        lp.minimize(PROG, {"x": X0})
    with pytest.raises(lp.InputError, match="'q'.*not inputs"):
        lp.minimize(PROG, {"x": X0}, fixed={"s": 1.0, "q": 1.0})
    with pytest.raises(lp.InputError, match="both optimized"):
        lp.minimize(PROG, {"x": X0, "s": 1.0}, fixed={"s": 1.0})
    vec = lp.trace(lambda x: x * 2.0, x=np.zeros(2))
    with pytest.raises(lp.ShapeError, match="scalar output"):
        lp.minimize(vec, {"x": np.zeros(2)})
    with pytest.raises(lp.InputError, match="lp.Program"):
        lp.minimize(lambda x: x, {"x": 1.0})


# ------------------------------------------------------------- cyclic: implicit cubic
def cubic():
    prog = lp.Program(name="cubic_opt")
    x = prog.input("x"); w = prog.variable("w")
    prog.residual(w, w ** 3 + w - x)
    prog.output((w - 1.0) ** 2 + 0.1 * x, name="o")
    return prog


# min (w-1)² + 0.1 x s.t. w³ + w = x  <=>  2(w-1) + 0.1(3w² + 1) = 0
W_STAR = (-2.0 + np.sqrt(4.0 + 4 * 0.3 * 1.9)) / 0.6
X_STAR = W_STAR ** 3 + W_STAR


@pytest.mark.parametrize("method", ["L-BFGS-B", "Newton-CG", "trust-ncg"])
def test_cyclic_nested_minimize_reaches_the_closed_form_optimum(method):
    res = lp.minimize(cubic(), {"x": 0.0}, method=method, tol=1e-12)
    assert res.success
    assert float(res.x_dict["x"]) == pytest.approx(X_STAR, rel=1e-7)
    assert float(res.solution.values["w"]) == pytest.approx(W_STAR, rel=1e-7)


def test_full_space_reaches_the_nested_optimum_and_its_multipliers():
    prog = cubic()
    full = lp.minimize_full_space(prog, {"x": 0.0}, options={"gtol": 1e-12, "xtol": 1e-14})
    nested = lp.minimize(prog, {"x": 0.0}, method="Newton-CG", tol=1e-12)
    assert full.success and full.constr_violation < 1e-10
    assert float(full.x_dict["x"]) == pytest.approx(float(nested.x_dict["x"]), rel=1e-7)
    assert float(full.z_dict["w"]) == pytest.approx(W_STAR, rel=1e-7)
    assert full.fun == pytest.approx(nested.fun, rel=1e-10)
    # scipy's constraint multipliers are -λ: the same multipliers the nested solve gives
    for name, lam in full.multipliers.items():
        assert np.allclose(lam, full.solution.multipliers[name], rtol=1e-6, atol=1e-8), name
    # and at the optimum ∂L/∂x = λ_x = 0
    assert abs(float(full.solution.grad["x"])) < 1e-7


def test_full_space_from_an_infeasible_start():
    prog = cubic()
    values0 = {k: 0.5 for k in prog.solve(x=0.0).values if k != "x"}
    full = lp.minimize_full_space(prog, {"x": 0.0}, values0=values0, options={"gtol": 1e-12})
    assert full.constr_violation < 1e-9
    assert float(full.x_dict["x"]) == pytest.approx(X_STAR, rel=1e-6)
    with pytest.raises(lp.InputError, match="values0 has no entry"):
        lp.minimize_full_space(prog, {"x": 0.0}, values0={"w": 0.5})


def vector_block():
    """y = 0.5 cos(y) + x·mean(y) + x (a 3-vector block), min |y - t|² + 0.01 |x|²."""
    prog = lp.Program(name="vector_block")
    x = prog.input("x", shape=(3,)); t = prog.input("t", shape=(3,))
    y = prog.variable("y", shape=(3,))
    prog.define(y, 0.5 * lp.cos(y) + x * lp.sum(y) / 3.0 + x)
    prog.output(lp.sum((y - t) ** 2) + 0.01 * lp.sum(x * x), name="obj")
    return prog


def test_vector_block_full_space_and_nested_agree():
    prog = vector_block()
    target = np.array([0.8, 0.2, -0.3])
    nested = lp.minimize(prog, {"x": np.zeros(3)}, fixed={"t": target}, method="trust-ncg", tol=1e-12)
    full = lp.minimize_full_space(prog, {"x": np.zeros(3)}, fixed={"t": target},
                                  options={"gtol": 1e-12, "xtol": 1e-14})
    lbfgs = lp.minimize(prog, {"x": np.zeros(3)}, fixed={"t": target},
                        options={"ftol": 1e-15, "gtol": 1e-11})
    assert nested.success and full.success and lbfgs.success
    assert np.allclose(full.x_dict["x"], nested.x_dict["x"], atol=1e-6)
    assert np.allclose(lbfgs.x_dict["x"], nested.x_dict["x"], atol=1e-5)
    assert full.fun == pytest.approx(nested.fun, rel=1e-8, abs=1e-14)


# ------------------------------------------------------------- the full-space pieces
def test_full_space_jacobian_and_lagrangian_hessian_match_differences(rng):
    prog = vector_block()
    fixed = {"t": np.array([0.8, 0.2, -0.3])}
    layout = _Layout(prog, {"x": np.array([0.1, -0.2, 0.3])}, fixed)
    sol = prog.solve(x=np.array([0.1, -0.2, 0.3]), **fixed)
    z0 = {k: v for k, v in sol.values.items() if k not in ("x", "t")}
    fs = _FullSpace(prog, layout, z0)
    y = fs.y0 + 0.05 * rng.standard_normal(fs.size)   # an infeasible point
    h = 1e-6
    J = fs.jacobian(y).toarray()
    F = np.stack([(fs.constraints(y + h * e) - fs.constraints(y - h * e)) / (2 * h)
                  for e in np.eye(fs.size)], axis=1)
    assert np.allclose(J, F, rtol=1e-6, atol=1e-8)
    v, p = rng.standard_normal(J.shape[0]), rng.standard_normal(fs.size)
    Hp = fs.constraint_hessian(y, v).matvec(p)
    fd = (fs.jacobian(y + h * p).T @ v - fs.jacobian(y - h * p).T @ v) / (2 * h)
    assert np.allclose(Hp, fd, rtol=1e-6, atol=1e-8)
    # A block of the full Jacobian is prog.constraint_jacobian
    A, index = prog.constraint_jacobian(*fs.split(y)[::-1])
    assert np.allclose(J[:, layout.size:], A.toarray())
