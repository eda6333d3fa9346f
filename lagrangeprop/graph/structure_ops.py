"""numpy functions over traced values: array structure (tril, diag, repeat, tile, pad, roll,
flip, take, ...; the joining and axis functions, split, stacking, expand_dims, squeeze,
moveaxis, ..., are in :mod:`~lagrangeprop.graph.joining_ops` and exported from here).

Every function here is a *composite*: it expands, while tracing, into primitives that
exist (``getitem`` with an integer index, ``reshape``, ``where`` with a constant mask,
``concatenate``, ``sum``), so the derivatives, Jacobians, curvature and tape equivalents are
theirs. Which entries move where is computed by numpy itself, on the entries' positions
(:mod:`~lagrangeprop.graph.selection`), so the forward semantics are numpy's by construction.
With no traced argument the numpy function itself is called. Each function is registered
in :data:`~lagrangeprop.graph.var.HANDLED_FUNCTIONS` (``np.tril(v)`` lands here) and, where
ndarray has the method, in :data:`~lagrangeprop.graph.var.METHODS` (``v.trace()``).

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> g = lp.grad(lambda x: np.sum(np.tril(x) * np.repeat(np.diag(x), 3).reshape(3, 3)))
>>> g(np.eye(3)).tolist()
[[2.0, 0.0, 0.0], [1.0, 2.0, 0.0], [1.0, 1.0, 2.0]]
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from .arguments import check_dtype, check_out, unsupported
from .joining_ops import *  # noqa: F401,F403 - re-exported (this family's second module)
from .joining_ops import __all__ as _joining_all
from .ops import sum as _sum
from .ops import where as _where
from .selection import (any_traced, gather_filled, numpy_shape, operand, positions, select_with,
                        shape_of, static)
from .var import HANDLED_FUNCTIONS, METHODS

_OWN = ["tril", "triu", "diag", "diagonal", "diagflat", "trace", "repeat", "tile", "pad", "roll",
        "flip", "fliplr", "flipud", "rot90", "take", "take_along_axis", "broadcast_to"]
# numpy's trace is np.trace(v) / v.trace(): lp.trace is the tracer (lagrangeprop.program)
__all__ = [name for name in _OWN if name != "trace"] + list(_joining_all)


def _k(k: Any, func: str, x: Any, arg: str = "k") -> int:
    static(k, func, arg, x)
    try:
        return operator.index(k)
    except TypeError:
        raise unsupported(func, arg, k, x, f"{arg} must be an int.") from None


# ---------------------------------------------------------------- triangles and diagonals
# tril/triu: where(mask, x, 0) with numpy's mask (a 1-d x gives the (n, n) triangle, as numpy)


def _triangle(numpy_fn, m, k):
    """``where(numpy_fn(ones, k), m, 0)``: numpy's own mask (a 1-d ``m`` gives its (n, n))."""
    name = numpy_fn.__name__
    if not any_traced(m):
        return numpy_fn(m, k)
    m, k = operand(m, name), _k(k, name, m)
    mask = numpy_shape(name, lambda: numpy_fn(np.ones(m.shape, dtype=bool), k))
    return _where(mask, m, 0.0)


def tril(m, k=0):
    """Lower triangle of the last two axes, zero above diagonal ``k`` (``numpy.tril``).

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> lp.trace(lambda x: tril(x, -1), x=np.ones((2, 2))).evaluate(x=np.ones((2, 2))).tolist()
    [[0.0, 0.0], [1.0, 0.0]]
    """
    return _triangle(np.tril, m, k)


def triu(m, k=0):
    """Upper triangle of the last two axes, zero below diagonal ``k`` (``numpy.triu``)."""
    return _triangle(np.triu, m, k)


def diag(v, k=0):
    """A 1-d ``v`` on diagonal ``k`` of a square matrix, or diagonal ``k`` of a 2-d ``v``."""
    if not any_traced(v):
        return np.diag(v, k)
    v, k = operand(v, "diag"), _k(k, "diag", v)
    return select_with(v, "diag", lambda p: np.diag(p, k), fills=len(v.shape) == 1)


def diagflat(v, k=0):
    """The flattened ``v`` on diagonal ``k`` of a square matrix (``numpy.diagflat``)."""
    if not any_traced(v):
        return np.diagflat(v, k)
    v, k = operand(v, "diagflat"), _k(k, "diagflat", v)
    return select_with(v, "diagflat", lambda p: np.diagflat(p, k), fills=True)


