"""Checks of a program graph's array data: declared shapes, dtypes, dense and sparse constants.

SPEC §2: loading JSON or a networkx graph never executes code and never allocates more
than the document's own data warrants. Dtypes are limited to bool and real numbers,
declared shapes are checked, never materialized, and sparse matrices are checked index
by index (index pointers monotone, ``indptr[0] = 0``, ``indptr[-1] = nnz``, indices in
range) before scipy builds on them. :mod:`lagrangeprop.graph.validate` checks the rest of
the schema (roles, ops, params, edges) with these.

Examples
--------
>>> check_shape([2, 3], "node 'x' (shape)")
(2, 3)
>>> check_compressed([1.0], [5], [0, 1], 1, 3, "node 'A' (value)")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lagrangeprop.errors.GraphError: node 'A' (value): ...
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import GraphError

__all__ = ["DTYPES", "MAX_NDIM", "MAX_ELEMENTS", "check_shape", "check_dtype", "check_compressed",
           "check_sparse", "check_dense", "is_int", "short"]

# bool and real numbers only: no strings (an "S60000000" dtype is 60 MB per element),
# no objects (code), no structured/void, no complex (the ops would drop the imaginary part)
DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                    "uint64", "float16", "float32", "float64"})
MAX_NDIM = 32                  # numpy's own limit is 64
MAX_ELEMENTS = 2**31 - 1       # entries of any declared shape (and each sparse dimension)


# ---------------------------------------------------------------- shapes and dtypes


def is_int(x: Any) -> bool:
    return (type(x) is int or isinstance(x, (int, np.integer))) and not isinstance(x, (bool, np.bool_))


def check_shape(shape: Any, where: str, sparse: bool = False) -> tuple[int, ...]:
    """``shape`` as a tuple of non-negative ints of at most :data:`MAX_NDIM` axes and
    :data:`MAX_ELEMENTS` entries (a declared shape is never allocated, but every later
    value of that node is); ``sparse``: only each dimension is bounded."""
    if type(shape) is tuple and all(type(n) is int and n >= 0 for n in shape):
        out = shape
    elif isinstance(shape, (tuple, list)) and all(is_int(n) and n >= 0 for n in shape):
        out = tuple(int(n) for n in shape)
    else:
        raise GraphError(f"{where} must be a tuple of non-negative ints (the array shape), "
                         f"got {short(shape)}")
    if len(out) > MAX_NDIM or any(n > MAX_ELEMENTS for n in out) or (
            not sparse and math.prod(out) > MAX_ELEMENTS):
        raise GraphError(f"{where} {out} is larger than lagrangeprop supports (at most "
                         f"{MAX_NDIM} axes and {MAX_ELEMENTS} entries); check the shape")
    return out


def check_dtype(name: Any, where: str) -> np.dtype:
    """The numpy dtype called ``name``, which must be bool or a real number type."""
    if not isinstance(name, str) or name not in DTYPES:
        raise GraphError(f"{where} has dtype {short(name)}; only {', '.join(sorted(DTYPES))} "
                         "are allowed (no strings, objects, structured or complex data)")
    return np.dtype(name)


def short(x: Any, limit: int = 60) -> str:
    text = repr(x) if not isinstance(x, (list, dict)) or len(x) < 8 else f"a {type(x).__name__} of {len(x)} items"
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------- sparse matrices


def _index_array(a: Any, where: str, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 1 or (a.size and a.dtype.kind not in "iu"):
        raise GraphError(f"{where}: sparse {what} must be a flat list of integers")
    return a.astype(np.int64, copy=False)


def check_compressed(data: Any, indices: Any, indptr: Any, n_major: int, n_minor: int,
                     where: str, fmt: str = "csr") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Check the arrays of a compressed sparse matrix (CSR: major = rows) and return them
    as ``(data, indices, indptr)`` numpy arrays; any inconsistency is a GraphError, raised
    before a scipy kernel could read or write out of bounds."""
    indices = _index_array(indices, where, "indices")
    indptr = _index_array(indptr, where, "indptr")
    data = np.asarray(data)
    if data.ndim != 1 or (data.size and data.dtype.kind not in "biuf"):
        raise GraphError(f"{where}: sparse data must be a flat list of real numbers")
    major = "rows" if fmt == "csr" else "columns"
    if indptr.size != n_major + 1:
        raise GraphError(f"{where}: sparse indptr has {indptr.size} entries; a {fmt} matrix with "
                         f"{n_major} {major} needs {n_major + 1}")
    nnz = indices.size
    if data.size != nnz:
        raise GraphError(f"{where}: sparse data has {data.size} entries but indices has {nnz}")
    if indptr[0] != 0 or indptr[-1] != nnz:
        raise GraphError(f"{where}: sparse indptr must start at 0 and end at nnz = {nnz}, "
                         f"got {int(indptr[0])} ... {int(indptr[-1])}")
    if np.any(indptr[1:] < indptr[:-1]):
        raise GraphError(f"{where}: sparse indptr must be non-decreasing (it is the start of "
                         f"each of the {major} in indices)")
    if nnz and (indices.min() < 0 or indices.max() >= n_minor):
        bad = indices[(indices < 0) | (indices >= n_minor)][0]
        raise GraphError(f"{where}: sparse index {int(bad)} is out of range for a dimension of "
                         f"size {n_minor}; indices must be in 0..{n_minor - 1}")
    return data, indices, indptr


