"""Output shapes of the built-in ops from their argument shapes, without running numpy.

Building a program needs the shape of every node. Evaluating each op on dummy arrays
(abstract evaluation) is exact but costs several microseconds per node; for the
common built-in ops the shape follows from a short rule, the entry's ``shape_rule``
(defined next to the op in its family module). :func:`rule_shape` dispatches to it and
returns ``None`` whenever the rule does not apply or the shapes do not fit, in which
case the caller evaluates the op on dummies (:func:`placeholder`), so that any error
carries numpy's own message exactly as before. :func:`broadcast` and
:func:`reduced_axes` are the helpers the families' shape rules share.

Examples
--------
>>> from lagrangeprop.rules import get
>>> rule_shape(get("add"), [(3, 1), (4,)], {})
(3, 4)
>>> rule_shape(get("matmul"), [(5, 3), (3,)], {})
(5,)
>>> rule_shape(get("sum"), [(2, 3)], {"axis": 1, "keepdims": True})
(2, 1)
>>> rule_shape(get("add"), [(3,), (4,)], {}) is None   # numpy will say why
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .registry import Primitive

__all__ = ["broadcast", "broadcast_rule", "placeholder", "reduced_axes", "rule_shape"]

Shape = tuple


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


def broadcast_rule(shapes: Sequence[Shape], params: dict) -> Shape | None:
    """The shape rule of an elementwise op (no parameters): the broadcast of its arguments."""
    if params or not shapes:
        return None
    return broadcast(shapes)


def reduced_axes(axis: Any, ndim: int) -> tuple[int, ...] | None:
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


def placeholder(shape: Shape) -> np.ndarray:
    """A writeable float64 array of ``shape`` that costs O(1) memory (every entry is the
    same 0.5: strides 0), for evaluating an op that has no shape rule on dummies."""
    return np.lib.stride_tricks.as_strided(np.array([0.5]), shape=shape, strides=(0,) * len(shape))


def rule_shape(prim: Primitive, shapes: Sequence[Shape], params: dict) -> Shape | None:
    """Output shape of built-in ``prim`` on arguments of ``shapes``; ``None`` = evaluate instead.

    User ops (``prim.user``, including a user op registered under a built-in's name) and
    ops without a ``shape_rule`` always return ``None``, as does a number of arguments
    other than ``prim.nargs``.
    """
    rule = prim.shape_rule
    if rule is None or prim.user or (prim.nargs is not None and len(shapes) != prim.nargs):
        return None
    try:
        return rule(shapes, params)
    except (TypeError, ValueError, IndexError):  # unexpected params: let numpy decide
        return None
