"""Scans: ``cumsum`` along one axis, one entry with all its rules.

``y_i = Σ_{j≤i} x_j`` along ``axis`` is linear: the cotangent is the reversed cumulative sum
``x̄_j = Σ_{i≥j} ḡ_i``, the tangent the cumulative sum of the tangent, the Jacobian a
lower-triangular block of ones per line along ``axis`` and the curvature zero.
(``cumprod`` is a composite of multiplies in :mod:`lagrangeprop.graph.reduction_ops`.)

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> x = np.arange(3.0)
>>> get("cumsum").vjp(0, np.ones(3), np.cumsum(x), [x], {"axis": 0}).tolist()
[3.0, 2.0, 1.0]
>>> get("cumsum").jac(0, np.cumsum(x), [x], {"axis": 0}).toarray().tolist()
[[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .arrays import as_f64 as _f
from .arrays import size as _size
from .registry import Primitive, Tape, register, zero_curvature

__all__: list[str] = []

Args = tuple[Any, ...]
Params = dict[str, Any]
Shape = tuple


def _cumsum(x: Any, axis: int = 0) -> np.ndarray:
    return np.cumsum(_f(x), axis=axis)


# x̄ = flip(cumsum(flip(ḡ))) along axis: each x_j feeds every y_i with i ≥ j
def _cumsum_vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    axis = params.get("axis", 0)
    return np.flip(np.cumsum(np.flip(g, axis), axis=axis), axis)


def _cumsum_jac(i: int, ans: Any, args: Args, params: Params) -> sp.csr_matrix:
    shape = np.shape(args[0])
    axis = params.get("axis", 0) % len(shape)
    pos = np.moveaxis(np.arange(_size(args[0])).reshape(shape), axis, -1)
    rows, cols = np.tril_indices(shape[axis])
    r, c = pos[..., rows].ravel(), pos[..., cols].ravel()
    return sp.csr_matrix((np.ones(r.size), (r, c)), shape=(_size(args[0]),) * 2)


def _cumsum_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    (s,) = shapes
    axis = params.get("axis", 0)
    return s if set(params) <= {"axis"} and type(axis) is int and -len(s) <= axis < len(s) else None


register(Primitive(
    "cumsum", _cumsum, nargs=1, vjp=_cumsum_vjp,
    jvp=lambda i, t, ans, args, params: np.cumsum(t, axis=params.get("axis", 0)),
    jac=_cumsum_jac, curvature=zero_curvature, shape_rule=_cumsum_shape, linear=True,
    tape=Tape(autograd=lambda anp: lambda x, axis=0: anp.cumsum(x, axis=axis),
              torch=lambda torch: lambda x, axis=0: torch.cumsum(x, dim=axis))))
