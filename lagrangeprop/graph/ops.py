"""numpy-style functions over traced values (``lp.exp``, ``lp.sum``, ...).

Each function records one primitive (registry name = numpy's name) when given a
traced :class:`~lagrangeprop.graph.var.Var`, and evaluates numerically otherwise. The
signatures are numpy's: ``np.sum(v, axis, dtype, out, keepdims, initial, where)`` on a
traced ``v`` dispatches here (``__array_function__``) with the caller's arguments as
given. Every argument is either implemented exactly (negative axes are normalized
against the traced shape, ``order="F"`` reshapes are a transpose/reshape/transpose
composite, ``initial=`` is added) or raises :class:`~lagrangeprop.errors.GraphError`
naming it (SPEC §2: no numpy argument is silently dropped).

Examples
--------
>>> import lagrangeprop as lp
>>> float(lp.exp(0.0)), float(lp.sum([1.0, 2.0]))
(1.0, 3.0)
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ..errors import GraphError, ShapeError
from .arguments import (NO_VALUE, check_dtype, check_out, check_where, normalize_axis, traced_name,
                        unsupported)
from .var import HANDLED_FUNCTIONS, Var, apply

__all__ = [
    "add", "subtract", "multiply", "divide", "power", "negative", "square",
    "exp", "log", "log1p", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "abs",
    "maximum", "minimum", "where", "logaddexp", "sum", "mean", "dot", "matmul",
    "reshape", "transpose", "concatenate", "stack", "logsumexp", "softmax", "identity",
    "greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
    "logical_and", "logical_or", "logical_xor", "logical_not", "copy", "ravel",
    # static queries and constants (numpy's dispatch lands here for traced arguments)
    "shape", "ndim", "size", "zeros_like", "ones_like",
]

_NoValue = NO_VALUE  # numpy's "argument not given" sentinel (what np.sum passes on)


# ---------------------------------------------------------------- argument checks


def _ndim(x: Any) -> int | None:
    """The number of axes of ``x`` (None when a traced shape is not known yet)."""
    if isinstance(x, Var):
        return None if x.shape is None else len(x.shape)
    return np.ndim(x)


def _keepdims(keepdims: Any) -> bool:
    return False if keepdims is _NoValue else bool(keepdims)


# ---------------------------------------------------------------- elementwise


def _unary(name: str):
    def op(x):
        return apply(name, (x,))
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise ``{name}`` (primitive ``{name!r}``)."
    return op


def _binary(name: str):
    def op(x, y):
        return apply(name, (x, y))
    op.__name__ = op.__qualname__ = name
    op.__doc__ = f"Elementwise ``{name}`` with numpy broadcasting (primitive ``{name!r}``)."
    return op


exp = _unary("exp")
log = _unary("log")
log1p = _unary("log1p")
sqrt = _unary("sqrt")
sin = _unary("sin")
cos = _unary("cos")
tan = _unary("tan")
tanh = _unary("tanh")
sigmoid = _unary("sigmoid")
abs = _unary("abs")  # noqa: A001 - numpy's name
negative = _unary("negative")
square = _unary("square")
identity = _unary("identity")
add = _binary("add")
subtract = _binary("subtract")
multiply = _binary("multiply")
divide = _binary("divide")
power = _binary("power")
maximum = _binary("maximum")
minimum = _binary("minimum")
logaddexp = _binary("logaddexp")
matmul = _binary("matmul")
greater = _binary("greater")
greater_equal = _binary("greater_equal")
less = _binary("less")
less_equal = _binary("less_equal")
equal = _binary("equal")
not_equal = _binary("not_equal")
logical_and = _binary("logical_and")
logical_or = _binary("logical_or")
logical_xor = _binary("logical_xor")
logical_not = _unary("logical_not")


def copy(a, order="K", subok=False):
    """A copy (primitive ``'identity'``); the memory order does not change any value."""
    return apply("identity", (a,))


def ravel(a, order="C"):
    """The entries in a 1-D array, C order or ``order="F"`` (``reshape(a, -1, order)``)."""
    return reshape(a, (-1,), order=order)


def dot(a, b, out=None):
    """``numpy.dot`` (primitive ``'dot'``)."""
    check_out("dot", out, a)
    return apply("dot", (a, b))


def where(condition, x=_NoValue, y=_NoValue):
    """``x`` where ``condition`` else ``y``; the condition is never differentiated.

    The one-argument form ``np.where(condition)`` returns data-dependent indices and
    raises :class:`GraphError` on traced values.
    """
    if x is _NoValue or y is _NoValue:
        if x is _NoValue and y is _NoValue:
            raise GraphError(
                f"where(condition){traced_name(condition)}: the one-argument form returns indices "
                "that depend on the values, which are not known while tracing; "
                "use lp.where(condition, x, y)")
        raise GraphError("where: either both or neither of x and y must be given")
    return apply("where", (condition, x, y))


# ---------------------------------------------------------------- reductions


def sum(a, axis=None, dtype=None, out=None, keepdims=_NoValue, initial=_NoValue,  # noqa: A001
        where=_NoValue):
    """Sum over ``axis`` (all axes by default), numpy's signature; ``initial`` is added."""
    check_dtype("sum", dtype, a)
    check_out("sum", out, a)
    check_where("sum", where, a)
    axis = normalize_axis(axis, _ndim(a), "sum", a, scalar_int_ok=True)
    total = apply("sum", (a,), {"axis": axis, "keepdims": _keepdims(keepdims)})
    if initial is not _NoValue:
        if isinstance(initial, Var) or np.ndim(initial) != 0:
            raise unsupported("sum", "initial", initial, a, "initial must be a Python number.")
        total = total + float(initial)
    return total


