"""Structure ops as selections: numpy's own function applied to the *positions* of the entries.

Most array-structure functions (``tril``'s complement aside) only move entries around: every
output entry is one input entry or a constant. Applied to ``P = arange(x.size).reshape(x.shape)``
numpy itself computes which one, so

    op(x) = x.flat[op(P)]              (diagonal, repeat, tile, roll, flip, take, broadcast_to)
    op(x) = [x.flat, c][op(P + 1) - 1]  (diag, diagflat, pad: a 0 of numpy's fill marks a constant)

is exact (a copy of the entries, numpy's semantics by construction), and is recorded as the
existing ``getitem`` primitive with an integer index; its VJP scatter-adds, so an entry
selected twice (``repeat``, ``broadcast_to``) accumulates both cotangents. Helpers here are
shared by :mod:`~lagrangeprop.graph.structure_ops` and :mod:`~lagrangeprop.graph.joining_ops`.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: gather(x, np.array([[2, 0], [0, 1]])), x=np.ones(3))
>>> prog.evaluate(x=np.array([1.0, 2.0, 3.0])).tolist()
[[3.0, 1.0], [1.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import GraphError, ShapeError
from .arguments import traced_name
from .ops import concatenate, reshape
from .pack import as_traced, holds_traced
from .var import Var

__all__ = ["NO_DATA", "any_traced", "operand", "static", "shape_of", "positions", "gather",
           "gather_filled", "numpy_shape", "select_with"]

NO_DATA = np.dtype([])   # itemsize 0: a dummy array of any shape holds no bytes


def any_traced(*values: Any) -> bool:
    """Whether any value is traced (a Var, or a list/tuple/object array holding one)."""
    return any(isinstance(v, Var) or holds_traced(v) for v in values)


def operand(x: Any, func: str) -> Any:
    """``x`` as a traced value with a known shape, or as a constant ndarray."""
    x = as_traced(x)
    if isinstance(x, Var):
        shape_of(x, func)
        return x
    return np.asarray(x)


def static(value: Any, func: str, arg: str, x: Any = None) -> Any:
    """A static argument (``k``, ``repeats``, ``indices``, ...): a traced one raises."""
    if any_traced(value):
        raise GraphError(
            f"{func}(..., {arg}=<traced>){traced_name(x)}: the argument {arg!r} must be static "
            "(a Python number or a constant array): it fixes which entries are selected, and "
            "so the shape of the result, which cannot depend on values computed while tracing")
    return value


def shape_of(x: Any, func: str) -> tuple:
    """The static shape of ``x``; a traced value whose shape is not known yet raises."""
    if isinstance(x, Var):
        if x.shape is None:
            raise GraphError(
                f"{func} on traced variable {x.name!r}: its shape is not known yet; declare it "
                f"(prog.variable({x.name!r}, shape=...))")
        return x.shape
    return np.shape(x)


def positions(shape: tuple, start: int = 0) -> np.ndarray:
    """``arange(start, start + size).reshape(shape)``: the entries' (shifted) flat positions."""
    return np.arange(start, start + int(np.prod(shape, dtype=np.int64)), dtype=np.int64).reshape(shape)


def numpy_shape(func: str, call: Callable[[], Any]) -> Any:
    """``call()`` (numpy on positions or dummies), its ValueError/IndexError as ShapeError."""
    try:
        return call()
    except (ValueError, IndexError) as exc:   # numpy's AxisError is both
        raise ShapeError(f"{func}: {exc}") from None


def gather(x: Var, index: Any) -> Var:
    """``x.flat[index]``, recorded as one ``getitem`` (a reshape when nothing moves)."""
    index = np.array(index, dtype=np.int64)   # an owned copy (numpy may return views)
    size = int(np.prod(x.shape, dtype=np.int64))
    if index.size == size and np.array_equal(index.ravel(), np.arange(size)):
        return x if index.shape == x.shape else reshape(x, index.shape)
    flat = x if len(x.shape) == 1 else reshape(x, (-1,))
    if index.ndim == 0:
        return flat[int(index)]
    rows = index.ravel()
    if rows.size > 1 and np.all(np.diff(rows) == 1):   # a contiguous run: a basic slice
        run = flat[int(rows[0]):int(rows[-1]) + 1]
        return run if index.ndim == 1 else reshape(run, index.shape)
    return flat[index]


def gather_filled(x: Var, index: Any, fill: np.ndarray) -> Any:
    """``x.flat[index]`` where ``index >= 0``, else the constant ``fill`` (index's shape).

    The constants are appended to the flat entries and selected like them: the value is a
    copy either way (no ``0 * x``, which would turn an inf into a NaN).
    """
    index = np.asarray(index, dtype=np.int64)
    missing = index < 0
    if not missing.any():
        return gather(x, index)
    if missing.all():
        return np.array(fill, dtype=np.float64)   # numpy's result is all constants, too
    size = int(np.prod(x.shape, dtype=np.int64))
    flat = x if len(x.shape) == 1 else reshape(x, (-1,))
    ext = concatenate([flat, np.asarray(fill, dtype=np.float64)[missing]])
    index = index.copy()
    index[missing] = size + np.arange(int(missing.sum()))
    return gather(ext, index)


def select_with(x: Var, func: str, op: Callable[[np.ndarray], np.ndarray],
                fills: bool = False) -> Any:
    """``op(x)`` for a numpy function ``op`` that only moves entries (``fills``: or puts
    zeros in, as ``diag``): numpy applies ``op`` to the positions of ``x``'s entries."""
    shape = shape_of(x, func)
    start = 1 if fills else 0
    pos = positions(shape, start)
    moved = numpy_shape(func, lambda: np.asarray(op(pos)))
    # a pure selection commutes with relabelling the entries: op(π(P)) == π(op(P)) for a
    # permutation π; an op that computes with the entries (a sum, 2a - b) does not
    perm = np.concatenate([np.arange(start), start + np.random.default_rng(0).permutation(pos.size)])
    if moved.dtype.kind not in "iu" or moved.size and (moved.min() < 0 or moved.max() >= perm.size) \
            or not np.array_equal(numpy_shape(func, lambda: np.asarray(op(perm[pos]))), perm[moved]):
        raise GraphError(f"{func}{traced_name(x)}: these arguments make numpy compute new values "
                         "from the entries instead of moving them, which this composite cannot "
                         "record; write the computation with lp ops")
    if not fills:
        return gather(x, moved)
    return gather_filled(x, moved - 1, np.zeros(moved.shape))