def diagonal(a, offset=0, axis1=0, axis2=1):
    """Diagonal ``offset`` of the ``(axis1, axis2)`` planes, as the last axis (``numpy.diagonal``)."""
    if not any_traced(a):
        return np.diagonal(a, offset, axis1, axis2)
    a = operand(a, "diagonal")
    offset, axis1, axis2 = (_k(offset, "diagonal", a, "offset"), _k(axis1, "diagonal", a, "axis1"),
                            _k(axis2, "diagonal", a, "axis2"))
    return select_with(a, "diagonal", lambda p: np.diagonal(p, offset, axis1, axis2))


def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    """Sum along diagonal ``offset`` of the ``(axis1, axis2)`` planes: ``sum(diagonal, -1)``."""
    if not any_traced(a):
        return np.trace(a, offset, axis1, axis2, dtype, out)
    check_dtype("trace", dtype, a)
    check_out("trace", out, a)
    return _sum(diagonal(a, offset, axis1, axis2), axis=-1)


# ---------------------------------------------------------------- repetition and padding


def repeat(a, repeats, axis=None):
    """Each entry ``repeats`` times (an int, or one count per entry) along ``axis``
    (``None``: of the flattened array); the cotangents of the copies add up."""
    if not any_traced(a):
        return np.repeat(a, repeats, axis)
    a = operand(a, "repeat")
    static(repeats, "repeat", "repeats", a)
    static(axis, "repeat", "axis", a)
    return select_with(a, "repeat", lambda p: np.repeat(p, repeats, axis))


def tile(A, reps):
    """``A`` repeated ``reps`` times along each axis (``numpy.tile``)."""
    if not any_traced(A):
        return np.tile(A, reps)
    A = operand(A, "tile")
    static(reps, "tile", "reps", A)
    return select_with(A, "tile", lambda p: np.tile(p, reps))


_SELECTING_PADS = {"edge": (), "wrap": (), "reflect": ("reflect_type",), "symmetric": ("reflect_type",)}


def pad(array, pad_width, mode="constant", **kwargs):
    """``numpy.pad``: ``mode="constant"`` with ``constant_values`` (every ``pad_width`` form of
    numpy), and the modes that copy entries (``edge``, ``reflect``, ``symmetric``, ``wrap``,
    with ``reflect_type='even'``). The statistics modes and odd reflection raise
    :class:`~lagrangeprop.errors.GraphError`.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> f = lambda x: pad(x, (1, 2), constant_values=(-1.0, 9.0))
    >>> lp.trace(f, x=np.ones(2)).evaluate(x=np.array([3.0, 4.0])).tolist()
    [-1.0, 3.0, 4.0, 9.0, 9.0]
    >>> lp.trace(lambda x: pad(x, 2, mode="reflect"), x=np.ones(3)).evaluate(x=np.array([1.0, 2.0, 3.0])).tolist()
    [3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]
    """
    if not any_traced(array):
        return np.pad(array, pad_width, mode, **kwargs)
    array = operand(array, "pad")
    if isinstance(mode, str) and mode in _SELECTING_PADS:
        # these modes only copy entries of the array: numpy pads the positions, we gather
        for key in kwargs:
            if key not in _SELECTING_PADS[mode]:
                raise unsupported("pad", key, kwargs[key], array, f"mode={mode!r} takes "
                                  f"{', '.join(_SELECTING_PADS[mode]) or 'no keyword'}.")
        if kwargs.get("reflect_type", "even") != "even":   # 'odd' computes 2 x_edge - x_mirror
            raise unsupported("pad", "reflect_type", kwargs["reflect_type"], array,
                              "Only reflect_type='even' (a copy of entries) traces.")
        static(pad_width, "pad", "pad_width", array)
        return select_with(array, "pad", lambda p: np.pad(p, pad_width, mode=mode, **kwargs))
    if not isinstance(mode, str) or mode != "constant":
        raise unsupported("pad", "mode", mode, array, "The modes that trace are 'constant' and "
                          "the selecting ones ('edge', 'reflect', 'symmetric', 'wrap'); "
                          "statistics modes compute values: write them with lp ops.")
    for key in kwargs:
        if key != "constant_values":
            raise unsupported("pad", key, kwargs[key], array,
                              "mode='constant' takes only constant_values.")
    static(pad_width, "pad", "pad_width", array)
    values = static(kwargs.get("constant_values", 0), "pad", "constant_values", array)
    shape = shape_of(array, "pad")
    index = numpy_shape("pad", lambda: np.pad(positions(shape, 1), pad_width, mode="constant")) - 1
    fill = numpy_shape("pad", lambda: np.pad(np.zeros(shape), pad_width, mode="constant",
                                             constant_values=values))
    return gather_filled(array, index, fill)


