"""Nested transforms: ``grad`` of ``grad`` and friends, against closed forms and HIPS autograd."""

from __future__ import annotations

import warnings

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

import lagrangeprop as lp
from lagrangeprop.rules import REGISTRY
from lagrangeprop.transforms import nested

# ------------------------------------------------------------------ scalars, closed forms

SCALARS = [   # (lagrangeprop f, autograd f, closed-form f'')
    (lambda x: x ** 3, lambda x: x ** 3, lambda x: 6 * x),
    (lambda x: np.sin(x), lambda x: anp.sin(x), lambda x: -np.sin(x)),
    (lambda x: lp.exp(x) * lp.cos(x), lambda x: anp.exp(x) * anp.cos(x),
     lambda x: -2 * np.exp(x) * np.sin(x)),
    (lambda x: lp.tanh(x) / x, lambda x: anp.tanh(x) / x, None),
    (lambda x: np.power(x, 2.5), lambda x: anp.power(x, 2.5), lambda x: 2.5 * 1.5 * x ** 0.5),
]


@pytest.mark.parametrize("k", range(len(SCALARS)))
def test_grad_of_grad_scalars(k):
    f, fa, closed = SCALARS[k]
    for x in (0.7, 1.9):
        got = lp.grad(lp.grad(f))(x)
        np.testing.assert_allclose(got, autograd.grad(autograd.grad(fa))(x), rtol=1e-12)
        if closed is not None:
            np.testing.assert_allclose(got, closed(x), rtol=1e-12)


def test_power_arg0_as_in_autograd():
    # HIPS autograd's test_power_arg0: grad(grad(np.power(x, 0.0)))(0.0) == 0.0
    assert lp.grad(lp.grad(lambda x: np.power(x, 0.0)))(0.0) == 0.0


def test_nested_gradient_inside_an_expression():
    # d/dx (x cos x) = cos x - x sin x
    df = lp.grad(lambda x: lp.grad(lp.sin)(x) * x)
    for x in (0.5, -1.2):
        np.testing.assert_allclose(df(x), np.cos(x) - x * np.sin(x), rtol=1e-13)


def test_value_and_grad_nested():
    f = lambda x: lp.sum(x ** 3) + x[0] * x[1]   # noqa: E731

    def outer(x):
        v, g = lp.value_and_grad(f)(x)
        return 2.0 * v + lp.sum(g)
    x = np.array([1.0, 2.0])
    v, g = lp.value_and_grad(outer)(x)
    assert v == pytest.approx(2 * 11 + 18)
    np.testing.assert_allclose(g, [2 * 5 + 7, 2 * 13 + 13])


# ------------------------------------------------------------------ vectors

def _f(x):
    return lp.sum(lp.sin(x) * x ** 2) + x[0] * x[1] * x[2]


def _fa(x):
    return anp.sum(anp.sin(x) * x ** 2) + x[0] * x[1] * x[2]


def test_grad_of_gradient_dot_v_is_the_hvp(rng):
    x, v = rng.normal(size=3), rng.normal(size=3)
    got = lp.grad(lambda x: lp.grad(_f)(x) @ v)(x)
    want = autograd.grad(lambda x: anp.dot(autograd.grad(_fa)(x), v))(x)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(got, lp.hvp(_f, x, v), rtol=1e-12)


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_jacobian_of_grad_is_the_hessian(rng, mode):
    x = rng.normal(size=3)
    H = lp.jacobian(lp.grad(_f), mode=mode)(x)
    np.testing.assert_allclose(H, lp.hessian(_f)(x), rtol=1e-12)
    np.testing.assert_allclose(H, autograd.hessian(_fa)(x), rtol=1e-12)


def test_parameter_tree_argument():
    f = lambda p: p["a"] ** 2 * p["b"] + lp.sin(p["b"])   # noqa: E731
    g = lp.grad(lambda p: lp.grad(f)(p)["a"])({"a": 1.5, "b": 0.5})   # d/dp (2ab)
    assert g["a"] == pytest.approx(1.0) and g["b"] == pytest.approx(3.0)


def test_a_program_holds_one_nested_node_and_solves_again():
    prog = lp.trace(lambda x: lp.grad(lp.sin)(x) * x, x=0.5)
    ops = [d["op"] for _, d in prog.graph.nodes(data=True) if d["role"] == "defined"]
    assert sum(op.startswith("grad") for op in ops) == 1
    for x in (0.5, 1.5, 0.5):
        sol = prog.solve(x=x)
        assert sol.output == pytest.approx(np.cos(x) * x)
        assert sol.grad["x"] == pytest.approx(np.cos(x) - x * np.sin(x))


