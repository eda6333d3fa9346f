"""Contractions (matmul, dot), each one entry with all its rules.

Both are bilinear: ``d(a @ b) = da @ b + a @ db``, so the JVPs reuse the op itself, the
cotangents are ``g @ bᵀ`` and ``aᵀ @ g``, and the curvature is the VJP with the other
argument replaced by its tangent. Argument 0 may be a constant ``scipy.sparse`` matrix
(``sparse_lhs``): never differentiated, its Jacobian for ``b`` is ``a`` (vector ``b``) or
``kron(a, I)`` (matrix ``b``).

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> a, b = np.eye(2), np.array([1.0, 2.0])
>>> get("matmul").vjp(0, np.ones(2), a @ b, [a, b], {}).tolist()
[[1.0, 2.0], [1.0, 2.0]]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from .arrays import as_f64 as _f
from .arrays import broadcast_jac, unbroadcast
from .arrays import size as _size
from .registry import Primitive, Tape, register
from .shapes import broadcast

__all__: list[str] = []

Args = tuple[Any, ...]
Params = dict[str, Any]
Shape = tuple


def _jac_from_jvp(jvp: Callable[[np.ndarray], Any], arg_shape: tuple, out_shape: tuple) -> sp.csr_matrix:
    """Sparse Jacobian of a linear map, column by column (fallback for rare shapes)."""
    n = _size(np.empty(arg_shape))
    cols = []
    for k in range(n):
        e = np.zeros(n)
        e[k] = 1.0
        cols.append(np.broadcast_to(jvp(e.reshape(arg_shape)), out_shape).reshape(-1))
    dense = np.stack(cols, axis=1) if cols else np.zeros((_size(np.empty(out_shape)), 0))
    return sp.csr_matrix(dense)


# f(a, b) bilinear: ∂²<g, f>/∂a ∂b · ḃ = vjp_a(g) evaluated with b := ḃ.
def _bilinear(prim: Callable[[], Primitive]) -> Callable[..., Any]:
    """The curvature rule of the bilinear op ``prim()`` (looked up when the rule runs)."""
    def rule(i, g, ans, args, params, tans):
        j = 1 - i
        if tans[j] is None:
            return None
        moved = list(args)
        moved[j] = np.reshape(tans[j], np.shape(args[j]))
        return prim().vjp(i, g, ans, moved, params)
    return rule


# c = a @ b is bilinear: dc = da @ b + a @ db, so the JVPs reuse the op itself and
# the cotangents are g @ b^T and a^T @ g. A constant scipy.sparse a is never
# differentiated; its Jacobian for b is a (vector b) or kron(a, I) (matrix b).


def _matmul(a: Any, b: Any) -> np.ndarray:
    if sp.issparse(a):
        return np.asarray(a @ _f(b))
    return np.matmul(_f(a), _f(b))


def _promote(a: np.ndarray, b: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matrices (..., m, n), (..., n, k), (..., m, k) for matmul with 1-D operands promoted."""
    if b.ndim == 1:
        b, g = b[:, None], g[..., None]
    if a.ndim == 1:
        a, g = a[None, :], g[..., None, :]
    return a, b, g


def _matmul_vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    a, b = args
    if sp.issparse(a):
        return np.asarray(a.T @ g)
    a, b = _f(a), _f(b)
    a2, b2, g2 = _promote(a, b, g)
    if i == 0:
        out = g2 @ np.swapaxes(b2, -1, -2)
        return unbroadcast(out, a2.shape).reshape(a.shape)
    out = np.swapaxes(a2, -1, -2) @ g2
    return unbroadcast(out, b2.shape).reshape(b.shape)


def _matmul_jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    a, b = args
    return _matmul(t, b) if i == 0 else _matmul(a, t)


def _product_jac_2d(i: int, a: Any, b: Any) -> sp.csr_matrix:
    """Jacobian of a @ b for a of ndim <= 2 (possibly sparse) and b of ndim 1 or 2."""
    if sp.issparse(a):
        a2 = sp.csr_matrix(a)
    else:
        a2 = _f(a)[None, :] if np.ndim(a) == 1 else _f(a)
    b2 = _f(b)[:, None] if np.ndim(b) == 1 else _f(b)
    m, k = a2.shape[0], b2.shape[1]
    if i == 0:  # out[p, q] = sum_l a[p, l] b[l, q]:  d out / d a = I_m (x) b^T
        return sp.kron(sp.identity(m), sp.csr_matrix(b2.T), format="csr")
    return sp.kron(sp.csr_matrix(a2), sp.identity(k), format="csr")  # d out / d b = a (x) I_k


