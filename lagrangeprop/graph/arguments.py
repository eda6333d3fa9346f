"""Checks of the numpy arguments a traced op receives (``axis=``, ``out=``, ``dtype=``, ...).

SPEC §2: every numpy argument or keyword a traced op does not implement raises
:class:`~lagrangeprop.errors.GraphError` naming it; none is silently dropped. These checks
are shared by the traced value's numpy protocols (:mod:`lagrangeprop.graph.var`) and the
``lp.*`` functions (:mod:`lagrangeprop.graph.ops`). A traced value is recognised by the
rules layer's recording protocol (its type has ``__lagrangeprop_apply__``), so this module
sits below both.

Examples
--------
>>> from lagrangeprop.graph.arguments import normalize_axis
>>> normalize_axis(-1, 3, "sum")
2
>>> normalize_axis((0, -1), 2, "sum")
(0, 1)
>>> normalize_axis(3, 2, "sum")
Traceback (most recent call last):
...
lagrangeprop.errors.ShapeError: sum: axis 3 is out of range for an array with 2 dimension(s)
"""

from __future__ import annotations

import builtins
import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import GraphError, ShapeError

__all__ = ["unsupported", "check_out", "check_dtype", "check_where", "check_ufunc_kwargs",
           "static_axis", "normalize_axis", "traced_name", "dispatch_key", "static_index", "static_int"]

NO_VALUE = np._NoValue  # numpy's "argument not given" sentinel (what np.sum passes on)

# ufunc keywords: those that cannot change the values computed are accepted
# (order and subok only choose the result's memory layout and class); the others
# must be at their defaults, else GraphError names them.
_UFUNC_LAYOUT_ONLY = frozenset({"order", "subok"})
_COMPARISONS = frozenset({"greater", "greater_equal", "less", "less_equal", "equal", "not_equal"})


# ops whose value is boolean (zero derivative)
BOOLEAN_OPS = frozenset({"greater", "greater_equal", "less", "less_equal", "equal", "not_equal",
                         "logical_and", "logical_or", "logical_xor", "logical_not", "all", "any"})

# numpy's bitwise ufuncs (what ndarray's & | ^ ~ call) on booleans are the logical ops
_BITWISE = {"bitwise_and": ("logical_and", "&"), "bitwise_or": ("logical_or", "|"),
            "bitwise_xor": ("logical_xor", "^"), "invert": ("logical_not", "~")}

# numpy ufunc names that differ from the registry names
_UFUNC_ALIASES = {"absolute": "abs", "true_divide": "divide", "conjugate": "identity",
                  "positive": "identity"}


def _is_traced(x: Any) -> bool:
    return hasattr(type(x), "__lagrangeprop_apply__")


def traced_name(x: Any) -> str:
    """``" on traced variable 'name'"`` for a traced value, else ``""`` (for messages)."""
    return f" on traced variable {x.name!r}" if _is_traced(x) else ""


def _show(value: Any) -> str:
    if _is_traced(value):
        return f"<traced {value.name!r}>"
    if isinstance(value, np.ndarray) and value.size > 4:
        return f"<array of shape {value.shape}>"
    return repr(value)


def unsupported(func: str, arg: str, value: Any, x: Any = None, hint: str = "") -> GraphError:
    """The :class:`GraphError` for a numpy argument a traced op does not implement.

    Examples
    --------
    >>> str(unsupported("sum", "out", [1.0]))  # doctest: +ELLIPSIS
    "sum(..., out=[1.0]): the argument 'out' is not supported while tracing ..."
    """
    return GraphError(
        f"{func}(..., {arg}={_show(value)}){traced_name(x)}: the argument {arg!r} is not supported "
        f"while tracing (it would be silently dropped). {hint or 'Leave it at its default.'}")


def check_out(func: str, out: Any, x: Any = None) -> None:
    """``out=`` must be absent (None, or a tuple of Nones as ufuncs pass it)."""
    if out is None or (isinstance(out, tuple) and builtins.all(o is None for o in out)):
        return
    raise unsupported(func, "out", out, x, "Traced ops return new values: write `y = f(x)` "
                      "instead of writing into an existing array.")


def check_dtype(func: str, dtype: Any, x: Any = None, allowed: tuple = (np.float64,)) -> None:
    """``dtype=`` may only name the dtype the op computes in anyway (float64)."""
    if dtype is None:
        return
    try:
        ok = np.dtype(dtype) in [np.dtype(a) for a in allowed]
    except TypeError:
        ok = False
    if not ok:
        raise unsupported(func, "dtype", dtype, x, "Traced values are float64; "
                          "leave dtype unset (or float64).")


