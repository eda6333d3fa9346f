"""Built-in derivative rules, registered into :data:`lagrangeprop.rules.registry.REGISTRY`.

Rules only: one function per family, each op registered right after its definition.
Elementwise ops are described by their elementwise partial derivatives; the VJP
(``unbroadcast(g * partial)``), JVP (``t * partial``) and sparse Jacobian
(``diag(partial) @ S``) follow from :func:`_elementwise`.

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules.registry import get
>>> a, b = np.ones((3, 1)), np.arange(4.0)
>>> get("multiply").vjp(1, np.ones((3, 4)), a * b, [a, b], {}).shape   # summed over broadcast axes
(4,)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
import scipy.special

from .registry import Primitive, broadcast_jac, register, unbroadcast

__all__: list[str] = []

F64 = np.float64
Args = tuple[Any, ...]
Params = dict[str, Any]


def _f(x: Any) -> np.ndarray:
    """A float64 view of a numeric argument."""
    return np.asarray(x, dtype=F64)


def _size(x: Any) -> int:
    return math.prod(np.shape(x))


def _axis(axis: Any) -> Any:
    """An axis parameter numpy accepts (a list, e.g. from JSON, becomes a tuple)."""
    return tuple(axis) if isinstance(axis, list) else axis


def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (None, int or tuple) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if np.ndim(axis) == 0:
        axis = (axis,)
    return tuple(sorted(int(a) % ndim for a in axis))


def _jac_from_jvp(jvp: Callable[[np.ndarray], Any], arg_shape: tuple, out_shape: tuple) -> sp.csr_matrix:
    """Sparse Jacobian of a linear map, column by column (fallback for rare shapes)."""
    n = _size(np.empty(arg_shape))
    cols = []
    for k in range(n):
        e = np.zeros(n)
        e[k] = 1.0
        cols.append(np.broadcast_to(jvp(e.reshape(arg_shape)), out_shape).reshape(-1))
    dense = np.stack(cols, axis=1) if cols else np.zeros((_size(np.empty(out_shape)), 0))
    return sp.csr_matrix(dense)


# ---------------------------------------------------------------- elementwise
# For c = f(x, y) elementwise: dc = f_x dx + f_y dy with partials f_x, f_y
# broadcast to c's shape; the cotangent of x is unbroadcast(g * f_x).

Partial = Callable[..., Any]


def _elementwise(name: str, fn: Callable[..., Any], *partials: Partial | None, nondiff: tuple = ()) -> Primitive:
    """Register an elementwise op from its partials ``partial(ans, *args) -> array``."""

    def value(*args: Any) -> Any:
        return fn(*[a if k in nondiff else _f(a) for k, a in enumerate(args)])

    def partial(i: int, ans: Any, args: Args) -> Any:
        d = partials[i]
        if d is None:
            return None
        with np.errstate(all="ignore"):
            return d(_f(ans), *[a if k in nondiff else _f(a) for k, a in enumerate(args)])

    def vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
        p = partial(i, ans, args)
        return None if p is None else g * p

    def jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
        p = partial(i, ans, args)
        return None if p is None else t * p

    def jac(i: int, ans: Any, args: Args, params: Params) -> Any:
        p = partial(i, ans, args)
        return None if p is None else broadcast_jac(p, np.shape(args[i]), np.shape(ans))

    prim = Primitive(name, value, nargs=len(partials), nondiff=nondiff, vjp=vjp, jvp=jvp, jac=jac)
    prim.elementwise = True  # the interpreters may batch same-op scalar nodes into one call
    # fast path of the interpreters for float64 arguments, inside their own np.errstate:
    # the bare numpy function and partials (vjp = g * partial when no broadcasting happens)
    prim.raw_fn, prim.raw_partials = fn, partials
    return register(prim)


def _one(ans: np.ndarray, *args: Any) -> float:
    return 1.0


def _minus_one(ans: np.ndarray, *args: Any) -> float:
    return -1.0


# a constant partial tells the interpreters' fast path that the cotangent is g or -g:
# no multiply (and no copy) needed
_one.constant, _minus_one.constant = 1.0, -1.0


_elementwise("add", np.add, _one, _one)
_elementwise("subtract", np.subtract, _one, _minus_one)
def _x(ans: np.ndarray, x: Any, y: Any) -> Any:
    return x


def _y(ans: np.ndarray, x: Any, y: Any) -> Any:
    return y


_x.arg, _y.arg = 0, 1   # the partial is that argument itself: the fast path reads it directly
_elementwise("multiply", np.multiply, _y, _x)
_elementwise("divide", np.divide, lambda ans, x, y: 1.0 / y, lambda ans, x, y: -x / y**2)
_elementwise("negative", np.negative, _minus_one)
_elementwise("identity", np.array, _one)
_elementwise("square", np.square, lambda ans, x: 2.0 * x)


def _power_dbase(ans: np.ndarray, x: np.ndarray, p: np.ndarray) -> np.ndarray:
    # p * x**(p-1), exactly 0 where p == 0 (no 0 * inf at x = 0)
    return p * x ** np.where(p == 0, 1.0, p - 1.0)


def _power_dexp(ans: np.ndarray, x: np.ndarray, p: np.ndarray) -> np.ndarray:
    # ans * log(x) where x > 0; 0 at x == 0 (0**p = 0 for every p > 0); NaN where x < 0: a real
    # power of a negative base has no derivative in its exponent (x**p leaves the reals as p
    # moves), so the adjoint raises NonFiniteError naming the node rather than return a number
    positive = x > 0
    return np.where(positive, ans * np.log(np.where(positive, x, 1.0)), np.where(x < 0, np.nan, 0.0))


_elementwise("power", np.power, _power_dbase, _power_dexp)

_elementwise("exp", np.exp, lambda ans, x: ans)
_elementwise("log", np.log, lambda ans, x: 1.0 / x)
_elementwise("log1p", np.log1p, lambda ans, x: 1.0 / (1.0 + x))
_elementwise("sqrt", np.sqrt, lambda ans, x: 0.5 / ans)
_elementwise("sin", np.sin, lambda ans, x: np.cos(x))
_elementwise("cos", np.cos, lambda ans, x: -np.sin(x))
_elementwise("tan", np.tan, lambda ans, x: 1.0 / np.cos(x) ** 2)
# Array partials below reuse their own temporary (``out=``): the same ufuncs on the same
# operands, so the same numbers, with one allocation instead of two (fresh pages are the
# dominant cost of large temporaries).
def _tanh_d(ans: Any, x: Any) -> Any:
    if ans.__class__ is np.ndarray and ans.ndim:
        sq = np.square(ans)   # what ans**2 computes
        return np.subtract(1.0, sq, out=sq)
    return 1.0 - ans**2


def _sigmoid_d(ans: Any, x: Any) -> Any:
    if ans.__class__ is np.ndarray and ans.ndim:
        t = np.subtract(1.0, ans)
        return np.multiply(ans, t, out=t)
    return ans * (1.0 - ans)


def _exp_diff(a: Any, b: Any) -> Any:
    """``np.exp(a - b)``."""
    t = a - b
    if t.__class__ is np.ndarray and t.ndim:
        return np.exp(t, out=t)
    return np.exp(t)


_elementwise("tanh", np.tanh, _tanh_d)
_elementwise("sigmoid", scipy.special.expit, _sigmoid_d)
_elementwise("abs", np.abs, lambda ans, x: np.sign(x))
_elementwise("logaddexp", np.logaddexp, lambda ans, x, y: _exp_diff(x, ans), lambda ans, x, y: _exp_diff(y, ans))


def _balanced(x: np.ndarray, other: np.ndarray, ans: np.ndarray) -> np.ndarray:
    # 1 where x alone attains ans, 0.5 at ties (as autograd's balanced_eq)
    return (x == ans) / (1.0 + (x == other))


_elementwise("maximum", np.maximum, lambda ans, x, y: _balanced(x, y, ans), lambda ans, x, y: _balanced(y, x, ans))
_elementwise("minimum", np.minimum, lambda ans, x, y: _balanced(x, y, ans), lambda ans, x, y: _balanced(y, x, ans))


def _where(cond: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(np.asarray(cond, dtype=bool), x, y)


_elementwise(
    "where",
    _where,
    None,
    lambda ans, c, x, y: np.asarray(c, dtype=bool).astype(F64),
    lambda ans, c, x, y: (~np.asarray(c, dtype=bool)).astype(F64),
    nondiff=(0,),
)


# ---------------------------------------------------------------- comparisons
# Boolean outputs: zero derivative with respect to everything.

for _name in ("greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
              "logical_and", "logical_or", "logical_xor"):
    register(Primitive(_name, getattr(np, _name), nargs=2, nondiff=(0, 1), differentiable=False))
register(Primitive("logical_not", np.logical_not, nargs=1, nondiff=(0,), differentiable=False))


# ---------------------------------------------------------------- reductions
# y = reduce(x, axis): the cotangent is g re-expanded along the reduced axes times
# the weights dy/dx (1 for sum, 1/n for mean, exp(x - y) for logsumexp).


def _expand(g: Any, x_shape: tuple, axis: Any, keepdims: bool) -> np.ndarray:
    """``g`` (shape of a reduction of x) broadcast back to ``x_shape``."""
    g = _f(g)
    if not keepdims:
        g = g.reshape([1 if k in _axes(axis, len(x_shape)) else n for k, n in enumerate(x_shape)])
    return np.broadcast_to(g, x_shape)


def _reduction_jac(weights: Any, x_shape: tuple, axis: Any) -> sp.csr_matrix:
    """``dy/dx`` for ``y = sum(weights * x, axis)``: row = reduced position of each x element."""
    reduced = _axes(axis, len(x_shape))
    kd_shape = tuple(1 if k in reduced else n for k, n in enumerate(x_shape))
    n_out, n_in = _size(np.empty(kd_shape)), _size(np.empty(x_shape))
    rows = np.broadcast_to(np.arange(n_out).reshape(kd_shape), x_shape).ravel()
    data = np.broadcast_to(_f(weights), x_shape).ravel()
    return sp.csr_matrix((data, (rows, np.arange(n_in))), shape=(n_out, n_in))


def _reduction(name: str, value: Callable[..., Any], weights: Callable[..., Any]) -> Primitive:
    """Register ``value(x, axis, keepdims)`` with dy/dx weights ``weights(ans, x, axis, keepdims)``."""

    def fn(x: Any, axis: Any = None, keepdims: bool = False) -> Any:
        return value(_f(x), axis=_axis(axis), keepdims=keepdims)

    def vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
        x = _f(args[0])
        axis, keepdims = params.get("axis"), params.get("keepdims", False)
        w = weights(ans, x, axis, keepdims)
        if w.__class__ is float and np.ndim(g) == 0:   # a full reduction: every entry is g * w
            return np.full(x.shape, g * w)
        return _expand(g, x.shape, axis, keepdims) * w

    def jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
        x = _f(args[0])
        axis, keepdims = params.get("axis"), params.get("keepdims", False)
        return np.sum(t * weights(ans, x, axis, keepdims), axis=_axis(axis), keepdims=keepdims)

    def jac(i: int, ans: Any, args: Args, params: Params) -> Any:
        x = _f(args[0])
        axis, keepdims = params.get("axis"), params.get("keepdims", False)
        return _reduction_jac(weights(ans, x, axis, keepdims), x.shape, axis)

    return register(Primitive(name, fn, nargs=1, vjp=vjp, jvp=jvp, jac=jac))


def _mean_weights(ans: Any, x: np.ndarray, axis: Any, keepdims: bool) -> float:
    n = _size(x) // max(_size(ans), 1)
    return 1.0 / n if n else 0.0


def _logsumexp_weights(ans: Any, x: np.ndarray, axis: Any, keepdims: bool) -> np.ndarray:
    return np.exp(x - _expand(ans, x.shape, axis, keepdims))


_reduction("sum", np.sum, lambda ans, x, axis, keepdims: 1.0)
_reduction("mean", np.mean, _mean_weights)
_reduction("logsumexp", scipy.special.logsumexp, _logsumexp_weights)


# softmax s = exp(x - logsumexp(x, axis)): ds = s * (dx - sum(s * dx, axis)),
# symmetric Jacobian s_i (delta_ij - s_j) within each group along axis.


def _softmax(x: Any, axis: Any = -1) -> np.ndarray:
    return scipy.special.softmax(_f(x), axis=_axis(axis))


def _softmax_linear(i: int, v: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    s = _f(ans)
    axis = _axes(params.get("axis", -1), s.ndim)
    return s * (v - np.sum(v * s, axis=axis, keepdims=True))


def _softmax_jac(i: int, ans: Any, args: Args, params: Params) -> sp.csr_matrix:
    s = _f(ans)
    reduced = _axes(params.get("axis", -1), s.ndim)
    kd_shape = tuple(1 if k in reduced else n for k, n in enumerate(s.shape))
    n_groups, n = _size(np.empty(kd_shape)), s.size
    group = np.broadcast_to(np.arange(n_groups).reshape(kd_shape), s.shape).ravel()
    members = np.argsort(group, kind="stable").reshape(n_groups, -1)
    rows = np.broadcast_to(members[:, :, None], members.shape + members.shape[-1:]).ravel()
    cols = np.broadcast_to(members[:, None, :], members.shape[:1] + members.shape[-1:] * 2).ravel()
    flat = s.ravel()
    data = flat[rows] * ((rows == cols) - flat[cols])
    return sp.csr_matrix((data, (rows, cols)), shape=(n, n))


register(Primitive("softmax", _softmax, nargs=1, vjp=_softmax_linear, jvp=_softmax_linear, jac=_softmax_jac))


# ---------------------------------------------------------------- products
# c = a @ b is bilinear: dc = da @ b + a @ db, so the JVPs reuse the op itself and
# the cotangents are g @ b^T and a^T @ g. A constant scipy.sparse a is never
# differentiated; its Jacobian for b is a (vector b) or kron(a, I) (matrix b).


def _matmul(a: Any, b: Any) -> np.ndarray:
    if sp.issparse(a):
        return np.asarray(a @ _f(b))
    return np.matmul(_f(a), _f(b))


def _promote(a: np.ndarray, b: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matrices (..., m, n), (..., n, k), (..., m, k) for matmul with 1-D operands promoted."""
    if b.ndim == 1:
        b, g = b[:, None], g[..., None]
    if a.ndim == 1:
        a, g = a[None, :], g[..., None, :]
    return a, b, g


