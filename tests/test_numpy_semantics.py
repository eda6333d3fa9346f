"""numpy semantics while tracing (issue 11, classes 3 and 4), against independent references.

The tape (lp.check) replays our own graph, so it cannot catch a misread numpy call; these
tests compare every op's traced forward value with numpy's (or scipy's) own result, and its
gradient with HIPS autograd run on the *numpy function itself*, on random shapes, negative
axes and keywords. Then: every numpy argument is implemented or raises GraphError; a
cotangent of the wrong shape raises; a multiplier that comes out NaN/inf raises
NonFiniteError naming the node; concrete-value requests on traced values raise GraphError.
"""

from __future__ import annotations

import operator

import autograd
import autograd.numpy as anp
import autograd.scipy.special as asp
import numpy as np
import pytest
import scipy.special
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lagrangeprop as lp
from lagrangeprop.rules import registry
from lagrangeprop.rules.arrays import unbroadcast
from lagrangeprop.rules.registry import REGISTRY

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---------------------------------------------------------------- the op table
# Each case: (m, *xs) -> value, written once for numpy's namespace ``m``: called with
# m = np on traced Vars (dispatching through __array_ufunc__ / __array_function__ / methods),
# with m = np on ndarrays (the reference value) and with m = autograd.numpy (the reference
# gradient). ``LP`` cases use lp.* on the traced side, scipy / autograd.scipy as references.

def _shape(draw, min_dims=0, max_dims=3, min_side=1, max_side=4):
    n = draw(st.integers(min_dims, max_dims))
    return tuple(draw(st.integers(min_side, max_side)) for _ in range(n))


def _array(draw, shape, lo=-2.0, hi=2.0):
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).uniform(lo, hi, size=shape)


def _bshapes(draw):
    """Two shapes that broadcast: drop leading axes and set some axes to 1."""
    out = _shape(draw, 0, 3)
    a = list(out[draw(st.integers(0, len(out))):])
    b = list(out[draw(st.integers(0, len(out))):])
    for s in (a, b):
        for k in range(len(s)):
            if draw(st.booleans()) and draw(st.booleans()):
                s[k] = 1
    return tuple(a), tuple(b)


def _axis(draw, ndim, allow_none=True, allow_tuple=True):
    """None, an int in [-ndim, ndim) or a tuple of distinct (possibly negative) axes."""
    choices = ["int"] if ndim else []
    if allow_none:
        choices.append("none")
    if allow_tuple and ndim:
        choices.append("tuple")
    kind = draw(st.sampled_from(choices))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    axes = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
    return tuple(a - ndim if draw(st.booleans()) else a for a in axes)


