"""Output shapes of the built-in ops from their argument shapes, without running numpy.

Building a program needs the shape of every node. Evaluating each op on dummy arrays
(abstract evaluation) is exact but costs several microseconds per node; for the
common built-in ops the shape follows from a short rule. :func:`rule_shape` returns
that shape, or ``None`` whenever the rule does not apply or the shapes do not fit,
in which case the caller evaluates the op on dummies, so that any error carries
numpy's own message exactly as before.

Examples
--------
>>> from lagrangeprop.rules import registry as primitives
>>> rule_shape(primitives.get("add"), [(3, 1), (4,)], {})
(3, 4)
>>> rule_shape(primitives.get("matmul"), [(5, 3), (3,)], {})
(5,)
>>> rule_shape(primitives.get("sum"), [(2, 3)], {"axis": 1, "keepdims": True})
(2, 1)
>>> rule_shape(primitives.get("add"), [(3,), (4,)], {}) is None   # numpy will say why
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from . import registry as primitives

__all__ = ["rule_shape", "broadcast", "placeholder", "ELEMENTWISE"]

Shape = tuple
_NO_DATA = np.dtype([])   # itemsize 0: an array of any shape holds no bytes

# built-in ops whose output shape is the broadcast of their arguments' shapes
ELEMENTWISE = frozenset({
    "add", "subtract", "multiply", "divide", "power", "negative", "identity", "square",
    "exp", "log", "log1p", "sqrt", "sin", "cos", "tan", "tanh", "sigmoid", "abs",
    "logaddexp", "maximum", "minimum", "where",
    "greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
    "logical_and", "logical_or", "logical_xor", "logical_not",
})


def broadcast(shapes: Sequence[Shape]) -> Shape | None:
    """numpy's broadcast of ``shapes``, or ``None`` when they do not broadcast."""
    first = shapes[0]
    if len(shapes) == 1:
        return first
    if len(shapes) == 2:
        second = shapes[1]
        if first == second or not second:
            return first
        if not first:
            return second
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        return None


