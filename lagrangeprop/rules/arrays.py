"""Array helpers the rule families share: float64 views, sizes, axes, broadcasting.

:func:`unbroadcast` sums a cotangent back to its argument's shape and
:func:`broadcast_jac` builds the sparse Jacobian ``diag(partial) @ S`` of an elementwise
op; the rest are one-liners every family needs (``as_f64``, ``size``, ``axis_param``,
``normalize_axes``).

Examples
--------
>>> import numpy as np
>>> unbroadcast(np.ones((2, 3)), (3,)).tolist()
[2.0, 2.0, 2.0]
>>> normalize_axes(-1, 3)
(2,)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import ShapeError

__all__ = ["as_f64", "axis_param", "broadcast_jac", "normalize_axes", "size", "unbroadcast"]

F64 = np.float64


def as_f64(x: Any) -> np.ndarray:
    """A float64 view of a numeric argument."""
    return np.asarray(x, dtype=F64)


def size(x: Any) -> int:
    """The number of entries of ``x`` (1 for a scalar)."""
    return math.prod(np.shape(x))


def axis_param(axis: Any) -> Any:
    """An axis parameter numpy accepts (a list, e.g. from JSON, becomes a tuple)."""
    return tuple(axis) if isinstance(axis, list) else axis


def normalize_axes(axis: Any, ndim: int) -> tuple[int, ...]:
    """``axis`` (None, int or tuple) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if np.ndim(axis) == 0:
        axis = (axis,)
    return tuple(sorted(int(a) % ndim for a in axis))


def unbroadcast(g: Any, shape: tuple[int, ...], what: str = "a cotangent") -> np.ndarray:
    """Sum ``g`` over the axes that numpy broadcasting added to an array of ``shape``.

    ``g`` must have the shape of a broadcast of ``shape`` (the output of an op that
    broadcast its argument): leading axes and axes where ``shape`` has length 1 are
    summed. Any other shape means a rule returned a wrong cotangent (a transposed or
    mis-sized one) and raises instead of being reshaped to fit; only a reshape that
    inserts or removes length-1 axes (which keeps every entry in place) is allowed.

    Raises
    ------
    ShapeError
        When ``g``'s shape is not a broadcast of ``shape``; the message names ``what``.

    Examples
    --------
    >>> unbroadcast(np.ones((2, 3, 4)), (3, 1)).tolist()
    [[8.0], [8.0], [8.0]]
    """
    g = np.asarray(g, dtype=np.float64)
    shape = tuple(shape)
    if g.shape == shape:
        return g
    extra = g.ndim - len(shape)
    if extra < 0 or any(n != 1 and m != n for m, n in zip(g.shape[extra:], shape)):
        if g.size == math.prod(shape) and _squeezed(g.shape) == _squeezed(shape):
            return g.reshape(shape)   # only length-1 axes differ: every entry stays in place
        raise ShapeError(
            f"{what} has shape {g.shape}, which is not a broadcast of the argument's shape "
            f"{shape}: the derivative rule returned a wrong cotangent (transposed or "
            "mis-sized?); it must have the argument's shape, or the broadcast output's")
    if extra > 0:
        g = g.sum(axis=tuple(range(extra)))
    axes = tuple(k for k, n in enumerate(shape) if n == 1 and g.shape[k] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return g


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)


def broadcast_jac(partial: Any, arg_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> sp.csr_matrix:
    """Jacobian ``diag(partial) @ S`` of an elementwise op for one argument.

    ``S`` is the 0/1 selection matrix mapping an argument of ``arg_shape`` to its
    broadcast copy of ``out_shape``; ``partial`` (broadcastable to ``out_shape``) holds
    the elementwise partial derivative. Rows and columns are in C order.

    Examples
    --------
    >>> broadcast_jac(2.0, (2, 1), (2, 2)).toarray()
    array([[2., 0.],
           [2., 0.],
           [0., 2.],
           [0., 2.]])
    """
    out_shape = tuple(out_shape)
    n_out = int(np.prod(out_shape, dtype=np.int64))
    n_arg = int(np.prod(arg_shape, dtype=np.int64))
    cols = np.broadcast_to(np.arange(n_arg).reshape(arg_shape), out_shape).ravel()
    data = np.broadcast_to(np.asarray(partial, dtype=np.float64), out_shape).ravel()
    return sp.csr_matrix((data, (np.arange(n_out), cols)), shape=(n_out, n_arg))