def _matmul_vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    a, b = args
    if sp.issparse(a):
        return np.asarray(a.T @ g)
    a, b = _f(a), _f(b)
    a2, b2, g2 = _promote(a, b, g)
    if i == 0:
        out = g2 @ np.swapaxes(b2, -1, -2)
        return unbroadcast(out, a2.shape).reshape(a.shape)
    out = np.swapaxes(a2, -1, -2) @ g2
    return unbroadcast(out, b2.shape).reshape(b.shape)


def _matmul_jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    a, b = args
    return _matmul(t, b) if i == 0 else _matmul(a, t)


def _product_jac_2d(i: int, a: Any, b: Any) -> sp.csr_matrix:
    """Jacobian of a @ b for a of ndim <= 2 (possibly sparse) and b of ndim 1 or 2."""
    if sp.issparse(a):
        a2 = sp.csr_matrix(a)
    else:
        a2 = _f(a)[None, :] if np.ndim(a) == 1 else _f(a)
    b2 = _f(b)[:, None] if np.ndim(b) == 1 else _f(b)
    m, k = a2.shape[0], b2.shape[1]
    if i == 0:  # out[p, q] = sum_l a[p, l] b[l, q]:  d out / d a = I_m (x) b^T
        return sp.kron(sp.identity(m), sp.csr_matrix(b2.T), format="csr")
    return sp.kron(sp.csr_matrix(a2), sp.identity(k), format="csr")  # d out / d b = a (x) I_k


