"""Arrays built from traced values: ``np.array([x, y])``, ``np.r_[x, 1.0]``, lists of Vars.

numpy builds such arrays itself, as object arrays: a traced value presents itself to numpy
(``Var.__array__``) as an object array of its *entries*, each a lazy :class:`Element`
(``x[i, j]``, recorded only if it is used on its own), so numpy's own rules decide every
shape (``np.array([x, x])`` stacks, ``np.r_[x, x]`` concatenates, ``np.c_`` joins columns).
:func:`as_traced` turns the object array back into one traced value:

    z = concatenate(runs)  reshaped to the object array's shape,

where a run is a contiguous slice of one traced value's entries (``reshape(x, -1)[a:b]``),
a stack of scalar traced values, or a constant. ``np.array([x, x])`` is therefore two
slices of ``x`` and one concatenation, not one node per entry.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> prog = lp.trace(lambda x: np.array([x, 2.0 * x]), x=np.ones(3))
>>> prog.evaluate(x=np.arange(3.0)).tolist()
[[0.0, 1.0, 2.0], [0.0, 2.0, 4.0]]
>>> lp.trace(lambda x: np.r_[x, 1.0, x], x=np.ones(2)).evaluate(x=np.array([3.0, 4.0])).tolist()
[3.0, 4.0, 1.0, 3.0, 4.0]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import GraphError
from .ops import concatenate, reshape, stack
from .var import METHODS, Var, _Node

__all__ = ["Element", "as_traced", "entries", "holds_traced"]


class Element(Var):
    """Entry ``k`` (C order) of a traced value as numpy sees it in an object array: recorded
    (``getitem``) only if used on its own; :func:`~lagrangeprop.graph.pack.as_traced` packs
    runs of entries back into slices of their source."""

    __slots__ = ("source", "index", "_lazy")

    def __init__(self, source: Var, index: int):
        self.program = source.program
        self.source = source
        self.index = index
        self._lazy: _Node | None = None

    @property
    def _handle(self) -> _Node:
        if self._lazy is None:
            where = tuple(int(i) for i in np.unravel_index(self.index, self.source.shape))
            self._lazy = self.source[where]._handle
        return self._lazy

    @property
    def shape(self) -> tuple:
        return ()


def entries(var: Var) -> np.ndarray:
    """``var`` as an object array of its entries (lazy :class:`Element` s), ``var.shape``."""
    out = np.empty(var.shape, dtype=object)
    if out.ndim == 0:
        out[()] = var
        return out
    flat = out.reshape(-1)
    for k in range(flat.size):
        flat[k] = Element(var, k)
    return out


METHODS["__entries__"] = entries   # what Var.__array__ hands numpy


def holds_traced(value: Any) -> bool:
    """Whether ``value`` is an object array, list or tuple holding traced values."""
    if isinstance(value, np.ndarray):
        return value.dtype == object and any(isinstance(v, Var) for v in value.flat)
    if isinstance(value, (list, tuple)):
        return any(isinstance(v, Var) or holds_traced(v) for v in value)
    return False


def as_traced(value: Any) -> Any:
    """``value`` with an object array or (nested) list/tuple of traced values packed into
    one traced value, following numpy's shape rules; anything else unchanged.

    Raises
    ------
    GraphError
        An entry that is neither a number nor a 0-d traced value (an object array holding
        whole arrays, which numpy itself would not compute with).
    """
    if isinstance(value, (list, tuple)):
        if not holds_traced(value):
            return value
        value = np.array(value, dtype=object)
    if not (isinstance(value, np.ndarray) and value.dtype == object):
        return value
    flat = value.reshape(-1)
    if not any(isinstance(v, Var) for v in flat):
        return value
    prog = next(v.program for v in flat if isinstance(v, Var))
    runs: list[Any] = []
    k = 0
    while k < flat.size:
        v = flat[k]
        if isinstance(v, Element) and v.program is prog:
            # a run of consecutive entries of one source: one slice of its flat view
            src, start, j = v.source, v.index, k + 1
            while (j < flat.size and isinstance(flat[j], Element) and flat[j].source is src
                   and flat[j].index == start + (j - k)):
                j += 1
            runs.append(("slice", src, start, start + (j - k)))
            k = j
        elif isinstance(v, Var):
            if v.program is not prog:
                raise GraphError("an array built from traced values mixes two programs")
            if v.shape != ():
                raise GraphError(
                    f"an object array holds the traced array {v.name!r} of shape {v.shape} as one "
                    "entry; build arrays from traced values with np.array([...]), np.stack or "
                    "np.concatenate, which see the entries")
            j = k + 1
            while j < flat.size and isinstance(flat[j], Var) and not isinstance(flat[j], Element):
                j += 1
            runs.append(("stack", list(flat[k:j])))
            k = j
        else:
            j = k
            while j < flat.size and not isinstance(flat[j], Var):
                j += 1
            try:
                runs.append(("const", np.array(list(flat[k:j]), dtype=np.float64)))
            except (TypeError, ValueError):
                raise GraphError(f"an array built from traced values has the entry {flat[k]!r}, "
                                 "which is not a number") from None
            k = j
    return _join(runs, value.shape)


def _join(runs: list, shape: tuple) -> Any:
    parts, flats = [], {}
    for run in runs:
        kind = run[0]
        if kind == "const":
            parts.append(run[1])
        elif kind == "stack":
            parts.append(stack(run[1]) if len(run[1]) > 1 else reshape(run[1][0], (1,)))
        else:
            _, src, a, b = run
            whole = src.shape == shape and a == 0 and b == src.size
            if whole:
                return src
            flat = flats.get(id(src))
            if flat is None:
                flat = flats[id(src)] = reshape(src, (-1,)) if len(src.shape) != 1 else src
            parts.append(flat if (a, b) == (0, src.size) else flat[a:b])
    out = parts[0] if len(parts) == 1 else concatenate(parts)
    return out if shape == (int(np.prod(shape, dtype=int)),) else reshape(out, shape)