# ------------------------------------------------------------------ mixed arguments

def _g(x, y):
    return x ** 2 * lp.sin(y) + x * y ** 3


def _ga(x, y):
    return x ** 2 * anp.sin(y) + x * y ** 3


def test_mixed_second_derivatives_of_a_non_selected_argument():
    got = lp.grad(lambda x, y: lp.grad(_g, 0)(x, y), argnum=(0, 1))(0.7, 1.3)
    inner = lambda x, y: autograd.grad(_ga, 0)(x, y)   # noqa: E731
    want = (autograd.grad(inner, 0)(0.7, 1.3), autograd.grad(inner, 1)(0.7, 1.3))
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_mixed_argument_passed_by_keyword_and_with_value():
    def outer(x, y):
        v, gy = lp.value_and_grad(_g, 1)(x, y=y)
        return v + gy
    got = lp.grad(outer, argnum=(0, 1))(0.7, 1.3)

    def outer_a(x, y):
        return _ga(x, y) + autograd.grad(_ga, 1)(x, y)
    want = (autograd.grad(outer_a, 0)(0.7, 1.3), autograd.grad(outer_a, 1)(0.7, 1.3))
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ------------------------------------------------------------------ jvp on traced values

def test_grad_of_jvp_is_the_hvp(rng):
    x, v = rng.normal(size=3), rng.normal(size=3)
    np.testing.assert_allclose(lp.grad(lambda x: lp.jvp(_f, (x,), (v,))[1])(x), lp.hvp(_f, x, v),
                               rtol=1e-12)
    # with respect to the tangent: <∇f, v> is linear in v
    np.testing.assert_allclose(lp.grad(lambda v: lp.jvp(_f, (x,), (v,))[1])(v), lp.grad(_f)(x),
                               rtol=1e-12)


def test_jvp_with_traced_primal_and_tangent_against_autograd(rng):
    x = rng.normal(size=3)

    def outer(x):
        value, tangent = lp.jvp(_f, (x,), (x,))
        return tangent * x + value
    want = autograd.jacobian(lambda x: anp.dot(autograd.grad(_fa)(x), x) * x + _fa(x))(x)
    for mode in ("forward", "reverse"):
        np.testing.assert_allclose(lp.jacobian(outer, mode=mode)(x), want, rtol=1e-12)


def test_jvp_of_a_non_scalar_function_on_traced_values_raises():
    with pytest.raises(lp.ShapeError, match="scalar-output"):
        lp.grad(lambda x: lp.sum(lp.jvp(lambda z: z * 2.0, (x,), (x,))[1]))(np.ones(2))


# ------------------------------------------------------------------ cyclic blocks

def _fixed_point():
    prog = lp.Program(name="fp")
    x = prog.input("x")
    y = prog.variable("y", shape=())
    prog.define(y, 0.5 * lp.grad(lp.sin)(y) + x)     # y = cos(y)/2 + x
    prog.output(y * y, name="obj")
    return prog


@pytest.mark.parametrize("jac", [True, False])
def test_nested_gradient_in_a_cyclic_block(monkeypatch, jac):
    if not jac:
        monkeypatch.setattr(nested, "JAC_MAX", 0)
    prog = _fixed_point()
    assert len(prog.blocks) == 1
    sol = prog.solve(x=0.3)
    y = sol.values["y"]
    assert y == pytest.approx(0.5 * np.cos(y) + 0.3, abs=1e-10)
    # dy/dx = 1 / (1 + sin(y)/2)
    assert sol.grad["x"] == pytest.approx(2 * y / (1 + 0.5 * np.sin(y)), rel=1e-9)
    op = next(d["op"] for _, d in prog.graph.nodes(data=True) if str(d.get("op")).startswith("grad"))
    assert REGISTRY[op].has_jac is jac