UNARY = {   # name -> (m -> function, domain)
    "exp": (lambda m: m.exp, (-2, 2)), "log": (lambda m: m.log, (0.2, 3)),
    "log1p": (lambda m: m.log1p, (-0.5, 2)), "sqrt": (lambda m: m.sqrt, (0.2, 3)),
    "sin": (lambda m: m.sin, (-3, 3)), "cos": (lambda m: m.cos, (-3, 3)),
    "tan": (lambda m: m.tan, (-1.2, 1.2)), "tanh": (lambda m: m.tanh, (-3, 3)),
    "abs": (lambda m: m.abs, (0.1, 2)), "negative": (lambda m: m.negative, (-2, 2)),
    "square": (lambda m: m.square, (-2, 2)),
}
BINARY = {  # name -> (m -> function, domain of x, domain of y)
    "add": (lambda m: m.add, (-2, 2), (-2, 2)), "subtract": (lambda m: m.subtract, (-2, 2), (-2, 2)),
    "multiply": (lambda m: m.multiply, (-2, 2), (-2, 2)),
    "divide": (lambda m: m.divide, (-2, 2), (0.5, 2)),
    "power": (lambda m: m.power, (0.3, 2), (-2, 2)),
    "maximum": (lambda m: m.maximum, (-2, 2), (-2, 2)), "minimum": (lambda m: m.minimum, (-2, 2), (-2, 2)),
    "logaddexp": (lambda m: m.logaddexp, (-2, 2), (-2, 2)),
    # % and //: x - floor(x/y)·y with the divisor's sign, and the (zero-derivative) quotient
    "remainder": (lambda m: lambda x, y: x % y, (-5, 5), (0.5, 2)),
    "floor_divide": (lambda m: lambda x, y: (x // y) * y, (-5, 5), (0.5, 2)),
}
COMPARE = ["greater", "greater_equal", "less", "less_equal", "equal", "not_equal"]
LOGICAL = {  # name -> (function form, operator form) of two boolean masks
    "logical_and": (lambda m, a, b: m.logical_and(a, b), operator.and_),
    "logical_or": (lambda m, a, b: m.logical_or(a, b), operator.or_),
    "logical_xor": (lambda m, a, b: m.logical_xor(a, b), operator.xor),
    "logical_not": (lambda m, a, b: m.logical_not(a), lambda a, b: ~a),
}


@st.composite
def cases(draw, name):
    """(function of (m, *xs), inputs, uses_lp) for op ``name`` with random shapes and params."""
    if name in UNARY:
        fn, dom = UNARY[name]
        return (lambda m, x: fn(m)(x)), [_array(draw, _shape(draw), *dom)], False
    if name in BINARY:
        fn, dx, dy = BINARY[name]
        sa, sb = _bshapes(draw)
        x, y = _array(draw, sa, *dx), _array(draw, sb, *dy)
        if name in ("maximum", "minimum") and draw(st.booleans()):
            x, y = np.round(x), np.round(y)      # ties: autograd splits the cotangent 0.5/0.5
        if name == "power" and draw(st.booleans()):
            # an integer exponent (a constant) of any real base, zero included
            p = float(draw(st.integers(-2, 3)))
            x = np.round(_array(draw, sa, -2, 2), 1)
            if p < 0:
                x = np.where(np.abs(x) < 0.5, 0.5, x)
            return (lambda m, x: fn(m)(x, p)), [x], False
        return (lambda m, x, y: fn(m)(x, y)), [x, y], False
    if name in COMPARE:
        # values on a coarse grid, so equal/not_equal (and the >= ties) really happen
        sa, sb = _bshapes(draw)
        x, y = (np.round(_array(draw, s)) for s in (sa, sb))
        return (lambda m, x, y: m.where(getattr(m, name)(x, y), x * y, x - y)), [x, y], False
    if name in LOGICAL:
        sa, sb = _bshapes(draw)
        function, op = LOGICAL[name]
        form = draw(st.sampled_from(["function", "operator"]))

        def fn(m, x, y):
            a, b = x > 0, y < 0.5
            mask = function(m, a, b) if form == "function" else op(a, b)
            return m.where(mask, x * y, x - y)
        return fn, [_array(draw, sa), _array(draw, sb)], False
    if name == "where":
        sc, sa = _bshapes(draw)
        c = _array(draw, sc)

        def fn(m, x, y):
            if m is anp:   # autograd's where VJP does not sum over broadcast axes: broadcast first
                zeros = np.zeros(np.broadcast_shapes(c.shape, np.shape(x), np.shape(y)))
                x, y = x + zeros, y + zeros
            return m.where(c > 0, x, y)
        return fn, [_array(draw, sa), _array(draw, sc)], False
    if name in ("sum", "mean"):
        s = _shape(draw)
        axis, keep = _axis(draw, len(s)), draw(st.booleans())
        form = draw(st.sampled_from(["function", "method"]))
        if form == "method":
            return (lambda m, x: getattr(x, name)(axis=axis, keepdims=keep)), [_array(draw, s)], False
        return (lambda m, x: getattr(m, name)(x, axis=axis, keepdims=keep)), [_array(draw, s)], False
    if name == "logsumexp":
        s = _shape(draw, 1)
        axis, keep = _axis(draw, len(s)), draw(st.booleans())
        return ("logsumexp", axis, keep), [_array(draw, s)], True
    if name == "softmax":
        s = _shape(draw, 1)
        return ("softmax", _axis(draw, len(s), allow_tuple=False)), [_array(draw, s)], True
    if name == "sigmoid":
        return ("sigmoid",), [_array(draw, _shape(draw), -4, 4)], True
    if name == "identity":
        return ("identity",), [_array(draw, _shape(draw))], True
    if name in ("dot", "matmul") and draw(st.booleans()):
        # N-D operands: stacked matmul with broadcast batch axes; numpy.dot's N-D contraction
        n, k, r = (draw(st.integers(1, 3)) for _ in range(3))
        if name == "matmul":
            batch = draw(st.sampled_from([((2,), (2,)), ((2,), ()), ((), (2,)), ((2, 1), (3,))]))
            a, b = batch[0] + (r, n), batch[1] + (n, k)
            if draw(st.booleans()):
                b = (n,) if draw(st.booleans()) else b
            return (lambda m, a, b: m.matmul(a, b)), [_array(draw, a), _array(draw, b)], False
        a, b = draw(st.sampled_from([((2, r, n), (n,)), ((2, r, n), (n, k)), ((n,), (2, n, k)),
                                     ((r, n), (2, n, k))]))
        return (lambda m, a, b: m.dot(a, b)), [_array(draw, a), _array(draw, b)], False
    if name in ("dot", "matmul"):
        n, k = draw(st.integers(1, 4)), draw(st.integers(1, 4))
        ashape = draw(st.sampled_from([(n,), (draw(st.integers(1, 3)), n)] + ([()] if name == "dot" else [])))
        bshape = draw(st.sampled_from([(n,), (n, k)] + ([()] if name == "dot" else [])))
        if name == "matmul":
            return (lambda m, a, b: a @ b), [_array(draw, ashape), _array(draw, bshape)], False
        return (lambda m, a, b: m.dot(a, b)), [_array(draw, ashape), _array(draw, bshape)], False
    if name == "reshape":
        s = _shape(draw, 0, 3)
        size = int(np.prod(s))
        new = [d for d in range(1, size + 1) if size % d == 0]
        first = draw(st.sampled_from(new))
        target = (first, size // first) if draw(st.booleans()) else (size,)
        if draw(st.booleans()):
            target = tuple(-1 if k == 0 else t for k, t in enumerate(target))
        order = draw(st.sampled_from(["C", "F"]))
        if draw(st.booleans()):
            return (lambda m, x: m.reshape(x, target, order=order)), [_array(draw, s)], False
        return (lambda m, x: x.reshape(target, order=order)), [_array(draw, s)], False
    if name == "transpose":
        s = _shape(draw, 1, 4)
        perm = draw(st.permutations(range(len(s))))
        axes = tuple(a - len(s) if draw(st.booleans()) else a for a in perm)
        form = draw(st.sampled_from(["function", "method", "T"]))
        if form == "T":
            return (lambda m, x: x.T), [_array(draw, s)], False
        # autograd's own transpose VJP is wrong for negative axes (it inverts them with
        # argsort): its reference gets the normalized axes, numpy's the negative ones
        pos = tuple(a % len(s) for a in axes)

        def fn(m, x):
            ax = pos if m is anp else axes
            return x.transpose(ax) if form == "method" else m.transpose(x, ax)
        return fn, [_array(draw, s)], False
    if name == "getitem":
        s = _shape(draw, 1, 3, min_side=2)
        index = []
        for n in s[:draw(st.integers(1, len(s)))]:
            kind = draw(st.sampled_from(["int", "slice", "array"]))
            if kind == "int":
                index.append(draw(st.integers(-n, n - 1)))
            elif kind == "slice":
                start = draw(st.one_of(st.none(), st.integers(-n, n)))
                stop = draw(st.one_of(st.none(), st.integers(-n, n)))
                step = draw(st.one_of(st.none(), st.sampled_from([1, 2, -1, -2])))
                index.append(slice(start, stop, step))
            else:
                index.append(np.array(draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=4))))
        if draw(st.booleans()):   # numpy.newaxis and Ellipsis
            index.insert(draw(st.integers(0, len(index))), None)
        if draw(st.booleans()):   # after the indexed axes (or before all, when all are indexed)
            consumed = sum(k is not None for k in index)
            index.insert(0 if consumed == len(s) else len(index), Ellipsis)
        arrays = [k for k in index if isinstance(k, np.ndarray)]
        if len(arrays) > 1:   # several integer arrays must broadcast together: use one
            index = [k if not isinstance(k, np.ndarray) or k is arrays[0] else 0 for k in index]
        idx = tuple(index)
        return (lambda m, x: x[idx]), [_array(draw, s)], False
    if name in ("concatenate", "stack"):
        s = list(_shape(draw, 1 if name == "concatenate" else 0, 3))
        nd = len(s) + (name == "stack")
        axis = draw(st.integers(-nd, nd - 1))
        xs = []
        for _ in range(draw(st.integers(1, 3))):
            t = list(s)
            if name == "concatenate":
                t[axis] = draw(st.integers(1, 3))
            xs.append(_array(draw, tuple(t)))
        return (lambda m, *xs: getattr(m, name)(list(xs), axis=axis)), xs, False
    if name in ("max", "min", "prod", "cumsum"):   # reductions and scans (tests/test_ops_reductions.py)
        s = _shape(draw, 1 if name == "cumsum" else 0)
        if name == "cumsum":
            axis = draw(st.integers(-len(s), len(s) - 1))
            return (lambda m, x: m.cumsum(x, axis=axis)), [_array(draw, s)], False
        axis, keep = _axis(draw, len(s), allow_tuple=name != "prod"), draw(st.booleans())
        return (lambda m, x: getattr(m, name)(x, axis=axis, keepdims=keep)), [_array(draw, s)], False
    if name in ("sort", "partition"):   # autograd sorts 1-D arrays only
        n = draw(st.integers(1, 5))
        kth = draw(st.integers(-n, n - 1))
        args = (kth,) if name == "partition" else ()
        return (lambda m, x: getattr(m, name)(x, *args) * np.arange(1.0, n + 1)), [_array(draw, (n,))], False
    if name in ("argmax", "argmin", "argsort", "all", "any", "count_nonzero"):   # no derivative
        s = _shape(draw, 1)
        arg = {"argmax": lambda m, x: m.argmax(x), "argmin": lambda m, x: m.argmin(x, axis=-1, keepdims=True),
               "argsort": lambda m, x: m.argsort(x), "all": lambda m, x: m.all(x > -1.0, axis=0),
               "any": lambda m, x: m.any(x > 1.0), "count_nonzero": lambda m, x: m.count_nonzero(x > 0)}[name]
        return (lambda m, x: x * arg(m, x)), [_array(draw, s)], False
    if name == "einsum":   # letters of random lengths; no repeated letter (autograd's einsum)
        subscripts = draw(st.sampled_from(["ij,jk->ik", "ij,jk", "i,j->ij", "ij->ji", "ij->",
                                           "...ij,...jk->...ik", "bij,bj->bi", "ij,jk,k->i"]))
        size = {c: draw(st.integers(1, 3)) for c in "bijk"}
        terms = subscripts.partition("->")[0].split(",")
        lead = _shape(draw, 0, 2)
        xs = [_array(draw, (lead if t.startswith("...") else ()) + tuple(size[c] for c in t.strip(".")))
              for t in terms]
        return (lambda m, *xs: m.einsum(subscripts, *xs)), xs, False
    raise AssertionError(f"no property case for op {name!r}")


def _lp_case(spec, m):
    """The lp.* op and its reference in namespace ``m`` (np: scipy, anp: autograd.scipy)."""
    kind = spec[0]
    if kind == "logsumexp":
        axis, keep = spec[1:]
        if m is lp:
            return lambda x: lp.logsumexp(x, axis=axis, keepdims=keep)
        lse = scipy.special.logsumexp if m is np else asp.logsumexp
        return lambda x: lse(x, axis=axis, keepdims=keep)
    if kind == "softmax":
        axis = spec[1]
        if m is lp:
            return lambda x: lp.softmax(x, axis=axis)
        if m is np:
            return lambda x: scipy.special.softmax(x, axis=axis)
        return lambda x: anp.exp(x - asp.logsumexp(x, axis=axis, keepdims=True))
    if kind == "sigmoid":
        return lp.sigmoid if m is lp else (scipy.special.expit if m is np else asp.expit)
    return lp.identity if m is lp else (lambda x: x + 0.0)


def _functions(fn, uses_lp):
    if uses_lp:
        traced = _lp_case(fn, lp)
        return (lambda *xs: traced(*xs)), _lp_case(fn, np), _lp_case(fn, anp)
    return (lambda *xs: fn(np, *xs)), (lambda *xs: fn(np, *xs)), (lambda *xs: fn(anp, *xs))


def _compare(fn, xs, uses_lp):
    traced, reference, autograd_fn = _functions(fn, uses_lp)
    want = np.asarray(reference(*[x.copy() for x in xs]), dtype=np.float64)
    names = {f"arg{k}": x for k, x in enumerate(xs)}
    prog = lp.trace(traced, *xs)
    got = np.asarray(prog.evaluate(**names))
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    # the values in a solve, and the gradient of <W, f> against autograd on the numpy code
    W = np.random.default_rng(len(xs) + want.size).uniform(-1, 1, size=want.shape)
    sol = prog.solve(**names, seed=W) if want.shape else prog.solve(**names, seed=float(W))
    np.testing.assert_allclose(sol.output, want, rtol=1e-12, atol=1e-12)
    for k in range(len(xs)):
        ref = autograd.grad(lambda *a: anp.sum(autograd_fn(*a) * W), k)(*xs)
        np.testing.assert_allclose(sol.grad[f"arg{k}"], ref, rtol=1e-9, atol=1e-12,
                                   err_msg=f"gradient of argument {k}")


PROPERTY_OPS = sorted(set(UNARY) | set(BINARY) | set(COMPARE) | set(LOGICAL) | {
    "where", "sum", "mean", "logsumexp", "softmax", "sigmoid", "identity", "dot", "matmul",
    "reshape", "transpose", "getitem", "concatenate", "stack",
    "max", "min", "prod", "cumsum", "sort", "partition", "argmax", "argmin", "argsort", "all", "any",
    "count_nonzero", "einsum"})


@pytest.mark.parametrize("name", PROPERTY_OPS)
@SETTINGS
@given(data=st.data())
def test_traced_value_and_gradient_match_numpy_and_autograd(name, data):
    fn, xs, uses_lp = data.draw(cases(name))
    _compare(fn, xs, uses_lp)


def _jacobians_and_hvps(fn, xs, uses_lp):
    """Forward/reverse Jacobians (the ops' sparse jac rules), a JVP (their jvp rules) and a
    Hessian-vector product (their curvature rules) against autograd on the numpy code."""
    traced, _, autograd_fn = _functions(fn, uses_lp)
    rng = np.random.default_rng(7)
    if np.size(autograd_fn(*xs)) == 0:
        return   # an empty selection: autograd.jacobian cannot stack no rows
    for k in range(len(xs)):
        ref = autograd.jacobian(autograd_fn, k)(*xs)
        for mode in ("forward", "reverse"):
            got = lp.jacobian(lambda *a: traced(*a), argnum=k, mode=mode)(*xs)
            np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12, err_msg=f"{mode} jacobian {k}")
    ts = [rng.uniform(-1, 1, size=np.shape(x)) for x in xs]
    _, tangent = lp.jvp(lambda *a: traced(*a), tuple(xs), tuple(ts))
    want = sum(np.tensordot(autograd.jacobian(autograd_fn, k)(*xs), t, axes=np.ndim(t))
               for k, t in enumerate(ts))
    np.testing.assert_allclose(tangent, want, rtol=1e-9, atol=1e-12, err_msg="jvp")
    # h(x) = <W, f> + |f|^2 / 2: the op's own curvature enters through λ_f = W + f
    for k, x in enumerate(xs):
        def args(a, k=k):
            return [a if j == k else xs[j] for j in range(len(xs))]
        out = np.asarray(autograd_fn(*xs))
        W = rng.uniform(-1, 1, size=out.shape)

        def h_lp(a, W=W):
            y = traced(*args(a))
            return lp.sum(y * W + 0.5 * y * y)

        def h_ag(a, W=W):
            y = autograd_fn(*args(a))
            return anp.sum(y * W + 0.5 * y * y)
        v = rng.uniform(-1, 1, size=np.shape(x))
        want = np.tensordot(autograd.hessian(h_ag)(x), v, axes=np.ndim(v))
        np.testing.assert_allclose(lp.hvp(h_lp, x, v), want, rtol=1e-8, atol=1e-10,
                                   err_msg=f"hvp of argument {k}")