def _matmul_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    a, b = shapes
    if params or not 1 <= len(a) <= 2 or not 1 <= len(b) <= 2:
        return None   # scalars (an error) and stacked matmul: numpy decides
    if a[-1] != b[0]:
        return None
    return a[:-1] + b[1:]


def _matmul_jac(i: int, ans: Any, args: Args, params: Params) -> sp.csr_matrix:
    a, b = args
    if (sp.issparse(a) or np.ndim(a) <= 2) and np.ndim(b) <= 2:
        return _product_jac_2d(i, a, b)
    return _jac_from_jvp(lambda t: _matmul_jvp(i, t, ans, args, params), np.shape(args[i]), np.shape(ans))


_matmul_prim = register(Primitive(
    "matmul", _matmul, nargs=2, vjp=_matmul_vjp, jvp=_matmul_jvp, jac=_matmul_jac,
    curvature=_bilinear(lambda: _matmul_prim), shape_rule=_matmul_shape, linear=True, sparse_lhs=True,
    tape=Tape(autograd=lambda anp: anp.matmul, torch=lambda torch: torch.matmul)))


# dot: numpy.dot semantics (0-d = multiply; N-D contracts a's last axis with b's
# second-to-last). Cotangents as tensordots, after HIPS autograd's dot_adjoint_0/1.


def _dot(a: Any, b: Any) -> np.ndarray:
    if sp.issparse(a):
        return np.asarray(a @ _f(b))
    return np.dot(_f(a), _f(b))


def _dot_vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    a, b = args
    if sp.issparse(a):
        return np.asarray(a.T @ g)
    a, b = _f(a), _f(b)
    if i == 0:
        if b.ndim <= 1 or a.ndim == 0:
            return np.tensordot(g, b, max(0, b.ndim - (a.ndim != 0)))
        return np.tensordot(g, np.swapaxes(b, -1, -2), b.ndim - 1)
    if a.ndim <= 1 or b.ndim == 0:
        n = max(0, a.ndim - (b.ndim != 0))
        out = np.tensordot(g, a, [list(range(n)), list(range(n))])
    else:
        out = np.tensordot(g, a, [list(range(-a.ndim - b.ndim + 2, -b.ndim + 1)), list(range(a.ndim - 1))])
    return np.swapaxes(out, -1, -2) if b.ndim > 1 and a.ndim != 0 else out


def _dot_jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> np.ndarray:
    a, b = args
    return _dot(t, b) if i == 0 else _dot(a, t)


def _dot_jac(i: int, ans: Any, args: Args, params: Params) -> sp.csr_matrix:
    a, b = args
    if not sp.issparse(a) and (np.ndim(a) == 0 or np.ndim(b) == 0):
        other = b if i == 0 else a
        return broadcast_jac(_f(other), np.shape(args[i]), np.shape(ans))
    if (sp.issparse(a) or np.ndim(a) <= 2) and np.ndim(b) <= 2:
        return _product_jac_2d(i, a, b)
    return _jac_from_jvp(lambda t: _dot_jvp(i, t, ans, args, params), np.shape(args[i]), np.shape(ans))


def _dot_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    a, b = shapes
    if not params and (not a or not b):
        return broadcast(shapes)   # numpy.dot with a 0-d operand multiplies
    return _matmul_shape(shapes, params)


def _torch_dot(torch: Any) -> Callable[..., Any]:
    def dot(a, b):  # numpy.dot semantics
        if a.dim() == 0 or b.dim() == 0:
            return a * b
        return torch.tensordot(a, b, dims=([a.dim() - 1], [max(b.dim() - 2, 0)]))
    return dot


_dot_prim = register(Primitive(
    "dot", _dot, nargs=2, vjp=_dot_vjp, jvp=_dot_jvp, jac=_dot_jac,
    curvature=_bilinear(lambda: _dot_prim), shape_rule=_dot_shape, linear=True, sparse_lhs=True,
    tape=Tape(autograd=lambda anp: anp.dot, torch=_torch_dot)))
