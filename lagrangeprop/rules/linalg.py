"""np.linalg: solve, inv, det, slogdet, cholesky, each one entry with all its rules (pinv is in
:mod:`~lagrangeprop.rules.decompositions`).

Every op is batched over leading axes ``(..., n, n)`` as numpy. The value is numpy's own
(LAPACK); a ``LinAlgError`` (a singular matrix, one that is not positive definite) becomes
:class:`~lagrangeprop.errors.SingularSystemError`, which the forward pass completes with
the node's name. Each VJP is written once as a formula over :mod:`~lagrangeprop.rules.dual`
numbers: on plain arrays it is the VJP, on duals ``(a, ȧ)`` it gives the exact curvature
(:func:`matrix_op`). The JVPs are the matrix differentials (Giles, "An extended collection
of matrix derivative results"), the Jacobians dense columns of the JVP (small matrices).

``solve`` is a primitive (a LAPACK solve with the VJP ``A⁻ᵀ g``), not a residual constraint
``A x - b = 0``: the forward value is numpy's to the last bit, the program stays acyclic (no
Newton block per solve) and the multiplier equation ``Aᵀ λ = g`` is solved by the same
LAPACK call. ``slogdet`` is two nodes: ``slogdet`` (log|det|, differentiable) and
``slogdet_sign`` (the sign, zero derivative).

Examples
--------
>>> import numpy as np
>>> from lagrangeprop.rules import get
>>> a = np.array([[2.0, 1.0], [1.0, 3.0]])
>>> inv = get("inv")
>>> p = inv.value([a], {})
>>> np.allclose(inv.vjp(0, np.eye(2), p, [a], {}), -p.T @ p.T)
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.linalg

from ..errors import SingularSystemError
from .arrays import as_f64 as _f
from .dual import Dual, linear, mT, solve
from .registry import Primitive, Tape, register
from .shapes import broadcast

__all__ = ["dense_jac", "lapack", "matrix_op", "square_shape", "inverse", "trace", "read_triangle",
           "to_triangle"]

Args = tuple[Any, ...]
Params = dict[str, Any]
Shape = tuple

_HINTS = {
    "cholesky": "cholesky needs a symmetric positive definite matrix; check the inputs "
                "(add a multiple of the identity to regularize)",
}
_SINGULAR = ("the matrix is singular (exactly, in floating point): it has no inverse. Check "
             "the inputs, regularize (A + eps * I), or use lp.linalg.pinv for a least-squares "
             "solution")


def lapack(name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> np.ndarray:
    """``fn(*args, **kwargs)`` with numpy's ``LinAlgError`` as :class:`SingularSystemError`."""
    try:
        return fn(*args, **kwargs)
    except np.linalg.LinAlgError as exc:
        raise SingularSystemError(
            f"np.linalg.{name}: numpy raised LinAlgError ({exc}): {_HINTS.get(name, _SINGULAR)}"
        ) from None


def eye_like(a: Any) -> np.ndarray:
    """The identity of the last axis of ``a`` (broadcasts over the batch axes)."""
    return np.eye(np.shape(a)[-1])


def inverse(a: Any) -> Any:
    """``a⁻¹`` of a plain or dual matrix (NaN when singular; see :func:`dual.solve`)."""
    return solve(a, np.broadcast_to(eye_like(a), np.shape(a)))


def trace(x: np.ndarray) -> np.ndarray:
    """The trace of each matrix of a stack."""
    return np.einsum("...ii->...", x)


def dense_jac(push: Callable[[np.ndarray], Any], arg_shape: tuple, out_shape: tuple) -> np.ndarray:
    """``d out / d arg`` as a dense ``(out.size, arg.size)`` array, one JVP per column."""
    n = int(np.prod(arg_shape, dtype=np.int64))
    cols = np.zeros((int(np.prod(out_shape, dtype=np.int64)), n))
    for k in range(n):
        e = np.zeros(n)
        e[k] = 1.0
        cols[:, k] = np.broadcast_to(push(e.reshape(arg_shape)), out_shape).reshape(-1)
    return cols


def square_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    """The argument's shape when it is a stack of square matrices, else None (numpy says why)."""
    s = shapes[0]
    return s if len(s) >= 2 and s[-1] == s[-2] else None


def _batch_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    s = square_shape(shapes, params)
    return None if s is None else s[:-2]