@pytest.mark.parametrize("name", PROPERTY_OPS)
@settings(SETTINGS, max_examples=6)
@given(data=st.data())
def test_traced_jacobians_jvp_and_hvp_match_autograd(name, data):
    fn, xs, uses_lp = data.draw(cases(name))
    _jacobians_and_hvps(fn, xs, uses_lp)


# np.linalg ops need well-conditioned (SPD, distinct-spectrum) matrices, which random arrays
# are not: tests/test_ops_linalg.py checks each one against autograd (check_grads)
LINALG_OPS = {"solve", "inv", "det", "slogdet", "slogdet_sign", "cholesky", "pinv", "eigvalsh",
              "eigh_vectors", "svd_u", "svdvals", "svd_vh", "norm"}


def test_every_registered_op_is_covered_by_the_property_test():
    from test_ops_ufuncs import COVERED   # the ufunc families' own check_grads suite
    # (a nested lp.grad registers a generated op per call signature: not a built-in)
    builtin = {n for n, p in REGISTRY.items() if not p.user and not hasattr(p, "nested")}
    assert builtin - set(PROPERTY_OPS) - COVERED - LINALG_OPS == set(), "add a property case for every built-in op"


# ---------------------------------------------------------------- == and !=


def test_equal_and_not_equal_are_primitives_per_input():
    def f(x):
        return lp.where(x == 1.0, 10.0 * x, x * x) + lp.where(x != 2.0, x, -x)
    prog = lp.trace(f, x=np.zeros(4))
    ops = {d.get("op") for _, d in prog.graph.nodes(data=True)}
    assert {"equal", "not_equal"} <= ops
    for x in (np.array([1.0, 2.0, 3.0, 1.0]), np.array([0.5, 1.0, 2.0, 2.0])):
        def ref(x, m):
            return m.where(x == 1.0, 10.0 * x, x * x) + m.where(x != 2.0, x, -x)
        np.testing.assert_allclose(prog.evaluate(x=x), ref(x, np))
        sol = prog.solve(x=x, seed=np.ones(4))
        np.testing.assert_allclose(sol.grad["x"], autograd.grad(lambda x: anp.sum(ref(x, anp)))(x))


