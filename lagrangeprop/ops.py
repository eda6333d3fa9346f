"""numpy-style functions over traced values (``lp.exp``, ``lp.sum``, ...).

Each function records one primitive (registry name = numpy's name) when given a
traced :class:`~lagrangeprop.trace.Var`, and evaluates numerically otherwise.

Examples
--------
>>> import lagrangeprop as lp
>>> float(lp.exp(0.0)), float(lp.sum([1.0, 2.0]))
(1.0, 3.0)
"""

from __future__ import annotations

from .trace import _axis, apply

__all__ = [
    "add", "subtract", "multiply", "divide", "power", "negative", "square",
    "exp", "log", "log1p", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "abs",
    "maximum", "minimum", "where", "logaddexp", "sum", "mean", "dot", "matmul",
    "reshape", "transpose", "concatenate", "stack", "logsumexp", "softmax", "identity",
    "greater", "greater_equal", "less", "less_equal",
]


def _unary(name: str):
    def op(x):
        return apply(name, (x,))
    op.__name__ = name
    op.__doc__ = f"Elementwise ``{name}`` (primitive ``{name!r}``)."
    return op


def _binary(name: str):
    def op(x, y):
        return apply(name, (x, y))
    op.__name__ = name
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
dot = _binary("dot")
matmul = _binary("matmul")
greater = _binary("greater")
greater_equal = _binary("greater_equal")
less = _binary("less")
less_equal = _binary("less_equal")


def where(condition, x, y):
    """``x`` where ``condition`` else ``y``; the condition is never differentiated."""
    return apply("where", (condition, x, y))


def sum(x, axis=None, keepdims=False):  # noqa: A001 - numpy's name
    """Sum over ``axis`` (all axes by default)."""
    return apply("sum", (x,), {"axis": _axis(axis), "keepdims": bool(keepdims)})


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis`` (all axes by default)."""
    return apply("mean", (x,), {"axis": _axis(axis), "keepdims": bool(keepdims)})


def logsumexp(x, axis=None, keepdims=False):
    """Numerically stable ``log(sum(exp(x)))`` over ``axis``."""
    return apply("logsumexp", (x,), {"axis": _axis(axis), "keepdims": bool(keepdims)})


def softmax(x, axis=-1):
    """Numerically stable softmax along ``axis``."""
    return apply("softmax", (x,), {"axis": _axis(axis)})


def reshape(x, shape, *args, **kwargs):
    """Reshape to ``shape`` (C order)."""
    shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
    return apply("reshape", (x,), {"shape": shape})


def transpose(x, axes=None):
    """Permute axes (reverse them by default)."""
    return apply("transpose", (x,), {"axes": None if axes is None else tuple(axes)})


def concatenate(arrays, axis=0):
    """Join a sequence of arrays along an existing axis."""
    return apply("concatenate", tuple(arrays), {"axis": int(axis)})


def stack(arrays, axis=0):
    """Join a sequence of same-shape arrays along a new axis."""
    return apply("stack", tuple(arrays), {"axis": int(axis)})