def _sparse_shape(m: Any, where: str) -> tuple[int, int]:
    shape = check_shape(getattr(m, "shape", None), f"{where} (sparse shape)", sparse=True)
    if len(shape) != 2:
        raise GraphError(f"{where}: a sparse constant must be a 2-D matrix")
    return shape


def check_sparse(m: Any, where: str, canonical: bool = True) -> sp.csr_matrix:
    """The scipy sparse matrix ``m`` as a validated float64 CSR matrix, canonical (sorted,
    no duplicates) unless ``canonical=False``; its index arrays are checked before any
    conversion runs. A float64 CSR matrix that passes comes back as itself."""
    shape = _sparse_shape(m, where)
    if m.dtype.kind not in "biuf":
        raise GraphError(f"{where}: sparse data of dtype {m.dtype} is not allowed; "
                         "use real numbers (float64)")
    fmt = m.format
    if fmt in ("csr", "csc"):
        major, minor = shape if fmt == "csr" else shape[::-1]
        data, indices, indptr = check_compressed(m.data, m.indices, m.indptr, major, minor, where, fmt)
        if fmt == "csr" and m.dtype == np.float64 and isinstance(m, sp.csr_matrix) and (
                not canonical or m.has_canonical_format):
            return m
        cls = sp.csr_matrix if fmt == "csr" else sp.csc_matrix
        out = cls((data.astype(np.float64, copy=False), indices, indptr), shape=shape)
    else:
        if fmt == "coo":
            coo = m
        elif fmt in ("dia", "lil", "dok"):   # pure-Python/numpy conversions: no index is trusted
            try:
                coo = m.tocoo()
            except Exception as exc:
                raise GraphError(f"{where}: malformed {fmt} sparse matrix ({exc})") from None
        else:
            raise GraphError(f"{where}: sparse format {fmt!r} is not supported; "
                             "use csr, csc, coo, dia, lil or dok")
        row, col = _index_array(coo.row, where, "row"), _index_array(coo.col, where, "col")
        data = np.asarray(coo.data)
        if not (row.size == col.size == data.size) or data.ndim != 1:
            raise GraphError(f"{where}: coo row, col and data must have the same length")
        for idx, n, what in ((row, shape[0], "row"), (col, shape[1], "column")):
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise GraphError(f"{where}: sparse {what} index out of range for size {n}")
        out = sp.coo_matrix((data.astype(np.float64), (row, col)), shape=shape)
    out = sp.csr_matrix(out)
    if canonical and not out.has_canonical_format:
        out.sum_duplicates()   # sorts the indices too
    return out


# ---------------------------------------------------------------- dense constants


def _numeric_leaves(x: Any, where: str, depth: int = 0) -> None:
    """A nested list/tuple holds only bools and real numbers (no object's code runs)."""
    if depth > MAX_NDIM:
        raise GraphError(f"{where} is nested deeper than {MAX_NDIM} levels")
    for v in x:
        if isinstance(v, (list, tuple)):
            _numeric_leaves(v, where, depth + 1)
        elif not isinstance(v, (bool, int, float, np.bool_, np.integer, np.floating)):
            raise GraphError(f"{where} contains {short(v)}; a constant holds real numbers")


def check_dense(value: Any, where: str) -> np.ndarray:
    """A constant's dense value as an ndarray: float64 for numbers, bool kept as bool."""
    if type(value) is np.ndarray and value.dtype == np.float64:
        return value                                     # the traced case
    if isinstance(value, np.ma.MaskedArray):
        raise GraphError(f"{where} is a masked array; fill it (np.ma.filled) first")
    if isinstance(value, (list, tuple)):
        _numeric_leaves(value, where)
    elif not isinstance(value, (np.ndarray, np.generic, bool, int, float)):
        raise GraphError(f"{where} is a {type(value).__name__}; a constant must be a number, "
                         "an ndarray of bool or real numbers, or a scipy.sparse matrix")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise GraphError(f"{where} is not a rectangular array of numbers ({exc})") from None
    if arr.dtype.kind not in "biuf" or str(arr.dtype.newbyteorder("=")) not in DTYPES:
        raise GraphError(f"{where} has dtype {arr.dtype}; a constant holds bool or real numbers "
                         "(no strings, objects, structured or complex data)")
    check_shape(arr.shape, f"{where} (shape)")
    return arr if arr.dtype.kind == "b" else arr.astype(np.float64, copy=False)