def test_lp_grad_of_equality_branch_follows_the_input():
    g = lp.grad(lambda x: lp.where(x == 1.0, 3.0 * x, x ** 2))
    assert float(g(1.0)) == 3.0 and float(g(2.0)) == 4.0


def test_var_stays_hashable_by_identity():
    prog = lp.Program()
    x = prog.input("x")
    y = lp.exp(x)
    d = {x: 1, y: 2}
    assert d[x] == 1 and d[y] == 2 and hash(x) != hash(y)


# ---------------------------------------------------------------- keywords and arguments


def test_reshape_order_f_matches_numpy_value_and_gradient():
    x = np.arange(6.0).reshape(2, 3) + 0.5
    for f in (lambda m, x: m.reshape(x, (3, 2), order="F"), lambda m, x: x.reshape((-1,), order="F")):
        _compare(f, [x], False)


@pytest.mark.parametrize("call, word", [
    (lambda x: np.exp(x, where=np.array([True, False, True])), "where"),
    (lambda x: np.add(x, 1.0, out=np.zeros(3)), "out"),
    (lambda x: np.exp(x, dtype=np.float32), "dtype"),
    (lambda x: np.add(x, 1.0, casting="unsafe"), "casting"),
    (lambda x: np.sum(x, dtype=np.int64), "dtype"),
    (lambda x: np.sum(x, where=np.array([True, False, True])), "where"),
    (lambda x: np.sum(x, out=np.zeros(())), "out"),
    (lambda x: np.mean(x, where=np.array([True, False, True])), "where"),
    (lambda x: x.sum(dtype=np.float32), "dtype"),
    (lambda x: np.reshape(x, (3, 1), order="A"), "order"),
    (lambda x: np.concatenate([x, x], dtype=np.float32), "dtype"),
    (lambda x: np.stack([x, x], out=np.zeros((2, 3))), "out"),
    (lambda x: np.concatenate([x, x], casting="unsafe"), "casting"),
    (lambda x: np.dot(x, x, out=np.zeros(())), "out"),
    (lambda x: np.add.reduce(x), "reduce"),
    (lambda x: np.add.accumulate(x), "accumulate"),
    (lambda x: np.where(x > 0), "one-argument"),
    (lambda x: lp.logsumexp(x, b=np.ones(3)), "'b'"),
    (lambda x: np.spacing(x), "spacing"),
])
def test_unsupported_numpy_arguments_raise_graph_error(call, word):
    with pytest.raises(lp.GraphError, match=word):
        lp.trace(call, x=np.ones(3))


