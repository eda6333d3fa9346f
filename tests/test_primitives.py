"""The op registry against independent references.

VJPs are compared with HIPS autograd (its own rules), JVPs with central differences
and with the dot-product identity <u, vjp(v)> == <v, jvp(u)>, sparse Jacobians with
autograd.jacobian.
"""

from __future__ import annotations

import warnings
import zlib

import autograd
import autograd.numpy as anp
import autograd.scipy.special as asp
import numpy as np
import pytest
import scipy.sparse as sp

import lagrangeprop as lp
import lagrangeprop.rules as P
from lagrangeprop.rules.arrays import broadcast_jac, unbroadcast
from lagrangeprop.errors import GraphError, LagrangePropError

RTOL = 1e-10


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng([0, zlib.crc32(repr(key).encode())])


def _with(args, i, xi):
    out = list(args)
    out[i] = xi
    return out


def check_op(name, args, ag_fn, params=None, diff=None, fd_rtol=1e-6, jac=True):
    """Value, VJP, JVP and Jacobian of op ``name`` at ``args`` against autograd's ``ag_fn``."""
    params = params or {}
    prim = P.get(name)
    rng = np.random.default_rng(0)
    ans = prim.value(args, params)
    ref = np.asarray(ag_fn(*args), dtype=np.float64)
    assert ans.dtype == np.float64
    assert ans.shape == ref.shape
    np.testing.assert_allclose(ans, ref, rtol=RTOL, atol=1e-14)
    g = rng.normal(size=ans.shape)
    for i in range(len(args)) if diff is None else diff:
        shape_i = np.shape(args[i])

        def f_i(xi, i=i):
            return ag_fn(*_with(args, i, xi))

        # VJP vs autograd, exact shape
        ours = prim.vjp(i, g, ans, args, params)
        assert ours is not None and ours.shape == shape_i and ours.dtype == np.float64
        vjp_fn, _ = autograd.make_vjp(f_i)(np.asarray(args[i], dtype=np.float64))
        np.testing.assert_allclose(ours, vjp_fn(g), rtol=RTOL, atol=1e-12)

        # JVP: exact shape, dot-product test, central differences
        u = rng.normal(size=shape_i)
        tan = prim.jvp(i, u, ans, args, params)
        assert tan is not None and tan.shape == ans.shape and tan.dtype == np.float64
        np.testing.assert_allclose(np.sum(u * ours), np.sum(g * tan), rtol=1e-10, atol=1e-12)
        h = 1e-6
        xi = np.asarray(args[i], dtype=np.float64)
        if fd_rtol is not None:
            fd = (prim.value(_with(args, i, xi + h * u), params) - prim.value(_with(args, i, xi - h * u), params))
            np.testing.assert_allclose(tan, fd / (2 * h), rtol=fd_rtol, atol=fd_rtol)

        # sparse Jacobian vs autograd.jacobian
        if jac:
            J = prim.jac(i, ans, args, params)
            assert sp.isspmatrix_csr(J) or sp.issparse(J)
            assert J.shape == (ans.size, xi.size)
            Jref = np.reshape(autograd.jacobian(f_i)(xi), (ans.size, xi.size))
            np.testing.assert_allclose(J.toarray(), Jref, rtol=RTOL, atol=1e-12)


# ---------------------------------------------------------------- elementwise

UNARY = {
    "negative": (anp.negative, (-2, 2)),
    "exp": (anp.exp, (-2, 2)),
    "log": (anp.log, (0.2, 3)),
    "log1p": (anp.log1p, (-0.5, 3)),
    "sqrt": (anp.sqrt, (0.2, 3)),
    "sin": (anp.sin, (-3, 3)),
    "cos": (anp.cos, (-3, 3)),
    "tan": (anp.tan, (-1, 1)),
    "tanh": (anp.tanh, (-2, 2)),
    "sigmoid": (lambda x: 1.0 / (1.0 + anp.exp(-x)), (-4, 4)),
    "abs": (anp.abs, (-2, 2)),
    "square": (anp.square, (-2, 2)),
    "identity": (lambda x: x + 0.0, (-2, 2)),
}
BINARY = {
    "add": (anp.add, (-2, 2), (-2, 2)),
    "subtract": (anp.subtract, (-2, 2), (-2, 2)),
    "multiply": (anp.multiply, (-2, 2), (-2, 2)),
    "divide": (anp.divide, (-2, 2), (0.5, 2)),
    "power": (anp.power, (0.3, 2), (-2, 2)),
    "maximum": (anp.maximum, (-2, 2), (-2, 2)),
    "minimum": (anp.minimum, (-2, 2), (-2, 2)),
    "logaddexp": (anp.logaddexp, (-3, 3), (-3, 3)),
}
UNARY_SHAPES = [(), (3,), (2, 3)]
BINARY_SHAPES = [((), ()), ((3,), (3,)), ((3, 1), (1, 4)), ((), (3,)), ((2, 3), (3,)), ((2, 1, 3), (4, 1))]


