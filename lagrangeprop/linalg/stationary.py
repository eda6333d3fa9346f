"""The stationary iteration ``x ← F(x)`` for a linear system (a Gauss–Seidel sweep), with its stopping test.

The iteration watches the entries the next sweep reads, estimates the error from the ratio of
successive steps, and lets the true residual decide (it must reach
:data:`~lagrangeprop.linalg.krylov.LIN_ACCEPT`), else :class:`ConvergenceError`.

Examples
--------
>>> import numpy as np
>>> A = np.array([[1.0, 0.0], [-0.5, 1.0]]); N = np.array([[0.0, 0.25], [0.0, 0.0]])
>>> b = np.array([1.0, 1.0])       # (A - N) x = b by x <- A⁻¹(b + N x)
>>> x = stationary(lambda x: np.linalg.solve(A, b + (0 if x is None else N @ x)), None,
...                lambda x: float(np.abs((A - N) @ x - b).max()))
>>> bool(np.allclose((A - N) @ x, b))
True
"""

from __future__ import annotations

import numpy as np

from ..errors import ConvergenceError
from .diagnose import short_list
from .krylov import LIN_ACCEPT

__all__ = ["GATE", "stationary"]


GATE = 1e-12           # stationary iteration: estimated error / max|x| at which the residual is checked


def _step(x_new: np.ndarray, x: np.ndarray, watch) -> float:
    """``max|x_new - x|`` over the watched slices."""
    return max(float(np.abs(x_new[a:b] - x[a:b]).max()) if b > a else 0.0 for a, b in watch)


def _size(x: np.ndarray, watch) -> float:
    """``max|x|`` over the watched slices."""
    return max(float(np.abs(x[a:b]).max()) if b > a else 0.0 for a, b in watch)


def stationary(F, x0, residual, *, watch=None, names=(), what: str = "linear solve",
               maxiter: int = 1000) -> np.ndarray:
    """The stationary iteration ``x ← F(x)`` (``F`` affine: a Gauss–Seidel sweep of a contractive
    block) from ``x0`` (``None``: zero, and ``F(None)`` is ``F(0)``).

    ``watch`` (slices ``(start, stop)``, default everything) are the entries the next sweep reads:
    when they stop moving, so does the rest. With ``q`` the observed ratio of successive steps on
    them, the error estimate ``step·q/(1-q)`` (``step`` itself while ``q`` is unknown) is compared
    with ``1e-12·max|x|``; then ``residual(x) <= 1e-10`` decides. A failed check continues with a
    hundredfold tighter estimate, three times at most; then ConvergenceError, as for a step that
    is not finite or ``maxiter`` sweeps.
    """
    x = x0
    prev, gate, history = np.inf, GATE, []
    for it in range(maxiter):
        x_new = F(x)
        if it == 0:
            if x_new.size == 0:
                return x_new
            watch = ((0, x_new.size),) if watch is None else tuple(watch)
            xmax = 0.0 if x is None else _size(x, watch)   # an upper bound of max|x| on the watched entries
        step = _size(x_new, watch) if x is None else _step(x_new, x, watch)
        x = x_new
        history.append(step)
        if not np.isfinite(step):
            break
        xmax += step                     # max|x_new| <= max|x| + step: exact only near the end
        if step == 0.0:
            est = 0.0
        elif prev == np.inf:
            est = step
        else:
            q = min(max(step / prev, 0.1), 0.9) if prev > 0 else 0.9
            est = step * q / (1.0 - q)
        prev = step
        if est <= gate * xmax and est <= gate * (xmax := _size(x, watch)):
            res = residual(x)
            if res <= LIN_ACCEPT:
                return x
            history.append(res)
            gate *= 1e-2
            if gate < 1e-16:
                break
    raise ConvergenceError(
        f"the fixed-point sweep did not converge on the {what} of block [{short_list(list(names), 8)}] "
        f"(last step {history[-1]:.2e} after {len(history)} sweeps); use linear_solver='gmres' "
        "or 'direct'", nodes=names, iterations=len(history), history=history)