def mean(a, axis=None, dtype=None, out=None, keepdims=_NoValue, *, where=_NoValue):
    """Mean over ``axis`` (all axes by default), numpy's signature."""
    check_dtype("mean", dtype, a)
    check_out("mean", out, a)
    check_where("mean", where, a)
    axis = normalize_axis(axis, _ndim(a), "mean", a)
    return apply("mean", (a,), {"axis": axis, "keepdims": _keepdims(keepdims)})


def logsumexp(x, axis=None, keepdims=False, *, b=None, return_sign=False):
    """Numerically stable ``log(sum(exp(x)))`` over ``axis`` (scipy.special.logsumexp;
    its ``b`` and ``return_sign`` are not supported)."""
    if b is not None:
        raise unsupported("logsumexp", "b", "<weights>", x,
                          "Write lp.logsumexp(x + lp.log(b)) for positive weights.")
    if return_sign:
        raise unsupported("logsumexp", "return_sign", return_sign, x)
    axis = normalize_axis(axis, _ndim(x), "logsumexp", x, scalar_int_ok=True)
    return apply("logsumexp", (x,), {"axis": axis, "keepdims": bool(keepdims)})


def softmax(x, axis=-1):
    """Numerically stable softmax along ``axis`` (the last axis by default, as in JAX;
    ``axis=None`` normalizes over all entries, as scipy.special.softmax's default)."""
    axis = normalize_axis(axis, _ndim(x), "softmax", x, scalar_int_ok=True)
    return apply("softmax", (x,), {"axis": axis})


# ---------------------------------------------------------------- structure


def _shape_arg(shape: Any, func: str) -> tuple:
    if isinstance(shape, Var):
        raise GraphError(f"{func}: the shape must be static, not the traced value {shape.name!r}")
    if isinstance(shape, (int, np.integer)):
        return (operator.index(shape),)
    try:
        return tuple(operator.index(s) for s in shape)
    except TypeError:
        raise GraphError(f"{func}: shape {shape!r} must be an int or a sequence of ints") from None


def _reverse_axes(x: Any) -> Any:
    return apply("transpose", (x,), {"axes": None})