@pytest.mark.parametrize("shape", UNARY_SHAPES)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary(name, shape):
    fn, (lo, hi) = UNARY[name]
    x = _rng(name, shape).uniform(lo, hi, size=shape)
    check_op(name, [x], fn)


@pytest.mark.parametrize("shapes", BINARY_SHAPES)
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_broadcasting(name, shapes):
    fn, dom0, dom1 = BINARY[name]
    rng = _rng(name, shapes)
    x, y = rng.uniform(*dom0, size=shapes[0]), rng.uniform(*dom1, size=shapes[1])
    check_op(name, [x, y], fn)
    check_op(name, [y if name != "power" else x + 0.1, x], fn)  # broadcast the other way


def test_python_scalars_and_ints():
    # a constant Python int exponent: cotangents have the argument's shape ()
    x = np.array([0.5, 1.5, 2.0])
    check_op("power", [x, 2], anp.power, diff=[0])
    assert P.get("power").vjp(1, np.ones(3), x**2, [x, 2], {}).shape == ()
    check_op("multiply", [3.0, x], anp.multiply)


def test_power_edge_cases():
    power = P.get("power")
    x = np.array([0.0, 2.0, -1.5, 0.0])
    p = np.array([0.0, 0.0, 2.0, 2.0])
    ans = power.value([x, p], {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gx = power.vjp(0, np.ones(4), ans, [x, p], {})
        gp = power.vjp(1, np.ones(4), ans, [x, p], {})
    np.testing.assert_array_equal(gx, [0.0, 0.0, -3.0, 0.0])  # p == 0: no nan at x == 0
    # x == 0: zero (0**p = 0 for p > 0); x < 0: no real derivative in p, NaN (as autograd), which
    # the adjoint turns into NonFiniteError (test_negative_base_with_a_traced_exponent_raises)
    np.testing.assert_array_equal(gp, [0.0, np.log(2.0), np.nan, 0.0])
    ref = autograd.grad(lambda b: anp.sum(anp.power(b, p)))(x)
    np.testing.assert_allclose(gx, ref)
    jp = np.diag(power.jac(1, ans, [x, p], {}).toarray())
    np.testing.assert_array_equal(jp, gp)             # the sparse rule says the same, NaN included


def test_negative_base_with_a_traced_exponent_raises():
    """d/dp x**p at x < 0 does not exist in the reals: NonFiniteError naming the power node,
    never a 0 that looks like an answer; a constant exponent (x**2 at x < 0) is differentiable."""
    with pytest.raises(lp.NonFiniteError, match="power"):
        lp.grad(lambda x, p: x ** p, argnum=(0, 1))(-1.5, 2.0)
    assert float(lp.grad(lambda x: x ** 2)(-1.5)) == -3.0
    assert float(lp.grad(lambda x: x ** 3.0)(-2.0)) == 12.0
    gx, gp = lp.grad(lambda x, p: x ** p, argnum=(0, 1))(2.0, 3.0)
    assert float(gx) == pytest.approx(12.0, rel=1e-15) and float(gp) == pytest.approx(8 * np.log(2.0), rel=1e-15)


def test_abs_at_zero_and_sigmoid_is_stable():
    x = np.array([-1.0, 0.0, 2.0])
    np.testing.assert_array_equal(P.get("abs").vjp(0, np.ones(3), np.abs(x), [x], {}), [-1.0, 0.0, 1.0])
    sig = P.get("sigmoid")
    big = np.array([-800.0, 800.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ans = sig.value([big], {})
        g = sig.vjp(0, np.ones(2), ans, [big], {})
    np.testing.assert_array_equal(ans, [0.0, 1.0])
    np.testing.assert_array_equal(g, [0.0, 0.0])


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_max_min_ties_split_like_autograd(name):
    x = np.array([[1.0, 2.0, 3.0], [0.5, 2.0, -1.0]])
    y = np.array([1.0, 0.0, 3.0])
    fn = BINARY[name][0]
    check_op(name, [x, y], fn, fd_rtol=None)  # FD is meaningless at a kink
    g = P.get(name).vjp(0, np.ones((2, 3)), fn(x, y), [x, y], {})
    assert g[0, 0] == 0.5 and g[0, 2] == 0.5


@pytest.mark.parametrize("shapes", [((3,), (3,), (3,)), ((2, 3), (3,), ()), ((3, 1), (1, 4), (3, 4)), ((), (), ())])
def test_where(shapes):
    rng = _rng("where", shapes)
    cond = rng.uniform(size=shapes[0]) > 0.5
    x, y = rng.normal(size=shapes[1]), rng.normal(size=shapes[2])
    zero = np.zeros(np.broadcast_shapes(*shapes))  # autograd's where does not unbroadcast; adding zero does
    check_op("where", [cond, x, y], lambda c, x, y: anp.where(c, x + zero, y + zero), diff=[1, 2])
    where = P.get("where")
    ans = where.value([cond, x, y], {})
    assert where.vjp(0, np.ones(ans.shape), ans, [cond, x, y], {}) is None
    assert where.jvp(0, np.ones(np.shape(cond)), ans, [cond, x, y], {}) is None
    assert where.jac(0, ans, [cond, x, y], {}) is None
    assert 0 in where.nondiff


@pytest.mark.parametrize("name", ["greater", "greater_equal", "less", "less_equal", "equal", "not_equal"])
def test_comparisons(name):
    prim = P.get(name)
    x, y = np.array([[1.0, 2.0, 3.0]]), np.array([[2.0], [1.0]])
    ans = prim.value([x, y], {})
    assert ans.dtype == np.bool_
    np.testing.assert_array_equal(ans, getattr(np, name)(x, y))
    assert not prim.differentiable and prim.has_jac
    for i in (0, 1):
        assert prim.vjp(i, np.ones(ans.shape), ans, [x, y], {}) is None
        assert prim.jvp(i, np.ones((1, 3)), ans, [x, y], {}) is None
        assert prim.jac(i, ans, [x, y], {}) is None


# ---------------------------------------------------------------- reductions

REDUCTION_CASES = [
    ((), None, False),
    ((4,), None, False),
    ((4,), 0, True),
    ((3, 4), None, True),
    ((3, 4), 0, False),
    ((3, 4), -1, True),
    ((2, 3, 4), (0, 2), False),
    ((2, 3, 4), (1,), True),
    ((2, 3, 4), 1, False),
]


def _ag_logsumexp(x, axis=None, keepdims=False):
    return asp.logsumexp(x, axis=axis, keepdims=keepdims)


@pytest.mark.parametrize("shape,axis,keepdims", REDUCTION_CASES)
@pytest.mark.parametrize("name,ag", [("sum", anp.sum), ("mean", anp.mean), ("logsumexp", _ag_logsumexp)])
def test_reductions(name, ag, shape, axis, keepdims):
    x = _rng(name, shape, axis).normal(size=shape)
    params = {"axis": axis, "keepdims": keepdims}
    check_op(name, [x], lambda x: ag(x, axis=axis, keepdims=keepdims), params=params)


def test_reduction_default_params():
    x = _rng("defaults").normal(size=(2, 3))
    check_op("sum", [x], anp.sum)
    check_op("mean", [x], anp.mean)
    check_op("logsumexp", [x], _ag_logsumexp)


def test_logsumexp_is_stable():
    x = np.array([1000.0, 1000.0])
    prim = P.get("logsumexp")
    ans = prim.value([x], {})
    np.testing.assert_allclose(ans, 1000.0 + np.log(2.0))
    np.testing.assert_allclose(prim.vjp(0, 1.0, ans, [x], {}), [0.5, 0.5])


def _ag_softmax(axis):
    def f(x):
        return anp.exp(x - asp.logsumexp(x, axis=axis, keepdims=True))

    return f


@pytest.mark.parametrize("shape,axis", [((4,), -1), ((3, 4), -1), ((3, 4), 0), ((2, 3, 4), 1), ((2, 3, 4), (0, 2))])
def test_softmax(shape, axis):
    x = _rng("softmax", shape, axis).normal(size=shape) * 3
    check_op("softmax", [x], _ag_softmax(axis), params={"axis": axis})


def test_softmax_default_axis_and_stability():
    x = np.array([[1000.0, 1001.0], [-5.0, 5.0]])
    check_op("softmax", [x], _ag_softmax(-1), fd_rtol=1e-5)


# ---------------------------------------------------------------- products

MATMUL_SHAPES = [
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3, 4)),
    ((1, 3), (3, 1)),
    ((5, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((5, 2, 3), (5, 3, 4)),
    ((5, 1, 2, 3), (4, 3, 2)),
    ((3,), (2, 3, 4)),
]
DOT_SHAPES = [
    ((), (3,)),
    ((2, 3), ()),
    ((), ()),
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3, 4)),
    ((2, 2, 3), (3,)),
    ((2, 2, 3), (4, 3, 2)),
    ((3,), (2, 3, 4)),
]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES)
def test_matmul(shapes):
    rng = _rng("matmul", shapes)
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    check_op("matmul", [a, b], anp.matmul)


@pytest.mark.parametrize("shapes", DOT_SHAPES)
def test_dot(shapes):
    rng = _rng("dot", shapes)
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    check_op("dot", [a, b], anp.dot)


@pytest.mark.parametrize("name", ["matmul", "dot"])
@pytest.mark.parametrize("b_shape", [(5,), (5, 3)])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_constant_matmul(name, b_shape, fmt):
    rng = np.random.default_rng(0)
    A = sp.random(4, 5, density=0.4, random_state=rng, format=fmt)
    Ad = A.toarray()
    b = rng.normal(size=b_shape)
    prim = P.get(name)
    ans = prim.value([A, b], {})
    assert isinstance(ans, np.ndarray) and ans.dtype == np.float64
    np.testing.assert_allclose(ans, Ad @ b, rtol=RTOL)
    g = rng.normal(size=ans.shape)
    gb = prim.vjp(1, g, ans, [A, b], {})
    assert gb.shape == b_shape
    np.testing.assert_allclose(gb, Ad.T @ g, rtol=RTOL, atol=1e-14)
    u = rng.normal(size=b_shape)
    np.testing.assert_allclose(prim.jvp(1, u, ans, [A, b], {}), Ad @ u, rtol=RTOL, atol=1e-14)
    J = prim.jac(1, ans, [A, b], {})
    assert sp.issparse(J) and J.format == "csr"
    Jref = np.reshape(autograd.jacobian(lambda bb: anp.dot(Ad, bb))(b), (ans.size, b.size))
    np.testing.assert_allclose(J.toarray(), Jref, rtol=RTOL)
    # the sparse matrix is a constant: never differentiated
    assert prim.vjp(0, g, ans, [A, b], {}) is None
    assert prim.jvp(0, Ad, ans, [A, b], {}) is None
    assert prim.jac(0, ans, [A, b], {}) is None


# ---------------------------------------------------------------- structure


@pytest.mark.parametrize("shape,new", [((6,), (2, 3)), ((2, 3), (3, 2)), ((2, 3), (-1,)), ((), (1, 1)), ((1,), ())])
def test_reshape(shape, new):
    x = _rng("reshape", shape).normal(size=shape)
    check_op("reshape", [x], lambda x: anp.reshape(x, new), params={"shape": new})


@pytest.mark.parametrize("shape,axes", [((2, 3), None), ((2, 3), (1, 0)), ((2, 3, 4), None), ((2, 3, 4), (1, 0, 2)),
                                        ((2, 3, 4), (2, 0, 1)), ((3,), None)])
def test_transpose(shape, axes):
    x = _rng("transpose", shape).normal(size=shape)
    check_op("transpose", [x], lambda x: anp.transpose(x, axes), params={"axes": axes})


@pytest.mark.parametrize("shapes,axis", [(((2,), (3,), (1,)), 0), (((2, 3), (1, 3)), 0), (((2, 3), (2, 1), (2, 2)), 1),
                                         (((2, 3), (2, 1)), -1), (((2, 1, 3), (2, 2, 3)), 1)])
def test_concatenate(shapes, axis):
    rng = _rng("concatenate", shapes)
    xs = [rng.normal(size=s) for s in shapes]
    check_op("concatenate", xs, lambda *xs: anp.concatenate(list(xs), axis=axis), params={"axis": axis})
    assert P.get("concatenate").nargs is None


@pytest.mark.parametrize("shape,n,axis", [((), 3, 0), ((3,), 2, 0), ((3,), 3, 1), ((2, 3), 2, -1), ((2, 3), 4, 1)])
def test_stack(shape, n, axis):
    rng = _rng("stack", shape, n, axis)
    xs = [rng.normal(size=shape) for _ in range(n)]
    check_op("stack", xs, lambda *xs: anp.stack(list(xs), axis=axis), params={"axis": axis})
    assert P.get("stack").nargs is None


GETITEM_CASES = [
    ((5,), 2),
    ((5,), -1),
    ((5,), slice(1, 4)),
    ((5,), slice(None, None, -2)),
    ((3, 4), (1, slice(None))),
    ((3, 4), (slice(None), 2)),
    ((3, 4), (None, slice(1, 3), None)),
    ((3, 4), (Ellipsis, 1)),
    ((2, 3, 4), (Ellipsis, None, slice(0, 2))),
    ((5,), np.array([0, 2, 2, 4, 0, 0])),  # repeated fancy indices accumulate
    ((3, 4), (np.array([0, 2, 0]), np.array([1, 1, 1]))),
    ((3, 4), (np.array([[0], [2]]), slice(1, 3))),
    ((3, 4), np.array([True, False, True])),
    ((3, 4), np.array([[True, False, True, False]] * 3)),
    ((5,), [1, 1, 3]),
    ((), ()),
    ((), None),
]


@pytest.mark.parametrize("shape,index", GETITEM_CASES, ids=[repr(c) for c in range(len(GETITEM_CASES))])
def test_getitem(shape, index):
    x = _rng("getitem", shape).normal(size=shape)
    check_op("getitem", [x], lambda x: x[index], params={"index": index})


def test_getitem_repeated_indices_accumulate():
    x = np.arange(4.0)
    prim = P.get("getitem")
    idx = np.array([1, 1, 1, 3])
    ans = prim.value([x], {"index": idx})
    np.testing.assert_array_equal(prim.vjp(0, np.ones(4), ans, [x], {"index": idx}), [0.0, 3.0, 0.0, 1.0])
    J = prim.jac(0, ans, [x], {"index": idx})
    np.testing.assert_array_equal(J.toarray().sum(axis=0), [0.0, 3.0, 0.0, 1.0])


# ---------------------------------------------------------------- helpers


@pytest.mark.parametrize("gshape,shape", [((2, 3, 4), (3, 1)), ((3, 4), ()), ((3, 4), (1, 1)), ((3, 4), (3, 4)),
                                          ((4,), (1,)), ((), ()), ((2, 3), (3,))])
def test_unbroadcast(gshape, shape):
    g = _rng("unbroadcast", gshape).normal(size=gshape)
    out = unbroadcast(g, shape)
    assert out.shape == shape
    # unbroadcast is the adjoint of broadcast_to
    v = _rng("v", shape).normal(size=shape)
    np.testing.assert_allclose(np.sum(out * v), np.sum(g * np.broadcast_to(v, gshape)), rtol=1e-12)


def test_broadcast_jac():
    partial = np.arange(6.0).reshape(2, 3)
    J = broadcast_jac(partial, (3,), (2, 3))
    assert J.format == "csr" and J.shape == (6, 3)
    u = np.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(J @ u, (partial * u).ravel())


def test_every_listed_op_is_registered_with_jac():
    names = [
        *("add", "subtract", "multiply", "divide", "power", "negative", "exp", "log", "log1p", "sqrt"),
        *("sin", "cos", "tan", "tanh", "sigmoid", "abs", "maximum", "minimum", "logaddexp", "square", "where"),
        *("sum", "mean", "logsumexp", "softmax", "dot", "matmul", "reshape", "transpose", "concatenate"),
        *("stack", "getitem", "identity"),
    ]
    for name in names:
        prim = P.get(name)
        assert prim.name == name and prim.has_jac and prim.differentiable


# ---------------------------------------------------------------- registry and user ops


def test_unknown_op_raises_graph_error():
    with pytest.raises(GraphError, match="expp") as info:
        P.get("expp")
    assert "'exp'" in str(info.value)  # suggests a close name
    assert isinstance(info.value, LagrangePropError)


def _cube_vjp(g, ans, x, y):
    return 3 * x**2 * y * g, x**3 * g


def _cube_jvp(tangents, ans, x, y):
    tx, ty = tangents
    out = 0.0
    if tx is not None:
        out = out + 3 * x**2 * y * tx
    if ty is not None:
        out = out + x**3 * ty
    return out


def _ag_cube(x, y):
    return x**3 * y


@pytest.mark.parametrize("rules", ["vjp", "jvp", "both", "jac"])
def test_user_primitive_rules(rules):
    kw = {}
    if rules in ("vjp", "both"):
        kw["vjp"] = _cube_vjp
    if rules in ("jvp", "both"):
        kw["jvp"] = _cube_jvp
    if rules == "jac":
        kw["jac"] = lambda ans, x, y: (np.diag(3 * x**2 * y), sp.diags(x**3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a new name with rules: no warning
        prim = P.primitive(f"user_cube_{rules}", lambda x, y: x**3 * y, **kw)
    assert P.get(f"user_cube_{rules}") is prim and prim.nargs == 2 and prim.has_jac
    rng = np.random.default_rng(0)
    x, y = rng.uniform(0.5, 1.5, size=3), rng.normal(size=3)
    check_op(prim.name, [x, y], _ag_cube)


def test_user_primitive_unbroadcasts_defensively():
    prim = P.primitive("user_bcast_mul", lambda x, y: x * y, vjp=lambda g, ans, x, y: (g * y, g * x))
    x, y = np.array(2.0), np.arange(3.0)
    g = prim.vjp(0, np.ones(3), x * y, [x, y], {})
    assert g.shape == () and float(g) == 3.0
    J = prim.jac(0, x * y, [x, y], {})
    np.testing.assert_allclose(J.toarray(), [[0.0], [1.0], [2.0]])


def test_user_primitive_finite_difference_fallback_warns_and_is_accurate():
    with pytest.warns(UserWarning, match="finite differences"):
        prim = P.primitive("user_fd_op", lambda x, y: np.sin(x) * np.exp(y))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(2, 3)), rng.normal(size=(3,))
    args = [x, y]
    ans = prim.value(args, {})
    g = rng.normal(size=ans.shape)
    for i, ref_fn in enumerate([lambda x: anp.sin(x) * anp.exp(y), lambda y: anp.sin(x) * anp.exp(y)]):
        ours = prim.vjp(i, g, ans, args, {})
        assert ours.shape == args[i].shape
        vjp_fn, _ = autograd.make_vjp(ref_fn)(args[i])
        np.testing.assert_allclose(ours, vjp_fn(g), rtol=1e-6, atol=1e-8)
        u = rng.normal(size=args[i].shape)
        tan = prim.jvp(i, u, ans, args, {})
        assert tan.shape == ans.shape
        np.testing.assert_allclose(np.sum(u * ours), np.sum(g * tan), rtol=1e-10)
        Jref = np.reshape(autograd.jacobian(ref_fn)(args[i]), (ans.size, args[i].size))
        np.testing.assert_allclose(prim.jac(i, ans, args, {}).toarray(), Jref, rtol=1e-6, atol=1e-8)


def test_user_primitive_params_reach_fn_and_its_rules():
    """The op's keyword arguments reach fn and every rule (a vjp left at its default would give a
    wrong derivative silently); a rule that does not take them raises GraphError."""
    prim = P.primitive("user_scaled", lambda x, scale=1.0: scale * x,
                       vjp=lambda g, ans, x, scale=1.0: (scale * g,))
    assert prim.nargs == 1
    np.testing.assert_allclose(prim.value([np.ones(2)], {"scale": 2.0}), [2.0, 2.0])
    np.testing.assert_allclose(prim.vjp(0, np.ones(2), np.full(2, 2.0), [np.ones(2)], {"scale": 2.0}), [2.0, 2.0])
    with pytest.warns(UserWarning, match="replacing"):
        blind = P.primitive("user_scaled", lambda x, scale=1.0: scale * x, vjp=lambda g, ans, x: (2.0 * g,))
    with pytest.raises(lp.GraphError, match="does not take"):
        blind.vjp(0, np.ones(2), np.full(2, 2.0), [np.ones(2)], {"scale": 2.0})
    np.testing.assert_allclose(blind.vjp(0, np.ones(2), np.full(2, 2.0), [np.ones(2)], {}), [2.0, 2.0])


def test_reregistration_replaces_with_warning():
    first = P.primitive("user_twice", lambda x: 2 * x, vjp=lambda g, ans, x: (2 * g,))
    with pytest.warns(UserWarning, match="user_twice"):
        second = P.primitive("user_twice", lambda x: 3 * x, vjp=lambda g, ans, x: (3 * g,))
    assert P.get("user_twice") is second and second is not first
    assert float(second.vjp(0, 1.0, 3.0, [1.0], {})) == 3.0


def test_variadic_user_primitive():
    prim = P.primitive("user_sum_all", lambda *xs: sum(xs), vjp=lambda g, ans, *xs: tuple(g for _ in xs))
    assert prim.nargs is None
    args = [np.ones(2), np.ones(2), np.ones(2)]
    assert prim.vjp(2, np.ones(2), 3 * np.ones(2), args, {}).shape == (2,)


def test_missing_jac_raises_not_implemented():
    prim = P.Primitive("no_jac", np.exp, nargs=1, vjp=lambda i, g, ans, args, params: g * ans)
    assert not prim.has_jac
    with pytest.raises(NotImplementedError, match="no_jac"):
        prim.jac(0, np.ones(2), [np.zeros(2)], {})


def test_json_style_params_lists():
    # params read back from JSON may hold lists where tuples were given
    x = _rng("lists").normal(size=(2, 3, 4))
    check_op("sum", [x], lambda x: anp.sum(x, axis=(0, 2)), params={"axis": [0, 2], "keepdims": False})
    check_op("softmax", [x], _ag_softmax((0, 2)), params={"axis": [0, 2]})
    check_op("transpose", [x], lambda x: anp.transpose(x, (2, 0, 1)), params={"axes": [2, 0, 1]})
    check_op("reshape", [x], lambda x: anp.reshape(x, (4, 6)), params={"shape": [4, 6]})


@pytest.mark.parametrize("name,params", [("getitem", {"index": slice(0, 2)}), ("reshape", {"shape": (2, 2)}),
                                         ("transpose", {}), ("identity", {})])
def test_values_never_alias_arguments(name, params):
    x = np.arange(4.0) if name != "transpose" else np.ones((2, 2))
    out = P.get(name).value([x], params)
    assert not np.shares_memory(out, x)


def test_check_op_catches_a_wrong_rule():
    # autograd's test_tests.py idea: a deliberately wrong rule must fail the comparison
    wrong = P.Primitive("wrong_sin", np.sin, nargs=1,
                        vjp=lambda i, g, ans, args, params: g * np.cos(args[0]) * (1 + 1e-6),
                        jvp=lambda i, t, ans, args, params: t * np.cos(args[0]),
                        jac=lambda i, ans, args, params: sp.diags(np.cos(args[0])))
    P.register(wrong)
    try:
        with pytest.raises(AssertionError):
            check_op("wrong_sin", [np.array([0.1, 0.2])], anp.sin)
    finally:
        del P.REGISTRY["wrong_sin"]
