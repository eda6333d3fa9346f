"""Forward mode, Jacobians and exact second order (lagrangeprop.solve.tangent, second_order).

References: HIPS autograd (make_jvp, make_vjp, jacobian, hessian, hessian_vector_product
with its own rules), central differences, and closed forms for the implicit cubic.
"""

import warnings
from types import SimpleNamespace

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import expit as ag_expit
from autograd.scipy.special import logsumexp as ag_logsumexp

import lagrangeprop as lp
from programs import sellar_program
from lagrangeprop.rules.registry import REGISTRY, get
from lagrangeprop.rules.curvature import curvature, has_rule
from lagrangeprop.solve.second_order import solution_hvp
from lagrangeprop.solve.tangent import solution_jvp

# ------------------------------------------------------------- test programs
# One body, two namespaces: lagrangeprop ops and autograd.numpy ops.
LP = SimpleNamespace(exp=lp.exp, log=lp.log, log1p=lp.log1p, sqrt=lp.sqrt, sin=lp.sin, cos=lp.cos,
                     tan=lp.tan, tanh=lp.tanh, sigmoid=lp.sigmoid, abs=lp.abs, maximum=lp.maximum,
                     logaddexp=lp.logaddexp, where=lp.where, sum=lp.sum, mean=lp.mean, dot=lp.dot,
                     reshape=lp.reshape, transpose=lp.transpose, concatenate=lp.concatenate,
                     stack=lp.stack, logsumexp=lp.logsumexp, softmax=lp.softmax, square=lp.square)


def _ag_softmax(x, axis=-1):
    return anp.exp(x - ag_logsumexp(x, axis=axis, keepdims=True))


AG = SimpleNamespace(exp=anp.exp, log=anp.log, log1p=anp.log1p, sqrt=anp.sqrt, sin=anp.sin, cos=anp.cos,
                     tan=anp.tan, tanh=anp.tanh, sigmoid=ag_expit, abs=anp.abs, maximum=anp.maximum,
                     logaddexp=anp.logaddexp, where=anp.where, sum=anp.sum, mean=anp.mean, dot=anp.dot,
                     reshape=anp.reshape, transpose=anp.transpose, concatenate=anp.concatenate,
                     stack=anp.stack, logsumexp=ag_logsumexp, softmax=_ag_softmax, square=anp.square)

M = np.array([[0.3, -0.2, 0.5, 0.1], [0.4, 0.2, -0.3, 0.6], [-0.1, 0.5, 0.2, -0.4]])


def vector_body(m, x):
    """R^4 -> R^6 through elementwise ops, reductions and structure ops."""
    y = m.exp(m.sin(x)) * x**2 / (1.0 + x**2)
    w = m.tanh(y) + m.log1p(y * y) + m.sqrt(x * x + 1.0) - m.cos(x) ** 3
    return m.concatenate([w, m.stack([m.sum(w), m.mean(y * w)])])


def scalar_body(m, x):
    """R^4 -> R exercising every op family with curvature."""
    v = M @ x
    s = m.softmax(v)
    r = m.sigmoid(v) * m.cos(v) + m.maximum(v, 0.1) + m.logaddexp(v, x[:3]) + m.tan(0.3 * v)
    A = m.reshape(x, (2, 2))
    q = m.sum(m.transpose(A) @ A) * 0.1 + m.dot(x, x) ** 1.5 / 10.0
    return (m.sum(s * r) + m.logsumexp(v) + q + m.sum(m.where(v > 0, v, -v))
            + m.log(m.square(x[0]) + 2.0) + m.sum(m.abs(x) * m.exp(-x)) / (1.0 + x[1] ** 2))


def lp_vector(x):
    return vector_body(LP, x)


def lp_scalar(x):
    return scalar_body(LP, x)


def ag_vector(x):
    return vector_body(AG, x)


def ag_scalar(x):
    return scalar_body(AG, x)


X0 = np.array([0.7, -0.4, 1.3, 0.2])


def fd_jacobian(f, x, h=1e-6):
    x = np.asarray(x, dtype=float)
    cols = []
    for k in range(x.size):
        e = np.zeros(x.size); e[k] = h
        cols.append((np.ravel(f(x + e.reshape(x.shape))) - np.ravel(f(x - e.reshape(x.shape)))) / (2 * h))
    return np.stack(cols, axis=-1)