def test_default_valued_keywords_are_accepted_and_faithful():
    x = np.array([0.5, -1.0, 2.0])
    f = lambda x: (np.exp(x, out=None, where=True, casting="same_kind", dtype=np.float64)  # noqa: E731
                   + np.sum(x, dtype=np.float64, initial=2.5, keepdims=True)
                   + np.concatenate([x], axis=-1) + np.mean(np.stack([x, x], axis=-1), axis=-1))
    want = np.exp(x) + np.sum(x, initial=2.5, keepdims=True) + x + x
    np.testing.assert_allclose(lp.trace(f, x=x).evaluate(x=x), want)
    np.testing.assert_allclose(lp.grad(lambda x: np.sum(f(x)))(x),
                               autograd.grad(lambda x: anp.sum(anp.exp(x) + anp.sum(x) + 2.5 + 2 * x))(x))


def test_copy_ravel_flatten_astype():
    x = np.arange(6.0).reshape(2, 3)
    for f in (lambda m, x: x.ravel(order="F") * 1.5, lambda m, x: m.ravel(x) ** 2,
              lambda m, x: (x + 0.0 if m is anp else m.copy(x)) * x.flatten().reshape(2, 3),
              lambda m, x: x.astype(np.float64) + 1.0):
        _compare(f, [x], False)
    with pytest.raises(lp.GraphError, match="dtype"):
        lp.trace(lambda x: x.astype(np.int64), x=x)