# For a one-argument op y = f(A): pull(g, y, A) is the VJP, written over duals, so that
# S = d/dε pull(g, y + ε ẏ, A + ε Ȧ) with ẏ = push(Ȧ) is the exact curvature.
def matrix_op(name: str, value: Callable[..., Any], push: Callable[..., Any],
              pull: Callable[..., Any], *, shape_rule: Callable[..., Any], tape: Tape) -> Primitive:
    """Register ``value(a, **params)`` with JVP ``push(t, ans, a, params)`` and VJP
    ``pull(g, ans, a, params)`` (the latter generic over :class:`~lagrangeprop.rules.dual.Dual`)."""

    def vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
        return pull(g, _f(ans), _f(args[0]), params)

    def jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
        return push(t, _f(ans), _f(args[0]), params)

    def jac(i: int, ans: Any, args: Args, params: Params) -> Any:
        a, y = _f(args[0]), _f(ans)
        return dense_jac(lambda t: push(t, y, a, params), a.shape, y.shape)

    def curvature(i, g, ans, args, params, tans):
        if tans[0] is None:
            return None
        a, y = _f(args[0]), _f(ans)
        dy = Dual(y, push(tans[0], y, a, params))
        out = pull(g, dy, Dual(a, tans[0]), params)
        return out.t if isinstance(out, Dual) else None

    return register(Primitive(name, value, nargs=1, vjp=vjp, jvp=jvp, jac=jac, curvature=curvature,
                              shape_rule=shape_rule, tape=tape))


def _col(x: Any) -> Any:
    """A stack of scalars as a stack of 1x1 matrices (broadcasts against matrices)."""
    return x[..., None, None]


# ---------------------------------------------------------------- inv
# P = A⁻¹: dP = -P dA P, so Ā = -Pᵀ Ḡ Pᵀ.
matrix_op("inv", lambda a: lapack("inv", np.linalg.inv, _f(a)),
          lambda t, p, a, params: -p @ t @ p,
          lambda g, p, a, params: -(mT(p) @ g @ mT(p)),
          shape_rule=square_shape,
          tape=Tape(autograd=lambda anp: anp.linalg.inv, torch=lambda torch: torch.linalg.inv))


# ---------------------------------------------------------------- det, slogdet
# d det A = det A · tr(A⁻¹ dA), so Ā = ḡ det A · A⁻ᵀ; d log|det A| = tr(A⁻¹ dA).
matrix_op("det", lambda a: np.linalg.det(_f(a)),
          lambda t, d, a, params: d * trace(solve(a, t)),
          lambda g, d, a, params: _col(g * d) * mT(inverse(a)),
          shape_rule=_batch_shape,
          tape=Tape(autograd=lambda anp: anp.linalg.det, torch=lambda torch: torch.linalg.det))

matrix_op("slogdet", lambda a: np.linalg.slogdet(_f(a))[1],
          lambda t, logdet, a, params: trace(solve(a, t)),
          lambda g, logdet, a, params: _col(g) * mT(inverse(a)),
          shape_rule=_batch_shape,
          tape=Tape(autograd=lambda anp: lambda a: anp.linalg.slogdet(a)[1],
                    torch=lambda torch: lambda a: torch.linalg.slogdet(a)[1]))

register(Primitive(
    "slogdet_sign", lambda a: np.linalg.slogdet(_f(a))[0], nargs=1, differentiable=False,
    shape_rule=_batch_shape,
    tape=Tape(autograd=lambda anp: lambda a: anp.linalg.slogdet(a)[0],
              torch=lambda torch: lambda a: torch.linalg.slogdet(a)[0])))


# ---------------------------------------------------------------- cholesky
# LAPACK reads one triangle: A_eff = tril(A) + tril(A, -1)ᵀ (triu for upper=True). A_eff = L Lᵀ
# (Murray 2016): dL = L Φ(L⁻¹ dA_eff L⁻ᵀ), the symmetric cotangent of A_eff is
# X = sym(L⁻ᵀ Φ(Lᵀ L̄) L⁻¹), Φ = the lower triangle with its diagonal halved, and X pulls back
# to the read triangle, diag(X) + tril(X + Xᵀ, -1): the derivative of numpy's function, equal
# to autograd's symmetric convention wherever A is built symmetric. upper=True: U = Lᵀ.
def read_triangle(t: np.ndarray, lower: bool = True) -> np.ndarray:
    """The symmetric matrix LAPACK sees when it reads the lower (or upper) triangle of ``t``."""
    if lower:
        return np.tril(t) + np.swapaxes(np.tril(t, -1), -1, -2)
    return np.triu(t) + np.swapaxes(np.triu(t, 1), -1, -2)


def to_triangle(x: Any, lower: bool = True) -> Any:
    """The cotangent ``x`` of :func:`read_triangle`'s result pulled back to the read triangle."""
    tri, off = (np.tril, -1) if lower else (np.triu, 1)

    def pull(m: np.ndarray) -> np.ndarray:
        return m * np.eye(m.shape[-1]) + tri(m + np.swapaxes(m, -1, -2), off)
    return linear(pull, x)


def _phi(x: Any) -> Any:
    n = np.shape(x)[-1]
    return linear(lambda a: np.tril(a) * (1.0 - 0.5 * np.eye(n)), x)


def _chol_push(t: np.ndarray, y: np.ndarray, a: np.ndarray, params: Params) -> np.ndarray:
    upper = params.get("upper", False)
    L = np.swapaxes(y, -1, -2) if upper else y
    inner = solve(L, np.swapaxes(solve(L, read_triangle(t, not upper)), -1, -2))   # L⁻¹ dA_eff L⁻ᵀ
    dL = L @ _phi(inner)
    return np.swapaxes(dL, -1, -2) if upper else dL