# ---------------------------------------------------------------- rearranging


def roll(a, shift, axis=None):
    """Entries shifted cyclically by ``shift`` along ``axis`` (ints or tuples; ``None``: flat)."""
    if not any_traced(a):
        return np.roll(a, shift, axis)
    a = operand(a, "roll")
    static(shift, "roll", "shift", a)
    static(axis, "roll", "axis", a)
    return select_with(a, "roll", lambda p: np.roll(p, shift, axis))


def flip(m, axis=None):
    """Entries in reverse order along ``axis`` (an int, a tuple, or all axes)."""
    if not any_traced(m):
        return np.flip(m, axis)
    m = operand(m, "flip")
    static(axis, "flip", "axis", m)
    return select_with(m, "flip", lambda p: np.flip(p, axis))


def fliplr(m):
    """``m`` reversed along axis 1 (``numpy.fliplr``)."""
    if not any_traced(m):
        return np.fliplr(m)
    return select_with(operand(m, "fliplr"), "fliplr", np.fliplr)


def flipud(m):
    """``m`` reversed along axis 0 (``numpy.flipud``)."""
    if not any_traced(m):
        return np.flipud(m)
    return select_with(operand(m, "flipud"), "flipud", np.flipud)


def rot90(m, k=1, axes=(0, 1)):
    """``m`` rotated by 90 degrees ``k`` times in the plane of ``axes`` (``numpy.rot90``)."""
    if not any_traced(m):
        return np.rot90(m, k, axes)
    m = operand(m, "rot90")
    k = _k(k, "rot90", m)
    static(axes, "rot90", "axes", m)
    return select_with(m, "rot90", lambda p: np.rot90(p, k, axes))


# ---------------------------------------------------------------- selecting


def take(a, indices, axis=None, out=None, mode="raise"):
    """Entries at ``indices`` along ``axis`` (``None``: of the flattened array); ``mode`` as
    numpy ("raise", "wrap", "clip"). Repeated indices accumulate their cotangents."""
    if not any_traced(a, indices):
        return np.take(a, indices, axis, out, mode)
    a = operand(a, "take")
    check_out("take", out, a)
    static(indices, "take", "indices", a)
    static(axis, "take", "axis", a)
    return select_with(a, "take", lambda p: np.take(p, indices, axis, mode=mode))


def take_along_axis(arr, indices, axis=-1):
    """``numpy.take_along_axis``: the entries of ``arr`` at ``indices`` along ``axis``."""
    if not any_traced(arr, indices):
        return np.take_along_axis(arr, indices, axis)
    arr = operand(arr, "take_along_axis")
    static(indices, "take_along_axis", "indices", arr)
    static(axis, "take_along_axis", "axis", arr)
    return select_with(arr, "take_along_axis", lambda p: np.take_along_axis(p, indices, axis))


def broadcast_to(array, shape, subok=False):
    """``array`` broadcast to ``shape``; the cotangents of the copies add up."""
    if not any_traced(array):
        return np.broadcast_to(array, shape, subok)
    array = operand(array, "broadcast_to")
    static(shape, "broadcast_to", "shape", array)
    return select_with(array, "broadcast_to", lambda p: np.broadcast_to(p, shape))


# numpy's dispatch (``__array_function__``) and the ndarray methods of the same ops
HANDLED_FUNCTIONS.update((name, globals()[name]) for name in _OWN)
METHODS["repeat"] = lambda v, *a, **k: repeat(v, *a, **k)
METHODS["diagonal"] = lambda v, *a, **k: diagonal(v, *a, **k)
METHODS["trace"] = lambda v, *a, **k: trace(v, *a, **k)
METHODS["take"] = lambda v, *a, **k: take(v, *a, **k)
