"""Dual numbers over arrays: exact directional derivatives of the linear-algebra VJP formulas.

The curvature term of an op (:mod:`~lagrangeprop.rules.curvature`) is the directional
derivative of its VJP at a fixed cotangent, ``S = d/dε vjp(g; a + ε ȧ)``. The VJPs of
:mod:`~lagrangeprop.rules.linalg` and :mod:`~lagrangeprop.rules.decompositions` are short
formulas in matrix products, elementwise products and quotients, transposes and solves; a
:class:`Dual` carries a value and its tangent through the same formula, so writing the VJP
once gives both the VJP (plain arrays) and its exact derivative (duals), by the product rule
``d(xy) = ẋ y + x ẏ``. Helpers that accept both: :func:`mT`, :func:`linear`, :func:`solve`.

Examples
--------
>>> import numpy as np
>>> a = Dual(np.array([[2.0]]), np.array([[1.0]]))
>>> b = a @ a + 3.0 * a      # d(a² + 3a) = 2a ȧ + 3 ȧ
>>> float(b.x[0, 0]), float(b.t[0, 0])
(10.0, 7.0)
>>> float(solve(a, np.array([[4.0]])).t[0, 0])   # d(4/a) = -4 ȧ / a²
-1.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Dual", "linear", "mT", "primal", "solve", "tangent"]


class Dual:
    """A value ``x`` and its tangent ``t`` (same shape); arithmetic applies the product rule."""

    __slots__ = ("x", "t")
    __array_ufunc__ = None   # ndarray (op) Dual defers to Dual's reflected operators

    def __init__(self, x: Any, t: Any = None):
        self.x = np.asarray(x, dtype=np.float64)
        self.t = np.zeros_like(self.x) if t is None else np.asarray(t, dtype=np.float64)

    @property
    def shape(self) -> tuple:
        return self.x.shape

    @property
    def ndim(self) -> int:
        return self.x.ndim

    def __add__(self, o: Any) -> Dual:
        return Dual(self.x + primal(o), self.t + tangent(o))

    __radd__ = __add__

    def __sub__(self, o: Any) -> Dual:
        return Dual(self.x - primal(o), self.t - tangent(o))

    def __rsub__(self, o: Any) -> Dual:
        return Dual(primal(o) - self.x, tangent(o) - self.t)

    def __neg__(self) -> Dual:
        return Dual(-self.x, -self.t)

    def __mul__(self, o: Any) -> Dual:
        return Dual(self.x * primal(o), self.t * primal(o) + self.x * tangent(o))

    __rmul__ = __mul__

    def __truediv__(self, o: Any) -> Dual:
        q = self.x / primal(o)
        return Dual(q, (self.t - q * tangent(o)) / primal(o))

    def __rtruediv__(self, o: Any) -> Dual:
        q = primal(o) / self.x
        return Dual(q, (tangent(o) - q * self.t) / self.x)

    def __matmul__(self, o: Any) -> Dual:
        if not isinstance(o, Dual):
            return Dual(self.x @ o, self.t @ o)
        return Dual(self.x @ o.x, self.t @ o.x + self.x @ o.t)

    def __rmatmul__(self, o: Any) -> Dual:   # o is a plain array
        return Dual(o @ self.x, o @ self.t)

    def __getitem__(self, index: Any) -> Dual:
        return Dual(self.x[index], self.t[index])


def primal(x: Any) -> Any:
    """The value of a dual, or ``x`` itself."""
    return x.x if isinstance(x, Dual) else x


def tangent(x: Any) -> Any:
    """The tangent of a dual; 0 for a plain array (a constant)."""
    return x.t if isinstance(x, Dual) else 0.0


def linear(fn: Callable[[np.ndarray], np.ndarray], x: Any) -> Any:
    """A linear map ``fn`` (tril, a sum, a reshape) applied to a dual or a plain array."""
    return Dual(fn(x.x), fn(x.t)) if isinstance(x, Dual) else fn(x)


def mT(x: Any) -> Any:
    """The transpose of the last two axes (matrices stacked over leading axes)."""
    return linear(lambda a: np.swapaxes(a, -1, -2), x)


# x = A⁻¹ b: dx = A⁻¹ (ḃ - Ȧ x)
def solve(a: Any, b: Any) -> Any:
    """``numpy.linalg.solve(a, b)`` for ``b`` of shape ``(..., n, k)``, on duals too."""
    x = _solve(primal(a), primal(b))
    if not isinstance(a, Dual) and not isinstance(b, Dual):
        return x
    rhs = tangent(b) - (a.t @ x if isinstance(a, Dual) else 0.0)
    return Dual(x, _solve(primal(a), np.broadcast_to(rhs, x.shape)))


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A solve inside a derivative rule: a singular matrix gives NaN, so the solver's
    NonFiniteError names the node (instead of numpy's LinAlgError escaping a VJP)."""
    try:
        return np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        shape = np.broadcast_shapes(np.shape(a)[:-2], np.shape(b)[:-2]) + np.shape(b)[-2:]
        return np.full(shape, np.nan)