@pytest.mark.parametrize("call, word", [
    (lambda x: x & (x > 0), "boolean operands"), (lambda x: ~x, "boolean operands"),
    (lambda x: x.__setitem__(0, 1.0), "immutable"), (lambda x: lp.sum(x, axis=0.5), "axis"),
])
def test_unsupported_operators_raise_graph_error(call, word):
    with pytest.raises(lp.GraphError, match=word):
        lp.trace(call, x=np.ones(3))


def test_item_assignment_raises_graph_error():
    def f(x):
        x[0] = 1.0
        return x
    with pytest.raises(lp.GraphError, match="immutable"):
        lp.trace(f, x=np.ones(3))


def test_boolean_mask_arithmetic_follows_numpy():
    x = np.array([-1.0, 0.5, 2.0])
    # numpy: True + True is True (logical or), so the product below is y, not 2y
    f = lambda m, x: ((x > 0) + (x < 1)) * x + (x > 0) * (x < 1) * x  # noqa: E731
    _compare(f, [x], False)
    with pytest.raises(lp.GraphError, match="boolean"):
        lp.trace(lambda x: (x > 0) - (x < 1), x=x)


def test_boolean_masks_have_bool_dtype():
    prog = lp.Program()
    x = prog.input("x", shape=(3,))
    assert (x > 0).dtype == np.bool_ and ((x > 0) & (x < 1)).dtype == np.bool_
    assert x.dtype == np.float64


def test_static_queries_and_like_constants():
    x = np.arange(6.0).reshape(2, 3)

    def f(m, x):
        return m.sum(x * m.ones_like(x) + m.zeros_like(x)) * m.size(x) + m.ndim(x) + m.shape(x)[1] \
            + m.size(x, -1)
    _compare(f, [x], False)
    with pytest.raises(lp.GraphError, match="dtype"):
        lp.trace(lambda x: np.zeros_like(x, dtype=np.int64), x=x)


def test_concatenate_axis_none_flattens():
    x, y = np.arange(4.0).reshape(2, 2), np.arange(3.0)
    got = lp.trace(lambda x, y: np.concatenate([x, y], axis=None), x, y).evaluate(x=x, y=y)
    np.testing.assert_array_equal(got, np.concatenate([x, y], axis=None))


def test_negative_axes_are_normalized_in_the_graph():
    prog = lp.trace(lambda x: lp.sum(lp.transpose(x, (-1, 0)), axis=-1), x=np.ones((2, 3)))
    params = [d["params"] for _, d in prog.graph.nodes(data=True) if d.get("op") in ("transpose", "sum")]
    assert {"axes": (1, 0)} in params and {"axis": 1, "keepdims": False} in params


def test_transpose_negative_axes_cotangent_from_a_loaded_graph():
    # a graph may carry negative axes (from_graph / JSON): the rule itself normalizes
    x = np.arange(6.0).reshape(2, 3)
    W = np.arange(6.0).reshape(3, 2) + 1.0
    g = REGISTRY["transpose"].vjp(0, W, np.transpose(x, (-1, 0)), [x], {"axes": (-1, 0)})
    np.testing.assert_array_equal(g, W.T)


def test_axis_out_of_range_raises_shape_error():
    with pytest.raises(lp.ShapeError, match="axis 2 is out of range"):
        lp.trace(lambda x: lp.sum(x, axis=2), x=np.ones((2, 3)))
    with pytest.raises(lp.ShapeError, match="repeated axis"):
        lp.trace(lambda x: lp.sum(x, axis=(0, -2)), x=np.ones((2, 3)))


# ---------------------------------------------------------------- cotangent shapes


def test_unbroadcast_sums_broadcast_axes_and_raises_otherwise():
    np.testing.assert_array_equal(unbroadcast(np.ones((2, 3, 4)), (3, 1)), np.full((3, 1), 8.0))
    np.testing.assert_array_equal(unbroadcast(np.arange(3.0), (1, 3)), [[0.0, 1.0, 2.0]])
    with pytest.raises(lp.ShapeError, match="not a broadcast"):
        unbroadcast(np.ones((3, 2)), (2, 3))          # transposed: used to be reshaped to fit
    with pytest.raises(lp.ShapeError, match="not a broadcast"):
        unbroadcast(np.ones((6,)), (2, 3))
    with pytest.raises(lp.ShapeError, match="not a broadcast"):
        unbroadcast(np.ones((1, 3)), (2, 3))


def test_user_vjp_returning_a_transposed_cotangent_raises():
    op = lp.primitive("numpy_sem_double_T", lambda x: 2.0 * x, vjp=lambda g, ans, x: (2.0 * g.T,))
    with pytest.raises(lp.ShapeError, match=r"numpy_sem_double_T.*argument 0"):
        lp.grad(lambda x: lp.sum(op(x) * np.arange(6.0).reshape(2, 3)))(np.ones((2, 3)))