def test_inner_program_with_a_residual_block():
    prog = lp.Program(name="cubic")
    x = prog.input("x")
    w = prog.variable("w", shape=())
    prog.residual(w, w ** 3 + w - x)                 # w³ + w = x
    prog.output(w * w, name="obj")
    x0 = 1.3
    wv = prog.solve(x=x0).values["w"]
    w1 = 1 / (3 * wv ** 2 + 1)                       # w' and w''
    w2 = -6 * wv * w1 ** 3
    assert lp.grad(lp.grad(prog))(x0) == pytest.approx(2 * w1 ** 2 + 2 * wv * w2, rel=1e-12)


def test_vector_block_through_lp_check():
    f = lambda z: lp.sum(lp.sin(z)) + z[0] * z[1]   # noqa: E731
    prog = lp.Program(name="vec")
    x = prog.input("x", shape=(2,))
    y = prog.variable("y", shape=(2,))
    prog.define(y, 0.3 * lp.grad(f)(y) + x)
    prog.output(lp.sum(y ** 2), name="obj")
    report = lp.check(prog, x=np.array([0.1, 0.2]))
    assert report.ok
    assert "finite differences" in str(report) and "grad" in str(report)


# ------------------------------------------------------------------ third order, errors

def test_third_order_warns_and_is_close():
    with pytest.warns(UserWarning, match="no second-order rule"):
        got = lp.grad(lp.grad(lp.grad(lambda x: x ** 4)))(1.5)
    assert got == pytest.approx(24 * 1.5, rel=1e-6)


def test_closure_over_an_outer_traced_value_raises():
    with pytest.raises(lp.GraphError, match="closure"):
        lp.grad(lambda x: lp.grad(lambda y: x * y ** 2)(x))(1.5)


@pytest.mark.parametrize("call", [
    lambda x: lp.vjp(lp.sin, x)[1](1.0)[0],
    lambda x: lp.hvp(lp.sin, x, 1.0),
    lambda x: lp.jacobian(lp.sin)(x),
    lambda x: lp.hessian(lp.sin)(x),
])
def test_other_transforms_on_traced_values_raise(call):
    with pytest.raises(lp.GraphError, match="traced values"):
        lp.grad(call)(0.5)


def test_non_scalar_inner_function_raises():
    with pytest.raises(lp.ShapeError, match="scalar-output"):
        lp.grad(lambda x: lp.sum(lp.grad(lambda z: z * 2.0)(x)))(np.ones(2))


def test_unknown_shape_raises():
    prog = lp.Program(name="p")
    y = prog.variable("y")
    with pytest.raises(lp.GraphError, match="shape"):
        lp.grad(lp.sin)(y)


def test_to_json_refuses_the_nested_op():
    prog = lp.trace(lambda x: lp.grad(lp.sin)(x) * x, x=0.5)
    with pytest.raises(lp.GraphError, match=r"grad\d+\.sin"):
        prog.to_json()


# ------------------------------------------------------------------ cache and guards

def test_traced_twice_with_different_shapes():
    inner = lp.grad(lambda z: lp.sum(z ** 3))
    outer = lp.grad(lambda x: lp.sum(inner(x) * x))     # sum 3x³: gradient 9x²
    for n in (2, 3, 2):
        x = np.arange(1.0, n + 1)
        np.testing.assert_allclose(outer(x), 9 * x ** 2)


def test_retracing_the_outer_function_reuses_the_op():
    inner = lp.grad(lp.sin)
    n = len(REGISTRY)
    a = lp.trace(lambda x: inner(x) * 2.0, x=0.5)
    b = lp.trace(lambda x: inner(x) * 3.0, x=0.7)
    assert len(REGISTRY) == n + 1
    ops = [{d.get("op") for _, d in p.graph.nodes(data=True)} for p in (a, b)]
    assert ops[0] & ops[1] - {None, "multiply"}


W = np.array([1.0, 2.0])


def _weighted(x):
    return lp.sum(W * x ** 3)


INNER = lp.grad(_weighted)


def test_guard_of_the_inner_function_sees_a_changed_global():
    global W
    outer = lp.grad(lambda x: lp.sum(INNER(x)))       # sum 3 W x²: gradient 6 W x
    x = np.array([1.0, 1.5])
    np.testing.assert_allclose(outer(x), 6 * W * x)
    W[0] = 5.0                                         # edited in place
    np.testing.assert_allclose(outer(x), 6 * np.array([5.0, 2.0]) * x)
    old = W
    try:
        W = np.array([-1.0, 3.0])                      # rebound
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            np.testing.assert_allclose(outer(x), 6 * W * x)
    finally:
        W = old
        W[0] = 1.0