def _axes(axis, ndim: int) -> tuple[int, ...] | None:
    """Normalized reduction axes (all of them for None), or None when invalid."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for a in axes:
        if type(a) is not int or not -ndim <= a < ndim:
            return None
        out.append(a % ndim)
    return tuple(out) if len(set(out)) == len(out) else None


def _reduction(shapes, params) -> Shape | None:
    if set(params) - {"axis", "keepdims"}:
        return None
    (s,) = shapes
    axes = _axes(params.get("axis"), len(s))
    if axes is None or not s:   # 0-d: scipy's logsumexp keeps a dimension; numpy decides
        return None
    if params.get("keepdims", False):
        return tuple(1 if k in axes else n for k, n in enumerate(s))
    return tuple(n for k, n in enumerate(s) if k not in axes)


def _softmax(shapes, params) -> Shape | None:
    (s,) = shapes
    axis = params.get("axis", -1)
    if set(params) - {"axis"} or type(axis) is not int or not -len(s) <= axis < len(s):
        return None
    return s


def _matmul(shapes, params) -> Shape | None:
    a, b = shapes
    if params or not 1 <= len(a) <= 2 or not 1 <= len(b) <= 2:
        return None   # scalars (an error) and stacked matmul: numpy decides
    if a[-1] != b[0]:
        return None
    return a[:-1] + b[1:]


def _dot(shapes, params) -> Shape | None:
    a, b = shapes
    if not params and (not a or not b):
        return broadcast(shapes)   # numpy.dot with a 0-d operand multiplies
    return _matmul(shapes, params)


def _reshape(shapes, params) -> Shape | None:
    (s,) = shapes
    new = params.get("shape")
    if set(params) - {"shape"} or not isinstance(new, tuple) or any(type(n) is not int for n in new):
        return None
    size = 1
    for n in s:
        size *= n
    if new.count(-1) == 1:
        rest = 1
        for n in new:
            if n != -1:
                rest *= n
        if rest <= 0 or size % rest or any(n < -1 for n in new):
            return None
        return tuple(size // rest if n == -1 else n for n in new)
    if any(n < 0 for n in new):
        return None
    total = 1
    for n in new:
        total *= n
    return new if total == size else None


def _transpose(shapes, params) -> Shape | None:
    (s,) = shapes
    axes = params.get("axes")
    if set(params) - {"axes"}:
        return None
    if axes is None:
        return s[::-1]
    norm = _axes(tuple(axes), len(s)) if isinstance(axes, tuple) else None
    if norm is None or len(norm) != len(s):
        return None
    return tuple(s[a] for a in norm)


def _getitem(shapes, params) -> Shape | None:
    """Basic indexing by ints and slices by rule; arrays, None, Ellipsis: numpy's own
    indexing of an array of 0-byte elements (the exact shape, no data allocated)."""
    (s,) = shapes
    if set(params) - {"index"}:
        return None
    index = params.get("index", ())
    index = index if isinstance(index, tuple) else (index,)
    if not all(type(i) is int or type(i) is slice for i in index):
        try:
            return np.empty(s, dtype=_NO_DATA)[index].shape
        except (IndexError, TypeError, ValueError):
            return None   # numpy says why when the op is evaluated
    if len(index) > len(s):
        return None
    out = []
    for k, i in enumerate(index):
        n = s[k]
        if type(i) is int:
            if not -n <= i < n:
                return None
        elif type(i) is slice:
            if not all(v is None or type(v) is int for v in (i.start, i.stop, i.step)) or i.step == 0:
                return None
            out.append(len(range(*i.indices(n))))
        else:
            return None
    return tuple(out) + tuple(s[len(index):])


def _join(shapes, params, new_axis: bool) -> Shape | None:
    """concatenate (``new_axis=False``) and stack: equal shapes except along ``axis``."""
    axis = params.get("axis", 0)
    if set(params) - {"axis"} or type(axis) is not int or not shapes:
        return None
    first = shapes[0]
    ndim = len(first) + new_axis
    if not -ndim <= axis < ndim or (not new_axis and not first):
        return None
    axis %= ndim
    if new_axis:
        return first[:axis] + (len(shapes),) + first[axis:] if all(s == first for s in shapes) else None
    rest = [s[:axis] + s[axis + 1:] for s in shapes]
    if any(len(s) != len(first) or r != rest[0] for s, r in zip(shapes, rest)):
        return None
    return first[:axis] + (sum(s[axis] for s in shapes),) + first[axis + 1:]


def placeholder(shape: Shape) -> np.ndarray:
    """A writeable float64 array of ``shape`` that costs O(1) memory (every entry is the
    same 0.5: strides 0), for evaluating an op that has no shape rule on dummies."""
    return np.lib.stride_tricks.as_strided(np.array([0.5]), shape=shape, strides=(0,) * len(shape))


_RULES: dict[str, Callable[[list, dict], Shape | None]] = {
    "concatenate": lambda shapes, params: _join(shapes, params, False),
    "stack": lambda shapes, params: _join(shapes, params, True),
    "sum": _reduction, "mean": _reduction, "logsumexp": _reduction, "softmax": _softmax,
    "matmul": _matmul, "dot": _dot, "reshape": _reshape, "transpose": _transpose, "getitem": _getitem,
}
_NARGS = {"sum": 1, "mean": 1, "logsumexp": 1, "softmax": 1, "matmul": 2, "dot": 2,
          "reshape": 1, "transpose": 1, "getitem": 1}


def rule_shape(prim: primitives.Primitive, shapes: Sequence[Shape], params: dict) -> Shape | None:
    """Output shape of built-in ``prim`` on arguments of ``shapes``; ``None`` = evaluate instead.

    User ops (``prim.user``, including a user op registered under a built-in's name) and
    ops without a rule always return ``None``.
    """
    if prim.user:
        return None
    name = prim.name
    if name in ELEMENTWISE:
        if params or (prim.nargs is not None and len(shapes) != prim.nargs) or not shapes:
            return None
        return broadcast(shapes)
    rule = _RULES.get(name)
    if rule is None or len(shapes) != _NARGS.get(name, len(shapes)):
        return None
    try:
        return rule(shapes, params)
    except (TypeError, ValueError, IndexError):  # unexpected params: let numpy decide
        return None