def _matmul_jac(i: int, ans: Any, args: Args, params: Params) -> sp.csr_matrix:
    a, b = args
    if (sp.issparse(a) or np.ndim(a) <= 2) and np.ndim(b) <= 2:
        return _product_jac_2d(i, a, b)
    return _jac_from_jvp(lambda t: _matmul_jvp(i, t, ans, args, params), np.shape(args[i]), np.shape(ans))


register(Primitive("matmul", _matmul, nargs=2, vjp=_matmul_vjp, jvp=_matmul_jvp, jac=_matmul_jac))


# dot: numpy.dot semantics (0-d = multiply; N-D contracts a's last axis with b's
# second-to-last). Cotangents as tensordots, after HIPS autograd's dot_adjoint_0/1.


def _dot(a: Any, b: Any) -> np.ndarray:
    if sp.issparse(a):
        return np.asarray(a @ _f(b))
    return np.dot(_f(a), _f(b))


def _dot_vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    a, b = args
    if sp.issparse(a):
        return np.asarray(a.T @ g)
    a, b = _f(a), _f(b)
    if i == 0:
        if b.ndim <= 1 or a.ndim == 0:
            return np.tensordot(g, b, max(0, b.ndim - (a.ndim != 0)))
        return np.tensordot(g, np.swapaxes(b, -1, -2), b.ndim - 1)
    if a.ndim <= 1 or b.ndim == 0:
        n = max(0, a.ndim - (b.ndim != 0))
        out = np.tensordot(g, a, [list(range(n)), list(range(n))])
    else:
        out = np.tensordot(g, a, [list(range(-a.ndim - b.ndim + 2, -b.ndim + 1)), list(range(a.ndim - 1))])
    return np.swapaxes(out, -1, -2) if b.ndim > 1 and a.ndim != 0 else out