# ------------------------------------------------------------- first order
def test_jvp_matches_autograd_make_jvp_and_differences(rng):
    t = rng.standard_normal(4)
    value, tangent = lp.jvp(lp_vector, (X0,), (t,))
    ag_value, ag_tangent = autograd.make_jvp(ag_vector)(X0)(t)
    assert np.allclose(value, ag_value, rtol=1e-14)
    assert np.allclose(tangent, ag_tangent, rtol=1e-12, atol=1e-14)
    fd = (ag_vector(X0 + 1e-6 * t) - ag_vector(X0 - 1e-6 * t)) / 2e-6
    assert np.allclose(tangent, fd, rtol=1e-7, atol=1e-9)


def test_jvp_of_several_arguments_is_the_sum_of_partials():
    def f(x, y):
        return lp.sin(x * y) + x ** 2

    v, t = lp.jvp(f, (0.5, 2.0), (1.0, -3.0))
    assert float(v) == pytest.approx(np.sin(1.0) + 0.25, rel=1e-15)
    expected = np.cos(1.0) * 2.0 + 2 * 0.5 + np.cos(1.0) * 0.5 * -3.0
    assert float(t) == pytest.approx(expected, rel=1e-14)


def test_vjp_matches_autograd_make_vjp(rng):
    g = rng.standard_normal(6)
    value, vjp_fn = lp.vjp(lp_vector, X0)
    ag_vjp, ag_value = autograd.make_vjp(ag_vector)(X0)
    ct = vjp_fn(g)
    assert isinstance(ct, tuple) and len(ct) == 1 and ct[0].shape == (4,)
    assert np.allclose(ct[0], ag_vjp(g), rtol=1e-12)
    assert np.allclose(value, ag_value, rtol=1e-14)
    # <u, vjp(g)> == <g, jvp(u)>, as autograd's check_grads
    u = rng.standard_normal(4)
    assert float(u @ ct[0]) == pytest.approx(float(g @ lp.jvp(lp_vector, (X0,), (u,))[1]), rel=1e-12)


def test_vjp_returns_one_cotangent_per_argument():
    _, vjp_fn = lp.vjp(lambda x, y: x * lp.exp(y), 2.0, 0.0)
    gx, gy = vjp_fn(3.0)
    assert (float(gx), float(gy)) == (3.0, 6.0)
    with pytest.raises(lp.ShapeError, match="cotangent has shape"):
        vjp_fn(np.ones(2))


@pytest.mark.parametrize("mode", ["auto", "forward", "reverse"])
def test_jacobian_matches_autograd_both_modes(mode):
    J = lp.jacobian(lp_vector, mode=mode)(X0)
    assert J.shape == (6, 4)
    assert np.allclose(J, autograd.jacobian(ag_vector)(X0), rtol=1e-12, atol=1e-14)
    assert np.allclose(J, fd_jacobian(ag_vector, X0), rtol=1e-7, atol=1e-9)


def test_jacobian_of_matrix_function_has_out_shape_plus_in_shape(rng):
    W = rng.standard_normal((3, 2))

    def f(A):
        return lp.tanh(A @ W)

    A0 = rng.standard_normal((2, 3))
    J = lp.jacobian(f)(A0)
    assert J.shape == (2, 2, 2, 3)
    assert np.allclose(J, autograd.jacobian(lambda A: anp.tanh(A @ W))(A0), rtol=1e-12, atol=1e-15)


def test_jacobian_argnum_and_scalar_output():
    J = lp.jacobian(lambda x, y: lp.sum(x * y), argnum=1)(np.arange(3.0), np.ones(3))
    assert J.shape == (3,) and np.array_equal(J, np.arange(3.0))


# ------------------------------------------------------------- cyclic programs
def sellar():
    return sellar_program()


GUESS = {"y1": 1.0, "y2": 1.0}
Z0 = np.array([5.0, 2.0])


def sellar_grad(prog, x, z):
    sol = prog.solve(x=x, z=z, guess=GUESS, tol=1e-14)
    return np.concatenate([[sol.grad["x"]], sol.grad["z"]])


