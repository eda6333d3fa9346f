"""numpy functions over traced values: axes (expand_dims, squeeze, moveaxis, swapaxes,
rollaxis, atleast_*d), splitting, stacking (vstack, hstack, dstack, column_stack, append),
``select``, ``meshgrid`` and the constant factories ``full_like``/``empty_like``.

All composites: a new shape is a ``reshape``, a permutation of axes a ``transpose``, a
piece of a split a basic slice (``getitem``), a stack a ``concatenate`` of operands made
``atleast_*d``, ``select`` a chain of ``where``. numpy itself computes every new shape and
permutation (on a 0-byte dummy array: numpy's validation and errors, no data), so the
semantics are numpy's. The stacking functions take lists mixing traced values, arrays and
Python numbers. Exported through :mod:`~lagrangeprop.graph.structure_ops`.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> f = lambda x: np.vstack([np.moveaxis(x, 0, -1), np.ones(2), [3.0, x[0, 0]]])
>>> lp.trace(f, x=np.ones((2, 1))).evaluate(x=np.array([[1.0], [2.0]])).tolist()
[[1.0, 2.0], [1.0, 1.0], [3.0, 1.0]]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import GraphError, ShapeError
from .arguments import check_dtype, normalize_axis, unsupported
from .ops import concatenate, reshape, transpose
from .ops import where as _where
from .selection import (NO_DATA, any_traced, gather, numpy_shape, operand, positions, select_with,
                        shape_of, static)
from .var import HANDLED_FUNCTIONS, METHODS, Var

__all__ = ["expand_dims", "squeeze", "moveaxis", "swapaxes", "rollaxis", "atleast_1d",
           "atleast_2d", "atleast_3d", "split", "array_split", "hsplit", "vsplit", "dsplit",
           "vstack", "hstack", "dstack", "column_stack", "row_stack", "append", "select",
           "full_like", "empty_like", "meshgrid"]


def _ndim(x: Any, func: str) -> int:
    return len(shape_of(x, func))


def _new_shape(x: Any, func: str, call: Callable[[np.ndarray], np.ndarray]) -> Any:
    """``x`` reshaped to ``call(dummy).shape`` (numpy's shape rule on a 0-byte dummy)."""
    shape = shape_of(x, func)
    new = numpy_shape(func, lambda: call(np.empty(shape, dtype=NO_DATA)).shape)
    if not isinstance(x, Var):
        return np.reshape(x, new)
    return x if new == shape else reshape(x, new)


def _permuted(x: Var, func: str, call: Callable[[np.ndarray], np.ndarray]) -> Var:
    """``transpose(x, perm)`` with numpy's permutation: ``call`` on a dummy whose axis k has
    length k + 2 reports where every axis went."""
    n = _ndim(x, func)
    moved = numpy_shape(func, lambda: call(np.empty(tuple(range(2, n + 2)), dtype=NO_DATA)).shape)
    perm = tuple(s - 2 for s in moved)
    return x if perm == tuple(range(n)) else transpose(x, perm)


# ---------------------------------------------------------------- axes


def expand_dims(a, axis):
    """New axes of length 1 at ``axis`` (an int or a tuple, counted in the result)."""
    if not any_traced(a):
        return np.expand_dims(a, axis)
    static(axis, "expand_dims", "axis", a)
    return _new_shape(operand(a, "expand_dims"), "expand_dims", lambda d: np.expand_dims(d, axis))


def squeeze(a, axis=None):
    """``a`` without its length-1 axes (those of ``axis`` only, which must have length 1)."""
    if not any_traced(a):
        return np.squeeze(a, axis)
    static(axis, "squeeze", "axis", a)
    return _new_shape(operand(a, "squeeze"), "squeeze", lambda d: np.squeeze(d, axis))


def moveaxis(a, source, destination):
    """Axes ``source`` moved to ``destination`` (ints or sequences), the others in order."""
    if not any_traced(a):
        return np.moveaxis(a, source, destination)
    static(source, "moveaxis", "source", a)
    static(destination, "moveaxis", "destination", a)
    return _permuted(operand(a, "moveaxis"), "moveaxis",
                     lambda d: np.moveaxis(d, source, destination))


def swapaxes(a, axis1, axis2):
    """Axes ``axis1`` and ``axis2`` interchanged (``numpy.swapaxes``)."""
    if not any_traced(a):
        return np.swapaxes(a, axis1, axis2)
    static((axis1, axis2), "swapaxes", "axis", a)
    return _permuted(operand(a, "swapaxes"), "swapaxes", lambda d: np.swapaxes(d, axis1, axis2))


def rollaxis(a, axis, start=0):
    """Axis ``axis`` rolled back to position ``start`` (``numpy.rollaxis``; negative axes too)."""
    if not any_traced(a):
        return np.rollaxis(a, axis, start)
    static((axis, start), "rollaxis", "axis", a)
    return _permuted(operand(a, "rollaxis"), "rollaxis", lambda d: np.rollaxis(d, axis, start))


def _atleast(func: Callable[..., Any], name: str, arys: Sequence[Any]) -> Any:
    if not any_traced(*arys):
        return func(*arys)
    out = tuple(_new_shape(operand(a, name), name, func) for a in arys)
    return out[0] if len(out) == 1 else out


def atleast_1d(*arys):
    """Each argument with at least one axis (a tuple for several, as numpy)."""
    return _atleast(np.atleast_1d, "atleast_1d", arys)


def atleast_2d(*arys):
    """Each argument with at least two axes (a 1-d ``(n,)`` becomes ``(1, n)``)."""
    return _atleast(np.atleast_2d, "atleast_2d", arys)


def atleast_3d(*arys):
    """Each argument with at least three axes (``(n,)`` -> ``(1, n, 1)``, ``(m, n)`` -> ``(m, n, 1)``)."""
    return _atleast(np.atleast_3d, "atleast_3d", arys)


# ---------------------------------------------------------------- splitting
# numpy splits arange(n) (its own rules for sections and indices); each piece is a slice


def _split(func: str, ary: Any, ios: Any, axis: Any, equal: bool) -> list:
    ary = operand(ary, func)
    static(ios, func, "indices_or_sections", ary)
    static(axis, func, "axis", ary)
    axis = normalize_axis(axis, _ndim(ary, func), func, ary)
    splitter = np.split if equal else np.array_split
    pieces = numpy_shape(func, lambda: splitter(np.arange(ary.shape[axis]), ios))
    lead = (slice(None),) * axis
    return [ary[lead + (slice(int(p[0]), int(p[-1]) + 1) if p.size else slice(0, 0),)]
            for p in pieces]


def split(ary, indices_or_sections, axis=0):
    """Equal sections (an int that divides the axis) or pieces between ``indices``: a list.

    Examples
    --------
    >>> import lagrangeprop as lp
    >>> f = lambda x: split(x, [1], axis=-1)[1] * 2.0
    >>> lp.trace(f, x=np.ones((1, 3))).evaluate(x=np.array([[1.0, 2.0, 3.0]])).tolist()
    [[4.0, 6.0]]
    """
    if not any_traced(ary):
        return np.split(ary, indices_or_sections, axis)
    return _split("split", ary, indices_or_sections, axis, True)


def array_split(ary, indices_or_sections, axis=0):
    """As :func:`split`, but ``n`` sections need not divide the axis (numpy's sizes)."""
    if not any_traced(ary):
        return np.array_split(ary, indices_or_sections, axis)
    return _split("array_split", ary, indices_or_sections, axis, False)


def _split_along(func: str, ary: Any, ios: Any, min_ndim: int, axis: int) -> list:
    if not any_traced(ary):
        return getattr(np, func)(ary, ios)
    n = _ndim(ary, func)
    if n < min_ndim:
        raise ShapeError(f"{func} only works on arrays of {min_ndim} or more dimensions")
    return _split(func, ary, ios, axis if n > 1 else 0, True)


def hsplit(ary, indices_or_sections):
    """:func:`split` along axis 1 (axis 0 of a 1-d array)."""
    return _split_along("hsplit", ary, indices_or_sections, 1, 1)


def vsplit(ary, indices_or_sections):
    """:func:`split` along axis 0 of an array with at least two axes."""
    return _split_along("vsplit", ary, indices_or_sections, 2, 0)


def dsplit(ary, indices_or_sections):
    """:func:`split` along axis 2 of an array with at least three axes."""
    return _split_along("dsplit", ary, indices_or_sections, 3, 2)


# ---------------------------------------------------------------- stacking


def _items(tup: Any, func: str) -> list:
    """The operands of a stacking function: traced values or constant arrays."""
    if isinstance(tup, Var):
        return list(tup)   # numpy iterates an array: its rows
    if not isinstance(tup, (list, tuple)):
        raise GraphError(f"{func}: arrays to stack must be passed as a sequence (a list or "
                         f"tuple), got {type(tup).__name__}")
    return [operand(x, func) for x in tup]


def vstack(tup, *, dtype=None, casting="same_kind"):
    """Rows stacked: ``concatenate([atleast_2d(x) for x in tup], axis=0)``."""
    if not any_traced(tup):
        return np.vstack(tup, dtype=dtype, casting=casting)
    items = [atleast_2d(x) for x in _items(tup, "vstack")]
    return concatenate(items, 0, dtype=dtype, casting=casting)


def row_stack(tup, *, dtype=None, casting="same_kind"):
    """numpy's deprecated alias of :func:`vstack` (with numpy's DeprecationWarning)."""
    warnings.warn("`row_stack` alias is deprecated. Use `np.vstack` directly.",
                  DeprecationWarning, stacklevel=2)
    return vstack(tup, dtype=dtype, casting=casting)


def hstack(tup, *, dtype=None, casting="same_kind"):
    """Columns stacked: along axis 1, or axis 0 when the first operand is 1-d."""
    if not any_traced(tup):
        return np.hstack(tup, dtype=dtype, casting=casting)
    items = [atleast_1d(x) for x in _items(tup, "hstack")]
    axis = 0 if items and np.ndim(items[0]) == 1 else 1
    return concatenate(items, axis, dtype=dtype, casting=casting)


def dstack(tup):
    """Stacked along the third axis: ``concatenate([atleast_3d(x) ...], axis=2)``."""
    if not any_traced(tup):
        return np.dstack(tup)
    return concatenate([atleast_3d(x) for x in _items(tup, "dstack")], 2)


def column_stack(tup):
    """1-d operands as columns, 2-d ones as they are, joined along axis 1."""
    if not any_traced(tup):
        return np.column_stack(tup)
    items = []
    for x in _items(tup, "column_stack"):
        if np.ndim(x) < 2:
            x = _new_shape(x, "column_stack", lambda d: np.atleast_2d(d).T)
        items.append(x)
    return concatenate(items, 1)


def append(arr, values, axis=None):
    """``values`` after ``arr`` along ``axis`` (``None``: both flattened)."""
    if not any_traced(arr, values):
        return np.append(arr, values, axis)
    arr, values = operand(arr, "append"), operand(values, "append")
    static(axis, "append", "axis", arr)
    if axis is None:
        if np.ndim(arr) != 1:
            arr = _new_shape(arr, "append", np.ravel)
        values = _new_shape(values, "append", np.ravel)
        axis = 0
    return concatenate([arr, values], axis)


# ---------------------------------------------------------------- select, meshgrid, constants


def _boolean(c: Any) -> bool:
    return c.dtype == np.bool_ if isinstance(c, Var) else np.asarray(c).dtype == np.bool_


def select(condlist, choicelist, default=0):
    """The first choice whose condition holds, else ``default``: ``where`` chained in
    reverse (numpy's definition); the conditions are never differentiated."""
    if not any_traced(condlist, choicelist, default):
        return np.select(condlist, choicelist, default)
    conds = [operand(c, "select") for c in condlist]
    choices = [operand(c, "select") for c in choicelist]
    default = operand(default, "select")
    for i, c in enumerate(conds):
        if not _boolean(c):
            raise GraphError(f"select: invalid entry {i} in condlist: it should be boolean "
                             "(a comparison such as x > 0, or a bool array)")
    dummies = [np.zeros(shape_of(c, "select"), dtype=bool) for c in conds]
    shape = numpy_shape("select", lambda: np.select(
        dummies, [np.zeros(shape_of(c, "select")) for c in choices],
        np.zeros(shape_of(default, "select"))).shape)
    out = default
    for c, choice in reversed(list(zip(conds, choices))):
        out = _where(c, choice, out)
    return out if np.shape(out) == shape else select_with(out, "select",
                                                           lambda p: np.broadcast_to(p, shape))


def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    """Coordinate arrays from 1-d coordinate vectors (``numpy.meshgrid``; a tuple)."""
    if not any_traced(*xi):
        return np.meshgrid(*xi, copy=copy, sparse=sparse, indexing=indexing)
    static((copy, sparse, indexing), "meshgrid", "sparse", xi)
    items = [operand(x, "meshgrid") for x in xi]
    sizes = [int(np.prod(shape_of(x, "meshgrid"), dtype=np.int64)) for x in items]
    plain = numpy_shape("meshgrid", lambda: np.meshgrid(
        *[np.zeros(n) if isinstance(x, Var) else np.ravel(x) for x, n in zip(items, sizes)],
        sparse=sparse, indexing=indexing))
    out = list(plain)
    for i, x in enumerate(items):
        if isinstance(x, Var):
            grids = np.meshgrid(*[positions((n,)) if j == i else np.zeros(n, dtype=np.int64)
                                  for j, n in enumerate(sizes)], sparse=sparse, indexing=indexing)
            out[i] = gather(x, grids[i])
    return tuple(out)


def _factory(func: str, a: Any, fill: Any, dtype: Any, shape: Any, device: Any) -> Any:
    if device not in (None, "cpu"):
        raise unsupported(func, "device", device, a, "numpy arrays live on the CPU.")
    static(shape, func, "shape", a)
    shp = shape_of(a, func) if shape is None else shape
    if any_traced(fill):
        check_dtype(func, dtype, a)
        return select_with(operand(fill, func), func, lambda p: np.broadcast_to(p, shp))
    return np.full(shp, fill, dtype=dtype if dtype is not None else getattr(a, "dtype", None))


def full_like(a, fill_value, dtype=None, order="K", subok=True, shape=None, *, device=None):
    """A constant array of ``a``'s shape filled with ``fill_value`` (a traced fill value
    is broadcast, so it is differentiated). ``order``/``subok`` only choose a layout."""
    if not any_traced(a, fill_value):
        return np.full_like(a, fill_value, dtype, order, subok, shape, device=device)
    return _factory("full_like", a, fill_value, dtype, shape, device)


def empty_like(prototype, dtype=None, order="K", subok=True, shape=None, *, device=None):
    """``numpy.empty_like``: unspecified entries in numpy, zeros here (a constant)."""
    if not any_traced(prototype):
        return np.empty_like(prototype, dtype, order, subok, shape, device=device)
    return _factory("empty_like", prototype, 0, dtype, shape, device)


def _fill(v: Var, value: Any) -> None:
    raise GraphError(f".fill() on traced variable {v.name!r} writes in place, and traced values "
                     f"are immutable; write np.full_like({v.name}, value) instead")


HANDLED_FUNCTIONS.update((name, globals()[name]) for name in __all__)
METHODS["squeeze"] = lambda v, *a, **k: squeeze(v, *a, **k)
METHODS["swapaxes"] = lambda v, *a, **k: swapaxes(v, *a, **k)
METHODS["fill"] = _fill
