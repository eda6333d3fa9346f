"""numpy functions over traced values: reductions, scans and order statistics
(max, min, prod, cumsum, cumprod, var, std, ptp, average, sort, partition, argmax, ...).

Each function has numpy's signature, records primitives of the rules layer (``max``,
``min``, ``prod``, ``cumsum``, ``sort``, ``partition``, ``argmax``, ``argmin``, ``argsort``,
``all``, ``any``, ``count_nonzero``) or expands into existing ones (a composite: ``var``,
``std``, ``ptp``, ``average``, ``cumprod``), and registers itself in
:data:`~lagrangeprop.graph.var.HANDLED_FUNCTIONS` (numpy's dispatch) and, where ndarray has
the method, in :data:`~lagrangeprop.graph.var.METHODS`. Every argument is implemented or
raises :class:`~lagrangeprop.errors.GraphError` naming it; a list of traced values is packed
into one (:mod:`lagrangeprop.graph.pack`).

Examples
--------
>>> import numpy as np
>>> import lagrangeprop as lp
>>> x = np.array([[1.0, 3.0], [3.0, 2.0]])
>>> lp.grad(lambda x: np.max(x))(x).tolist()          # ties share the cotangent
[[0.0, 0.5], [0.5, 0.0]]
>>> lp.grad(lambda x: np.prod(x))(np.array([0.0, 2.0, 3.0])).tolist()   # exact at a zero
[6.0, 0.0, 0.0]
>>> bool(lp.trace(lambda x: np.var(x, ddof=1), x=x).evaluate(x=x) == np.var(x, ddof=1))
True
"""

from __future__ import annotations

import builtins
import math
import operator
from typing import Any

import numpy as np

from ..errors import GraphError, ShapeError
from .arguments import (NO_VALUE, check_dtype, check_out, check_where, normalize_axis, traced_name,
                        unsupported)
from .ops import reshape, sqrt, stack, transpose, where
from .ops import sum as _sum
from .pack import as_traced, holds_traced
from .var import HANDLED_FUNCTIONS, METHODS, Var, apply

__all__ = ["amax", "amin", "max", "min", "prod", "cumsum", "cumprod", "var", "std", "ptp",
           "average", "sort", "partition", "argmax", "argmin", "argsort", "all", "any",
           "count_nonzero"]

_SORT_KINDS = (None, "quicksort", "mergesort", "heapsort", "stable")


# ---------------------------------------------------------------- argument helpers
def _array(a: Any) -> Any:
    """A traced value, a list of them packed into one, or a plain array (evaluated)."""
    if isinstance(a, Var):
        return a
    return as_traced(a) if holds_traced(a) else np.asarray(a, dtype=np.float64)


def _shape(a: Any) -> tuple:
    return a.shape if isinstance(a, Var) else np.shape(a)


def _keep(keepdims: Any) -> bool:
    return False if keepdims is NO_VALUE else builtins.bool(keepdims)


def _static_number(func: str, name: str, value: Any, a: Any) -> float:
    if isinstance(value, Var) or np.ndim(value) != 0:
        raise unsupported(func, name, value, a, f"{name} must be a Python number.")
    return float(value)


def _one_axis(func: str, axis: Any, a: Any, flatten_none: bool) -> tuple[Any, Any]:
    """(array, axis) for a one-axis op: ``axis=None`` flattens first (numpy's rule)."""
    if axis is None and flatten_none:
        return reshape(a, (-1,)), 0
    if isinstance(axis, (tuple, list)):
        raise GraphError(f"{func}: axis must be an int or None, not the tuple {tuple(axis)!r} "
                         "(numpy raises TypeError)")
    return a, normalize_axis(axis, len(_shape(a)), func, a)


def _reduce_common(func: str, a: Any, axis: Any, out: Any, where_: Any,
                   scalar_int_ok: bool = True) -> tuple[Any, Any]:
    check_out(func, out, a)
    check_where(func, where_, a)
    a = _array(a)
    return a, normalize_axis(axis, len(_shape(a)), func, a, scalar_int_ok=scalar_int_ok)


def _count(shape: tuple, axis: Any) -> int:
    """The number of entries each group of a reduction over ``axis`` holds."""
    axes = range(len(shape)) if axis is None else (axis if isinstance(axis, tuple) else (axis,))
    return math.prod(shape[k] for k in axes)