def check_where(func: str, where: Any, x: Any = None) -> None:
    """``where=`` (a mask) is only accepted as its default ``True``."""
    if where is NO_VALUE or where is True or (
            not _is_traced(where) and np.ndim(where) == 0 and np.asarray(where).dtype == bool
            and bool(where)):
        return
    raise unsupported(func, "where", where, x,
                      "Use lp.where(mask, f(x), fallback) to select values.")


def check_ufunc_kwargs(func: str, kwargs: dict, x: Any) -> None:
    """The keywords of a ufunc call ``np.exp(v, **kwargs)`` on the traced ``x``: each is
    implemented (a layout-only one, or at its default) or raises :class:`GraphError`."""
    for key, value in kwargs.items():
        if key == "out":
            check_out(func, value, x)
        elif key == "where":
            check_where(func, value, x)
        elif key == "dtype":
            boolean = func[3:] in _COMPARISONS   # a comparison's result is bool
            check_dtype(func, value, x, allowed=(np.bool_,) if boolean else (np.float64,))
        elif key == "casting":
            if value != "same_kind":
                raise unsupported(func, key, value, x)
        elif key in _UFUNC_LAYOUT_ONLY:
            continue
        elif value is not None:   # signature=, axes=, axis=, keepdims= (matmul), extobj=, ...
            raise unsupported(func, key, value, x)


def static_axis(axis: Any) -> int | tuple[int, ...] | None:
    """An axis argument as static ints (``operator.index``: ``axis=0.5`` is a TypeError in
    numpy, never silently axis 0)."""
    if axis is None:
        return None
    try:
        if isinstance(axis, (tuple, list)):
            return tuple(operator.index(a) for a in axis)
        return operator.index(axis)
    except TypeError:
        raise GraphError(f"axis {axis!r} must be an int or a tuple of ints") from None


def normalize_axis(axis: Any, ndim: int | None, func: str, x: Any = None,
                   scalar_int_ok: bool = False) -> Any:
    """``axis`` (None, int or sequence) with negative entries made non-negative.

    ``scalar_int_ok``: as numpy's ufunc reductions (``np.sum``) and scipy's ``logsumexp``/
    ``softmax``, a 0-d array accepts the int axis 0 or -1 (meaning all of its no axes).

    Raises
    ------
    ShapeError
        For an axis out of range or a repeated axis.
    """
    axis = static_axis(axis)
    if axis is None or ndim is None:
        return axis
    if scalar_int_ok and ndim == 0 and axis in (0, -1) and not isinstance(axis, tuple):
        return None
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(f"{func}{traced_name(x)}: axis {a} is out of range for an array "
                             f"with {ndim} dimension(s)")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"{func}{traced_name(x)}: repeated axis in {axis}")
    return tuple(out) if isinstance(axis, tuple) else out[0]


def dispatch_key(func: Callable[..., Any]) -> str:
    """The :data:`HANDLED_FUNCTIONS` key of numpy function ``func``: its name, prefixed
    with the numpy submodule it lives in (``"linalg.norm"``, ``"fft.fft"``)."""
    module = getattr(func, "__module__", "") or ""
    parts = module.split(".")
    if len(parts) >= 2 and parts[0] == "numpy" and parts[1] in _SUBMODULES:
        return f"{parts[1]}.{func.__name__}"
    return func.__name__


_SUBMODULES = frozenset({"linalg", "fft", "random", "polynomial", "ma"})


def static_index(index: Any, name: str) -> Any:
    """An index as static data: ints, slices, None, Ellipsis, integer/bool arrays."""
    def one(i):
        if _is_traced(i):
            raise GraphError(
                f"indexing {name!r} with the traced value {i.name!r}: the result's shape or "
                "entries would depend on values that are not known while tracing (a mask "
                "x[x > 0] keeps a data-dependent number of entries). Keep the shape static: "
                "lp.where(mask, x, 0.0) or x * mask instead of x[mask] (then sum/mean over "
                "the mask), and static ints, slices or integer arrays as indices")
        if isinstance(i, (list, np.ndarray)):
            arr = np.asarray(i)
            if arr.dtype.kind not in "iub":
                raise GraphError(f"index into {name!r} must be integer or boolean, got {arr.dtype}")
            return arr
        if isinstance(i, (np.integer,)):
            return int(i)
        return i
    if isinstance(index, tuple):
        return tuple(one(i) for i in index)
    return one(index)


def static_int(value: Any, func: str, arg: str, x: Any = None) -> int:
    """``value`` as a Python int (``operator.index``): a static argument such as ``decimals``
    or a matrix power's exponent, never a traced value (GraphError naming ``arg``)."""
    if _is_traced(value):
        raise GraphError(f"{func}{traced_name(x)}: {arg} must be a static int, not the traced "
                         f"value {value.name!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise GraphError(f"{func}{traced_name(x)}: {arg}={value!r} must be an integer") from None