def reshape(a, shape=None, order="C", *, newshape=None, copy=None):
    """Reshape to ``shape`` (numpy's signature): C order, or ``order="F"`` as the composite
    ``transpose(reshape(transpose(a), reversed(shape)))``, which is what Fortran order means.
    ``order="A"`` depends on memory layout, which traced values do not have."""
    if newshape is not None:
        if shape is not None:
            raise GraphError("reshape: give shape or newshape, not both")
        shape = newshape
    if shape is None:
        raise GraphError("reshape: the shape argument is required")
    if copy is False:
        raise unsupported("reshape", "copy", copy, a, "Traced values are never views.")
    shape = _shape_arg(shape, "reshape")
    if order == "C":
        return apply("reshape", (a,), {"shape": shape})
    if order == "F":
        flipped = apply("reshape", (_reverse_axes(a),), {"shape": shape[::-1]})
        return _reverse_axes(flipped)
    raise unsupported("reshape", "order", order, a,
                      "Use order='C' (the default) or order='F'.")


def transpose(a, axes=None):
    """Permute axes (reverse them by default); negative axes count from the end."""
    if axes is not None:
        if isinstance(axes, Var):
            raise GraphError("transpose: axes must be static")
        axes = tuple(operator.index(k) for k in axes)
        n = _ndim(a)
        if n is not None and len(axes) != n:
            raise ShapeError(f"transpose{traced_name(a)}: axes {axes} do not match an array "
                             f"with {n} dimension(s)")
        axes = normalize_axis(axes, n, "transpose", a)
    return apply("transpose", (a,), {"axes": axes})


def _join_checks(func: str, arrays: Any, out: Any, dtype: Any, casting: str) -> tuple:
    if isinstance(arrays, Var):
        raise GraphError(f"{func}: pass a sequence of arrays (a list or tuple), not the single "
                         f"traced array {arrays.name!r}")
    arrays = tuple(arrays)
    if not arrays:
        raise ShapeError(f"{func}: need at least one array")
    first = arrays[0]
    check_out(func, out, first)
    check_dtype(func, dtype, first)
    if casting != "same_kind":
        raise unsupported(func, "casting", casting, first)
    return arrays


def concatenate(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    """Join a sequence of arrays along an existing axis (``axis=None``: flattened first)."""
    arrays = _join_checks("concatenate", arrays, out, dtype, casting)
    if axis is None:
        arrays = tuple(apply("reshape", (x,), {"shape": (-1,)}) for x in arrays)
        axis = 0
    axis = normalize_axis(operator.index(axis), _ndim(arrays[0]), "concatenate", arrays[0])
    return apply("concatenate", arrays, {"axis": axis})


def stack(arrays, axis=0, out=None, *, dtype=None, casting="same_kind"):
    """Join a sequence of same-shape arrays along a new axis."""
    arrays = _join_checks("stack", arrays, out, dtype, casting)
    n = _ndim(arrays[0])
    axis = normalize_axis(operator.index(axis), None if n is None else n + 1, "stack", arrays[0])
    return apply("stack", arrays, {"axis": axis})


# ---------------------------------------------------------------- static queries
# Shapes are known while tracing, so these are exact (no node is recorded).


def shape(a):
    """``numpy.shape``: the static shape of a traced value."""
    return a.shape if isinstance(a, Var) else np.shape(a)


def ndim(a):
    """``numpy.ndim``: the static number of axes."""
    return len(shape(a))


def size(a, axis=None):
    """``numpy.size``: the static number of entries (along ``axis``)."""
    s = shape(a)
    if axis is None:
        return int(np.prod(s, dtype=int))
    return s[normalize_axis(axis, len(s), "size", a)]


def _like(func: str, fill: float, a, dtype, order, subok, shape_arg):
    check_dtype(func, dtype, a)
    if shape_arg is not None:
        raise unsupported(func, "shape", shape_arg, a, "Use np.full(shape, value).")
    return np.full(shape(a), fill)


def zeros_like(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
    """``numpy.zeros_like``: a constant array of zeros of ``a``'s shape."""
    return _like("zeros_like", 0.0, a, dtype, order, subok, shape)


def ones_like(a, dtype=None, order="K", subok=True, shape=None, *, device=None):
    """``numpy.ones_like``: a constant array of ones of ``a``'s shape."""
    return _like("ones_like", 1.0, a, dtype, order, subok, shape)


# numpy's dispatch (``__array_function__``, ndarray-style methods) on traced values lands here
HANDLED_FUNCTIONS.update((name, globals()[name]) for name in __all__)