def _dot_jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    a, b = args
    return _dot(t, b) if i == 0 else _dot(a, t)


def _dot_jac(i: int, ans: Any, args: Args, params: Params) -> sp.csr_matrix:
    a, b = args
    if not sp.issparse(a) and (np.ndim(a) == 0 or np.ndim(b) == 0):
        other = b if i == 0 else a
        return broadcast_jac(_f(other), np.shape(args[i]), np.shape(ans))
    if (sp.issparse(a) or np.ndim(a) <= 2) and np.ndim(b) <= 2:
        return _product_jac_2d(i, a, b)
    return _jac_from_jvp(lambda t: _dot_jvp(i, t, ans, args, params), np.shape(args[i]), np.shape(ans))


register(Primitive("dot", _dot, nargs=2, vjp=_dot_vjp, jvp=_dot_jvp, jac=_dot_jac))


# ---------------------------------------------------------------- structure
# Linear ops that move entries around. Each is a 0/1 selection: ans.flat = x.flat[idx]
# with idx = op(arange(x.size).reshape(x.shape)); the Jacobian is that selection
# matrix and the cotangent scatter-adds g back (repeated indices accumulate).


def _selection_jac(idx: np.ndarray, n_arg: int) -> sp.csr_matrix:
    idx = np.asarray(idx, dtype=np.int64).ravel()
    n_out = idx.size
    return sp.csr_matrix((np.ones(n_out), (np.arange(n_out), idx)), shape=(n_out, n_arg))