def test_sellar_jvp_and_jacobian_z_match_differences(rng):
    prog = sellar()
    tx, tz = 0.3, rng.standard_normal(2)
    value, tangent = lp.jvp(prog, (1.0, Z0), (tx, tz), guess=GUESS)

    def obj(p):
        return prog.evaluate(x=p[0], z=p[1:], guess=GUESS, tol=1e-14)
    p0, d = np.array([1.0, *Z0]), np.array([tx, *tz])
    fd = (obj(p0 + 1e-6 * d) - obj(p0 - 1e-6 * d)) / 2e-6
    assert float(tangent) == pytest.approx(fd, rel=1e-7)
    sol = prog.solve(x=1.0, z=Z0, guess=GUESS)
    assert float(value) == pytest.approx(sol.output, rel=1e-13)
    # jacobian_z: every node's dz/dx, and its obj row is the multiplier gradient
    jz = sol.jacobian_z()
    assert jz["y1"]["z"].shape == (2,) and np.shape(jz["y1"]["x"]) == ()
    assert float(jz["obj"]["x"]) == pytest.approx(sol.grad["x"], rel=1e-12)
    assert np.allclose(jz["obj"]["z"], sol.grad["z"], rtol=1e-12)
    assert np.array_equal(jz["z"]["z"], np.eye(2)) and float(jz["z"]["x"].sum()) == 0.0

    def y_vals(p):
        s = prog.solve(x=p[0], z=p[1:], guess=GUESS, tol=1e-14)
        return np.array([s.values["y1"], s.values["y2"]])
    F = fd_jacobian(y_vals, p0)
    assert np.allclose([jz["y1"]["x"], *jz["y1"]["z"]], F[0], rtol=1e-7)
    assert np.allclose([jz["y2"]["x"], *jz["y2"]["z"]], F[1], rtol=1e-7)
    # the node tangents agree with jacobian_z columns
    tangents = solution_jvp(sol, {"x": tx, "z": tz})
    assert float(tangents["y2"]) == pytest.approx(jz["y2"]["x"] * tx + jz["y2"]["z"] @ tz, rel=1e-12)


def fixed_point_program(n=3):
    """y = 0.5 cos(y) + x (vector block), output y*y + x: a cyclic vector map."""
    prog = lp.Program(name="fixed_point")
    x = prog.input("x", shape=(n,))
    y = prog.variable("y", shape=(n,))
    prog.define(y, 0.5 * lp.cos(y) + x * lp.sum(y) / n + x)
    prog.output(y * y + x, name="out")
    return prog


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_cyclic_vector_jacobian_both_modes_match_differences(mode):
    prog = fixed_point_program()
    x0 = np.array([0.2, -0.1, 0.3])
    J = lp.jacobian(prog, mode=mode)(x0)
    F = fd_jacobian(lambda x: prog.evaluate(x=x, tol=1e-14), x0)
    assert J.shape == (3, 3)
    assert np.allclose(J, F, rtol=1e-7, atol=1e-9)


def cubic_program(out="w"):
    prog = lp.Program(name="cubic")
    x = prog.input("x"); w = prog.variable("w")
    prog.residual(w, w ** 3 + w - x)
    prog.output(w * 1.0 if out == "w" else lp.exp(w) * x, name="o")
    return prog


@pytest.mark.parametrize("x", [2.0, 0.3, -5.0])
def test_implicit_cubic_first_and_second_derivatives_closed_form(x):
    # w³ + w = x: w' = 1/(3w² + 1), w'' = -6 w w'³
    prog = cubic_program()
    sol = prog.solve(x=x, tol=1e-14)
    w = float(sol.values["w"])
    w1 = 1.0 / (3 * w * w + 1)
    w2 = -6 * w * w1 ** 3
    assert float(lp.jvp(prog, (x,), (1.0,))[1]) == pytest.approx(w1, rel=1e-13)
    assert float(lp.jacobian(prog)(x)) == pytest.approx(w1, rel=1e-13)
    assert float(lp.hvp(prog, x, 1.0)) == pytest.approx(w2, rel=1e-12)
    assert float(lp.hessian(prog)(x)) == pytest.approx(w2, rel=1e-12)
    # o = e^w x: o'' = e^w (w'² x + w'' x + 2 w')
    o2 = np.exp(w) * (w1 ** 2 * x + w2 * x + 2 * w1)
    assert float(lp.hvp(cubic_program("exp"), x, 1.0)) == pytest.approx(o2, rel=1e-12)