# ---------------------------------------------------------------- max, min, ptp
def _extreme(name: str, a, axis, out, keepdims, initial, where_):
    a, axis = _reduce_common(name, a, axis, out, where_)
    c = None if initial is NO_VALUE else _static_number(name, "initial", initial, a)
    if _count(_shape(a), axis) == 0:
        # an empty group: numpy's answer is `initial` (no identity without one)
        if c is None:
            raise ShapeError(f"{name}{traced_name(a)}: zero-size array to reduction operation "
                             f"{'maximum' if name == 'max' else 'minimum'} which has no identity "
                             "(numpy raises ValueError); pass initial= or reduce a non-empty axis")
        return apply("sum", (a,), {"axis": axis, "keepdims": _keep(keepdims)}) + c
    m = apply(name, (a,), {"axis": axis, "keepdims": _keep(keepdims)})
    if c is None:
        return m
    # max(m, c) with the whole cotangent on m at a tie (autograd: x == ans); NaN stays NaN
    return where(m < c, c, m) if name == "max" else where(m > c, c, m)


def amax(a, axis=None, out=None, keepdims=NO_VALUE, initial=NO_VALUE, where=NO_VALUE):
    """Maximum over ``axis`` (``numpy.max``); the cotangent is split equally among ties.

    ``initial`` (a number) joins the comparison, as in numpy; ``where=`` raises GraphError.
    """
    return _extreme("max", a, axis, out, keepdims, initial, where)


def amin(a, axis=None, out=None, keepdims=NO_VALUE, initial=NO_VALUE, where=NO_VALUE):
    """Minimum over ``axis`` (``numpy.min``); the cotangent is split equally among ties."""
    return _extreme("min", a, axis, out, keepdims, initial, where)


max = amax  # noqa: A001 - numpy's names
min = amin  # noqa: A001


def ptp(a, axis=None, out=None, keepdims=NO_VALUE):
    """Peak to peak ``max - min`` over ``axis`` (a composite)."""
    return amax(a, axis, out, keepdims) - amin(a, axis, out, keepdims)


# ---------------------------------------------------------------- prod, scans
def prod(a, axis=None, dtype=None, out=None, keepdims=NO_VALUE, initial=NO_VALUE, where=NO_VALUE):
    """Product over ``axis``; its derivative is exact at zeros (products of the others)."""
    check_dtype("prod", dtype, a)
    a, axis = _reduce_common("prod", a, axis, out, where)
    p = apply("prod", (a,), {"axis": axis, "keepdims": _keep(keepdims)})
    return p if initial is NO_VALUE else p * _static_number("prod", "initial", initial, a)


def _scan_checks(func: str, a: Any, dtype: Any, out: Any) -> Any:
    check_dtype(func, dtype, a)
    check_out(func, out, a)
    return _array(a)


def cumsum(a, axis=None, dtype=None, out=None):
    """Cumulative sum along ``axis`` (``axis=None``: of the flattened array, as numpy)."""
    a, axis = _one_axis("cumsum", axis, _scan_checks("cumsum", a, dtype, out), True)
    return apply("cumsum", (a,), {"axis": axis})


def cumprod(a, axis=None, dtype=None, out=None):
    """Cumulative product along ``axis``: the composite ``y_k = y_{k-1} * x_k`` (numpy's own
    order of multiplication, so exact at zeros), stacked along ``axis``."""
    a, axis = _one_axis("cumprod", axis, _scan_checks("cumprod", a, dtype, out), True)
    if not isinstance(a, Var):
        return np.cumprod(a, axis=axis)
    n = a.shape[axis]
    if n == 0:
        return a * 1.0
    head = (slice(None),) * axis
    acc = a[head + (0,)]
    parts = [acc]
    for k in range(1, n):
        acc = acc * a[head + (k,)]
        parts.append(acc)
    return stack(parts, axis=axis)


# ---------------------------------------------------------------- var, std, average
def _ddof(func: str, a: Any, ddof: Any, correction: Any) -> float:
    if correction is not NO_VALUE:
        if ddof != 0:
            raise GraphError(f"{func}: ddof and correction can't be provided simultaneously")
        ddof = correction
    return _static_number(func, "ddof", ddof, a)


