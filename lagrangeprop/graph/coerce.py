"""Turn a caller's number into a float64 array, or raise :class:`~lagrangeprop.InputError`.

One rule for every value a caller hands the solver (inputs, guesses, seeds, points of
the Lagrangian, tangents): a real number or a rectangular array of real numbers.
Python and numpy floats and integers are accepted and promoted to float64 (an integer
above 2**53 loses digits, as in numpy). Everything else raises ``InputError`` naming the
value and the fix, rather than being cast: complex values (numpy would drop the
imaginary part), booleans, strings (numpy would parse ``"1.5"``), ``None`` (numpy would
make it NaN), object arrays, ragged nested lists, masked arrays with masked entries
(numpy would use the hidden data) and sparse matrices. The builder's declared shapes
(:func:`shape_tuple`) and constants (:func:`constant_array`, :func:`plain_constant`)
follow the same rule.

Examples
--------
>>> from lagrangeprop.graph.coerce import real_array
>>> real_array(3, "input 'x'")
array(3.)
>>> real_array(1 + 2j, "input 'x'")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lagrangeprop.errors.InputError: input 'x' must be a real number ..., got a complex value (complex128); ...
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from ..errors import GraphError, InputError, ShapeError

__all__ = ["real_array", "constant_array", "merge_inputs", "shape_tuple", "plain_constant"]

_F64 = np.dtype(np.float64)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def real_array(value: Any, what: str, *, finite: bool = True) -> np.ndarray:
    """``value`` as a float64 ndarray (no copy when it already is one).

    Parameters
    ----------
    value : float, int, array_like
        A real number or a rectangular (nested) sequence or array of real numbers.
    what : str
        How the error message names the value, e.g. ``"input 'x'"`` or ``"seed"``.
    finite : bool
        Also reject NaN and inf.

    Raises
    ------
    InputError
        The value is not real, not numeric, not rectangular, or (``finite``) not finite.
    """
    if value.__class__ is np.ndarray and value.dtype is _F64:
        arr = value
    else:
        arr = _convert(value, what)
    if finite and not np.isfinite(arr).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        where = f" (first at index {bad})" if bad else ""
        raise InputError(f"{what} contains NaN or inf{where}; it must be finite")
    return arr


def _convert(value: Any, what: str) -> np.ndarray:
    def bad(got: str, fix: str) -> InputError:
        return InputError(f"{what} must be a real number or array of real numbers, got {got}; {fix}")

    if value is None:
        raise bad("None", "give it a value")
    if isinstance(value, (str, bytes)):
        raise bad(f"the string {_describe(value)}", "convert text with float(...) first")
    if isinstance(value, dict):
        raise bad("a dict", "pass the array itself")
    if isinstance(value, np.ma.MaskedArray) and np.ma.is_masked(value):
        raise bad("a masked array with masked entries (their hidden values would be used)",
                  "fill them first: v.filled(value)")
    if hasattr(value, "tocsr") and hasattr(value, "nnz"):   # scipy.sparse, without importing it
        raise bad("a scipy.sparse matrix", "pass a dense array (v.toarray()) or make it a constant")
    try:
        arr = np.asarray(value)
    except Exception:  # ragged lists, objects whose __array__ fails (a torch tensor needing grad, ...)
        raise bad(f"a {type(value).__name__} that is not a rectangular array",
                  "nested lists must all have the same length") from None
    kind = arr.dtype.kind
    if kind == "c":
        raise bad(f"a complex value ({arr.dtype})", "lagrangeprop differentiates real programs: "
                  "pass the real part (np.real(v)) or the real and imaginary parts as two inputs")
    if kind == "b":
        raise bad("a boolean (a derivative with respect to a bool is meaningless)",
                  "pass floats (np.asarray(v, dtype=float)) or make it a constant")
    if kind == "O":
        raise bad(f"an object array ({_describe(value)})",
                  "np.asarray(v, dtype=float) converts numbers stored as objects; an integer "
                  "too large for int64 does not fit")
    if kind not in "fiu":
        raise bad(f"dtype {arr.dtype}", "pass numbers")
    with np.errstate(over="ignore"):   # a float128 beyond float64: reported just below
        out = np.asarray(arr, dtype=np.float64)
    if kind == "f" and arr.dtype.itemsize > 8 and np.isfinite(arr).all() and not np.isfinite(out).all():
        raise InputError(f"{what} ({arr.dtype}) overflows float64; rescale it")
    return out


def constant_array(value: Any, what: str) -> np.ndarray:
    """A dense constant operand of a program: float64, or bool (masks keep their dtype).

    Numbers stored as objects are converted; anything numpy would silently misread raises
    :class:`~lagrangeprop.GraphError` (a constant is part of the program, not an input): a
    complex constant (``x * 1j`` would become ``x * 0``), strings, ``None``, dicts, dates,
    ragged lists, objects that are not real numbers.

    Examples
    --------
    >>> constant_array([1, 2], "a constant").dtype, constant_array([True], "a mask").dtype
    (dtype('float64'), dtype('bool'))
    """
    def bad(got: str, fix: str = "use a real number or array") -> GraphError:
        return GraphError(f"{what} is {got}; {fix}")

    if value is None:
        raise bad("None")
    if isinstance(value, (str, bytes, dict)):
        raise bad(f"{type(value).__name__} {_describe(value)}")
    try:
        arr = np.asarray(value)
    except Exception:
        raise bad(f"a {type(value).__name__} that is not a rectangular array") from None
    kind = arr.dtype.kind
    if kind == "O":
        flat = arr.ravel()
        if not all(isinstance(e, (int, float, np.integer, np.floating)) and not isinstance(e, bool)
                   for e in flat):
            kinds = sorted({type(e).__name__ for e in flat})
            raise bad(f"an object array holding {kinds}",
                      "a constant holds real numbers (build arrays of traced values with lp.stack)")
        kind = "f"
    if kind == "c":
        raise bad(f"complex ({_describe(value)})", "lagrangeprop differentiates real programs and numpy "
                  "would keep only the real part: carry real and imaginary parts as two real values")
    if kind == "b":
        return arr
    if kind not in "fiu":
        raise bad(f"of dtype {arr.dtype}")
    return np.asarray(arr, dtype=np.float64)


def merge_inputs(inputs: Any, kw_inputs: dict) -> dict:
    """One dict of inputs from a positional dict and keywords (``solve``, ``evaluate``, ``check``).

    Examples
    --------
    >>> merge_inputs({"x": 1.0}, {"y": 2.0})
    {'x': 1.0, 'y': 2.0}
    """
    if inputs is None:
        return kw_inputs
    if not isinstance(inputs, dict):
        raise InputError(f"inputs are passed by name: a dict or keywords (prog.solve(x=...)), not a "
                         f"positional {type(inputs).__name__}")
    both = sorted(set(inputs) & set(kw_inputs), key=str)
    if both:
        raise InputError(f"input(s) {both} given both in the dict and as keywords; give each once")
    return {**inputs, **kw_inputs}


def shape_tuple(shape: Any, name: str) -> tuple[int, ...]:
    """A declared shape as numpy takes it: an int or a sequence of ints (not bools, floats
    or text), as a tuple; ``name`` is the variable's, for the :class:`ShapeError`.

    Examples
    --------
    >>> shape_tuple(3, "x"), shape_tuple([2, 3], "x")
    ((3,), (2, 3))
    """
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, (bool, np.bool_)):
        shape = (shape,)
    if isinstance(shape, (str, bytes, dict, set, frozenset)) or not hasattr(shape, "__iter__"):
        raise ShapeError(f"shape of {name!r} must be a tuple of ints such as (3,) or (2, 3), "
                         f"got {shape!r}")
    dims = []
    for s in shape:
        if isinstance(s, (bool, np.bool_)):
            s = "bool"   # falls through to the error: True is not a length
        try:
            dims.append(operator.index(s))
        except TypeError:
            raise ShapeError(f"shape of {name!r} must be a tuple of ints such as (3,) or (2, 3), "
                             f"got {shape!r} (dimension {s!r} is not an int)") from None
    shape = tuple(dims)
    if any(s < 0 for s in shape):
        raise ShapeError(f"shape of {name!r} has a negative dimension: {shape}")
    if any(s > np.iinfo(np.intp).max for s in shape):
        raise ShapeError(f"shape of {name!r} has a dimension too large for numpy: {shape}")
    return shape


def plain_constant(value: Any) -> bool:
    """A constant whose shape alone decides an op's output shape (no sparse, no odd dtypes).

    Examples
    --------
    >>> import numpy as np
    >>> plain_constant(np.ones(2)), plain_constant(np.array(["a"]))
    (True, False)
    """
    return type(value) is np.ndarray and value.dtype.kind in "biuf"