def _positions(x: Any) -> np.ndarray:
    return np.arange(_size(x)).reshape(np.shape(x))


def _reshape(x: Any, shape: Any = None) -> np.ndarray:
    return np.array(np.reshape(_f(x), shape))  # a copy, never a view of x


register(
    Primitive(
        "reshape",
        _reshape,
        nargs=1,
        vjp=lambda i, g, ans, args, params: g.reshape(np.shape(args[0])),
        jvp=lambda i, t, ans, args, params: t.reshape(np.shape(ans)),
        jac=lambda i, ans, args, params: sp.identity(_size(ans), format="csr"),
    )
)


def _transpose(x: Any, axes: Any = None) -> np.ndarray:
    return np.array(np.transpose(_f(x), axes))


def _transpose_vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    # the inverse permutation of the *normalized* axes: argsort((-1, 0)) would be (0, 1)
    axes = params.get("axes")
    if axes is None:
        return np.transpose(g)
    return np.transpose(g, np.argsort([int(a) % g.ndim for a in axes]))


register(
    Primitive(
        "transpose",
        _transpose,
        nargs=1,
        vjp=_transpose_vjp,
        jvp=lambda i, t, ans, args, params: np.transpose(t, params.get("axes")),
        jac=lambda i, ans, args, params: _selection_jac(
            np.transpose(_positions(args[0]), params.get("axes")), _size(args[0])
        ),
    )
)