def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=NO_VALUE, *, where=NO_VALUE,
        mean=NO_VALUE, correction=NO_VALUE):
    """Variance over ``axis``: ``sum((a - mean)**2) / (n - ddof)`` as numpy computes it (a
    composite; ``mean=`` is used as the mean, with keepdims shape, as in numpy)."""
    check_dtype("var", dtype, a)
    a, axis = _reduce_common("var", a, axis, out, where, scalar_int_ok=False)
    ddof = _ddof("var", a, ddof, correction)
    if mean is NO_VALUE:
        mean = apply("mean", (a,), {"axis": axis, "keepdims": True})
    d = a - mean
    total = _sum(d * d, axis, keepdims=_keep(keepdims))
    return total / builtins.max(_count(_shape(a), axis) - ddof, 0)


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=NO_VALUE, *, where=NO_VALUE,
        mean=NO_VALUE, correction=NO_VALUE):
    """Standard deviation ``sqrt(var)``. At a constant input (``std = 0``) the derivative is
    undefined: the gradient raises NonFiniteError naming the node. A single entry per group
    (``std`` identically 0) has derivative 0, as in autograd."""
    a = _array(a)
    v = var(a, axis, dtype, out, ddof, keepdims, where=where, mean=mean, correction=correction)
    n = _count(_shape(a), normalize_axis(axis, len(_shape(a)), "std", a))
    if n == 1 and mean is NO_VALUE and isinstance(v, Var):
        return v * 0.0    # x - mean(x) == 0 for every x: the constant 0 (NaN/inf still propagate)
    return sqrt(v)


