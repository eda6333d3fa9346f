"""numpy functions over traced values: finite differences and grids (``diff``, ``gradient``,
``linspace``), each a composite of slices, subtraction and scaling, so exactly numpy's values.

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> lp.trace(lambda x: np.diff(x ** 2), x=np.ones(4)).evaluate(x=np.arange(4.0))
array([1., 3., 5.])
>>> lp.trace(lambda x: np.gradient(x ** 2), x=np.ones(4)).evaluate(x=np.arange(4.0))
array([1., 2., 4., 5.])
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ..errors import ShapeError
from .arguments import NO_VALUE, check_dtype, normalize_axis, unsupported
from .joining_ops import moveaxis
from .ops import concatenate, reshape
from .var import HANDLED_FUNCTIONS, Var

__all__ = ["diff", "gradient", "linspace"]


def _along(ndim: int, axis: int, sl: slice) -> tuple:
    return (slice(None),) * axis + (sl,)


def _shape(a: Any) -> tuple:
    return a.shape if isinstance(a, Var) else np.shape(a)


# diff: d_k = a_{k+1} - a_k along axis, n times (prepend/append joined first, as numpy)
def diff(a, n=1, axis=-1, prepend=NO_VALUE, append=NO_VALUE):
    """``numpy.diff``: the n-th discrete difference along ``axis``."""
    if not any(isinstance(v, Var) for v in (a, prepend, append)):
        kw = {k: v for k, v in (("prepend", prepend), ("append", append)) if v is not NO_VALUE}
        return np.diff(a, n, axis, **kw)
    n = operator.index(n)
    if n < 0:
        raise ValueError(f"order must be non-negative but got {n}")
    shape = _shape(a)
    if not shape:
        raise ShapeError("diff requires input that is at least one dimensional")
    axis = normalize_axis(axis, len(shape), "diff", a)
    parts = []
    for extra in (prepend, a, append):
        if extra is NO_VALUE:
            continue
        if extra is a:
            parts.append(a)
            continue
        s = list(shape)
        s[axis] = 1
        e = extra if isinstance(extra, Var) and extra.shape else None
        parts.append(extra if e is not None else
                     (np.broadcast_to(extra, s) if np.ndim(extra) == 0 else extra))
    out = parts[0] if len(parts) == 1 else concatenate(parts, axis=axis)
    for _ in range(n):
        out = out[_along(len(shape), axis, slice(1, None))] - out[_along(len(shape), axis, slice(None, -1))]
    return out


# gradient: (f_{k+1} - f_{k-1}) / 2h inside; one-sided differences of order 1 or 2 at the ends
def gradient(f, *varargs, axis=None, edge_order=1):
    """``numpy.gradient`` with scalar spacings (one per axis, or one for all)."""
    if not isinstance(f, Var):
        return np.gradient(f, *varargs, axis=axis, edge_order=edge_order)
    shape = f.shape
    axes = tuple(range(len(shape))) if axis is None else normalize_axis(axis, len(shape), "gradient", f)
    axes = axes if isinstance(axes, tuple) else (axes,)
    if any(isinstance(h, Var) or np.ndim(h) != 0 for h in varargs):
        raise unsupported("gradient", "varargs", "<coordinate arrays>", f,
                          "Give scalar spacings (uniform grids); coordinate arrays are not "
                          "supported while tracing.")
    if len(varargs) not in (0, 1, len(axes)):
        raise TypeError("invalid number of arguments")
    hs = [1.0] * len(axes) if not varargs else [float(varargs[0])] * len(axes) if len(varargs) == 1 \
        else [float(h) for h in varargs]
    if edge_order not in (1, 2):
        raise ValueError("'edge_order' greater than 2 not supported")
    out = []
    for ax, h in zip(axes, hs):
        if shape[ax] < edge_order + 1:
            raise ValueError("Shape of array too small to calculate a numerical gradient, at least "
                             "(edge_order + 1) elements are required.")
        n = len(shape)

        def at(sl, ax=ax, n=n):
            return f[_along(n, ax, sl)]
        inner = (at(slice(2, None)) - at(slice(None, -2))) / (2.0 * h)
        if edge_order == 1:
            first = (at(slice(1, 2)) - at(slice(0, 1))) / h
            last = (at(slice(-1, None)) - at(slice(-2, -1))) / h
        else:
            first = (-1.5 * at(slice(0, 1)) + 2.0 * at(slice(1, 2)) - 0.5 * at(slice(2, 3))) / h
            last = (0.5 * at(slice(-3, -2)) - 2.0 * at(slice(-2, -1)) + 1.5 * at(slice(-1, None))) / h
        out.append(concatenate([first, inner, last], axis=ax))
    return out[0] if len(out) == 1 else out


# linspace: y_k = start + k·(stop - start)/div, and y_{num-1} = stop exactly (endpoint)
def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0, *, device=None):
    """``numpy.linspace`` with traced ``start``/``stop`` (scalars or arrays)."""
    if not (isinstance(start, Var) or isinstance(stop, Var)):
        return np.linspace(start, stop, num, endpoint, retstep, dtype, axis)
    check_dtype("linspace", dtype, start if isinstance(start, Var) else stop)
    num = operator.index(num)
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    bshape = np.broadcast_shapes(_shape(start), _shape(stop))
    div = (num - 1) if endpoint else num
    delta = stop - start
    k = np.arange(0, num, dtype=float).reshape((-1,) + (1,) * len(bshape))
    if num == 0:   # no entries: a constant (empty) array, as numpy's (0, *shape)
        empty = np.zeros((0,) + bshape)
        return (np.moveaxis(empty, 0, axis), np.nan) if retstep else np.moveaxis(empty, 0, axis)
    if div > 0:
        step = delta / div
        body = k * step + start
    else:
        step = np.nan
        body = k * delta + start
    if endpoint and num > 1:
        last = reshape(stop + np.zeros(bshape), (1,) + bshape)
        body = concatenate([body[: num - 1], last], axis=0)
    if axis != 0:
        body = moveaxis(body, 0, axis)
    return (body, step) if retstep else body


HANDLED_FUNCTIONS.update(diff=diff, gradient=gradient, linspace=linspace)