def test_user_jvp_returning_a_transposed_tangent_raises():
    op = lp.primitive("numpy_sem_jvp_T", lambda x: 2.0 * x, jvp=lambda ts, ans, x: 2.0 * ts[0].T)
    with pytest.raises(lp.ShapeError, match=r"numpy_sem_jvp_T.*does not broadcast"):
        lp.jvp(lambda x: op(x), (np.ones((2, 3)),), (np.ones((2, 3)),))


# ---------------------------------------------------------------- non-finite multipliers


def test_x_times_sqrt_x_at_zero_raises_naming_sqrt():
    with pytest.raises(lp.NonFiniteError, match=r"'x'.*op 'sqrt'.*not finite"):
        lp.grad(lambda x: x * lp.sqrt(x))(0.0)


def test_sqrt_times_sqrt_at_zero_raises_rather_than_zero():
    # d/dx sqrt(x)*sqrt(x) = 1 at 0: a silent 0 (zeroing 0·inf) would be wrong
    with pytest.raises(lp.NonFiniteError, match="sqrt"):
        lp.grad(lambda x: lp.sqrt(x) * lp.sqrt(x))(0.0)


def test_nonfinite_multiplier_in_a_vector_names_the_node():
    prog = lp.trace(lambda x: lp.sum(x * lp.sqrt(x)), x=np.ones(2))
    np.testing.assert_allclose(prog.solve(x=np.array([1.0, 4.0])).grad["x"], [1.5, 3.0])
    with pytest.raises(lp.NonFiniteError, match=r"sqrt.*not finite"):
        prog.solve(x=np.array([0.0, 4.0]))


@pytest.mark.parametrize("f, g, x", [
    (lambda x: lp.abs(x), lambda x: anp.abs(x), 0.0),
    (lambda x: lp.maximum(x, 0.0), lambda x: anp.maximum(x, 0.0), 0.0),
    (lambda x: lp.minimum(x, 0.0), lambda x: anp.minimum(x, 0.0), 0.0),
    (lambda x: x ** 1.5, lambda x: x ** 1.5, 0.0),
    (lambda x: x ** 2.0, lambda x: x ** 2.0, 0.0),
    (lambda x: lp.sqrt(x * x + 1.0), lambda x: anp.sqrt(x * x + 1.0), 0.0),
])
def test_finite_limits_match_autograd_conventions(f, g, x):
    assert float(lp.grad(f)(x)) == float(autograd.grad(g)(x))


def test_where_discarded_branch_at_the_singularity_raises_with_the_guard_hint():
    f = lambda x: lp.sum(lp.where(x > 0, lp.sqrt(x), 0.0))  # noqa: E731
    with pytest.raises(lp.NonFiniteError, match=r"sqrt.*lp.where"):
        lp.grad(f)(np.array([0.0, 4.0]))
    with pytest.raises(lp.NonFiniteError, match=r"sqrt.*lp.where"):
        lp.grad(f)(np.array([-1.0, 4.0]))   # the forward value of the discarded branch
    guarded = lambda x: lp.sum(lp.where(x > 0, lp.sqrt(lp.where(x > 0, x, 1.0)), 0.0))  # noqa: E731
    ref = autograd.grad(lambda x: anp.sum(anp.where(x > 0, anp.sqrt(anp.where(x > 0, x, 1.0)), 0.0)))
    for x in (np.array([0.0, 4.0]), np.array([-1.0, 4.0])):
        np.testing.assert_array_equal(lp.grad(guarded)(x), ref(x))


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_jacobian_passes_raise_nonfinite(mode):
    with pytest.raises(lp.NonFiniteError, match="sqrt"):
        lp.jacobian(lambda x: x * lp.sqrt(x), mode=mode)(np.array([0.0, 1.0]))
    np.testing.assert_allclose(lp.jacobian(lambda x: x * lp.sqrt(x), mode=mode)(np.array([1.0, 4.0])),
                               np.diag([1.5, 3.0]))


def test_tangent_and_hvp_passes_raise_nonfinite():
    with pytest.raises(lp.NonFiniteError, match="tangent.*sqrt"):
        lp.jvp(lambda x: x * lp.sqrt(x), (0.0,), (1.0,))
    with pytest.raises(lp.NonFiniteError, match="sqrt"):
        lp.hvp(lambda x: x * lp.sqrt(x), 0.0, 1.0)


# ---------------------------------------------------------------- concrete values


@pytest.mark.parametrize("call", [
    lambda x: int(x), lambda x: float(x), lambda x: bool(x), lambda x: complex(x),
    lambda x: x.item(), lambda x: x.tolist(), lambda x: round(x), lambda x: len(x),
    lambda x: range(x), lambda x: [1.0, 2.0][x], lambda x: operator.index(x),
    lambda x: 1.0 if x > 0 else 0.0, lambda x: x if x == 1.0 else -x, lambda x: x and 1.0,
])
def test_concrete_value_of_a_traced_scalar_raises_graph_error(call):
    with pytest.raises(lp.GraphError, match="traced"):
        lp.trace(call, x=1.0)


def test_len_of_a_traced_array_is_its_static_length():
    got = lp.trace(lambda x: lp.stack([x[i] * i for i in range(len(x))]), x=np.ones(3)).evaluate(x=np.ones(3))
    np.testing.assert_array_equal(got, [0.0, 1.0, 2.0])