def average(a, axis=None, weights=None, returned=False, *, keepdims=NO_VALUE):
    """Weighted mean ``sum(a * w, axis) / sum(w, axis)`` (numpy's rules for the weights'
    shape); ``returned=True`` also gives the sum of the weights."""
    a = _array(a)
    ndim = len(_shape(a))
    if axis is not None:
        axes = axis if isinstance(axis, (tuple, list)) else (axis,)
        axis = tuple(normalize_axis(operator.index(k), ndim, "average", a) for k in axes)
        if len(set(axis)) != len(axis):
            raise GraphError(f"average: repeated axis in {axes}")
    kd = _keep(keepdims)
    if weights is None:
        avg = apply("mean", (a,), {"axis": axis, "keepdims": kd})
        scl = float(math.prod(_shape(a)) // builtins.max(math.prod(_shape(avg)), 1))
    else:
        w = _array(weights)
        if _shape(w) != _shape(a):
            if axis is None:
                raise GraphError("average: axis must be specified when shapes of a and weights differ")
            if _shape(w) != tuple(_shape(a)[k] for k in axis):
                raise GraphError("average: shape of weights must be consistent with shape of a "
                                 "along the specified axis")
            w = transpose(w, tuple(int(k) for k in np.argsort(axis)))
            w = reshape(w, tuple(s if k in axis else 1 for k, s in enumerate(_shape(a))))
        scl = _sum(w, axis, keepdims=kd)
        if not isinstance(scl, Var) and np.any(np.asarray(scl) == 0.0):
            raise GraphError("average: weights sum to zero, can't be normalized")
        avg = _sum(a * w, axis, keepdims=kd) / scl
    if not returned:
        return avg
    if not isinstance(scl, Var) or _shape(scl) != _shape(avg):
        scl = np.broadcast_to(np.asarray(scl), _shape(avg)).copy() if not isinstance(scl, Var) \
            else scl + np.zeros(_shape(avg))
    return avg, scl


# ---------------------------------------------------------------- sort, partition
def _kind(func: str, kind: Any, order: Any, stable: Any, a: Any) -> Any:
    if order is not None:
        raise unsupported(func, "order", order, a, "Structured arrays are not traced.")
    if stable is not None:
        if kind is not None:
            raise GraphError(f"{func}: `kind` and `stable` parameters can't be provided at the "
                             "same time")
        kind = "stable" if stable else None
    if kind not in _SORT_KINDS:
        raise unsupported(func, "kind", kind, a, f"Use one of {_SORT_KINDS[1:]}.")
    return kind


def sort(a, axis=-1, kind=None, order=None, *, stable=None):
    """Sorted copy along ``axis`` (``None``: flattened). The cotangent goes back through the
    permutation numpy's argsort (same ``kind``) gives, as in autograd, ties included; ``kind``
    never changes the sorted values."""
    kind = _kind("sort", kind, order, stable, a)
    x, axis = _one_axis("sort", axis, _array(a), True)
    return apply("sort", (x,), {"axis": axis, "kind": kind})


def partition(a, kth, axis=-1, kind="introselect", order=None):
    """numpy's partition along ``axis``; the cotangent goes back through its permutation."""
    if order is not None:
        raise unsupported("partition", "order", order, a, "Structured arrays are not traced.")
    if kind != "introselect":
        raise unsupported("partition", "kind", kind, a)
    if isinstance(kth, Var):
        raise unsupported("partition", "kth", kth, a, "kth must be static ints.")
    kth = operator.index(kth) if np.ndim(kth) == 0 else tuple(operator.index(k) for k in kth)
    x, axis = _one_axis("partition", axis, _array(a), True)
    return apply("partition", (x,), {"kth": kth, "axis": axis, "kind": kind})


# ---------------------------------------------------------------- argmax, argmin, argsort
def _arg(name: str, a, axis, out, keepdims):
    check_out(name, out, a)
    x, axis = _one_axis(name, axis, _array(a), False)
    return apply(name, (x,), {"axis": axis, "keepdims": _keep(keepdims)})


def argmax(a, axis=None, out=None, *, keepdims=NO_VALUE):
    """Index of the (first) maximum: integer valued, zero derivative; it cannot index."""
    return _arg("argmax", a, axis, out, keepdims)


def argmin(a, axis=None, out=None, *, keepdims=NO_VALUE):
    """Index of the (first) minimum: integer valued, zero derivative; it cannot index."""
    return _arg("argmin", a, axis, out, keepdims)


def argsort(a, axis=-1, kind=None, order=None, *, stable=None):
    """The sorting permutation along ``axis``: integer valued, zero derivative."""
    kind = _kind("argsort", kind, order, stable, a)
    x, axis = _one_axis("argsort", axis, _array(a), True)
    return apply("argsort", (x,), {"axis": axis, "kind": kind})


# ---------------------------------------------------------------- all, any, count_nonzero
def all(a, axis=None, out=None, keepdims=NO_VALUE, *, where=NO_VALUE):  # noqa: A001
    """Whether every entry is nonzero along ``axis`` (boolean, no derivative)."""
    a, axis = _reduce_common("all", a, axis, out, where)
    return apply("all", (a,), {"axis": axis, "keepdims": _keep(keepdims)})


def any(a, axis=None, out=None, keepdims=NO_VALUE, *, where=NO_VALUE):  # noqa: A001
    """Whether some entry is nonzero along ``axis`` (boolean, no derivative)."""
    a, axis = _reduce_common("any", a, axis, out, where)
    return apply("any", (a,), {"axis": axis, "keepdims": _keep(keepdims)})


def count_nonzero(a, axis=None, *, keepdims=False):
    """The number of nonzero entries along ``axis`` (integer valued, no derivative)."""
    a, axis = _reduce_common("count_nonzero", a, axis, None, NO_VALUE)
    return apply("count_nonzero", (a,), {"axis": axis, "keepdims": builtins.bool(keepdims)})


# ---------------------------------------------------------------- numpy's dispatch
HANDLED_FUNCTIONS.update((name, globals()[name]) for name in __all__)


def _in_place(name: str):
    def method(v, *args, **kwargs):
        raise GraphError(f".{name}() sorts traced variable {v.name!r} in place, and traced values "
                         f"are immutable: write `y = np.{name}(v, ...)` instead")
    return method


# ndarray methods share the functions' argument order after ``a``
METHODS.update({name: (lambda f: lambda v, *args, **kwargs: f(v, *args, **kwargs))(globals()[name])
                for name in ("max", "min", "prod", "cumsum", "cumprod", "var", "std", "ptp",
                             "argmax", "argmin", "argsort", "all", "any")})
METHODS.update(sort=_in_place("sort"), partition=_in_place("partition"))
# numpy's own var/std of an object array (a list of traced values, np.var([x, y], axis=0))
# calls each entry's .conjugate(): the identity for real values
METHODS.setdefault("conjugate", lambda v: v)
METHODS.setdefault("conj", lambda v: v)