def test_sellar_hessian_matches_differences_of_multiplier_gradients():
    prog = sellar()
    sol = prog.solve(x=1.0, z=Z0, guess=GUESS)
    p0 = np.array([1.0, *Z0])
    H = np.stack([np.concatenate([[h["x"]], h["z"]]) for h in
                  (solution_hvp(sol, {"x": e[0], "z": e[1:]}) for e in np.eye(3))], axis=1)
    F = fd_jacobian(lambda p: sellar_grad(prog, p[0], p[1:]), p0, h=1e-5)
    assert np.allclose(H, H.T, rtol=1e-12, atol=1e-14)
    assert np.allclose(H, F, rtol=1e-6, atol=1e-8)
    Hz = lp.hessian(prog, argnum=1, guess=GUESS)(1.0, Z0)
    assert np.allclose(Hz, H[1:, 1:], rtol=1e-13)


def test_cyclic_vector_hessian_matches_differences():
    prog = fixed_point_program()
    prog2 = lp.Program(name="fp_scalar")
    x = prog2.input("x", shape=(3,)); y = prog2.variable("y", shape=(3,))
    prog2.define(y, 0.5 * lp.cos(y) + x * lp.sum(y) / 3 + x)
    prog2.output(lp.sum(lp.sin(y) * y) + lp.dot(x, y), name="obj")
    x0 = np.array([0.2, -0.1, 0.3])
    H = lp.hessian(prog2)(x0)
    F = fd_jacobian(lambda v: prog2.solve(x=v, tol=1e-14).grad["x"], x0, h=1e-5)
    assert np.allclose(H, F, rtol=1e-6, atol=1e-8)
    assert np.allclose(H, H.T, atol=1e-12)
    assert prog.blocks and prog2.blocks


# ------------------------------------------------------------- second order (DAG)
def test_hvp_and_hessian_match_autograd(rng):
    v = rng.standard_normal(4)
    hv = lp.hvp(lp_scalar, X0, v)
    assert np.allclose(hv, autograd.hessian_vector_product(ag_scalar)(X0, v), rtol=1e-11, atol=1e-13)
    H = lp.hessian(lp_scalar)(X0)
    H_ag = autograd.hessian(ag_scalar)(X0)
    assert np.allclose(H, H_ag, rtol=1e-11, atol=1e-13)
    F = fd_jacobian(lp.grad(lp_scalar), X0, h=1e-5)
    assert np.allclose(H, F, rtol=1e-6, atol=1e-8)


def test_hessian_of_two_argument_function_and_matrix_input(rng):
    W = rng.standard_normal((3, 2))

    def f(A, b):
        return lp.sum(lp.logaddexp(0.0, A @ W) * b)

    A0, b0 = rng.standard_normal((2, 3)), rng.standard_normal(2)
    H = lp.hessian(f)(A0, b0)
    H_ag = autograd.hessian(lambda A: anp.sum(anp.logaddexp(0.0, A @ W) * b0))(A0)
    assert H.shape == (2, 3, 2, 3)
    assert np.allclose(H, H_ag, rtol=1e-11, atol=1e-14)


def test_power_with_traced_exponent_and_division_second_order():
    def f(x):
        return x[0] ** x[1] + x[2] / x[0] + lp.sqrt(x[1]) * x[2] ** 2

    def g(x):
        return x[0] ** x[1] + x[2] / x[0] + anp.sqrt(x[1]) * x[2] ** 2
    x0 = np.array([1.7, 2.3, 0.6])
    assert np.allclose(lp.hessian(f)(x0), autograd.hessian(g)(x0), rtol=1e-12, atol=1e-14)


# ------------------------------------------------------------- the rule table
def test_every_builtin_differentiable_op_has_an_exact_second_order_rule():
    # a nested lp.grad's generated op has no third-order rule by design (transforms/nested.py)
    missing = [n for n, p in REGISTRY.items() if p.differentiable and not p.user and p.curvature is None
               and not hasattr(p, "nested")]
    assert missing == []