@pytest.mark.parametrize("f, op, negative", [
    (lambda x: lp.transpose(x, (1, 0)), "transpose", {"axes": (-1, 0)}),
    (lambda x: lp.sum(x, axis=1, keepdims=True), "sum", {"axis": -1, "keepdims": True}),
    (lambda x: lp.mean(x, axis=(0, 1)), "mean", {"axis": [-1, -2], "keepdims": False}),
    (lambda x: lp.logsumexp(x, axis=1), "logsumexp", {"axis": -1, "keepdims": False}),
    (lambda x: lp.softmax(x, axis=0), "softmax", {"axis": -2}),
    (lambda x: lp.concatenate([x, 2.0 * x], axis=1), "concatenate", {"axis": -1}),
    (lambda x: lp.stack([x, 2.0 * x], axis=2), "stack", {"axis": -1}),
])
def test_graph_with_negative_axes_matches_the_normalized_program(f, op, negative):
    """A graph built directly (or loaded from JSON) may carry negative axes: every rule
    (value, VJP, JVP, sparse Jacobian, the autograd tape) must read them as numpy does."""
    x = np.arange(6.0).reshape(2, 3) / 7.0
    W = np.random.default_rng(3).uniform(-1, 1, size=np.shape(np.asarray(lp.trace(f, x=x).evaluate(x=x))))
    prog = lp.trace(lambda x: lp.sum(f(x) * W), x=x)
    G = prog.graph.copy()
    node = next(n for n, d in G.nodes(data=True) if d.get("op") == op)
    G.nodes[node]["params"] = dict(negative)
    loaded = lp.Program.from_graph(G)
    want = prog.solve(x=x)
    got = loaded.solve(x=x)
    np.testing.assert_allclose(got.output, want.output, rtol=1e-13)
    np.testing.assert_allclose(got.grad["x"], want.grad["x"], rtol=1e-13)
    v = np.ones_like(x)
    np.testing.assert_allclose(lp.jvp(loaded, (x,), (v,))[1], lp.jvp(prog, (x,), (v,))[1], rtol=1e-13)
    for mode in ("forward", "reverse"):   # the sparse Jacobian rules
        np.testing.assert_allclose(lp.jacobian(loaded, mode=mode)(x), want.grad["x"], rtol=1e-13)
    np.testing.assert_allclose(lp.hvp(loaded, x, v), lp.hvp(prog, x, v), rtol=1e-12, atol=1e-15)
    assert lp.check(loaded, x=x).ok


def test_check_replays_equality_and_logical_ops_on_both_tapes():
    """The tape op tables know equal/not_equal/logical_*: lp.check compares every multiplier
    (x away from the branch points, so finite differences see one branch)."""
    def f(x):
        mask = ((x == 1.0) | (x > 0.5)) & ~(x != 2.0) ^ (x < -1.0)
        return lp.sum(lp.where(mask, x ** 2, 3.0 * x)) + lp.sum(lp.where(lp.equal(x, 0.25), x, -x))
    x = np.array([-2.0, 0.3, 1.7, 0.7])
    report = lp.check(lp.trace(f, x=x), x=x)
    assert report.ok, str(report)
    assert "autograd (tape)" in str(report)


# ------------------------------------------- user primitives: keyword arguments reach every rule
def test_user_primitive_keywords_reach_its_rules():
    """fn(x, k=3.0) is differentiated with k = 3 by each rule (vjp, jvp, jac), never at the rule's
    default; a rule that does not take the keyword raises GraphError instead of a wrong number."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v = lp.primitive("kw_scale_vjp", lambda x, k=1.0: x * k, vjp=lambda g, ans, x, k=1.0: (g * k,))
        j = lp.primitive("kw_scale_jvp", lambda x, k=1.0: x * k, jvp=lambda t, ans, x, k=1.0: t[0] * k)
        J = lp.primitive("kw_scale_jac", lambda x, k=1.0: x * k, jac=lambda ans, x, k=1.0: (k * np.eye(np.size(x)),))
        bad = lp.primitive("kw_scale_bad", lambda x, k=1.0: x * k, vjp=lambda g, ans, x: (g,))
    try:
        x = np.array([1.0, 2.0])
        for op in (v, j, J):
            assert float(lp.trace(lambda x, op=op: lp.sum(op(x, k=3.0)), x=x).evaluate(x=x)) == 9.0
            np.testing.assert_array_equal(lp.grad(lambda x, op=op: lp.sum(op(x, k=3.0)))(x), [3.0, 3.0])
            np.testing.assert_array_equal(lp.jacobian(lambda x, op=op: op(x, k=3.0))(x), 3.0 * np.eye(2))
            assert lp.check(lambda x, op=op: lp.sum(op(x, k=3.0) ** 2), x=x).ok
        with pytest.raises(lp.GraphError, match="keyword arguments \\['k'\\]"):
            lp.grad(lambda x: lp.sum(bad(x, k=3.0)))(x)
    finally:
        for n in ("kw_scale_vjp", "kw_scale_jvp", "kw_scale_jac", "kw_scale_bad"):
            registry.REGISTRY.pop(n, None)


def test_user_jac_of_the_wrong_shape_is_a_shape_error():
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        op = lp.primitive("jac_wrong_shape", lambda x: x * 2.0, jac=lambda ans, x: (np.ones((5, 5)),))
    try:
        with pytest.raises(lp.ShapeError, match="jac_wrong_shape"):
            lp.grad(lambda x: op(x))(1.0)
    finally:
        registry.REGISTRY.pop("jac_wrong_shape", None)