def _chol_pull(g: Any, y: Any, a: Any, params: Params) -> Any:
    upper = params.get("upper", False)
    L, G = (mT(y), mT(g)) if upper else (y, g)
    P = _phi(mT(L) @ G)
    S = mT(_lower_t_solve(L, mT(_lower_t_solve(L, P))))   # L⁻ᵀ P L⁻¹
    return to_triangle(0.5 * (S + mT(S)), not upper)


def _lower_t_solve(L: Any, B: Any) -> Any:
    """``L⁻ᵀ B`` for lower-triangular ``L``: a triangular solve (O(n²) per column) for a plain
    matrix, the general solve over duals and stacks."""
    if isinstance(L, np.ndarray) and isinstance(B, np.ndarray) and L.ndim == 2:
        return scipy.linalg.solve_triangular(L, B, trans="T", lower=True, check_finite=False)
    return solve(mT(L), B)


def _cholesky(a: Any, upper: bool = False) -> np.ndarray:
    return lapack("cholesky", np.linalg.cholesky, _f(a), upper=upper)


def _autograd_cholesky(anp: Any) -> Callable[..., Any]:
    # autograd's rule is symmetric: feed it the matrix LAPACK reads (one triangle)
    def cholesky(a, upper=False):
        tri, off = (anp.triu, 1) if upper else (anp.tril, -1)
        L = anp.linalg.cholesky(tri(a) + anp.swapaxes(tri(a, off), -1, -2))
        return anp.swapaxes(L, -1, -2) if upper else L
    return cholesky


def _torch_cholesky(torch: Any) -> Callable[..., Any]:
    def cholesky(a, upper=False):
        tri = torch.triu if upper else torch.tril
        return torch.linalg.cholesky(tri(a) + tri(a, 1 if upper else -1).transpose(-1, -2), upper=upper)
    return cholesky


matrix_op("cholesky", _cholesky, _chol_push, _chol_pull, shape_rule=square_shape,
          tape=Tape(autograd=_autograd_cholesky, torch=_torch_cholesky))


# ---------------------------------------------------------------- solve
# x = A⁻¹ b (numpy 2: b is a vector when 1-D, else a stack (..., n, k) of columns):
# dx = A⁻¹ (db - dA x), so b̄ = μ := A⁻ᵀ ḡ and Ā = -μ xᵀ. The curvature is the same
# formula over duals (μ and x move with A and b).
def _columns(x: Any, vector: bool) -> Any:
    return x[..., None] if vector else x


def _solve(a: Any, b: Any) -> np.ndarray:
    return lapack("solve", np.linalg.solve, _f(a), _f(b))


def _solve_pull(i: int, g: Any, a: Any, b: Any, x: Any = None) -> Any:
    vector = np.ndim(b) == 1
    mu = solve(mT(a), _columns(g, vector))
    if i == 1:
        return mu[..., 0] if vector else mu
    x = solve(a, _columns(b, vector)) if x is None else _columns(x, vector)   # x: the answer
    return -(mu @ mT(x))


def _solve_vjp(i: int, g: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
    return _solve_pull(i, _f(g), _f(args[0]), _f(args[1]), _f(ans))


def _solve_jvp(i: int, t: np.ndarray, ans: Any, args: Args, params: Params) -> Any:
    a, vector = _f(args[0]), np.ndim(args[1]) == 1
    rhs = -(t @ _columns(_f(ans), vector)) if i == 0 else _columns(t, vector)
    dx = solve(a, rhs)
    return dx[..., 0] if vector else dx


def _solve_jac(i: int, ans: Any, args: Args, params: Params) -> Any:
    return dense_jac(lambda t: _solve_jvp(i, t, ans, args, params), np.shape(args[i]), np.shape(ans))


def _solve_curvature(i, g, ans, args, params, tans):
    da, db = (Dual(_f(x), t) for x, t in zip(args, tans))
    return _solve_pull(i, _f(g), da, db).t


def _solve_shape(shapes: Sequence[Shape], params: dict) -> Shape | None:
    a, b = shapes
    if len(a) < 2 or a[-1] != a[-2]:
        return None
    if len(b) == 1:
        return a[:-1] if b[0] == a[-1] else None
    if len(b) < 2 or b[-2] != a[-1]:
        return None
    batch = broadcast([a[:-2], b[:-2]])
    return None if batch is None else batch + b[-2:]


def _torch_solve(torch: Any) -> Callable[..., Any]:
    def solve_(a, b):
        if b.dim() == 1:
            return torch.linalg.solve(a, b)
        if b.dim() < a.dim():   # torch would read (n, k) under a batch of matrices as vectors
            b = b.reshape((1,) * (a.dim() - b.dim()) + tuple(b.shape))
        return torch.linalg.solve(a, b)
    return solve_


register(Primitive(
    "solve", _solve, nargs=2, vjp=_solve_vjp, jvp=_solve_jvp, jac=_solve_jac,
    curvature=_solve_curvature, shape_rule=_solve_shape,
    tape=Tape(autograd=lambda anp: anp.linalg.solve, torch=_torch_solve)))