def _getitem(x: Any, index: Any = ()) -> np.ndarray:
    return np.array(_f(x)[index])


def _basic_one(k: Any) -> bool:
    return k is None or k is Ellipsis or isinstance(k, slice) or (
        isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)))


def _basic(index: Any) -> bool:
    """Whether ``index`` is basic indexing (ints, slices, None, Ellipsis): it selects
    every entry at most once, so the cotangent is a plain scatter, no accumulation."""
    if index.__class__ is int:
        return True
    return all(_basic_one(k) for k in index) if isinstance(index, tuple) else _basic_one(index)


def _getitem_vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    index = params["index"]
    if _basic(index):
        out = np.zeros(np.shape(args[0]))
        out[index] += g   # 0 + g, as the bincount below
        return out
    idx = _positions(args[0])[index].ravel()
    return np.bincount(idx, weights=g.ravel(), minlength=_size(args[0])).reshape(np.shape(args[0]))


register(
    Primitive(
        "getitem",
        _getitem,
        nargs=1,
        vjp=_getitem_vjp,
        jvp=lambda i, t, ans, args, params: t[params["index"]],
        jac=lambda i, ans, args, params: _selection_jac(_positions(args[0])[params["index"]], _size(args[0])),
    )
)


# concatenate / stack: argument i occupies a block of the output along axis.


def _concatenate(*xs: Any, axis: int = 0) -> np.ndarray:
    return np.concatenate([_f(x) for x in xs], axis=axis)


def _concat_block(i: int, ans: Any, args: Args, params: Params) -> tuple:
    """The index into ans of argument i's block."""
    axis = params.get("axis", 0) % np.ndim(ans)
    start = sum(np.shape(x)[axis] for x in args[:i])
    return (slice(None),) * axis + (slice(start, start + np.shape(args[i])[axis]),)


def _concat_jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    out = np.zeros(np.shape(ans))
    out[_concat_block(i, ans, args, params)] = t
    return out


register(
    Primitive(
        "concatenate",
        _concatenate,
        nargs=None,
        vjp=lambda i, g, ans, args, params: g[_concat_block(i, ans, args, params)],
        jvp=_concat_jvp,
        jac=lambda i, ans, args, params: _selection_jac(
            _positions(ans)[_concat_block(i, ans, args, params)], _size(ans)
        ).T.tocsr(),
    )
)


def _stack(*xs: Any, axis: int = 0) -> np.ndarray:
    return np.stack([_f(x) for x in xs], axis=axis)


def _stack_axis(ans: Any, params: Params) -> int:
    return params.get("axis", 0) % np.ndim(ans)


def _stack_jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    out = np.zeros(np.shape(ans))
    axis = _stack_axis(ans, params)
    out[(slice(None),) * axis + (i,)] = t
    return out


register(
    Primitive(
        "stack",
        _stack,
        nargs=None,
        vjp=lambda i, g, ans, args, params: np.take(g, i, axis=_stack_axis(ans, params)),
        jvp=_stack_jvp,
        jac=lambda i, ans, args, params: _selection_jac(
            np.take(_positions(ans), i, axis=_stack_axis(ans, params)), _size(ans)
        ).T.tocsr(),
    )
)