def _cases(rng):
    a, b = rng.uniform(0.5, 1.5, (3, 4)), rng.uniform(0.5, 1.5, (4,))
    return [
        (name, [a]) for name in ("exp", "log", "log1p", "sqrt", "sin", "cos", "tan", "tanh",
                                 "sigmoid", "square")
    ] + [("multiply", [a, b]), ("divide", [a, b]), ("power", [a, b]), ("logaddexp", [a, b]),
         ("matmul", [a, rng.standard_normal((4, 2))]), ("dot", [b, rng.standard_normal((4, 3))]),
         ("logsumexp", [a]), ("softmax", [a])]


@pytest.mark.parametrize("axis", [None, 0, 1])
def test_curvature_rules_match_differences_of_the_vjp(rng, axis):
    for name, args in _cases(rng):
        prim = get(name)
        params = {"axis": -1 if axis is None else axis} if name == "softmax" else (
            {"axis": axis} if name == "logsumexp" else {})
        ans = prim.value(args, params)
        g = rng.standard_normal(np.shape(ans))
        tans = [rng.standard_normal(np.shape(x)) for x in args]
        h = 1e-6
        for i in range(len(args)):
            up = [x + h * t for x, t in zip(args, tans)]
            dn = [x - h * t for x, t in zip(args, tans)]
            fd = (prim.vjp(i, g, prim.value(up, params), up, params)
                  - prim.vjp(i, g, prim.value(dn, params), dn, params)) / (2 * h)
            S = curvature(prim, i, g, ans, args, params, tans)
            assert np.allclose(S, fd, rtol=1e-6, atol=1e-8), (name, i)


def test_user_op_without_second_order_rule_falls_back_with_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cube = lp.primitive("test_tangent_cube", lambda x: x ** 3,
                            vjp=lambda g, ans, x: (3 * x ** 2 * g,))
    assert not has_rule(cube)

    def f(x):
        return lp.sum(cube(x) * x)     # x⁴: f'' = 12 x²

    x0 = np.array([0.5, 2.0])
    with pytest.warns(UserWarning, match="test_tangent_cube.*central difference"):
        hv = lp.hvp(f, x0, np.array([1.0, 0.0]))
    assert np.allclose(hv, [12 * 0.25, 0.0], rtol=1e-7, atol=1e-8)


# ------------------------------------------------------------- errors
def test_errors_name_the_input_and_the_fix():
    with pytest.raises(lp.ShapeError, match="tangent for input 'x' has shape"):
        lp.jvp(lp_vector, (X0,), (np.ones(3),))
    with pytest.raises(lp.ShapeError, match="scalar-output.*lp.jacobian"):
        lp.hvp(lp_vector, X0, X0)
    with pytest.raises(lp.ShapeError, match="takes 1 input"):
        lp.jvp(lp_vector, (X0,), (X0, X0))
    with pytest.raises(ValueError, match="mode="):
        lp.jacobian(lp_vector, mode="sideways")(X0)


def test_mixed_residual_and_explicit_block_second_order_matches_differences():
    # u (vector, residual): u³ + u - x·v = 0;  v (explicit): v = 1 + 0.1·sum(sin(u))
    prog = lp.Program(name="mixed")
    x = prog.input("x", shape=(2,))
    u = prog.variable("u", shape=(2,)); v = prog.variable("v")
    prog.residual(u, u ** 3 + u - x * v)
    prog.define(v, 1.0 + 0.1 * lp.sum(lp.sin(u)))
    prog.output(lp.sum(lp.exp(u) * x) + v ** 2, name="obj")
    x0 = np.array([0.7, -1.2])
    assert any({"u", "v"} <= set(b) for b in prog.blocks)
    H = lp.hessian(prog)(x0)
    F = fd_jacobian(lambda p: prog.solve(x=p, tol=1e-14).grad["x"], x0, h=1e-5)
    assert np.allclose(H, F, rtol=1e-6, atol=1e-8)
    J = lp.jacobian(prog)(x0)
    assert np.allclose(J, fd_jacobian(lambda p: prog.evaluate(x=p, tol=1e-14), x0), rtol=1e-7)
